package outbound

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

var (
	errStopping = errors.New("outbound: pool is stopping")
	errPoolFull = errors.New("outbound: sub-queue full")
)

// pool is one channel's worker pool. Jobs wait in three bounded FIFO
// sub-queues, one per priority; workers always take the highest non-empty
// sub-queue, except that every agedShare-th pick goes to the lower
// sub-queue whose head has waited longer than ageLimit (the ageing rule), so
// low priority is slowed but never starved while high keeps flowing. A
// producer blocks only on its own priority's sub-queue, so a fan-out stuck
// on a full low sub-queue never holds back high work.
type pool struct {
	ch        domain.Channel
	sender    contracts.Sender
	workers   int
	capacity  int
	ageLimit  time.Duration
	agedShare uint64

	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  [3]*sync.Cond
	q        [3]jobRing
	closed   bool // no more pushes; workers exit once the sub-queues are empty
	aborted  bool // producers waiting for room give up
	picks    uint64

	// room reports whether work of a priority rank may start now (the
	// outcome recorder is not saturated); nil = always.
	room func(rank int) bool

	inflight                                  atomic.Int64
	sent, delivered, failed, retried, expired atomic.Uint64
}

func newPool(ch domain.Channel, s contracts.Sender, workers, capacity int, ageLimit time.Duration, agedShare int) *pool {
	p := &pool{ch: ch, sender: s, workers: workers, capacity: capacity, ageLimit: ageLimit, agedShare: uint64(agedShare)}
	p.notEmpty = sync.NewCond(&p.mu)
	for i := range p.notFull {
		p.notFull[i] = sync.NewCond(&p.mu)
	}
	return p
}

// push adds a job to its priority's sub-queue, blocking while that
// sub-queue is full when block is set.
func (p *pool) push(j *job, block bool) error {
	r := j.st.n.Priority.Rank()
	p.mu.Lock()
	for p.q[r].len() >= p.capacity {
		if p.closed || p.aborted {
			p.mu.Unlock()
			return errStopping
		}
		if !block {
			p.mu.Unlock()
			return errPoolFull
		}
		p.notFull[r].Wait()
	}
	if p.closed || p.aborted {
		p.mu.Unlock()
		return errStopping
	}
	j.enq = time.Now()
	p.q[r].push(j)
	p.notEmpty.Signal()
	p.mu.Unlock()
	return nil
}

// pop returns the next job by priority and the ageing rule, or nil once the
// pool is closed and empty.
func (p *pool) pop() *job {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if r := p.pick(); r >= 0 {
			j := p.q[r].pop()
			p.notFull[r].Signal()
			return j
		}
		if p.closed && p.q[0].len()+p.q[1].len()+p.q[2].len() == 0 {
			return nil
		}
		p.notEmpty.Wait()
	}
}

// wake lets waiting workers re-check (the recorder has room again).
func (p *pool) wake() {
	p.mu.Lock()
	p.notEmpty.Broadcast()
	p.mu.Unlock()
}

func (p *pool) ok(r int) bool { return p.room == nil || p.room(r) }

func (p *pool) pick() int {
	first := -1
	for r := range p.q {
		if p.q[r].len() > 0 && p.ok(r) {
			first = r
			break
		}
	}
	if first < 0 {
		return -1
	}
	p.picks++
	if p.ageLimit > 0 && p.agedShare > 0 && p.picks%p.agedShare == 0 {
		now := time.Now()
		best := -1
		var oldest time.Time
		for r := first + 1; r < len(p.q); r++ {
			if p.q[r].len() == 0 || !p.ok(r) {
				continue
			}
			at := p.q[r].peek().enq
			if now.Sub(at) >= p.ageLimit && (best < 0 || at.Before(oldest)) {
				best, oldest = r, at
			}
		}
		if best >= 0 {
			return best
		}
	}
	return first
}

// abortPushes makes blocked and future blocking pushes fail (shutdown).
func (p *pool) abortPushes() {
	p.mu.Lock()
	p.aborted = true
	for _, c := range p.notFull {
		c.Broadcast()
	}
	p.mu.Unlock()
}

// close refuses further pushes; workers drain what is queued and exit.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.notEmpty.Broadcast()
	for _, c := range p.notFull {
		c.Broadcast()
	}
	p.mu.Unlock()
}

// discard empties the sub-queues and returns what they held.
func (p *pool) discard() []*job {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*job
	for r := range p.q {
		for p.q[r].len() > 0 {
			out = append(out, p.q[r].pop())
		}
		p.notFull[r].Broadcast()
	}
	p.notEmpty.Broadcast()
	return out
}

func (p *pool) depth(r int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.q[r].len()
}

func (p *pool) stats() ChannelStats {
	s := ChannelStats{Workers: p.workers, Depth: map[domain.Priority]int{}, InFlight: int(p.inflight.Load()),
		Sent: p.sent.Load(), Delivered: p.delivered.Load(), Failed: p.failed.Load(), Retried: p.retried.Load(), Expired: p.expired.Load()}
	p.mu.Lock()
	for r, pr := range domain.Priorities {
		s.Depth[pr] = p.q[r].len()
	}
	p.mu.Unlock()
	return s
}

// jobRing is a growable FIFO on a power-of-two circular buffer.
type jobRing struct {
	buf  []*job
	head int
	n    int
}

func (r *jobRing) len() int { return r.n }

func (r *jobRing) push(j *job) {
	if r.n == len(r.buf) {
		r.resize(max(64, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = j
	r.n++
}

func (r *jobRing) peek() *job { return r.buf[r.head] }

func (r *jobRing) pop() *job {
	j := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > 1024 && r.n < len(r.buf)/4 {
		r.resize(len(r.buf) / 2)
	}
	return j
}

func (r *jobRing) resize(n int) {
	nb := make([]*job, n)
	for i := 0; i < r.n; i++ {
		nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = nb, 0
}
