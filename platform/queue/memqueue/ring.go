package memqueue

// ring is a growable FIFO on a power-of-two circular buffer. It grows by
// doubling when full and shrinks by half when it falls to a quarter, so a
// lane that once held a burst gives the memory back.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

const minRing = 64

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.resize(max(minRing, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// front returns a pointer to the oldest element; the ring must not be empty.
func (r *ring[T]) front() *T { return &r.buf[r.head] }

// pop removes and returns the oldest element; the ring must not be empty.
func (r *ring[T]) pop() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero // drop references for the GC
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > minRing && r.n <= len(r.buf)/4 {
		r.resize(len(r.buf) / 2)
	}
	return v
}

func (r *ring[T]) resize(size int) {
	buf := make([]T, size)
	if r.n > 0 {
		if r.head+r.n <= len(r.buf) {
			copy(buf, r.buf[r.head:r.head+r.n])
		} else {
			k := copy(buf, r.buf[r.head:])
			copy(buf[k:], r.buf[:r.n-k])
		}
	}
	r.buf, r.head = buf, 0
}

// clear drops every element.
func (r *ring[T]) clear() { *r = ring[T]{} }
