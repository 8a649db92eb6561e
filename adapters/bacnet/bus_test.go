package bacnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// recorder is a Publisher that keeps every message.
type recorder struct {
	mu   sync.Mutex
	msgs []adapters.Message
}

func (r *recorder) Publish(_ context.Context, m adapters.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return nil
}

// reading returns the newest reading of device/point matching ok.
func (r *recorder) find(device, point string, ok func(adapters.Reading) bool) (adapters.Reading, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.msgs) - 1; i >= 0; i-- {
		m := r.msgs[i]
		if m.Device != device || m.Point != point {
			continue
		}
		var rd adapters.Reading
		if json.Unmarshal(m.Payload, &rd) == nil && ok(rd) {
			return rd, true
		}
	}
	return adapters.Reading{}, false
}

func (r *recorder) status(device string) (adapters.DeviceStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.msgs) - 1; i >= 0; i-- {
		m := r.msgs[i]
		if m.Device == device && m.Point == adapters.StatusPoint {
			var s adapters.DeviceStatus
			if json.Unmarshal(m.Payload, &s) == nil && m.Retain && m.High {
				return s, true
			}
		}
	}
	return adapters.DeviceStatus{}, false
}

// waitFor polls cond until it holds or the deadline passes (the shared
// testwait.Until, in this file's argument order).
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, what, within, cond)
}

var (
	temp     = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 1}
	damper   = bacnet.ObjectID{Type: bacnet.AnalogOutput, Instance: 2}
	fan      = bacnet.ObjectID{Type: bacnet.BinaryInput, Instance: 3}
	mode     = bacnet.ObjectID{Type: bacnet.MultiStateValue, Instance: 4}
	faulty   = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 5}
	manual   = bacnet.ObjectID{Type: bacnet.AnalogValue, Instance: 6}
	flow     = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 7}
	fanCmd   = bacnet.ObjectID{Type: bacnet.BinaryOutput, Instance: 8}
	setpoint = bacnet.ObjectID{Type: bacnet.AnalogValue, Instance: 9}
)

func newAHU(t *testing.T) *bacnettest.Device {
	t.Helper()
	d, err := bacnettest.New(1001, "AHU-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	d.Add(temp, "Supply Air Temp", 62, float32(21.5))
	d.Add(damper, "Damper", 98, float32(40))
	d.Add(fan, "Fan Status", 0, bacnet.Enumerated(1))
	d.Add(mode, "Mode", 0, uint64(2))
	d.Add(faulty, "Return Air Temp", 62, float32(-40))
	d.Add(manual, "Override", 64, float32(70))
	d.Add(flow, "Supply Flow", 135, float32(1250))
	d.Add(fanCmd, "Fan Command", 0, bacnet.Enumerated(0))
	d.Add(setpoint, "Setpoint", 62, float32(21))
	return d
}

func ahuPoints() []bacnet.Point {
	return []bacnet.Point{
		{Name: "supply_temp", Object: temp},
		{Name: "damper", Object: damper, Writable: true, Priority: 8},
		{Name: "fan", Object: fan},
		{Name: "mode", Object: mode},
		{Name: "return_temp", Object: faulty},
		{Name: "override", Object: manual},
		{Name: "flow", Object: flow, Unit: "m3/h"},
		{Name: "fan_cmd", Object: fanCmd, Writable: true, UnsignedWrites: true},
		{Name: "setpoint", Object: setpoint, COV: true},
	}
}

func start(t *testing.T, cfg bacnet.Config) (*bacnet.Bus, *recorder) {
	t.Helper()
	bus, err := bacnet.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return bus, rec
}

func config(dev *bacnettest.Device, poll time.Duration, points []bacnet.Point) bacnet.Config {
	// A generous timeout: a loaded CI machine must not make a device look
	// silent. Tests of silence set a short one.
	return bacnet.Config{Name: "bms", Listen: "127.0.0.1:0", Timeout: 500 * time.Millisecond, Retries: 1, OfflineAfter: 2,
		Devices: []bacnet.Device{{Name: "ahu1", Address: dev.Addr.String(), Instance: dev.Instance, Poll: poll, Points: points}}}
}

func TestReadingsCarryValueUnitAndQuality(t *testing.T) {
	dev := newAHU(t)
	dev.SetStatus(faulty, [4]bool{false, true, false, false}, 0) // fault flag
	dev.SetStatus(manual, [4]bool{false, false, false, true}, 0) // out of service
	dev.SetStatus(flow, [4]bool{}, 7)                            // reliability unreliable-other
	_, rec := start(t, config(dev, time.Hour, ahuPoints()))
	want := map[string]adapters.Reading{
		"supply_temp": {V: 21.5, Unit: "°C", Q: "good"},
		"damper":      {V: 40.0, Unit: "%", Q: "good"},
		"fan":         {V: true, Q: "good"},
		"mode":        {V: 2.0, Q: "good"},
		"return_temp": {V: -40.0, Unit: "°C", Q: "bad"},
		"override":    {V: 70.0, Unit: "°F", Q: "stale"},
		"flow":        {V: 1250.0, Unit: "m3/h", Q: "bad"}, // configured unit wins
		"fan_cmd":     {V: false, Q: "good"},
	}
	for point, w := range want {
		waitFor(t, 2*time.Second, point, func() bool {
			_, ok := rec.find("ahu1", point, func(r adapters.Reading) bool { return true })
			return ok
		})
		got, _ := rec.find("ahu1", point, func(adapters.Reading) bool { return true })
		if got.V != w.V || got.Unit != w.Unit || got.Q != w.Q || time.Time(got.TS).IsZero() {
			t.Errorf("%s: got %+v, want v=%v unit=%q q=%s", point, got, w.V, w.Unit, w.Q)
		}
	}
	// The device's status follows its first readings: wait for it.
	waitFor(t, 2*time.Second, "ahu1 online", func() bool { s, ok := rec.status("ahu1"); return ok && s.Online })
	if n := dev.Count(bacnet.ServiceReadPropertyMultiple); n != 1 {
		t.Errorf("%d ReadPropertyMultiple for 9 points, want 1 batch", n)
	}
	if n := dev.Count(bacnet.ServiceReadProperty); n != 0 {
		t.Errorf("%d ReadProperty, want none", n)
	}
}

func TestBatchingRespectsMaxProperties(t *testing.T) {
	dev := newAHU(t)
	cfg := config(dev, time.Hour, ahuPoints())
	cfg.Devices[0].MaxProperties = 8 // 3 or 4 properties per point: two points per request
	_, rec := start(t, cfg)
	waitFor(t, 2*time.Second, "all points", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(adapters.Reading) bool { return true })
		return ok
	})
	if n := dev.Count(bacnet.ServiceReadPropertyMultiple); n < 5 {
		t.Errorf("%d ReadPropertyMultiple, want at least 5 with at most 8 properties each", n)
	}
}

func TestCOVUpdateArrivesWithinOneSecond(t *testing.T) {
	dev := newAHU(t)
	_, rec := start(t, config(dev, time.Hour, ahuPoints())) // polls never come again
	waitFor(t, 2*time.Second, "subscription", func() bool { return dev.Subscriptions() == 1 })
	changed := time.Now()
	dev.Set(setpoint, float32(23.5))
	waitFor(t, time.Second, "COV reading of 23.5", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 23.5 && r.Unit == "°C" && r.Q == "good" })
		return ok
	})
	t.Logf("COV reading %v after the change", time.Since(changed))
	dev.SetStatus(setpoint, [4]bool{false, true, false, false}, 0)
	waitFor(t, time.Second, "COV reading with fault", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 23.5 && r.Q == "bad" })
		return ok
	})
}

func TestCOVRefusedFallsBackToPolling(t *testing.T) {
	dev := newAHU(t)
	dev.RefuseCOV(true)
	_, rec := start(t, config(dev, 20*time.Millisecond, []bacnet.Point{{Name: "setpoint", Object: setpoint, COV: true}}))
	waitFor(t, 2*time.Second, "first reading", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 21.0 })
		return ok
	})
	dev.Set(setpoint, float32(19))
	waitFor(t, 2*time.Second, "polled change", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 19.0 })
		return ok
	})
	if n := dev.Subscriptions(); n != 0 {
		t.Fatalf("%d subscriptions on a device that refuses them", n)
	}
	if n := dev.Count(bacnet.ServiceSubscribeCOV); n != 1 {
		t.Fatalf("%d SubscribeCOV requests, want 1 (a refusal is final)", n)
	}
}

func TestCOVSubscriptionIsRenewed(t *testing.T) {
	dev := newAHU(t)
	points := []bacnet.Point{{Name: "setpoint", Object: setpoint, COV: true, COVLifetime: time.Second}}
	start(t, config(dev, 50*time.Millisecond, points))
	waitFor(t, 3*time.Second, "a renewal", func() bool { return dev.Count(bacnet.ServiceSubscribeCOV) >= 2 })
}

func TestSilentDeviceGoesOfflineAndComesBack(t *testing.T) {
	dev := newAHU(t)
	cfg := config(dev, 20*time.Millisecond, []bacnet.Point{{Name: "supply_temp", Object: temp}})
	cfg.Timeout = 100 * time.Millisecond
	bus, rec := start(t, cfg)
	online := func(want bool) func() bool {
		return func() bool { s, ok := rec.status("ahu1"); return ok && s.Online == want }
	}
	waitFor(t, 2*time.Second, "online", online(true))
	dev.SetSilent(true)
	waitFor(t, 3*time.Second, "offline", online(false))
	if s, _ := rec.status("ahu1"); !strings.Contains(s.Error, "no answer") {
		t.Errorf("offline status error %q, want the timeout", s.Error)
	}
	if s := bus.Stats(); s.Timeouts == 0 || s.Requests <= s.Timeouts || s.Online["ahu1"] {
		t.Errorf("stats while offline %+v: want timeouts counted and ahu1 offline", s)
	}
	dev.SetSilent(false)
	dev.Set(temp, float32(22))
	waitFor(t, 3*time.Second, "back online", online(true))
	waitFor(t, 2*time.Second, "fresh reading", func() bool {
		_, ok := rec.find("ahu1", "supply_temp", func(r adapters.Reading) bool { return r.V == 22.0 })
		return ok
	})
}

func TestErrorAnswers(t *testing.T) {
	dev := newAHU(t)
	missing := bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 99}
	_, rec := start(t, config(dev, time.Hour, []bacnet.Point{{Name: "supply_temp", Object: temp}, {Name: "ghost", Object: missing}}))
	waitFor(t, 2*time.Second, "ghost reading", func() bool {
		_, ok := rec.find("ahu1", "ghost", func(r adapters.Reading) bool { return r.V == nil && r.Q == "bad" })
		return ok
	})
	if _, ok := rec.find("ahu1", "supply_temp", func(r adapters.Reading) bool { return r.V == 21.5 && r.Q == "good" }); !ok {
		t.Fatal("an unknown object spoiled the other points")
	}
}

func TestDeviceRefusingRPMIsReadPropertyByProperty(t *testing.T) {
	dev := newAHU(t)
	dev.Fail(bacnet.ServiceReadPropertyMultiple, &bacnet.Error{Class: bacnet.ErrorClassServices, Code: bacnet.ErrorCodeServiceRequestDenied})
	_, rec := start(t, config(dev, 20*time.Millisecond, []bacnet.Point{{Name: "supply_temp", Object: temp}}))
	waitFor(t, 2*time.Second, "reading by ReadProperty", func() bool {
		_, ok := rec.find("ahu1", "supply_temp", func(r adapters.Reading) bool { return r.V == 21.5 && r.Unit == "°C" })
		return ok
	})
	if dev.Count(bacnet.ServiceReadProperty) == 0 {
		t.Fatal("no ReadProperty after RPM was refused")
	}
}

func TestSegmentation(t *testing.T) {
	cases := []struct {
		name   string
		mode   bacnettest.Segmentation
		drop   int
		minRPM int
		maxRPM int
	}{
		{"device cannot segment: smaller requests", bacnettest.SegmentNever, -1, 3, 100},
		{"device segments: reassembled", bacnettest.SegmentWhenAccepted, -1, 1, 1},
		{"lost segment: resent after a NAK", bacnettest.SegmentWhenAccepted, 1, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dev := newAHU(t)
			dev.SetMaxAPDU(120, c.mode) // about 4 points' answers fit in one APDU
			dev.DropSegment(c.drop)
			_, rec := start(t, config(dev, time.Hour, ahuPoints()))
			for _, p := range ahuPoints() {
				waitFor(t, 3*time.Second, p.Name, func() bool {
					_, ok := rec.find("ahu1", p.Name, func(adapters.Reading) bool { return true })
					return ok
				})
			}
			if got, ok := rec.find("ahu1", "supply_temp", func(adapters.Reading) bool { return true }); !ok || got.V != 21.5 || got.Unit != "°C" {
				t.Fatalf("supply_temp %+v", got)
			}
			if n := dev.Count(bacnet.ServiceReadPropertyMultiple); n < c.minRPM || n > c.maxRPM {
				t.Fatalf("%d RPM requests, want %d..%d", n, c.minRPM, c.maxRPM)
			}
		})
	}
}

func TestWritesAtPriorityAndRelinquish(t *testing.T) {
	dev := newAHU(t)
	bus, rec := start(t, config(dev, time.Hour, ahuPoints()))
	waitFor(t, 2*time.Second, "online", func() bool { s, ok := rec.status("ahu1"); return ok && s.Online })
	ctx := context.Background()
	w := adapters.WriteRequest{Device: "ahu1", Point: "damper", Value: json.RawMessage(`55.5`)}
	critical, err := bus.CheckWrite(w)
	if err != nil || !critical {
		t.Fatalf("CheckWrite: critical %v, %v; want a signed write", critical, err)
	}
	if err := bus.Write(ctx, w); err != nil {
		t.Fatal(err)
	}
	if s := bus.Stats(); s.Requests < 2 || s.Refusals != 0 || !s.Online["ahu1"] {
		t.Errorf("stats %+v", s)
	}
	if p := dev.Priority(damper); p[7] != float32(55.5) {
		t.Fatalf("priority array %v, want 55.5 at priority 8", p)
	}
	if v := dev.PresentValue(damper); v != float32(55.5) {
		t.Fatalf("present value %v", v)
	}
	rel := adapters.WriteRequest{Device: "ahu1", Point: "damper" + bacnet.RelinquishSuffix, Value: json.RawMessage(`null`)}
	if critical, err := bus.CheckWrite(rel); err != nil || !critical {
		t.Fatalf("relinquish CheckWrite: %v, %v", critical, err)
	}
	if err := bus.Write(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if p := dev.Priority(damper); p[7] != nil {
		t.Fatalf("priority 8 still %v after relinquish", p[7])
	}
	if v := dev.PresentValue(damper); v != float32(40) {
		t.Fatalf("present value %v after relinquish, want the relinquish default 40", v)
	}
	// Unsigned writes only where configured; binary values by name; default priority 16.
	fw := adapters.WriteRequest{Device: "ahu1", Point: "fan_cmd", Value: json.RawMessage(`"active"`)}
	if critical, err := bus.CheckWrite(fw); err != nil || critical {
		t.Fatalf("fan_cmd CheckWrite: critical %v, %v; want unsigned", critical, err)
	}
	if err := bus.Write(ctx, fw); err != nil {
		t.Fatal(err)
	}
	if p := dev.Priority(fanCmd); p[15] != bacnet.Enumerated(1) {
		t.Fatalf("fan_cmd priority array %v, want active at 16", p)
	}
	for _, c := range []struct {
		w    adapters.WriteRequest
		want error
	}{
		{adapters.WriteRequest{Device: "ahu1", Point: "supply_temp", Value: json.RawMessage(`1`)}, adapters.ErrNotWritable},
		{adapters.WriteRequest{Device: "ahu1", Point: "supply_temp.relinquish"}, adapters.ErrNotWritable},
		{adapters.WriteRequest{Device: "ahu1", Point: "nope", Value: json.RawMessage(`1`)}, adapters.ErrUnknownTarget},
		{adapters.WriteRequest{Device: "ahu9", Point: "damper", Value: json.RawMessage(`1`)}, adapters.ErrUnknownTarget},
		{adapters.WriteRequest{Device: "ahu1", Point: "damper", Value: json.RawMessage(`"open"`)}, adapters.ErrInvalidValue},
		{adapters.WriteRequest{Device: "ahu1", Point: "damper", Value: json.RawMessage(`1e300`)}, adapters.ErrInvalidValue},
		{adapters.WriteRequest{Device: "ahu1", Point: "fan_cmd", Value: json.RawMessage(`2`)}, adapters.ErrInvalidValue},
		{adapters.WriteRequest{Device: "ahu1", Point: "damper.relinquish", Value: json.RawMessage(`5`)}, adapters.ErrInvalidValue},
	} {
		if _, err := bus.CheckWrite(c.w); !errors.Is(err, c.want) {
			t.Errorf("%s/%s %s: %v, want %v", c.w.Device, c.w.Point, c.w.Value, err, c.want)
		}
		if err := bus.Write(ctx, c.w); !errors.Is(err, c.want) {
			t.Errorf("Write %s/%s %s: %v, want %v", c.w.Device, c.w.Point, c.w.Value, err, c.want)
		}
	}
	if n := dev.Count(bacnet.ServiceWriteProperty); n != 3 {
		t.Fatalf("%d WriteProperty requests, want 3 (refused writes send nothing)", n)
	}
}

func TestWriteErrorFromDeviceIsReturned(t *testing.T) {
	dev := newAHU(t)
	bus, rec := start(t, config(dev, time.Hour, ahuPoints()))
	waitFor(t, 2*time.Second, "online", func() bool { s, ok := rec.status("ahu1"); return ok && s.Online })
	dev.Fail(bacnet.ServiceWriteProperty, &bacnet.Error{Class: bacnet.ErrorClassProperty, Code: bacnet.ErrorCodeWriteAccessDenied})
	err := bus.Write(context.Background(), adapters.WriteRequest{Device: "ahu1", Point: "damper", Value: json.RawMessage(`10`)})
	var be *bacnet.Error
	if !errors.As(err, &be) || be.Code != bacnet.ErrorCodeWriteAccessDenied {
		t.Fatalf("Write: %v, want write-access-denied", err)
	}
	if n := bus.Stats().Refusals; n != 1 {
		t.Fatalf("%d refusals counted, want 1", n)
	}
}

func TestValidateNamesDeviceAndPoint(t *testing.T) {
	av := bacnet.ObjectID{Type: bacnet.AnalogValue, Instance: 1}
	cases := map[string]bacnet.Device{
		`device "d" point "p": priority 1 is reserved for life safety`: {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p", Object: av, Writable: true, Priority: 1}}},
		`device "d" point "p": analog-input is an input`:               {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p", Object: temp, Writable: true}}},
		`device "d" point "p": priority 17 outside 1..16`:              {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p", Object: av, Priority: 17}}},
		`device "d" point "p": point name used twice`:                  {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p", Object: av}, {Name: "p", Object: av}}},
		`device "d" point "p.relinquish": point name must not end`:     {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p.relinquish", Object: av}}},
		`device "d" point "p": object type device is not`:              {Name: "d", Address: "127.0.0.1", Points: []bacnet.Point{{Name: "p", Object: bacnet.ObjectID{Type: bacnet.DeviceObject}}}},
		`device "d": address missing`:                                  {Name: "d"},
		`device "d": instance 4194304 above`:                           {Name: "d", Address: "127.0.0.1", Instance: 1 << 22},
	}
	for want, d := range cases {
		err := bacnet.Config{Name: "bms", Devices: []bacnet.Device{d}}.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	ok := bacnet.Config{Name: "bms", Devices: []bacnet.Device{{Name: "d", Address: "127.0.0.1:47809", Points: []bacnet.Point{{Name: "p", Object: av, Writable: true, Priority: 2, AllowLifeSafety: true}}}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if _, err := bacnet.New(bacnet.Config{Devices: []bacnet.Device{{Name: "d"}}}, nil); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

func TestDeviceBehindRouter(t *testing.T) {
	dev := newAHU(t)
	dev.BehindRouter(2001, []byte{0x0A})
	cfg := config(dev, time.Hour, ahuPoints())
	cfg.Devices[0].Network, cfg.Devices[0].MAC = 2001, "0a"
	wrong := bacnet.Device{Name: "ahu2", Address: dev.Addr.String(), Network: 2001, MAC: "0B", Instance: 7, Poll: 20 * time.Millisecond,
		Points: []bacnet.Point{{Name: "t", Object: temp}}}
	cfg.Devices = append(cfg.Devices, wrong)
	cfg.Timeout = 100 * time.Millisecond // station 0B never answers
	bus, rec := start(t, cfg)
	waitFor(t, 2*time.Second, "reading through the router", func() bool {
		_, ok := rec.find("ahu1", "supply_temp", func(r adapters.Reading) bool { return r.V == 21.5 })
		return ok
	})
	waitFor(t, 3*time.Second, "station 0B offline", func() bool { s, ok := rec.status("ahu2"); return ok && !s.Online })
	if err := bus.Write(context.Background(), adapters.WriteRequest{Device: "ahu1", Point: "damper", Value: json.RawMessage(`12`)}); err != nil {
		t.Fatal(err)
	}
	if v := dev.PresentValue(damper); v != float32(12) {
		t.Fatalf("present value %v after a routed write", v)
	}
	waitFor(t, 2*time.Second, "subscription", func() bool { return dev.Subscriptions() == 1 })
	dev.Set(setpoint, float32(25))
	waitFor(t, time.Second, "routed COV", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 25.0 })
		return ok
	})
	err := bacnet.Config{Devices: []bacnet.Device{{Name: "d", Address: "127.0.0.1", MAC: "0A"}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `device "d": network 0`) {
		t.Fatalf("mac without network: %v", err)
	}
	err = bacnet.Config{Devices: []bacnet.Device{{Name: "d", Address: "127.0.0.1", Network: 5, MAC: "zz"}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `device "d": mac "zz"`) {
		t.Fatalf("bad mac: %v", err)
	}
}

// A device that times out on the polling loop does not hold back the COV
// notifications of another.
func TestCOVNotDelayedBySilentDevice(t *testing.T) {
	dev, other := newAHU(t), newAHU2(t)
	cfg := config(dev, time.Hour, []bacnet.Point{{Name: "setpoint", Object: setpoint, COV: true}})
	cfg.Timeout = 2 * time.Second // each poll of the silent device blocks the loop for 4 s
	cfg.Devices = append(cfg.Devices, bacnet.Device{Name: "vav", Address: other.Addr.String(), Instance: other.Instance,
		Poll: 10 * time.Millisecond, Points: []bacnet.Point{{Name: "t", Object: temp}}})
	other.SetSilent(true)
	_, rec := start(t, cfg)
	waitFor(t, 3*time.Second, "subscription", func() bool { return dev.Subscriptions() == 1 })
	waitFor(t, 3*time.Second, "the loop polling the silent device", func() bool { return other.Datagrams() >= 1 })
	dev.Set(setpoint, float32(24))
	waitFor(t, time.Second, "COV reading while the loop waits on the silent device", func() bool {
		_, ok := rec.find("ahu1", "setpoint", func(r adapters.Reading) bool { return r.V == 24.0 })
		return ok
	})
}
