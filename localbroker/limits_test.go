package localbroker

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// dialFrom opens a TCP connection to addr from the given loopback source
// address (the whole of 127/8 is loopback on Linux).
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within wait (a read
// returns EOF or a reset rather than timing out).
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func (b *Broker) pendingCount() int {
	b.gate.mu.Lock()
	defer b.gate.mu.Unlock()
	return b.gate.pending
}

// TestIdleSocketsClosedAfterDeadline: a socket that never completes the TLS
// handshake, or never sends CONNECT, is closed after ConnectTimeout.
func TestIdleSocketsClosedAfterDeadline(t *testing.T) {
	ca, _ := pki.NewCA("lan-ca", time.Hour)
	server, _ := ca.Server("gw", []string{"127.0.0.1"}, time.Hour)
	cert, _ := server.TLS()
	b := startBroker(t, Config{
		Listeners: []Listener{
			{Name: "local", Address: "127.0.0.1:0"},
			{Name: "lan", Address: "127.0.0.1:0", CertUsers: true, TLS: &tls.Config{
				Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}},
		},
		Limits: Limits{ConnectTimeout: 300 * time.Millisecond},
	})
	start := time.Now()
	plain := dialFrom(t, "127.0.0.1", b.addr)
	tlsRaw := dialFrom(t, "127.0.0.1", b.Addr("lan")) // no handshake at all
	if !closedByServer(plain, 5*time.Second) {
		t.Fatal("a socket that sent no CONNECT was still open after 5 s")
	}
	if !closedByServer(tlsRaw, 5*time.Second) {
		t.Fatal("a TLS socket that never shook hands was still open after 5 s")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle sockets closed after %v, want about 300ms", d)
	}
	testwait.Until(t, "pending count back to 0", 5*time.Second, func() bool { return b.pendingCount() == 0 })
}

// TestPendingConnectionCap: beyond the per-source and global caps new
// unauthenticated sockets are closed at once, while an authenticated client
// keeps working and new logins succeed once slots free up.
func TestPendingConnectionCap(t *testing.T) {
	b := startBroker(t, Config{
		Users:  users(t, "bms", "bms-password"),
		ACL:    NewACL([]Rule{{User: "bms", Read: []string{"lintel/#"}, Write: []string{"lintel/#"}}}),
		Limits: Limits{MaxPending: 6, MaxPendingPerSource: 4, ConnectTimeout: time.Minute}, // held sockets must not time out: only a refusal may close one
	})
	c := mustConnect(t, b.addr, "bms", "bms-password")
	got := make(chan string, 4)
	if tok := c.Subscribe("lintel/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	var held []net.Conn
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.1", b.addr))
	}
	testwait.Until(t, "4 pending", 5*time.Second, func() bool { return b.pendingCount() == 4 })
	if !closedByServer(dialFrom(t, "127.0.0.1", b.addr), 5*time.Second) {
		t.Fatal("a 5th pending socket from one address was kept")
	}
	// Another address still gets in, up to the global cap.
	held = append(held, dialFrom(t, "127.0.0.2", b.addr), dialFrom(t, "127.0.0.2", b.addr))
	testwait.Until(t, "6 pending", 5*time.Second, func() bool { return b.pendingCount() == 6 })
	if !closedByServer(dialFrom(t, "127.0.0.3", b.addr), 5*time.Second) {
		t.Fatal("a pending socket beyond the global cap was kept")
	}
	if got := b.Counters().PendingRefused; got != 2 {
		t.Fatalf("PendingRefused = %d, want 2", got)
	}
	// The authenticated client is unaffected.
	if tok := c.Publish("lintel/gw1/x", 1, false, "still here"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("authenticated client's publish: %v", tok.Error())
	}
	select {
	case p := <-got:
		if p != "still here" {
			t.Fatalf("got %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("authenticated client got nothing while the pending cap was full")
	}
	// Freed slots admit a new login.
	held[0].Close()
	testwait.Until(t, "slot released", 5*time.Second, func() bool { return b.pendingCount() == 5 })
	mustConnect(t, b.addr, "bms", "bms-password")
	testwait.Until(t, "authenticated client no longer pending", 5*time.Second, func() bool { return b.pendingCount() == 5 })
}

// TestCloseWithThousandsOfIdleSockets: Close ends every connection,
// including ones that never sent CONNECT, and returns promptly.
func TestCloseWithThousandsOfIdleSockets(t *testing.T) {
	const n = 3000
	b, err := New(Config{
		Listeners: []Listener{{Name: "local", Address: "127.0.0.1:0"}},
		Users:     users(t, "bms", "bms-password"),
		Limits:    Limits{MaxPending: n, MaxPendingPerSource: n, ConnectTimeout: time.Minute},
	}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	addr := b.Addr("local")
	mustConnect(t, addr, "bms", "bms-password")
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, dialFrom(t, "127.0.0.1", addr))
	}
	testwait.Until(t, "all pending", 5*time.Second, func() bool { return b.pendingCount() == n })
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- b.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s with idle sockets open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for i, c := range conns {
		if !closedByServer(c, 2*time.Second) {
			t.Fatalf("idle socket %d still open after Close", i)
		}
	}
}

// TestCloseTwice: Close is safe to call again (it used to panic on a closed
// channel when a forward hook was set).
func TestCloseTwice(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Name: "local", Address: "127.0.0.1:0"}}, Forward: []string{"#"}, Spool: &fakeSpool{}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
}

var _ = io.EOF
var _ = os.Getuid

// TestWebsocketListenerIsGated: websocket listeners get the same connect
// deadline and pending caps as TCP ones, and still serve MQTT.
func TestWebsocketListenerIsGated(t *testing.T) {
	b := startBroker(t, Config{
		Listeners: []Listener{{Name: "ws", Kind: Websocket, Address: "127.0.0.1:0"}},
		Users:     users(t, "dev", "dev-password"),
		ACL:       NewACL([]Rule{{User: "dev", Read: []string{"x/#"}}}),
		Limits:    Limits{ConnectTimeout: 300 * time.Millisecond, MaxPendingPerSource: 2},
	})
	addr := b.Addr("ws")
	idle := dialFrom(t, "127.0.0.1", addr)
	dialFrom(t, "127.0.0.1", addr)
	if !closedByServer(dialFrom(t, "127.0.0.1", addr), 5*time.Second) {
		t.Fatal("a third pending websocket socket from one address was kept")
	}
	if !closedByServer(idle, 5*time.Second) {
		t.Fatal("an idle websocket socket was not closed after ConnectTimeout")
	}
	testwait.Until(t, "pending slots free", 5*time.Second, func() bool { return b.pendingCount() == 0 })
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ws://" + addr).SetClientID("ws-1").SetUsername("dev").SetPassword("dev-password").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("websocket login: %v", tok.Error())
	}
	defer c.Disconnect(0)
	got := make(chan string, 1)
	if tok := c.Subscribe("x/#", 0, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("subscribe timed out")
	}
	b.srv.Publish("x/y", []byte("over websocket"), false, 0)
	select {
	case p := <-got:
		if p != "over websocket" {
			t.Fatalf("got %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received over websocket")
	}
	if b.pendingCount() != 0 {
		t.Fatalf("an authenticated websocket client still counts as pending")
	}
}

// TestSecureWebsocketCertificateUsers: on a wss listener with certificate
// users, the client certificate's CN is the user, as on TLS listeners.
func TestSecureWebsocketCertificateUsers(t *testing.T) {
	ca, _ := pki.NewCA("lan-ca", time.Hour)
	server, _ := ca.Server("gw", []string{"127.0.0.1"}, time.Hour)
	cert, _ := server.TLS()
	b := startBroker(t, Config{
		Listeners: []Listener{{Name: "wss", Kind: Websocket, Address: "127.0.0.1:0", CertUsers: true, TLS: &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}}},
	})
	bms, _ := ca.Client("bms", time.Hour)
	cc, _ := bms.TLS()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("wss://" + b.Addr("wss")).SetClientID("wss-1").
		SetTLSConfig(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cc}}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("wss client with certificate bms: %v", tok.Error())
	}
	defer c.Disconnect(0)
	cl, ok := b.srv.Clients.Get("wss-1")
	if !ok || string(cl.Properties.Username) != "bms" {
		t.Fatal("the certificate's CN did not become the user name")
	}
}
