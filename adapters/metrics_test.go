package adapters

import (
	"testing"
	"time"
)

func TestDeviceStateCircuit(t *testing.T) {
	now := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		retry time.Time
		want  string
	}{
		{time.Time{}, CircuitClosed},
		{now.Add(time.Second), CircuitOpen},
		{now, CircuitHalfOpen},
		{now.Add(-time.Second), CircuitHalfOpen},
	} {
		if got := (DeviceState{RetryAt: c.retry}).Circuit(now); got != c.want {
			t.Errorf("RetryAt %v: circuit %q, want %q", c.retry, got, c.want)
		}
	}
}

// TestHealthKeepsTheLastErrorWhenTheDeviceAnswers: failures count up and
// back off; an answer ends both but keeps the last error and its time.
func TestHealthKeepsTheLastErrorWhenTheDeviceAnswers(t *testing.T) {
	var h Health
	if s := h.State("meter", false); s != (DeviceState{Name: "meter"}) {
		t.Fatalf("new device state %+v, want empty", s)
	}
	t0 := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	h.Failed("timeout", t0)
	h.Failed("CRC error", t0.Add(time.Second))
	h.BackOff(t0.Add(time.Minute))
	s := h.State("meter", false)
	if s.LastError != "CRC error" || !s.LastErrorAt.Equal(t0.Add(time.Second)) || s.Failures != 2 || !s.RetryAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after two failures %+v", s)
	}
	h.Answered()
	s = h.State("meter", true)
	if !s.Online || s.Failures != 0 || !s.RetryAt.IsZero() || s.LastError != "CRC error" || !s.LastErrorAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after an answer %+v, want online, no failures or back-off, last error kept", s)
	}
	h.Error("frame matched no event", t0.Add(2*time.Second))
	if s = h.State("meter", true); s.Failures != 0 || s.LastError != "frame matched no event" {
		t.Fatalf("after a frame error %+v, want it as last error without a failure", s)
	}
}
