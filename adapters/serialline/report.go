package serialline

import "github.com/lintel-gw/lintel/adapters"

// Report hands the line's frame counters and device states to s: online,
// the kind of the last problem (an unanswered request, the port, or on a
// line with one device a frame no event parses) and, while the port cannot
// be opened, when it is tried again. A silent device is asked at its
// request period: the line does not back it off.
func (l *Line) Report(s adapters.Sink) {
	st := l.Stats()
	s.Counter("serial_frames_total", st.Frames)
	s.Counter("serial_unmatched_total", st.Unmatched)
	s.Counter("serial_dropped_total", st.Dropped)
	for _, d := range l.cfg.Devices {
		s.Device(l.health[d.Name].State(d.Name, st.Online[d.Name]))
	}
}
