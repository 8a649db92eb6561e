package adapters

import (
	"sync"
	"time"
)

// Reporter is an Adapter that reports its own counters and its devices'
// state. The gateway calls Report at each scrape of /metrics and /healthz
// and turns what it receives into lintel_<name>{bus="…"} metrics, so the
// gateway needs no case per adapter type and no adapter depends on
// Prometheus. Report must be safe to call while Run runs.
type Reporter interface {
	Report(s Sink)
}

// Sink receives one adapter's samples. Names are metric names without the
// lintel_ prefix and must be in the gateway's metric catalogue
// (gateway/health.go); the gateway adds the bus label.
type Sink interface {
	// Counter is a monotonically increasing count, e.g. "bus_requests_total".
	Counter(name string, v uint64)
	// Histogram is a distribution: counts[i] responses at or below
	// bounds[i], counts[len(bounds)] above them all (not cumulative), sum
	// their total.
	Histogram(name string, bounds []float64, counts []uint64, sum float64)
	// Device is one device's state, once per device and report.
	Device(s DeviceState)
}

// DeviceState is what an adapter knows of one device's health. It is shown
// on the status page and may be logged, so it never holds frame bytes,
// payload values, card numbers or names read from the bus.
type DeviceState struct {
	Name string
	// Online is true once the device answered, until the adapter's
	// offline rule (OfflineAfter failures in a row) says it stopped.
	Online bool
	// LastError is a fixed short description of the kind of the most
	// recent failure attributed to the device ("timeout", "CRC error",
	// "exception 2 (illegal data address)", "frame matched no event"),
	// never the text of a frame or a value. It is kept when the device
	// answers again, so that an intermittent fault stays visible;
	// LastErrorAt says when it happened. Both are zero when no failure
	// was attributed to the device since the adapter was built.
	LastError   string
	LastErrorAt time.Time
	// Failures is the number of failed polls or requests in a row; 0 once
	// the device answers.
	Failures int
	// RetryAt is set while the adapter backs off the device (the circuit
	// is open): the device is not tried before then. Zero while the
	// device is tried at its normal period.
	RetryAt time.Time
}

// Circuit states returned by DeviceState.Circuit.
const (
	CircuitClosed   = "closed"    // tried at its normal period
	CircuitOpen     = "open"      // backing off until RetryAt
	CircuitHalfOpen = "half-open" // RetryAt passed: the retry is due or under way
)

// Circuit is the device's back-off state at now.
func (s DeviceState) Circuit(now time.Time) string {
	switch {
	case s.RetryAt.IsZero():
		return CircuitClosed
	case now.Before(s.RetryAt):
		return CircuitOpen
	}
	return CircuitHalfOpen
}

// Health keeps the error and back-off fields of one device's DeviceState
// for an adapter: the polling loop records, Report reads. The zero value is
// ready; it is safe for concurrent use.
type Health struct {
	mu sync.Mutex
	s  DeviceState
}

// Failed records a failed poll or request: kind (a fixed description, see
// DeviceState.LastError) at at, one more failure in a row.
func (h *Health) Failed(kind string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.LastError, h.s.LastErrorAt = kind, at
	h.s.Failures++
}

// Error records a problem attributed to the device that is not a failed
// poll (a frame no event matched): it becomes LastError, Failures stays.
func (h *Health) Error(kind string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.LastError, h.s.LastErrorAt = kind, at
}

// Answered records that the device answered: no failures in a row, no
// back-off. LastError stays.
func (h *Health) Answered() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.Failures, h.s.RetryAt = 0, time.Time{}
}

// BackOff records that the device is not tried before until (zero: tried
// at its normal period again).
func (h *Health) BackOff(until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s.RetryAt = until
}

// State is the device's state with the given name and online flag.
func (h *Health) State(name string, online bool) DeviceState {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.s
	s.Name, s.Online = name, online
	return s
}

// DeviceStates collects the device states r reports, by device name (for
// tools and tests; the gateway reads them through its own Sink).
func DeviceStates(r Reporter) map[string]DeviceState {
	c := deviceCollector{}
	r.Report(c)
	return c
}

type deviceCollector map[string]DeviceState

func (deviceCollector) Counter(string, uint64)                         {}
func (deviceCollector) Histogram(string, []float64, []uint64, float64) {}
func (c deviceCollector) Device(s DeviceState)                         { c[s.Name] = s }
