package modbus

import (
	"cmp"
	"errors"
	"log/slog"
	"maps"
	"slices"
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

// Config is one Modbus bus and its devices: the section New builds a Bus
// from.
type Config struct {
	Bus     BusConfig
	Devices []Device
}

// New builds the Bus of one config section; nothing is opened until Run.
func New(c Config, logger *slog.Logger) (*Bus, error) { return NewBus(c.Bus, c.Devices, logger) }

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
		ds := &deviceState{Device: d, plan: planRequests(d.Points, d.MaxRegisters, d.MaxGap), last: map[string]*adapters.Published{}}
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
