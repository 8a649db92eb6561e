package uplink

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// runUplink starts an uplink on the env's queue with cfg as given (no test
// defaults) and stops it at cleanup.
func (e *env) runUplink(t *testing.T, cfg Config, src Source) *Uplink {
	t.Helper()
	return e.runUplinkStoppable(t, cfg, src).Uplink
}

// running is an uplink under test; stop ends Run and waits for it.
type running struct {
	*Uplink
	stop func()
}

func (e *env) runUplinkStoppable(t *testing.T, cfg Config, src Source) running {
	t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = e.clientTLS(t, e.ca)
	}
	if cfg.GatewayID == "" {
		cfg.GatewayID = "gw1"
	}
	if src == nil {
		src = e.queue
	}
	u, err := New(cfg, src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return running{u, stop}
}

// TestFlappingCloudKeepsBackoffShort: a cloud that is up only for a short
// burst at a time must still be drained quickly. Every session delivers
// PUBACKs, so the backoff must start over instead of growing to MaxBackoff.
func TestFlappingCloudKeepsBackoffShort(t *testing.T) {
	e := newEnv(t)
	const total = 3000
	e.appendN(t, 0, total)
	// ~16 KiB towards the broker per connection: the handshake plus a few
	// hundred records, so draining takes many sessions.
	flap := newFlapper(t, e.cloud.Addr(), 16<<10, 100*time.Millisecond)
	u := e.runUplink(t, Config{Broker: "mqtts://" + flap.l.Addr().String(),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 10 * time.Second,
		ConnectTimeout: time.Second, AckTimeout: time.Second}, nil)
	testwait.Until(t, "buffer drained through a flapping cloud", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	if n := flap.accepted.Load(); n < 5 {
		t.Fatalf("only %d connections: the cloud did not flap enough to test backoff", n)
	}
	t.Logf("%d records through %d sessions, %d reconnects", total, flap.accepted.Load(), u.Stats().Reconnects)
}

// TestHungCloudShowsOverdueAtOnce: a cloud that stops answering keeps the
// connection up, but Stats.OldestInflight must show the overdue PUBACK
// within seconds, long before the 30 s ack timeout ends the session.
func TestHungCloudShowsOverdueAtOnce(t *testing.T) {
	e := newEnv(t)
	proxy := newStaller(t, e.cloud.Addr())
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: 30 * time.Second}, nil)
	e.appendN(t, 0, 10)
	testwait.Until(t, "first records delivered", 10*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	if s := u.Stats(); s.OldestInflight != 0 {
		t.Fatalf("nothing in flight but OldestInflight %v", s.OldestInflight)
	}

	proxy.stall()
	e.appendN(t, 10, 10)
	testwait.Until(t, "an overdue PUBACK to show", 5*time.Second, func() bool { return u.Stats().OldestInflight > time.Second })
	if s := u.Stats(); !s.Connected || s.Reconnects != 0 {
		t.Fatalf("stats %+v: want still connected in the first session", s)
	}

	proxy.resume()
	testwait.Until(t, "records delivered after the cloud came back", 10*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	testwait.Until(t, "OldestInflight back to 0", 5*time.Second, func() bool { return u.Stats().OldestInflight == 0 })
}

// TestAckTimeoutIsConfigurable: with a short AckTimeout a hung cloud ends
// the session quickly; after it answers again everything arrives.
func TestAckTimeoutIsConfigurable(t *testing.T) {
	e := newEnv(t)
	proxy := newStaller(t, e.cloud.Addr())
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: 700 * time.Millisecond}, nil)
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.stall()
	e.appendN(t, 0, 20)
	testwait.Until(t, "the ack timeout to end the session", 5*time.Second, func() bool {
		return strings.Contains(u.Stats().LastError, "no PUBACK")
	})
	proxy.resume()
	testwait.Until(t, "records delivered after the cloud came back", 15*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	got := seqsReceived(e.cloud)
	for seq := uint64(1); seq <= 20; seq++ {
		if got[seq] == 0 {
			t.Fatalf("seq %d lost", seq)
		}
	}
}
