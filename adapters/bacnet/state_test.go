package bacnet_test

import (
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/bacnet"
)

// TestDeviceStateCarriesErrorKindAndBackOff: an error answer and then
// silence are reported as fixed error kinds with their time; a silent
// device is backed off (open circuit) and, answering again, closes it and
// keeps the last error on record.
func TestDeviceStateCarriesErrorKindAndBackOff(t *testing.T) {
	dev := newAHU(t)
	cfg := config(dev, 20*time.Millisecond, []bacnet.Point{{Name: "supply_temp", Object: temp}})
	cfg.Timeout = 100 * time.Millisecond
	started := time.Now()
	bus, _ := start(t, cfg)
	state := func() adapters.DeviceState { return adapters.DeviceStates(bus)["ahu1"] }
	waitFor(t, 2*time.Second, "online", func() bool { return state().Online })
	if s := state(); s.LastError != "" || s.Circuit(time.Now()) != adapters.CircuitClosed {
		t.Fatalf("healthy device %+v", s)
	}

	dev.Fail(bacnet.ServiceReadPropertyMultiple, &bacnet.Error{Class: bacnet.ErrorClassObject, Code: bacnet.ErrorCodeUnknownObject})
	waitFor(t, 3*time.Second, "the error answer reported", func() bool { return state().LastError != "" })
	if s := state(); s.LastError != "error object/unknown-object" || s.LastErrorAt.Before(started) || s.Failures == 0 {
		t.Errorf("after error answers %+v, want last error %q with its time", s, "error object/unknown-object")
	}
	dev.Fail(bacnet.ServiceReadPropertyMultiple, nil)
	waitFor(t, 3*time.Second, "answering again", func() bool { s := state(); return s.Online && s.Failures == 0 })

	dev.SetSilent(true)
	waitFor(t, 3*time.Second, "offline and backed off", func() bool { s := state(); return !s.Online && !s.RetryAt.IsZero() })
	s := state()
	if s.LastError != "timeout" || s.Failures < cfg.OfflineAfter || !s.RetryAt.After(s.LastErrorAt) {
		t.Errorf("silent device %+v, want a timeout, failures counted and a retry after it", s)
	}
	dev.SetSilent(false)
	waitFor(t, 5*time.Second, "back online", func() bool { return state().Online })
	if s := state(); s.Failures != 0 || !s.RetryAt.IsZero() || s.LastError != "timeout" || s.LastErrorAt.IsZero() {
		t.Errorf("recovered device %+v, want a closed circuit and the timeout on record", s)
	}
}
