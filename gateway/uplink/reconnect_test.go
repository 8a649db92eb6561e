package uplink

import (
	"github.com/lintel-gw/lintel/gateway/testwait"
	"testing"
	"time"
)

func TestReconnectStartsANewSessionAndStatsTellLastAck(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 20)
	u, _ := e.start(t, Config{})
	testwait.Until(t, "buffer drained", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	s := u.Stats()
	if s.LastAck.IsZero() || time.Since(s.LastAck) > time.Minute {
		t.Fatalf("LastAck %v after 20 PUBACKs", s.LastAck)
	}
	before := s.Reconnects
	u.Reconnect()
	testwait.Until(t, "a new session after Reconnect", 10*time.Second, func() bool {
		s := u.Stats()
		return s.Reconnects > before && s.Connected
	})
	// Records keep flowing on the new session.
	e.appendN(t, 20, 5)
	testwait.Until(t, "buffer drained after reconnect", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
}

func TestRetryAtShownWhileBackingOff(t *testing.T) {
	e := newEnv(t)
	e.cloud.Stop()
	u, _ := e.start(t, Config{})
	testwait.Until(t, "RetryAt set while the cloud is down", 10*time.Second, func() bool { return !u.Stats().RetryAt.IsZero() })
}
