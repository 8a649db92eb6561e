package buffer

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a wall clock without monotonic readings that a test moves and
// steps, as NTP or an operator does.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ttlStep appends one record and returns the seqs still stored, oldest first.
func ttlStep(t *testing.T, q *Queue, r Record) []uint64 {
	t.Helper()
	if err := q.Append(context.Background(), r); err != nil { // runs the TTL sweep
		t.Fatal(err)
	}
	q.Rewind()
	n := int(q.Stats().Records)
	var seqs []uint64
	for _, got := range readN(t, q, n) {
		seqs = append(seqs, got.Seq)
	}
	return seqs
}

func TestTTLWithClockSteppedBack(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{TTL: time.Hour, Now: clk.Now})
	defer q.Close()

	ttlStep(t, q, rec(1)) // seq 1 at 12:00
	clk.Add(30 * time.Minute)
	ttlStep(t, q, rec(2))          // seq 2 at 12:30
	clk.Add(-365 * 24 * time.Hour) // the clock is set back a year
	if got := ttlStep(t, q, rec(3)); len(got) != 3 {
		t.Fatalf("after stepping back a year, stored %v; want seqs 1 to 3 (nothing expires)", got)
	}
	clk.Add(31 * time.Minute) // seq 1 has now existed 61 minutes
	if got := ttlStep(t, q, rec(4)); len(got) != 3 || got[0] != 2 {
		t.Fatalf("61 minutes after seq 1 was stored: %v; want seq 1 expired, 2 to 4 kept", got)
	}
	clk.Add(30 * time.Minute) // seqs 2 and 3 (stored at the step): 61 minutes
	if got := ttlStep(t, q, rec(5)); len(got) != 2 || got[0] != 4 {
		t.Fatalf("61 minutes after seqs 2 and 3 were stored: %v; want seqs 4 and 5 kept", got)
	}
	if s := q.Stats(); s.Drops.Expired != 3 {
		t.Fatalf("expired %d, want 3", s.Drops.Expired)
	}
}

func TestTTLWithClockSteppedForward(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{TTL: time.Hour, Now: clk.Now})
	defer q.Close()

	ttlStep(t, q, rec(1)) // seq 1 at 12:00
	clk.Add(20 * time.Minute)
	ttlStep(t, q, rec(2)) // seq 2 at 12:20
	// A clock without monotonic readings cannot tell a step from elapsed
	// time: 45 minutes later, seq 1 is 65 minutes old, seq 2 only 45.
	clk.Add(45 * time.Minute)
	if got := ttlStep(t, q, rec(3)); len(got) != 2 || got[0] != 2 {
		t.Fatalf("after a 45-minute step: %v; want seq 1 expired, 2 and 3 kept", got)
	}
}

// TestClockFloorAfterRestart: a file whose newest stamp is ahead of the wall
// clock (the clock was set back while the gateway was off) keeps aging its
// records from that stamp instead of keeping them until the clock catches up.
func TestClockFloorAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := openTest(t, path, Options{TTL: time.Hour, Now: clk.Now})
	if err := q.Append(context.Background(), rec(1)); err != nil {
		t.Fatal(err)
	}
	q.Close()

	clk.Add(-4 * 365 * 24 * time.Hour) // back to 2026
	q = openTest(t, path, Options{TTL: time.Hour, Now: clk.Now})
	defer q.Close()
	clk.Add(61 * time.Minute)
	if got := ttlStep(t, q, rec(2)); len(got) != 1 || got[0] != 2 {
		t.Fatalf("61 minutes after a restart with the clock set back: %v; want seq 1 expired", got)
	}
}
