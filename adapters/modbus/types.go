package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Table is a Modbus data table.
type Table int

// The four Modbus tables.
const (
	Coil Table = iota
	Discrete
	Input
	Holding
)

var tableNames = []string{"coil", "discrete", "input", "holding"}

func (t Table) String() string { return tableNames[t] }

// IsBits reports whether the table holds single bits rather than registers.
func (t Table) IsBits() bool { return t == Coil || t == Discrete }

// ParseTable parses a table name as written in the config.
func ParseTable(s string) (Table, error) {
	i := slices.Index(tableNames, s)
	if i < 0 {
		return 0, fmt.Errorf("unknown table %q; want one of %s", s, strings.Join(tableNames, ", "))
	}
	return Table(i), nil
}

// Type is how a point's registers are interpreted.
type Type int

// Supported point types.
const (
	Bool Type = iota
	Int16
	Uint16
	Int32
	Uint32
	Float32
	Float64
	Int64
	Uint64
	String // Length registers of text, two characters each
)

var typeNames = []string{"bool", "int16", "uint16", "int32", "uint32", "float32", "float64", "int64", "uint64", "string"}

func (t Type) String() string { return typeNames[t] }

// ParseType parses a type name as written in the config.
func ParseType(s string) (Type, error) {
	i := slices.Index(typeNames, s)
	if i < 0 {
		return 0, fmt.Errorf("unknown type %q; want one of %s", s, strings.Join(typeNames, ", "))
	}
	return Type(i), nil
}

// Registers is how many 16-bit registers a value of type t occupies (1 for
// bool, which is one bit in a bit table or of a register; 0 for string,
// whose length the point gives).
func (t Type) Registers() int {
	switch t {
	case Int32, Uint32, Float32:
		return 2
	case Float64, Int64, Uint64:
		return 4
	case String:
		return 0
	default:
		return 1
	}
}

// Order is the byte and word order of multi-register values, named by where
// the bytes of the big-endian value A B C D land on the wire.
type Order int

// Byte/word orders.
const (
	ABCD Order = iota // big-endian, high word first (the Modbus norm)
	DCBA              // little-endian
	BADC              // bytes swapped within each word
	CDAB              // low word first
)

var orderNames = []string{"ABCD", "DCBA", "BADC", "CDAB"}

func (o Order) String() string { return orderNames[o] }

// ParseOrder parses an order name; the empty string means ABCD.
func ParseOrder(s string) (Order, error) {
	if s == "" {
		return ABCD, nil
	}
	i := slices.Index(orderNames, strings.ToUpper(s))
	if i < 0 {
		return 0, fmt.Errorf("unknown order %q; want one of %s", s, strings.Join(orderNames, ", "))
	}
	return Order(i), nil
}

// toBigEndian turns registers as read from the wire into the big-endian bytes
// of the value.
func (o Order) toBigEndian(regs []uint16) []byte {
	b := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(b[2*i:], r)
	}
	if o == DCBA || o == CDAB { // words in reverse order
		for i, j := 0, len(regs)-1; i < j; i, j = i+1, j-1 {
			b[2*i], b[2*i+1], b[2*j], b[2*j+1] = b[2*j], b[2*j+1], b[2*i], b[2*i+1]
		}
	}
	if o == DCBA || o == BADC { // bytes swapped inside each word
		for i := 0; i < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	return b
}

// fromBigEndian is the inverse of toBigEndian (every order is its own inverse).
func (o Order) fromBigEndian(b []byte) []uint16 {
	regs := make([]uint16, len(b)/2)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	swapped := o.toBigEndian(regs)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(swapped[2*i:])
	}
	return regs
}

// decodeValue interprets a point's registers: integers stay exact (int64 or
// uint64), floats are float64, strings have trailing NULs and spaces cut.
func decodeValue(t Type, o Order, regs []uint16) (any, error) {
	switch t {
	case Int64, Uint64:
		if len(regs) != 4 {
			return nil, fmt.Errorf("%s needs 4 registers, got %d", t, len(regs))
		}
		u := binary.BigEndian.Uint64(o.toBigEndian(regs))
		if t == Int64 {
			return int64(u), nil
		}
		return u, nil
	case String:
		b := make([]byte, 2*len(regs))
		for i, r := range regs {
			binary.BigEndian.PutUint16(b[2*i:], r)
		}
		if o == BADC || o == DCBA { // low byte first within each register
			for i := 0; i < len(b); i += 2 {
				b[i], b[i+1] = b[i+1], b[i]
			}
		}
		return strings.ToValidUTF8(strings.TrimRight(string(b), "\x00 "), "\uFFFD"), nil
	}
	return decodeRegisters(t, o, regs)
}

// decodeRegisters interprets exactly t.Registers() registers as a raw number.
func decodeRegisters(t Type, o Order, regs []uint16) (float64, error) {
	if len(regs) != t.Registers() {
		return 0, fmt.Errorf("%s needs %d registers, got %d", t, t.Registers(), len(regs))
	}
	b := o.toBigEndian(regs)
	switch t {
	case Int16:
		return float64(int16(binary.BigEndian.Uint16(b))), nil
	case Uint16:
		return float64(binary.BigEndian.Uint16(b)), nil
	case Int32:
		return float64(int32(binary.BigEndian.Uint32(b))), nil
	case Uint32:
		return float64(binary.BigEndian.Uint32(b)), nil
	case Float32:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case Float64:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case Int64:
		return float64(int64(binary.BigEndian.Uint64(b))), nil
	case Uint64:
		return float64(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("type %s is not a number type", t)
}

// encodeRegisters is the inverse of decodeRegisters; it refuses values the
// type cannot hold instead of wrapping them.
func encodeRegisters(t Type, o Order, v float64) ([]uint16, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("value %v is not a finite number", v)
	}
	integer := func(lo, hi float64) error {
		if v != math.Trunc(v) || v < lo || v > hi {
			return fmt.Errorf("value %v does not fit %s", v, t)
		}
		return nil
	}
	b := make([]byte, 2*t.Registers())
	switch t {
	case Int16:
		if err := integer(math.MinInt16, math.MaxInt16); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint16(b, uint16(int16(v)))
	case Uint16:
		if err := integer(0, math.MaxUint16); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint16(b, uint16(v))
	case Int32:
		if err := integer(math.MinInt32, math.MaxInt32); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b, uint32(int32(v)))
	case Uint32:
		if err := integer(0, math.MaxUint32); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b, uint32(v))
	case Float32:
		if math.Abs(v) > math.MaxFloat32 {
			return nil, fmt.Errorf("value %v does not fit float32", v)
		}
		binary.BigEndian.PutUint32(b, math.Float32bits(float32(v)))
	case Float64:
		binary.BigEndian.PutUint64(b, math.Float64bits(v))
	case Int64:
		if err := integer(-(1 << 63), 1<<63-1024); err != nil { // float64 cannot hold 2^63-1 exactly
			return nil, err
		}
		binary.BigEndian.PutUint64(b, uint64(int64(v)))
	case Uint64:
		if err := integer(0, 1<<64-2048); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint64(b, uint64(v))
	default:
		return nil, fmt.Errorf("type %s is not a register type", t)
	}
	return o.fromBigEndian(b), nil
}
