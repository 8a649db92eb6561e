package uplink

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// jumpingClock is a wall clock that can be stepped, as NTP or an RTC
// correction steps the system clock; its timers keep running on real time,
// as the kernel's monotonic timers do.
type jumpingClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *jumpingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Round(0).Add(c.offset) // Round(0): wall time only, like a stepped clock
}

func (c *jumpingClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (c *jumpingClock) jump(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// TestClockJumpForwardHarmsNothing: the wall clock jumps a year ahead while
// PUBACKs are outstanding (the cloud briefly slow). No ack timeout may fire,
// no session may end, nothing is dead-lettered, everything arrives.
func TestClockJumpForwardHarmsNothing(t *testing.T) {
	e := newEnv(t)
	clock := &jumpingClock{}
	proxy := newStaller(t, e.cloud.Addr())
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(), Clock: clock,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: 3 * time.Second}, nil)
	e.appendN(t, 0, 1000)
	testwait.Until(t, "delivery under way", 10*time.Second, func() bool { return u.Stats().Acked > 0 })
	proxy.stall()
	e.appendN(t, 1000, 1000)
	testwait.Until(t, "PUBACKs outstanding", 5*time.Second, func() bool { return u.Stats().InFlight > 0 })
	clock.jump(365 * 24 * time.Hour)
	testwait.Until(t, "the uplink to see the jump", 5*time.Second, func() bool { return u.Stats().OldestInflight > time.Hour })
	proxy.resume()
	testwait.Until(t, "everything delivered", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	s := u.Stats()
	if s.Reconnects != 0 || s.LastError != "" || s.DeadLettered != 0 || e.queue.Stats().DeadLetters != 0 {
		t.Fatalf("a forward clock jump disturbed delivery: %+v", s)
	}
}

// TestClockJumpBackwardStillTimesOut: with the cloud hung and a PUBACK
// overdue, the wall clock jumps an hour back. The ack timeout must still end
// the session after AckTimeout, OldestInflight must never go negative, and
// the reconnect backoff must not wait for the hour to pass again.
func TestClockJumpBackwardStillTimesOut(t *testing.T) {
	e := newEnv(t)
	clock := &jumpingClock{}
	proxy := newStaller(t, e.cloud.Addr())
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(), Clock: clock,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: 500 * time.Millisecond}, nil)
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.stall()
	e.appendN(t, 0, 10)
	testwait.Until(t, "a PUBACK in flight", 5*time.Second, func() bool { return u.Stats().InFlight > 0 })
	clock.jump(-time.Hour)
	if s := u.Stats(); s.OldestInflight < 0 {
		t.Fatalf("OldestInflight %v after a backwards jump", s.OldestInflight)
	}
	testwait.Until(t, "the ack timeout despite the backwards jump", 3*time.Second, func() bool {
		return strings.Contains(u.Stats().LastError, "no PUBACK")
	})
	clock.jump(-time.Hour)
	proxy.resume()
	testwait.Until(t, "reconnect and deliver", 5*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	if n := e.queue.Stats().DeadLetters; n != 0 {
		t.Fatalf("%d records dead-lettered by a hung cloud and a clock jump", n)
	}
}
