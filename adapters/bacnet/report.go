package bacnet

import "github.com/lintel-gw/lintel/adapters"

// Report implements adapters.Reporter: the bus's request counters (device
// refusals count as exceptions), foreign-device registrations and each
// device's state: online, the kind of the last failed poll and the back-off
// of an offline device.
func (b *Bus) Report(s adapters.Sink) {
	st := b.Stats()
	s.Counter("bus_requests_total", st.Requests)
	s.Counter("bus_timeouts_total", st.Timeouts)
	s.Counter("bus_exceptions_total", st.Refusals)
	s.Counter("bacnet_foreign_registrations_total", st.ForeignRegistrations)
	for _, d := range b.devices {
		s.Device(d.health.State(d.Name, d.live.Load()))
	}
}

var _ adapters.Reporter = (*Bus)(nil)
