package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
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
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type env struct {
	ca    *pki.CA
	cloud *cloudtest.Broker
	queue *buffer.Queue
}

// newEnv uses a 5 ms commit interval so that tests run fast.
func newEnv(t testing.TB) *env {
	return newEnvWith(t, buffer.Options{CommitInterval: 5 * time.Millisecond})
}

func newEnvWith(t testing.TB, opts buffer.Options) *env {
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
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return &env{ca: ca, cloud: cloud, queue: q}
}

func (e *env) clientTLS(t testing.TB, ca *pki.CA) *tls.Config {
	t.Helper()
	pair, err := ca.Client("gw1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{cert}}
}

func (e *env) start(t *testing.T, cfg Config) (*Uplink, context.CancelFunc) {
	t.Helper()
	if cfg.Broker == "" {
		cfg.Broker = e.cloud.URL()
	}
	if cfg.TLS == nil {
		cfg.TLS = e.clientTLS(t, e.ca)
	}
	cfg.GatewayID = "gw1"
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 300*time.Millisecond
	// A broker stopped mid-handshake leaves the socket open; do not wait
	// the production 15 s for it.
	cfg.ConnectTimeout, cfg.AckTimeout = time.Second, time.Second
	u, err := New(cfg, e.queue, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return u, stop
}

func (e *env) appendN(t *testing.T, from, n int) {
	t.Helper()
	recs := make([]buffer.Record, n)
	for i := range recs {
		recs[i] = buffer.Record{Topic: fmt.Sprintf("lintel/gw1/dev/p%d", (from+i)%7), Payload: []byte(fmt.Sprintf(`{"v":%d}`, from+i))}
	}
	if err := e.queue.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// seqsReceived counts how often each seq reached the cloud.
func seqsReceived(cloud *cloudtest.Broker) map[uint64]int {
	got := map[uint64]int{}
	for _, m := range cloud.Received() {
		if seq := m.Seq(); seq > 0 {
			got[seq]++
		}
	}
	return got
}

func TestDeliversEveryRecordAndEmptiesBuffer(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 500)
	u, _ := e.start(t, Config{TopicPrefix: "site/"})
	testwait.Until(t, "buffer drained", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	got := seqsReceived(e.cloud)
	for seq := uint64(1); seq <= 500; seq++ {
		if got[seq] == 0 {
			t.Fatalf("seq %d never reached the cloud", seq)
		}
	}
	var first cloudtest.Message
	for _, m := range e.cloud.Received() {
		if m.Seq() == 1 {
			first = m
		}
	}
	if first.Topic != "site/lintel/gw1/dev/p0" || string(first.Payload) != `{"seq":1,"v":0}` || first.Client != "gw1" {
		t.Fatalf("first message %+v; want prefixed topic, seq injected, client cert gw1", first)
	}
	if s := u.Stats(); s.Acked != 500 || !s.Connected {
		t.Fatalf("stats %+v, want 500 acked and connected", s)
	}
	var status struct {
		Online bool `json:"online"`
	}
	for _, m := range e.cloud.Received() {
		if m.Topic == "site/lintel/gw1/$status" {
			json.Unmarshal(m.Payload, &status)
			if !m.Retain {
				t.Fatal("gateway status not retained")
			}
		}
	}
	if !status.Online {
		t.Fatal("no online status published")
	}
}

func TestRefusesAnythingButMutualTLS(t *testing.T) {
	e := newEnv(t)
	good := e.clientTLS(t, e.ca)
	noCert := &tls.Config{RootCAs: e.ca.Pool()}
	insecure := good.Clone()
	insecure.InsecureSkipVerify = true
	for _, c := range []struct {
		name   string
		broker string
		tls    *tls.Config
	}{
		{"plaintext scheme", "tcp://" + e.cloud.Addr(), good},
		{"mqtt scheme", "mqtt://" + e.cloud.Addr(), good},
		{"no TLS config", e.cloud.URL(), nil},
		{"no client certificate", e.cloud.URL(), noCert},
		{"verification off", e.cloud.URL(), insecure},
		{"no CA", e.cloud.URL(), &tls.Config{Certificates: good.Certificates}},
	} {
		if _, err := New(Config{Broker: c.broker, TLS: c.tls, GatewayID: "gw1"}, e.queue, quiet()); !errors.Is(err, ErrInsecure) {
			t.Errorf("%s: %v, want ErrInsecure", c.name, err)
		}
	}
}

func TestUntrustedPeersNeverConnect(t *testing.T) {
	e := newEnv(t)
	e.appendN(t, 0, 10)
	other, _ := pki.NewCA("other-ca", time.Hour)

	// A client certificate from a CA the broker does not trust.
	u, stop := e.start(t, Config{TLS: e.clientTLS(t, other)})
	testwait.Until(t, "a refused connection attempt", 10*time.Second, func() bool { return u.Stats().LastError != "" })
	stop()
	if s := u.Stats(); s.Acked != 0 || len(e.cloud.Received()) != 0 {
		t.Fatalf("untrusted client delivered: %+v", s)
	}

	// A broker whose certificate is not from the configured CA.
	otherPair, _ := other.Client("gw1", time.Hour)
	cert, _ := otherPair.TLS()
	u, stop = e.start(t, Config{TLS: &tls.Config{RootCAs: other.Pool(), Certificates: []tls.Certificate{cert}}})
	testwait.Until(t, "a refused connection attempt", 10*time.Second, func() bool { return u.Stats().LastError != "" })
	stop()
	if s := u.Stats(); s.Acked != 0 || !strings.Contains(s.LastError, "certificate") {
		t.Fatalf("connected to an unverified broker or wrong error: %+v", s)
	}
	if e.queue.Stats().Records != 10 {
		t.Fatal("records lost although nothing was delivered")
	}
}

// recordingSource remembers every seq the uplink acks.
type recordingSource struct {
	*buffer.Queue
	mu    sync.Mutex
	acked map[uint64]bool
}

func (r *recordingSource) Ack(seqs ...uint64) error {
	r.mu.Lock()
	for _, s := range seqs {
		r.acked[s] = true
	}
	r.mu.Unlock()
	return r.Queue.Ack(seqs...)
}

// TestBrokerKilledMidFlight crashes the cloud broker while records are in
// flight (the last PUBLISH it reads gets no PUBACK) and checks that no record
// was acked without the broker's PUBACK; after the restart all arrive.
func TestBrokerKilledMidFlight(t *testing.T) {
	e := newEnv(t)
	const total = 3000
	e.appendN(t, 0, total)
	src := &recordingSource{Queue: e.queue, acked: map[uint64]bool{}}
	e.cloud.KillAfter(700)
	u, err := New(Config{Broker: e.cloud.URL(), TLS: e.clientTLS(t, e.ca), GatewayID: "gw1",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: time.Second}, src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	testwait.Until(t, "the broker to be killed", 20*time.Second, func() bool { return len(e.cloud.Received()) >= 700 })
	// The dead session is over once nothing is in flight any more: every
	// token was failed or acknowledged.
	testwait.Until(t, "the dead session to end", 10*time.Second, func() bool {
		s := u.Stats()
		return !s.Connected && s.InFlight == 0 && s.Reconnects > 0
	})

	src.mu.Lock()
	acked := len(src.acked)
	for seq := range src.acked {
		if !e.cloud.Pubacked(seq) {
			t.Errorf("seq %d was deleted from the buffer without a PUBACK", seq)
		}
	}
	src.mu.Unlock()
	if acked == 0 || acked >= 700 {
		t.Fatalf("%d records acked before the kill; want some but fewer than the 700 received", acked)
	}
	testwait.Until(t, "acks committed", 5*time.Second, func() bool { return e.queue.Stats().Records == uint64(total-acked) })

	if err := e.cloud.Restart(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "buffer drained after restart", 30*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	got := seqsReceived(e.cloud)
	for seq := uint64(1); seq <= total; seq++ {
		if got[seq] == 0 {
			t.Fatalf("seq %d lost", seq)
		}
	}
}

// TestStopStartCyclesUnderLoad restarts the broker 10 times while records
// keep arriving: every seq must reach the cloud.
func TestStopStartCyclesUnderLoad(t *testing.T) {
	e := newEnv(t)
	e.start(t, Config{})
	produced := make(chan int)
	stopProducer := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-stopProducer:
				produced <- n
				return
			case <-time.After(2 * time.Millisecond):
				recs := make([]buffer.Record, 5)
				for i := range recs {
					recs[i] = buffer.Record{Topic: "lintel/gw1/load/x", Payload: []byte(fmt.Sprintf(`{"v":%d}`, n))}
					n++
				}
				e.queue.Enqueue(context.Background(), recs...)
			}
		}
	}()
	for range 10 {
		time.Sleep(150 * time.Millisecond)
		e.cloud.Stop()
		time.Sleep(150 * time.Millisecond)
		if err := e.cloud.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	close(stopProducer)
	n := <-produced
	testwait.Until(t, "buffer drained", 60*time.Second, func() bool {
		s := e.queue.Stats()
		return s.Records == 0 && s.NextSeq == uint64(n)+1
	})
	got := seqsReceived(e.cloud)
	dups := 0
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if got[seq] == 0 {
			t.Fatalf("seq %d of %d never reached the cloud", seq, n)
		}
		dups += got[seq] - 1
	}
	t.Logf("%d records through 10 broker restarts, %d duplicates", n, dups)
}

func TestWithSeq(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"v":1}`, `{"seq":7,"v":1}`},
		{` { "v" : 1 } `, `{"seq":7,"v" : 1 }`},
		{`{}`, `{"seq":7}`},
		{`21.5`, `{"payload":"21.5","seq":7}`},
		{"\xff\x00", `{"payload_b64":"/wA=","seq":7}`},
	} {
		got := string(WithSeq([]byte(c.in), 7))
		if got != c.want {
			t.Errorf("WithSeq(%q) = %s, want %s", c.in, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("WithSeq(%q) = %s is not JSON", c.in, got)
		}
	}
}

// TestLastWillMarksGatewayOffline cuts the uplink's connection and keeps it
// from reconnecting: the broker must then hold the retained Last Will
// {"online":false} on lintel/<gateway>/$status.
func TestLastWillMarksGatewayOffline(t *testing.T) {
	e := newEnv(t)
	proxy := cloudtest.NewCutter(t, e.cloud.Addr())
	u, _ := e.start(t, Config{Broker: "mqtts://" + proxy.Addr()})
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.Close() // no reconnect
	testwait.Until(t, "uplink to notice", 10*time.Second, func() bool { return !u.Stats().Connected })

	retained := make(chan string, 1)
	pair, _ := e.ca.Client("observer", time.Hour)
	cert, _ := pair.TLS()
	obs := paho.NewClient(paho.NewClientOptions().AddBroker(e.cloud.URL()).SetClientID("observer").SetProtocolVersion(4).
		SetTLSConfig(&tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{cert}}))
	if tok := obs.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer obs.Disconnect(100)
	obs.Subscribe("lintel/gw1/$status", 1, func(_ paho.Client, m paho.Message) {
		select {
		case retained <- string(m.Payload()):
		default:
		}
	})
	select {
	case got := <-retained:
		if got != `{"online":false}` {
			t.Fatalf("retained gateway status %s, want the Last Will {\"online\":false}", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained gateway status")
	}
}
