package command

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type world struct {
	gate      *Gate
	cfg       Config
	sim       *building.Building
	doors     *building.DoorController
	key, evil ed25519.PrivateKey
	mu        sync.Mutex
	published map[string][]string
}

func ptr(f float64) *float64 { return &f }

// newWorld runs a gate over real adapters: the Modbus simulator and a door
// controller on a pseudo-terminal.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{published: map[string][]string{}}
	var err error
	if w.sim, err = building.Start(quiet()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.sim.Close() })
	bus, _ := modbus.NewBus(modbus.BusConfig{Name: "plant", URL: w.sim.URL()}, []modbus.Device{{Name: "ahu-1", Unit: building.UnitAHU, Points: []modbus.Point{
		{Name: "fan_enable", Table: modbus.Coil, Address: 10, Type: modbus.Bool, Writable: true, Critical: true},
		{Name: "setpoint", Table: modbus.Holding, Address: 120, Type: modbus.Int16, Scale: 0.1, Writable: true, UnsignedWrites: true, Min: ptr(15), Max: ptr(30)},
		{Name: "supply_temp", Table: modbus.Holding, Address: 100, Type: modbus.Float32},
	}}, {Name: "doors-io", Unit: building.UnitDoorIO, Points: []modbus.Point{
		// Writable, not critical: demo.yaml's door release.
		{Name: "door_1_release", Table: modbus.Coil, Address: 0, Type: modbus.Bool, Writable: true},
	}}}, quiet())

	dir := t.TempDir()
	if w.doors, err = building.StartDoorController(dir); err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(w.doors.Close)
	line, err := serialline.New(serialline.Config{Name: "doors", Port: w.doors.Path, Devices: []serialline.Device{{
		Name: "front-door",
		Commands: []serialline.Command{{Name: "unlock", Send: "UNLOCK {door}\r\n", Critical: true,
			Params: map[string]serialline.Param{"door": {Enum: []string{"1", "2"}}}, Expect: regexp.MustCompile(`^OK UNLOCK`), Timeout: 2 * time.Second},
			// Not critical, no acknowledgement: still needs a signature.
			{Name: "hold", Send: "HOLD {door}\r\n", Params: map[string]serialline.Param{"door": {Enum: []string{"1", "2"}}}},
			{Name: "beep", Send: "BEEP {door}\r\n", UnsignedWrites: true, Params: map[string]serialline.Param{"door": {Enum: []string{"1", "2"}}}},
		},
	}}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	online := make(chan struct{}, 1)
	go func() {
		line.Run(ctx, adapters.PublisherFunc(func(_ context.Context, m adapters.Message) error {
			if m.Point == adapters.StatusPoint && strings.Contains(string(m.Payload), `"online":true`) {
				select {
				case online <- struct{}{}:
				default:
				}
			}
			return nil
		}))
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-online

	_, w.key, _ = ed25519.GenerateKey(rand.Reader)
	_, w.evil, _ = ed25519.GenerateKey(rand.Reader)
	w.cfg = Config{
		GatewayID: "gw1",
		Targets:   map[string]Target{"ahu-1": bus, "doors-io": bus, "front-door": line},
		Signers:   []Signer{{Name: "ops", Key: w.key.Public().(ed25519.PublicKey)}},
		NonceFile: filepath.Join(dir, "nonces.db"),
		AuditFile: filepath.Join(dir, "commands.log"),
		Publish: func(_ context.Context, topic string, payload []byte) error {
			w.mu.Lock()
			w.published[topic] = append(w.published[topic], string(payload))
			w.mu.Unlock()
			return nil
		},
		RatePerMinute: 5,
	}
	w.open(t)
	return w
}

func (w *world) open(t *testing.T) {
	t.Helper()
	g, err := Open(w.cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	w.gate = g
	t.Cleanup(func() { g.Close() })
}

func (w *world) signed(t *testing.T, key ed25519.PrivateKey, device, point, value string, ttl time.Duration) []byte {
	t.Helper()
	e, err := NewEnvelope(key, "gw1", device, point, json.RawMessage(value), ttl)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	return b
}

func unlocks(d *building.DoorController) int {
	n := 0
	for _, l := range d.Received() {
		if strings.HasPrefix(l, "UNLOCK") {
			n++
		}
	}
	return n
}

func TestHostileCommandsAreRefusedAndDevicesUntouched(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const door, fan = "lintel/gw1/front-door/unlock/set", "lintel/gw1/ahu-1/fan_enable/set"

	tampered := func() []byte {
		var e Envelope
		json.Unmarshal(w.signed(t, w.key, "front-door", "unlock", `{"door":"1"}`, time.Minute), &e)
		e.Value = json.RawMessage(`{"door":"2"}`) // signed for door 1, sent for door 2
		b, _ := json.Marshal(e)
		return b
	}
	expired := func() []byte {
		e := Envelope{ID: "x1", Value: json.RawMessage(`{"door":"2"}`), Expires: time.Now().Add(-time.Second).UTC().Format(time.RFC3339), Nonce: "n-expired"}
		Sign(w.key, "gw1", "front-door", "unlock", &e)
		b, _ := json.Marshal(e)
		return b
	}
	otherGateway := func() []byte {
		e, _ := NewEnvelope(w.key, "gw2", "front-door", "unlock", json.RawMessage(`{"door":"2"}`), time.Minute)
		b, _ := json.Marshal(e)
		return b
	}
	cases := []struct {
		name, topic string
		payload     []byte
		want        string
	}{
		{"unsigned", door, []byte(`{"id":"u1","value":{"door":"2"}}`), ReasonUnsigned},
		{"wrong signer", door, w.signed(t, w.evil, "front-door", "unlock", `{"door":"2"}`, time.Minute), ReasonBadSignature},
		{"wrong signer on the fan", fan, w.signed(t, w.evil, "ahu-1", "fan_enable", `false`, time.Minute), ReasonBadSignature},
		{"bad signature (value changed)", door, tampered(), ReasonBadSignature},
		{"garbage signature", door, []byte(`{"id":"g1","value":{"door":"2"},"expires":"2030-01-01T00:00:00Z","nonce":"n","sig":"AAAA"}`), ReasonBadSignature},
		{"expired", door, expired(), ReasonExpired},
		{"too far in the future", door, w.signed(t, w.key, "front-door", "unlock", `{"door":"2"}`, time.Hour), ReasonTooFarAhead},
		{"other gateway", "lintel/gw2/front-door/unlock/set", otherGateway(), ReasonOtherGateway},
		{"unknown device", "lintel/gw1/back-door/unlock/set", w.signed(t, w.key, "back-door", "unlock", `{"door":"2"}`, time.Minute), ReasonUnknownTarget},
		{"unknown command", "lintel/gw1/front-door/open-all/set", w.signed(t, w.key, "front-door", "open-all", `{}`, time.Minute), ReasonUnknownTarget},
		{"non-writable point", "lintel/gw1/ahu-1/supply_temp/set", []byte(`{"id":"s1","value":20}`), ReasonNotWritable},
		{"out of range", "lintel/gw1/ahu-1/setpoint/set", []byte(`{"id":"r1","value":99}`), ReasonInvalidValue},
		{"door not in enum", door, w.signed(t, w.key, "front-door", "unlock", `{"door":"3"}`, time.Minute), ReasonInvalidValue},
		{"command injection", door, w.signed(t, w.key, "front-door", "unlock", `{"door":"2\r\nUNLOCK 1"}`, time.Minute), ReasonInvalidValue},
		{"malformed JSON", door, []byte(`{"id":"m1","value":`), ReasonMalformed},
		{"unknown member", door, []byte(`{"id":"m2","value":{"door":"2"},"admin":true}`), ReasonMalformed},
		{"oversized", door, []byte(`{"id":"big","value":"` + strings.Repeat("x", MaxEnvelope) + `"}`), ReasonTooLarge},
		{"not a command topic", "lintel/gw1/front-door/unlock", []byte(`{}`), ReasonBadTopic},
	}
	for _, c := range cases {
		r := w.gate.Handle(ctx, "cloud", c.topic, c.payload)
		if r.OK || !strings.HasPrefix(r.Error, c.want) {
			t.Errorf("%s: %+v, want refusal %q", c.name, r, c.want)
		}
	}
	if n := unlocks(w.doors); n != 0 {
		t.Fatalf("the door controller saw %d UNLOCK commands from refused attempts", n)
	}
	if !w.sim.Coil(building.UnitAHU, 10) {
		t.Fatal("the fan coil changed after refused commands")
	}

	// A valid command works; the same envelope again is a replay, also
	// after a restart of the gate.
	valid := w.signed(t, w.key, "front-door", "unlock", `{"door":"2"}`, time.Minute)
	if r := w.gate.Handle(ctx, "cloud", door, valid); !r.OK {
		t.Fatalf("valid unlock refused: %+v", r)
	}
	if r := w.gate.Handle(ctx, "local", door, valid); r.OK || r.Error != ReasonReplayed {
		t.Fatalf("replay: %+v", r)
	}
	w.gate.Close()
	w.open(t)
	if r := w.gate.Handle(ctx, "cloud", door, valid); r.OK || r.Error != ReasonReplayed {
		t.Fatalf("replay after restart: %+v", r)
	}
	if n := unlocks(w.doors); n != 1 {
		t.Fatalf("door controller saw %d UNLOCKs, want exactly the one valid command", n)
	}

	// The first refusals of a window were answered on their result topic;
	// every attempt is in the audit: the accepted one in commands.log, each
	// refusal in commands-refused.log, one by one or in a window's summary.
	w.mu.Lock()
	results := w.published["lintel/gw1/front-door/unlock/set/result"]
	w.mu.Unlock()
	if len(results) < refusalBurst || !strings.Contains(results[0], `"error":"signature missing"`) {
		t.Fatalf("results %q", results)
	}
	w.gate.Close()
	if got := auditLines(t, w.cfg.AuditFile); len(got) != 1 || got[0]["ok"] != "true" {
		t.Fatalf("accepted-commands log %v", got)
	}
	refused := 0
	for _, e := range auditLines(t, refusedFile(w.cfg.AuditFile)) {
		if n, ok := e["refused"].(float64); ok {
			refused += int(n)
		} else {
			refused++
		}
	}
	if refused != len(cases)+2 {
		t.Fatalf("refusals log accounts for %d refusals, want %d", refused, len(cases)+2)
	}
}

func received(d *building.DoorController, prefix string) int {
	n := 0
	for _, l := range d.Received() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// Issue 11 item 1: a writable point that is not critical still needs a
// signed, unexpired, unused command, from the cloud and from local clients.
func TestEveryWriteNeedsASignature(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const release, hold = "lintel/gw1/doors-io/door_1_release/set", "lintel/gw1/front-door/hold/set"
	expired := func(device, point, value string) []byte {
		e := Envelope{ID: "x1", Value: json.RawMessage(value), Expires: time.Now().Add(-time.Second).UTC().Format(time.RFC3339), Nonce: "n-expired-" + point}
		Sign(w.key, "gw1", device, point, &e)
		b, _ := json.Marshal(e)
		return b
	}
	refused := []struct {
		name, topic string
		payload     []byte
		want        string
	}{
		{"unsigned release", release, []byte(`{"id":"x1","value":true}`), ReasonUnsigned},
		{"forged release", release, w.signed(t, w.evil, "doors-io", "door_1_release", `true`, time.Minute), ReasonBadSignature},
		{"expired release", release, expired("doors-io", "door_1_release", `true`), ReasonExpired},
		{"unsigned hold", hold, []byte(`{"id":"h1","value":{"door":"1"}}`), ReasonUnsigned},
		{"forged hold", hold, w.signed(t, w.evil, "front-door", "hold", `{"door":"1"}`, time.Minute), ReasonBadSignature},
		{"expired hold", hold, expired("front-door", "hold", `{"door":"1"}`), ReasonExpired},
	}
	for _, source := range []string{"cloud", "local"} {
		for _, c := range refused {
			if r := w.gate.Handle(ctx, source, c.topic, c.payload); r.OK || !strings.HasPrefix(r.Error, c.want) {
				t.Errorf("%s from %s: %+v, want refusal %q", c.name, source, r, c.want)
			}
		}
	}
	if w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("the door release coil moved on an unauthenticated command")
	}
	if n := received(w.doors, "HOLD"); n != 0 {
		t.Fatalf("the door controller saw %d HOLD commands from refused attempts", n)
	}

	on := w.signed(t, w.key, "doors-io", "door_1_release", `true`, time.Minute)
	if r := w.gate.Handle(ctx, "cloud", release, on); !r.OK {
		t.Fatalf("signed release refused: %+v", r)
	}
	if !w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("signed release did not move the coil")
	}
	if r := w.gate.Handle(ctx, "local", release, w.signed(t, w.key, "doors-io", "door_1_release", `false`, time.Minute)); !r.OK {
		t.Fatalf("signed re-lock refused: %+v", r)
	}
	if r := w.gate.Handle(ctx, "cloud", release, on); r.OK || r.Error != ReasonReplayed {
		t.Fatalf("replayed release: %+v", r)
	}
	if w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("a replayed release moved the coil")
	}
	h := w.signed(t, w.key, "front-door", "hold", `{"door":"1"}`, time.Minute)
	if r := w.gate.Handle(ctx, "local", hold, h); !r.OK {
		t.Fatalf("signed hold refused: %+v", r)
	}
	if r := w.gate.Handle(ctx, "local", hold, h); r.OK || r.Error != ReasonReplayed {
		t.Fatalf("replayed hold: %+v", r)
	}
	testwait.Until(t, "the signed HOLD at the door controller", 5*time.Second, func() bool { return received(w.doors, "HOLD") == 1 })
	if n := received(w.doors, "HOLD"); n != 1 {
		t.Fatalf("door controller saw %d HOLDs, want exactly the one signed command", n)
	}

	// Configured unsigned_writes: an unsigned command is accepted.
	if r := w.gate.Handle(ctx, "cloud", "lintel/gw1/front-door/beep/set", []byte(`{"id":"b1","value":{"door":"2"}}`)); !r.OK {
		t.Fatalf("unsigned beep on an unsigned_writes command: %+v", r)
	}
	testwait.Until(t, "BEEP 2 at the door controller", 5*time.Second, func() bool { return received(w.doors, "BEEP 2") == 1 })
}

func TestNonCriticalWriteAndRateLimit(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for i := range 5 {
		if r := w.gate.Handle(ctx, "local", "lintel/gw1/ahu-1/setpoint/set", []byte(`{"id":"s","value":21.5}`)); !r.OK {
			t.Fatalf("write %d: %+v", i, r)
		}
	}
	if got := w.sim.Holding(building.UnitAHU, 120); got != 215 {
		t.Fatalf("setpoint register %d, want 215", got)
	}
	if r := w.gate.Handle(ctx, "local", "lintel/gw1/ahu-1/setpoint/set", []byte(`{"id":"s6","value":22}`)); r.Error != ReasonRateLimited {
		t.Fatalf("6th write in a minute: %+v", r)
	}
	if got := w.sim.Holding(building.UnitAHU, 120); got != 215 {
		t.Fatalf("rate-limited write changed the register to %d", got)
	}
	// A signed critical write moves the coil.
	if r := w.gate.Handle(ctx, "cloud", "lintel/gw1/ahu-1/fan_enable/set", w.signed(t, w.key, "ahu-1", "fan_enable", `false`, time.Minute)); !r.OK {
		t.Fatalf("signed fan write: %+v", r)
	}
	if w.sim.Coil(building.UnitAHU, 10) {
		t.Fatal("coil still on after a valid signed write")
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"1","value":{"door":"2"},"expires":"2026-11-28T04:41:10Z","nonce":"n","sig":"AAAA"}`))
	f.Add([]byte(`{"id":"","value":null}`))
	f.Add([]byte(`{"id":"x1","value":true}`))
	f.Add([]byte(`{"id":"a","id":"b","value":1}`))
	f.Add([]byte(`{"ID":"a","value":1,"ſig":"AAAA"}`))
	f.Add([]byte(`{"id":"a","value":{"door":"1","door":"2"}}`))
	f.Add([]byte(`{"id":"a","value":[9007199254740993,1.0,-0,1e400,{"b":1,"a":2}]}`))
	f.Add([]byte(`{"id":"a","value":"\u2028\ud800","nonce":"a\nb"}`))
	f.Add([]byte(`{"id":"big","value":"` + strings.Repeat("x", MaxEnvelope) + `"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		e, err := ParseEnvelope(payload)
		if err != nil {
			return
		}
		if e.ID == "" || len(e.Value) == 0 || len(payload) > MaxEnvelope {
			t.Fatalf("accepted %q as %+v", payload, e)
		}
		c, err := canonicalJSON(e.Value)
		if err != nil {
			t.Fatalf("accepted %q but its value has no canonical form: %v", payload, err)
		}
		again, err := canonicalJSON(c)
		if err != nil || !json.Valid(c) || string(again) != string(c) {
			t.Fatalf("canonical form %q of %q is not a fixed point: %q, %v", c, e.Value, again, err)
		}
		var top map[string]json.RawMessage
		json.Unmarshal(payload, &top)
		for k := range top {
			if !members[k] {
				t.Fatalf("accepted member %q", k)
			}
		}
	})
}

func TestAuditLogRotates(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "commands-refused.log") // a refusal goes here
	g, err := Open(Config{GatewayID: "gw1", NonceFile: filepath.Join(dir, "nonces.db"), AuditFile: filepath.Join(dir, "commands.log")}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	full := strings.Repeat("x", auditMaxBytes) + "\n"
	os.WriteFile(audit, []byte(full), 0o600)
	os.WriteFile(audit+".1", []byte("older\n"), 0o600)
	g.Handle(context.Background(), "local", "lintel/gw1/door/unlock/set", []byte(`{"id":"r1","value":1}`))
	if b, _ := os.ReadFile(audit + ".2"); string(b) != "older\n" {
		t.Fatalf("commands.log.1 not shifted to .2: %q", b)
	}
	if b, _ := os.ReadFile(audit + ".1"); string(b) != full {
		t.Fatal("full log not rotated to commands.log.1")
	}
	b, _ := os.ReadFile(audit)
	if fi, _ := os.Stat(audit); !strings.Contains(string(b), `"id":"r1"`) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new commands.log %q (mode %v)", b, fi.Mode().Perm())
	}
}
