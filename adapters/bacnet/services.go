package bacnet

import (
	"fmt"
	"math"
)

// WhoIs is the Who-Is request; Low and High bound the device instances
// asked (both -1: every device).
type WhoIs struct {
	Low, High int64
}

// Encode returns the service data.
func (w WhoIs) Encode() []byte {
	if w.Low < 0 || w.High < 0 {
		return nil
	}
	b := appendContextUnsigned(nil, 0, uint64(w.Low))
	return appendContextUnsigned(b, 1, uint64(w.High))
}

// DecodeWhoIs decodes the service data of a Who-Is.
func DecodeWhoIs(d []byte) (WhoIs, error) {
	w := WhoIs{Low: -1, High: -1}
	if len(d) == 0 {
		return w, nil
	}
	r := &reader{b: d}
	lo, err := r.contextUnsigned(0)
	if err != nil {
		return w, err
	}
	hi, err := r.contextUnsigned(1)
	if err != nil {
		return w, err
	}
	if lo > MaxInstance || hi > MaxInstance || !r.done() {
		return w, malformed("who-is range")
	}
	return WhoIs{Low: int64(lo), High: int64(hi)}, nil
}

// Matches reports whether device instance id is in the range asked.
func (w WhoIs) Matches(id uint32) bool {
	return w.Low < 0 || (int64(id) >= w.Low && int64(id) <= w.High)
}

// Segmentation support of a device (I-Am).
const (
	SegmentedBoth     = 0
	SegmentedTransmit = 1
	SegmentedReceive  = 2
	NoSegmentation    = 3
)

// IAm is a device's answer to Who-Is.
type IAm struct {
	Device       ObjectID
	MaxAPDU      uint32
	Segmentation uint32
	Vendor       uint32
}

// Encode returns the service data.
func (i IAm) Encode() []byte {
	b, _ := AppendValue(nil, i.Device)
	b, _ = AppendValue(b, uint64(i.MaxAPDU))
	b, _ = AppendValue(b, Enumerated(i.Segmentation))
	b, _ = AppendValue(b, uint64(i.Vendor))
	return b
}

// DecodeIAm decodes the service data of an I-Am.
func DecodeIAm(d []byte) (IAm, error) {
	r := &reader{b: d}
	var vals [4]any
	for k := range vals {
		v, err := r.value(0)
		if err != nil {
			return IAm{}, err
		}
		vals[k] = v
	}
	id, ok1 := vals[0].(ObjectID)
	apdu, ok2 := vals[1].(uint64)
	seg, ok3 := vals[2].(Enumerated)
	vendor, ok4 := vals[3].(uint64)
	if !ok1 || !ok2 || !ok3 || !ok4 || id.Type != DeviceObject || apdu > math.MaxUint32 || vendor > math.MaxUint32 {
		return IAm{}, malformed("I-Am")
	}
	return IAm{Device: id, MaxAPDU: uint32(apdu), Segmentation: uint32(seg), Vendor: uint32(vendor)}, nil
}

// NoIndex means "no array index" in requests.
const NoIndex = -1

// PropertyRef is one property of an object, optionally one array element.
type PropertyRef struct {
	Property PropertyID
	Index    int64 // NoIndex for the whole property
}

// ReadProperty is the ReadProperty request.
type ReadProperty struct {
	Object ObjectID
	PropertyRef
}

// Encode returns the service data.
func (rp ReadProperty) Encode() []byte {
	b := appendContextObjectID(nil, 0, rp.Object)
	b = appendContextUnsigned(b, 1, uint64(rp.Property))
	if rp.Index >= 0 {
		b = appendContextUnsigned(b, 2, uint64(rp.Index))
	}
	return b
}

func (r *reader) propertyHead(objTag uint8) (ObjectID, PropertyRef, error) {
	obj, err := r.contextObjectID(objTag)
	if err != nil {
		return obj, PropertyRef{}, err
	}
	ref, err := r.propertyRef(objTag + 1)
	return obj, ref, err
}

// propertyRef reads context tag n (property) and optional n+1 (index).
func (r *reader) propertyRef(n uint8) (PropertyRef, error) {
	ref := PropertyRef{Index: NoIndex}
	p, err := r.contextUnsigned(n)
	if err != nil {
		return ref, err
	}
	if p > math.MaxUint32 {
		return ref, malformed("property identifier %d", p)
	}
	ref.Property = PropertyID(p)
	if r.isContext(n + 1) {
		i, err := r.contextUnsigned(n + 1)
		if err != nil {
			return ref, err
		}
		if i > math.MaxUint32 {
			return ref, malformed("array index %d", i)
		}
		ref.Index = int64(i)
	}
	return ref, nil
}

// DecodeReadProperty decodes the service data of a ReadProperty request.
func DecodeReadProperty(d []byte) (ReadProperty, error) {
	r := &reader{b: d}
	obj, ref, err := r.propertyHead(0)
	if err == nil && !r.done() {
		err = malformed("trailing data")
	}
	return ReadProperty{Object: obj, PropertyRef: ref}, err
}

// ReadPropertyACK is the answer to ReadProperty.
type ReadPropertyACK struct {
	Object ObjectID
	PropertyRef
	Values []any
}

// Encode returns the service data.
func (a ReadPropertyACK) Encode() ([]byte, error) {
	b := ReadProperty{Object: a.Object, PropertyRef: a.PropertyRef}.Encode()
	b = appendOpening(b, 3)
	for _, v := range a.Values {
		var err error
		if b, err = AppendValue(b, v); err != nil {
			return nil, err
		}
	}
	return appendClosing(b, 3), nil
}

// DecodeReadPropertyACK decodes the service data of a ReadProperty ACK.
func DecodeReadPropertyACK(d []byte) (ReadPropertyACK, error) {
	r := &reader{b: d}
	obj, ref, err := r.propertyHead(0)
	if err != nil {
		return ReadPropertyACK{}, err
	}
	if err := r.expectOpening(3); err != nil {
		return ReadPropertyACK{}, err
	}
	vals, err := r.valuesUntil(3)
	if err == nil && !r.done() {
		err = malformed("trailing data")
	}
	return ReadPropertyACK{Object: obj, PropertyRef: ref, Values: vals}, err
}

// ReadAccessSpec is one object's properties in a ReadPropertyMultiple.
type ReadAccessSpec struct {
	Object     ObjectID
	Properties []PropertyRef
}

// EncodeReadPropertyMultiple returns the service data of the request.
func EncodeReadPropertyMultiple(specs []ReadAccessSpec) []byte {
	var b []byte
	for _, s := range specs {
		b = appendContextObjectID(b, 0, s.Object)
		b = appendOpening(b, 1)
		for _, p := range s.Properties {
			b = appendContextUnsigned(b, 0, uint64(p.Property))
			if p.Index >= 0 {
				b = appendContextUnsigned(b, 1, uint64(p.Index))
			}
		}
		b = appendClosing(b, 1)
	}
	return b
}

// DecodeReadPropertyMultiple decodes the service data of the request.
func DecodeReadPropertyMultiple(d []byte) ([]ReadAccessSpec, error) {
	r := &reader{b: d}
	var specs []ReadAccessSpec
	for !r.done() {
		obj, err := r.contextObjectID(0)
		if err != nil {
			return nil, err
		}
		if err := r.expectOpening(1); err != nil {
			return nil, err
		}
		s := ReadAccessSpec{Object: obj}
		for !r.isClosing(1) {
			ref, err := r.propertyRef(0)
			if err != nil {
				return nil, err
			}
			s.Properties = append(s.Properties, ref)
		}
		if err := r.expectClosing(1); err != nil {
			return nil, err
		}
		if len(s.Properties) == 0 {
			return nil, malformed("empty property list")
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, malformed("empty ReadPropertyMultiple")
	}
	return specs, nil
}

// PropertyResult is one property's outcome in a ReadPropertyMultiple ACK:
// its values, or the error the device returned for it.
type PropertyResult struct {
	PropertyRef
	Values []any
	Err    *Error
}

// ReadAccessResult is one object's results in a ReadPropertyMultiple ACK.
type ReadAccessResult struct {
	Object  ObjectID
	Results []PropertyResult
}

// EncodeReadPropertyMultipleACK returns the service data of the ACK.
func EncodeReadPropertyMultipleACK(res []ReadAccessResult) ([]byte, error) {
	var b []byte
	for _, o := range res {
		b = appendContextObjectID(b, 0, o.Object)
		b = appendOpening(b, 1)
		for _, p := range o.Results {
			b = appendContextUnsigned(b, 2, uint64(p.Property))
			if p.Index >= 0 {
				b = appendContextUnsigned(b, 3, uint64(p.Index))
			}
			if p.Err != nil {
				b = appendOpening(b, 5)
				b, _ = AppendValue(b, Enumerated(p.Err.Class))
				b, _ = AppendValue(b, Enumerated(p.Err.Code))
				b = appendClosing(b, 5)
				continue
			}
			b = appendOpening(b, 4)
			for _, v := range p.Values {
				var err error
				if b, err = AppendValue(b, v); err != nil {
					return nil, err
				}
			}
			b = appendClosing(b, 4)
		}
		b = appendClosing(b, 1)
	}
	return b, nil
}

// DecodeReadPropertyMultipleACK decodes the service data of the ACK.
func DecodeReadPropertyMultipleACK(d []byte) ([]ReadAccessResult, error) {
	r := &reader{b: d}
	var out []ReadAccessResult
	for !r.done() {
		obj, err := r.contextObjectID(0)
		if err != nil {
			return nil, err
		}
		if err := r.expectOpening(1); err != nil {
			return nil, err
		}
		o := ReadAccessResult{Object: obj}
		for !r.isClosing(1) {
			ref, err := r.propertyRef(2)
			if err != nil {
				return nil, err
			}
			p := PropertyResult{PropertyRef: ref}
			switch {
			case r.isOpening(4):
				r.expectOpening(4)
				if p.Values, err = r.valuesUntil(4); err != nil {
					return nil, err
				}
			case r.isOpening(5):
				r.expectOpening(5)
				vals, err := r.valuesUntil(5)
				if err != nil {
					return nil, err
				}
				class, ok1 := first(vals, 0).(Enumerated)
				code, ok2 := first(vals, 1).(Enumerated)
				if !ok1 || !ok2 || len(vals) != 2 {
					return nil, malformed("property access error")
				}
				p.Err = &Error{Class: uint32(class), Code: uint32(code)}
			default:
				return nil, malformed("property result without value or error")
			}
			o.Results = append(o.Results, p)
		}
		if err := r.expectClosing(1); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func first(vals []any, i int) any {
	if i < len(vals) {
		return vals[i]
	}
	return nil
}

// WriteProperty is the WriteProperty request. Priority 0 means none given
// (the device applies 16); a Null value relinquishes the priority.
type WriteProperty struct {
	Object ObjectID
	PropertyRef
	Value    any
	Priority uint8
}

// Encode returns the service data.
func (w WriteProperty) Encode() ([]byte, error) {
	if w.Priority > 16 {
		return nil, fmt.Errorf("priority %d out of 1..16", w.Priority)
	}
	b := ReadProperty{Object: w.Object, PropertyRef: w.PropertyRef}.Encode()
	b = appendOpening(b, 3)
	b, err := AppendValue(b, w.Value)
	if err != nil {
		return nil, err
	}
	b = appendClosing(b, 3)
	if w.Priority > 0 {
		b = appendContextUnsigned(b, 4, uint64(w.Priority))
	}
	return b, nil
}

// DecodeWriteProperty decodes the service data of a WriteProperty request.
func DecodeWriteProperty(d []byte) (WriteProperty, error) {
	r := &reader{b: d}
	obj, ref, err := r.propertyHead(0)
	if err != nil {
		return WriteProperty{}, err
	}
	if err := r.expectOpening(3); err != nil {
		return WriteProperty{}, err
	}
	vals, err := r.valuesUntil(3)
	if err != nil {
		return WriteProperty{}, err
	}
	if len(vals) != 1 {
		return WriteProperty{}, malformed("write of %d values", len(vals))
	}
	w := WriteProperty{Object: obj, PropertyRef: ref, Value: vals[0]}
	if r.isContext(4) {
		p, err := r.contextUnsigned(4)
		if err != nil {
			return w, err
		}
		if p < 1 || p > 16 {
			return w, malformed("priority %d", p)
		}
		w.Priority = uint8(p)
	}
	if !r.done() {
		return w, malformed("trailing data")
	}
	return w, nil
}

// SubscribeCOV is the SubscribeCOV request; Cancel omits the confirmed flag
// and lifetime, which cancels the subscription.
type SubscribeCOV struct {
	ProcessID uint32
	Object    ObjectID
	Cancel    bool
	Confirmed bool
	Lifetime  uint32 // seconds; 0 means indefinite
}

// Encode returns the service data.
func (s SubscribeCOV) Encode() []byte {
	b := appendContextUnsigned(nil, 0, uint64(s.ProcessID))
	b = appendContextObjectID(b, 1, s.Object)
	if s.Cancel {
		return b
	}
	b = appendContextBool(b, 2, s.Confirmed)
	return appendContextUnsigned(b, 3, uint64(s.Lifetime))
}

// DecodeSubscribeCOV decodes the service data of a SubscribeCOV request.
func DecodeSubscribeCOV(d []byte) (SubscribeCOV, error) {
	r := &reader{b: d}
	pid, err := r.contextUnsigned(0)
	if err != nil {
		return SubscribeCOV{}, err
	}
	if pid > math.MaxUint32 {
		return SubscribeCOV{}, malformed("process identifier %d", pid)
	}
	obj, err := r.contextObjectID(1)
	if err != nil {
		return SubscribeCOV{}, err
	}
	s := SubscribeCOV{ProcessID: uint32(pid), Object: obj}
	if r.done() {
		s.Cancel = true
		return s, nil
	}
	c, err := r.contextData(2)
	if err != nil {
		return s, err
	}
	if len(c) != 1 || c[0] > 1 {
		return s, malformed("issue-confirmed flag")
	}
	s.Confirmed = c[0] == 1
	if r.isContext(3) {
		l, err := r.contextUnsigned(3)
		if err != nil {
			return s, err
		}
		if l > math.MaxUint32 {
			return s, malformed("lifetime %d", l)
		}
		s.Lifetime = uint32(l)
	}
	if !r.done() {
		return s, malformed("trailing data")
	}
	return s, nil
}

// PropertyValue is one property in a COV notification.
type PropertyValue struct {
	PropertyRef
	Values []any
}

// COVNotification is a (confirmed or unconfirmed) COV notification.
type COVNotification struct {
	ProcessID     uint32
	Device        ObjectID
	Object        ObjectID
	TimeRemaining uint32
	Values        []PropertyValue
}

// Encode returns the service data.
func (n COVNotification) Encode() ([]byte, error) {
	b := appendContextUnsigned(nil, 0, uint64(n.ProcessID))
	b = appendContextObjectID(b, 1, n.Device)
	b = appendContextObjectID(b, 2, n.Object)
	b = appendContextUnsigned(b, 3, uint64(n.TimeRemaining))
	b = appendOpening(b, 4)
	for _, pv := range n.Values {
		b = appendContextUnsigned(b, 0, uint64(pv.Property))
		if pv.Index >= 0 {
			b = appendContextUnsigned(b, 1, uint64(pv.Index))
		}
		b = appendOpening(b, 2)
		for _, v := range pv.Values {
			var err error
			if b, err = AppendValue(b, v); err != nil {
				return nil, err
			}
		}
		b = appendClosing(b, 2)
	}
	return appendClosing(b, 4), nil
}

// DecodeCOVNotification decodes the service data of a COV notification.
func DecodeCOVNotification(d []byte) (COVNotification, error) {
	r := &reader{b: d}
	var n COVNotification
	pid, err := r.contextUnsigned(0)
	if err != nil {
		return n, err
	}
	if n.Device, err = r.contextObjectID(1); err != nil {
		return n, err
	}
	if n.Object, err = r.contextObjectID(2); err != nil {
		return n, err
	}
	tr, err := r.contextUnsigned(3)
	if err != nil {
		return n, err
	}
	if pid > math.MaxUint32 || tr > math.MaxUint32 {
		return n, malformed("COV notification numbers")
	}
	n.ProcessID, n.TimeRemaining = uint32(pid), uint32(tr)
	if err := r.expectOpening(4); err != nil {
		return n, err
	}
	for !r.isClosing(4) {
		ref, err := r.propertyRef(0)
		if err != nil {
			return n, err
		}
		if err := r.expectOpening(2); err != nil {
			return n, err
		}
		vals, err := r.valuesUntil(2)
		if err != nil {
			return n, err
		}
		if r.isContext(3) { // priority, not used by the client
			if _, err := r.contextUnsigned(3); err != nil {
				return n, err
			}
		}
		n.Values = append(n.Values, PropertyValue{PropertyRef: ref, Values: vals})
	}
	if err := r.expectClosing(4); err != nil {
		return n, err
	}
	if !r.done() {
		return n, malformed("trailing data")
	}
	return n, nil
}

// Error classes and codes (clause 18) the adapter and simulator use.
const (
	ErrorClassDevice   = 0
	ErrorClassObject   = 1
	ErrorClassProperty = 2
	ErrorClassServices = 5

	ErrorCodeOther                = 0
	ErrorCodeInvalidDataType      = 9
	ErrorCodeServiceRequestDenied = 29
	ErrorCodeUnknownObject        = 31
	ErrorCodeUnknownProperty      = 32
	ErrorCodeValueOutOfRange      = 37
	ErrorCodeWriteAccessDenied    = 40
	ErrorCodeOptionalNotSupported = 45
)

// Error is a BACnet error (class and code) returned by a device.
type Error struct {
	Class, Code uint32
}

func (e *Error) Error() string {
	return fmt.Sprintf("bacnet error class %d code %d", e.Class, e.Code)
}
