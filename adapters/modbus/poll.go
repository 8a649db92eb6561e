package modbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	mb "github.com/simonvetter/modbus"
)

type deviceState struct {
	Device
	plan     []request // every point, for Plan and commissioning
	fails    int
	online   bool
	live     atomic.Bool // online, for Stats from other goroutines
	reported bool        // whether a status was ever published
	last     map[string]*adapters.Published
	health   adapters.Health // last error and back-off, for Report
}

// schedule is the points of one device polled at one interval.
type schedule struct {
	d    *deviceState
	poll time.Duration
	plan []request
	next time.Time
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
		if d.fails >= b.cfg.OfflineAfter {
			d.health.BackOff(b.nextTry(d))
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
			report := adapters.Report{Deadband: p.Deadband, MaxInterval: p.MaxInterval}
			if !report.Due(d.last[p.Name], v, adapters.QualityGood, at) {
				continue
			}
			payload, _ := json.Marshal(adapters.Reading{V: v, Unit: p.Unit, TS: adapters.Timestamp(at), Q: adapters.QualityGood})
			if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: p.Name, Payload: payload, High: p.High}); err != nil {
				return err
			}
			d.last[p.Name] = &adapters.Published{Value: v, Quality: adapters.QualityGood, At: at}
		}
	}
	if firstErr != nil {
		d.fails++
		d.health.Failed(errorKind(firstErr), time.Now())
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
	d.health.Answered()
	return nil
}

// nextTry is when the first of d's schedules polls it next; only Run's
// goroutine calls it.
func (b *Bus) nextTry(d *deviceState) time.Time {
	var next time.Time
	for _, s := range b.schedules {
		if s.d == d && (next.IsZero() || s.next.Before(next)) {
			next = s.next
		}
	}
	return next
}

// exceptionCodes are the Modbus exception codes of simonvetter/modbus's
// exception errors.
var exceptionCodes = map[mb.Error]int{
	mb.ErrIllegalFunction: 1, mb.ErrIllegalDataAddress: 2, mb.ErrIllegalDataValue: 3,
	mb.ErrServerDeviceFailure: 4, mb.ErrAcknowledge: 5, mb.ErrServerDeviceBusy: 6,
	mb.ErrMemoryParityError: 8, mb.ErrGWPathUnavailable: 10, mb.ErrGWTargetFailedToRespond: 11,
}

// errorKind is the fixed description of a failed poll that Report shows
// (adapters.DeviceState.LastError): the kind of error, never addresses,
// point names or response bytes.
func errorKind(err error) string {
	var mbErr mb.Error
	switch {
	case errors.Is(err, mb.ErrRequestTimedOut):
		return "timeout"
	case errors.Is(err, mb.ErrBadCRC):
		return "CRC error"
	case errors.Is(err, mb.ErrShortFrame):
		return "short frame"
	case errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrBadUnitId), errors.Is(err, mb.ErrBadTransactionId), errors.Is(err, mb.ErrUnknownProtocolId):
		return "protocol error"
	case !errors.As(err, &mbErr):
		return "connection failed"
	}
	if code, ok := exceptionCodes[mbErr]; ok {
		return fmt.Sprintf("exception %d (%s)", code, string(mbErr))
	}
	return string(mbErr) // one of the library's fixed error strings
}

func (b *Bus) publishStatus(ctx context.Context, d *deviceState, pub adapters.Publisher, online bool, errText string) {
	d.online, d.reported = online, true
	d.live.Store(online)
	payload, _ := json.Marshal(adapters.DeviceStatus{Online: online, Since: adapters.Timestamp(time.Now()), Error: errText})
	if err := pub.Publish(ctx, adapters.Message{Device: d.Name, Point: adapters.StatusPoint, Payload: payload, Retain: true, High: true}); err != nil {
		b.log.Warn("cannot publish device status", "device", d.Name, "err", err)
	}
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
