package gateway_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
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
