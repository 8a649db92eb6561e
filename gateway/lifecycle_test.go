package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
	"github.com/lintel-gw/lintel/localbroker"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// cloneConfig copies the parts of cfg a test changes, so that cases do not
// leak into each other.
func cloneConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.Buses = append([]config.Bus(nil), cfg.Buses...)
	c.Devices = append([]config.Device(nil), cfg.Devices...)
	c.LocalBroker.Listeners = append([]config.Listener(nil), cfg.LocalBroker.Listeners...)
	c.LocalBroker.ACL = append([]config.ACLRule(nil), cfg.LocalBroker.ACL...)
	if cfg.Uplink != nil {
		u := *cfg.Uplink
		u.Commands.Signers = append([]string(nil), u.Commands.Signers...)
		c.Uplink = &u
	}
	return &c
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestStartErrorsAreReportedAndReleaseEverything makes each component fail
// in turn after the buffer is open. New must return the component's error
// (not panic) and release what it had opened: the buffer can be opened again
// at once, and the local broker's port is free again.
func TestStartErrorsAreReportedAndReleaseEverything(t *testing.T) {
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		break_ func(c *config.Config)
		want   string
	}{
		{"metrics port taken", func(c *config.Config) { c.Metrics.Address = taken.Addr().String() }, "metrics.address: listen tcp " + taken.Addr().String()},
		{"listener port taken", func(c *config.Config) { c.LocalBroker.Listeners[0].Address = taken.Addr().String() }, "local_broker: "},
		{"bad uplink TLS files", func(c *config.Config) { c.Uplink.TLS.CertFile = filepath.Join(t.TempDir(), "missing.pem") }, "uplink.tls: "},
		{"bad bus", func(c *config.Config) { c.Buses[0].Type = "modbus-carrier-pigeon" }, `bus "plant"`},
		{"bad users file", func(c *config.Config) { c.LocalBroker.UsersFile = filepath.Join(t.TempDir(), "missing") }, "local_broker.users_file: "},
		{"bad signer", func(c *config.Config) { c.Uplink.Commands.Signers = []string{garbage} }, "uplink.commands.signers[0]: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cloneConfig(env.Config)
			listener := freePort(t)
			if tc.name != "listener port taken" {
				cfg.LocalBroker.Listeners[0].Address = listener
			}
			tc.break_(cfg)
			gw, err := newWithoutPanic(cfg)
			if err == nil {
				t.Fatalf("New succeeded; want an error containing %q", tc.want)
			}
			if gw != nil {
				t.Errorf("New returned a gateway with its error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			q, err := buffer.Open(filepath.Join(cfg.Gateway.DataDir, "buffer.db"), buffer.Options{})
			if err != nil {
				t.Fatalf("buffer not released after a failed start: %v", err)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.name != "listener port taken" {
				l, err := net.Listen("tcp", listener)
				if err != nil {
					t.Fatalf("local broker listener not released after a failed start: %v", err)
				}
				l.Close()
			}
		})
	}
}

// newWithoutPanic turns a panic in New into an error naming it, so that one
// failing case does not end the whole test binary.
func newWithoutPanic(cfg *config.Config) (gw *gateway.Gateway, err error) {
	defer func() {
		if r := recover(); r != nil {
			gw, err = nil, fmt.Errorf("PANIC in New: %v", r)
		}
	}()
	return gateway.New(cfg, gateway.Options{Logger: quiet()})
}

// TestReloadRefusedUnlessRunning: a SIGHUP can arrive before Run or after
// the gateway stopped; Reload must refuse then, not panic.
func TestReloadRefusedUnlessRunning(t *testing.T) {
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	gw, err := gateway.New(env.Config, gateway.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reloadWithoutPanic(gw, env.Config); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Reload before Run: %v", err)
	}
	// Shutdown of a gateway that never ran releases its files.
	if err := gw.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	q, err := buffer.Open(filepath.Join(env.Config.Gateway.DataDir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatalf("buffer after Shutdown of a gateway never run: %v", err)
	}
	q.Close()
	if err := reloadWithoutPanic(gw, env.Config); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Reload after Shutdown: %v", err)
	}
	if err := gw.Run(context.Background()); !errors.Is(err, gateway.ErrClosed) {
		t.Fatalf("Run after Shutdown: %v, want ErrClosed", err)
	}
}

func reloadWithoutPanic(gw *gateway.Gateway, cfg *config.Config) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("PANIC in Reload: %v", r)
		}
	}()
	return gw.Reload(cfg)
}

// TestReloadRefusalNamesEveryChangeInOrder: the refusal lists every section
// that needs a restart, always in the same order.
func TestReloadRefusalNamesEveryChangeInOrder(t *testing.T) {
	env, gw := startGateway(t)
	next := cloneConfig(env.Config)
	next.Gateway.ID = "renamed"
	next.Uplink.Broker = "mqtts://elsewhere.example.com:8883"
	next.Buffer.TTL = config.Duration(time.Hour)
	next.Log.Level = "debug"
	const want = "reload refused: gateway, uplink, buffer, log changed, which needs a restart; the running configuration is unchanged"
	for range 20 { // a map-ordered report would differ between calls
		if err := gw.Reload(next); err == nil || err.Error() != want {
			t.Fatalf("Reload: %v\nwant %s", err, want)
		}
	}
}

// TestShutdownBoundedByContext hangs the cloud so that the uplink's drain
// cannot finish: Shutdown with an expired context returns its error at once
// while Run is still stopping; a second Shutdown waits for the end.
func TestShutdownBoundedByContext(t *testing.T) {
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	gw, err := gateway.New(env.Config, gateway.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(context.Background()) }()
	testwait.Until(t, "uplink connected", 10*time.Second, func() bool { return gw.Stats().Uplink.Connected })
	release := make(chan struct{})
	var once sync.Once
	unhang := func() { once.Do(func() { close(release) }) }
	defer unhang()
	env.Cloud.Watch(func(m cloudtest.Message) {
		if m.Client == env.Config.Gateway.ID {
			<-release // no PUBACK until released
		}
	})
	testwait.Until(t, "a message in flight to the hung cloud", 10*time.Second, func() bool { return gw.Stats().Uplink.InFlight > 0 })

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := gw.Shutdown(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown(expired ctx) = %v, want context.Canceled", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the uplink drain could have ended", err)
	default:
	}
	unhang()
	bounded, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gw.Shutdown(bounded); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select { // Run returns right after the stop it waited for
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown returned nil but Run did not return")
	}
}

// TestNoCommandRunsOnceShutdownBegan begins the stop (commands no longer
// admitted) while adapters, local broker and uplink all still run, then
// sends a signed unlock through the cloud and a fan command from a local
// publisher: neither may reach the device.
func TestNoCommandRunsOnceShutdownBegan(t *testing.T) {
	env, gw := startGateway(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	testwait.Until(t, "uplink connected", 10*time.Second, func() bool { return gw.Stats().Uplink.Connected })
	send, post := operator(t, env)
	key, err := command.LoadPrivateKey(env.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	// The path works before the stop, so its silence after means something.
	unlock1, _ := command.NewEnvelope(key, "demo-gw", "front-door", "unlock", json.RawMessage(`{"door":"1"}`), time.Minute)
	if r := send("front-door/unlock", unlock1); !strings.Contains(r, `"ok":true`) {
		t.Fatalf("signed unlock before shutdown: %s", r)
	}
	testwait.Until(t, "door 1 unlocked", 5*time.Second, func() bool { return slices.Contains(env.Doors.Received(), "UNLOCK 1") })

	gateway.BeginStop(gw)
	unlock2, _ := command.NewEnvelope(key, "demo-gw", "front-door", "unlock", json.RawMessage(`{"door":"2"}`), time.Minute)
	post("front-door/unlock", unlock2)
	testwait.Until(t, "the cloud command ignored or run", 10*time.Second, func() bool {
		return gateway.IgnoredCommands(gw) >= 1 || slices.Contains(env.Doors.Received(), "UNLOCK 2")
	})
	if slices.Contains(env.Doors.Received(), "UNLOCK 2") {
		t.Fatal("a command that arrived after shutdown began reached the door controller")
	}

	if !env.Sim.Coil(building.UnitAHU, 10) {
		t.Fatal("fan coil off before the test; the check below would prove nothing")
	}
	signedFanOff, _ := command.NewEnvelope(key, "demo-gw", "ahu-1", "fan_enable", json.RawMessage(`false`), time.Minute)
	fanOff, _ := json.Marshal(signedFanOff)
	if err := gw.Broker().Publish(context.Background(), "lintel/demo-gw/ahu-1/fan_enable/set", fanOff, false, localbroker.High); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the local command ignored", 10*time.Second, func() bool {
		return gateway.IgnoredCommands(gw) >= 2 || !env.Sim.Coil(building.UnitAHU, 10)
	})
	if !env.Sim.Coil(building.UnitAHU, 10) {
		t.Fatal("a local command that arrived after shutdown began moved the fan coil")
	}
}

// TestPublishRefusesInvalidTopicLevels: whatever an adapter builds, the
// gateway never publishes a device or point that is not one valid topic
// level (it would forge topics or make the cloud broker drop the session).
// Refusals are counted and logged once.
func TestPublishRefusesInvalidTopicLevels(t *testing.T) {
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	env.Cloud.Stop() // keep what is buffered in the buffer
	var logs testwait.Buffer
	gw, err := gateway.New(env.Config, gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	var mu sync.Mutex
	var local []string
	unsub, err := gw.Broker().Subscribe("#", func(topic string, _ []byte) {
		mu.Lock()
		local = append(local, topic)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	bad := []adapters.Message{
		{Device: "front-door", Point: "door_1/+/#_open"},
		{Device: "a/b", Point: "p"},
		{Device: "", Point: "p"},
		{Device: "d", Point: ""},
		{Device: "d", Point: "$SYS"},
		{Device: "d", Point: "nul\x00"},
		{Device: "d", Point: "\xff"},
	}
	for _, m := range bad {
		m.Payload = []byte(`{"v":1}`)
		gateway.Publish(gw, m) // refused: the adapter must keep running, so no error
	}
	good := adapters.Message{Device: "ahu-1", Point: adapters.StatusPoint, Payload: []byte(`{"online":true}`)}
	if err := gateway.Publish(gw, good); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the valid message delivered locally", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(local) > 0
	})
	mu.Lock()
	if len(local) != 1 || local[0] != "lintel/demo-gw/ahu-1/$status" {
		t.Errorf("delivered locally: %q; want only the valid $status", local)
	}
	mu.Unlock()
	if n := gw.Stats().InvalidTopics; n != uint64(len(bad)) {
		t.Errorf("InvalidTopics = %d, want %d", n, len(bad))
	}
	if n := strings.Count(logs.String(), "invalid topic level"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
}
