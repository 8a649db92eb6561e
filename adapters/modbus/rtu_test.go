package modbus

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

func startSlave(t *testing.T, baud int) *modbustest.Slave {
	t.Helper()
	s, err := modbustest.NewSlave(baud)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func rtuBus(t *testing.T, s *modbustest.Slave, timeout time.Duration, devices ...Device) *Bus {
	t.Helper()
	b, err := NewBus(BusConfig{Name: "rs485", URL: "rtu://" + s.Path, Timeout: timeout, OfflineAfter: 2,
		Serial: Serial{Baud: 19200, Parity: "none", StopBits: 1}}, devices, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRTUPollsTwoUnits(t *testing.T) {
	s := startSlave(t, 0)
	s.SetHolding(1, 100, 0x41AC, 0x0000)
	s.SetHolding(2, 10, 1234)
	bus := rtuBus(t, s, 300*time.Millisecond,
		Device{Name: "ahu", Unit: 1, Poll: 50 * time.Millisecond, Points: []Point{{Name: "t", Table: Holding, Address: 100, Type: Float32}}},
		Device{Name: "meter", Unit: 2, Poll: 50 * time.Millisecond, Points: []Point{{Name: "n", Table: Holding, Address: 10, Type: Uint16}}},
	)
	c := runBus(t, bus)
	temp := c.waitFor(t, func(m adapters.Message) bool { return m.Device == "ahu" && m.Point == "t" })
	if string(temp.Payload[:9]) != `{"v":21.5` {
		t.Fatalf("ahu/t = %s", temp.Payload)
	}
	n := c.waitFor(t, func(m adapters.Message) bool { return m.Device == "meter" && m.Point == "n" })
	if string(n.Payload[:10]) != `{"v":1234,` {
		t.Fatalf("meter/n = %s", n.Payload)
	}
	if s.BadFrames.Load() != 0 || s.Pipelined.Load() != 0 {
		t.Fatalf("bad frames %d, pipelined %d", s.BadFrames.Load(), s.Pipelined.Load())
	}
}

func unitRequests(s *modbustest.Slave, unit uint8) uint64 {
	if c, ok := s.PerUnit.Load(unit); ok {
		return c.(*atomic.Uint64).Load()
	}
	return 0
}

// TestRTUNoInterleavingAndSilentDeviceBudget: two devices share one RTU
// line. Their frames never overlap (the slave sees no pipelined or broken
// request), and while one device is silent the other loses no more poll
// time than the silent one's timeouts take.
func TestRTUNoInterleavingAndSilentDeviceBudget(t *testing.T) {
	s := startSlave(t, 0)
	s.SetHolding(1, 0, 1, 2, 3, 4)
	s.SetHolding(2, 0, 5, 6, 7, 8)
	const poll, timeout, window = 20 * time.Millisecond, 100 * time.Millisecond, 2 * time.Second
	dev := func(name string, unit uint8) Device {
		return Device{Name: name, Unit: unit, Poll: poll, Points: []Point{{Name: "r", Table: Holding, Address: 0, Type: Uint16, MaxInterval: time.Nanosecond}}}
	}
	bus := rtuBus(t, s, timeout, dev("a", 1), dev("b", 2))
	c := runBus(t, bus)

	time.Sleep(window) // a measurement window, not synchronisation
	if s.Pipelined.Load() != 0 || s.BadFrames.Load() != 0 {
		t.Fatalf("frames interleaved: %d pipelined, %d broken", s.Pipelined.Load(), s.BadFrames.Load())
	}
	healthy := unitRequests(s, 1)

	s.SetSilent(2, true)
	c.waitFor(t, func(m adapters.Message) bool {
		return m.Device == "b" && m.Point == adapters.StatusPoint && strings.Contains(string(m.Payload), `"online":false`)
	})
	a0, b0 := unitRequests(s, 1), unitRequests(s, 2)
	time.Sleep(window) // the measurement window
	a, b := unitRequests(s, 1)-a0, unitRequests(s, 2)-b0
	budget := window - time.Duration(b)*timeout // bus time left after the silent unit's timeouts
	want := uint64(float64(budget/poll) * 0.7)
	t.Logf("healthy: unit 1 polled %d times in %v; with unit 2 silent: %d (unit 2 tried %d times, budget %v, want ≥ %d)", healthy, window, a, b, budget, want)
	if a < want {
		t.Fatalf("unit 1 polled %d times while unit 2 was silent; its timeouts leave room for %d", a, want)
	}
	if b > 10 {
		t.Fatalf("silent unit 2 was tried %d times in %v: no backoff", b, window)
	}
}

// TestRTUCorruptionAndExceptions: a CRC error is retried within the poll; an
// exception takes the device offline with the points named in the status.
func TestRTUCorruptionAndExceptions(t *testing.T) {
	s := startSlave(t, 0)
	s.SetHolding(4, 0, 7)
	b, _ := NewBus(BusConfig{Name: "rs485", URL: "rtu://" + s.Path, Timeout: 200 * time.Millisecond, Retries: 1, OfflineAfter: 2,
		Serial: Serial{Baud: 19200}}, []Device{{Name: "vav", Unit: 4, Poll: 30 * time.Millisecond,
		Points: []Point{{Name: "damper", Table: Holding, Address: 0, Type: Uint16, MaxInterval: time.Nanosecond}}}}, quiet())
	s.CorruptNext(1)
	c := runBus(t, b)
	c.waitFor(t, func(m adapters.Message) bool { return m.Point == "damper" })
	if _, found := c.find(func(m adapters.Message) bool {
		return m.Point == adapters.StatusPoint && strings.Contains(string(m.Payload), `"online":false`)
	}); found {
		t.Fatal("one corrupted answer took the device offline despite a retry")
	}
	s.SetException(4, 2)
	off := c.waitFor(t, func(m adapters.Message) bool {
		return m.Point == adapters.StatusPoint && strings.Contains(string(m.Payload), `"online":false`)
	})
	if !strings.Contains(string(off.Payload), "(damper): illegal data address") {
		t.Fatalf("status %s does not name the point and the exception", off.Payload)
	}
}

func TestPerPointPollInterval(t *testing.T) {
	s := startSlave(t, 0)
	s.SetHolding(1, 0, 1, 2)
	b := rtuBus(t, s, 200*time.Millisecond, Device{Name: "d", Unit: 1, Poll: time.Hour, Points: []Point{
		{Name: "slow", Table: Holding, Address: 0, Type: Uint16, MaxInterval: time.Nanosecond},
		{Name: "fast", Table: Holding, Address: 1, Type: Uint16, MaxInterval: time.Nanosecond, Poll: 20 * time.Millisecond},
	}})
	c := runBus(t, b)
	time.Sleep(500 * time.Millisecond) // a measurement window, not synchronisation
	if slow, fast := countPoint(c, "slow"), countPoint(c, "fast"); slow != 1 || fast < 10 {
		t.Fatalf("slow (1h) published %d times, fast (20ms) %d times in 500ms", slow, fast)
	}
}

// TestRTUAdapterUnpluggedAndBack: the USB adapter disappears; the device is
// reported offline; when the adapter returns the port is reopened.
func TestRTUAdapterUnpluggedAndBack(t *testing.T) {
	s, err := modbustest.NewSlaveLinked(0, t.TempDir()+"/usb-rs485")
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	s.SetHolding(1, 0, 42)
	b := rtuBus(t, s, 100*time.Millisecond, Device{Name: "d", Unit: 1, Poll: 20 * time.Millisecond,
		Points: []Point{{Name: "r", Table: Holding, Address: 0, Type: Uint16, MaxInterval: time.Nanosecond}}})
	c := runBus(t, b)
	c.waitFor(t, func(m adapters.Message) bool { return m.Point == "r" })
	s.Unplug()
	c.waitFor(t, func(m adapters.Message) bool {
		return m.Point == adapters.StatusPoint && strings.Contains(string(m.Payload), `"online":false`)
	})
	before := countPoint(c, "r")
	if err := s.Replug(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testwait.Until(t, "readings after the adapter came back", 10*time.Second, func() bool { return countPoint(c, "r") > before })
	if m, _ := c.find(func(m adapters.Message) bool { return m.Point == adapters.StatusPoint }); !strings.Contains(string(m.Payload), `"online":true`) {
		t.Fatalf("latest status %s, want online", m.Payload)
	}
}
