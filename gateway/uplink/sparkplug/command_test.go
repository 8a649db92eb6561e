package sparkplug

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// ahu is a writable device: "on" allows unsigned writes, "sp" needs a
// signature.
type ahu struct {
	mu     sync.Mutex
	writes []string
}

func (a *ahu) Write(_ context.Context, w adapters.WriteRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes = append(a.writes, w.Point+"="+string(w.Value))
	return nil
}

func (a *ahu) CheckWrite(w adapters.WriteRequest) (bool, error) {
	switch w.Point {
	case "on":
		return false, nil
	case "sp":
		return true, nil
	}
	return false, adapters.ErrUnknownTarget
}

func (a *ahu) done() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.writes...)
}

// TestDCMDThroughTheGate: a DCMD metric value is an unsigned write (taken
// only for the unsigned_writes point); a signed Lintel envelope in the
// metric property lintel_envelope is checked by the same gate (signature,
// nonce: a replay is refused); every result comes back to the host as an
// NDATA lintel/command_result.
func TestDCMDThroughTheGate(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "")
	pub, priv, _ := ed25519.GenerateKey(nil)
	dev := &ahu{}
	gate, err := command.Open(command.Config{GatewayID: "gw1", Targets: map[string]command.Target{"ahu": dev},
		Signers:   []command.Signer{{Name: "ops", Key: pub}},
		NonceFile: filepath.Join(r.dir, "nonces.db"), AuditFile: filepath.Join(r.dir, "commands.log"),
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			return r.queue.Append(ctx, buffer.Record{Topic: topic, Payload: payload})
		}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gate.Close() })
	r.startEdge(t, Config{OnCommand: func(topic string, payload []byte) {
		gate.Handle(context.Background(), "cloud", topic, payload)
	}}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })

	dcmd := func(m Metric) {
		p := Payload{Timestamp: uint64(time.Now().UnixNano()), Metrics: []Metric{m}}
		h.c.Publish("spBv1.0/site/DCMD/gw1/ahu", 0, false, p.Marshal()).Wait()
	}
	results := func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]string(nil), h.results...)
	}
	dcmd(Metric{Name: "on", Datatype: Boolean, Value: true})
	testwait.Until(t, "unsigned write", 5*time.Second, func() bool { return len(dev.done()) == 1 && len(results()) == 1 })
	dcmd(Metric{Name: "sp", Datatype: Double, Value: 21.5})
	testwait.Until(t, "refusal", 5*time.Second, func() bool { return len(results()) == 2 })

	env, err := command.NewEnvelope(priv, "gw1", "ahu", "sp", json.RawMessage(`21.5`), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	envJSON, _ := json.Marshal(env)
	signed := Metric{Name: "sp", Datatype: Double, Value: 21.5,
		Properties: &PropertySet{Keys: []string{PropEnvelope}, Values: []PropertyValue{{Type: String, Value: string(envJSON)}}}}
	dcmd(signed)
	testwait.Until(t, "signed write", 5*time.Second, func() bool { return len(dev.done()) == 2 && len(results()) == 3 })
	dcmd(signed)
	testwait.Until(t, "replay refused", 5*time.Second, func() bool { return len(results()) == 4 })
	h.noProblems(t)

	if got := strings.Join(dev.done(), " "); got != "on=true sp=21.5" {
		t.Fatalf("writes %q", got)
	}
	want := []struct {
		ok   bool
		text string
	}{{true, `"point":"on"`}, {false, "sign"}, {true, `"point":"sp"`}, {false, "nonce already used"}}
	for i, res := range results() {
		var v struct {
			OK     bool   `json:"ok"`
			Device string `json:"device"`
		}
		json.Unmarshal([]byte(res), &v)
		if v.OK != want[i].ok || v.Device != "ahu" || !strings.Contains(strings.ToLower(res), want[i].text) {
			t.Errorf("result %d: %s, want ok=%v with %q", i, res, want[i].ok, want[i].text)
		}
	}
}
