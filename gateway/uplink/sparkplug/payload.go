package sparkplug

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// DataType is a Sparkplug B metric or property datatype (the numbering of
// the published sparkplug_b.proto).
type DataType uint32

// The datatypes Lintel uses; the numbers are the schema's.
const (
	Unknown  DataType = 0
	Int8     DataType = 1
	Int16    DataType = 2
	Int32    DataType = 3
	Int64    DataType = 4
	UInt8    DataType = 5
	UInt16   DataType = 6
	UInt32   DataType = 7
	UInt64   DataType = 8
	Float    DataType = 9
	Double   DataType = 10
	Boolean  DataType = 11
	String   DataType = 12
	DateTime DataType = 13
	Text     DataType = 14
	Bytes    DataType = 17
)

// Payload is the Sparkplug B Payload message. Only the fields Lintel sends
// or reads are modelled; unknown fields are skipped when decoding.
type Payload struct {
	Timestamp uint64 // field 1, ms since the epoch
	Metrics   []Metric
	Seq       *uint64 // field 3; nil: absent (STATE-less NDEATH)
	UUID      string  // field 4
	Body      []byte  // field 5
}

// Metric is Payload.Metric. Value holds one of bool, int64 (int and long
// values), uint64, float32, float64, string, []byte, or nil.
type Metric struct {
	Name         string // 1
	Alias        *uint64
	Timestamp    uint64 // 3
	Datatype     DataType
	IsHistorical bool // 5
	IsTransient  bool // 6
	IsNull       bool // 7
	Properties   *PropertySet
	Value        any
}

// PropertySet is Payload.PropertySet: parallel keys and values.
type PropertySet struct {
	Keys   []string
	Values []PropertyValue
}

// PropertyValue is Payload.PropertyValue (scalar values only).
type PropertyValue struct {
	Type   DataType
	IsNull bool
	Value  any // bool, uint32, uint64, float32, float64, string
}

// Get returns the value of the property key, or nil.
func (p *PropertySet) Get(key string) any {
	if p == nil {
		return nil
	}
	for i, k := range p.Keys {
		if k == key && i < len(p.Values) {
			return p.Values[i].Value
		}
	}
	return nil
}

// Marshal encodes the payload in the schema's wire format.
func (p *Payload) Marshal() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, p.Timestamp)
	for i := range p.Metrics {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Metrics[i].marshal())
	}
	if p.Seq != nil {
		b = AppendSeq(b, *p.Seq)
	}
	if p.UUID != "" {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, p.UUID)
	}
	if p.Body != nil {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Body)
	}
	return b
}

// AppendSeq appends the Payload's seq field to an encoded payload. Field
// order does not matter in protobuf, so a session can stamp the seq when it
// publishes.
func AppendSeq(b []byte, seq uint64) []byte {
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}

func (m *Metric) marshal() []byte {
	var b []byte
	if m.Name != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, m.Name)
	}
	if m.Alias != nil {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, *m.Alias)
	}
	if m.Timestamp != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, m.Timestamp)
	}
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.Datatype))
	for _, f := range []struct {
		num protowire.Number
		on  bool
	}{{5, m.IsHistorical}, {6, m.IsTransient}, {7, m.IsNull}} {
		if f.on {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, 1)
		}
	}
	if m.Properties != nil {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Properties.marshal())
	}
	if !m.IsNull {
		b = appendValue(b, m.Value, 10)
	}
	return b
}

// appendValue writes a oneof value whose int_value field number is base:
// the scalar fields follow in the same order in Metric (10..16) and
// PropertyValue (3..8).
func appendValue(b []byte, v any, base protowire.Number) []byte {
	switch v := v.(type) {
	case uint32:
		b = protowire.AppendTag(b, base, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	case int64:
		b = protowire.AppendTag(b, base+1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	case uint64:
		b = protowire.AppendTag(b, base+1, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	case float32:
		b = protowire.AppendTag(b, base+2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	case float64:
		b = protowire.AppendTag(b, base+3, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	case bool:
		b = protowire.AppendTag(b, base+4, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v))
	case string:
		b = protowire.AppendTag(b, base+5, protowire.BytesType)
		b = protowire.AppendString(b, v)
	case []byte:
		b = protowire.AppendTag(b, base+6, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	return b
}

func (p *PropertySet) marshal() []byte {
	var b []byte
	for _, k := range p.Keys {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
	}
	for _, v := range p.Values {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.VarintType)
		e = protowire.AppendVarint(e, uint64(v.Type))
		if v.IsNull {
			e = protowire.AppendTag(e, 2, protowire.VarintType)
			e = protowire.AppendVarint(e, 1)
		} else {
			e = appendValue(e, v.Value, 3)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// errTruncated is returned for a payload that ends inside a field.
var errTruncated = errors.New("sparkplug payload: truncated or malformed field")

// fields walks the top-level fields of one message.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

// Unmarshal decodes a Sparkplug B payload.
func Unmarshal(b []byte) (*Payload, error) {
	p := &Payload{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case 1:
			p.Timestamp = v
		case 2:
			m, err := unmarshalMetric(data)
			if err != nil {
				return err
			}
			p.Metrics = append(p.Metrics, m)
		case 3:
			s := v
			p.Seq = &s
		case 4:
			p.UUID = string(data)
		case 5:
			p.Body = append([]byte(nil), data...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// scalar decodes a oneof scalar whose int_value field number is base.
func scalar(num, base protowire.Number, v uint64, data []byte) (any, bool) {
	switch num - base {
	case 0:
		return uint32(v), true
	case 1:
		return v, true
	case 2:
		return math.Float32frombits(uint32(v)), true
	case 3:
		return math.Float64frombits(v), true
	case 4:
		return v != 0, true
	case 5:
		return string(data), true
	case 6:
		return append([]byte(nil), data...), true
	}
	return nil, false
}

func unmarshalMetric(b []byte) (Metric, error) {
	var m Metric
	err := fields(b, func(num protowire.Number, _ protowire.Type, v uint64, data []byte) error {
		switch num {
		case 1:
			m.Name = string(data)
		case 2:
			a := v
			m.Alias = &a
		case 3:
			m.Timestamp = v
		case 4:
			m.Datatype = DataType(v)
		case 5:
			m.IsHistorical = v != 0
		case 6:
			m.IsTransient = v != 0
		case 7:
			m.IsNull = v != 0
		case 9:
			ps, err := unmarshalPropertySet(data)
			if err != nil {
				return err
			}
			m.Properties = ps
		case 10, 11, 12, 13, 14, 15, 16:
			m.Value, _ = scalar(num, 10, v, data)
		}
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("metric: %w", err)
	}
	// long_value is unsigned on the wire; signed types carry two's complement.
	if u, ok := m.Value.(uint64); ok && (m.Datatype == Int64 || m.Datatype == DateTime) {
		m.Value = int64(u)
	}
	return m, nil
}

func unmarshalPropertySet(b []byte) (*PropertySet, error) {
	ps := &PropertySet{}
	err := fields(b, func(num protowire.Number, _ protowire.Type, _ uint64, data []byte) error {
		switch num {
		case 1:
			ps.Keys = append(ps.Keys, string(data))
		case 2:
			var pv PropertyValue
			err := fields(data, func(num protowire.Number, _ protowire.Type, v uint64, data []byte) error {
				switch {
				case num == 1:
					pv.Type = DataType(v)
				case num == 2:
					pv.IsNull = v != 0
				case num >= 3 && num <= 8:
					pv.Value, _ = scalar(num, 3, v, data)
				}
				return nil
			})
			if err != nil {
				return err
			}
			ps.Values = append(ps.Values, pv)
		}
		return nil
	})
	return ps, err
}
