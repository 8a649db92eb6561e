package command

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/demo/building"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Issue 12 item 10: command expiry, max_ttl, replay protection and the rate
// limit under a wall clock that jumps forwards and backwards.
func TestCommandExpiryUnderClockJumps(t *testing.T) {
	w := newWorld(t)
	t0 := time.Now().Add(time.Hour).Truncate(time.Second) // after the horizon the first Open recorded
	clock := &fakeClock{t: t0}
	w.cfg.Now = clock.Now
	w.gate.Close()
	w.open(t)
	ctx := context.Background()
	const release = "lintel/gw1/doors-io/door_1_release/set"
	n := 0
	signed := func(value string, expires time.Time) []byte {
		n++
		e := Envelope{ID: "c", Value: json.RawMessage(value), Expires: expires.Format(time.RFC3339), Nonce: "nonce-" + string(rune('a'+n))}
		if err := Sign(w.key, "gw1", "doors-io", "door_1_release", &e); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(e)
		return b
	}
	handle := func(payload []byte, want string) {
		t.Helper()
		r := w.gate.Handle(ctx, "cloud", release, payload)
		if want == "" && !r.OK || want != "" && r.Error != want {
			t.Fatalf("at %s: %+v, want %q", clock.Now().Format(time.RFC3339), r, want)
		}
	}

	// Forwards past expires: expired.
	late := signed(`true`, t0.Add(time.Minute))
	clock.Set(t0.Add(61 * time.Second))
	handle(late, ReasonExpired)
	// Backwards so that expires is more than max_ttl (5m) ahead: refused.
	clock.Set(t0.Add(-10 * time.Minute))
	handle(late, ReasonTooFarAhead)
	// Back at t0 it is valid (it was never used).
	clock.Set(t0)
	handle(late, "")
	if !w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("valid command did not write")
	}
	relock := signed(`false`, t0.Add(time.Minute))
	handle(relock, "")

	// Forwards two days, restart (the nonce store is pruned), back to t0:
	// the used command must stay used.
	clock.Set(t0.Add(48 * time.Hour))
	w.gate.Close()
	w.open(t)
	clock.Set(t0)
	handle(late, ReasonExpired) // its nonce may be gone: refused by the store's horizon
	if w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("a used command ran again after the clock went back")
	}
}

// The per-point rate limit neither locks out for the size of a backwards
// jump nor forgets its window.
func TestRateLimitUnderClockJumps(t *testing.T) {
	w := newWorld(t)
	t0 := time.Now().Add(time.Hour).Truncate(time.Second) // after the horizon the first Open recorded
	clock := &fakeClock{t: t0}
	w.cfg.Now = clock.Now
	w.gate.Close()
	w.open(t)
	ctx := context.Background()
	write := func() Result {
		return w.gate.Handle(ctx, "local", "lintel/gw1/ahu-1/setpoint/set", []byte(`{"id":"s","value":21}`))
	}
	for i := range 5 {
		if r := write(); !r.OK {
			t.Fatalf("write %d: %+v", i, r)
		}
	}
	clock.Set(t0.Add(-time.Hour))
	if r := write(); r.Error != ReasonRateLimited {
		t.Fatalf("6th write right after the clock went back an hour: %+v", r)
	}
	clock.Set(t0.Add(-time.Hour + time.Minute))
	if r := write(); !r.OK {
		t.Fatalf("a minute later (by the new clock) the limit still holds: %+v", r)
	}
	clock.Set(t0.Add(time.Hour))
	for i := range 5 {
		if r := write(); !r.OK {
			t.Fatalf("after a forward jump, write %d: %+v", i, r)
		}
	}
	if r := write(); r.Error != ReasonRateLimited {
		t.Fatalf("6th write after the forward jump: %+v", r)
	}
}
