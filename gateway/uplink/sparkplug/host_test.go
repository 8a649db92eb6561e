package sparkplug

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/uplink"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rig is one gateway's data dir, its buffer and the in-process mTLS cloud.
type rig struct {
	ca    *pki.CA
	cloud *cloudtest.Broker
	queue *buffer.Queue
	dir   string
	log   *slog.Logger // the edge node's; nil: discarded
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ca, err := pki.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := cloudtest.Start(ca, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Stop)
	dir := t.TempDir()
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{CommitInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return &rig{ca: ca, cloud: cloud, queue: q, dir: dir}
}

func (r *rig) tls(t *testing.T, name string) *tls.Config {
	t.Helper()
	pair, err := r.ca.Client(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: r.ca.Pool(), Certificates: []tls.Certificate{cert}}
}

var testMetrics = []MetricDef{
	{Device: "ahu", Name: "t", Type: Double, Unit: "°C", Scale: 0.1},
	{Device: "ahu", Name: "on", Type: Boolean},
	{Device: "meter", Name: "kwh", Type: Int64, Unit: "kWh"},
}

// edge is a running gateway uplink in Sparkplug mode.
type edge struct {
	node *Node
	stop func() // clean: drains, publishes NDEATH
	kill func() // abrupt: the connection is cut first, no drain reaches the cloud
}

// startEdge runs the uplink with a Node; broker overrides the cloud URL (a
// cutter in front of it).
func (r *rig) startEdge(t *testing.T, cfg Config, broker string) *edge {
	t.Helper()
	cfg.GroupID, cfg.EdgeNodeID, cfg.GatewayID = "site", "gw1", "gw1"
	if cfg.Metrics == nil {
		cfg.Metrics = testMetrics
	}
	cfg.StateFile = filepath.Join(r.dir, "sparkplug.db")
	logger := r.log
	if logger == nil {
		logger = quiet()
	}
	n, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if broker == "" {
		broker = r.cloud.URL()
	}
	u, err := uplink.New(uplink.Config{Broker: broker, TLS: r.tls(t, "gw1"), GatewayID: "gw1", Encoder: n, Session: n,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ConnectTimeout: time.Second, AckTimeout: 2 * time.Second}, r.queue, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; n.Close() }) }
	t.Cleanup(stop)
	return &edge{node: n, stop: stop}
}

func (r *rig) appendReadings(t *testing.T, from, n int) {
	t.Helper()
	recs := make([]buffer.Record, n)
	for i := range recs {
		recs[i] = buffer.Record{Topic: "lintel/gw1/ahu/t",
			Payload: fmt.Appendf(nil, `{"v":%d,"ts":"2026-12-01T04:00:00.000Z","q":"good"}`, from+i)}
	}
	if err := r.queue.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// host is a Sparkplug host application on the cloud broker, written from
// the specification with this package's decoder: it tracks births, checks
// seq continuity (mod 256) and that each NDEATH's bdSeq is that of the
// NBIRTH it ends, and asks for a rebirth when it sees data it cannot place.
type host struct {
	t      *testing.T
	id     string // primary host id: publishes STATE; "" for a plain consumer
	form   string // STATE form it publishes: State30 or State22
	c      paho.Client
	stateT int64

	mu       sync.Mutex
	kinds    []string // every message kind in arrival order
	bdSeqs   []int64  // of each NBIRTH
	deaths   []int64  // bdSeq of each NDEATH
	synced   bool     // an NBIRTH was seen since the last NDEATH
	next     uint64   // expected seq
	declared map[string]DataType
	values   map[string][]sample
	problems []string
	rebirths int // NCMD Rebirth sent
	births   int
	results  []string // MetricResult values
}

type sample struct {
	v          any
	historical bool
}

func newHost(t *testing.T, r *rig, id string) *host {
	t.Helper()
	return newHostForm(t, r, id, State30)
}

// newHostForm is newHost for a primary host publishing STATE in form
// (State30: spBv1.0/STATE/<id> JSON; State22: STATE/<id> ONLINE/OFFLINE).
func newHostForm(t *testing.T, r *rig, id, form string) *host {
	t.Helper()
	h := &host{t: t, id: id, form: form, declared: map[string]DataType{}, values: map[string][]sample{}}
	opts := paho.NewClientOptions().AddBroker(r.cloud.URL()).SetClientID("host-" + id).SetTLSConfig(r.tls(t, "host")).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).SetCleanSession(true)
	switch {
	case id != "" && form == State22:
		opts.SetBinaryWill("STATE/"+id, []byte("OFFLINE"), 1, true)
	case id != "":
		opts.SetBinaryWill(Namespace+"/STATE/"+id, []byte(`{"online":false,"timestamp":0}`), 1, true)
	}
	opts.SetOnConnectHandler(func(c paho.Client) {
		// Subscribe first, then declare the host online: the edge node
		// births only after it saw this STATE, so nothing is missed.
		c.Subscribe(Namespace+"/site/#", 1, h.onMessage).Wait()
		if id != "" {
			h.setState(true)
		}
	})
	h.c = paho.NewClient(opts)
	if tok := h.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("host connect: %v", tok.Error())
	}
	t.Cleanup(func() { h.c.Disconnect(0) })
	return h
}

func (h *host) setState(online bool) {
	h.mu.Lock()
	h.stateT = max(h.stateT+1, time.Now().UnixMilli())
	ts := h.stateT
	h.mu.Unlock()
	if h.form == State22 {
		p := "OFFLINE"
		if online {
			p = "ONLINE"
		}
		h.c.Publish("STATE/"+h.id, 1, true, []byte(p)).Wait()
		return
	}
	b, _ := json.Marshal(map[string]any{"online": online, "timestamp": ts})
	h.c.Publish(Namespace+"/STATE/"+h.id, 1, true, b).Wait()
}

// publish sends a retained QoS 1 message as the host (a raw STATE).
func (h *host) publish(topic, payload string) {
	h.c.Publish(topic, 1, true, []byte(payload)).Wait()
}

func (h *host) rebirth() {
	p := Payload{Timestamp: uint64(time.Now().UnixMilli()), Metrics: []Metric{{Name: MetricRebirth, Datatype: Boolean, Value: true}}}
	h.c.Publish(Namespace+"/site/NCMD/gw1", 0, false, p.Marshal())
}

func (h *host) problem(format string, args ...any) {
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

func (h *host) onMessage(_ paho.Client, m paho.Message) {
	levels := strings.Split(m.Topic(), "/")
	if len(levels) < 4 {
		return
	}
	kind, dev := levels[2], ""
	if len(levels) == 5 {
		dev = levels[4]
	}
	if kind == "NCMD" || kind == "DCMD" {
		return
	}
	p, err := Unmarshal(m.Payload())
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.problem("%s: %v", m.Topic(), err)
		return
	}
	h.kinds = append(h.kinds, kind)
	switch kind {
	case "NBIRTH":
		h.births++
		if p.Seq == nil || *p.Seq != 0 {
			h.problem("NBIRTH seq %v, want 0", p.Seq)
		}
		bd, ok := metric(p, MetricBdSeq)
		if !ok {
			h.problem("NBIRTH without bdSeq")
		}
		h.bdSeqs = append(h.bdSeqs, bd.Value.(int64))
		for _, want := range []string{MetricRebirth, MetricResult, MetricEvent} {
			if _, ok := metric(p, want); !ok {
				h.problem("NBIRTH lacks %s", want)
			}
		}
		h.synced, h.next = true, 1
		clear(h.declared)
		return
	case "NDEATH":
		bd, _ := metric(p, MetricBdSeq)
		h.deaths = append(h.deaths, bd.Value.(int64))
		if len(h.bdSeqs) == 0 || bd.Value.(int64) != h.bdSeqs[len(h.bdSeqs)-1] {
			h.problem("NDEATH bdSeq %v does not match the last NBIRTH's %v", bd.Value, h.bdSeqs)
		}
		h.synced = false
		return
	}
	if !h.synced {
		h.rebirths++
		go h.rebirth()
		return
	}
	if p.Seq == nil || *p.Seq != h.next {
		h.problem("%s seq %v, want %d", kind, p.Seq, h.next)
	}
	h.next = (h.next + 1) % 256
	switch kind {
	case "DBIRTH":
		for _, m := range p.Metrics {
			h.declared[dev+"/"+m.Name] = m.Datatype
		}
	case "DDATA":
		for _, m := range p.Metrics {
			dt, ok := h.declared[dev+"/"+m.Name]
			if !ok || dt != m.Datatype {
				h.problem("DDATA %s/%s (%d) not declared by a DBIRTH (%v)", dev, m.Name, m.Datatype, ok)
			}
			h.values[dev+"/"+m.Name] = append(h.values[dev+"/"+m.Name], sample{m.Value, m.IsHistorical})
		}
	case "NDATA":
		for _, m := range p.Metrics {
			if m.Name == MetricResult {
				s, _ := m.Value.(string)
				h.results = append(h.results, s)
			}
		}
	}
}

func metric(p *Payload, name string) (Metric, bool) {
	for _, m := range p.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// seen returns how often each reading value arrived and how many of them
// were flagged historical.
func (h *host) seen(key string) (count map[float64]int, historical int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	count = map[float64]int{}
	for _, s := range h.values[key] {
		count[s.v.(float64)]++
		if s.historical {
			historical++
		}
	}
	return count, historical
}

func (h *host) noProblems(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.problems) > 0 {
		t.Fatalf("host found %d problems: %q", len(h.problems), h.problems[:min(len(h.problems), 5)])
	}
}

func (h *host) count(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, k := range h.kinds {
		if k == kind {
			n++
		}
	}
	return n
}
