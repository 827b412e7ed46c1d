package queue

import "time"

// AgedShare is the ageing rule's share: while a higher lane has work, an
// overdue lower lane is served on one pick in AgedShare. Strict priority
// holds for the other picks, so a deep, overdue low backlog slows a fresh
// high message by at most AgedShare-1 lower messages; and low is never
// starved, since it gets at least one pick in AgedShare once overdue.
const AgedShare = 4

// Ageing applies the ageing rule to the heads of the three lanes. The zero
// value is ready to use; it is not safe for concurrent use (implementations
// call it under their lane lock).
type Ageing struct {
	turn int
}

// Pick returns the lane (0 high, 1 medium, 2 low) to serve, or -1 when all
// are empty. nonEmpty says which lanes have a head; waited is how long each
// head has waited in its lane. Among overdue heads (waited >= limit) the one
// that has waited longest is the aged candidate; it is served when it is the
// highest non-empty lane anyway, or on every AgedShare-th pick; otherwise the
// highest non-empty lane is served.
func (a *Ageing) Pick(nonEmpty [3]bool, waited [3]time.Duration, limit time.Duration) int {
	top, aged := -1, -1
	for r := 0; r < 3; r++ {
		if !nonEmpty[r] {
			continue
		}
		if top < 0 {
			top = r
		}
		if waited[r] >= limit && (aged < 0 || waited[r] > waited[aged]) {
			aged = r
		}
	}
	if aged < 0 || aged == top {
		return top
	}
	a.turn++
	if a.turn >= AgedShare {
		a.turn = 0
		return aged
	}
	return top
}
