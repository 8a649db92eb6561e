package cloudtest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/gateway/pki"
)

// Message is one PUBLISH the broker received.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
	Client  string // the client certificate's common name
	At      time.Time
}

// Seq returns the "seq" field of a JSON payload, or 0.
func (m Message) Seq() uint64 {
	var v struct {
		Seq uint64 `json:"seq"`
	}
	json.Unmarshal(m.Payload, &v)
	return v.Seq
}

// Broker is a running cloud stand-in. Stop and Restart simulate an outage;
// the address stays the same.
type Broker struct {
	CA   *pki.CA
	addr string
	tls  *tls.Config
	log  *slog.Logger

	mu        sync.Mutex
	srv       *mqtt.Server
	sock      *trackedListener
	received  []Message
	pubacked  map[uint64]int // seq → PUBACKs sent for it
	inflight  map[string]map[uint16]uint64
	watchers  []func(Message)
	killAfter int  // >0: drop everything once this many more PUBLISHes arrive
	discard   bool // benchmarks: do not keep messages, only call watchers
	dropOn    func(topic string) bool
	dropped   int
}

// Start mints a server certificate from ca and listens on 127.0.0.1:0.
func Start(ca *pki.CA, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pair, err := ca.Server("cloud", []string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := pair.TLS()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		CA:  ca,
		log: logger,
		tls: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    ca.Pool(),
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		pubacked: map[uint64]int{},
		inflight: map[string]map[uint16]uint64{},
	}
	if err := b.serve("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) serve(addr string) error {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(&hook{b: b}, nil); err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Tracked under TLS, so that mochi's clients still hold a *tls.Conn.
	sock := &trackedListener{Listener: tcp, conns: map[*trackedConn]struct{}{}}
	if err := srv.AddListener(ownClients{listeners.NewNet("cloud", tls.NewListener(sock, b.tls))}); err != nil {
		sock.Close()
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	b.mu.Lock()
	b.srv, b.sock, b.addr = srv, sock, sock.Addr().String()
	b.mu.Unlock()
	return nil
}

// Addr is the listener's host:port.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's address for the uplink config.
func (b *Broker) URL() string { return "mqtts://" + b.addr }

// Stop closes the broker and drops every client, like a crash.
func (b *Broker) Stop() {
	b.mu.Lock()
	srv, sock := b.srv, b.sock
	b.srv, b.sock = nil, nil
	b.mu.Unlock()
	if srv != nil {
		sock.closeAll()
		srv.Close()
	}
}

// trackedListener keeps every connection it accepted, so that Stop can drop
// them all itself: mochi's own way (closing each listener's clients) walks
// its client table with a read lock taken twice and deadlocks when a client
// connects or leaves at that moment (mochi-mqtt/server#488; the local broker
// works around it the same way).
type trackedListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	unread int // accepted connections mochi has not read from yet
}

type trackedConn struct {
	net.Conn
	l    *trackedListener
	read atomic.Bool
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.unread++
	l.mu.Unlock()
	return tc, nil
}

// Read notes mochi's first read: mochi registers a connection with the
// WaitGroup its Close waits on just before that read.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.read.CompareAndSwap(false, true) {
		c.l.mu.Lock()
		c.l.unread--
		c.l.mu.Unlock()
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// closeAll stops accepting and drops every connection, after letting mochi
// take over the ones already accepted (at most a second), so that its
// WaitGroup is not added to while Close waits on it.
func (l *trackedListener) closeAll() {
	l.Listener.Close()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		n := l.unread
		l.mu.Unlock()
		if n <= 0 {
			break
		}
	}
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// ownClients leaves closing clients to trackedListener.closeAll.
type ownClients struct{ listeners.Listener }

func (l ownClients) Close(listeners.CloseFn) { l.Listener.Close(func(string) {}) }

// Restart starts the broker again on the same address, retrying briefly
// while the port is released.
func (b *Broker) Restart() error {
	var err error
	for range 50 {
		if err = b.serve(b.addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("restart cloud broker on %s: %w", b.addr, err)
}

// Discard stops keeping received messages (Received stays empty and
// Pubacked false); watchers are still called. For benchmarks.
func (b *Broker) Discard() {
	b.mu.Lock()
	b.discard = true
	b.mu.Unlock()
}

// KillAfter makes the broker crash when the n-th next PUBLISH arrives,
// before that PUBLISH is acknowledged.
func (b *Broker) KillAfter(n int) {
	b.mu.Lock()
	b.killAfter = n
	b.mu.Unlock()
}

// DropOn makes the broker drop a client's connection, without a PUBACK,
// when it publishes a topic for which refuse returns true, as Mosquitto
// does for a PUBLISH with a wildcard in its topic.
func (b *Broker) DropOn(refuse func(topic string) bool) {
	b.mu.Lock()
	b.dropOn = refuse
	b.mu.Unlock()
}

// Dropped counts the connections DropOn dropped.
func (b *Broker) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Watch calls fn for every PUBLISH received from now on (on the broker's
// goroutine; fn must not block).
func (b *Broker) Watch(fn func(Message)) {
	b.mu.Lock()
	b.watchers = append(b.watchers, fn)
	b.mu.Unlock()
}

// Received returns a copy of every PUBLISH received so far.
func (b *Broker) Received() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.received...)
}

// Pubacked reports whether the broker sent a PUBACK for a message with seq.
func (b *Broker) Pubacked(seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pubacked[seq] > 0
}

// hook accepts clients that passed the TLS client-certificate check, records
// PUBLISHes, and records PUBACKs when they are written to the socket.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "cloudtest" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnPacketSent, mqtt.OnPacketRead}, []byte{b})
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	// The listener already required a certificate signed by the CA.
	_, ok := cl.Net.Conn.(*tls.Conn)
	return ok
}

func (h *hook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	m := Message{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), Retain: pk.FixedHeader.Retain, Client: clientName(cl), At: time.Now()}
	b := h.b
	b.mu.Lock()
	if !b.discard {
		b.received = append(b.received, m)
	}
	if pk.FixedHeader.Qos > 0 && !b.discard {
		if b.inflight[cl.ID] == nil {
			b.inflight[cl.ID] = map[uint16]uint64{}
		}
		b.inflight[cl.ID][pk.PacketID] = m.Seq()
	}
	kill := false
	if b.killAfter > 0 {
		b.killAfter--
		kill = b.killAfter == 0
	}
	watchers := b.watchers
	b.mu.Unlock()
	for _, w := range watchers {
		w(m)
	}
	if kill {
		go b.Stop()
		cl.Stop(fmt.Errorf("cloudtest: killed"))
		return pk, packets.ErrRejectPacket // no PUBACK for this one
	}
	return pk, nil
}

// errDropped ends a connection DropOn refuses.
var errDropped = errors.New("cloudtest: topic refused, connection dropped")

func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	b := h.b
	b.mu.Lock()
	drop := b.dropOn != nil && b.dropOn(pk.TopicName)
	if drop {
		b.dropped++
	}
	b.mu.Unlock()
	if drop {
		cl.Stop(errDropped)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Puback {
		return
	}
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq, ok := b.inflight[cl.ID][pk.PacketID]; ok {
		b.pubacked[seq]++
		delete(b.inflight[cl.ID], pk.PacketID)
	}
}

func clientName(cl *mqtt.Client) string {
	if c, ok := cl.Net.Conn.(*tls.Conn); ok {
		if st := c.ConnectionState(); len(st.PeerCertificates) > 0 {
			return st.PeerCertificates[0].Subject.CommonName
		}
	}
	return ""
}
