package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
	"github.com/lintel-gw/lintel/localbroker"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runGateway builds a gateway from cfg, runs it until the test ends (then
// shuts it down within 20 s and checks Run's error) and returns it running.
func runGateway(t *testing.T, cfg *config.Config, opts gateway.Options) *gateway.Gateway {
	t.Helper()
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(context.Background()) }()
	t.Cleanup(func() {
		bound, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := gw.Shutdown(bound); err != nil {
			t.Errorf("gateway did not stop in time: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	testwait.Until(t, "gateway running", 10*time.Second, gw.Running)
	return gw
}

func startGateway(t *testing.T) (*demo.Env, *gateway.Gateway) {
	t.Helper()
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	// Load: poll every 100ms and publish every reading, not just changes.
	for i := range env.Config.Devices {
		d := &env.Config.Devices[i]
		d.Poll = config.Duration(100 * time.Millisecond)
		for j := range d.Points {
			d.Points[j].Report = config.Report{MaxInterval: config.Duration(time.Millisecond)}
		}
	}
	gw := runGateway(t, env.Config, gateway.Options{Version: "test", Logger: quiet()})
	return env, gw
}

func seqCounts(c *cloudtest.Broker) (map[uint64]int, uint64) {
	counts := map[uint64]int{}
	var top uint64
	for _, m := range c.Received() {
		if s := m.Seq(); s > 0 {
			counts[s]++
			top = max(top, s)
		}
	}
	return counts, top
}

// TestEndToEndThroughCloudOutage runs simulator → local broker → buffer →
// mTLS cloud, stops the cloud while readings keep coming, restarts it, and
// checks that every seq arrived: no gaps, duplicates counted.
func TestEndToEndThroughCloudOutage(t *testing.T) {
	env, gw := startGateway(t)
	testwait.Until(t, "first readings in the cloud", 10*time.Second, func() bool {
		_, top := seqCounts(env.Cloud)
		return top >= 10
	})

	env.Cloud.Stop()
	testwait.Until(t, "uplink to notice the outage", 10*time.Second, func() bool { return !gw.Stats().Uplink.Connected })
	before := gw.Stats().Buffer.Records
	testwait.Until(t, "readings to pile up in the buffer", 15*time.Second, func() bool {
		return gw.Stats().Buffer.Records >= before+200
	})
	if err := env.Cloud.Restart(); err != nil {
		t.Fatal(err)
	}
	// Everything committed up to now, including the outage backlog, must
	// arrive. (Under load the buffer is never empty: acks are deleted with
	// the next group commit.)
	target := gw.Stats().Buffer.NextSeq - 1
	testwait.Until(t, "backlog delivered", 60*time.Second, func() bool {
		counts, _ := seqCounts(env.Cloud)
		for seq := uint64(1); seq <= target; seq++ {
			if counts[seq] == 0 {
				return false
			}
		}
		return true
	})

	counts, _ := seqCounts(env.Cloud)
	dups := 0
	for seq := uint64(1); seq <= target; seq++ {
		dups += counts[seq] - 1
	}
	t.Logf("%d readings delivered through an outage without a gap, %d duplicates", target, dups)

	// Wire contract: a reading carries v, ts, q and seq under lintel/<gw>/<device>/<point>.
	for _, m := range env.Cloud.Received() {
		if m.Topic == "lintel/demo-gw/ahu-1/supply_temp" {
			for _, field := range []string{`"v":`, `"unit":"°C"`, `"ts":"`, `"q":"good"`, `"seq":`} {
				if !strings.Contains(string(m.Payload), field) {
					t.Fatalf("reading %s lacks %s", m.Payload, field)
				}
			}
			return
		}
	}
	t.Fatal("no supply_temp reading reached the cloud")
}

// TestLocalViewerReadsButCannotWrite uses the demo's generated read-only
// user against the running gateway's local broker.
func TestLocalViewerReadsButCannotWrite(t *testing.T) {
	env, gw := startGateway(t)
	addr := gw.LocalAddr("local")
	connect := func(user, pass string) (paho.Client, error) {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetUsername(user).SetPassword(pass).
			SetProtocolVersion(4).SetAutoReconnect(false).SetClientID(user + "-test"))
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		return c, tok.Error()
	}
	if c, err := connect("", ""); err == nil {
		c.Disconnect(0)
		t.Fatal("anonymous client accepted")
	}
	viewer, err := connect(env.User, env.Password)
	if err != nil {
		t.Fatalf("viewer: %v", err)
	}
	defer viewer.Disconnect(100)
	got := make(chan string, 100)
	viewer.Subscribe("lintel/#", 0, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Topic():
		default:
		}
	}).WaitTimeout(5 * time.Second)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("viewer received no readings")
	}
	// A read-only user forging a reading on a forwarded topic: acknowledged
	// (MQTT 3.1.1 has no negative PUBACK) but dropped — not delivered
	// locally, not buffered, not in the cloud — and the client stays
	// connected, so it does not re-send forever.
	const forged = `{"v":99.9,"forged":"by-viewer"}`
	var mu sync.Mutex
	var local []string
	unsub, _ := gw.Broker().Subscribe("lintel/#", func(_ string, p []byte) {
		mu.Lock()
		local = append(local, string(p))
		mu.Unlock()
	})
	defer unsub()
	if tok := viewer.Publish("lintel/demo-gw/ahu-1/supply_temp", 1, false, forged); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("denied publish not acknowledged: %v", tok.Error())
	}
	// Readings keep flowing; by the time a later one is in the cloud, the
	// forged one would have been too.
	later := len(env.Cloud.Received()) + 5
	testwait.Until(t, "more readings in the cloud", 10*time.Second, func() bool { return len(env.Cloud.Received()) >= later })
	for _, m := range env.Cloud.Received() {
		if strings.Contains(string(m.Payload), "by-viewer") {
			t.Fatalf("a read-only user's publish reached the cloud: %s %s", m.Topic, m.Payload)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range local {
		if strings.Contains(p, "by-viewer") {
			t.Fatal("a read-only user's publish was delivered locally")
		}
	}
	if !viewer.IsConnectionOpen() {
		t.Fatal("the viewer was disconnected for a denied publish")
	}
}

func TestBufferStatsWhileRunningAndAfterStop(t *testing.T) {
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	env.Cloud.Stop() // keep everything in the buffer
	gw, err := gateway.New(env.Config, gateway.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	testwait.Until(t, "readings buffered", 10*time.Second, func() bool { return gw.Stats().Buffer.Records >= 5 })

	s, at, live, err := gateway.BufferStats(env.Config)
	if err != nil || !live || time.Since(at) > 10*time.Second {
		t.Fatalf("while running: live=%v at=%v err=%v", live, at, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after, _, live, err := gateway.BufferStats(env.Config)
	if err != nil || live {
		t.Fatalf("after stop: live=%v err=%v", live, err)
	}
	if after.Records < s.Records || after.High == 0 {
		t.Fatalf("after stop %+v; want at least the %d records seen while running, device status among them as high priority", after, s.Records)
	}
}

// TestPersonalDataNeverLeavesTheAdapter runs badge events through the whole
// path (serial line → local broker → buffer → cloud) and searches the cloud's
// capture, a local subscriber's capture and the bytes of every file in the
// data dir, bbolt file included, for the holders' names and card numbers.
// Then it restarts the gateway and checks the pseudonyms are stable.
func TestPersonalDataNeverLeavesTheAdapter(t *testing.T) {
	dir := t.TempDir()
	env, err := demo.Prepare(demo.Options{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	secrets := []string{"Alice", "Example", "0012345", "Bob Sample", "0023456"}

	var logs testwait.Buffer // every log line, at debug level
	run := func(badges func()) string {
		gw, err := gateway.New(env.Config, gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var local []string
		unsub, _ := gw.Broker().Subscribe("#", func(topic string, payload []byte) {
			mu.Lock()
			local = append(local, topic+" "+string(payload))
			mu.Unlock()
		})
		defer unsub()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- gw.Run(ctx) }()
		testwait.Until(t, "door controller online", 10*time.Second, func() bool {
			for _, m := range env.Cloud.Received() {
				if m.Topic == "lintel/demo-gw/front-door/$status" {
					return true
				}
			}
			return false
		})
		before := len(accessEvents(env.Cloud))
		badges()
		testwait.Until(t, "access events in the cloud", 10*time.Second, func() bool { return len(accessEvents(env.Cloud)) >= before+2 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range local {
			for _, s := range secrets {
				if strings.Contains(l, s) {
					t.Fatalf("local broker carried %q: %s", s, l)
				}
			}
		}
		events := accessEvents(env.Cloud)
		return events[len(events)-1]
	}

	first := run(func() {
		env.Doors.Badge(1, "GRANTED", "0023456", "Bob Sample")
		env.Doors.Badge(2, "GRANTED", "0012345", "Alice Example")
	})
	for _, m := range env.Cloud.Received() {
		for _, s := range secrets {
			if strings.Contains(string(m.Payload), s) || strings.Contains(m.Topic, s) {
				t.Fatalf("cloud received %q: %s %s", s, m.Topic, m.Payload)
			}
		}
	}
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 || !fi.Mode().IsRegular() {
			return nil
		}
		data, _ := os.ReadFile(path)
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q", path, s)
			}
		}
		return nil
	})

	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("the gateway's logs hold %q", s)
		}
	}
	if !strings.Contains(logs.String(), "frame matches no event") && !strings.Contains(logs.String(), "port open") {
		t.Fatal("debug logs were not captured; the check above proves nothing")
	}

	second := run(func() {
		env.Doors.Badge(1, "DENIED", "0023456", "Bob Sample")
		env.Doors.Badge(2, "DENIED", "0012345", "Alice Example")
	})
	if cardOf(first) == "" || cardOf(first) != cardOf(second) {
		t.Fatalf("pseudonym changed across a restart: %q then %q", cardOf(first), cardOf(second))
	}
}

func accessEvents(c *cloudtest.Broker) []string {
	var out []string
	for _, m := range c.Received() {
		if m.Topic == "lintel/demo-gw/front-door/access" {
			out = append(out, string(m.Payload))
		}
	}
	return out
}

func cardOf(payload string) string {
	var p struct{ Fields map[string]string }
	json.Unmarshal([]byte(payload), &p)
	return p.Fields["card"]
}

// TestCommandsThroughTheCloud sends commands as an operator would, to the
// cloud broker: a signed unlock reaches the door controller, a non-critical
// fan command moves the Modbus coil, a forged unlock is refused, and every
// result comes back on its result topic.
func TestCommandsThroughTheCloud(t *testing.T) {
	env, gw := startGateway(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	testwait.Until(t, "uplink connected", 10*time.Second, func() bool { return gw.Stats().Uplink.Connected })
	send, _ := operator(t, env)
	key, err := command.LoadPrivateKey(env.SigningKey)
	if err != nil {
		t.Fatal(err)
	}

	forger := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	forged, _ := command.NewEnvelope(forger, "demo-gw", "front-door", "unlock", json.RawMessage(`{"door":"2"}`), time.Minute)
	if r := send("front-door/unlock", forged); !strings.Contains(r, `"ok":false`) || !strings.Contains(r, "signature invalid") {
		t.Fatalf("forged unlock: %s", r)
	}
	for _, l := range env.Doors.Received() {
		if strings.HasPrefix(l, "UNLOCK") {
			t.Fatal("the door controller saw a forged UNLOCK")
		}
	}

	unlock, _ := command.NewEnvelope(key, "demo-gw", "front-door", "unlock", json.RawMessage(`{"door":"2"}`), time.Minute)
	if r := send("front-door/unlock", unlock); !strings.Contains(r, "front-door/unlock/set/result") || !strings.Contains(r, `"ok":true`) {
		t.Fatalf("signed unlock: %s", r)
	}
	if !slices.Contains(env.Doors.Received(), "UNLOCK 2") {
		t.Fatalf("door controller received %q", env.Doors.Received())
	}

	// Not critical, but every write is signed unless configured otherwise.
	if r := send("ahu-1/fan_enable", command.Envelope{ID: "fan-off", Value: json.RawMessage(`false`)}); !strings.Contains(r, "signature missing") {
		t.Fatalf("unsigned fan command: %s", r)
	}
	if !env.Sim.Coil(building.UnitAHU, 10) {
		t.Fatal("an unsigned command moved the fan coil")
	}
	fan, _ := command.NewEnvelope(key, "demo-gw", "ahu-1", "fan_enable", json.RawMessage(`false`), time.Minute)
	if r := send("ahu-1/fan_enable", fan); !strings.Contains(r, `"ok":true`) {
		t.Fatalf("fan command: %s", r)
	}
	if env.Sim.Coil(building.UnitAHU, 10) {
		t.Fatal("fan coil still on")
	}
}

// operator connects to the cloud broker as an operator would. post
// publishes a command envelope to device/point; send also waits for its
// result.
func operator(t *testing.T, env *demo.Env) (send func(point string, e command.Envelope) string, post func(point string, e command.Envelope)) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(env.Operator.Cert, env.Operator.Key)
	if err != nil {
		t.Fatal(err)
	}
	op := paho.NewClient(paho.NewClientOptions().AddBroker(env.Cloud.URL()).SetClientID("operator").SetProtocolVersion(4).
		SetTLSConfig(&tls.Config{RootCAs: env.Cloud.CA.Pool(), Certificates: []tls.Certificate{pair}}))
	if tok := op.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { op.Disconnect(100) })
	results := make(chan string, 10)
	if tok := op.Subscribe("lintel/"+env.Config.Gateway.ID+"/+/+/set/result", 1, func(_ paho.Client, m paho.Message) {
		results <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("operator subscribe: %v", tok.Error())
	}
	post = func(point string, e command.Envelope) {
		b, _ := json.Marshal(e)
		if tok := op.Publish("lintel/"+env.Config.Gateway.ID+"/"+point+"/set", 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("operator publish: %v", tok.Error())
		}
	}
	return func(point string, e command.Envelope) string {
		post(point, e)
		select {
		case r := <-results:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for %s", point)
			return ""
		}
	}, post
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of one exposition line, e.g.
// lintel_device_online{bus="plant",device="energy-meter"}.
func metric(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestMetricsFollowADeviceDying scrapes /metrics while a device dies: it
// shows offline, its bus's errors rise, and /healthz turns degraded.
func TestMetricsFollowADeviceDying(t *testing.T) {
	env, gw := startGateway(t)
	base := "http://" + gw.MetricsAddr()
	online := `lintel_device_online{bus="plant",device="energy-meter"}`
	backoff := `lintel_device_backoff_seconds{bus="plant",device="energy-meter"}`
	testwait.Until(t, "meter online and uplink connected in /metrics", 10*time.Second, func() bool {
		body := scrape(t, base+"/metrics")
		return metric(body, online) == 1 && metric(body, "lintel_uplink_connected") == 1 && metric(body, "lintel_buffer_commits_total") > 0
	})
	if b := metric(scrape(t, base+"/metrics"), backoff); b != 0 {
		t.Fatalf("healthy meter: %s = %v, want 0", backoff, b)
	}
	body := scrape(t, base+"/metrics")
	requests := metric(body, `lintel_bus_requests_total{bus="plant"}`)
	errorsBefore := metric(body, `lintel_bus_exceptions_total{bus="plant"}`) + metric(body, `lintel_bus_timeouts_total{bus="plant"}`)
	if commits := metric(body, "lintel_buffer_commits_total"); requests <= 0 || commits <= 0 {
		t.Fatalf("metrics do not move: %v requests, %v commits", requests, commits)
	}

	env.Sim.SetSilent(building.UnitMeter, true)
	testwait.Until(t, "meter offline in /metrics", 10*time.Second, func() bool { return metric(scrape(t, base+"/metrics"), online) == 0 })
	testwait.Until(t, "meter backed off in /metrics", 10*time.Second, func() bool { return metric(scrape(t, base+"/metrics"), backoff) > 0 })
	body = scrape(t, base+"/metrics")
	if after := metric(body, `lintel_bus_exceptions_total{bus="plant"}`) + metric(body, `lintel_bus_timeouts_total{bus="plant"}`); after <= errorsBefore {
		t.Fatalf("bus errors did not rise (%v → %v)", errorsBefore, after)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h gateway.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || h.Status != "degraded" || !strings.Contains(strings.Join(h.Problems, ";"), "device energy-meter on bus plant offline") {
		t.Fatalf("/healthz %d %+v", resp.StatusCode, h)
	}
}

// TestReload adds a point and a user while running: the point's readings
// appear, the new user can log in, and the buffer and the uplink session
// carry on. A configuration that changes the uplink is refused.
func TestReload(t *testing.T) {
	env, gw := startGateway(t)
	testwait.Until(t, "uplink connected", 10*time.Second, func() bool { return gw.Stats().Uplink.Connected })
	before := gw.Stats()

	next := *env.Config
	next.Devices = append([]config.Device(nil), env.Config.Devices...)
	ahu := &next.Devices[0]
	ahu.Points = append(append([]config.Point(nil), ahu.Points...),
		config.Point{Name: "reloaded_point", Table: "holding", Address: 110, Type: "uint16", Report: config.Report{MaxInterval: config.Duration(time.Millisecond)}})
	users, err := localbroker.LoadUsers(next.LocalBroker.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	users.Set("bms", []byte("bms-password"))
	if err := users.WriteFile(next.LocalBroker.UsersFile); err != nil {
		t.Fatal(err)
	}
	next.LocalBroker.ACL = append(next.LocalBroker.ACL, config.ACLRule{User: "bms", Read: []string{"lintel/#"}})
	if err := gw.Reload(&next); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the new point in the cloud", 10*time.Second, func() bool {
		for _, m := range env.Cloud.Received() {
			if m.Topic == "lintel/demo-gw/ahu-1/reloaded_point" {
				return true
			}
		}
		return false
	})
	after := gw.Stats()
	// Commits counts since the buffer was opened: had the reload reopened
	// it, the count would have started again.
	if after.Uplink.Reconnects != before.Uplink.Reconnects || !after.Uplink.Connected || after.Buffer.Commits <= before.Buffer.Commits {
		t.Fatalf("reload disturbed the uplink or the buffer: before %+v after %+v", before, after)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + gw.LocalAddr("local")).SetUsername("bms").SetPassword("bms-password").
		SetProtocolVersion(4).SetAutoReconnect(false).SetClientID("bms-after-reload"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("user added by the reload cannot log in: %v", tok.Error())
	}
	c.Disconnect(0)

	broken := next
	u := *next.Uplink
	u.Broker = "mqtts://elsewhere.example.com:8883"
	broken.Uplink = &u
	if err := gw.Reload(&broken); err == nil || !strings.Contains(err.Error(), "uplink changed") {
		t.Fatalf("reload changing the uplink: %v", err)
	}
}
