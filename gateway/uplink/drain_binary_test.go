package uplink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// BenchmarkDrainVsBridge is issue 13's side-by-side drain: the shipped
// binary against a Mosquitto bridge, in one run, on the same machine.
//
//   - lintel: `go build ./cmd/lintel`, a data_dir whose buffer.db holds the
//     backlog (written with buffer.Queue), `lintel run` with an uplink to a
//     cloud Mosquitto (require_certificate, certificates minted here),
//     the shipped default uplink.max_inflight (1024: a slot holds no
//     payload, so the window costs little memory).
//   - bridge: a local Mosquitto holding the same backlog as QoS 1 messages
//     queued for its bridge (published while the bridge could not reach the
//     cloud), bridged over mutual TLS with QoS 1 to the same kind of cloud
//     Mosquitto, max_inflight_messages 64.
//
// Both uplinks connect through a gate (a loopback TCP proxy) that is opened
// once the backlog is in place and the process is trying to connect; the
// drain is timed from opening the gate to the last message at an observer
// subscribed at the cloud, and CPU is the process's utime+stime
// (/proc/<pid>/stat) over the same interval. lintel's figure from process
// start (open, check, connect) is reported as well. Run it alone:
//
//	flock /tmp/lintel-bench.lock go test ./gateway/uplink -run '^$' -bench DrainVsBridge -benchtime 3x
//
// Each round runs both sides; the reported figures are medians over rounds.
// LINTEL_DRAIN_N changes the backlog (default 100000); LINTEL_DRAIN_PERF=FILE
// records a perf profile of the lintel process during its drain;
// LINTEL_DRAIN_INFLIGHT sets lintel's uplink.max_inflight (e.g. 64, the
// bridge's window, for a same-window comparison).
func BenchmarkDrainVsBridge(b *testing.B) {
	mosq := mosquittoPath(b)
	n := 100_000
	if v := os.Getenv("LINTEL_DRAIN_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("LINTEL_DRAIN_N=%q: want a positive number", v)
		}
	}
	bin := filepath.Join(b.TempDir(), "lintel")
	build := exec.Command("go", "build", "-o", bin, "github.com/lintel-gw/lintel/cmd/lintel")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/lintel: %v\n%s", err, out)
	}
	// Rounds alternate the two sides; the medians make the figures robust
	// against other load on the machine (-benchtime 3x for three rounds).
	var linRate, brRate, linCPU, brCPU, ratio []float64
	for round := range b.N {
		lin := drainLintel(b, bin, n)
		br := drainBridge(b, mosq, n)
		b.Logf("round %d: lintel %d msgs in %v = %.0f msg/s, %.1f µs CPU/msg (from process start %v); bridge %v = %.0f msg/s, %.1f µs CPU/msg; drain %.2f×, CPU/msg %.2f×",
			round+1, n, lin.wall.Round(time.Millisecond), lin.rate(n), lin.cpuPerMsg(n), lin.fromStart.Round(time.Millisecond),
			br.wall.Round(time.Millisecond), br.rate(n), br.cpuPerMsg(n), lin.rate(n)/br.rate(n), lin.cpuPerMsg(n)/br.cpuPerMsg(n))
		linRate, brRate = append(linRate, lin.rate(n)), append(brRate, br.rate(n))
		linCPU, brCPU = append(linCPU, lin.cpuPerMsg(n)), append(brCPU, br.cpuPerMsg(n))
		ratio = append(ratio, lin.rate(n)/br.rate(n))
	}
	b.Logf("median of %d: lintel %.0f msg/s, %.1f µs CPU/msg; bridge %.0f msg/s, %.1f µs CPU/msg; drain ratio %.2f× (target ≥ 1.2), CPU/msg %.2f× (target ≤ 2)",
		b.N, median(linRate), median(linCPU), median(brRate), median(brCPU), median(ratio), median(linCPU)/median(brCPU))
	b.ReportMetric(median(linRate), "lintel-msg/s")
	b.ReportMetric(median(brRate), "bridge-msg/s")
	b.ReportMetric(median(ratio), "drain-ratio")
	b.ReportMetric(median(linCPU), "lintel-µsCPU/msg")
	b.ReportMetric(median(brCPU), "bridge-µsCPU/msg")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// drainResult is one side's measurement.
type drainResult struct {
	wall      time.Duration // gate opened → last message at the observer
	cpu       time.Duration // process utime+stime over wall
	fromStart time.Duration // process start → last message (lintel only)
}

func (r drainResult) rate(n int) float64 { return float64(n) / r.wall.Seconds() }
func (r drainResult) cpuPerMsg(n int) float64 {
	return float64(r.cpu.Microseconds()) / float64(n)
}

func mosquittoPath(tb testing.TB) string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	tb.Skip("mosquitto not installed (apt-get install mosquitto)")
	return ""
}

// drainPayload is the same ~150-byte reading for both sides.
var drainPayload = []byte(`{"v":21.53,"unit":"°C","ts":"2026-11-28T04:41:10.123Z","q":"good","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)

func drainLintel(b *testing.B, bin string, n int) drainResult {
	window := "" // the shipped default (uplink.max_inflight 1024)
	if v, err := strconv.Atoi(os.Getenv("LINTEL_DRAIN_INFLIGHT")); err == nil && v > 0 {
		window = fmt.Sprintf("  max_inflight: %d\n", v)
	}
	dir := b.TempDir()
	ca, err := pki.NewCA("bench-ca", 72*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cloud := startMosquitto(b, ca)
	var seen atomic.Int64
	observe(b, ca, cloud.addr, "lintel/gw1/bench/#", func(string, []byte) { seen.Add(1) })
	gate := newGate(b, cloud.addr)

	client, err := ca.Client("gw1", 48*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	files, err := pki.WriteFiles(dir, "gw1", ca, client)
	if err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		b.Fatal(err)
	}
	q, err := buffer.Open(filepath.Join(data, "buffer.db"), buffer.Options{MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]buffer.Record, 1000)
	for i := range recs {
		recs[i] = buffer.Record{Topic: "lintel/gw1/bench/p", Payload: drainPayload}
	}
	for left := n; left > 0; left -= len(recs) {
		if err := q.Append(context.Background(), recs[:min(left, len(recs))]...); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	conf := filepath.Join(dir, "lintel.yaml")
	err = os.WriteFile(conf, fmt.Appendf(nil, `gateway: {id: gw1, data_dir: %s}
log: {level: warn}
metrics: {address: "off"}
buffer: {max_bytes: 1GiB}
local_broker:
  listeners:
    - {name: local, address: 127.0.0.1:0}
  users_file: %s
uplink:
  broker: mqtts://%s
  tls: {ca_file: %s, cert_file: %s, key_file: %s}
%s`, data, users, gate.addr(), files.CA, files.Cert, files.Key, window), 0o600)
	if err != nil {
		b.Fatal(err)
	}

	args := []string{"run", "--config", conf}
	if os.Getuid() == 0 {
		args = append(args, "--override-audit", "run-as-root") // CI and this machine run as root
	}
	cmd := exec.Command(bin, args...)
	var logs testwait.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if b.Failed() {
			b.Logf("lintel log:\n%s", logs.String())
		}
	})
	if !testwait.Within(30*time.Second, func() bool { return gate.waiting() > 0 || isClosed(exited) }) || isClosed(exited) {
		b.Fatalf("lintel never tried to connect\n%s", logs.String())
	}
	if out := os.Getenv("LINTEL_DRAIN_PERF"); out != "" {
		// perf record -g on the binary for the drain (Go keeps frame pointers).
		perf := exec.Command("perf", "record", "-g", "-F", "499", "-o", out, "-p", strconv.Itoa(cmd.Process.Pid))
		if err := perf.Start(); err != nil {
			b.Fatalf("perf: %v", err)
		}
		defer func() { perf.Process.Signal(os.Interrupt); perf.Wait() }()
	}
	return measure(b, cmd.Process.Pid, gate, &seen, n, start)
}

func drainBridge(b *testing.B, mosq string, n int) drainResult {
	dir := b.TempDir()
	ca, err := pki.NewCA("bench-ca", 72*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cloud := startMosquitto(b, ca)
	var seen atomic.Int64
	observe(b, ca, cloud.addr, "lintel/gw1/bench/#", func(string, []byte) { seen.Add(1) })
	gate := newGate(b, cloud.addr)

	client, err := ca.Client("bridge-gw1", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	files, err := pki.WriteFiles(dir, "bridge", ca, client)
	if err != nil {
		b.Fatal(err)
	}
	local := freePort(b)
	conf := filepath.Join(dir, "local.conf")
	text := fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 64
log_dest stderr
log_type error
connection cloud
address %s
topic lintel/# out 1
remote_clientid bridge-gw1
bridge_protocol_version mqttv311
try_private false
notifications false
cleansession false
restart_timeout 1
bridge_cafile %s
bridge_certfile %s
bridge_keyfile %s
`, local, gate.addr(), files.CA, files.Cert, files.Key)
	if os.Getuid() == 0 {
		text = "user root\n" + text
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(mosq, "-c", conf)
	var logs testwait.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if b.Failed() {
			b.Logf("local mosquitto log:\n%s", logs.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", local)
	if !waitListening(addr, 5*time.Second) {
		b.Fatalf("local mosquitto did not start\n%s", logs.String())
	}
	if !testwait.Within(30*time.Second, func() bool { return gate.waiting() > 0 }) {
		b.Fatalf("the bridge never tried to connect\n%s", logs.String())
	}

	// The backlog: n QoS 1 messages, each acknowledged by the local broker,
	// queued for the bridge that cannot reach the cloud yet.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("backlog").
		SetProtocolVersion(4).SetOrderMatters(false).SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("backlog publisher: %v", tok.Error())
	}
	window := make(chan paho.Token, 256)
	var pubErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for tok := range window {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				pubErr = fmt.Errorf("backlog publish: %v", tok.Error())
			}
		}
	})
	for range n {
		window <- pub.Publish("lintel/gw1/bench/p", 1, false, drainPayload)
	}
	close(window)
	wg.Wait()
	pub.Disconnect(100)
	if pubErr != nil {
		b.Fatal(pubErr)
	}
	return measure(b, cmd.Process.Pid, gate, &seen, n, time.Time{})
}

// measure opens the gate and waits for n messages at the observer.
func measure(b *testing.B, pid int, gate *gate, seen *atomic.Int64, n int, start time.Time) drainResult {
	seen.Store(0)
	cpu0 := procCPU(b, pid)
	t0 := time.Now()
	gate.open()
	if !testwait.Within(5*time.Minute, func() bool { return seen.Load() >= int64(n) }) {
		b.Fatalf("drain incomplete: %d of %d at the observer", seen.Load(), n)
	}
	end := time.Now()
	r := drainResult{wall: end.Sub(t0), cpu: procCPU(b, pid) - cpu0}
	if !start.IsZero() {
		r.fromStart = end.Sub(start)
	}
	return r
}

// procCPU is utime+stime of a process from /proc/<pid>/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	if runtime.GOOS != "linux" {
		tb.Skip("needs /proc")
	}
	return time.Duration(utime+stime) * time.Second / clkTck
}

func freePort(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// gate is a loopback TCP proxy to the cloud that holds every connection
// until open: the uplink under test is started and trying to connect, and
// the drain starts for both sides the same way.
type gate struct {
	l       net.Listener
	to      string
	opened  chan struct{}
	pending atomic.Int64
}

func newGate(tb testing.TB, to string) *gate {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := &gate{l: l, to: to, opened: make(chan struct{})}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		g.open()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, in)
			mu.Unlock()
			g.pending.Add(1)
			wg.Go(func() {
				<-g.opened
				out, err := net.Dial("tcp", to)
				if err != nil {
					in.Close()
					return
				}
				mu.Lock()
				conns = append(conns, out)
				mu.Unlock()
				wg.Go(func() { io.Copy(out, in); out.Close() })
				io.Copy(in, out)
				in.Close()
			})
		}
	})
	return g
}

func (g *gate) addr() string   { return g.l.Addr().String() }
func (g *gate) waiting() int64 { return g.pending.Load() }

func (g *gate) open() {
	select {
	case <-g.opened:
	default:
		close(g.opened)
	}
}

// BenchmarkUplinkDrainMosquitto is the lintel side of DrainVsBridge in
// process, for profiling the uplink's own path (buffer, seq, paho, TLS):
//
//	flock /tmp/lintel-bench.lock go test ./gateway/uplink -run '^$' -bench UplinkDrainMosquitto -benchtime 1x -cpuprofile /tmp/drain.prof
func BenchmarkUplinkDrainMosquitto(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("LINTEL_DRAIN_N")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		b.StopTimer()
		e := newEnvWith(b, buffer.Options{MaxBytes: 1 << 30})
		m := startMosquitto(b, e.ca)
		var seen atomic.Int64
		observe(b, e.ca, m.addr, "lintel/gw1/bench/#", func(string, []byte) { seen.Add(1) })
		recs := make([]buffer.Record, 1000)
		for i := range recs {
			recs[i] = buffer.Record{Topic: "lintel/gw1/bench/p", Payload: drainPayload}
		}
		for left := n; left > 0; left -= len(recs) {
			if err := e.queue.Append(context.Background(), recs[:min(left, len(recs))]...); err != nil {
				b.Fatal(err)
			}
		}
		u, err := New(Config{Broker: "mqtts://" + m.addr, TLS: e.clientTLS(b, e.ca), GatewayID: "gw1"}, e.queue, quiet())
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var run sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		run.Go(func() { u.Run(ctx) })
		if !testwait.Within(5*time.Minute, func() bool { return seen.Load() >= int64(n) }) {
			b.Fatalf("drain incomplete: %d of %d", seen.Load(), n)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msg/s")
		b.StopTimer()
		cancel()
		run.Wait()
	}
}
