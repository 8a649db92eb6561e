package uplink

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// mosquitto is a real Mosquitto broker on loopback with a TLS listener that
// requires client certificates from the test CA.
type mosquitto struct {
	addr string
	cmd  *exec.Cmd
}

func startMosquitto(t testing.TB, ca *pki.CA) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("mosquitto is not installed; .ci/run should have installed it")
			}
			t.Skip("mosquitto not installed (apt-get install mosquitto)")
		}
	}
	dir := t.TempDir()
	server, err := ca.Server("mosquitto", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.WriteFiles(dir, "server", ca, server)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		_, port, _ := net.SplitHostPort(addr)
		conf := fmt.Sprintf(`listener %s 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
persistence false
max_queued_messages 0
log_dest stderr
log_type error
`, port, files.CA, files.Cert, files.Key)
		if os.Getuid() == 0 {
			conf += "user root\n" // otherwise it drops to a user that cannot read the keys
		}
		confPath := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", confPath)
		var log testwait.Buffer
		cmd.Stderr = &log
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("mosquitto log:\n%s", log.String())
			}
		})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m := &mosquitto{addr: addr, cmd: cmd}
		if waitListening(addr, 5*time.Second) {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return m
		}
		cmd.Process.Kill()
		cmd.Wait()
		if attempt == 3 {
			t.Fatalf("mosquitto did not start on %s", addr)
		}
	}
}

func waitListening(addr string, timeout time.Duration) bool {
	return testwait.Within(timeout, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// observe subscribes to filter on the broker with its own client certificate
// and calls fn for every message.
func observe(t testing.TB, ca *pki.CA, addr, filter string, fn func(topic string, payload []byte)) {
	t.Helper()
	pair, _ := ca.Client("observer", time.Hour)
	cert, _ := pair.TLS()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("mqtts://" + addr).SetClientID("observer").
		SetTLSConfig(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}).SetProtocolVersion(4).
		SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(filter, 0, func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
}

// TestMosquittoInterop: delivery to a real Mosquitto with
// require_certificate true, with the connection cut five times mid-flight;
// every seq must arrive.
func TestMosquittoInterop(t *testing.T) {
	e := newEnv(t)
	m := startMosquitto(t, e.ca)
	var mu sync.Mutex
	got := map[uint64]int{}
	observe(t, e.ca, m.addr, "lintel/#", func(topic string, payload []byte) {
		if seq := payloadSeq(payload); seq > 0 {
			mu.Lock()
			got[seq]++
			mu.Unlock()
		}
	})
	proxy := cloudtest.NewCutter(t, m.addr)
	const total = 20_000
	e.appendN(t, 0, total)
	u, _ := e.start(t, Config{Broker: "mqtts://" + proxy.Addr()})
	for range 5 {
		time.Sleep(150 * time.Millisecond)
		proxy.Cut()
	}
	testwait.Until(t, "every seq at the observer", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	})
	dups := 0
	for _, n := range got {
		dups += n - 1
	}
	t.Logf("%d records through 5 cuts to Mosquitto, %d duplicates, %d reconnects", total, dups, u.Stats().Reconnects)

	// A gateway whose certificate is not from the CA Mosquitto trusts.
	other, _ := pki.NewCA("other", time.Hour)
	e2 := newEnv(t)
	e2.appendN(t, 0, 3)
	u2, stop := e2.start(t, Config{Broker: "mqtts://" + m.addr, TLS: e2.clientTLS(t, other)})
	testwait.Until(t, "a refused connection attempt", 10*time.Second, func() bool { return u2.Stats().LastError != "" })
	stop()
	if s := u2.Stats(); s.Acked != 0 || s.Connected {
		t.Fatalf("Mosquitto accepted a certificate from an unknown CA: %+v", s)
	}
}

// BenchmarkDrainMosquitto is BenchmarkDrain against a real Mosquitto.
func BenchmarkDrainMosquitto(b *testing.B) {
	for range b.N {
		e := newEnvWith(b, buffer.Options{MaxBytes: 1 << 30}) // default 200ms commit interval
		m := startMosquitto(b, e.ca)
		drain(b, e, "mqtts://"+m.addr, func(onLive func([]byte)) {
			observe(b, e.ca, m.addr, "lintel/gw1/live/p", func(_ string, p []byte) { onLive(p) })
		})
	}
}

func payloadSeq(p []byte) uint64 {
	var v struct {
		Seq uint64 `json:"seq"`
	}
	json.Unmarshal(p, &v)
	return v.Seq
}
