package modbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	mb "github.com/simonvetter/modbus"
)

// Point is one value on a device.
type Point struct {
	Name    string
	Table   Table
	Address uint16
	Type    Type
	Order   Order
	// Bit selects one bit (0 = least significant) of a register for a bool
	// point on the input or holding table; nil for whole values.
	Bit *uint8
	// Length is the number of registers of a String point.
	Length uint16
	// Labels name integer values (0 = "closed", 1 = "open"); a labelled
	// value is published as its label, and a label can be written.
	Labels   map[int64]string
	Scale    float64 // 0 means 1
	Offset   float64
	Unit     string
	Writable bool
	// Poll overrides the device's poll interval for this point; points
	// sharing an interval are planned together.
	Poll     time.Duration
	Critical bool // writes need a signed command, whatever UnsignedWrites says
	// UnsignedWrites lets commands without a signature write this point
	// (config: unsigned_writes: true). Off by default: every write is signed.
	UnsignedWrites bool
	Min, Max       *float64 // bounds of a written engineering value
	High           bool     // alarm bits and the like: delivered first, evicted last
	// Deadband: a new value is published when it differs from the last
	// published one by more than this (0: any change).
	Deadband float64
	// MaxInterval: publish at least this often even without change (0: 5m).
	MaxInterval time.Duration
}

// Device is one unit id on a bus.
type Device struct {
	Name   string
	Unit   uint8
	Poll   time.Duration
	Points []Point
	// MaxRegisters caps one read request (default 125; some devices take
	// fewer). MaxGap lets a request span up to this many unused registers
	// (or bits) between points (default 0: only adjacent points merge).
	MaxRegisters uint16
	MaxGap       uint16
}

// BusConfig describes how to reach the bus.
type BusConfig struct {
	Name string
	// URL is a simonvetter/modbus client URL, e.g. tcp://10.0.5.20:502.
	URL     string
	Timeout time.Duration
	// Pause is the quiet time between two transactions, for slow devices
	// and RS-485 converters that need time to turn around.
	Pause time.Duration
	// Retries is how often a failed request is repeated within one poll
	// before it counts as a failure (default 1).
	Retries int
	// Serial applies to rtu:// URLs only.
	Serial Serial
	// OfflineAfter is the number of failed polls in a row after which a
	// device is reported offline (default 3).
	OfflineAfter int
}

// Serial is the line setting of an RTU bus. simonvetter/modbus defaults to
// two stop bits without parity; most field devices are 8N1, so Lintel always
// sets stop bits explicitly.
type Serial struct {
	Baud     int    // default 9600
	Parity   string // none (default), even, odd
	StopBits int    // default 1
}

func (s Serial) parity() uint {
	switch s.Parity {
	case "even":
		return mb.PARITY_EVEN
	case "odd":
		return mb.PARITY_ODD
	}
	return mb.PARITY_NONE
}

// Bus polls the devices of one Modbus bus, one transaction at a time.
type Bus struct {
	cfg       BusConfig
	devices   []*deviceState
	schedules []*schedule
	log       *slog.Logger

	mu     sync.Mutex // one transaction at a time: polls and writes
	client *mb.ModbusClient

	stats busCounters
}

// ResponseBuckets are the upper bounds (seconds) of the response-time histogram.
var ResponseBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type busCounters struct {
	requests, timeouts, exceptions, linkErrors atomic.Uint64
	buckets                                    [10]atomic.Uint64 // len(ResponseBuckets)+1
	sumMicros                                  atomic.Uint64
}

// BusStats are a bus's counters.
type BusStats struct {
	Requests, Timeouts, Exceptions, LinkErrors uint64
	// Buckets counts responses per ResponseBuckets bound, the last one
	// above them all (not cumulative); Sum is their total in seconds.
	Buckets []uint64
	Sum     float64
	// Online is each device's state (false until it first answered).
	Online map[string]bool
}

// Stats returns the bus's counters.
func (b *Bus) Stats() BusStats {
	s := BusStats{
		Requests: b.stats.requests.Load(), Timeouts: b.stats.timeouts.Load(),
		Exceptions: b.stats.exceptions.Load(), LinkErrors: b.stats.linkErrors.Load(),
		Sum: float64(b.stats.sumMicros.Load()) / 1e6, Online: map[string]bool{},
	}
	for i := range b.stats.buckets {
		s.Buckets = append(s.Buckets, b.stats.buckets[i].Load())
	}
	for _, d := range b.devices {
		s.Online[d.Name] = d.live.Load()
	}
	return s
}

// count records one transaction's outcome and duration.
func (b *Bus) count(started time.Time, err error) {
	b.stats.requests.Add(1)
	var mbErr mb.Error
	switch {
	case err == nil:
		d := time.Since(started)
		b.stats.sumMicros.Add(uint64(d.Microseconds()))
		i := 0
		for i < len(ResponseBuckets) && d.Seconds() > ResponseBuckets[i] {
			i++
		}
		b.stats.buckets[i].Add(1)
	case errors.Is(err, mb.ErrRequestTimedOut):
		b.stats.timeouts.Add(1)
	case errors.Is(err, mb.ErrBadCRC), errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrShortFrame), !errors.As(err, &mbErr):
		b.stats.linkErrors.Add(1)
	default:
		b.stats.exceptions.Add(1)
	}
}

type deviceState struct {
	Device
	plan     []request // every point, for Plan and commissioning
	fails    int
	online   bool
	live     atomic.Bool // online, for Stats from other goroutines
	reported bool        // whether a status was ever published
	last     map[string]published
}

// schedule is the points of one device polled at one interval.
type schedule struct {
	d    *deviceState
	poll time.Duration
	plan []request
	next time.Time
}

type published struct {
	v  any
	at time.Time
}

// request is one read covering one or more points of the same table.
type request struct {
	table  Table
	start  uint16
	count  uint16
	points []Point
}

// Limits of one Modbus read request.
const (
	maxRegisters = 125
	maxBits      = 2000
)

// NewBus validates the devices and computes each device's request plan once.
func NewBus(cfg BusConfig, devices []Device, logger *slog.Logger) (*Bus, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 3
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	b := &Bus{cfg: cfg, log: logger.With("component", "modbus", "bus", cfg.Name)}
	for _, d := range devices {
		if d.Poll <= 0 {
			d.Poll = 5 * time.Second
		}
		ds := &deviceState{Device: d, plan: planRequests(d.Points, d.MaxRegisters, d.MaxGap), last: map[string]published{}}
		b.devices = append(b.devices, ds)
		byPoll := map[time.Duration][]Point{}
		for _, p := range d.Points {
			poll := cmp.Or(p.Poll, d.Poll)
			byPoll[poll] = append(byPoll[poll], p)
		}
		for _, poll := range slices.Sorted(maps.Keys(byPoll)) {
			b.schedules = append(b.schedules, &schedule{d: ds, poll: poll, plan: planRequests(byPoll[poll], d.MaxRegisters, d.MaxGap)})
		}
	}
	return b, nil
}

// planRequests merges points of the same table into the fewest read requests: points
// that are adjacent or overlap share a request, up to the protocol limits.
// size is how many registers (or bits) a point occupies.
func (p Point) size() uint16 {
	switch {
	case p.Table.IsBits(), p.Bit != nil:
		return 1
	case p.Type == String:
		return p.Length
	}
	return uint16(p.Type.Registers())
}

func planRequests(points []Point, maxRegs, maxGap uint16) []request {
	if maxRegs == 0 || maxRegs > maxRegisters {
		maxRegs = maxRegisters
	}
	sorted := slices.Clone(points)
	slices.SortStableFunc(sorted, func(a, b Point) int {
		if a.Table != b.Table {
			return int(a.Table) - int(b.Table)
		}
		return int(a.Address) - int(b.Address)
	})
	var plan []request
	for _, p := range sorted {
		size := p.size()
		limit, gap := maxRegs, maxGap
		if p.Table.IsBits() {
			limit, gap = maxBits, max(maxGap, 16*maxGap) // bits are cheap
		}
		if n := len(plan); n > 0 {
			r := &plan[n-1]
			end := max(r.start+r.count, p.Address+size)
			if r.table == p.Table && int(p.Address) <= int(r.start)+int(r.count)+int(gap) && end-r.start <= limit {
				r.count = end - r.start
				r.points = append(r.points, p)
				continue
			}
		}
		plan = append(plan, request{table: p.Table, start: p.Address, count: size, points: []Point{p}})
	}
	return plan
}

// Run polls until ctx ends. A failing device is reported offline and polled
// with backoff; it never stops the others.
func (b *Bus) Run(ctx context.Context, pub adapters.Publisher) error {
	defer b.closeClient()
	if len(b.schedules) == 0 {
		<-ctx.Done()
		return nil
	}
	now := time.Now()
	for _, s := range b.schedules {
		s.next = now
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s := b.schedules[0]
		for _, o := range b.schedules[1:] {
			if o.next.Before(s.next) {
				s = o
			}
		}
		timer.Reset(time.Until(s.next))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		d := s.d
		if err := b.poll(ctx, d, s.plan, pub); err != nil && ctx.Err() == nil {
			b.log.Debug("poll failed", "device", d.Name, "err", err)
		}
		s.next = s.next.Add(s.poll)
		if d.fails >= b.cfg.OfflineAfter {
			// Back off an offline device so that its timeouts cost the
			// healthy ones little: 2, 4, 8… poll periods, at most 5 minutes.
			backoff := min(s.poll<<min(d.fails-b.cfg.OfflineAfter+1, 16), 5*time.Minute)
			s.next = time.Now().Add(backoff)
		}
		if late := time.Now(); s.next.Before(late) {
			s.next = late // never try to catch up missed polls in a burst
		}
	}
}

func (b *Bus) poll(ctx context.Context, d *deviceState, plan []request, pub adapters.Publisher) error {
	var firstErr error
	for _, r := range plan {
		values, err := b.read(d.Unit, r)
		for try := 1; err != nil && try <= b.cfg.Retries && ctx.Err() == nil; try++ {
			values, err = b.read(d.Unit, r)
		}
		if err != nil {
			names := make([]string, len(r.points))
			for i, p := range r.points {
				names[i] = p.Name
			}
			firstErr = fmt.Errorf("unit %d: read %s %d+%d (%s): %w", d.Unit, r.table, r.start, r.count, strings.Join(names, ", "), err)
			break
		}
		at := time.Now() // when the response arrived
		for _, p := range r.points {
			v := values(p)
			if !d.shouldPublish(p, v, at) {
				continue
			}
			payload, _ := json.Marshal(adapters.Reading{V: v, Unit: p.Unit, TS: adapters.Timestamp(at), Q: adapters.QualityGood})
			if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: p.Name, Payload: payload, High: p.High}); err != nil {
				return err
			}
			d.last[p.Name] = published{v: v, at: at}
		}
	}
	if firstErr != nil {
		d.fails++
		if d.fails == b.cfg.OfflineAfter || (!d.reported && d.fails > b.cfg.OfflineAfter) {
			b.log.Warn("device offline", "device", d.Name, "err", firstErr)
			b.publishStatus(ctx, d, pub, false, firstErr.Error())
		}
		return firstErr
	}
	if !d.online || !d.reported {
		if d.fails >= b.cfg.OfflineAfter {
			b.log.Info("device back online", "device", d.Name)
		}
		b.publishStatus(ctx, d, pub, true, "")
	}
	d.fails = 0
	return nil
}

func (b *Bus) publishStatus(ctx context.Context, d *deviceState, pub adapters.Publisher, online bool, errText string) {
	d.online, d.reported = online, true
	d.live.Store(online)
	payload, _ := json.Marshal(adapters.DeviceStatus{Online: online, Since: adapters.Timestamp(time.Now()), Error: errText})
	if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: adapters.StatusPoint, Payload: payload, Retain: true, High: true}); err != nil {
		b.log.Warn("cannot publish device status", "device", d.Name, "err", err)
	}
}

func (d *deviceState) shouldPublish(p Point, v any, at time.Time) bool {
	last, ok := d.last[p.Name]
	if !ok {
		return true
	}
	maxInterval := p.MaxInterval
	if maxInterval <= 0 {
		maxInterval = 5 * time.Minute
	}
	if at.Sub(last.at) >= maxInterval {
		return true
	}
	if n, ok := number(v); ok {
		old, _ := number(last.v)
		diff := math.Abs(n - old)
		if p.Deadband > 0 {
			return diff > p.Deadband
		}
		return diff != 0
	}
	return v != last.v
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}

// read performs one request and returns a function that extracts each
// point's engineering value from the response.
func (b *Bus) read(unit uint8, r request) (values func(Point) any, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.pause()
	started := time.Now()
	c, err := b.connect(unit)
	if err != nil {
		b.count(started, err)
		return nil, err
	}
	defer func() { b.count(started, err) }()
	switch r.table {
	case Coil, Discrete:
		var bits []bool
		if r.table == Coil {
			bits, err = c.ReadCoils(r.start, r.count)
		} else {
			bits, err = c.ReadDiscreteInputs(r.start, r.count)
		}
		if err != nil {
			b.dropClientOnLinkError(err)
			return nil, err
		}
		return func(p Point) any { return bits[p.Address-r.start] }, nil
	default:
		regType := mb.HOLDING_REGISTER
		if r.table == Input {
			regType = mb.INPUT_REGISTER
		}
		var regs []uint16
		regs, err = c.ReadRegisters(r.start, r.count, regType)
		if err != nil {
			b.dropClientOnLinkError(err)
			return nil, err
		}
		return func(p Point) any {
			off := int(p.Address - r.start)
			if p.Bit != nil {
				return regs[off]>>*p.Bit&1 == 1
			}
			raw, err := decodeValue(p.Type, p.Order, regs[off:off+int(p.size())])
			if err != nil {
				return nil
			}
			return engineering(p, raw)
		}, nil
	}
}

// engineering applies labels, scale and offset. Integers without scale or
// offset stay exact integers (a 64-bit energy counter must not round).
func engineering(p Point, raw any) any {
	var f float64
	switch v := raw.(type) {
	case string:
		return v
	case float64:
		f = v
	case int64:
		if label, ok := p.Labels[v]; ok {
			return label
		}
		if (p.Scale == 0 || p.Scale == 1) && p.Offset == 0 {
			return v
		}
		f = float64(v)
	case uint64:
		if label, ok := p.Labels[int64(v)]; ok && v <= math.MaxInt64 {
			return label
		}
		if (p.Scale == 0 || p.Scale == 1) && p.Offset == 0 {
			return v
		}
		f = float64(v)
	}
	if len(p.Labels) > 0 && f == math.Trunc(f) {
		if label, ok := p.Labels[int64(f)]; ok {
			return label
		}
	}
	scale := p.Scale
	if scale == 0 {
		scale = 1
	}
	return f*scale + p.Offset
}

// pause keeps the line quiet between transactions; callers hold b.mu.
func (b *Bus) pause() {
	if b.cfg.Pause > 0 {
		time.Sleep(b.cfg.Pause)
	}
}

// connect returns the open client addressed to unit, opening it if needed.
// Callers hold b.mu.
func (b *Bus) connect(unit uint8) (*mb.ModbusClient, error) {
	if b.client == nil {
		ser := b.cfg.Serial
		c, err := mb.NewClient(&mb.ClientConfiguration{
			URL:      b.cfg.URL,
			Timeout:  b.cfg.Timeout,
			Speed:    uint(cmp.Or(ser.Baud, 9600)),
			DataBits: 8,
			Parity:   ser.parity(),
			StopBits: uint(cmp.Or(ser.StopBits, 1)),
			Logger:   slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		})
		if err != nil {
			return nil, err
		}
		if err := c.Open(); err != nil {
			return nil, fmt.Errorf("open %s: %w", b.cfg.URL, err)
		}
		b.client = c
	}
	if err := b.client.SetUnitId(unit); err != nil {
		return nil, err
	}
	return b.client, nil
}

// dropClientOnLinkError closes the connection after errors that may leave it
// unusable; Modbus exceptions and timeouts of one unit keep it.
func (b *Bus) dropClientOnLinkError(err error) {
	var mbErr mb.Error
	if errors.As(err, &mbErr) {
		return
	}
	b.client.Close()
	b.client = nil
}

func (b *Bus) closeClient() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		b.client.Close()
		b.client = nil
	}
}

// Sentinel errors of Write, shared with the command gate.
var (
	ErrUnknownPoint = adapters.ErrUnknownTarget
	ErrNotWritable  = adapters.ErrNotWritable
	ErrBadValue     = adapters.ErrInvalidValue
)

// CheckWrite validates a write without touching the device and reports
// whether the command must be signed.
func (b *Bus) CheckWrite(w adapters.WriteRequest) (needsSignature bool, err error) {
	_, p, _, _, err := b.prepare(w)
	return p.Critical || !p.UnsignedWrites, err
}

// prepare validates a write and returns what to write: on for a coil, or
// the encoded registers.
func (b *Bus) prepare(w adapters.WriteRequest) (*deviceState, Point, bool, []uint16, error) {
	d, p, err := b.find(w.Device, w.Point)
	if err != nil {
		return nil, p, false, nil, err
	}
	if !p.Writable || (p.Table != Coil && p.Table != Holding) {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w", w.Device, w.Point, ErrNotWritable)
	}
	var v any
	if err := json.Unmarshal(w.Value, &v); err != nil {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, ErrBadValue, err)
	}
	if p.Table == Coil {
		on, ok := asBool(v)
		if !ok {
			return nil, p, false, nil, fmt.Errorf("%s/%s: %w: want true/false or 0/1, got %s", w.Device, w.Point, ErrBadValue, w.Value)
		}
		return d, p, on, nil, nil
	}
	if label, isLabel := v.(string); isLabel && len(p.Labels) > 0 {
		for raw, l := range p.Labels {
			if l == label {
				v = float64(raw)
			}
		}
	}
	num, ok := v.(float64)
	if !ok {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: want a number or a label, got %s", w.Device, w.Point, ErrBadValue, w.Value)
	}
	if len(p.Labels) > 0 {
		if _, ok := p.Labels[int64(num)]; !ok || num != math.Trunc(num) {
			return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v is not one of the labelled values", w.Device, w.Point, ErrBadValue, num)
		}
	}
	if p.Min != nil && num < *p.Min || p.Max != nil && num > *p.Max {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v is outside the allowed range", w.Device, w.Point, ErrBadValue, num)
	}
	scale := p.Scale
	if scale == 0 {
		scale = 1
	}
	regs, err := encodeRegisters(p.Type, p.Order, (num-p.Offset)/scale)
	if err != nil {
		return nil, p, false, nil, fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, ErrBadValue, err)
	}
	return d, p, false, regs, nil
}

// Write writes an engineering value to a writable point: a JSON bool (or 0/1)
// for coils, a JSON number for holding registers (scale and offset undone,
// within Min and Max). Nothing is sent unless the value is valid.
func (b *Bus) Write(ctx context.Context, w adapters.WriteRequest) error {
	d, p, on, regs, err := b.prepare(w)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.Table == Coil {
		c, err := b.connect(d.Unit)
		if err != nil {
			return err
		}
		if err := c.WriteCoil(p.Address, on); err != nil {
			b.dropClientOnLinkError(err)
			return fmt.Errorf("unit %d: write coil %d: %w", d.Unit, p.Address, err)
		}
		return nil
	}
	c, err := b.connect(d.Unit)
	if err != nil {
		return err
	}
	if len(regs) == 1 {
		err = c.WriteRegister(p.Address, regs[0])
	} else {
		err = c.WriteRegisters(p.Address, regs)
	}
	if err != nil {
		b.dropClientOnLinkError(err)
		return fmt.Errorf("unit %d: write holding %d+%d: %w", d.Unit, p.Address, len(regs), err)
	}
	return nil
}

func (b *Bus) find(device, point string) (*deviceState, Point, error) {
	for _, d := range b.devices {
		if d.Name != device {
			continue
		}
		for _, p := range d.Points {
			if p.Name == point {
				return d, p, nil
			}
		}
	}
	return nil, Point{}, fmt.Errorf("%s/%s: %w", device, point, ErrUnknownPoint)
}

func asBool(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case float64:
		if v == 0 || v == 1 {
			return v == 1, true
		}
	}
	return false, false
}
