package localbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeSpool records what the broker hands it; release gates Append.
type fakeSpool struct {
	mu       sync.Mutex
	appended []buffer.Record
	enqueued []buffer.Record
	release  chan struct{} // nil: Append returns at once
	fail     error
	last     chan struct{} // the previous AppendAsync's completion
	async    int           // AppendAsync calls
}

func (s *fakeSpool) Append(ctx context.Context, recs ...buffer.Record) error {
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail != nil {
		return s.fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appended = append(s.appended, recs...)
	return nil
}

// AppendAsync runs Append on its own goroutine; notifications keep order
// because each waits for the previous one.
func (s *fakeSpool) AppendAsync(ctx context.Context, done func(error), recs ...buffer.Record) error {
	s.mu.Lock()
	prev := s.last
	s.async++
	next := make(chan struct{})
	s.last = next
	s.mu.Unlock()
	go func() {
		err := s.Append(context.Background(), recs...)
		if prev != nil {
			<-prev
		}
		done(err)
		close(next)
	}()
	return nil
}

func (s *fakeSpool) Enqueue(_ context.Context, recs ...buffer.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueued = append(s.enqueued, recs...)
	return s.fail
}

func (s *fakeSpool) counts() (appended, enqueued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.appended), len(s.enqueued)
}

type testBroker struct {
	*Broker
	addr string
}

func startBroker(t testing.TB, cfg Config) *testBroker {
	t.Helper()
	if cfg.Listeners == nil {
		cfg.Listeners = []Listener{{Name: "local", Address: "127.0.0.1:0"}}
	}
	b, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &testBroker{Broker: b, addr: b.Addr(cfg.Listeners[0].Name)}
}

func users(t testing.TB, pairs ...string) *Users {
	t.Helper()
	u := NewUsers()
	for i := 0; i < len(pairs); i += 2 {
		if err := u.Set(pairs[i], []byte(pairs[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func connect(addr, user, pass string) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("t-%s-%d", user, time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	return c, nil
}

func mustConnect(t *testing.T, addr, user, pass string) paho.Client {
	t.Helper()
	c, err := connect(addr, user, pass)
	if err != nil {
		t.Fatalf("connect as %q: %v", user, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestAnonymousAndWrongPasswordRefused(t *testing.T) {
	b := startBroker(t, Config{Users: users(t, "alice", "correct horse")})
	for _, c := range []struct{ user, pass string }{{"", ""}, {"alice", "wrong password"}, {"mallory", "correct horse"}} {
		if cl, err := connect(b.addr, c.user, c.pass); err == nil {
			cl.Disconnect(0)
			t.Errorf("user %q with password %q was let in", c.user, c.pass)
		}
	}
	if got := b.Counters().AuthFailures; got != 3 {
		t.Errorf("auth failures = %d, want 3", got)
	}
	mustConnect(t, b.addr, "alice", "correct horse")
}

func TestPlaintextListenerMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := New(Config{Listeners: []Listener{{Name: "lan", Address: addr}}}, quiet())
		if !errors.Is(err, ErrPlaintextNetwork) {
			t.Errorf("plain listener on %s: %v, want ErrPlaintextNetwork", addr, err)
		}
	}
	b, err := New(Config{Listeners: []Listener{{Name: "local", Address: "localhost:0"}}}, quiet())
	if err != nil {
		t.Fatalf("localhost listener: %v", err)
	}
	b.Close()
}

// TestACLMatrix connects real clients and checks every user × topic ×
// direction against what the rules grant, including overlapping rules.
func TestACLMatrix(t *testing.T) {
	acl := NewACL([]Rule{
		{User: "dashboard", Read: []string{"lintel/gw1/#"}},
		{User: "bms", Read: []string{"lintel/#"}, Write: []string{"lintel/gw1/+/+/set"}},
		{User: "bms", Write: []string{"lintel/gw1/ahu-1/#"}}, // overlaps the rule above
		{User: "*", Read: []string{"clients/%u/#"}},
	})
	b := startBroker(t, Config{
		Users: users(t, "dashboard", "dashboard-pw", "bms", "bms-password", "other", "other-pw1"),
		ACL:   acl,
	})
	topics := []string{"lintel/gw1/ahu-1/supply_temp", "lintel/gw1/door/lock/set", "lintel/gw2/x/y", "clients/dashboard/a", "clients/bms/a"}
	want := map[string]map[string][2]bool{ // user → topic → {read, write}
		"dashboard": {topics[0]: {true, false}, topics[1]: {true, false}, topics[2]: {false, false}, topics[3]: {true, false}, topics[4]: {false, false}},
		"bms":       {topics[0]: {true, true}, topics[1]: {true, true}, topics[2]: {true, false}, topics[3]: {false, false}, topics[4]: {true, false}},
		"other":     {topics[0]: {false, false}, topics[1]: {false, false}, topics[2]: {false, false}, topics[3]: {false, false}, topics[4]: {false, false}},
	}
	pw := map[string]string{"dashboard": "dashboard-pw", "bms": "bms-password", "other": "other-pw1"}
	for user, row := range want {
		for topic, rw := range row {
			if got := acl.CanRead(user, topic); got != rw[0] {
				t.Errorf("CanRead(%s, %s) = %v, want %v", user, topic, got, rw[0])
			}
			if got := acl.CanWrite(user, topic); got != rw[1] {
				t.Errorf("CanWrite(%s, %s) = %v, want %v", user, topic, got, rw[1])
			}
		}
		// Through the broker: the user subscribes to everything and the
		// in-process side publishes every topic; the user must get exactly
		// the readable ones.
		var mu sync.Mutex
		received := map[string]bool{}
		c := mustConnect(t, b.addr, user, pw[user])
		c.Subscribe("#", 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			received[m.Topic()] = true
			mu.Unlock()
		}).WaitTimeout(5 * time.Second)
		for _, topic := range topics {
			if err := b.Publish(context.Background(), topic, []byte("x"), false, Normal); err != nil {
				t.Fatal(err)
			}
		}
		// Nothing marks the absence of a message, so publish a marker every
		// user may read (clients/%u/#) after the others: the broker
		// delivers to one client in order, so once it arrived, every
		// earlier message that was going to arrive has.
		marker := "clients/" + user + "/marker"
		if err := b.Publish(context.Background(), marker, []byte("x"), false, Normal); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, user+"'s marker", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return received[marker] })
		mu.Lock()
		for topic, rw := range row {
			if received[topic] != rw[0] {
				t.Errorf("%s subscribed to #: received %s = %v, want %v", user, topic, received[topic], rw[0])
			}
		}
		mu.Unlock()
	}
}

func TestDeniedWriteIsNotDeliveredOrForwarded(t *testing.T) {
	spool := &fakeSpool{}
	b := startBroker(t, Config{
		Users:   users(t, "viewer", "viewer-pw", "watcher", "watcher-pw"),
		ACL:     NewACL([]Rule{{User: "viewer", Read: []string{"lintel/#"}}, {User: "watcher", Read: []string{"lintel/#"}}}),
		Forward: []string{"lintel/#"},
		Spool:   spool,
	})
	seen := make(chan string, 4)
	unsub, _ := b.Subscribe("lintel/#", func(topic string, _ []byte) { seen <- topic })
	defer unsub()
	c := mustConnect(t, b.addr, "viewer", "viewer-pw")
	c.Publish("lintel/gw1/door/unlock/set", 0, false, "1").WaitTimeout(time.Second)
	// The broker handles one connection's packets in order: once the
	// SUBACK of a later SUBSCRIBE is back, the denied PUBLISH was handled.
	if tok := c.Subscribe("lintel/marker", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe after the denied publish: %v", tok.Error())
	}
	if n := b.Counters().WriteDenied; n != 1 {
		t.Fatalf("%d writes denied; want the one publish", n)
	}
	select {
	case topic := <-seen:
		t.Fatalf("denied publish reached subscribers on %s", topic)
	default:
	}
	if a, e := spool.counts(); a+e != 0 {
		t.Fatalf("denied publish was buffered (%d appended, %d enqueued)", a, e)
	}
}

// TestQoS1PubackWaitsForBuffer holds the spool's Append and checks the client
// has no PUBACK until the message is in the buffer.
func TestQoS1PubackWaitsForBuffer(t *testing.T) {
	spool := &fakeSpool{release: make(chan struct{})}
	b := startBroker(t, Config{
		Users:   users(t, "bms", "bms-password"),
		ACL:     NewACL([]Rule{{User: "bms", Write: []string{"lintel/gw1/#"}}}),
		Forward: []string{"lintel/gw1/#"},
		Spool:   spool,
	})
	c := mustConnect(t, b.addr, "bms", "bms-password")
	tok := c.Publish("lintel/gw1/bms/occupancy", 1, false, `{"v":12}`)
	if tok.WaitTimeout(300 * time.Millisecond) {
		t.Fatalf("PUBACK arrived before the buffer accepted the message (err %v)", tok.Error())
	}
	close(spool.release)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("no PUBACK after the buffer accepted the message: %v", tok.Error())
	}
	if a, _ := spool.counts(); a != 1 {
		t.Fatalf("appended %d records, want 1", a)
	}
	// Not forwarded: no buffer involvement.
	if !c.Publish("other/topic", 1, false, "x").WaitTimeout(5 * time.Second) {
		t.Fatal("publish on a non-forwarded topic was not acknowledged")
	}
}

// TestQoS1BufferFailureDisconnects: a v3.1.1 client whose message cannot be
// buffered gets no PUBACK; it is disconnected so it re-sends later.
func TestQoS1BufferFailureDisconnects(t *testing.T) {
	spool := &fakeSpool{fail: buffer.ErrFull}
	b := startBroker(t, Config{
		Users:   users(t, "bms", "bms-password"),
		ACL:     NewACL([]Rule{{User: "bms", Write: []string{"lintel/#"}}}),
		Forward: []string{"lintel/#"},
		Spool:   spool,
	})
	lost := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("bms-1").SetUsername("bms").SetPassword("bms-password").
		SetAutoReconnect(false).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	tok := c.Publish("lintel/gw1/x", 1, false, "x")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("client was not disconnected after its message could not be buffered")
	}
	if tok.WaitTimeout(time.Second) && tok.Error() == nil {
		t.Fatal("publish reported success although nothing was buffered")
	}
}

func TestInProcessPublishForwardsAndDelivers(t *testing.T) {
	spool := &fakeSpool{}
	b := startBroker(t, Config{Forward: []string{"lintel/gw1/#"}, Spool: spool})
	got := make(chan string, 2)
	unsub, err := b.Subscribe("lintel/#", func(topic string, payload []byte) { got <- topic + " " + string(payload) })
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	ctx := context.Background()
	b.Publish(ctx, "lintel/gw1/ahu/t", []byte("1"), false, Normal)
	b.Publish(ctx, "lintel/gw2/ahu/t", []byte("2"), false, Normal)
	for _, want := range []string{"lintel/gw1/ahu/t 1", "lintel/gw2/ahu/t 2"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("in-process subscriber got nothing")
		}
	}
	if a, e := spool.counts(); a != 0 || e != 1 {
		t.Fatalf("spool got %d appends, %d enqueues; want 0, 1 (only the forwarded topic, without waiting)", a, e)
	}
}

func TestUsersFile(t *testing.T) {
	u := users(t, "alice", "password1")
	path := t.TempDir() + "/users"
	if err := u.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Check("alice", []byte("password1")) || loaded.Check("alice", []byte("password2")) || loaded.Check("bob", []byte("password1")) {
		t.Fatal("loaded users do not check passwords correctly")
	}
	for _, bad := range []string{"alice:plaintext\n", "alice\n", "a/b:$2a$10$abcdefghijklmnopqrstuv\n"} {
		if _, err := ParseUsers(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("users file %q: %v, want an error naming line 1", bad, err)
		}
	}
}

func FuzzParseUsers(f *testing.F) {
	f.Add("alice:$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy\n# comment\n\nbob:x")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsers(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, n := range u.Names() {
			if n == "" || strings.ContainsAny(n, "+#/:") {
				t.Fatalf("accepted user name %q", n)
			}
		}
	})
}

func FuzzMatchTopic(f *testing.F) {
	f.Add("lintel/+/x/#", "lintel/a/x/b/c")
	f.Add("#", "$SYS/x")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if strings.ContainsAny(topic, "+#") {
			return
		}
		m := MatchTopic(filter, topic)
		// A topic matching a filter always overlaps it.
		if m && !FiltersOverlap(filter, topic) {
			t.Fatalf("%q matches %q but they do not overlap", filter, topic)
		}
		if filter == topic && !strings.ContainsAny(filter, "+#") && !m {
			t.Fatalf("%q does not match itself", topic)
		}
	})
}
