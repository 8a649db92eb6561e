package modbus

import "github.com/lintel-gw/lintel/adapters"

// Report hands the bus's counters, response times and device states to s:
// online, the kind of the last failed poll and the back-off of an offline
// device (polled again at RetryAt, see Run).
func (b *Bus) Report(s adapters.Sink) {
	st := b.Stats()
	s.Counter("bus_requests_total", st.Requests)
	s.Counter("bus_timeouts_total", st.Timeouts)
	s.Counter("bus_exceptions_total", st.Exceptions)
	s.Counter("bus_link_errors_total", st.LinkErrors)
	s.Histogram("bus_response_seconds", ResponseBuckets, st.Buckets, st.Sum)
	for _, d := range b.devices {
		s.Device(d.health.State(d.Name, d.live.Load()))
	}
}
