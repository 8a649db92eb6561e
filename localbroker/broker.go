package localbroker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/buffer"
)

// ErrPlaintextNetwork is returned for a listener that would accept plain TCP
// on an address other than loopback.
var ErrPlaintextNetwork = errors.New("a listener on a non-loopback address must use TLS")

// Listener is one network endpoint of the broker.
type Listener struct {
	Name    string
	Address string      // host:port; port 0 picks a free port
	TLS     *tls.Config // nil: plain TCP, allowed on loopback only
}

// Limits bound what one client can cost the gateway.
type Limits struct {
	MaxPacket  uint32 // bytes; default 64 KiB
	MaxClients int64  // default 64
}

// Spool is where forwarded messages go: the durable buffer.
type Spool interface {
	// Append returns once the records are durable.
	Append(ctx context.Context, recs ...buffer.Record) error
	// Enqueue returns once the records are accepted, before they are durable.
	Enqueue(ctx context.Context, recs ...buffer.Record) error
}

// Config describes the broker.
type Config struct {
	Listeners []Listener
	Users     *Users
	ACL       *ACL
	Limits    Limits
	// Forward lists the topic filters that are copied into Spool.
	Forward []string
	Spool   Spool
	// AppendTimeout bounds how long a client's QoS1 publish waits for the
	// buffer before the client is disconnected (default 10s).
	AppendTimeout time.Duration
}

func (c *Config) ensureDefaults() {
	if c.Limits.MaxPacket == 0 {
		c.Limits.MaxPacket = 64 << 10
	}
	if c.Limits.MaxClients == 0 {
		c.Limits.MaxClients = 64
	}
	if c.AppendTimeout == 0 {
		c.AppendTimeout = 10 * time.Second
	}
	if c.Users == nil {
		c.Users = NewUsers()
	}
	if c.ACL == nil {
		c.ACL = NewACL(nil)
	}
}

// Broker is the embedded MQTT broker: the bus between adapters, local
// clients and the uplink.
type Broker struct {
	srv  *mqtt.Server
	cfg  Config
	log  *slog.Logger
	auth *authHook

	subMu  sync.Mutex
	nextID int
}

// New builds the broker and binds its listeners; it accepts clients after
// Start. A plain-TCP listener on a non-loopback address is refused.
func New(cfg Config, logger *slog.Logger) (*Broker, error) {
	cfg.ensureDefaults()
	log := logger.With("component", "localbroker")
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.Limits.MaxPacket
	caps.MaximumClients = cfg.Limits.MaxClients
	caps.MaximumMessageExpiryInterval = 3600 // the buffer, not the broker, keeps data
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumInflight = 1024
	caps.ReceiveMaximum = 256
	srv := mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		SysTopicResendInterval: 10,
		Logger:                 slog.New(minLevel{Handler: log.Handler(), min: slog.LevelWarn}),
	})
	b := &Broker{srv: srv, cfg: cfg, log: log, auth: &authHook{log: log}}
	b.auth.users.Store(cfg.Users)
	b.auth.acl.Store(cfg.ACL)
	if err := srv.AddHook(b.auth, nil); err != nil {
		return nil, err
	}
	if len(cfg.Forward) > 0 && cfg.Spool != nil {
		fwd := &forwardHook{filters: cfg.Forward, spool: cfg.Spool, timeout: cfg.AppendTimeout, log: log}
		if err := srv.AddHook(fwd, nil); err != nil {
			return nil, err
		}
	}
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			if err := requireLoopback(l.Address); err != nil {
				return nil, fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, err)
			}
		}
		tcp := listeners.NewTCP(listeners.Config{ID: l.Name, Address: l.Address, TLSConfig: l.TLS})
		if err := srv.AddListener(tcp); err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		if l.TLS == nil {
			// Defence in depth: check where the socket really is bound.
			if err := requireLoopback(tcp.Address()); err != nil {
				srv.Close()
				return nil, fmt.Errorf("listener %q bound to %s: %w", l.Name, tcp.Address(), err)
			}
		}
	}
	return b, nil
}

// requireLoopback refuses addresses that are not on a loopback interface;
// host names must resolve to loopback addresses only.
func requireLoopback(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if host == "" {
		return ErrPlaintextNetwork // ":1883" is every interface
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		if ips, err = net.LookupIP(host); err != nil {
			return err
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return ErrPlaintextNetwork
		}
	}
	return nil
}

// Start accepts clients.
func (b *Broker) Start() error { return b.srv.Serve() }

// Close disconnects every client and closes the listeners.
func (b *Broker) Close() error { return b.srv.Close() }

// Addr returns the bound address of a listener (useful with port 0).
func (b *Broker) Addr(listener string) string {
	if l, ok := b.srv.Listeners.Get(listener); ok {
		return l.Address()
	}
	return ""
}

// Publish publishes in process, bypassing authentication and ACLs. A message
// on a forwarded topic is handed to the spool first, with the given delivery
// priority; a spool error is returned (after local delivery) so the
// publisher can count it.
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte, retain bool, prio buffer.Priority) error {
	var spoolErr error
	if b.cfg.Spool != nil && b.forwarded(topic) {
		spoolErr = b.cfg.Spool.Enqueue(ctx, buffer.Record{Topic: topic, Payload: payload, Retain: retain, Priority: prio})
	}
	if err := b.srv.Publish(topic, payload, retain, 0); err != nil {
		return err
	}
	if spoolErr != nil {
		return fmt.Errorf("buffer: %w", spoolErr)
	}
	return nil
}

func (b *Broker) forwarded(topic string) bool {
	for _, f := range b.cfg.Forward {
		if MatchTopic(f, topic) {
			return true
		}
	}
	return false
}

// Subscribe calls fn for every message on filter until the returned function
// is called. fn runs on the publisher's goroutine and must not block.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte)) (unsubscribe func(), err error) {
	b.subMu.Lock()
	b.nextID++
	id := b.nextID
	b.subMu.Unlock()
	err = b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
	if err != nil {
		return nil, err
	}
	return func() { b.srv.Unsubscribe(filter, id) }, nil
}

// AuthFailures is the number of refused connection attempts so far.
func (b *Broker) AuthFailures() uint64 { return b.auth.failures.Load() }

// authHook authenticates with bcrypt and authorises with the ACL.
type authHook struct {
	mqtt.HookBase
	users    atomic.Pointer[Users]
	acl      atomic.Pointer[ACL]
	log      *slog.Logger
	failures atomic.Uint64
}

func (h *authHook) ID() string { return "lintel-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate refuses anonymous clients and wrong passwords.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if user != "" && h.users.Load().Check(user, pk.Connect.Password) {
		return true
	}
	h.failures.Add(1)
	h.log.Warn("client refused: bad credentials", "user", user, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
	return false
}

// OnACLCheck applies the ACL; it is not called for in-process publishes.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	acl := h.acl.Load()
	if write {
		return acl.CanWrite(user, topic)
	}
	return acl.CanRead(user, topic)
}

// forwardHook copies network clients' publishes on forwarded topics into the
// spool. mochi calls OnPublish before it sends the PUBACK, so a QoS1 client's
// PUBACK means the message is durable.
type forwardHook struct {
	mqtt.HookBase
	filters []string
	spool   Spool
	timeout time.Duration
	log     *slog.Logger
}

func (h *forwardHook) ID() string { return "lintel-forward" }

func (h *forwardHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *forwardHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline { // Broker.Publish already spooled it
		return pk, nil
	}
	forwarded := false
	for _, f := range h.filters {
		if MatchTopic(f, pk.TopicName) {
			forwarded = true
			break
		}
	}
	if !forwarded {
		return pk, nil
	}
	rec := buffer.Record{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), Retain: pk.FixedHeader.Retain}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	var err error
	if pk.FixedHeader.Qos == 0 {
		err = h.spool.Enqueue(ctx, rec)
	} else {
		err = h.spool.Append(ctx, rec)
	}
	if err == nil {
		return pk, nil
	}
	h.log.Error("cannot buffer a client's message; not acknowledged", "client", cl.ID, "topic", pk.TopicName, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		code := packets.ErrImplementationSpecificError
		if errors.Is(err, buffer.ErrFull) {
			code = packets.ErrQuotaExceeded
		}
		return pk, code // mochi answers with a failing PUBACK reason code
	}
	// MQTT 3.1.1 has no failing PUBACK: drop the connection so the client
	// keeps the message and sends it again after reconnecting.
	cl.Stop(fmt.Errorf("buffer: %w", err))
	return pk, packets.ErrRejectPacket
}

// minLevel drops records below min; mochi logs every connection at info.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
