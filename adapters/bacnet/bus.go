package bacnet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lintel-gw/lintel/adapters"
)

// covProcessID identifies this gateway's subscriptions on every device.
const covProcessID = 1

// Bus reads the devices of one BACnet/IP network through one UDP socket.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	devices []*deviceState

	mu     sync.Mutex
	client *Client // set while Run runs

	counters Counters
	foreign  atomic.Uint64 // successful foreign-device registrations
}

// BusStats are a bus's counters (see Counters) and each device's state
// (false until it first answered).
type BusStats struct {
	Requests, Timeouts, Refusals uint64
	// ForeignRegistrations counts successful registrations with the BBMD.
	ForeignRegistrations uint64
	Online               map[string]bool
}

// Stats returns the bus's counters; safe to call while Run runs.
func (b *Bus) Stats() BusStats {
	return BusStats{Requests: b.counters.Requests.Load(), Timeouts: b.counters.Timeouts.Load(),
		Refusals: b.counters.Refusals.Load(), ForeignRegistrations: b.foreign.Load(), Online: b.Online()}
}

type deviceState struct {
	Device
	addr     net.Addr // *net.UDPAddr or *RoutedAddr
	next     time.Time
	batch    int  // properties per ReadPropertyMultiple
	noRPM    bool // the device refused ReadPropertyMultiple
	fails    int
	online   bool
	reported bool
	live     atomic.Bool
	health   adapters.Health        // last error and back-off, for Report
	points   map[string]*pointState // the map is fixed by New

	// mu guards the points' state between the polling loop and the
	// goroutine that publishes COV notifications.
	mu sync.Mutex
}

type pointState struct {
	Point
	unit        string
	unitKnown   bool
	reliability Enumerated
	cov         covState
	polledAt    time.Time
	last        *adapters.Published
}

type covState struct {
	active  bool
	refused bool
	renewAt time.Time
}

// New validates cfg and returns its bus.
func New(cfg Config, log *slog.Logger) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 2*time.Second)
	cfg.Retries = cmp.Or(cfg.Retries, 1)
	cfg.OfflineAfter = cmp.Or(cfg.OfflineAfter, 3)
	cfg.Listen = cmp.Or(cfg.Listen, "0.0.0.0:0")
	cfg.TTL = cmp.Or(cfg.TTL, 5*time.Minute)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, log: log.With("component", "bacnet", "bus", cfg.Name)}
	for _, d := range cfg.Devices {
		var addr net.Addr
		ip, _ := ResolveAddress(d.Address) // checked by Validate
		addr = ip
		if route, _ := d.route(); route != nil {
			addr = &RoutedAddr{Router: ip, Route: *route}
		}
		d.Poll = cmp.Or(d.Poll, defaultPoll)
		d.MaxProperties = cmp.Or(d.MaxProperties, defaultMaxProperties)
		ds := &deviceState{Device: d, addr: addr, batch: d.MaxProperties, points: map[string]*pointState{}}
		for _, p := range d.Points {
			p.Priority = cmp.Or(p.Priority, defaultPriority)
			p.COVLifetime = cmp.Or(p.COVLifetime, defaultCOVLifetime)
			ps := &pointState{Point: p, unit: p.Unit, unitKnown: p.Unit != "" || !p.Object.Type.IsAnalog()}
			ds.points[p.Name] = ps
		}
		b.devices = append(b.devices, ds)
	}
	return b, nil
}

// Online reports each device's state (false until it first answered).
func (b *Bus) Online() map[string]bool {
	out := map[string]bool{}
	for _, d := range b.devices {
		out[d.Name] = d.live.Load()
	}
	return out
}

type covEvent struct {
	from net.Addr
	n    COVNotification
}

// Run polls, subscribes and listens until ctx ends. A failing device is
// reported offline and polled with backoff; it never stops the others.
func (b *Bus) Run(ctx context.Context, pub adapters.Publisher) error {
	conn, err := net.ListenPacket("udp4", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("bacnet bus %s: listen %s: %w", b.cfg.Name, b.cfg.Listen, err)
	}
	covs := make(chan covEvent, 256)
	// COV notifications are published by their own goroutine so that a
	// device timing out on the polling loop does not delay them.
	covCtx, stopCOV := context.WithCancel(ctx)
	var covDone sync.WaitGroup
	covDone.Add(1)
	go func() {
		defer covDone.Done()
		for {
			select {
			case <-covCtx.Done():
				return
			case ev := <-covs:
				b.onCOV(covCtx, ev, pub)
			}
		}
	}()
	client := NewClient(conn, ClientOptions{Timeout: b.cfg.Timeout, Retries: b.cfg.Retries, Log: b.log, Counters: &b.counters,
		OnCOV: func(from net.Addr, n COVNotification) {
			select {
			case covs <- covEvent{from, n}:
			default: // the next poll or notification catches up
				b.log.Warn("COV notification dropped: queue full", "object", n.Object)
			}
		}})
	b.mu.Lock()
	b.client = client
	b.mu.Unlock()
	defer func() {
		stopCOV()
		covDone.Wait()
		b.mu.Lock()
		b.client = nil
		b.mu.Unlock()
		client.Close()
	}()
	if b.cfg.BBMD != "" {
		covDone.Add(1)
		go func() {
			defer covDone.Done()
			b.registerForeign(covCtx, client)
		}()
	}
	if len(b.devices) == 0 {
		<-ctx.Done()
		return nil
	}
	now := time.Now()
	for _, d := range b.devices {
		d.next = now
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var due *deviceState
		for _, d := range b.devices {
			if due == nil || d.next.Before(due.next) {
				due = d
			}
		}
		timer.Reset(time.Until(due.next))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		d := due
		err := b.poll(ctx, client, d, pub)
		if err == nil {
			err = b.subscribe(ctx, client, d)
		}
		if ctx.Err() != nil {
			return nil
		}
		b.account(ctx, d, pub, err)
		d.next = d.next.Add(d.Poll)
		if d.fails >= b.cfg.OfflineAfter {
			// Back off an offline device so that its timeouts cost the
			// healthy ones little: 2, 4, 8… poll periods, at most 5 minutes.
			d.next = time.Now().Add(min(d.Poll<<min(d.fails-b.cfg.OfflineAfter+1, 16), 5*time.Minute))
		}
		if late := time.Now(); d.next.Before(late) {
			d.next = late // never catch up missed polls in a burst
		}
		if d.fails >= b.cfg.OfflineAfter {
			d.health.BackOff(d.next)
		}
	}
}

// registerForeign keeps the bus registered with its BBMD as a foreign
// device until ctx ends: at half the TTL, or every 10 s after a failure.
func (b *Bus) registerForeign(ctx context.Context, c *Client) {
	bbmd, _ := ResolveAddress(b.cfg.BBMD) // checked by Validate
	ttl := max(b.cfg.TTL.Round(time.Second), time.Second)
	registered := false
	for {
		wait := ttl / 2
		if err := c.RegisterForeignDevice(ctx, bbmd, uint16(ttl/time.Second)); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("foreign-device registration failed", "bbmd", bbmd, "err", err)
			wait, registered = min(wait, 10*time.Second), false
		} else {
			b.foreign.Add(1)
			if !registered {
				b.log.Info("registered as foreign device", "bbmd", bbmd, "ttl", ttl)
			}
			registered = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// account updates a device's state after a poll and publishes its status
// when it changes.
func (b *Bus) account(ctx context.Context, d *deviceState, pub adapters.Publisher, err error) {
	if err != nil {
		d.fails++
		d.health.Failed(errorKind(err), time.Now())
		b.log.Debug("poll failed", "device", d.Name, "err", err)
		if d.fails == b.cfg.OfflineAfter || (!d.reported && d.fails > b.cfg.OfflineAfter) {
			b.log.Warn("device offline", "device", d.Name, "err", err)
			d.mu.Lock()
			for _, p := range d.points {
				p.cov = covState{refused: p.cov.refused} // resubscribe when it is back
			}
			d.mu.Unlock()
			b.publishStatus(ctx, d, pub, false, err.Error())
		}
		return
	}
	if !d.online || !d.reported {
		if d.fails >= b.cfg.OfflineAfter {
			b.log.Info("device back online", "device", d.Name)
		}
		b.publishStatus(ctx, d, pub, true, "")
	}
	d.fails = 0
	d.health.Answered()
}

// errorClasses and errorCodes name the BACnet error classes and the codes
// this adapter knows; others are shown as numbers.
var (
	errorClasses = []string{"device", "object", "property", "resources", "security", "services", "vt", "communication"}
	errorCodes   = map[uint32]string{
		ErrorCodeOther: "other", ErrorCodeInvalidDataType: "invalid-data-type", ErrorCodeServiceRequestDenied: "service-request-denied",
		ErrorCodeUnknownObject: "unknown-object", ErrorCodeUnknownProperty: "unknown-property", ErrorCodeValueOutOfRange: "value-out-of-range",
		ErrorCodeWriteAccessDenied: "write-access-denied", ErrorCodeOptionalNotSupported: "optional-functionality-not-supported",
	}
)

// errorKind is the fixed description of a failed poll that Report shows
// (adapters.DeviceState.LastError): the kind of error, never addresses,
// object names or values.
func errorKind(err error) string {
	var be *Error
	var rej *RejectError
	var ab *AbortError
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.As(err, &be):
		class, code := strconv.FormatUint(uint64(be.Class), 10), strconv.FormatUint(uint64(be.Code), 10)
		if be.Class < uint32(len(errorClasses)) {
			class = errorClasses[be.Class]
		}
		if name, ok := errorCodes[be.Code]; ok {
			code = name
		}
		return "error " + class + "/" + code
	case errors.As(err, &rej):
		return fmt.Sprintf("reject reason %d", rej.Reason)
	case errors.As(err, &ab):
		return fmt.Sprintf("abort reason %d", ab.Reason)
	case errors.Is(err, ErrSegmented):
		return "segmented answer"
	case errors.Is(err, ErrMalformed):
		return "malformed answer"
	}
	return "network error"
}

func (b *Bus) publishStatus(ctx context.Context, d *deviceState, pub adapters.Publisher, online bool, errText string) {
	d.online, d.reported = online, true
	d.live.Store(online)
	payload, _ := json.Marshal(adapters.DeviceStatus{Online: online, Since: adapters.Timestamp(time.Now()), Error: errText})
	if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: adapters.StatusPoint, Payload: payload, Retain: true, High: true}); err != nil {
		b.log.Warn("cannot publish device status", "device", d.Name, "err", err)
	}
}

// covCheck is how often a point with a live COV subscription is still read,
// so that a lost notification is corrected.
func (d *deviceState) covCheck() time.Duration { return max(5*d.Poll, time.Minute) }

// poll reads the due points of d with as few ReadPropertyMultiple requests
// as the device allows and publishes them.
func (b *Bus) poll(ctx context.Context, c *Client, d *deviceState, pub adapters.Publisher) error {
	now := time.Now()
	var due []duePoint
	d.mu.Lock()
	for _, p := range d.Points {
		ps := d.points[p.Name]
		if ps.cov.active && now.Sub(ps.polledAt) < d.covCheck() {
			continue
		}
		due = append(due, duePoint{ps, ps.props()})
	}
	d.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	for {
		results, err := b.read(ctx, c, d, due)
		if IsSegmentation(err) && d.batch > 4 {
			d.batch = max(4, d.batch/2)
			b.log.Info("device cannot answer that many properties at once; smaller requests", "device", d.Name, "max_properties", d.batch)
			continue
		}
		if err != nil {
			return err
		}
		at := time.Now()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, dp := range due {
			dp.ps.polledAt = at
			if err := b.publishPoint(ctx, d, dp.ps, results[dp.ps.Object], at, pub); err != nil {
				return err
			}
		}
		return nil
	}
}

// duePoint is a point to read and the properties to read of it.
type duePoint struct {
	ps   *pointState
	refs []PropertyRef
}

// props are the properties read for a point; callers hold d.mu.
func (ps *pointState) props() []PropertyRef {
	refs := []PropertyRef{{PropPresentValue, NoIndex}, {PropStatusFlags, NoIndex}, {PropReliability, NoIndex}}
	if !ps.unitKnown {
		refs = append(refs, PropertyRef{PropUnits, NoIndex})
	}
	return refs
}

// read returns each object's property results.
func (b *Bus) read(ctx context.Context, c *Client, d *deviceState, due []duePoint) (map[ObjectID]map[PropertyID]PropertyResult, error) {
	out := map[ObjectID]map[PropertyID]PropertyResult{}
	add := func(obj ObjectID, r PropertyResult) {
		if out[obj] == nil {
			out[obj] = map[PropertyID]PropertyResult{}
		}
		out[obj][r.Property] = r
	}
	if d.noRPM {
		for _, dp := range due {
			obj := dp.ps.Object
			for _, ref := range dp.refs {
				vals, err := c.ReadProperty(ctx, d.addr, obj, ref.Property, NoIndex)
				var be *Error
				switch {
				case errors.As(err, &be):
					add(obj, PropertyResult{PropertyRef: ref, Err: be})
				case err != nil:
					return nil, fmt.Errorf("read %s: %w", obj, err)
				default:
					add(obj, PropertyResult{PropertyRef: ref, Values: vals})
				}
			}
		}
		return out, nil
	}
	var specs []ReadAccessSpec
	count := 0
	flush := func() error {
		if len(specs) == 0 {
			return nil
		}
		res, err := c.ReadPropertyMultiple(ctx, d.addr, specs)
		specs, count = nil, 0
		if err != nil {
			return err
		}
		for _, o := range res {
			for _, r := range o.Results {
				add(o.Object, r)
			}
		}
		return nil
	}
	for _, dp := range due {
		if count > 0 && count+len(dp.refs) > d.batch {
			if err := flush(); err != nil {
				return nil, b.rpmFailed(d, err)
			}
		}
		specs = append(specs, ReadAccessSpec{Object: dp.ps.Object, Properties: dp.refs})
		count += len(dp.refs)
	}
	if err := flush(); err != nil {
		return nil, b.rpmFailed(d, err)
	}
	return out, nil
}

// rpmFailed switches a device that does not know ReadPropertyMultiple to
// ReadProperty for the next poll.
func (b *Bus) rpmFailed(d *deviceState, err error) error {
	var rej *RejectError
	var be *Error
	if errors.As(err, &rej) && rej.Reason == RejectUnrecognizedService || errors.As(err, &be) && be.Class == ErrorClassServices {
		b.log.Info("device refuses ReadPropertyMultiple; reading one property at a time", "device", d.Name, "err", err)
		d.noRPM = true
	}
	return fmt.Errorf("read properties of %s: %w", d.Name, err)
}

// publishPoint publishes a point from its property results; callers hold d.mu.
func (b *Bus) publishPoint(ctx context.Context, d *deviceState, ps *pointState, res map[PropertyID]PropertyResult, at time.Time, pub adapters.Publisher) error {
	if r, ok := res[PropUnits]; ok && r.Err == nil && len(r.Values) == 1 {
		if u, ok := r.Values[0].(Enumerated); ok {
			ps.unit, _ = UnitSymbol(uint32(u))
			ps.unitKnown = true
		}
	}
	if r, ok := res[PropReliability]; ok && r.Err == nil && len(r.Values) == 1 {
		if rel, ok := r.Values[0].(Enumerated); ok {
			ps.reliability = rel
		}
	}
	var flags BitString
	if r, ok := res[PropStatusFlags]; ok && r.Err == nil && len(r.Values) == 1 {
		flags, _ = r.Values[0].(BitString)
	}
	pv, ok := res[PropPresentValue]
	var v any
	q := adapters.QualityBad
	if ok && pv.Err == nil && len(pv.Values) == 1 {
		if v, ok = engineering(ps.Object.Type, pv.Values[0]); ok {
			q = quality(flags, ps.reliability)
		}
	}
	if q == adapters.QualityBad && v == nil {
		b.log.Debug("present-value unreadable", "device", d.Name, "point", ps.Name, "err", pv.Err)
	}
	return b.publish(ctx, d, ps, v, q, at, pub)
}

func (b *Bus) publish(ctx context.Context, d *deviceState, ps *pointState, v any, q string, at time.Time, pub adapters.Publisher) error {
	if !(adapters.Report{Deadband: ps.Deadband, MaxInterval: ps.MaxInterval}).Due(ps.last, v, q, at) {
		return nil
	}
	payload, _ := json.Marshal(adapters.Reading{V: v, Unit: ps.unit, TS: adapters.Timestamp(at), Q: q})
	if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: ps.Name, Payload: payload, High: ps.High}); err != nil {
		return err
	}
	ps.last = &adapters.Published{Value: v, Quality: q, At: at}
	return nil
}

// engineering turns a present-value into the published value: analog
// numbers as float64 (a REAL keeps its shortest decimal form, 72.3 not
// 72.30000305), binary as bool (active = true), multi-state as the state
// number.
func engineering(t ObjectType, v any) (any, bool) {
	switch {
	case t.IsAnalog():
		switch v := v.(type) {
		case float32:
			f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
			return f, !math.IsNaN(f) && !math.IsInf(f, 0)
		case float64:
			return v, !math.IsNaN(v) && !math.IsInf(v, 0)
		case uint64:
			return float64(v), true
		case int64:
			return float64(v), true
		}
	case t.IsBinary():
		if e, ok := v.(Enumerated); ok && e <= 1 {
			return e == 1, true
		}
	case t.IsMultiState():
		if u, ok := v.(uint64); ok {
			return u, true
		}
	}
	return nil, false
}

// quality maps status flags (in-alarm, fault, overridden, out-of-service)
// and reliability to q: a fault or any reliability other than
// no-fault-detected is bad; out of service (the value is not the
// process's) is stale; alarms and overrides are good values.
func quality(flags BitString, reliability Enumerated) string {
	switch {
	case len(flags) > 1 && flags[1], reliability != 0:
		return adapters.QualityBad
	case len(flags) > 3 && flags[3]:
		return adapters.QualityStale
	}
	return adapters.QualityGood
}

// subscribe subscribes or renews due COV subscriptions of d. A refusal
// leaves the point polled; a timeout fails the poll.
func (b *Bus) subscribe(ctx context.Context, c *Client, d *deviceState) error {
	now := time.Now()
	var due []*pointState
	d.mu.Lock()
	for _, p := range d.Points {
		ps := d.points[p.Name]
		if ps.COV && !ps.cov.refused && (!ps.cov.active || !now.Before(ps.cov.renewAt)) {
			due = append(due, ps)
		}
	}
	d.mu.Unlock()
	for _, ps := range due {
		err := c.SubscribeCOV(ctx, d.addr, SubscribeCOV{ProcessID: covProcessID, Object: ps.Object, Lifetime: uint32(ps.COVLifetime / time.Second)})
		var be *Error
		var rej *RejectError
		var ab *AbortError
		refused := errors.As(err, &be) || errors.As(err, &rej) || errors.As(err, &ab)
		d.mu.Lock()
		switch {
		case err == nil:
			ps.cov = covState{active: true, renewAt: now.Add(ps.COVLifetime / 2)}
		case refused:
			ps.cov = covState{refused: true}
		default:
			ps.cov.active = false
		}
		d.mu.Unlock()
		if refused {
			b.log.Info("COV refused; polling instead", "device", d.Name, "point", ps.Name, "err", err)
		} else if err != nil {
			return fmt.Errorf("subscribe %s: %w", ps.Object, err)
		}
	}
	return nil
}

func (b *Bus) onCOV(ctx context.Context, ev covEvent, pub adapters.Publisher) {
	at := time.Now()
	for _, d := range b.devices {
		if d.Instance != ev.n.Device.Instance || ev.n.ProcessID != covProcessID {
			continue
		}
		res := map[PropertyID]PropertyResult{}
		for _, pv := range ev.n.Values {
			res[pv.Property] = PropertyResult{PropertyRef: pv.PropertyRef, Values: pv.Values}
		}
		if _, ok := res[PropPresentValue]; !ok {
			return
		}
		d.mu.Lock()
		for _, p := range d.Points {
			ps := d.points[p.Name]
			if ps.Object != ev.n.Object || !ps.cov.active {
				continue
			}
			if err := b.publishPoint(ctx, d, ps, res, at, pub); err != nil {
				b.log.Warn("cannot publish COV reading", "device", d.Name, "point", ps.Name, "err", err)
			}
		}
		d.mu.Unlock()
	}
}

// CheckWrite validates a write without touching the device. Every write
// is critical (signed) unless the point allows unsigned writes.
func (b *Bus) CheckWrite(w adapters.WriteRequest) (critical bool, err error) {
	_, ps, _, err := b.prepare(w)
	if ps == nil {
		return true, err
	}
	return !ps.UnsignedWrites, err
}

// prepare validates a write and returns the value to write (Null for a
// relinquish).
func (b *Bus) prepare(w adapters.WriteRequest) (*deviceState, *pointState, any, error) {
	name, relinquish := strings.CutSuffix(w.Point, RelinquishSuffix)
	var d *deviceState
	for _, ds := range b.devices {
		if ds.Name == w.Device {
			d = ds
		}
	}
	if d == nil || d.points[name] == nil {
		return nil, nil, nil, fmt.Errorf("%s/%s: %w", w.Device, w.Point, adapters.ErrUnknownTarget)
	}
	ps := d.points[name]
	if !ps.Writable {
		return nil, ps, nil, fmt.Errorf("%s/%s: %w", w.Device, w.Point, adapters.ErrNotWritable)
	}
	bad := func(format string, args ...any) (*deviceState, *pointState, any, error) {
		return nil, ps, nil, fmt.Errorf("%s/%s: %w: %s", w.Device, w.Point, adapters.ErrInvalidValue, fmt.Sprintf(format, args...))
	}
	var v any
	if len(w.Value) > 0 {
		if err := json.Unmarshal(w.Value, &v); err != nil {
			return bad("%v", err)
		}
	}
	if relinquish {
		if v != nil && v != true {
			return bad("a relinquish takes null or true, got %s", w.Value)
		}
		return d, ps, Null{}, nil
	}
	t := ps.Object.Type
	switch {
	case t.IsBinary():
		switch v {
		case true, float64(1), "active":
			return d, ps, Enumerated(1), nil
		case false, float64(0), "inactive":
			return d, ps, Enumerated(0), nil
		}
		return bad("want true/false, 1/0 or active/inactive, got %s", w.Value)
	case t.IsMultiState():
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) || n < 1 || n > math.MaxUint32 {
			return bad("want a state number from 1, got %s", w.Value)
		}
		if ps.Min != nil && n < *ps.Min || ps.Max != nil && n > *ps.Max {
			return bad("%v is outside the allowed range", n)
		}
		return d, ps, uint64(n), nil
	}
	n, ok := v.(float64)
	if !ok {
		return bad("want a number, got %s", w.Value)
	}
	if math.Abs(n) > math.MaxFloat32 {
		return bad("%v does not fit a REAL", n)
	}
	if ps.Min != nil && n < *ps.Min || ps.Max != nil && n > *ps.Max {
		return bad("%v is outside the allowed range", n)
	}
	return d, ps, float32(n), nil
}

// Write writes present-value at the point's priority, or relinquishes it
// for "<point>.relinquish". Nothing is sent unless the value is valid.
func (b *Bus) Write(ctx context.Context, w adapters.WriteRequest) error {
	d, ps, v, err := b.prepare(w)
	if err != nil {
		return err
	}
	b.mu.Lock()
	c := b.client
	b.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%s/%s: bacnet bus %s is not running", w.Device, w.Point, b.cfg.Name)
	}
	wp := WriteProperty{Object: ps.Object, PropertyRef: PropertyRef{PropPresentValue, NoIndex}, Value: v, Priority: ps.Priority}
	if err := c.WriteProperty(ctx, d.addr, wp); err != nil {
		return fmt.Errorf("write %s priority %d: %w", ps.Object, ps.Priority, err)
	}
	return nil
}
