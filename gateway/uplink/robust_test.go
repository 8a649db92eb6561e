package uplink

import (
	"context"
	"testing"
	"time"
)

// runUplink starts an uplink on the env's queue with cfg as given (no test
// defaults) and stops it at cleanup.
func (e *env) runUplink(t *testing.T, cfg Config, src Source) *Uplink {
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
	t.Cleanup(func() { cancel(); <-done })
	return u
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
	waitUntil(t, "buffer drained through a flapping cloud", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	if n := flap.accepted.Load(); n < 5 {
		t.Fatalf("only %d connections: the cloud did not flap enough to test backoff", n)
	}
	t.Logf("%d records through %d sessions, %d reconnects", total, flap.accepted.Load(), u.Stats().Reconnects)
}
