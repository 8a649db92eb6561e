package modbus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
)

// TestUnitZeroIsPolledAsZero: unit id 0 is a real address (many Modbus TCP
// devices answer only to it); the bus must not replace it with a default.
func TestUnitZeroIsPolledAsZero(t *testing.T) {
	srv, err := modbustest.NewTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.SetHolding(0, 40, 7)
	srv.SetHolding(1, 40, 9)
	bus, err := NewBus(BusConfig{Name: "plant", URL: "tcp://" + srv.Addr, Timeout: time.Second}, []Device{
		{Name: "meter", Unit: 0, Poll: 50 * time.Millisecond, Points: []Point{{Name: "v", Table: Holding, Address: 40, Type: Uint16}}},
	}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if lines := bus.PlanLines(); len(lines) == 0 || !strings.Contains(lines[0], "(unit 0,") {
		t.Fatalf("plan %q does not show unit 0", lines)
	}
	c := runBus(t, bus)
	m := c.waitFor(t, func(m adapters.Message) bool { return m.Point == "v" })
	var r struct{ V float64 }
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.V != 7 {
		t.Fatalf("reading %s (%v): want 7 from unit 0 (unit 1 holds 9)", m.Payload, err)
	}
}
