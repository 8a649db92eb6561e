package localbroker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestACLPrecedence: the most specific filter decides; at equal specificity a
// named rule beats "*" and deny beats allow; rule order never matters.
func TestACLPrecedence(t *testing.T) {
	rules := []Rule{
		{User: "*", Read: []string{"lintel/#"}},
		{User: "*", DenyRead: []string{"lintel/+/badges/#"}},
		{User: "security", Read: []string{"lintel/+/badges/#"}},
		{User: "bms", Write: []string{"lintel/gw1/+/+/set"}},
		{User: "bms", DenyWrite: []string{"lintel/gw1/door-1/+/set"}},
		{User: "bms", Write: []string{"lintel/gw1/door-1/hold/set"}},
		{User: "ops", Write: []string{"lintel/gw1/ahu-1/#"}, DenyWrite: []string{"lintel/gw1/ahu-1/#"}},
	}
	cases := []struct {
		user, topic string
		write, want bool
	}{
		{"viewer", "lintel/gw1/ahu-1/supply_temp", false, true},
		{"viewer", "lintel/gw1/badges/front", false, false},  // more specific deny
		{"security", "lintel/gw1/badges/front", false, true}, // named allow beats "*" deny at equal level
		{"viewer", "lintel/#", false, true},                  // subscription overlaps a grant; deliveries are checked
		{"viewer", "lintel/gw1/badges/#", false, false},      // a deny covers the whole subscription
		{"bms", "lintel/gw1/ahu-1/fan/set", true, true},
		{"bms", "lintel/gw1/door-1/unlock/set", true, false}, // literal door-1 deny beats the + grant
		{"bms", "lintel/gw1/door-1/hold/set", true, true},    // fully literal grant beats the deny
		{"ops", "lintel/gw1/ahu-1/fan/set", true, false},     // same filter: deny wins
		{"bms", "lintel/gw1/ahu-1/fan/set", false, true},     // "*" read lintel/#
		{"nobody", "other/topic", false, false},              // default deny
		{"bms", "$SYS/broker/uptime", false, false},
		{"", "lintel/gw1/ahu-1/supply_temp", false, false},
	}
	check := func(acl *ACL) {
		for _, c := range cases {
			got := acl.CanRead(c.user, c.topic)
			if c.write {
				got = acl.CanWrite(c.user, c.topic)
			}
			if got != c.want {
				t.Errorf("user %q write=%v %q: got %v, want %v", c.user, c.write, c.topic, got, c.want)
			}
		}
	}
	check(NewACL(rules))
	for range 20 {
		shuffled := append([]Rule(nil), rules...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		check(NewACL(shuffled))
	}
}

func FuzzACL(f *testing.F) {
	f.Add("lintel/+/x/#", "lintel/a/x/b", "bms")
	f.Add("%u/#", "bms/a", "bms")
	f.Fuzz(func(t *testing.T, filter, topic, user string) {
		allow := NewACL([]Rule{{User: user, Read: []string{filter}, Write: []string{filter}}})
		both := NewACL([]Rule{{User: user, Read: []string{filter}, Write: []string{filter}, DenyRead: []string{filter}, DenyWrite: []string{filter}}})
		// Deliveries and publishes are decided by topic name; there a deny of
		// the same filter always wins. (A subscription filter such as "#"
		// may still be granted where it overlaps: each delivery is checked.)
		if !strings.ContainsAny(topic, "+#") && (both.CanRead(user, topic) || both.CanWrite(user, topic)) {
			t.Fatalf("deny of the same filter %q lost against allow for %q", filter, topic)
		}
		if NewACL(nil).CanRead(user, topic) || NewACL(nil).CanWrite(user, topic) {
			t.Fatal("empty ACL allowed something")
		}
		if strings.HasPrefix(topic, "$") && allow.CanWrite(user, topic) {
			t.Fatalf("filter %q grants a write on the reserved topic %q", filter, topic)
		}
	})
}

func TestBruteForceIsSlowedDown(t *testing.T) {
	b := startBroker(t, Config{Users: users(t, "alice", "correct horse"), GuardBase: 500 * time.Millisecond})
	var lastFail time.Time // before the last failure began, so the back-off ends later than lastFail+base
	for range guardFree {
		lastFail = time.Now()
		if c, err := connect(b.addr, "alice", "guess"); err == nil {
			c.Disconnect(0)
			t.Fatal("wrong password accepted")
		}
	}
	// Now even the right password is refused without being checked.
	if c, err := connect(b.addr, "alice", "correct horse"); err == nil {
		c.Disconnect(0)
		t.Fatal("a source that just failed 5 times was let in at once")
	}
	if got := b.Counters(); got.AuthFailures != guardFree || got.AuthBlocked != 1 {
		t.Fatalf("counters %+v, want %d failures and 1 blocked", got, guardFree)
	}
	// The back-off ends 500 ms after the last failure; a blocked attempt
	// does not extend it, so poll with the right password until it is in.
	testwait.Until(t, "the back-off to end", 10*time.Second, func() bool {
		c, err := connect(b.addr, "alice", "correct horse")
		if err != nil {
			return false
		}
		c.Disconnect(0)
		return true
	})
	if waited := time.Since(lastFail); waited < 500*time.Millisecond {
		t.Fatalf("let in %v after the last failure, before the 500ms back-off ended", waited)
	}
	if got := b.Counters(); got.AuthFailures != guardFree {
		t.Fatalf("counters %+v: a blocked attempt counted as a failure", got)
	}
}

func TestWillOnForbiddenTopicRefused(t *testing.T) {
	b := startBroker(t, Config{
		Users: users(t, "dash", "dash-password"),
		ACL:   NewACL([]Rule{{User: "dash", Read: []string{"lintel/#"}, Write: []string{"clients/dash/status"}}}),
	})
	withWill := func(topic string) error {
		opts := paho.NewClientOptions().AddBroker("tcp://"+b.addr).SetClientID("dash-1").SetUsername("dash").SetPassword("dash-password").
			SetProtocolVersion(4).SetAutoReconnect(false).SetWill(topic, `{"value":1}`, 1, false)
		c := paho.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(0)
		}
		return tok.Error()
	}
	if err := withWill("lintel/gw1/door-1/unlock/set"); err == nil {
		t.Fatal("a Will on a command topic the user may not write was accepted")
	}
	if b.Counters().WillDenied != 1 {
		t.Fatalf("counters %+v", b.Counters())
	}
	if err := withWill("clients/dash/status"); err != nil {
		t.Fatalf("Will on an allowed topic refused: %v", err)
	}
}

// TestDeniedQoS1PublishV311 is answered with a PUBACK, the client stays
// connected (no disconnect/re-send loop) and the message goes nowhere.
func TestDeniedQoS1PublishV311(t *testing.T) {
	spool := &fakeSpool{}
	b := startBroker(t, Config{
		Users:   users(t, "viewer", "viewer-pw"),
		ACL:     NewACL([]Rule{{User: "viewer", Read: []string{"lintel/#"}}}),
		Forward: []string{"lintel/#"},
		Spool:   spool,
	})
	seen := make(chan string, 1)
	unsub, _ := b.Subscribe("lintel/#", func(topic string, _ []byte) { seen <- topic })
	defer unsub()
	c := mustConnect(t, b.addr, "viewer", "viewer-pw")
	for range 3 {
		tok := c.Publish("lintel/gw1/door-1/unlock/set", 1, false, "1")
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("denied QoS1 publish not acknowledged: %v", tok.Error())
		}
	}
	if !c.IsConnectionOpen() {
		t.Fatal("client was disconnected")
	}
	select {
	case topic := <-seen:
		t.Fatalf("denied publish delivered on %s", topic)
	case <-time.After(200 * time.Millisecond):
	}
	if a, e := spool.counts(); a+e != 0 || b.Counters().WriteDenied != 3 {
		t.Fatalf("spool %d/%d, counters %+v", a, e, b.Counters())
	}
}

// TestDeniedQoS1PublishV5 gets PUBACK reason 0x87 (not authorized), spoken
// with raw MQTT 5 packets since paho.mqtt.golang is 3.1.1 only.
func TestDeniedQoS1PublishV5(t *testing.T) {
	b := startBroker(t, Config{
		Users: users(t, "viewer", "viewer-pw"),
		ACL:   NewACL([]Rule{{User: "viewer", Read: []string{"lintel/#"}, Write: []string{"clients/viewer/#"}}}),
	})
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	send := func(pk packets.Packet, encode func(*packets.Packet, *bytes.Buffer) error) {
		var buf bytes.Buffer
		if err := encode(&pk, &buf); err != nil {
			t.Fatal(err)
		}
		conn.Write(buf.Bytes())
	}
	send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), ClientIdentifier: "v5", Clean: true, Keepalive: 30,
		UsernameFlag: true, Username: []byte("viewer"), PasswordFlag: true, Password: []byte("viewer-pw"),
	}}, (*packets.Packet).ConnectEncode)
	if ack := readPacket(t, conn, r); ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connack %+v", ack)
	}
	publish := func(id uint16, topic string) packets.Packet {
		send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
			PacketID: id, TopicName: topic, Payload: []byte("1")}, (*packets.Packet).PublishEncode)
		return readPacket(t, conn, r)
	}
	if ack := publish(1, "lintel/gw1/door-1/unlock/set"); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("denied publish: %+v, want PUBACK 0x87", ack)
	}
	if ack := publish(2, "clients/viewer/x"); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0 {
		t.Fatalf("allowed publish on the same connection: %+v", ack)
	}
}

func readPacket(t *testing.T, conn net.Conn, r *bufio.Reader) packets.Packet {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hb, err := r.ReadByte()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var pk packets.Packet
	pk.ProtocolVersion = 5
	if err := pk.FixedHeader.Decode(hb); err != nil {
		t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestClientCertificateListener: a TLS listener that requires client
// certificates refuses clients without one, and uses the certificate's
// common name as the user name for the ACL.
func TestClientCertificateListener(t *testing.T) {
	ca, _ := pki.NewCA("lan-ca", time.Hour)
	server, _ := ca.Server("gw", []string{"127.0.0.1"}, time.Hour)
	cert, _ := server.TLS()
	b := startBroker(t, Config{
		Listeners: []Listener{{Name: "lan", Address: "127.0.0.1:0", CertUsers: true, TLS: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}}},
		ACL: NewACL([]Rule{{User: "bms", Read: []string{"lintel/#"}}}),
	})
	dial := func(client *pki.Pair, user string) (paho.Client, error) {
		tc := &tls.Config{RootCAs: ca.Pool()}
		if client != nil {
			c, _ := client.TLS()
			tc.Certificates = []tls.Certificate{c}
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker("mqtts://" + b.addr).SetClientID("c-" + user).SetUsername(user).
			SetTLSConfig(tc).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second))
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		return c, tok.Error()
	}
	if c, err := dial(nil, "bms"); err == nil {
		c.Disconnect(0)
		t.Fatal("client without a certificate accepted")
	}
	bms, _ := ca.Client("bms", time.Hour)
	if c, err := dial(&bms, "someone-else"); err == nil {
		c.Disconnect(0)
		t.Fatal("user name differing from the certificate's CN accepted")
	}
	c, err := dial(&bms, "")
	if err != nil {
		t.Fatalf("client with certificate bms: %v", err)
	}
	defer c.Disconnect(100)
	got := make(chan string, 4)
	c.Subscribe("lintel/#", 0, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	b.Publish(context.Background(), "lintel/gw1/a/b", []byte("1"), false, Normal)
	select {
	case <-got: // the ACL applied to CN "bms"
	case <-time.After(5 * time.Second):
		t.Fatal("certificate user bms did not receive what its ACL grants")
	}
	if _, err := New(Config{Listeners: []Listener{{Name: "x", Address: "127.0.0.1:0", CertUsers: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}}}, quiet()); err == nil {
		t.Fatal("certificate users without required client certificates accepted")
	}
}

func TestKeepaliveBoundsAndTopicLimits(t *testing.T) {
	b := startBroker(t, Config{
		Users: users(t, "dev", "dev-password"),
		ACL:   NewACL([]Rule{{User: "dev", Write: []string{"#"}}}),
	})
	opts := paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("lazy").SetUsername("dev").SetPassword("dev-password").
		SetProtocolVersion(4).SetAutoReconnect(false).SetKeepAlive(0)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	cl, ok := b.srv.Clients.Get("lazy")
	if !ok || cl.State.Keepalive != maxKeepalive {
		t.Fatalf("keepalive 0 became %d, want %d", cl.State.Keepalive, maxKeepalive)
	}
	c.Publish(strings.Repeat("a/", maxTopicLevels+1)+"x", 0, false, "deep").WaitTimeout(time.Second)
	testwait.Until(t, "abusive client disconnected", 5*time.Second, func() bool { return !c.IsConnectionOpen() && b.Counters().Abusive == 1 })

	big := mustConnect(t, b.addr, "dev", "dev-password")
	big.Publish("a/b", 0, false, bytes.Repeat([]byte("x"), 70<<10)).WaitTimeout(time.Second) // over the 64 KiB default
	testwait.Until(t, "oversized packet's client disconnected", 5*time.Second, func() bool { return !big.IsConnectionOpen() && b.Counters().Abusive == 2 })
}

func TestUnixAndWebsocketListenersRequireLogin(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	// mochi's websocket listener binds after Serve and reports only the
	// configured address, so reserve a free port for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wsAddr := l.Addr().String()
	l.Close()
	b, err := New(Config{
		Users: users(t, "dev", "dev-password"),
		Listeners: []Listener{
			{Name: "sock", Kind: Unix, Address: sock},
			{Name: "ws", Kind: Websocket, Address: wsAddr},
		},
	}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v (%v), want 0660", fi.Mode().Perm(), err)
	}
	if _, err := New(Config{Listeners: []Listener{{Name: "ws", Kind: Websocket, Address: "0.0.0.0:0"}}}, quiet()); !errors.Is(err, ErrPlaintextNetwork) {
		t.Fatalf("plain websocket on all interfaces: %v", err)
	}
	testwait.Until(t, "websocket listener", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", wsAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	for _, url := range []string{"unix://" + sock, "ws://" + wsAddr} {
		for _, cred := range []struct {
			user, pass string
			ok         bool
		}{{"", "", false}, {"dev", "nope-nope", false}, {"dev", "dev-password", true}} {
			c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("x").SetUsername(cred.user).SetPassword(cred.pass).
				SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second))
			tok := c.Connect()
			tok.WaitTimeout(5 * time.Second)
			if (tok.Error() == nil) != cred.ok {
				t.Errorf("%s as %q: err %v, want ok=%v", url, cred.user, tok.Error(), cred.ok)
			}
			c.Disconnect(0)
		}
	}
}

// TestMosquittoClients uses the Mosquitto command-line clients (installed by
// .ci/run) against the broker.
func TestMosquittoClients(t *testing.T) {
	pub, err1 := exec.LookPath("mosquitto_pub")
	sub, err2 := exec.LookPath("mosquitto_sub")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto-clients not installed; .ci/run should have installed them")
		}
		t.Skip("mosquitto-clients not installed")
	}
	b := startBroker(t, Config{
		Users: users(t, "dash", "dash-password", "bms", "bms-password"),
		ACL:   NewACL([]Rule{{User: "dash", Read: []string{"lintel/#"}}, {User: "bms", Write: []string{"lintel/gw1/bms/#"}}}),
	})
	host, port, _ := net.SplitHostPort(b.addr)
	run := func(bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run(pub, "-t", "lintel/gw1/bms/x", "-m", "1"); err == nil {
		t.Fatalf("anonymous mosquitto_pub accepted: %s", out)
	}
	if out, err := run(sub, "-u", "dash", "-P", "wrong", "-t", "lintel/#", "-C", "1", "-W", "2"); err == nil {
		t.Fatalf("wrong password accepted: %s", out)
	}
	var wg sync.WaitGroup
	var got string
	var subErr error
	wg.Go(func() {
		got, subErr = run(sub, "-u", "dash", "-P", "dash-password", "-t", "lintel/#", "-C", "1", "-W", "8")
	})
	testwait.Until(t, "mosquitto_sub's subscription", 10*time.Second, func() bool { return subscribed(b.Broker, "dash") })
	if out, err := run(pub, "-u", "bms", "-P", "bms-password", "-q", "1", "-t", "lintel/gw1/bms/occupancy", "-m", "42"); err != nil {
		t.Fatalf("allowed publish: %v %s", err, out)
	}
	wg.Wait()
	if subErr != nil || strings.TrimSpace(got) != "42" {
		t.Fatalf("mosquitto_sub got %q (%v), want 42", got, subErr)
	}
}

// TestQoS1PubackMeansDurableWithRealBuffer: a client pipelines a thousand
// QoS 1 publishes on a forwarded topic; by the time the last PUBACK is in,
// all thousand are in the bbolt file, and local subscribers got them in order.
func TestQoS1PubackMeansDurableWithRealBuffer(t *testing.T) {
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{CommitInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	b := startBroker(t, Config{
		Users:   users(t, "bms", "bms-password"),
		ACL:     NewACL([]Rule{{User: "bms", Write: []string{"lintel/gw1/bms/#"}}}),
		Forward: []string{"lintel/gw1/#"},
		Spool:   q,
	})
	var mu sync.Mutex
	var delivered []string
	unsub, _ := b.Subscribe("lintel/gw1/bms/#", func(_ string, p []byte) {
		mu.Lock()
		delivered = append(delivered, string(p))
		mu.Unlock()
	})
	defer unsub()
	c := mustConnect(t, b.addr, "bms", "bms-password")
	const n = 1000
	toks := make([]paho.Token, n)
	for i := range n {
		toks[i] = c.Publish("lintel/gw1/bms/occupancy", 1, false, strconv.Itoa(i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	if s := q.Stats(); s.Records != n {
		t.Fatalf("%d PUBACKs received but %d records durable", n, s.Records)
	}
	testwait.Until(t, "local delivery", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(delivered) == n })
	mu.Lock()
	defer mu.Unlock()
	for i, p := range delivered {
		if p != strconv.Itoa(i) {
			t.Fatalf("local delivery %d was %q: out of order", i, p)
		}
	}
}

// BenchmarkLocalQoS1Publish: one local client publishing QoS 1 on a
// forwarded topic, acknowledged after the group commit (200 ms). Run:
//
//	go test ./localbroker -run '^$' -bench LocalQoS1 -benchtime 1x
func BenchmarkLocalQoS1Publish(b *testing.B) {
	for range b.N {
		q, err := buffer.Open(filepath.Join(b.TempDir(), "buffer.db"), buffer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		br := startBroker(b, Config{Users: users(b, "bms", "bms-password"), ACL: NewACL([]Rule{{User: "bms", Write: []string{"#"}}}), Forward: []string{"#"}, Spool: q})
		c, err := connect(br.addr, "bms", "bms-password")
		if err != nil {
			b.Fatal(err)
		}
		const n = 20000
		start := time.Now()
		toks := make([]paho.Token, n)
		for i := range n {
			toks[i] = c.Publish("lintel/gw1/bms/x", 1, false, "21.5")
		}
		for _, tok := range toks {
			tok.Wait()
		}
		elapsed := time.Since(start)
		b.ReportMetric(n/elapsed.Seconds(), "acked-msgs/s")
		c.Disconnect(0)
		br.Close()
		q.Close()
	}
}

// subscribed reports whether a client of user holds a subscription.
func subscribed(b *Broker, user string) bool {
	for _, cl := range b.srv.Clients.GetAll() {
		if string(cl.Properties.Username) == user && cl.State.Subscriptions.Len() > 0 {
			return true
		}
	}
	return false
}
