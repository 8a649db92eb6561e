package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/buffer"
)

// collector turns the components' counters into Prometheus metrics at
// scrape time, so no package below gateway depends on Prometheus.
type collector struct {
	g     *Gateway
	descs map[string]*prometheus.Desc
}

func newCollector(g *Gateway) *collector {
	c := &collector{g: g, descs: map[string]*prometheus.Desc{}}
	def := func(name, help string, labels ...string) {
		c.descs[name] = prometheus.NewDesc("lintel_"+name, help, labels, nil)
	}
	def("bus_requests_total", "Modbus transactions; BACnet confirmed requests.", "bus")
	def("bus_timeouts_total", "Modbus and BACnet requests that timed out.", "bus")
	def("bus_exceptions_total", "Modbus exception responses; BACnet Error, Reject and Abort answers.", "bus")
	def("bacnet_foreign_registrations_total", "Successful BACnet foreign-device registrations with the BBMD.", "bus")
	def("bus_link_errors_total", "CRC, framing and connection errors.", "bus")
	def("bus_response_seconds", "Modbus response time.", "bus")
	def("serial_frames_total", "Serial-line frames received.", "bus")
	def("serial_unmatched_total", "Serial-line frames no event matched.", "bus")
	def("serial_dropped_total", "Serial-line garbage and over-long frames dropped.", "bus")
	def("device_online", "1 if the device answers.", "bus", "device")
	def("device_backoff_seconds", "Seconds until a backed-off device is tried again; 0 when not backed off or the retry is due.", "bus", "device")
	def("buffer_records", "Records waiting in the buffer.")
	def("buffer_high_records", "High-priority records waiting.")
	def("buffer_bytes", "Bytes of records waiting.")
	def("buffer_oldest_age_seconds", "Age of the oldest waiting record.")
	def("buffer_drops_total", "Records dropped, by reason.", "reason")
	def("buffer_commits_total", "Group commits.")
	def("buffer_commit_failures_total", "Failed group commits (e.g. disk full).")
	def("buffer_quarantined", "1 if a bad buffer file was moved aside at start.")
	def("buffer_dead_letters", "Records in the dead-letter bucket (refused by the cloud; not retried).")
	def("buffer_problem", "1 while the buffer cannot store records durably (see /healthz).")
	def("uplink_oldest_inflight_seconds", "Age of the oldest message waiting for its PUBACK.")
	def("uplink_connected", "1 while connected to the cloud broker.")
	def("uplink_published_total", "PUBLISH packets sent to the cloud.")
	def("uplink_in_flight", "Messages sent and not yet acknowledged.")
	def("uplink_acked_total", "PUBACKs from the cloud (records deleted).")
	def("uplink_reconnects_total", "Sessions after the first.")
	def("uplink_certificate_expiry_seconds", "Seconds until the uplink client certificate expires.")
	def("broker_clients", "Connected local clients.")
	def("broker_auth_failures_total", "Refused logins.")
	def("broker_auth_blocked_total", "Logins refused unchecked during back-off.")
	def("broker_acl_denied_total", "Reads and writes denied by the ACL.", "direction")
	def("broker_will_denied_total", "CONNECTs refused for a Will on a forbidden topic.")
	def("broker_abusive_total", "Clients disconnected for oversized packets or topics.")
	def("commands_total", "Command attempts by outcome.", "outcome")
	def("publish_errors_total", "Adapter readings that could not be buffered.")
	def("publish_invalid_topics_total", "Adapter messages refused: device or point not a valid topic level.")
	def("ha_discovery_overflow_total", "Frame-named points Home Assistant discovery left out: their device reached the cap.")
	def("clock_trusted", "0 while the wall clock is unset or unsynchronised.")
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	b01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	now := time.Now()
	for name, a := range g.currentBuses() {
		r := reportOf(a)
		for _, m := range r.counters {
			counter(m.name, m.v, name)
		}
		for _, h := range r.histograms {
			buckets, cum := map[float64]uint64{}, uint64(0)
			for i, bound := range h.bounds {
				cum += h.counts[i]
				buckets[bound] = cum
			}
			ch <- prometheus.MustNewConstHistogram(c.descs[h.name], cum+h.counts[len(h.counts)-1], h.sum, buckets, name)
		}
		for device, on := range r.online {
			gauge("device_online", b01(on), name, device)
			gauge("device_backoff_seconds", max(r.devices[device].RetryAt.Sub(now).Seconds(), 0), name, device)
		}
	}
	s := g.Stats()
	b := s.Buffer
	gauge("buffer_records", float64(b.Records))
	gauge("buffer_high_records", float64(b.High))
	gauge("buffer_bytes", float64(b.Bytes))
	age := 0.0
	if !b.Oldest.IsZero() {
		age = time.Since(b.Oldest).Seconds()
	}
	gauge("buffer_oldest_age_seconds", age)
	counter("buffer_drops_total", b.Drops.Full, "full")
	counter("buffer_drops_total", b.Drops.Rejected, "rejected")
	counter("buffer_drops_total", b.Drops.Expired, "expired")
	counter("buffer_commits_total", b.Commits)
	counter("buffer_commit_failures_total", b.CommitFails)
	gauge("buffer_quarantined", b01(b.Quarantined != ""))
	sig := signalsOf(s)
	gauge("buffer_dead_letters", float64(sig.DeadLetters))
	gauge("buffer_problem", b01(sig.BufferProblem != ""))
	if g.uplink != nil {
		u := s.Uplink
		gauge("uplink_connected", b01(u.Connected))
		counter("uplink_published_total", u.Published)
		gauge("uplink_in_flight", float64(u.InFlight))
		counter("uplink_acked_total", u.Acked)
		counter("uplink_reconnects_total", u.Reconnects)
		gauge("uplink_oldest_inflight_seconds", sig.OldestInflight.Seconds())
		if !u.CertNotAfter.IsZero() {
			gauge("uplink_certificate_expiry_seconds", time.Until(u.CertNotAfter).Seconds())
		}
	}
	bc := g.broker.Counters()
	gauge("broker_clients", float64(g.broker.Clients()))
	counter("broker_auth_failures_total", bc.AuthFailures)
	counter("broker_auth_blocked_total", bc.AuthBlocked)
	counter("broker_acl_denied_total", bc.ReadDenied, "read")
	counter("broker_acl_denied_total", bc.WriteDenied, "write")
	counter("broker_will_denied_total", bc.WillDenied)
	counter("broker_abusive_total", bc.Abusive)
	for outcome, n := range g.gate.Counts() {
		counter("commands_total", n, outcome)
	}
	counter("publish_errors_total", s.PublishErrors)
	counter("publish_invalid_topics_total", s.InvalidTopics)
	if d := g.haLive.Load(); d != nil {
		counter("ha_discovery_overflow_total", d.Overflow())
	}
	gauge("clock_trusted", b01(ClockProblem() == ""))
}

// busReport is what one adapter reported at one scrape (adapters.Reporter).
type busReport struct {
	counters   []counterSample
	histograms []histogramSample
	online     map[string]bool
	devices    map[string]adapters.DeviceState // the same devices, in full
}

type counterSample struct {
	name string
	v    uint64
}

type histogramSample struct {
	name   string
	bounds []float64
	counts []uint64 // per bound, the last above them all; not cumulative
	sum    float64
}

func (r *busReport) Counter(name string, v uint64) {
	r.counters = append(r.counters, counterSample{name, v})
}

func (r *busReport) Histogram(name string, bounds []float64, counts []uint64, sum float64) {
	r.histograms = append(r.histograms, histogramSample{name, bounds, counts, sum})
}

func (r *busReport) Device(s adapters.DeviceState) {
	r.online[s.Name] = s.Online
	r.devices[s.Name] = s
}

// reportOf asks a bus for its report; a bus that reports nothing has an
// empty one.
func reportOf(a any) *busReport {
	r := &busReport{online: map[string]bool{}, devices: map[string]adapters.DeviceState{}}
	if rep, ok := a.(adapters.Reporter); ok {
		rep.Report(r)
	}
	return r
}

// Health is the answer of /healthz.
type Health struct {
	Status   string   `json:"status"` // ok or degraded
	Problems []string `json:"problems,omitempty"`
}

// pubackOverdue is how long the oldest in-flight message may wait for its
// PUBACK before /healthz says so: a hung cloud shows within seconds, long
// before the uplink's ack timeout ends the session.
const pubackOverdue = 5 * time.Second

// signals are the wave-2 health inputs that live in other packages' stats.
type signals struct {
	DeadLetters    uint64        // records in the buffer's dead-letter bucket
	BufferProblem  string        // why the buffer cannot store durably now, "" if it can
	OldestInflight time.Duration // age of the oldest message waiting for a PUBACK
}

// signalsOf reads the signals from s.
func signalsOf(s Stats) signals {
	return signals{DeadLetters: s.Buffer.DeadLetters, BufferProblem: s.Buffer.Problem, OldestInflight: s.Uplink.OldestInflight}
}

// healthInput is everything Health judges, gathered in one place so that
// the judgement is a pure function (healthProblems) a test can drive.
type healthInput struct {
	Uplink         bool // an uplink is configured
	Connected      bool
	LastError      string
	CertNotAfter   time.Time
	Offline        []string // "device D on bus B"
	ClockProblem   string
	Quarantined    string
	CommitsFailing bool   // a commit failed within buffer.CommitFailureWindow
	CommitFails    uint64 // since the buffer opened
	signals
}

// healthProblems says what is degraded, in a fixed order.
func healthProblems(in healthInput, now time.Time) []string {
	var problems []string
	if in.Uplink {
		if !in.Connected {
			msg := "uplink not connected"
			if in.LastError != "" {
				msg += ": " + in.LastError
			}
			problems = append(problems, msg)
		}
		if in.Connected && in.OldestInflight > pubackOverdue {
			problems = append(problems, fmt.Sprintf("PUBACK overdue: the oldest message in flight has waited %v (cloud broker hung?)", in.OldestInflight.Round(time.Second)))
		}
		if left := in.CertNotAfter.Sub(now); !in.CertNotAfter.IsZero() && left < 30*24*time.Hour {
			problems = append(problems, fmt.Sprintf("uplink certificate expires in %d days", int(left.Hours()/24)))
		}
	}
	for _, o := range in.Offline {
		problems = append(problems, o+" offline")
	}
	if in.ClockProblem != "" {
		problems = append(problems, in.ClockProblem)
	}
	if in.Quarantined != "" {
		problems = append(problems, "buffer file was corrupt and moved to "+in.Quarantined)
	}
	if in.BufferProblem != "" {
		problems = append(problems, "buffer: "+in.BufferProblem)
	}
	if in.CommitsFailing {
		problems = append(problems, fmt.Sprintf("buffer commits failing (disk full?): the last within %v, %d since start", buffer.CommitFailureWindow, in.CommitFails))
	}
	if in.DeadLetters > 0 {
		problems = append(problems, fmt.Sprintf("%d records in the buffer's dead-letter bucket (the cloud refused them; see lintel buffer stats)", in.DeadLetters))
	}
	return problems
}

// Health says what is degraded: uplink down or a PUBACK overdue, devices
// offline, buffer trouble (quarantine, a storage problem, recent commit
// failures, dead letters), an uplink certificate near expiry, the clock.
func (g *Gateway) Health() Health {
	s := g.Stats()
	now := time.Now()
	in := healthInput{
		Uplink:         g.uplink != nil,
		Connected:      s.Uplink.Connected,
		LastError:      s.Uplink.LastError,
		CertNotAfter:   s.Uplink.CertNotAfter,
		ClockProblem:   ClockProblem(),
		Quarantined:    s.Buffer.Quarantined,
		CommitsFailing: s.Buffer.CommitFailuresRecent > 0,
		CommitFails:    s.Buffer.CommitFails,
		signals:        signalsOf(s),
	}
	buses := g.currentBuses()
	for _, name := range slices.Sorted(maps.Keys(buses)) {
		online := reportOf(buses[name]).online
		for _, device := range slices.Sorted(maps.Keys(online)) {
			if !online[device] {
				in.Offline = append(in.Offline, fmt.Sprintf("device %s on bus %s", device, name))
			}
		}
	}
	if problems := healthProblems(in, now); len(problems) > 0 {
		return Health{Status: "degraded", Problems: problems}
	}
	return Health{Status: "ok"}
}

// serveMetrics serves /metrics and /healthz until ctx ends.
func (g *Gateway) serveMetrics(ctx context.Context, l net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(g), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := g.Health()
		w.Header().Set("Content-Type", "application/json")
		if h.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var stopper sync.WaitGroup
	stopper.Go(func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			g.log.Warn("metrics server did not stop cleanly", "err", err)
		}
	})
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Error("metrics server", "err", err)
	}
	stopper.Wait() // Run cancels ctx when it stops
}
