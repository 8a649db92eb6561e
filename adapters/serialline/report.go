package serialline

import "github.com/lintel-gw/lintel/adapters"

// Report hands the line's frame counters and device states to s.
func (l *Line) Report(s adapters.Sink) {
	st := l.Stats()
	s.Counter("serial_frames_total", st.Frames)
	s.Counter("serial_unmatched_total", st.Unmatched)
	s.Counter("serial_dropped_total", st.Dropped)
	for name, on := range st.Online {
		s.Device(name, on)
	}
}
