package localbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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

// Listener kinds.
const (
	TCP       = "tcp"
	Websocket = "websocket"
	Unix      = "unix"
)

// Listener is one endpoint of the broker.
type Listener struct {
	Name string
	Kind string // tcp (default), websocket, unix
	// Address is host:port for tcp and websocket (port 0 picks a free
	// port), the socket path for unix.
	Address string
	// TLS nil means plain MQTT, allowed on loopback addresses and unix
	// sockets only.
	TLS *tls.Config
	// CertUsers: the client certificate's common name is the user name and
	// no password is needed. TLS must require and verify client certificates.
	CertUsers bool
}

// Limits bound what clients, authenticated or not, can cost the gateway.
// Zero means the default.
type Limits struct {
	MaxPacket  uint32 // bytes; default 64 KiB
	MaxClients int64  // authenticated clients; default 64
	// ConnectTimeout is how long a new connection has for the TLS handshake
	// and CONNECT (and to wait for a password check); default 5 s.
	ConnectTimeout time.Duration
	// MaxPending caps connections that have not authenticated yet, in total
	// (default 256) and per source (MaxPendingPerSource, default 16): an
	// IPv4 address, an IPv6 /64, or the peer uid on a unix socket.
	MaxPending          int
	MaxPendingPerSource int
	// MaxFiltersPerClient (default 100) and MaxFilters (all network
	// clients' sessions together, default 2,000) cap subscriptions; a
	// filter beyond either is refused in SUBACK (0x97 quota exceeded, or
	// 0x80 for MQTT 3.1.1). A filter has at most 16 levels.
	MaxFiltersPerClient int
	MaxFilters          int
	// MaxPasswordChecks bounds concurrent bcrypt comparisons (default 2),
	// so a flood of logins cannot starve the gateway of CPU. A login that
	// finds none free waits until its connect deadline, then is refused.
	MaxPasswordChecks int
}

// Spool is where forwarded messages go: the durable buffer.
type Spool interface {
	// Append returns once the records are durable.
	Append(ctx context.Context, recs ...buffer.Record) error
	// AppendAsync calls done once the records are durable (or failed), in
	// order, without blocking.
	AppendAsync(ctx context.Context, done func(error), recs ...buffer.Record) error
	// Enqueue returns once the records are accepted, before they are durable.
	Enqueue(ctx context.Context, recs ...buffer.Record) error
}

// Config describes the broker.
type Config struct {
	Listeners []Listener
	Users     *Users
	ACL       *ACL
	Limits    Limits
	// Forward lists the topic filters that are copied into Spool, except
	// topics matching ForwardExclude (commands: forwarding them would bring
	// them back from the cloud a second time).
	Forward        []string
	ForwardExclude []string
	Spool          Spool
	// AppendTimeout bounds how long a client's QoS1 publish waits for the
	// buffer before the client is disconnected (default 10s).
	AppendTimeout time.Duration
	// GuardBase is the first back-off after repeated failed logins from one
	// address (default 1s, doubling to 5 minutes).
	GuardBase time.Duration
}

func (c *Config) ensureDefaults() {
	if c.Limits.MaxPacket == 0 {
		c.Limits.MaxPacket = 64 << 10
	}
	if c.Limits.MaxClients == 0 {
		c.Limits.MaxClients = 64
	}
	if c.Limits.ConnectTimeout <= 0 {
		c.Limits.ConnectTimeout = 5 * time.Second
	}
	if c.Limits.MaxPending <= 0 {
		c.Limits.MaxPending = 256
	}
	if c.Limits.MaxPendingPerSource <= 0 {
		c.Limits.MaxPendingPerSource = 16
	}
	if c.Limits.MaxFiltersPerClient <= 0 {
		c.Limits.MaxFiltersPerClient = 100
	}
	if c.Limits.MaxFilters <= 0 {
		c.Limits.MaxFilters = 2_000
	}
	if c.Limits.MaxPasswordChecks <= 0 {
		c.Limits.MaxPasswordChecks = 2
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

	fwd       *forwardHook // nil when nothing is forwarded
	gate      *gate
	subs      *subLimitHook
	sockets   []net.Listener // listener sockets Lintel owns, closed first by Close
	closeOnce sync.Once
	closeErr  error
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
	b := &Broker{srv: srv, cfg: cfg, log: log, gate: newGate(cfg.Limits)}
	b.auth = &authHook{log: log, guard: newGuard(cfg.GuardBase), certUsers: map[string]bool{}, gate: b.gate,
		checks: make(chan struct{}, cfg.Limits.MaxPasswordChecks), connectTimeout: cfg.Limits.ConnectTimeout}
	b.auth.users.Store(cfg.Users)
	b.auth.acl.Store(cfg.ACL)
	if err := srv.AddHook(b.auth, nil); err != nil { // first: denied publishes stop here
		return nil, err
	}
	b.subs = &subLimitHook{perClient: cfg.Limits.MaxFiltersPerClient, total: cfg.Limits.MaxFilters, log: log,
		subscribed:  func() int { return int(atomic.LoadInt64(&srv.Info.Subscriptions)) },
		readable:    b.auth.canRead,
		unsubscribe: srv.UnsubscribeClient}
	if err := srv.AddHook(b.subs, nil); err != nil {
		return nil, err
	}
	if len(cfg.Forward) > 0 && cfg.Spool != nil {
		fwd := &forwardHook{forwarded: b.forwarded, spool: cfg.Spool, timeout: cfg.AppendTimeout, log: log,
			deliver: srv.Publish, completions: make(chan completion, 4096), stop: make(chan struct{}), stopped: make(chan struct{})}
		if err := srv.AddHook(fwd, nil); err != nil {
			return nil, err
		}
		b.fwd = fwd
		go fwd.complete()
	}
	for _, l := range cfg.Listeners {
		if err := b.addListener(l); err != nil {
			b.Close()
			return nil, fmt.Errorf("listener %q (%s): %w", l.Name, l.Address, err)
		}
	}
	return b, nil
}

func (b *Broker) addListener(l Listener) error {
	if l.CertUsers && (l.TLS == nil || l.TLS.ClientAuth != tls.RequireAndVerifyClientCert) {
		return errors.New("certificate user names need TLS that requires and verifies client certificates")
	}
	// Lintel owns every socket (see Close) and hands it to mochi.
	switch l.Kind {
	case "", TCP, Websocket:
		if l.TLS == nil {
			if err := requireLoopback(l.Address); err != nil {
				return err
			}
		}
		sock, err := net.Listen("tcp", l.Address)
		if err != nil {
			return err
		}
		if l.TLS == nil {
			// Defence in depth: check where the socket really is bound.
			if err := requireLoopback(sock.Addr().String()); err != nil {
				sock.Close()
				return fmt.Errorf("bound to %s: %w", sock.Addr(), err)
			}
		}
		return b.serve(l, sock)
	case Unix:
		if l.TLS != nil {
			return errors.New("unix sockets take no TLS")
		}
		// Only a stale socket is removed, never another kind of file.
		if fi, err := os.Lstat(l.Address); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(l.Address)
		}
		sock, err := net.Listen("unix", l.Address)
		if err != nil {
			return err
		}
		// Local clients only, but not every local user: owner and group.
		if err := os.Chmod(l.Address, 0o660); err != nil {
			sock.Close()
			return err
		}
		return b.serve(l, sock)
	default:
		return fmt.Errorf("unknown listener kind %q", l.Kind)
	}
}

// serve hands a socket Lintel owns to mochi, behind the gate (and TLS).
func (b *Broker) serve(l Listener, sock net.Listener) error {
	var ln net.Listener = &gatedListener{Listener: sock, g: b.gate}
	if l.TLS != nil {
		ln = tls.NewListener(ln, l.TLS)
	}
	var ml listeners.Listener = listeners.NewNet(l.Name, ln)
	if l.Kind == Websocket {
		ml = newWSListener(l.Name, ln, l.TLS != nil, b.gate, b.log)
	}
	if err := b.srv.AddListener(ownClients{ml}); err != nil {
		sock.Close()
		return err
	}
	b.sockets = append(b.sockets, sock)
	b.auth.certUsers[l.Name] = l.CertUsers
	return nil
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

// Close stops accepting, closes every connection at once (including ones
// that never sent CONNECT) and stops the broker. Later calls return the
// first call's result.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		for _, s := range b.sockets {
			s.Close()
		}
		b.gate.close()
		// mochi's Close waits on a WaitGroup that each connection's
		// goroutine Adds to before its first read: let every connection
		// already handed over get there, so the Add cannot race the Wait.
		b.gate.waitHandedOver(time.Second)
		b.closeErr = b.srv.Close()
		if b.fwd != nil {
			close(b.fwd.stop)
			<-b.fwd.stopped
		}
	})
	return b.closeErr
}

// ownClients keeps mochi from closing a listener's clients itself: the gate
// has closed every connection by then (see Close). mochi's way walks its
// client table with a read lock taken twice (Clients.GetByListener calls
// Len), which deadlocks Close for good when a client leaving at that moment
// queues for the write lock in between (mochi-mqtt/server#488, unfixed in
// v2.7.9).
type ownClients struct{ listeners.Listener }

func (l ownClients) Close(listeners.CloseFn) { l.Listener.Close(func(string) {}) }

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
func (b *Broker) Publish(ctx context.Context, topic string, payload []byte, retain bool, prio Priority) error {
	var spoolErr error
	if b.cfg.Spool != nil && b.forwarded(topic) {
		spoolErr = b.cfg.Spool.Enqueue(ctx, buffer.Record{Topic: topic, Payload: payload, Retain: retain, Priority: prio.record()})
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
	for _, f := range b.cfg.ForwardExclude {
		if MatchTopic(f, topic) {
			return false
		}
	}
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

// Counters returns what the broker refused so far.
func (b *Broker) Counters() Counters {
	c := b.auth.counters()
	c.SubscribeRefused = b.subs.refused.Load()
	return c
}

// SetAuth replaces the users and the ACL (a configuration reload); clients
// already connected keep their session, and every later check uses the new
// rules.
func (b *Broker) SetAuth(users *Users, acl *ACL) {
	if users == nil {
		users = NewUsers()
	}
	if acl == nil {
		acl = NewACL(nil)
	}
	b.auth.users.Store(users)
	b.auth.acl.Store(acl)
}

// Clients is the number of connected network clients.
func (b *Broker) Clients() int64 { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) }

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
