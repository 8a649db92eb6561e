package bacnet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ANSI/ASHRAE 135 Annex F.3.5 (ReadProperty): read the Present_Value of
// Analog Input 5, invoke id 1; the answer is REAL 72.3.
func TestGoldenReadPropertyAnnexF35(t *testing.T) {
	req := unhex(t, "00 00 01 0C 0C 00000005 19 55")
	a, err := DecodeAPDU(req)
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != ConfirmedRequest || a.InvokeID != 1 || a.Service != ServiceReadProperty || a.MaxAPDU != 0 {
		t.Fatalf("header %+v", a)
	}
	rp, err := DecodeReadProperty(a.Data)
	if err != nil {
		t.Fatal(err)
	}
	want := ReadProperty{Object: ObjectID{AnalogInput, 5}, PropertyRef: PropertyRef{PropPresentValue, NoIndex}}
	if rp != want {
		t.Fatalf("request %+v, want %+v", rp, want)
	}
	if got := (APDU{Type: ConfirmedRequest, InvokeID: 1, Service: ServiceReadProperty, Data: want.Encode()}).Encode(); !bytes.Equal(got, req) {
		t.Fatalf("encoded % x, want % x", got, req)
	}

	ack := unhex(t, "30 01 0C 0C 00000005 19 55 3E 44 4290999A 3F")
	a, err = DecodeAPDU(ack)
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != ComplexACK || a.InvokeID != 1 || a.Service != ServiceReadProperty {
		t.Fatalf("header %+v", a)
	}
	rpa, err := DecodeReadPropertyACK(a.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rpa.Values) != 1 || rpa.Values[0] != float32(72.3) || rpa.Object != want.Object {
		t.Fatalf("ack %+v", rpa)
	}
	data, err := rpa.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := (APDU{Type: ComplexACK, InvokeID: 1, Service: ServiceReadProperty, Data: data}).Encode(); !bytes.Equal(got, ack) {
		t.Fatalf("encoded % x, want % x", got, ack)
	}
}

// Derived from ANSI/ASHRAE 135 Annex F.3.7 (ReadPropertyMultiple):
// Present_Value and Reliability of Analog Input 16, invoke id 241; the answer
// is 72.3 and NO_FAULT_DETECTED.
func TestGoldenReadPropertyMultipleAnnexF37(t *testing.T) {
	reqData := unhex(t, "0C 00000010 1E 09 55 09 67 1F")
	specs := []ReadAccessSpec{{Object: ObjectID{AnalogInput, 16}, Properties: []PropertyRef{{PropPresentValue, NoIndex}, {PropReliability, NoIndex}}}}
	if got := EncodeReadPropertyMultiple(specs); !bytes.Equal(got, reqData) {
		t.Fatalf("encoded % x, want % x", got, reqData)
	}
	back, err := DecodeReadPropertyMultiple(reqData)
	if err != nil || !reflect.DeepEqual(back, specs) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	ackData := unhex(t, "0C 00000010 1E 29 55 4E 44 4290999A 4F 29 67 4E 91 00 4F 1F")
	res, err := DecodeReadPropertyMultipleACK(ackData)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReadAccessResult{{Object: ObjectID{AnalogInput, 16}, Results: []PropertyResult{
		{PropertyRef: PropertyRef{PropPresentValue, NoIndex}, Values: []any{float32(72.3)}},
		{PropertyRef: PropertyRef{PropReliability, NoIndex}, Values: []any{Enumerated(0)}},
	}}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("decoded %+v, want %+v", res, want)
	}
	if got, _ := EncodeReadPropertyMultipleACK(want); !bytes.Equal(got, ackData) {
		t.Fatalf("encoded % x, want % x", got, ackData)
	}
}

// ANSI/ASHRAE 135 Annex F.3.11 (WriteProperty): write 180.0 to the
// Present_Value of Analog Value 1, invoke id 89; the device answers Simple-ACK.
func TestGoldenWritePropertyAnnexF311(t *testing.T) {
	data := unhex(t, "0C 00800001 19 55 3E 44 43340000 3F")
	w := WriteProperty{Object: ObjectID{AnalogValue, 1}, PropertyRef: PropertyRef{PropPresentValue, NoIndex}, Value: float32(180)}
	got, err := w.Encode()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("encoded % x (%v), want % x", got, err, data)
	}
	back, err := DecodeWriteProperty(data)
	if err != nil || back != w {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	ack := unhex(t, "20 59 0F")
	a, err := DecodeAPDU(ack)
	if err != nil || a.Type != SimpleACK || a.InvokeID != 0x59 || a.Service != ServiceWriteProperty {
		t.Fatalf("simple ack %+v, %v", a, err)
	}
	// With priority 8 (clause 15.9): context tag 4 follows the value.
	w.Priority = 8
	got, _ = w.Encode()
	if want := append(bytes.Clone(data), 0x49, 0x08); !bytes.Equal(got, want) {
		t.Fatalf("with priority % x, want % x", got, want)
	}
	// Relinquish: NULL at the priority.
	w.Value = Null{}
	got, _ = w.Encode()
	if want := unhex(t, "0C 00800001 19 55 3E 00 3F 49 08"); !bytes.Equal(got, want) {
		t.Fatalf("relinquish % x, want % x", got, want)
	}
}

// Application tag encodings of clause 20.2 (each example of 20.2.2–20.2.14).
func TestApplicationTagGolden(t *testing.T) {
	cases := []struct {
		v   any
		hex string
	}{
		{Null{}, "00"},
		{false, "10"},
		{true, "11"},
		{uint64(72), "21 48"},
		{uint64(256), "22 0100"},
		{uint64(1 << 32), "25 05 0100000000"},
		{int64(72), "31 48"},
		{int64(-1), "31 FF"},
		{int64(-129), "32 FF7F"},
		{float32(72.0), "44 42900000"},
		{float64(72.0), "55 08 4052000000000000"},
		{[]byte{0x12, 0x34, 0xFF}, "63 1234FF"},
		{"This is a BACnet string!", "75 19 00 546869732069732061204241436e657420737472696e6721"},
		{BitString{false, true, false, true, false, false, false, false}, "82 00 50"},
		{BitString{true, false, true}, "82 05 A0"},
		{Enumerated(0), "91 00"},
		{ObjectID{BinaryInput, 15}, "C4 00C0000F"},
	}
	for _, c := range cases {
		want := unhex(t, c.hex)
		got, err := AppendValue(nil, c.v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%#v: encoded % x (%v), want % x", c.v, got, err, want)
			continue
		}
		r := &reader{b: want}
		back, err := r.value(0)
		if err != nil || !reflect.DeepEqual(back, c.v) || !r.done() {
			t.Errorf("%#v: decoded %#v (%v)", c.v, back, err)
		}
	}
}

func TestLongLengthsAndExtendedTags(t *testing.T) {
	for _, n := range []int{4, 5, 253, 254, 300, 65535, 65536} {
		v := bytes.Repeat([]byte{0xAB}, n)
		b, _ := AppendValue(nil, v)
		r := &reader{b: b}
		back, err := r.value(0)
		if err != nil || !bytes.Equal(back.([]byte), v) || !r.done() {
			t.Fatalf("octet string of %d: %v", n, err)
		}
	}
	// Context tag 20 needs the extended tag number octet.
	b := appendContextUnsigned(nil, 20, 7)
	if want := []byte{0xF9, 20, 7}; !bytes.Equal(b, want) {
		t.Fatalf("extended tag % x, want % x", b, want)
	}
	b = appendOpening(nil, 20)
	b = appendContextUnsigned(b, 1, 2)
	b = appendClosing(b, 20)
	r := &reader{b: b}
	v, err := r.value(0)
	if err != nil || !reflect.DeepEqual(v, Constructed{Tag: 20, Values: []any{Raw{Context: true, Tag: 1, Data: []byte{2}}}}) {
		t.Fatalf("constructed %#v, %v", v, err)
	}
}

func TestBVLCAndNPDU(t *testing.T) {
	apdu := unhex(t, "10 08")
	frame := EncodeBVLC(BVLCOriginalBroadcastNPDU, EncodeNPDU(apdu, false))
	if want := unhex(t, "81 0B 0008 01 00 10 08"); !bytes.Equal(frame, want) {
		t.Fatalf("who-is frame % x, want % x", frame, want)
	}
	f, err := DecodeFrame(frame)
	if err != nil || !bytes.Equal(f.APDU, apdu) || f.Function != BVLCOriginalBroadcastNPDU {
		t.Fatalf("decoded %+v, %v", f, err)
	}
	if got := EncodeRegisterForeignDevice(60); !bytes.Equal(got, unhex(t, "81 05 0006 003C")) {
		t.Fatalf("register foreign device % x", got)
	}
	f, err = DecodeFrame(EncodeBVLCResult(0x30))
	if err != nil || f.Result != 0x30 || f.APDU != nil {
		t.Fatalf("result %+v, %v", f, err)
	}
	// Forwarded-NPDU from 192.168.1.10:47808 of a routed I-Am (SNET 5, SADR 0x0A).
	fwd := unhex(t, "81 04 0017 C0A8010A BAC0 01 08 0005 01 0A 10 00 C4 02000001")
	f, err = DecodeFrame(fwd)
	if err != nil || f.Origin.String() != "192.168.1.10:47808" || f.SNET != 5 || !bytes.Equal(f.SADR, []byte{0x0A}) || !bytes.Equal(f.APDU, unhex(t, "10 00 C4 02000001")) {
		t.Fatalf("forwarded %+v, %v", f, err)
	}
	// DNET present: the hop count is skipped.
	f, err = DecodeFrame(unhex(t, "81 0A 000C 01 24 FFFF 00 FF 20 08"))
	if err != nil || !f.ExpectingReply || !bytes.Equal(f.APDU, []byte{0x20, 0x08}) {
		t.Fatalf("dnet %+v, %v", f, err)
	}
	// Clause 6.2: to network 2001 (0x07D1), MAC 0x0A, expecting a reply.
	routed := EncodeNPDUVia([]byte{0x20, 0x08}, true, &Route{Net: 2001, MAC: []byte{0x0A}}, nil)
	if want := unhex(t, "01 24 07D1 01 0A FF 20 08"); !bytes.Equal(routed, want) {
		t.Fatalf("routed NPDU % x, want % x", routed, want)
	}
	f, err = DecodeFrame(EncodeBVLC(BVLCOriginalUnicastNPDU, routed))
	if err != nil || f.DNET != 2001 || !bytes.Equal(f.DADR, []byte{0x0A}) || !bytes.Equal(f.APDU, []byte{0x20, 0x08}) {
		t.Fatalf("routed %+v, %v", f, err)
	}
	answer := EncodeNPDUVia([]byte{0x20, 0x08}, false, nil, &Route{Net: 2001, MAC: []byte{0x0A}})
	if want := unhex(t, "01 08 07D1 01 0A 20 08"); !bytes.Equal(answer, want) {
		t.Fatalf("routed answer % x, want % x", answer, want)
	}
	for _, bad := range []string{"81 0A 000B 01 08 0000 01 0A 20 08", "81 0A 000A 01 08 0005 00 20 08", "81 0A 000B 01 20 0000 00 FF 20 08"} {
		if _, err := DecodeFrame(unhex(t, bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want malformed (network 0 or empty source address)", bad, err)
		}
	}
	for _, bad := range []string{"", "82 0A 0004", "81 0A 0009 01 00", "81 0A 0006 02 00", "81 0A 0009 01 20 FF", "81 06 0004"} {
		if _, err := DecodeFrame(unhex(t, bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want malformed", bad, err)
		}
	}
}

func TestAPDURoundTrip(t *testing.T) {
	cases := []APDU{
		{Type: ConfirmedRequest, MaxAPDU: 5, MaxSegments: 2, SegmentedAccepted: true, InvokeID: 7, Service: ServiceReadPropertyMultiple, Data: []byte{1, 2}},
		{Type: ConfirmedRequest, Segmented: true, MoreFollows: true, MaxAPDU: 5, InvokeID: 8, Sequence: 3, Window: 4, Service: ServiceWriteProperty, Data: []byte{9}},
		{Type: UnconfirmedRequest, Service: ServiceWhoIs, Data: []byte{}},
		{Type: SimpleACK, InvokeID: 9, Service: ServiceWriteProperty},
		{Type: ComplexACK, InvokeID: 10, Service: ServiceReadProperty, Data: []byte{3}},
		{Type: ComplexACK, Segmented: true, MoreFollows: true, InvokeID: 11, Sequence: 0, Window: 1, Service: ServiceReadProperty, Data: []byte{4}},
		{Type: SegmentACK, NAK: true, Server: true, InvokeID: 12, Sequence: 5, Window: 2},
		{Type: ErrorPDU, InvokeID: 13, Service: ServiceReadProperty, ErrorClass: ErrorClassObject, ErrorCode: ErrorCodeUnknownObject},
		{Type: RejectPDU, InvokeID: 14, Reason: RejectUnrecognizedService},
		{Type: AbortPDU, Server: true, InvokeID: 15, Reason: AbortSegmentationNotSupported},
	}
	for _, c := range cases {
		b := c.Encode()
		back, err := DecodeAPDU(b)
		if c.Data == nil && back.Data != nil && len(back.Data) == 0 {
			back.Data = nil
		}
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Errorf("%+v: got %+v, %v (% x)", c, back, err, b)
		}
	}
	// Error PDU: class object (1), code unknown-object (31) — clause 20.1.7.
	if got := (APDU{Type: ErrorPDU, InvokeID: 1, Service: 12, ErrorClass: 1, ErrorCode: 31}).Encode(); !bytes.Equal(got, unhex(t, "50 01 0C 91 01 91 1F")) {
		t.Fatalf("error pdu % x", got)
	}
}

func TestServiceRoundTrips(t *testing.T) {
	w := WhoIs{Low: 10, High: 70000}
	if got := w.Encode(); !bytes.Equal(got, unhex(t, "09 0A 1B 011170")) {
		t.Fatalf("who-is % x", got)
	}
	if back, err := DecodeWhoIs(w.Encode()); err != nil || back != w {
		t.Fatalf("who-is %+v %v", back, err)
	}
	if back, err := DecodeWhoIs(nil); err != nil || !back.Matches(4194302) {
		t.Fatalf("who-is all %+v %v", back, err)
	}
	if w.Matches(9) || !w.Matches(10) || !w.Matches(70000) || w.Matches(70001) {
		t.Fatal("who-is range")
	}
	iam := IAm{Device: ObjectID{DeviceObject, 13}, MaxAPDU: 1476, Segmentation: NoSegmentation, Vendor: 99}
	if got := iam.Encode(); !bytes.Equal(got, unhex(t, "C4 0200000D 22 05C4 91 03 21 63")) {
		t.Fatalf("i-am % x", got)
	}
	if back, err := DecodeIAm(iam.Encode()); err != nil || back != iam {
		t.Fatalf("i-am %+v %v", back, err)
	}
	s := SubscribeCOV{ProcessID: 18, Object: ObjectID{AnalogInput, 10}, Lifetime: 300}
	if got := s.Encode(); !bytes.Equal(got, unhex(t, "09 12 1C 0000000A 29 00 3A 012C")) {
		t.Fatalf("subscribe % x", got)
	}
	if back, err := DecodeSubscribeCOV(s.Encode()); err != nil || back != s {
		t.Fatalf("subscribe %+v %v", back, err)
	}
	c := SubscribeCOV{ProcessID: 18, Object: ObjectID{AnalogInput, 10}, Cancel: true}
	if back, err := DecodeSubscribeCOV(c.Encode()); err != nil || back != c {
		t.Fatalf("cancel %+v %v", back, err)
	}
	n := COVNotification{ProcessID: 18, Device: ObjectID{DeviceObject, 4}, Object: ObjectID{AnalogInput, 10}, TimeRemaining: 0,
		Values: []PropertyValue{
			{PropertyRef{PropPresentValue, NoIndex}, []any{float32(65)}},
			{PropertyRef{PropStatusFlags, NoIndex}, []any{BitString{false, false, false, false}}},
		}}
	// Annex F.1.4 shape: process 18, device 4, analog-input 10, 65.0 and flags.
	want := unhex(t, "09 12 1C 02000004 2C 0000000A 39 00 4E 09 55 2E 44 42820000 2F 09 6F 2E 82 04 00 2F 4F")
	got, err := n.Encode()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cov % x, want % x", got, want)
	}
	if back, err := DecodeCOVNotification(want); err != nil || !reflect.DeepEqual(back, n) {
		t.Fatalf("cov %+v %v", back, err)
	}
	rp := ReadPropertyACK{Object: ObjectID{DeviceObject, 1}, PropertyRef: PropertyRef{PropObjectList, 0}, Values: []any{uint64(3)}}
	d, _ := rp.Encode()
	if back, err := DecodeReadPropertyACK(d); err != nil || !reflect.DeepEqual(back, rp) {
		t.Fatalf("rp ack %+v %v", back, err)
	}
	res := []ReadAccessResult{{Object: ObjectID{AnalogValue, 2}, Results: []PropertyResult{
		{PropertyRef: PropertyRef{PropUnits, NoIndex}, Err: &Error{Class: ErrorClassProperty, Code: ErrorCodeUnknownProperty}},
		{PropertyRef: PropertyRef{PropPriorityArray, 3}, Values: []any{Null{}}},
	}}}
	d, _ = EncodeReadPropertyMultipleACK(res)
	if back, err := DecodeReadPropertyMultipleACK(d); err != nil || !reflect.DeepEqual(back, res) {
		t.Fatalf("rpm ack %+v %v", back, err)
	}
}

func TestDecodersRefuseMalformed(t *testing.T) {
	bad := map[string]string{
		"length beyond data":     "0C 00000005 19 55 3E 45 01 3F",
		"unsigned of 9 bytes":    "0C 00000005 19 55 3E 25 09 010203040506070809 3F",
		"real of 3 bytes":        "0C 00000005 19 55 3E 43 010203 3F",
		"missing closing":        "0C 00000005 19 55 3E 44 4290999A",
		"wrong closing":          "0C 00000005 19 55 3E 44 4290999A 4F",
		"object id of 3 bytes":   "0B 000005 19 55 3E 00 3F",
		"boolean value 2":        "0C 00000005 19 55 3E 12 3F",
		"bit string unused 8":    "0C 00000005 19 55 3E 82 08 00 3F",
		"unknown character set":  "0C 00000005 19 55 3E 72 09 41 3F",
		"application tag lvt 6":  "0C 00000005 19 55 3E 26 3F",
		"truncated extended len": "0C 00000005 19 55 3E 65",
	}
	for name, h := range bad {
		if _, err := DecodeReadPropertyACK(unhex(t, h)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	if _, err := DecodeWriteProperty(unhex(t, "0C 00800001 19 55 3E 00 3F 49 11")); !errors.Is(err, ErrMalformed) {
		t.Errorf("priority 17: %v", err)
	}
}

func TestSignedBoundaries(t *testing.T) {
	for _, v := range []int64{0, 127, 128, -128, -129, 32767, -32768, 1 << 40, math.MinInt64, math.MaxInt64} {
		b, _ := AppendValue(nil, v)
		r := &reader{b: b}
		back, err := r.value(0)
		if err != nil || back != v {
			t.Errorf("%d: got %v %v (% x)", v, back, err, b)
		}
	}
}
