package modbus

import (
	"strings"
	"testing"
	"time"
)

// TestCheckPointAndDevice: the adapter's own rules, reported by key below
// the point or device so that config can name the file's line.
func TestCheckPointAndDevice(t *testing.T) {
	bit := 3
	for _, c := range []struct {
		p    PointSpec
		want string // "key: message fragment", "" for no problem
	}{
		{PointSpec{Table: "holding", Type: "float32"}, ""},
		{PointSpec{Table: "holdin", Type: "float32"}, "table: "},
		{PointSpec{Table: "coil", Type: "int16"}, `type: type "int16" cannot be read from table "coil"`},
		{PointSpec{Table: "holding", Type: "float32", Address: 65535}, "address: float32 at 65535 runs past register 65535"},
		{PointSpec{Table: "coil", Type: "bool", Bit: &bit}, "bit: bit 3"},
		{PointSpec{Table: "input", Type: "uint16", Writable: true}, `writable: table "input" is read-only`},
		{PointSpec{Table: "holding", Type: "uint16", Writable: true, Critical: true, UnsignedWrites: true}, "unsigned_writes: critical and unsigned_writes contradict"},
		{PointSpec{Table: "holding", Type: "uint16", Priority: "urgent"}, `priority: unknown value "urgent"`},
		{PointSpec{Table: "holding", Type: "uint16", Poll: time.Millisecond}, "poll: 1ms is too short"},
	} {
		var got []string
		CheckPoint(c.p, func(key, msg string) { got = append(got, key+": "+msg) })
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("%+v: %v; want no problem", c.p, got)
		case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
			t.Errorf("%+v: %v; want one problem starting %q", c.p, got, c.want)
		}
	}
	unit := 300
	var got []string
	CheckDevice(DeviceSpec{Unit: &unit, Poll: time.Second, Points: 0, MaxGap: 101}, func(key, msg string) { got = append(got, key) })
	if strings.Join(got, ",") != "max_gap,unit,points" {
		t.Errorf("device problems at %v; want max_gap, unit, points", got)
	}
}
