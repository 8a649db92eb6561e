package gateway

import (
	"log/slog"
	"testing"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
)

// TestReportedMetricsAreInTheCatalogue: every metric an adapter reports
// through adapters.Reporter has a description in the collector, and every
// adapter type the gateway builds reports its devices' state (which
// /healthz reads), so no metric is lost without a type switch.
func TestReportedMetricsAreInTheCatalogue(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	mb, err := modbus.New(modbus.Config{
		Bus:     modbus.BusConfig{Name: "plant", URL: "tcp://127.0.0.1:1"},
		Devices: []modbus.Device{{Name: "meter", Points: []modbus.Point{{Name: "p", Table: modbus.Holding, Type: modbus.Uint16, Scale: 1}}}},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	line, err := serialline.New(serialline.Config{Name: "doors", Port: "/dev/null", Baud: 9600, Parity: "none", StopBits: 1,
		Devices: []serialline.Device{{Name: "panel", Commands: []serialline.Command{{Name: "c", Send: "x"}}}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	descs := newCollector(&Gateway{}).descs
	for _, c := range []struct {
		a      adapters.Adapter
		device string
		want   []string
	}{
		{mb, "meter", []string{"bus_requests_total", "bus_timeouts_total", "bus_exceptions_total", "bus_link_errors_total", "bus_response_seconds"}},
		{line, "panel", []string{"serial_frames_total", "serial_unmatched_total", "serial_dropped_total"}},
	} {
		if _, ok := c.a.(adapters.Reporter); !ok {
			t.Fatalf("%T is not an adapters.Reporter", c.a)
		}
		r := reportOf(c.a)
		got := map[string]bool{}
		for _, s := range r.counters {
			got[s.name] = true
		}
		for _, h := range r.histograms {
			got[h.name] = true
			if len(h.counts) != len(h.bounds)+1 {
				t.Errorf("%T histogram %s: %d counts for %d bounds; want one above them all", c.a, h.name, len(h.counts), len(h.bounds))
			}
		}
		for name := range got {
			if descs[name] == nil {
				t.Errorf("%T reports %q, which the collector does not describe", c.a, name)
			}
		}
		for _, name := range c.want {
			if !got[name] {
				t.Errorf("%T does not report %q", c.a, name)
			}
		}
		if on, ok := r.online[c.device]; !ok || on {
			t.Errorf("%T: device %s online = %v, reported %v; want reported offline before the first answer", c.a, c.device, on, ok)
		}
	}
}
