package modbus

import (
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
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
