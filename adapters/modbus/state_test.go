package modbus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestSilentDeviceReportsItsErrorAndBackOff: a device that stops answering
// is reported with the kind of error, its time and the back-off; when it
// answers again the back-off ends and the last error stays for the record.
func TestSilentDeviceReportsItsErrorAndBackOff(t *testing.T) {
	sim := startBuilding(t)
	bus, err := NewBus(BusConfig{Name: "plant", URL: sim.URL(), Timeout: 200 * time.Millisecond, OfflineAfter: 2}, []Device{
		{Name: "meter", Unit: building.UnitMeter, Poll: 20 * time.Millisecond, Points: []Point{
			{Name: "voltage", Table: Input, Address: 4, Type: Uint16, Scale: 0.1},
		}},
	}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	runBus(t, bus)
	state := func() adapters.DeviceState { return adapters.DeviceStates(bus)["meter"] }
	testwait.Until(t, "meter online", 5*time.Second, func() bool { return state().Online })
	if s := state(); s.LastError != "" || !s.LastErrorAt.IsZero() || s.Circuit(time.Now()) != adapters.CircuitClosed {
		t.Fatalf("healthy meter %+v, want no error and a closed circuit", s)
	}

	sim.SetSilent(building.UnitMeter, true)
	testwait.Until(t, "meter offline and backed off", 5*time.Second, func() bool {
		s := state()
		return !s.Online && !s.RetryAt.IsZero()
	})
	s := state()
	if want := "exception 11 (gateway target device failed to respond)"; s.LastError != want {
		t.Errorf("last error %q, want %q", s.LastError, want)
	}
	if s.LastErrorAt.Before(started) || s.LastErrorAt.After(time.Now()) || s.Failures < 2 {
		t.Errorf("offline meter %+v: want the error's time and at least 2 failures", s)
	}
	if !s.RetryAt.After(s.LastErrorAt) {
		t.Errorf("retry at %v, not after the failure at %v", s.RetryAt, s.LastErrorAt)
	}

	sim.SetSilent(building.UnitMeter, false)
	testwait.Until(t, "meter back online", 10*time.Second, func() bool { return state().Online })
	s = state()
	if s.Failures != 0 || !s.RetryAt.IsZero() || s.Circuit(time.Now()) != adapters.CircuitClosed {
		t.Errorf("recovered meter %+v, want no failures and a closed circuit", s)
	}
	if s.LastError == "" || s.LastErrorAt.IsZero() {
		t.Errorf("recovered meter %+v: the last error should stay on record", s)
	}
}

// TestErrorKindIsAFixedDescription: whatever wraps the library's error
// (addresses, point names), the reported kind is a fixed phrase.
func TestErrorKindIsAFixedDescription(t *testing.T) {
	wrap := func(err error) error {
		return fmt.Errorf("unit 7: read holding 100+2 (badge_name, card_4711): %w", err)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{mb.ErrRequestTimedOut, "timeout"},
		{mb.ErrBadCRC, "CRC error"},
		{mb.ErrShortFrame, "short frame"},
		{mb.ErrProtocolError, "protocol error"},
		{mb.ErrBadTransactionId, "protocol error"},
		{mb.ErrIllegalDataAddress, "exception 2 (illegal data address)"},
		{mb.ErrIllegalFunction, "exception 1 (illegal function)"},
		{mb.ErrServerDeviceBusy, "exception 6 (server device busy)"},
		{fmt.Errorf("open tcp://10.0.0.1:502: %w", errors.New("dial tcp: connection refused")), "connection failed"},
	} {
		got := errorKind(wrap(c.err))
		if got != c.want {
			t.Errorf("%v: kind %q, want %q", c.err, got, c.want)
		}
		if strings.Contains(got, "card") || strings.Contains(got, "badge") {
			t.Errorf("%v: kind %q carries detail", c.err, got)
		}
	}
}
