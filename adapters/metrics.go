package adapters

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
	// Device is one device's state: online once it answered, until it
	// stopped answering.
	Device(name string, online bool)
}
