package bacnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Application tag numbers (clause 20.2.1.4).
const (
	tagNull        = 0
	tagBoolean     = 1
	tagUnsigned    = 2
	tagSigned      = 3
	tagReal        = 4
	tagDouble      = 5
	tagOctetString = 6
	tagCharString  = 7
	tagBitString   = 8
	tagEnumerated  = 9
	tagDate        = 10
	tagTime        = 11
	tagObjectID    = 12
)

// Values of the application tags are Go values of these types:
//
//	Null       Null{}
//	Boolean    bool
//	Unsigned   uint64
//	Signed     int64
//	Real       float32
//	Double     float64
//	Octets     []byte
//	Characters string (UTF-8 on the wire)
//	Bits       BitString
//	Enumerated Enumerated
//	Object id  ObjectID
//	Date, Time Raw (kept as their octets)
//
// Context-tagged primitives inside a constructed value decode as Raw and
// nested opening/closing pairs as Constructed.

// Null is the BACnet NULL value; written at a priority it relinquishes it.
type Null struct{}

// Enumerated is a BACnet enumerated value.
type Enumerated uint32

// BitString is a BACnet bit string, bit 0 first.
type BitString []bool

// Raw is a primitive value the codec does not interpret.
type Raw struct {
	Context bool
	Tag     uint8
	Data    []byte
}

// Constructed is a context-tagged constructed value (opening..closing tag).
type Constructed struct {
	Tag    uint8
	Values []any
}

// ObjectType is a BACnet object type.
type ObjectType uint16

// Object types the adapter reads.
const (
	AnalogInput      ObjectType = 0
	AnalogOutput     ObjectType = 1
	AnalogValue      ObjectType = 2
	BinaryInput      ObjectType = 3
	BinaryOutput     ObjectType = 4
	BinaryValue      ObjectType = 5
	DeviceObject     ObjectType = 8
	MultiStateInput  ObjectType = 13
	MultiStateOutput ObjectType = 14
	MultiStateValue  ObjectType = 19
)

var objectTypeNames = map[ObjectType]string{
	AnalogInput: "analog-input", AnalogOutput: "analog-output", AnalogValue: "analog-value",
	BinaryInput: "binary-input", BinaryOutput: "binary-output", BinaryValue: "binary-value",
	DeviceObject: "device", MultiStateInput: "multi-state-input", MultiStateOutput: "multi-state-output",
	MultiStateValue: "multi-state-value",
}

func (t ObjectType) String() string {
	if s, ok := objectTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("object-type-%d", uint16(t))
}

// ParseObjectType parses a name as written in the config (analog-input …).
func ParseObjectType(s string) (ObjectType, error) {
	for t, n := range objectTypeNames {
		if n == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown object type %q", s)
}

// IsAnalog, IsBinary and IsMultiState group the point object types.
func (t ObjectType) IsAnalog() bool { return t == AnalogInput || t == AnalogOutput || t == AnalogValue }

// IsBinary reports a binary-input/output/value.
func (t ObjectType) IsBinary() bool { return t == BinaryInput || t == BinaryOutput || t == BinaryValue }

// IsMultiState reports a multi-state-input/output/value.
func (t ObjectType) IsMultiState() bool {
	return t == MultiStateInput || t == MultiStateOutput || t == MultiStateValue
}

// Commandable reports an output or value object, whose present-value has a
// priority array (inputs do not).
func (t ObjectType) Commandable() bool {
	return (t.IsAnalog() || t.IsBinary() || t.IsMultiState()) && t != AnalogInput && t != BinaryInput && t != MultiStateInput
}

// MaxInstance is the largest object instance (22 bits).
const MaxInstance = 1<<22 - 1

// ObjectID identifies an object on a device.
type ObjectID struct {
	Type     ObjectType
	Instance uint32
}

func (o ObjectID) String() string { return fmt.Sprintf("%s:%d", o.Type, o.Instance) }

func (o ObjectID) uint32() uint32 { return uint32(o.Type)<<22 | o.Instance&MaxInstance }

func objectIDFrom(u uint32) ObjectID {
	return ObjectID{Type: ObjectType(u >> 22), Instance: u & MaxInstance}
}

// PropertyID is a BACnet property identifier.
type PropertyID uint32

// Properties the adapter uses.
const (
	PropDescription       PropertyID = 28
	PropObjectIdentifier  PropertyID = 75
	PropObjectList        PropertyID = 76
	PropObjectName        PropertyID = 77
	PropObjectType        PropertyID = 79
	PropOutOfService      PropertyID = 81
	PropPresentValue      PropertyID = 85
	PropPriorityArray     PropertyID = 87
	PropReliability       PropertyID = 103
	PropRelinquishDefault PropertyID = 104
	PropStatusFlags       PropertyID = 111
	PropUnits             PropertyID = 117
)

// ---- encoding ----

// appendTag appends a tag header.
func appendTag(b []byte, num uint8, context bool, length uint32) []byte {
	first := byte(0)
	if context {
		first |= 0x08
	}
	var ext []byte
	if num < 15 {
		first |= num << 4
	} else {
		first |= 0xF0
		ext = append(ext, num)
	}
	switch {
	case length <= 4:
		first |= byte(length)
		b = append(b, first)
		b = append(b, ext...)
	default:
		first |= 5
		b = append(b, first)
		b = append(b, ext...)
		switch {
		case length < 254:
			b = append(b, byte(length))
		case length <= math.MaxUint16:
			b = append(b, 254, byte(length>>8), byte(length))
		default:
			b = append(b, 255)
			b = binary.BigEndian.AppendUint32(b, length)
		}
	}
	return b
}

// appendOpening and appendClosing append context opening/closing tags.
func appendOpening(b []byte, num uint8) []byte { return appendPairTag(b, num, 6) }
func appendClosing(b []byte, num uint8) []byte { return appendPairTag(b, num, 7) }

func appendPairTag(b []byte, num uint8, lvt byte) []byte {
	if num < 15 {
		return append(b, num<<4|0x08|lvt)
	}
	return append(b, 0xF8|lvt, num)
}

func unsignedBytes(u uint64) []byte {
	n := 1
	for n < 8 && u>>(8*n) != 0 {
		n++
	}
	out := make([]byte, n)
	for i := range n {
		out[n-1-i] = byte(u >> (8 * i))
	}
	return out
}

func signedBytes(v int64) []byte {
	n := 1
	for n < 8 && (v < -(1<<(8*n-1)) || v >= 1<<(8*n-1)) {
		n++
	}
	out := make([]byte, n)
	for i := range n {
		out[n-1-i] = byte(v >> (8 * i))
	}
	return out
}

func appendPrimitive(b []byte, num uint8, context bool, data []byte) []byte {
	b = appendTag(b, num, context, uint32(len(data)))
	return append(b, data...)
}

func appendContextUnsigned(b []byte, num uint8, u uint64) []byte {
	return appendPrimitive(b, num, true, unsignedBytes(u))
}

func appendContextObjectID(b []byte, num uint8, o ObjectID) []byte {
	return appendPrimitive(b, num, true, binary.BigEndian.AppendUint32(nil, o.uint32()))
}

func appendContextBool(b []byte, num uint8, v bool) []byte {
	d := byte(0)
	if v {
		d = 1
	}
	return appendPrimitive(b, num, true, []byte{d})
}

// AppendValue appends v with its application tag. It refuses types it
// cannot encode.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case Null:
		return append(b, 0x00), nil
	case bool:
		if v {
			return append(b, 0x11), nil
		}
		return append(b, 0x10), nil
	case uint64:
		return appendPrimitive(b, tagUnsigned, false, unsignedBytes(v)), nil
	case int64:
		return appendPrimitive(b, tagSigned, false, signedBytes(v)), nil
	case float32:
		return appendPrimitive(b, tagReal, false, binary.BigEndian.AppendUint32(nil, math.Float32bits(v))), nil
	case float64:
		return appendPrimitive(b, tagDouble, false, binary.BigEndian.AppendUint64(nil, math.Float64bits(v))), nil
	case []byte:
		return appendPrimitive(b, tagOctetString, false, v), nil
	case string:
		return appendPrimitive(b, tagCharString, false, append([]byte{0}, v...)), nil
	case BitString:
		return appendPrimitive(b, tagBitString, false, bitStringBytes(v)), nil
	case Enumerated:
		return appendPrimitive(b, tagEnumerated, false, unsignedBytes(uint64(v))), nil
	case ObjectID:
		return appendPrimitive(b, tagObjectID, false, binary.BigEndian.AppendUint32(nil, v.uint32())), nil
	case Raw:
		return appendPrimitive(b, v.Tag, v.Context, v.Data), nil
	case Constructed:
		b = appendOpening(b, v.Tag)
		for _, e := range v.Values {
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return nil, err
			}
		}
		return appendClosing(b, v.Tag), nil
	}
	return nil, fmt.Errorf("cannot encode %T as a BACnet value", v)
}

func bitStringBytes(bits BitString) []byte {
	n := (len(bits) + 7) / 8
	out := make([]byte, 1+n)
	out[0] = byte(8*n - len(bits))
	for i, set := range bits {
		if set {
			out[1+i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

// ---- decoding ----

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed BACnet data")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// reader walks tagged data without ever reading out of bounds.
type reader struct {
	b []byte
	i int
}

type tagHeader struct {
	num     uint8
	context bool
	opening bool
	closing bool
	length  uint32 // content length; for an application Boolean, its value
	size    int    // bytes of the header itself
}

func (r *reader) done() bool { return r.i >= len(r.b) }

// peek decodes the next tag header without consuming it.
func (r *reader) peek() (tagHeader, error) {
	b := r.b[r.i:]
	if len(b) == 0 {
		return tagHeader{}, malformed("missing tag")
	}
	h := tagHeader{context: b[0]&0x08 != 0, num: b[0] >> 4, size: 1}
	lvt := b[0] & 0x07
	if h.num == 15 {
		if len(b) < 2 {
			return h, malformed("truncated extended tag number")
		}
		h.num = b[1]
		h.size = 2
	}
	switch {
	case h.context && lvt == 6:
		h.opening = true
		return h, nil
	case h.context && lvt == 7:
		h.closing = true
		return h, nil
	case !h.context && h.num == tagBoolean:
		if lvt > 1 {
			return h, malformed("boolean value %d", lvt)
		}
		h.length = uint32(lvt)
		return h, nil
	case lvt < 5:
		h.length = uint32(lvt)
	case lvt == 5:
		if len(b) < h.size+1 {
			return h, malformed("truncated length")
		}
		l := b[h.size]
		h.size++
		switch l {
		case 254:
			if len(b) < h.size+2 {
				return h, malformed("truncated length")
			}
			h.length = uint32(binary.BigEndian.Uint16(b[h.size:]))
			h.size += 2
		case 255:
			if len(b) < h.size+4 {
				return h, malformed("truncated length")
			}
			h.length = binary.BigEndian.Uint32(b[h.size:])
			h.size += 4
		default:
			h.length = uint32(l)
		}
	default:
		return h, malformed("application tag %d with L/V/T %d", h.num, lvt)
	}
	if uint64(h.length) > uint64(len(b)-h.size) {
		return h, malformed("tag %d length %d beyond the %d bytes left", h.num, h.length, len(b)-h.size)
	}
	return h, nil
}

// next consumes a tag header and returns it with its content.
func (r *reader) next() (tagHeader, []byte, error) {
	h, err := r.peek()
	if err != nil {
		return h, nil, err
	}
	r.i += h.size
	if h.opening || h.closing || (!h.context && h.num == tagBoolean) {
		return h, nil, nil
	}
	data := r.b[r.i : r.i+int(h.length)]
	r.i += int(h.length)
	return h, data, nil
}

// isContext reports whether the next tag is context tag num of the given kind.
func (r *reader) isContext(num uint8) bool {
	h, err := r.peek()
	return err == nil && h.context && !h.opening && !h.closing && h.num == num
}

func (r *reader) isOpening(num uint8) bool {
	h, err := r.peek()
	return err == nil && h.opening && h.num == num
}

func (r *reader) isClosing(num uint8) bool {
	h, err := r.peek()
	return err == nil && h.closing && h.num == num
}

func (r *reader) expectOpening(num uint8) error {
	h, _, err := r.next()
	if err != nil {
		return err
	}
	if !h.opening || h.num != num {
		return malformed("want opening tag %d", num)
	}
	return nil
}

func (r *reader) expectClosing(num uint8) error {
	h, _, err := r.next()
	if err != nil {
		return err
	}
	if !h.closing || h.num != num {
		return malformed("want closing tag %d", num)
	}
	return nil
}

// contextData reads context tag num and returns its content.
func (r *reader) contextData(num uint8) ([]byte, error) {
	h, data, err := r.next()
	if err != nil {
		return nil, err
	}
	if !h.context || h.opening || h.closing || h.num != num {
		return nil, malformed("want context tag %d", num)
	}
	return data, nil
}

func (r *reader) contextUnsigned(num uint8) (uint64, error) {
	d, err := r.contextData(num)
	if err != nil {
		return 0, err
	}
	return decodeUnsigned(d)
}

func (r *reader) contextObjectID(num uint8) (ObjectID, error) {
	d, err := r.contextData(num)
	if err != nil {
		return ObjectID{}, err
	}
	if len(d) != 4 {
		return ObjectID{}, malformed("object identifier of %d bytes", len(d))
	}
	return objectIDFrom(binary.BigEndian.Uint32(d)), nil
}

func decodeUnsigned(d []byte) (uint64, error) {
	if len(d) < 1 || len(d) > 8 {
		return 0, malformed("unsigned of %d bytes", len(d))
	}
	var u uint64
	for _, c := range d {
		u = u<<8 | uint64(c)
	}
	return u, nil
}

func decodeSigned(d []byte) (int64, error) {
	if len(d) < 1 || len(d) > 8 {
		return 0, malformed("signed of %d bytes", len(d))
	}
	v := int64(int8(d[0]))
	for _, c := range d[1:] {
		v = v<<8 | int64(c)
	}
	return v, nil
}

// value reads one value: an application-tagged primitive, a context
// primitive (Raw) or a constructed value.
func (r *reader) value(depth int) (any, error) {
	if depth > 16 {
		return nil, malformed("values nested too deeply")
	}
	h, data, err := r.next()
	if err != nil {
		return nil, err
	}
	switch {
	case h.closing:
		return nil, malformed("unexpected closing tag %d", h.num)
	case h.opening:
		c := Constructed{Tag: h.num}
		for !r.isClosing(h.num) {
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
		}
		if err := r.expectClosing(h.num); err != nil {
			return nil, err
		}
		return c, nil
	case h.context:
		return Raw{Context: true, Tag: h.num, Data: data}, nil
	}
	return decodeApplication(h, data)
}

func decodeApplication(h tagHeader, d []byte) (any, error) {
	switch h.num {
	case tagNull:
		if len(d) != 0 {
			return nil, malformed("null with content")
		}
		return Null{}, nil
	case tagBoolean:
		return h.length == 1, nil
	case tagUnsigned:
		return decodeUnsigned(d)
	case tagSigned:
		return decodeSigned(d)
	case tagReal:
		if len(d) != 4 {
			return nil, malformed("real of %d bytes", len(d))
		}
		return math.Float32frombits(binary.BigEndian.Uint32(d)), nil
	case tagDouble:
		if len(d) != 8 {
			return nil, malformed("double of %d bytes", len(d))
		}
		return math.Float64frombits(binary.BigEndian.Uint64(d)), nil
	case tagOctetString:
		return append([]byte{}, d...), nil
	case tagCharString:
		return decodeCharString(d)
	case tagBitString:
		if len(d) < 1 || d[0] > 7 || (len(d) == 1 && d[0] != 0) {
			return nil, malformed("bit string")
		}
		bits := make(BitString, 8*(len(d)-1)-int(d[0]))
		for i := range bits {
			bits[i] = d[1+i/8]&(0x80>>(i%8)) != 0
		}
		return bits, nil
	case tagEnumerated:
		u, err := decodeUnsigned(d)
		if err != nil || u > math.MaxUint32 {
			return nil, malformed("enumerated of %d bytes", len(d))
		}
		return Enumerated(u), nil
	case tagObjectID:
		if len(d) != 4 {
			return nil, malformed("object identifier of %d bytes", len(d))
		}
		return objectIDFrom(binary.BigEndian.Uint32(d)), nil
	}
	return Raw{Tag: h.num, Data: append([]byte{}, d...)}, nil
}

// decodeCharString decodes UTF-8 (character set 0) and ISO 8859-1 (5);
// other character sets are refused rather than guessed.
func decodeCharString(d []byte) (string, error) {
	if len(d) < 1 {
		return "", malformed("character string without character set")
	}
	switch d[0] {
	case 0:
		return strings.ToValidUTF8(string(d[1:]), "\uFFFD"), nil
	case 5:
		var sb strings.Builder
		for _, c := range d[1:] {
			sb.WriteRune(rune(c))
		}
		return sb.String(), nil
	}
	return "", malformed("character set %d not supported", d[0])
}

// valuesUntil reads values up to (and including) closing tag num.
func (r *reader) valuesUntil(num uint8) ([]any, error) {
	var vals []any
	for !r.isClosing(num) {
		if r.done() {
			return nil, malformed("missing closing tag %d", num)
		}
		v, err := r.value(0)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	return vals, r.expectClosing(num)
}
