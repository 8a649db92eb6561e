package command

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/demo/building"
)

func (w *world) results(topic string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.published[topic]...)
}

// Issue 11 item 12: an oversized envelope is answered.
func TestOversizedEnvelopeIsAnswered(t *testing.T) {
	w := newWorld(t)
	const topic = "lintel/gw1/doors-io/door_1_release/set"
	r := w.gate.Handle(context.Background(), "cloud", topic, []byte(`{"id":"big","value":"`+strings.Repeat("x", MaxEnvelope)+`"}`))
	if r.OK || r.Error != ReasonTooLarge {
		t.Fatalf("oversized: %+v", r)
	}
	got := w.results(topic + "/result")
	if len(got) != 1 || !strings.Contains(got[0], `"ok":false`) || !strings.Contains(got[0], "too large") {
		t.Fatalf("result topic got %q", got)
	}
}

// Issue 11 item 12: a command dropped for lack of a slot gets a result and
// an audit entry.
func TestRefusedWithoutCheckingIsAnsweredAndAudited(t *testing.T) {
	w := newWorld(t)
	const topic = "lintel/gw1/doors-io/door_1_release/set"
	r := w.gate.Refuse(context.Background(), "local", topic, []byte(`{"id":"busy1","value":true}`), ReasonBusy)
	if r.OK || r.Error != ReasonBusy || r.ID != "busy1" {
		t.Fatalf("refuse: %+v", r)
	}
	got := w.results(topic + "/result")
	if len(got) != 1 || !strings.Contains(got[0], `"id":"busy1"`) || !strings.Contains(got[0], ReasonBusy) {
		t.Fatalf("result topic got %q", got)
	}
	w.gate.Close()
	found := false
	for _, e := range auditLines(t, refusedFile(w.cfg.AuditFile)) {
		found = found || e["id"] == "busy1" && e["error"] == ReasonBusy
	}
	if !found || w.gate.Counts()[ReasonBusy] != 1 {
		t.Fatalf("dropped command not audited/counted (counts %v)", w.gate.Counts())
	}
}

// Issue 11 item 12: once shutdown begins no command is written.
func TestNoCommandRunsOnceStopping(t *testing.T) {
	w := newWorld(t)
	const topic = "lintel/gw1/doors-io/door_1_release/set"
	w.gate.Stop()
	r := w.gate.Handle(context.Background(), "cloud", topic, w.signed(t, w.key, "doors-io", "door_1_release", `true`, time.Minute))
	if r.OK || r.Error != ReasonStopping {
		t.Fatalf("command after Stop: %+v", r)
	}
	if got := w.results(topic + "/result"); len(got) != 1 || !strings.Contains(got[0], ReasonStopping) {
		t.Fatalf("result topic got %q", got)
	}
	// A cancelled context (the gateway's run ended) stops the gate too.
	w.gate.Close()
	w.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := w.gate.Handle(ctx, "cloud", topic, w.signed(t, w.key, "doors-io", "door_1_release", `true`, time.Minute)); r.OK || r.Error != ReasonStopping {
		t.Fatalf("command with the run's context ended: %+v", r)
	}
	if w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("a command ran while the gateway was stopping")
	}
}
