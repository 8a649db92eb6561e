package modbus

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The rules of a Modbus device and point as the configuration writes them.
// gateway/config keeps the YAML (strict keys, lines) and reports what these
// checks refuse at the key's line; the adapter owns the rules.

// DeviceSpec is a Modbus device as written, before defaults beyond the
// configuration's own.
type DeviceSpec struct {
	Unit         *int // nil: not given
	Poll         time.Duration
	MaxRegisters int
	MaxGap       int
	Points       int // how many
}

// CheckDevice calls report for each rule d breaks, with the key below the
// device ("unit", "max_gap", …) and the message.
func CheckDevice(d DeviceSpec, report func(key, msg string)) {
	add := func(key, format string, args ...any) { report(key, fmt.Sprintf(format, args...)) }
	if d.MaxRegisters < 0 || d.MaxRegisters > 125 {
		add("max_registers", "%d; want 1 to 125", d.MaxRegisters)
	}
	if d.MaxGap < 0 || d.MaxGap > 100 {
		add("max_gap", "%d; want 0 to 100", d.MaxGap)
	}
	if d.Unit != nil && (*d.Unit < 0 || *d.Unit > 247) {
		add("unit", "unit id %d is out of range 0-247", *d.Unit)
	}
	if d.Poll < 50*time.Millisecond {
		add("poll", "%v is too short; want at least 50ms", d.Poll)
	}
	if d.Points == 0 {
		add("points", "device has no points")
	}
}

// PointSpec is a Modbus point as written, before parsing.
type PointSpec struct {
	Table, Type, Order string
	Address            int
	Bit                *int
	Length             int
	Labels             bool // any labels given
	Scale              *float64
	Poll               time.Duration // 0: the device's
	Priority           string
	Deadband           float64
	Writable, Critical bool
	UnsignedWrites     bool
	Min, Max           *float64
}

// CheckPoint calls report for each rule p breaks, with the key below the
// point ("table", "bit", …) and the message.
func CheckPoint(p PointSpec, report func(key, msg string)) {
	add := func(key, format string, args ...any) { report(key, fmt.Sprintf(format, args...)) }
	table, terr := ParseTable(p.Table)
	if terr != nil {
		add("table", "%v", terr)
	}
	typ, yerr := ParseType(p.Type)
	if yerr != nil {
		add("type", "%v", yerr)
	}
	if _, err := ParseOrder(p.Order); err != nil {
		add("order", "%v", err)
	}
	if p.Address < 0 || p.Address > 65535 {
		add("address", "address %d is out of range 0-65535", p.Address)
	}
	if p.Scale != nil && *p.Scale == 0 {
		add("scale", "scale 0 would zero every value")
	}
	if p.Poll != 0 && p.Poll < 50*time.Millisecond {
		add("poll", "%v is too short; want at least 50ms", p.Poll)
	}
	if p.Priority != "" && !slices.Contains([]string{"normal", "high"}, p.Priority) {
		add("priority", "unknown value %q; want one of %s", p.Priority, strings.Join([]string{"normal", "high"}, ", "))
	}
	if p.Deadband < 0 {
		add("report.deadband", "%v; want 0 or more", p.Deadband)
	}
	if terr != nil || yerr != nil {
		return
	}
	size := typ.Registers()
	if typ == String {
		size = p.Length
		if p.Length < 1 || p.Length > 125 {
			add("length", "a string needs length (registers) 1 to 125, got %d", p.Length)
		}
	}
	switch {
	case table.IsBits() && typ != Bool:
		add("type", "type %q cannot be read from table %q; want bool", p.Type, p.Table)
	case !table.IsBits() && typ == Bool && p.Bit == nil:
		add("type", "type bool needs table coil or discrete, not %q (or a bit: 0-15 of the register)", p.Table)
	case !table.IsBits() && p.Address+size > 65536:
		add("address", "%s at %d runs past register 65535", p.Type, p.Address)
	}
	if p.Bit != nil && (*p.Bit < 0 || *p.Bit > 15 || table.IsBits() || typ != Bool) {
		add("bit", "bit %d: want 0-15 on an input or holding point of type bool", *p.Bit)
	}
	if p.Labels && (typ == Bool || typ == String || typ == Float32 || typ == Float64) {
		add("labels", "labels name integer values; type %s has none", p.Type)
	}
	if p.Writable && (p.Bit != nil || typ == String) {
		add("writable", "bit and string points are read-only")
	}
	if (p.Critical || p.Min != nil || p.Max != nil) && !p.Writable {
		add("writable", "critical, min and max apply to writable points; set writable: true or remove them")
	}
	if p.UnsignedWrites && !p.Writable {
		add("unsigned_writes", "unsigned_writes applies to writable points; set writable: true or remove it")
	}
	if p.UnsignedWrites && p.Critical {
		add("unsigned_writes", "critical and unsigned_writes contradict: a critical point always needs a signed command; remove one")
	}
	if p.Writable && table != Coil && table != Holding {
		add("writable", "table %q is read-only; only coil and holding points can be writable", p.Table)
	}
}
