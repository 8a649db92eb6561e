package sparkplug

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
)

// TestPayloadGolden: bytes worked out by hand from the field numbers of the
// published sparkplug_b.proto (Payload: timestamp 1, metrics 2, seq 3;
// Metric: name 1, timestamp 3, datatype 4, is_historical 5, is_null 7,
// properties 9, long_value 11, double_value 13, boolean_value 14,
// string_value 15; PropertySet: keys 1, values 2; PropertyValue: type 1,
// string_value 8).
func TestPayloadGolden(t *testing.T) {
	seq := uint64(2)
	cases := []struct {
		name string
		p    Payload
		hex  string
	}{
		{"boolean", Payload{Timestamp: 1, Metrics: []Metric{{Name: "a", Datatype: Boolean, Value: true}}, Seq: &seq},
			"0801" + "1207" + "0a0161" + "200b" + "7001" + "1802"},
		{"long bdSeq", Payload{Timestamp: 300, Metrics: []Metric{{Name: "bdSeq", Datatype: Int64, Value: int64(5)}}},
			"08ac02" + "120b" + "0a056264536571" + "2004" + "5805"},
		{"historical double with unit", Payload{Timestamp: 1, Metrics: []Metric{{Name: "t", Timestamp: 2, Datatype: Double, IsHistorical: true,
			Properties: &PropertySet{Keys: []string{"unit"}, Values: []PropertyValue{{Type: String, Value: "C"}}}, Value: 1.5}}},
			"0801" + "1221" + "0a0174" + "1802" + "200a" + "2801" + "4a0d" + "0a04756e6974" + "1205" + "080c" + "4201" + "43" + "69" + "000000000000f83f"},
		{"null string", Payload{Timestamp: 1, Metrics: []Metric{{Name: "s", Datatype: String, IsNull: true, Value: "ignored"}}},
			"0801" + "1207" + "0a0173" + "200c" + "3801"},
	}
	for _, c := range cases {
		got := c.p.Marshal()
		want, _ := hex.DecodeString(c.hex)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", c.name, got, want)
		}
	}
}

// TestPayloadRoundTrip: every value kind Lintel sends decodes to itself,
// and unknown fields are skipped.
func TestPayloadRoundTrip(t *testing.T) {
	seq := uint64(255)
	p := Payload{Timestamp: 1733000000000, Seq: &seq, UUID: "u", Metrics: []Metric{
		{Name: "b", Datatype: Boolean, Value: false},
		{Name: "l", Datatype: Int64, Value: int64(-7)},
		{Name: "d", Datatype: Double, Value: math.Pi},
		{Name: "f", Datatype: Float, Value: float32(2.5)},
		{Name: "s", Datatype: String, Value: "x", Properties: &PropertySet{Keys: []string{"scale"}, Values: []PropertyValue{{Type: Double, Value: 0.1}}}},
		{Name: "n", Datatype: Double, IsNull: true},
	}}
	b := p.Marshal()
	b = append(b, 0xa2, 0x06, 0x01, 0x00) // field 100, bytes: an extension we do not know
	q, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if q.Timestamp != p.Timestamp || q.Seq == nil || *q.Seq != 255 || q.UUID != "u" || len(q.Metrics) != len(p.Metrics) {
		t.Fatalf("decoded %+v", q)
	}
	for i, m := range q.Metrics {
		w := p.Metrics[i]
		if m.Name != w.Name || m.Datatype != w.Datatype || m.IsNull != w.IsNull || (!w.IsNull && m.Value != w.Value) {
			t.Errorf("metric %d: got %+v, want %+v", i, m, w)
		}
	}
	if q.Metrics[4].Properties.Get("scale") != 0.1 {
		t.Errorf("scale property: %+v", q.Metrics[4].Properties)
	}
	if _, err := Unmarshal(b[:len(b)-6]); err == nil {
		t.Error("a truncated payload decoded without error")
	}
}
