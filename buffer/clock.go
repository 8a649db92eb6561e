package buffer

import (
	"sync"
	"time"
)

// clock is the queue's time, used for record stamps, the TTL and the commit
// failure window. It follows Options.Now but never runs backwards: it
// advances by the time elapsed between two readings, and not at all when a
// reading is earlier than the one before. time.Now readings carry the
// monotonic clock, and Time.Sub uses it, so with the default Now a wall-clock
// step in either direction neither ages records nor makes them younger; with
// a Now without monotonic readings a forward step counts as elapsed time, and
// a backward step loses the time elapsed since the reading before it.
type clock struct {
	mu    sync.Mutex
	now   func() time.Time
	last  time.Time // the previous reading of now
	queue time.Time // the queue time at last
}

// newClock starts the queue time at the wall clock, or at floor (the newest
// stored stamp) if the wall clock is behind it: after a restart with the clock
// set back, stored records keep aging instead of waiting for the clock to
// catch up with their stamps.
func newClock(now func() time.Time, floor time.Time) *clock {
	if now == nil {
		now = time.Now
	}
	w := now()
	q := w.Round(0) // stamps carry no monotonic reading
	if floor.After(q) {
		q = floor
	}
	return &clock{now: now, last: w, queue: q}
}

// read returns the queue time and the wall time of one reading.
func (c *clock) read() (queue, wall time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.now()
	if d := w.Sub(c.last); d > 0 {
		c.queue = c.queue.Add(d)
	}
	c.last = w
	return c.queue, w
}
