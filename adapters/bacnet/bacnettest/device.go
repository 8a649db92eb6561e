package bacnettest

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
)

// Device is one simulated BACnet device.
type Device struct {
	Addr     *net.UDPAddr
	Instance uint32
	conn     net.PacketConn

	mu        sync.Mutex
	name      string
	objects   map[bacnet.ObjectID]*object
	order     []bacnet.ObjectID
	silent    bool
	refuseCOV bool
	fail      map[byte]*bacnet.Error
	maxAPDU   int
	segment   Segmentation
	segAcks   map[segKey]chan bacnet.APDU
	dropSeg   int                  // segment number to leave out once (-1: none)
	subs      map[subKey]time.Time // expiry (zero: indefinite)
	counts    map[byte]int
	foreign   int
	datagrams int
	route     atomic.Pointer[bacnet.Route] // set behind a router

	wg sync.WaitGroup
}

type segKey struct {
	peer string
	id   byte
}

type subKey struct {
	peer      string
	processID uint32
	obj       bacnet.ObjectID
}

type object struct {
	name        string
	units       uint32
	value       any // present-value of an input, relinquish-default otherwise
	priority    [16]any
	flags       [4]bool
	reliability uint32
}

// New starts a device with instance id on 127.0.0.1 and a free port.
func New(instance uint32, name string) (*Device, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &Device{Addr: conn.LocalAddr().(*net.UDPAddr), Instance: instance, conn: conn, name: name,
		objects: map[bacnet.ObjectID]*object{}, fail: map[byte]*bacnet.Error{},
		subs: map[subKey]time.Time{}, counts: map[byte]int{}, maxAPDU: 1476,
		segAcks: map[segKey]chan bacnet.APDU{}, dropSeg: -1}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

// Close stops the device and waits for it.
func (d *Device) Close() {
	d.conn.Close()
	d.wg.Wait()
}

// Add creates an object. value is the present-value: float32 for analog,
// bacnet.Enumerated (0/1) for binary, uint64 (from 1) for multi-state
// objects; for outputs and values it is the relinquish default.
func (d *Device) Add(id bacnet.ObjectID, name string, units uint32, value any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.objects[id]; !ok {
		d.order = append(d.order, id)
	}
	d.objects[id] = &object{name: name, units: units, value: value}
}

// Set changes an object's value as the process would (an input's
// present-value, an output's relinquish default) and notifies subscribers.
func (d *Device) Set(id bacnet.ObjectID, value any) {
	d.mu.Lock()
	o := d.objects[id]
	o.value = value
	d.mu.Unlock()
	d.notify(id)
}

// SetStatus sets an object's status flags (in-alarm, fault, overridden,
// out-of-service) and reliability (0: no fault detected).
func (d *Device) SetStatus(id bacnet.ObjectID, flags [4]bool, reliability uint32) {
	d.mu.Lock()
	o := d.objects[id]
	o.flags, o.reliability = flags, reliability
	d.mu.Unlock()
	d.notify(id)
}

// PresentValue is an object's present-value.
func (d *Device) PresentValue(id bacnet.ObjectID) any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.objects[id].presentValue()
}

// Priority is an object's priority array (nil: relinquished).
func (d *Device) Priority(id bacnet.ObjectID) [16]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.objects[id].priority
}

// SetSilent makes the device ignore every datagram (as if unplugged).
func (d *Device) SetSilent(silent bool) {
	d.mu.Lock()
	d.silent = silent
	d.mu.Unlock()
}

// RefuseCOV makes SubscribeCOV answer an Error.
func (d *Device) RefuseCOV(refuse bool) {
	d.mu.Lock()
	d.refuseCOV = refuse
	d.mu.Unlock()
}

// Fail makes every request of a confirmed service answer e (nil: normal).
func (d *Device) Fail(service byte, e *bacnet.Error) {
	d.mu.Lock()
	d.fail[service] = e
	d.mu.Unlock()
}

// Segmentation is how the device answers a Complex-ACK longer than its
// maximum APDU.
type Segmentation int

// The segmentation behaviours.
const (
	// SegmentNever aborts with segmentation-not-supported, like a device
	// that cannot segment.
	SegmentNever Segmentation = iota
	// SegmentWhenAccepted sends the answer in segments, window size 1,
	// waiting for each Segment-ACK, if the request accepted segmentation;
	// otherwise it aborts.
	SegmentWhenAccepted
	// SegmentAlways sends the first segment even to a client that did not
	// accept segmentation (a misbehaving device).
	SegmentAlways
)

// SetMaxAPDU limits answers to n octets of APDU and chooses what happens to
// longer ones.
func (d *Device) SetMaxAPDU(n int, s Segmentation) {
	d.mu.Lock()
	d.maxAPDU, d.segment = n, s
	d.mu.Unlock()
}

// DropSegment leaves segment seq out of the next segmented answer once, as a
// lossy network would; the client's negative Segment-ACK brings it back.
func (d *Device) DropSegment(seq int) {
	d.mu.Lock()
	d.dropSeg = seq
	d.mu.Unlock()
}

// Count is how many requests of a service the device received (Who-Is
// counts under bacnet.ServiceWhoIs).
func (d *Device) Count(service byte) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[service]
}

// Subscriptions is the number of live COV subscriptions.
func (d *Device) Subscriptions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.subs)
}

// Datagrams is how many datagrams reached the device, silent or not.
func (d *Device) Datagrams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.datagrams
}

// ForeignRegistrations is how many Register-Foreign-Device requests the
// device answered (it acts as a BBMD too).
func (d *Device) ForeignRegistrations() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.foreign
}

func (o *object) presentValue() any {
	for _, v := range o.priority {
		if v != nil {
			return v
		}
	}
	return o.value
}

func (d *Device) serve() {
	defer d.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d.handle(slices.Clone(buf[:n]), from)
	}
}

// BehindRouter makes the device a station on network net with address
// mac, reached through a router at its own address: it answers only NPDUs
// addressed to that network and MAC (or global broadcasts) and sends its
// answers with that source, as a router does.
func (d *Device) BehindRouter(net uint16, mac []byte) {
	d.route.Store(&bacnet.Route{Net: net, MAC: mac})
}

func (d *Device) send(to net.Addr, fn byte, apdu bacnet.APDU) {
	d.conn.WriteTo(bacnet.EncodeBVLC(fn, bacnet.EncodeNPDUVia(apdu.Encode(), false, nil, d.route.Load())), to)
}

func (d *Device) handle(b []byte, from net.Addr) {
	d.mu.Lock()
	d.datagrams++
	silent, route := d.silent, d.route.Load()
	d.mu.Unlock()
	if silent {
		return
	}
	f, err := bacnet.DecodeFrame(b)
	if err != nil {
		return
	}
	switch {
	case f.DNET == bacnet.GlobalBroadcast:
	case route == nil && f.DNET != 0, route != nil && (f.DNET != route.Net || !bytes.Equal(f.DADR, route.MAC)):
		return // for another network or station
	}
	if f.Function == bacnet.BVLCRegisterForeignDevice {
		d.mu.Lock()
		d.foreign++
		d.mu.Unlock()
		d.conn.WriteTo(bacnet.EncodeBVLCResult(0), from)
		return
	}
	if f.APDU == nil {
		return
	}
	a, err := bacnet.DecodeAPDU(f.APDU)
	if err != nil {
		return
	}
	switch a.Type {
	case bacnet.UnconfirmedRequest:
		if a.Service != bacnet.ServiceWhoIs {
			return
		}
		d.mu.Lock()
		d.counts[bacnet.ServiceWhoIs]++
		d.mu.Unlock()
		w, err := bacnet.DecodeWhoIs(a.Data)
		if err != nil || !w.Matches(d.Instance) {
			return
		}
		iam := bacnet.IAm{Device: bacnet.ObjectID{Type: bacnet.DeviceObject, Instance: d.Instance},
			MaxAPDU: 1476, Segmentation: bacnet.NoSegmentation, Vendor: 999}
		d.send(from, bacnet.BVLCOriginalUnicastNPDU, bacnet.APDU{Type: bacnet.UnconfirmedRequest, Service: bacnet.ServiceIAm, Data: iam.Encode()})
	case bacnet.ConfirmedRequest:
		d.confirmed(a, from)
	case bacnet.SegmentACK, bacnet.AbortPDU:
		d.mu.Lock()
		ch := d.segAcks[segKey{from.String(), a.InvokeID}]
		d.mu.Unlock()
		if ch != nil {
			select {
			case ch <- a:
			default:
			}
		}
	}
}

// sendSegments sends r in segments of at most maxAPDU octets, one at a time,
// each after the Segment-ACK of the one before; a negative Segment-ACK
// resends from the segment after the one it names. It gives up after a
// second without an answer.
func (d *Device) sendSegments(to net.Addr, r bacnet.APDU, maxAPDU int) {
	defer d.wg.Done()
	k := segKey{to.String(), r.InvokeID}
	acks := make(chan bacnet.APDU, 4)
	d.mu.Lock()
	d.segAcks[k] = acks
	drop := d.dropSeg
	d.dropSeg = -1
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.segAcks, k)
		d.mu.Unlock()
	}()
	size := max(1, maxAPDU-5) // a segmented Complex-ACK header has 5 octets
	var segs [][]byte
	for data := r.Data; len(data) > 0; {
		n := min(size, len(data))
		segs = append(segs, data[:n])
		data = data[n:]
	}
	for seq := 0; seq < len(segs); {
		seg := r
		seg.Segmented, seg.MoreFollows, seg.Sequence, seg.Window, seg.Data = true, seq < len(segs)-1, byte(seq), 1, segs[seq]
		if seq == drop {
			drop = -1 // lost on the way; the next one arrives out of order
			seq++
			continue
		}
		d.send(to, bacnet.BVLCOriginalUnicastNPDU, seg)
		select {
		case a := <-acks:
			if a.Type == bacnet.AbortPDU {
				return
			}
			seq = int(a.Sequence) + 1
		case <-time.After(time.Second):
			return
		}
	}
}

func (d *Device) confirmed(a bacnet.APDU, from net.Addr) {
	d.mu.Lock()
	d.counts[a.Service]++
	failure := d.fail[a.Service]
	maxAPDU, segment := d.maxAPDU, d.segment
	d.mu.Unlock()
	reply := func(r bacnet.APDU) {
		r.InvokeID, r.Service = a.InvokeID, a.Service
		if r.Type == bacnet.ComplexACK && len(r.Encode()) > maxAPDU {
			switch {
			case segment == SegmentAlways || segment == SegmentWhenAccepted && a.SegmentedAccepted:
				d.wg.Add(1)
				go d.sendSegments(from, r, maxAPDU)
			default:
				d.send(from, bacnet.BVLCOriginalUnicastNPDU, bacnet.APDU{Type: bacnet.AbortPDU, Server: true, InvokeID: a.InvokeID, Reason: bacnet.AbortSegmentationNotSupported})
			}
			return
		}
		d.send(from, bacnet.BVLCOriginalUnicastNPDU, r)
	}
	errorPDU := func(e *bacnet.Error) bacnet.APDU {
		return bacnet.APDU{Type: bacnet.ErrorPDU, ErrorClass: e.Class, ErrorCode: e.Code}
	}
	if failure != nil {
		reply(errorPDU(failure))
		return
	}
	reject := bacnet.APDU{Type: bacnet.RejectPDU, Reason: bacnet.RejectInvalidTag}
	switch a.Service {
	case bacnet.ServiceReadProperty:
		rp, err := bacnet.DecodeReadProperty(a.Data)
		if err != nil {
			reply(reject)
			return
		}
		vals, e := d.read(rp.Object, rp.PropertyRef)
		if e != nil {
			reply(errorPDU(e))
			return
		}
		data, _ := bacnet.ReadPropertyACK{Object: rp.Object, PropertyRef: rp.PropertyRef, Values: vals}.Encode()
		reply(bacnet.APDU{Type: bacnet.ComplexACK, Data: data})
	case bacnet.ServiceReadPropertyMultiple:
		specs, err := bacnet.DecodeReadPropertyMultiple(a.Data)
		if err != nil {
			reply(reject)
			return
		}
		var res []bacnet.ReadAccessResult
		for _, s := range specs {
			r := bacnet.ReadAccessResult{Object: s.Object}
			for _, p := range s.Properties {
				vals, e := d.read(s.Object, p)
				r.Results = append(r.Results, bacnet.PropertyResult{PropertyRef: p, Values: vals, Err: e})
			}
			res = append(res, r)
		}
		data, _ := bacnet.EncodeReadPropertyMultipleACK(res)
		reply(bacnet.APDU{Type: bacnet.ComplexACK, Data: data})
	case bacnet.ServiceWriteProperty:
		w, err := bacnet.DecodeWriteProperty(a.Data)
		if err != nil {
			reply(reject)
			return
		}
		if e := d.write(w); e != nil {
			reply(errorPDU(e))
			return
		}
		reply(bacnet.APDU{Type: bacnet.SimpleACK})
		d.notify(w.Object)
	case bacnet.ServiceSubscribeCOV:
		s, err := bacnet.DecodeSubscribeCOV(a.Data)
		if err != nil {
			reply(reject)
			return
		}
		d.mu.Lock()
		_, known := d.objects[s.Object]
		refuse := d.refuseCOV
		k := subKey{from.String(), s.ProcessID, s.Object}
		switch {
		case refuse || s.Confirmed:
			d.mu.Unlock()
			reply(errorPDU(&bacnet.Error{Class: bacnet.ErrorClassServices, Code: bacnet.ErrorCodeServiceRequestDenied}))
			return
		case !known:
			d.mu.Unlock()
			reply(errorPDU(&bacnet.Error{Class: bacnet.ErrorClassObject, Code: bacnet.ErrorCodeUnknownObject}))
			return
		case s.Cancel:
			delete(d.subs, k)
		default:
			var expiry time.Time
			if s.Lifetime > 0 {
				expiry = time.Now().Add(time.Duration(s.Lifetime) * time.Second)
			}
			d.subs[k] = expiry
		}
		d.mu.Unlock()
		reply(bacnet.APDU{Type: bacnet.SimpleACK})
		if !s.Cancel {
			d.notify(s.Object) // the standard asks for an initial notification
		}
	default:
		reply(bacnet.APDU{Type: bacnet.RejectPDU, Reason: bacnet.RejectUnrecognizedService})
	}
}

func unknownProperty() *bacnet.Error {
	return &bacnet.Error{Class: bacnet.ErrorClassProperty, Code: bacnet.ErrorCodeUnknownProperty}
}

// read returns a property's values; callers must not hold d.mu.
func (d *Device) read(id bacnet.ObjectID, ref bacnet.PropertyRef) ([]any, *bacnet.Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id.Type == bacnet.DeviceObject && id.Instance == d.Instance {
		switch ref.Property {
		case bacnet.PropObjectIdentifier:
			return []any{id}, nil
		case bacnet.PropObjectName:
			return []any{d.name}, nil
		case bacnet.PropObjectType:
			return []any{bacnet.Enumerated(id.Type)}, nil
		case bacnet.PropObjectList:
			list := append([]any{id}, make([]any, 0, len(d.order))...)
			for _, o := range d.order {
				list = append(list, o)
			}
			switch {
			case ref.Index == bacnet.NoIndex:
				return list, nil
			case ref.Index == 0:
				return []any{uint64(len(list))}, nil
			case ref.Index <= int64(len(list)):
				return []any{list[ref.Index-1]}, nil
			}
			return nil, &bacnet.Error{Class: bacnet.ErrorClassProperty, Code: 42} // invalid-array-index
		}
		return nil, unknownProperty()
	}
	o, ok := d.objects[id]
	if !ok {
		return nil, &bacnet.Error{Class: bacnet.ErrorClassObject, Code: bacnet.ErrorCodeUnknownObject}
	}
	commandable := id.Type.Commandable()
	switch ref.Property {
	case bacnet.PropObjectIdentifier:
		return []any{id}, nil
	case bacnet.PropObjectName:
		return []any{o.name}, nil
	case bacnet.PropObjectType:
		return []any{bacnet.Enumerated(id.Type)}, nil
	case bacnet.PropPresentValue:
		return []any{o.presentValue()}, nil
	case bacnet.PropStatusFlags:
		return []any{bacnet.BitString(o.flags[:])}, nil
	case bacnet.PropReliability:
		return []any{bacnet.Enumerated(o.reliability)}, nil
	case bacnet.PropOutOfService:
		return []any{o.flags[3]}, nil
	case bacnet.PropUnits:
		if id.Type.IsAnalog() {
			return []any{bacnet.Enumerated(o.units)}, nil
		}
	case bacnet.PropPriorityArray:
		if commandable {
			vals := make([]any, 16)
			for i, v := range o.priority {
				vals[i] = v
				if v == nil {
					vals[i] = bacnet.Null{}
				}
			}
			return vals, nil
		}
	case bacnet.PropRelinquishDefault:
		if commandable {
			return []any{o.value}, nil
		}
	}
	return nil, unknownProperty()
}

func (d *Device) write(w bacnet.WriteProperty) *bacnet.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects[w.Object]
	if !ok {
		return &bacnet.Error{Class: bacnet.ErrorClassObject, Code: bacnet.ErrorCodeUnknownObject}
	}
	if w.Property != bacnet.PropPresentValue || !w.Object.Type.Commandable() {
		return &bacnet.Error{Class: bacnet.ErrorClassProperty, Code: bacnet.ErrorCodeWriteAccessDenied}
	}
	prio := w.Priority
	if prio == 0 {
		prio = 16
	}
	if _, null := w.Value.(bacnet.Null); null {
		o.priority[prio-1] = nil
		return nil
	}
	typeOK := false
	switch w.Object.Type {
	case bacnet.AnalogOutput, bacnet.AnalogValue:
		_, typeOK = w.Value.(float32)
	case bacnet.BinaryOutput, bacnet.BinaryValue:
		e, isEnum := w.Value.(bacnet.Enumerated)
		typeOK = isEnum && e <= 1
	default:
		u, isUnsigned := w.Value.(uint64)
		typeOK = isUnsigned && u >= 1
	}
	if !typeOK {
		return &bacnet.Error{Class: bacnet.ErrorClassProperty, Code: bacnet.ErrorCodeInvalidDataType}
	}
	o.priority[prio-1] = w.Value
	return nil
}

// notify sends an unconfirmed COV notification to every live subscriber of id.
func (d *Device) notify(id bacnet.ObjectID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.objects[id]
	if d.silent || o == nil {
		return
	}
	now := time.Now()
	for k, expiry := range d.subs {
		if k.obj != id {
			continue
		}
		if !expiry.IsZero() && now.After(expiry) {
			delete(d.subs, k)
			continue
		}
		remaining := uint32(0)
		if !expiry.IsZero() {
			remaining = uint32(expiry.Sub(now).Seconds())
		}
		n := bacnet.COVNotification{ProcessID: k.processID, Device: bacnet.ObjectID{Type: bacnet.DeviceObject, Instance: d.Instance},
			Object: id, TimeRemaining: remaining, Values: []bacnet.PropertyValue{
				{PropertyRef: bacnet.PropertyRef{Property: bacnet.PropPresentValue, Index: bacnet.NoIndex}, Values: []any{o.presentValue()}},
				{PropertyRef: bacnet.PropertyRef{Property: bacnet.PropStatusFlags, Index: bacnet.NoIndex}, Values: []any{bacnet.BitString(o.flags[:])}},
			}}
		data, err := n.Encode()
		if err != nil {
			continue
		}
		to, err := net.ResolveUDPAddr("udp4", k.peer)
		if err != nil {
			continue
		}
		d.send(to, bacnet.BVLCOriginalUnicastNPDU, bacnet.APDU{Type: bacnet.UnconfirmedRequest, Service: bacnet.ServiceUnconfirmedCOVNotification, Data: data})
	}
}
