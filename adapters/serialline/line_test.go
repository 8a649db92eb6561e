package serialline

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/privacy"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type capture struct {
	mu   sync.Mutex
	msgs []adapters.Message
}

func (c *capture) Publish(_ context.Context, m adapters.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	return nil
}

func (c *capture) find(ok func(adapters.Message) bool) (adapters.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if ok(c.msgs[i]) {
			return c.msgs[i], true
		}
	}
	return adapters.Message{}, false
}

func (c *capture) waitFor(t *testing.T, what string, ok func(adapters.Message) bool) adapters.Message {
	t.Helper()
	var m adapters.Message
	testwait.Until(t, what, 10*time.Second, func() bool {
		var found bool
		m, found = c.find(ok)
		return found
	})
	return m
}

func statusIs(online bool) func(adapters.Message) bool {
	want := `{"online":false`
	if online {
		want = `{"online":true`
	}
	return func(m adapters.Message) bool {
		return m.Point == adapters.StatusPoint && strings.HasPrefix(string(m.Payload), want)
	}
}

var siteKey = privacy.NewKey([]byte("test site key, 32 bytes long!!!!"))

func frontDoor() Device {
	return Device{
		Name: "front-door",
		Events: []Event{
			{Name: "access", Match: regexp.MustCompile(`^EVT (?P<door>\d+) (?P<event>GRANTED|DENIED|FORCED) CARD=(?P<card>\d+) NAME=(?P<name>.*)$`),
				Privacy: map[string]privacy.Rule{"card": privacy.Pseudonymize, "name": privacy.Drop}},
			{Name: "door", Match: regexp.MustCompile(`^DOOR (?P<door>\d+) (?P<state>OPEN|CLOSED)$`),
				Point: "door_{door}_open", Value: "state", Values: map[string]any{"OPEN": true, "CLOSED": false}},
		},
		Requests: []Request{{Send: []byte("STATUS?\r\n"), Every: 100 * time.Millisecond, Expect: regexp.MustCompile(`^STATUS OK`), Timeout: 300 * time.Millisecond}},
		Commands: []Command{{Name: "unlock", Send: "UNLOCK {door}\r\n", Critical: true,
			Params: map[string]Param{"door": {Enum: []string{"1", "2"}}}, Expect: regexp.MustCompile(`^OK UNLOCK`), Timeout: time.Second}},
	}
}

func startLine(t *testing.T) (*building.DoorController, *Line, *capture) {
	t.Helper()
	ctrl, err := building.StartDoorController(t.TempDir())
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(ctrl.Close)
	line, err := New(Config{Name: "doors", Port: ctrl.Path, Devices: []Device{frontDoor()}, Key: siteKey, OfflineAfter: 2}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { line.Run(ctx, c); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c.waitFor(t, "device online", statusIs(true))
	return ctrl, line, c
}

func TestAccessEventsArePrivateAndStatesMapped(t *testing.T) {
	ctrl, _, c := startLine(t)
	ctrl.Badge(2, "GRANTED", "0012345", "Alice Example")
	ctrl.Emit("DOOR 2 OPEN")
	ev := c.waitFor(t, "access event", func(m adapters.Message) bool { return m.Point == "access" })
	var payload struct {
		TS     string            `json:"ts"`
		Fields map[string]string `json:"fields"`
	}
	if err := json.Unmarshal(ev.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	f := payload.Fields
	if f["door"] != "2" || f["event"] != "GRANTED" || f["card"] != siteKey.Pseudonym("0012345") || len(f) != 3 || payload.TS == "" {
		t.Fatalf("event %s", ev.Payload)
	}
	if strings.Contains(string(ev.Payload), "Alice") || strings.Contains(string(ev.Payload), "0012345") || !ev.High {
		t.Fatalf("raw personal data or wrong priority in %s (high=%v)", ev.Payload, ev.High)
	}
	door := c.waitFor(t, "door state", func(m adapters.Message) bool { return m.Point == "door_2_open" })
	if !strings.HasPrefix(string(door.Payload), `{"v":true,`) || !door.Retain {
		t.Fatalf("door state %s retain=%v", door.Payload, door.Retain)
	}
}

func TestGarbageAndOverlongLinesAreSurvived(t *testing.T) {
	ctrl, line, c := startLine(t)
	ctrl.Send([]byte("\x00\xff\xfe garbage without end "))
	ctrl.Send([]byte(strings.Repeat("A", 5000) + "\r\n"))
	ctrl.Emit("EVT 1 DENIED CARD=0099999 NAME=Mallory")
	ctrl.Emit("no event looks like this")
	ev := c.waitFor(t, "event after garbage", func(m adapters.Message) bool {
		return m.Point == "access" && strings.Contains(string(m.Payload), `"event":"DENIED"`)
	})
	if strings.Contains(string(ev.Payload), "Mallory") {
		t.Fatal("name leaked")
	}
	if line.Unmatched.Load() == 0 {
		t.Fatal("unmatched frames not counted")
	}
}

func TestUnplugAndReplug(t *testing.T) {
	ctrl, _, c := startLine(t)
	ctrl.Unplug()
	c.waitFor(t, "offline after unplug", statusIs(false))
	if err := ctrl.Replug(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.msgs = nil
	c.mu.Unlock()
	c.waitFor(t, "online after replug", statusIs(true))
	// No pause: the line reports online only once Open returned, and
	// go.bug.st/serial puts the port in raw mode inside Open.
	ctrl.Emit("DOOR 1 CLOSED")
	c.waitFor(t, "events after replug", func(m adapters.Message) bool { return m.Point == "door_1_open" })
}

func TestSilentControllerGoesOffline(t *testing.T) {
	ctrl, _, c := startLine(t)
	ctrl.SetSilent(true)
	off := c.waitFor(t, "offline after unanswered requests", statusIs(false))
	if !strings.Contains(string(off.Payload), "no answer") {
		t.Fatalf("status %s", off.Payload)
	}
	ctrl.SetSilent(false)
	c.waitFor(t, "back online", statusIs(true))
}

func TestCommandsAreValidatedBeforeAnythingIsSent(t *testing.T) {
	ctrl, line, _ := startLine(t)
	ctx := context.Background()
	write := func(value string) error {
		return line.Write(ctx, adapters.WriteRequest{Device: "front-door", Point: "unlock", Value: json.RawMessage(value)})
	}
	for _, bad := range []string{`{"door":"3"}`, `{"door":"2\r\nUNLOCK 1"}`, `{}`, `{"door":"2","extra":"x"}`, `"2"`, `{"door":{"x":1}}`} {
		if err := write(bad); !errors.Is(err, adapters.ErrInvalidValue) {
			t.Errorf("command %s: %v, want adapters.ErrInvalidValue", bad, err)
		}
	}
	if err := line.Write(ctx, adapters.WriteRequest{Device: "front-door", Point: "open-all"}); !errors.Is(err, adapters.ErrUnknownTarget) {
		t.Errorf("unknown command: %v", err)
	}
	for _, l := range ctrl.Received() {
		if strings.HasPrefix(l, "UNLOCK") {
			t.Fatalf("controller received %q from a refused command", l)
		}
	}
	if err := write(`{"door":2}`); err != nil {
		t.Fatalf("valid unlock: %v", err)
	}
	found := false
	for _, l := range ctrl.Received() {
		found = found || l == "UNLOCK 2"
	}
	if !found {
		t.Fatalf("controller received %q", ctrl.Received())
	}
	if critical, err := line.CheckWrite(adapters.WriteRequest{Device: "front-door", Point: "unlock", Value: json.RawMessage(`{"door":"1"}`)}); err != nil || !critical {
		t.Fatalf("unlock: critical=%v err=%v, want a valid critical command", critical, err)
	}
}

func FuzzEvents(f *testing.F) {
	f.Add("EVT 2 GRANTED CARD=0012345 NAME=Alice Example")
	f.Add("DOOR 1 OPEN")
	f.Add("EVT 9 FORCED CARD= NAME=")
	line, err := New(Config{Name: "fuzz", Devices: []Device{frontDoor()}, Key: siteKey}, quiet())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame string) {
		c := &capture{}
		line.handle(context.Background(), []byte(frame), c)
		for _, m := range c.msgs {
			if !json.Valid(m.Payload) {
				t.Fatalf("invalid JSON %q", m.Payload)
			}
			if m.Point == "access" {
				var p struct{ Fields map[string]string }
				json.Unmarshal(m.Payload, &p)
				if _, has := p.Fields["name"]; has {
					t.Fatal("dropped field published")
				}
				if card := p.Fields["card"]; !strings.HasPrefix(card, "p:") {
					t.Fatalf("card %q not pseudonymized", card)
				}
			}
		}
	})
}

func TestStableNames(t *testing.T) {
	dir := t.TempDir()
	dev := dir + "/ttyUSB0"
	os.WriteFile(dev, nil, 0o600)
	byID := dir + "/by-id"
	os.Mkdir(byID, 0o700)
	os.Symlink(dev, byID+"/usb-FTDI_FT232R_A10K1234-if00-port0")
	got := StableNames(byID)
	if got[dev] != byID+"/usb-FTDI_FT232R_A10K1234-if00-port0" {
		t.Fatalf("stable names %v", got)
	}
	if _, err := Ports(byID); err != nil {
		t.Fatalf("listing ports: %v", err)
	}
}

// countingHandler counts log records by message.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// Issue 11 item 2: a captured field must not forge topic levels.
func TestCapturedFieldCannotForgeATopic(t *testing.T) {
	logs := &countingHandler{}
	dev := Device{Name: "front-door", Events: []Event{{Name: "door", Match: regexp.MustCompile(`^DOOR (?P<door>\S*) (?P<state>OPEN|CLOSED)$`),
		Point: "door_{door}_open", Value: "state", Values: map[string]any{"OPEN": true, "CLOSED": false}}}}
	line, err := New(Config{Name: "doors", Devices: []Device{dev}}, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	for _, frame := range []string{"DOOR 1/+/# OPEN", "DOOR + OPEN", "DOOR # CLOSED", "DOOR $SYS OPEN", "DOOR 1\x00 OPEN", "DOOR 1/x OPEN"} {
		line.handle(context.Background(), []byte(frame), c)
	}
	line.handle(context.Background(), []byte("DOOR 2 OPEN"), c)
	if len(c.msgs) != 1 || c.msgs[0].Point != "door_2_open" {
		t.Fatalf("published %+v, want only door_2_open", c.msgs)
	}
	if got := line.Stats().BadTopics; got != 6 {
		t.Fatalf("BadTopics = %d, want 6", got)
	}
	if n := logs.count("event would publish on an invalid topic; dropped"); n != 1 {
		t.Fatalf("logged %d times, want once per event", n)
	}
}

func FuzzEventTopicTemplate(f *testing.F) {
	f.Add("DOOR 1/+/# OPEN")
	f.Add("DOOR 1 OPEN")
	f.Add("DOOR \xff\xfe CLOSED")
	f.Add("DOOR $SYS OPEN")
	dev := Device{Name: "front-door", Events: []Event{{Name: "door", Match: regexp.MustCompile(`^DOOR (?P<door>.*) (?P<state>OPEN|CLOSED)$`),
		Point: "door_{door}_{state}", Value: "state"}}}
	line, err := New(Config{Name: "fuzz", Devices: []Device{dev}}, quiet())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame string) {
		c := &capture{}
		before := line.Stats().BadTopics
		line.handle(context.Background(), []byte(frame), c)
		for _, m := range c.msgs {
			if err := adapters.ValidTopicLevel(m.Point); err != nil {
				t.Fatalf("published on point %q: %v", m.Point, err)
			}
			if strings.Count("lintel/gw/"+m.Device+"/"+m.Point, "/") != 3 {
				t.Fatalf("point %q adds topic levels", m.Point)
			}
		}
		if len(c.msgs) == 0 && dev.Events[0].Match.MatchString(strings.ToValidUTF8(frame, "\uFFFD")) && line.Stats().BadTopics == before {
			t.Fatalf("frame %q matched, published nothing and was not counted", frame)
		}
	})
}

// The gateway passes the site key as the line's Minimiser, and the rule the
// line checks for is the policy's own.
var _ Minimiser = (*privacy.Key)(nil)

func TestPseudonymizeIsThePolicysRule(t *testing.T) {
	if Pseudonymize != privacy.Pseudonymize {
		t.Fatalf("serialline.Pseudonymize = %q, privacy.Pseudonymize = %q", Pseudonymize, privacy.Pseudonymize)
	}
	if _, err := New(Config{Name: "x", Devices: []Device{frontDoor()}}, quiet()); err == nil || !strings.Contains(err.Error(), "pseudonymize needs the site key") {
		t.Fatalf("a pseudonymize rule without a key: %v; want refused", err)
	}
}
