package statuspage

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

//go:embed assets
var assets embed.FS

// Snapshot is what the page shows besides live values, read on each view.
type Snapshot struct {
	GatewayID string
	Version   string
	Uplink    *Uplink // nil: no uplink configured
	Buffer    Buffer
	Buses     []Bus
	Commands  []Command // newest first
}

// Uplink is the cloud link's state.
type Uplink struct {
	Connected      bool
	LastAck        time.Time // last PUBACK, zero if none yet
	InFlight       int64
	OldestInflight time.Duration
	RetryAt        time.Time // backing off until, zero when not
	Acked          uint64    // PUBACKs since start: the chart's drain rate
	LastError      string
	CertNotAfter   time.Time // zero if unknown
}

// Buffer is the store-and-forward queue's state.
type Buffer struct {
	Records     uint64
	Bytes       int64
	Oldest      time.Time // zero when empty
	Drops       map[string]uint64
	DiskFree    int64 // bytes; negative when unknown
	DeadLetters uint64
	Problem     string
}

// Bus is one field bus and its devices.
type Bus struct {
	Name      string
	Kind      string
	Devices   []Device
	LastError string
	Poll      string // poll timing, e.g. "every 5s, last answer 12ms"
}

// Device is one device's state on its bus, as its adapter reports it
// (adapters.DeviceState).
type Device struct {
	Name   string
	Online bool
	// Circuit is the adapter's back-off state: closed (tried at its
	// period), open (backing off until RetryAt) or half-open (the retry is
	// due); empty when the adapter does not say. Shown unless the device
	// is online with a closed circuit.
	Circuit string
	RetryAt time.Time // next try while backing off, zero when not
	// LastError is the kind of the device's most recent failure, a fixed
	// phrase without frame contents, kept after the device answers again;
	// LastErrorAt when it happened. Empty and zero when none.
	LastError   string
	LastErrorAt time.Time
	Failures    int // failed polls or requests in a row
}

// Command is one line of the command audit log: who asked what, and the
// outcome. Command values are never recorded, so none are shown.
type Command struct {
	Time   time.Time
	Source string
	ID     string
	Device string
	Point  string
	OK     bool
	Error  string
}

// Finding is one audit result.
type Finding struct {
	Check  string
	Status string // PASS, WARN or FAIL
	Reason string
	Fix    string
}

// Source reports the gateway's state.
type Source interface {
	Snapshot() Snapshot
}

// Actions are the only things the page can do, each needing RoleOperate.
type Actions interface {
	Audit() []Finding
	ReconnectUplink() error
	ClearDeadLetters() (int, error)
}

// Subscriber delivers broker messages in process (localbroker.Broker).
type Subscriber interface {
	Subscribe(filter string, fn func(topic string, payload []byte)) (unsubscribe func(), err error)
}

// PasswordChecker checks a user's password (localbroker.Users).
type PasswordChecker interface {
	Check(name string, password []byte) bool
}

// LoginGuard backs off repeated failed logins (localbroker.Guard).
type LoginGuard interface {
	Blocked(source, user string) bool
	Fail(source, user string)
	Succeed(source, user string)
}

// Role is what a user may do on the page.
type Role int

// Roles, each including the one before.
const (
	RoleNone    Role = iota
	RoleView         // see the page
	RoleOperate      // and run the actions
)

// Config describes a status page.
type Config struct {
	// Address is where it listens; without TLS it must be loopback.
	Address string
	// TLS, when set, serves HTTPS; with ClientCAs and VerifyClientCertIfGiven
	// a verified client certificate logs its common name in.
	TLS     *tls.Config
	Users   PasswordChecker
	Guard   LoginGuard // required: New refuses a page without back-off
	RoleOf  func(user string) Role
	Source  Source
	Actions Actions
	// Broker and Filter feed the live values (e.g. lintel/<id>/+/+).
	Broker Subscriber
	Filter string
	// SampleEvery is the chart's sampling period (default 10s); the chart
	// keeps an hour.
	SampleEvery time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
}

// Server is a status page.
type Server struct {
	cfg      Config
	log      *slog.Logger
	key      []byte // HMAC key of login CSRF tokens
	pages    *template.Template
	static   http.Handler
	sessions *sessions
	live     *hub
	samples  *ring
	sse      chan struct{} // bounds open event streams

	auditMu sync.Mutex
	audit   []Finding
	auditAt time.Time
}

// maxStreams bounds concurrent event streams (browsers with the page open).
const maxStreams = 16

// New checks cfg and prepares a Server; Serve runs it.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil || cfg.Users == nil || cfg.RoleOf == nil || cfg.Guard == nil {
		// A page without a login guard would let passwords be guessed at
		// full speed: refuse it rather than run it unguarded.
		return nil, errors.New("status page: source, users, roles and a login guard are required")
	}
	if cfg.TLS == nil {
		if err := requireLoopback(cfg.Address); err != nil {
			return nil, err
		}
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pages, err := template.New("").Funcs(funcs(cfg.Now)).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("status page templates: %w", err)
	}
	static, _ := fs.Sub(assets, "assets/static")
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		key:      make([]byte, 32),
		pages:    pages,
		static:   http.StripPrefix("/static/", http.FileServerFS(static)),
		sessions: newSessions(cfg.Now),
		live:     newHub(),
		samples:  newRing(int(time.Hour / cfg.SampleEvery)),
		sse:      make(chan struct{}, maxStreams),
	}
	rand.Read(s.key)
	return s, nil
}

// requireLoopback refuses a plain-HTTP address that other hosts can reach.
func requireLoopback(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("status page address %q: %w", address, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("status page address %q: without tls the page is only served on loopback (127.0.0.1 or ::1)", address)
}

// Serve serves on l until ctx ends, sampling the chart and following the
// live values meanwhile. Without TLS, l must be a loopback listener.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.cfg.TLS == nil {
		if err := requireLoopback(l.Addr().String()); err != nil {
			l.Close()
			return err
		}
	} else {
		l = tls.NewListener(l, s.cfg.TLS)
	}
	if s.cfg.Broker != nil && s.cfg.Filter != "" {
		unsubscribe, err := s.cfg.Broker.Subscribe(s.cfg.Filter, s.live.update)
		if err != nil {
			l.Close()
			return fmt.Errorf("status page live values: %w", err)
		}
		defer unsubscribe()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.sample(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		stop, cancelStop := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancelStop()
		srv.Shutdown(stop) // event streams end with ctx (BaseContext)
	})
	if s.cfg.Actions != nil {
		s.runAudit()
	}
	err := srv.Serve(l)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// sample records buffer depth and acknowledged records every SampleEvery.
func (s *Server) sample(ctx context.Context) {
	t := time.NewTicker(s.cfg.SampleEvery)
	defer t.Stop()
	s.takeSample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.takeSample()
		}
	}
}

func (s *Server) takeSample() {
	snap := s.cfg.Source.Snapshot()
	var acked uint64
	if snap.Uplink != nil {
		acked = snap.Uplink.Acked
	}
	s.samples.add(sample{at: s.cfg.Now(), depth: snap.Buffer.Records, acked: acked})
}

func (s *Server) runAudit() []Finding {
	f := s.cfg.Actions.Audit()
	s.auditMu.Lock()
	s.audit, s.auditAt = f, s.cfg.Now()
	s.auditMu.Unlock()
	return f
}

func (s *Server) lastAudit() ([]Finding, time.Time) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	return s.audit, s.auditAt
}
