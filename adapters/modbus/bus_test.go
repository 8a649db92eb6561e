package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/demo/building"
)

// 0x41AC0000 is 21.5 as float32; each order puts its bytes elsewhere.
func TestDecodeOrders(t *testing.T) {
	cases := []struct {
		order Order
		regs  []uint16
	}{
		{ABCD, []uint16{0x41AC, 0x0000}},
		{CDAB, []uint16{0x0000, 0x41AC}},
		{BADC, []uint16{0xAC41, 0x0000}},
		{DCBA, []uint16{0x0000, 0xAC41}},
	}
	for _, c := range cases {
		v, err := decodeRegisters(Float32, c.order, c.regs)
		if err != nil || v != 21.5 {
			t.Errorf("%s %04x: got %v, %v; want 21.5", c.order, c.regs, v, err)
		}
	}
	if v, _ := decodeRegisters(Int16, ABCD, []uint16{0xFFFE}); v != -2 {
		t.Errorf("int16 0xFFFE = %v, want -2", v)
	}
	if v, _ := decodeRegisters(Uint32, CDAB, []uint16{0x0002, 0x0001}); v != 0x00010002 {
		t.Errorf("uint32 CDAB = %v, want 65538", v)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	values := map[Type][]float64{
		Int16:   {math.MinInt16, -1, 0, math.MaxInt16},
		Uint16:  {0, 1, math.MaxUint16},
		Int32:   {math.MinInt32, -70000, math.MaxInt32},
		Uint32:  {0, 70000, math.MaxUint32},
		Float32: {-21.5, 0, 1e10},
		Float64: {-1.0 / 3, math.MaxFloat64},
	}
	for typ, vs := range values {
		for _, o := range []Order{ABCD, DCBA, BADC, CDAB} {
			for _, v := range vs {
				regs, err := encodeRegisters(typ, o, v)
				if err != nil {
					t.Fatalf("%s %s encode %v: %v", typ, o, v, err)
				}
				got, err := decodeRegisters(typ, o, regs)
				if err != nil || got != v {
					t.Errorf("%s %s: %v -> %04x -> %v (%v)", typ, o, v, regs, got, err)
				}
			}
		}
	}
	for _, bad := range []struct {
		typ Type
		v   float64
	}{{Uint16, -1}, {Uint16, 65536}, {Int16, 1.5}, {Int32, math.NaN()}, {Float32, 1e39}} {
		if _, err := encodeRegisters(bad.typ, ABCD, bad.v); err == nil {
			t.Errorf("%s accepted %v", bad.typ, bad.v)
		}
	}
}

func FuzzDecodeRegisters(f *testing.F) {
	f.Add(uint8(5), uint8(0), uint16(0x41AC), uint16(0), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, typ, order uint8, a, b, c, d uint16) {
		ty, o := Type(int(typ)%len(typeNames)), Order(int(order)%len(orderNames))
		if ty == Bool || ty == String {
			return
		}
		regs := []uint16{a, b, c, d}[:ty.Registers()]
		v, err := decodeRegisters(ty, o, regs)
		if err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		back, err := encodeRegisters(ty, o, v)
		if err != nil && (ty == Int64 || ty == Uint64) && math.Abs(v) > 1<<62 {
			return // beyond what a float64 write value can carry exactly
		}
		if err != nil {
			t.Fatalf("%s %s: decoded %v cannot be encoded: %v", ty, o, v, err)
		}
		if again, _ := decodeRegisters(ty, o, back); again != v {
			t.Fatalf("%s %s: %v re-encoded decodes as %v", ty, o, v, again)
		}
	})
}

func TestPlanMergesAdjacentPoints(t *testing.T) {
	plan := planRequests([]Point{
		{Name: "b", Table: Holding, Address: 102, Type: Float32},
		{Name: "a", Table: Holding, Address: 100, Type: Float32},
		{Name: "far", Table: Holding, Address: 110, Type: Uint16},
		{Name: "in", Table: Input, Address: 100, Type: Uint16},
		{Name: "c1", Table: Coil, Address: 10, Type: Bool},
		{Name: "c2", Table: Coil, Address: 11, Type: Bool},
	}, 0, 0)
	type req struct {
		table        Table
		start, count uint16
		points       int
	}
	want := []req{{Coil, 10, 2, 2}, {Input, 100, 1, 1}, {Holding, 100, 4, 2}, {Holding, 110, 1, 1}}
	if len(plan) != len(want) {
		t.Fatalf("plan has %d requests, want %d: %+v", len(plan), len(want), plan)
	}
	for i, r := range plan {
		if got := (req{r.table, r.start, r.count, len(r.points)}); got != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestPlanGapAndDeviceLimit(t *testing.T) {
	points := []Point{
		{Name: "a", Table: Holding, Address: 0, Type: Uint16},
		{Name: "b", Table: Holding, Address: 5, Type: Uint16}, // 4 unused registers between
		{Name: "c", Table: Holding, Address: 30, Type: Uint16},
	}
	if n := len(planRequests(points, 0, 0)); n != 3 {
		t.Fatalf("without max_gap: %d requests, want 3", n)
	}
	plan := planRequests(points, 0, 4)
	if len(plan) != 2 || plan[0].count != 6 {
		t.Fatalf("max_gap 4: %+v, want 0+6 and 30+1", plan)
	}
	if n := len(planRequests(points, 4, 100)); n != 3 {
		t.Fatalf("max_registers 4: %d requests, want 3", n)
	}
}

func TestPlanRespectsRegisterLimit(t *testing.T) {
	var points []Point
	for a := uint16(0); a < 200; a += 2 {
		points = append(points, Point{Name: "p", Table: Holding, Address: a, Type: Float32})
	}
	for _, r := range planRequests(points, 0, 0) {
		if r.count > maxRegisters {
			t.Fatalf("request of %d registers exceeds %d", r.count, maxRegisters)
		}
	}
}

// capture is a Publisher that records messages.
type capture struct {
	mu   sync.Mutex
	msgs []adapters.Message
	got  chan struct{}
}

func newCapture() *capture { return &capture{got: make(chan struct{}, 1024)} }

func (c *capture) Publish(_ context.Context, m adapters.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.got <- struct{}{}:
	default:
	}
	return nil
}

// find returns the newest message matching ok, if any arrived.
func (c *capture) find(ok func(adapters.Message) bool) (adapters.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if m := c.msgs[i]; ok(m) {
			return m, true
		}
	}
	return adapters.Message{}, false
}

// waitFor returns the first message matching ok, failing after 10 s.
func (c *capture) waitFor(t *testing.T, ok func(adapters.Message) bool) adapters.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, m := range c.msgs {
			if ok(m) {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.got:
		case <-deadline:
			t.Fatal("timed out waiting for a message")
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startBuilding(t *testing.T) *building.Building {
	t.Helper()
	b, err := building.Start(quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func runBus(t *testing.T, b *Bus) *capture {
	t.Helper()
	c := newCapture()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

func TestPollsSimulatedBuilding(t *testing.T) {
	sim := startBuilding(t)
	bus, err := NewBus(BusConfig{Name: "plant", URL: sim.URL(), Timeout: time.Second}, []Device{
		{Name: "ahu-1", Unit: building.UnitAHU, Poll: 50 * time.Millisecond, Points: []Point{
			{Name: "supply_temp", Table: Holding, Address: 100, Type: Float32, Unit: "°C"},
			{Name: "fan_enable", Table: Coil, Address: 10, Type: Bool},
			{Name: "outdoor_temp", Table: Input, Address: 200, Type: Int16, Scale: 0.1},
		}},
	}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	c := runBus(t, bus)
	m := c.waitFor(t, func(m adapters.Message) bool { return m.Point == "supply_temp" })
	var r struct {
		V    float64 `json:"v"`
		Unit string  `json:"unit"`
		TS   string  `json:"ts"`
		Q    string  `json:"q"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("payload %s: %v", m.Payload, err)
	}
	if r.V < 15 || r.V > 25 || r.Unit != "°C" || r.Q != "good" || len(r.TS) != len("2026-11-28T04:41:10.123Z") {
		t.Fatalf("reading %s is not a plausible supply temperature", m.Payload)
	}
	fan := c.waitFor(t, func(m adapters.Message) bool { return m.Point == "fan_enable" })
	if string(fan.Payload[:9]) != `{"v":true` {
		t.Fatalf("fan_enable payload %s, want v=true", fan.Payload)
	}
	st := c.waitFor(t, func(m adapters.Message) bool { return m.Point == adapters.StatusPoint })
	if !st.Retain || string(st.Payload[:14]) != `{"online":true` {
		t.Fatalf("status %s retain=%v, want retained online", st.Payload, st.Retain)
	}
}

func TestSilentDeviceGoesOfflineAndBack(t *testing.T) {
	sim := startBuilding(t)
	bus, _ := NewBus(BusConfig{Name: "plant", URL: sim.URL(), Timeout: 200 * time.Millisecond, OfflineAfter: 2}, []Device{
		{Name: "meter", Unit: building.UnitMeter, Poll: 20 * time.Millisecond, Points: []Point{
			{Name: "voltage", Table: Input, Address: 4, Type: Uint16, Scale: 0.1},
		}},
		{Name: "ahu-1", Unit: building.UnitAHU, Poll: 20 * time.Millisecond, Points: []Point{
			{Name: "fan_speed", Table: Holding, Address: 110, Type: Uint16, MaxInterval: time.Millisecond},
		}},
	}, quiet())
	sim.SetSilent(building.UnitMeter, true)
	c := runBus(t, bus)
	off := c.waitFor(t, func(m adapters.Message) bool { return m.Device == "meter" && m.Point == adapters.StatusPoint })
	if string(off.Payload[:15]) != `{"online":false` {
		t.Fatalf("silent meter status %s, want offline", off.Payload)
	}
	// The healthy device keeps being polled while the meter is dead.
	before := countPoint(c, "fan_speed")
	time.Sleep(300 * time.Millisecond) // a measurement window, not synchronisation
	if after := countPoint(c, "fan_speed"); after-before < 5 {
		t.Fatalf("ahu-1 polled %d times in 300ms while the meter was silent", after-before)
	}
	sim.SetSilent(building.UnitMeter, false)
	c.waitFor(t, func(m adapters.Message) bool { return m.Device == "meter" && m.Point == "voltage" })
	c.waitFor(t, func(m adapters.Message) bool {
		return m.Device == "meter" && m.Point == adapters.StatusPoint && string(m.Payload[:14]) == `{"online":true`
	})
}

func countPoint(c *capture, point string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if m.Point == point {
			n++
		}
	}
	return n
}

func TestWrite(t *testing.T) {
	sim := startBuilding(t)
	bus, _ := NewBus(BusConfig{Name: "plant", URL: sim.URL()}, []Device{
		{Name: "ahu-1", Unit: building.UnitAHU, Points: []Point{
			{Name: "fan_enable", Table: Coil, Address: 10, Type: Bool, Writable: true},
			{Name: "setpoint", Table: Holding, Address: 120, Type: Int16, Scale: 0.1, Writable: true},
			{Name: "supply_temp", Table: Holding, Address: 100, Type: Float32},
		}},
	}, quiet())
	ctx := context.Background()
	write := func(point, value string) error {
		return bus.Write(ctx, adapters.WriteRequest{Device: "ahu-1", Point: point, Value: json.RawMessage(value)})
	}
	if err := write("fan_enable", "false"); err != nil {
		t.Fatal(err)
	}
	if sim.Coil(building.UnitAHU, 10) {
		t.Fatal("coil still on after writing false")
	}
	if err := write("setpoint", "21.5"); err != nil {
		t.Fatal(err)
	}
	if got := sim.Holding(building.UnitAHU, 120); got != 215 {
		t.Fatalf("setpoint register = %d, want 215", got)
	}
	for _, c := range []struct {
		point, value string
		want         error
	}{
		{"supply_temp", "20", adapters.ErrNotWritable},
		{"nope", "1", adapters.ErrUnknownTarget},
		{"fan_enable", `"on"`, adapters.ErrInvalidValue},
		{"setpoint", "99999", adapters.ErrInvalidValue},
	} {
		if err := write(c.point, c.value); !errors.Is(err, c.want) {
			t.Errorf("write %s=%s: %v, want %v", c.point, c.value, err, c.want)
		}
	}
}

// Issue 11 item 1: writes need a signature unless the point opts out, and
// a critical point never opts out.
func TestCheckWriteSaysWhetherToSign(t *testing.T) {
	bus, err := NewBus(BusConfig{Name: "b", URL: "tcp://127.0.0.1:1"}, []Device{{Name: "d", Unit: 1, Points: []Point{
		{Name: "release", Table: Coil, Address: 0, Type: Bool, Writable: true},
		{Name: "lamp", Table: Coil, Address: 1, Type: Bool, Writable: true, UnsignedWrites: true},
		{Name: "arm", Table: Coil, Address: 2, Type: Bool, Writable: true, Critical: true, UnsignedWrites: true},
	}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for point, want := range map[string]bool{"release": true, "lamp": false, "arm": true} {
		got, err := bus.CheckWrite(adapters.WriteRequest{Device: "d", Point: point, Value: json.RawMessage(`true`)})
		if err != nil || got != want {
			t.Errorf("%s: needsSignature=%v err=%v, want %v", point, got, err, want)
		}
	}
}
