package serialline

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// startLineLogged is startLine with the line's log kept, at debug level.
func startLineLogged(t *testing.T) (*building.DoorController, *Line, *testwait.Buffer) {
	t.Helper()
	ctrl, err := building.StartDoorController(t.TempDir())
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(ctrl.Close)
	logs := &testwait.Buffer{}
	line, err := New(Config{Name: "doors", Port: ctrl.Path, Devices: []Device{frontDoor()}, Key: siteKey, OfflineAfter: 2},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { line.Run(ctx, c); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c.waitFor(t, "device online", statusIs(true))
	return ctrl, line, logs
}

func doorState(l *Line) adapters.DeviceState { return adapters.DeviceStates(l)["front-door"] }

// TestUnparsableFrameErrorHoldsNoPersonalData: a frame with a card number
// and a name that no event parses is reported as the kind of error only;
// neither the state nor the log holds the frame.
func TestUnparsableFrameErrorHoldsNoPersonalData(t *testing.T) {
	ctrl, line, logs := startLineLogged(t)
	// Answers to the status request are frames no event parses, but they
	// are answers, not errors.
	testwait.Until(t, "status answers", 5*time.Second, func() bool { return line.Frames.Load() >= 3 })
	if s := doorState(line); s.LastError != "" {
		t.Fatalf("answers to requests reported as error %q", s.LastError)
	}
	const card, name = "4711000042", "Erika Mustermann"
	sent := time.Now()
	if err := ctrl.Emit("EVT 1 MAYBE CARD=" + card + " NAME=" + name); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the unparsable frame reported", 5*time.Second, func() bool { return doorState(line).LastError != "" })
	s := doorState(line)
	if s.LastError != "frame matched no event" || s.LastErrorAt.Before(sent.Add(-time.Millisecond)) {
		t.Errorf("state %+v, want %q with its time", s, "frame matched no event")
	}
	if !s.Online || s.Failures != 0 {
		t.Errorf("state %+v: a frame no event parses does not make the device fail", s)
	}
	if err := ctrl.Send([]byte("\x00\xffCARD=" + card + " " + strings.Repeat("X", 5000) + "\r\n")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the garbage frame reported", 5*time.Second, func() bool {
		return doorState(line).LastError == "garbage or over-long frame dropped"
	})
	for _, secret := range []string{card, "Erika", "Mustermann", "MAYBE"} {
		if strings.Contains(doorState(line).LastError, secret) {
			t.Errorf("last error %q holds %q", doorState(line).LastError, secret)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds %q:\n%s", secret, logs.String())
		}
	}
}

// TestSilentControllerStateRecovers: unanswered requests are failures with
// their kind; the line keeps asking at its period (no back-off), and an
// answer ends the failures and keeps the last error on record.
func TestSilentControllerStateRecovers(t *testing.T) {
	ctrl, line, _ := startLineLogged(t)
	ctrl.SetSilent(true)
	testwait.Until(t, "offline", 10*time.Second, func() bool { return !doorState(line).Online })
	s := doorState(line)
	if s.LastError != "no answer to request" || s.LastErrorAt.IsZero() || s.Failures < 2 || s.Circuit(time.Now()) != adapters.CircuitClosed {
		t.Errorf("silent controller %+v, want no answer, failures counted, no back-off", s)
	}
	ctrl.SetSilent(false)
	testwait.Until(t, "back online", 10*time.Second, func() bool { return doorState(line).Online })
	testwait.Until(t, "failures reset", 5*time.Second, func() bool { return doorState(line).Failures == 0 })
	if s := doorState(line); s.LastError != "no answer to request" || !s.RetryAt.IsZero() {
		t.Errorf("recovered controller %+v, want the last error kept and no back-off", s)
	}
}

// TestUnpluggedPortIsBackedOff: while the port cannot be opened every
// device reports it and when the next attempt is; replugged, the back-off
// ends.
func TestUnpluggedPortIsBackedOff(t *testing.T) {
	ctrl, line, _ := startLineLogged(t)
	ctrl.Unplug()
	testwait.Until(t, "port reopen backed off", 10*time.Second, func() bool {
		s := doorState(line)
		return !s.Online && s.LastError == "cannot open port" && !s.RetryAt.IsZero()
	})
	if err := ctrl.Replug(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "online after replug", 10*time.Second, func() bool {
		s := doorState(line)
		return s.Online && s.RetryAt.IsZero()
	})
}

// TestLineErrorsAreAttributedOnlyToTheLinesOnlyDevice: a frame nobody
// parses on a line with several devices belongs to none of them.
func TestLineErrorsAreAttributedOnlyToTheLinesOnlyDevice(t *testing.T) {
	one, err := New(Config{Name: "one", Devices: []Device{frontDoor()}, Key: siteKey}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	back := frontDoor()
	back.Name = "back-door"
	two, err := New(Config{Name: "two", Devices: []Device{frontDoor(), back}, Key: siteKey}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Line{one, two} {
		l.handle(context.Background(), []byte("EVT 1 MAYBE CARD=1 NAME=x"), &capture{})
	}
	if got := doorState(one).LastError; got != "frame matched no event" {
		t.Errorf("single-device line: last error %q", got)
	}
	for name, s := range adapters.DeviceStates(two) {
		if s.LastError != "" {
			t.Errorf("two-device line: %s has last error %q", name, s.LastError)
		}
	}
}
