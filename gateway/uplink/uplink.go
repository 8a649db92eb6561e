package uplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
)

// Source is the durable queue the uplink drains.
type Source interface {
	// Read blocks until records are available and returns up to max of
	// them, each once until Rewind.
	Read(ctx context.Context, max int) ([]buffer.Record, error)
	// Ack deletes delivered records.
	Ack(seqs ...uint64) error
	// Rewind makes Read start again at the oldest unacked record.
	Rewind()
	// DeadLetter moves records that cannot be delivered out of the queue,
	// durably, with a reason.
	DeadLetter(reason string, seqs ...uint64) error
}

// Config describes the connection to the cloud broker.
type Config struct {
	// Broker is mqtts://host:port (ssl:// and tls:// are accepted too).
	Broker string
	// TLS must carry the CA to verify the broker and a client certificate.
	TLS      *tls.Config
	ClientID string
	// GatewayID names the gateway in its status topic.
	GatewayID string
	// TopicPrefix goes before every topic sent to the cloud (the default
	// encoder's and the status and command topics).
	TopicPrefix string
	// Encoder makes the cloud's topic and payload of a record (default:
	// SeqJSON with TopicPrefix).
	Encoder Encoder
	// MaxInflight bounds the PUBLISHes without PUBACK (default 64). A
	// larger window drains faster (see BenchmarkDrainVsBridge); each flight
	// costs a token, not its payload. Some cloud brokers cap it.
	MaxInflight int
	Version     string // reported in the online status
	// Buffered, if set, reports the buffer depth for the online status.
	Buffered func() uint64
	// OnCommand, if set, receives messages on the gateway's command topics
	// (lintel/<gateway>/+/+/set under TopicPrefix, prefix removed). It runs
	// on its own goroutine per message.
	OnCommand func(topic string, payload []byte)
	// DrainTimeout bounds how long Run waits for in-flight PUBACKs at
	// shutdown (default 2s).
	DrainTimeout time.Duration
	// AckTimeout ends a session when the oldest message in flight has had
	// no PUBACK for this long since it became the oldest: a half-open
	// connection (NAT dropped, broker hung) otherwise looks alive until TCP
	// gives up (default 30s). Stats.OldestInflight shows a hung cloud
	// sooner.
	AckTimeout time.Duration
	// ConnectTimeout bounds the TCP, TLS and CONNECT handshake (default 15s).
	ConnectTimeout time.Duration
	// DeadLetterAfter is how many sessions in a row may be lost with the
	// same record in flight before it is dead-lettered (default 3).
	DeadLetterAfter int
	MinBackoff      time.Duration // default 500ms
	MaxBackoff      time.Duration // default 60s
	// Clock, if set, replaces the system clock for backoff, the ack timeout
	// and in-flight ages (tests).
	Clock Clock
	// Session, if set, takes part in every connection of a cloud format
	// with session state (Sparkplug B). It replaces the lintel $status
	// messages and their Will; OnCommand is unaffected.
	Session Session
}

// Session is what a cloud format with session state adds to the Encoder:
// a Will per connection, messages after each connect and before a clean
// disconnect, a hold on delivery, and messages sent at QoS 0.
//
// A record published at QoS 0 (fenced) is acked in the buffer only when the
// PUBACK of a later Fence on the same connection arrived: MQTT keeps the
// order of one connection's PUBLISHes, so the broker then had the record.
type Session interface {
	// Will is the Last Will of the next connection; called before each
	// connect attempt.
	Will() (topic string, payload []byte, qos byte, retain bool)
	// Connected runs after each CONNACK, before any record is sent
	// (births, subscriptions). An error ends the session.
	Connected(ctx context.Context, c paho.Client) error
	// Hold blocks until records may be sent, or ctx ends (its error).
	// It is called before each record is encoded.
	Hold(ctx context.Context) error
	// Publish sends one encoded record on c and reports whether it went at
	// QoS 0 and so needs a Fence before it may be acked.
	Publish(c paho.Client, topic string, retain bool, payload []byte) (t paho.Token, fenced bool)
	// Fence publishes a QoS 1 message after fenced records.
	Fence(c paho.Client) paho.Token
	// Closing runs before the uplink DISCONNECTs: at a clean shutdown and
	// when it ends a session itself (an ack timeout, a buffer error), not
	// after the connection was lost. The broker sends no Will after a
	// DISCONNECT, so this is where a death message goes.
	Closing(c paho.Client) paho.Token
}

// Encoder turns a buffered record into what the cloud receives. It is
// called on the delivery goroutine, once per send (again after a
// reconnect), and must be deterministic: a record that fails to encode is
// dead-lettered with the error as the reason.
type Encoder interface {
	Encode(r buffer.Record) (topic string, payload []byte, err error)
}

// SeqJSON is the default encoder: the record's topic under TopicPrefix, and
// the payload with the gateway's "seq" (see WithSeq).
type SeqJSON struct{ TopicPrefix string }

// Encode implements Encoder.
func (e SeqJSON) Encode(r buffer.Record) (string, []byte, error) {
	return e.TopicPrefix + r.Topic, WithSeq(r.Payload, r.Seq), nil
}

// Clock is the time source of the uplink. Durations are measured with
// After, never by subtracting two Now readings, so a wall clock that jumps
// cannot fire or hold off a timeout.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ErrInsecure is returned for any configuration that is not mutual TLS.
var ErrInsecure = errors.New("uplink must use mutual TLS")

func (c *Config) ensureDefaults() {
	if c.MaxInflight <= 0 {
		c.MaxInflight = 64
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 2 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 60 * time.Second
	}
	if c.DeadLetterAfter <= 0 {
		c.DeadLetterAfter = 3
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Encoder == nil {
		c.Encoder = SeqJSON{TopicPrefix: c.TopicPrefix}
	}
	if c.ClientID == "" {
		c.ClientID = "lintel-" + c.GatewayID
	}
}

// CheckBroker refuses broker URLs that are not TLS.
func CheckBroker(broker string) error {
	u, err := url.Parse(broker)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
	default:
		return fmt.Errorf("%w: broker %q: scheme %q; want mqtts://host:port", ErrInsecure, broker, u.Scheme)
	}
	if u.Port() == "" {
		return fmt.Errorf("broker %q: missing port (usually 8883)", broker)
	}
	return nil
}

// LoadTLS builds the client TLS configuration from PEM files: the broker is
// verified against caFile only (not the system roots), TLS 1.2 at least.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("uplink CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("uplink CA %s: no PEM certificate found", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("uplink client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Stats are the uplink's counters.
type Stats struct {
	Connected  bool
	Published  uint64 // PUBLISH packets sent
	InFlight   int64  // sent, PUBACK not yet received
	Acked      uint64 // PUBACKs received (records deleted)
	Reconnects uint64 // sessions started after the first
	// OldestInflight is how long the oldest message in flight has waited
	// for its PUBACK (0 when nothing is in flight). A few seconds means the
	// cloud is hung although the connection still looks up. With the system
	// clock it is measured on the monotonic clock; an injected Clock whose
	// Now steps can make it spike (never negative) until that PUBACK.
	OldestInflight time.Duration
	// DeadLettered counts records this uplink moved to the buffer's
	// dead-letter bucket (invalid topic, or sessions lost with them).
	DeadLettered uint64
	LastError    string
	// CertNotAfter is when the client certificate expires.
	CertNotAfter time.Time
	// LastAck is when the last PUBACK arrived (zero: none yet).
	LastAck time.Time
	// RetryAt is when Run reconnects after a lost session (zero while a
	// session runs or is being set up).
	RetryAt time.Time
}

// Uplink store-and-forwards the buffer to the cloud broker.
type Uplink struct {
	cfg          Config
	src          Source
	log          *slog.Logger
	certNotAfter time.Time // of the client certificate, zero if unknown
	clock        Clock

	connected  atomic.Bool
	published  atomic.Uint64
	inflight   atomic.Int64
	acked      atomic.Uint64
	reconnects atomic.Uint64
	lastErr    atomic.Value // string
	epoch      time.Time    // Clock.Now at New; with the system clock it carries a monotonic reading
	oldest     atomic.Int64 // 1 + when the oldest flight was sent, in ns since epoch; 0 if none
	dead       atomic.Uint64
	lastAck    atomic.Int64  // Clock.Now in unix ns at the last PUBACK, 0 if none
	retryAt    atomic.Int64  // unix ns until which Run backs off, 0 if not
	kick       chan struct{} // Reconnect's request, buffered 1

	// Suspicion, owned by Run's goroutine (session and deliver run on it):
	// the record that was the oldest in flight when sessions ended by its
	// fault, how many sessions in a row, and whether the next session sends
	// one record at a time until the suspect is acknowledged.
	suspect uint64
	strikes int
	probing bool
}

// errLinkLost marks a session that ended because the connection was lost
// (or a publish failed with it) rather than by a timeout or shutdown.
var errLinkLost = errors.New("connection lost")

// New checks the configuration; nothing connects before Run.
func New(cfg Config, src Source, logger *slog.Logger) (*Uplink, error) {
	if err := CheckBroker(cfg.Broker); err != nil {
		return nil, err
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil {
		return nil, fmt.Errorf("%w: a CA and a client certificate are required", ErrInsecure)
	}
	if cfg.TLS.InsecureSkipVerify {
		return nil, fmt.Errorf("%w: certificate verification cannot be disabled", ErrInsecure)
	}
	tlsCfg := cfg.TLS.Clone()
	tlsCfg.MinVersion = max(tlsCfg.MinVersion, tls.VersionTLS12)
	cfg.TLS = tlsCfg
	cfg.ensureDefaults()
	u := &Uplink{cfg: cfg, src: src, clock: cfg.Clock, epoch: cfg.Clock.Now(), kick: make(chan struct{}, 1), log: logger.With("component", "uplink", "broker", cfg.Broker)}
	if c := cfg.TLS.Certificates; len(c) > 0 && len(c[0].Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(c[0].Certificate[0]); err == nil {
			u.certNotAfter = leaf.NotAfter
		}
	}
	return u, nil
}

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	s := Stats{
		Connected:  u.connected.Load(),
		Published:  u.published.Load(),
		InFlight:   u.inflight.Load(),
		Acked:      u.acked.Load(),
		Reconnects: u.reconnects.Load(),
	}
	s.DeadLettered = u.dead.Load()
	if sent := u.oldest.Load(); sent != 0 {
		// Clamped: after a backwards step of an injected clock the age
		// would be negative.
		s.OldestInflight = max(0, u.clock.Now().Sub(u.epoch)-time.Duration(sent-1))
	}
	s.LastError, _ = u.lastErr.Load().(string)
	s.CertNotAfter = u.certNotAfter
	if ns := u.lastAck.Load(); ns != 0 {
		s.LastAck = time.Unix(0, ns)
	}
	if ns := u.retryAt.Load(); ns != 0 {
		s.RetryAt = time.Unix(0, ns)
	}
	return s
}

// errReconnect ends a session on request; it suspects no record.
var errReconnect = errors.New("reconnect requested")

// Reconnect ends the current session (its in-flight messages drain as at
// any session end) or cuts the backoff short, so that Run connects again
// now. Requests made while one is pending count once.
func (u *Uplink) Reconnect() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// StatusTopic is where the retained online status and the Last Will go.
func (u *Uplink) StatusTopic() string {
	return u.cfg.TopicPrefix + "lintel/" + u.cfg.GatewayID + "/$status"
}

// Run connects, delivers, and reconnects with exponential backoff and jitter
// until ctx ends. Lintel, not paho, reconnects: paho's auto-reconnect can
// report a QoS1 publish as complete although no PUBACK arrived. A session
// that got at least one PUBACK starts the backoff over, so a cloud that is up
// only for seconds at a time is retried quickly.
func (u *Uplink) Run(ctx context.Context) error {
	backoff := u.cfg.MinBackoff
	for first := true; ; first = false {
		if !first {
			u.reconnects.Add(1)
		}
		acked := u.acked.Load()
		err := u.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if u.acked.Load() > acked {
			backoff = u.cfg.MinBackoff // the cloud took records: it is worth retrying soon
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if err != nil {
			u.lastErr.Store(err.Error())
			u.log.Warn("uplink down", "err", err, "retry_in", wait)
		}
		u.retryAt.Store(u.clock.Now().Add(wait).UnixNano())
		select {
		case <-ctx.Done():
			return nil
		case <-u.clock.After(wait):
		case <-u.kick:
		}
		u.retryAt.Store(0)
		backoff = min(2*backoff, u.cfg.MaxBackoff)
	}
}

// session runs one connection: connect, announce, deliver until the
// connection is lost or ctx ends, then drain.
func (u *Uplink) session(ctx context.Context) error {
	client, lost, err := u.connect(ctx)
	if err != nil {
		return err
	}
	u.connected.Store(true)
	defer u.connected.Store(false)
	u.log.Info("uplink connected")

	sctx, cancel := context.WithCancelCause(ctx)
	var watch sync.WaitGroup
	defer watch.Wait()
	defer cancel(nil)
	watch.Go(func() {
		select {
		case err := <-lost:
			cancel(fmt.Errorf("%w: %w", errLinkLost, err))
		case <-u.kick:
			cancel(errReconnect)
		case <-sctx.Done():
		}
	})

	s := &delivery{
		u:         u,
		client:    client,
		cancel:    cancel,
		slots:     make(chan struct{}, u.cfg.MaxInflight),
		flights:   make(chan flight, u.cfg.MaxInflight),
		abort:     make(chan struct{}),
		ackerDone: make(chan struct{}),
	}
	go s.acker()
	s.deliver(sctx)
	err = s.drain(ctx, sctx)
	if ctx.Err() == nil {
		u.judge(s, err)
	}
	return err
}

// judge updates the suspicion after a session ended with err: a record that
// was the oldest in flight when the connection was lost, or that got no
// PUBACK while later records did, is suspect; DeadLetterAfter sessions in a
// row ended by the same suspect move it to the dead-letter bucket. An ack
// timeout with nothing acknowledged (a hung cloud) suspects nobody.
func (u *Uplink) judge(s *delivery, err error) {
	var why string
	switch {
	case s.refused:
		why = "no PUBACK while later records were acknowledged"
	case errors.Is(err, errLinkLost) && s.head != 0:
		why = "connection lost with it in flight"
	default:
		u.probing = false // a probe that timed out proves nothing; stop probing
		return
	}
	if s.head == u.suspect {
		u.strikes++
	} else {
		u.suspect, u.strikes = s.head, 1
	}
	u.probing = !s.refused // isolate it: was it really this record?
	if u.strikes < u.cfg.DeadLetterAfter {
		return
	}
	reason := fmt.Sprintf("%s, %d sessions in a row", why, u.strikes)
	if derr := u.src.DeadLetter(reason, u.suspect); derr != nil {
		u.log.Error("dead-letter failed", "seq", u.suspect, "err", derr)
		return
	}
	u.dead.Add(1)
	u.log.Warn("record dead-lettered", "seq", u.suspect, "reason", reason)
	u.suspect, u.strikes, u.probing = 0, 0, false
}

// connect opens the MQTT connection, publishes the online status and
// subscribes to commands. lost receives the error that ends the connection.
func (u *Uplink) connect(ctx context.Context) (paho.Client, <-chan error, error) {
	lost := make(chan error, 1)
	opts := paho.NewClientOptions().
		AddBroker(u.cfg.Broker).
		SetClientID(u.cfg.ClientID).
		SetTLSConfig(u.cfg.TLS).
		SetProtocolVersion(4).
		SetCleanSession(true). // with AutoReconnect off, a lost connection fails in-flight tokens
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(false).
		SetKeepAlive(30*time.Second).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(u.cfg.ConnectTimeout).
		SetWriteTimeout(u.cfg.AckTimeout). // paho's Publish blocks up to this on a peer that stopped reading
		SetMaxResumePubInFlight(u.cfg.MaxInflight).
		SetCustomOpenConnectionFn(u.dialer()). // coalesces PUBLISHes into few TLS records
		SetStore(nopStore{}).                  // the buffer, not paho, re-sends
		SetBinaryWill(u.StatusTopic(), []byte(`{"online":false}`), 1, true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if u.cfg.Session != nil {
		topic, payload, qos, retain := u.cfg.Session.Will()
		opts.SetBinaryWill(topic, payload, qos, retain)
	}
	client := paho.NewClient(opts)
	if err := waitToken(ctx, client.Connect()); err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	if u.cfg.Session != nil {
		if err := u.cfg.Session.Connected(ctx, client); err != nil {
			client.Disconnect(0)
			return nil, nil, fmt.Errorf("session start: %w", err)
		}
	} else if err := waitToken(ctx, client.Publish(u.StatusTopic(), 1, true, u.onlineStatus())); err != nil {
		client.Disconnect(0)
		return nil, nil, fmt.Errorf("publish online status: %w", err)
	}
	if u.cfg.OnCommand != nil {
		filter := u.cfg.TopicPrefix + "lintel/" + u.cfg.GatewayID + "/+/+/set"
		tok := client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
			u.cfg.OnCommand(strings.TrimPrefix(m.Topic(), u.cfg.TopicPrefix), m.Payload())
		})
		if err := waitToken(ctx, tok); err != nil {
			client.Disconnect(0)
			return nil, nil, fmt.Errorf("subscribe to commands: %w", err)
		}
	}
	return client, lost, nil
}

// flight is one record published and waiting for its PUBACK.
type flight struct {
	seq  uint64
	tok  paho.Token
	sent time.Time
}

// delivery is the state of one session's delivery: deliver publishes, one
// acker goroutine waits for the PUBACKs in send order and acks the buffer
// in batches.
type delivery struct {
	u         *Uplink
	client    paho.Client
	cancel    context.CancelCauseFunc
	probed    int           // records sent one at a time while probing
	slots     chan struct{} // the in-flight window
	flights   chan flight   // deliver → acker, in send order; closed by deliver
	abort     chan struct{} // closed when the session stops waiting for PUBACKs
	ackerDone chan struct{}

	// Set by the acker before ackerDone closes.
	head    uint64 // the oldest flight without a PUBACK when the acker stopped
	refused bool   // head timed out while a later flight got its PUBACK
}

// deliver reads records and publishes them, at most MaxInflight unacked,
// until sctx ends.
func (s *delivery) deliver(sctx context.Context) {
	u := s.u
	defer close(s.flights)
	u.src.Rewind() // redeliver whatever was unacked, in seq order
	// Records are read a batch at a time, ahead of the window: one buffer
	// transaction per batch instead of one per freed slot. Only these hold
	// payloads; a flight holds a token, so a large window stays small.
	var ahead []buffer.Record
	sess := u.cfg.Session
	// Fenced records published and not yet behind a Fence; each holds a
	// slot. Left over when the session ends, they stay unacked.
	var fenced []flight
	defer func() { u.inflight.Add(-int64(len(fenced))) }()
	for sctx.Err() == nil {
		if len(ahead) == 0 {
			n := min(u.cfg.MaxInflight, maxReadAhead)
			if u.probing {
				n = 1
			}
			var err error
			if ahead, err = u.src.Read(sctx, n); err != nil {
				if sctx.Err() == nil {
					s.cancel(fmt.Errorf("read buffer: %w", err))
				}
				return
			}
		}
		r := ahead[0]
		if sess != nil {
			if sess.Hold(sctx) != nil {
				return
			}
		}
		ahead = ahead[1:]
		topic, payload, err := u.cfg.Encoder.Encode(r)
		if err == nil {
			err = checkTopic(topic)
		} else {
			err = fmt.Errorf("encode: %w", err)
		}
		if err != nil {
			if err := u.src.DeadLetter(err.Error(), r.Seq); err != nil {
				s.cancel(fmt.Errorf("dead-letter seq %d: %w", r.Seq, err))
				return
			}
			u.dead.Add(1)
			u.log.Warn("record dead-lettered", "seq", r.Seq, "reason", err)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		case <-sctx.Done():
			return
		}
		if sess == nil {
			tok := s.client.Publish(topic, 1, r.Retain, payload)
			u.published.Add(1)
			u.inflight.Add(1)
			s.flights <- flight{seq: r.Seq, tok: tok, sent: u.clock.Now()}
			if u.probing {
				s.probe(sctx, r.Seq, tok)
			}
			continue
		}
		tok, isFenced := sess.Publish(s.client, topic, r.Retain, payload)
		u.published.Add(1)
		u.inflight.Add(1)
		f := flight{seq: r.Seq, tok: tok, sent: u.clock.Now()}
		if !isFenced {
			s.flights <- f
		} else {
			fenced = append(fenced, f)
			// Fence before Read may block, before the window is full of
			// fenced records, and after each record while probing.
			if len(ahead) > 0 && len(fenced) < cap(s.slots) && !u.probing {
				continue
			}
			tok = sess.Fence(s.client)
			for _, f := range fenced {
				f.tok = tok
				s.flights <- f
			}
			fenced = fenced[:0]
		}
		if u.probing {
			s.probe(sctx, r.Seq, tok)
		}
	}
}

// maxReadAhead bounds the records deliver holds before they are published.
const maxReadAhead = 256

// probe waits for the PUBACK of the one record in flight while a suspect is
// isolated; the suspect acknowledged, or MaxInflight records without
// meeting it, ends the probing.
func (s *delivery) probe(sctx context.Context, seq uint64, tok paho.Token) {
	u := s.u
	select {
	case <-tok.Done():
	case <-sctx.Done():
		return
	}
	s.probed++
	if tok.Error() == nil && seq == u.suspect || s.probed >= u.cfg.MaxInflight {
		u.suspect, u.strikes, u.probing = 0, 0, false
	}
}

// checkTopic refuses a topic no broker accepts in a PUBLISH: Mosquitto drops
// the connection, so it would block the queue forever.
func checkTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("invalid topic: empty")
	case len(topic) > 65535:
		return fmt.Errorf("invalid topic: %d bytes", len(topic))
	case strings.ContainsAny(topic, "+#\x00"):
		return fmt.Errorf("invalid topic %q: wildcard or NUL", topic)
	case !utf8.ValidString(topic):
		return fmt.Errorf("invalid topic %q: not UTF-8", topic)
	}
	return nil
}

// acker waits for the PUBACK of the oldest flight, then acks it together
// with every later flight already acknowledged. No PUBACK for AckTimeout
// while something is in flight ends the session.
func (s *delivery) acker() {
	u := s.u
	defer close(s.ackerDone)
	var queue []flight
	flights := s.flights
	defer func() {
		if len(queue) > 0 {
			s.head = queue[0].seq
		}
		u.oldest.Store(0)
		u.inflight.Add(-int64(len(queue)))
	}()
	for {
		if len(queue) == 0 {
			u.oldest.Store(0)
			if flights == nil {
				return // deliver ended and everything was acknowledged
			}
			select {
			case f, ok := <-flights:
				if !ok {
					return
				}
				queue = append(queue, f)
			case <-s.abort:
				return
			}
		}
		head := queue[0]
		u.oldest.Store(int64(head.sent.Sub(u.epoch)) + 1)
		// A timer, not a comparison of wall-clock times: a clock that jumps
		// neither fires it early nor holds it off.
		timeout := u.clock.After(u.cfg.AckTimeout)
	wait:
		for {
			select {
			case <-head.tok.Done():
				break wait
			case f, ok := <-flights:
				if !ok {
					flights = nil
					continue
				}
				queue = append(queue, f)
			case <-timeout:
				for _, f := range queue[1:] {
					if isDone(f.tok) && f.tok.Error() == nil {
						s.refused = true
					}
				}
				s.cancel(fmt.Errorf("no PUBACK for seq %d within %v", head.seq, u.cfg.AckTimeout))
				return
			case <-s.abort:
				return
			}
		}
		// Take every flight whose PUBACK is in, in send order.
		var seqs []uint64 // a new slice each time: the buffer keeps it until it commits
		failed := false
		for len(queue) > 0 && isDone(queue[0].tok) {
			f := queue[0]
			if err := f.tok.Error(); err != nil {
				s.cancel(fmt.Errorf("%w: publish seq %d: %w", errLinkLost, f.seq, err))
				failed = true
				break
			}
			// The token completed without error only because the broker's
			// PUBACK arrived (AutoReconnect off).
			seqs = append(seqs, f.seq)
			queue = queue[1:]
		}
		if len(seqs) > 0 {
			if err := u.src.Ack(seqs...); err != nil {
				s.cancel(fmt.Errorf("ack buffer: %w", err))
			}
			u.acked.Add(uint64(len(seqs)))
			u.lastAck.Store(u.clock.Now().UnixNano())
			u.inflight.Add(-int64(len(seqs)))
			for range seqs {
				<-s.slots
			}
		}
		if failed {
			return
		}
	}
}

// drain ends the session. At shutdown (ctx ended) PUBACKs for what is in
// flight still count for DrainTimeout; otherwise the connection is dropped
// and paho fails every outstanding token.
func (s *delivery) drain(ctx, sctx context.Context) error {
	u := s.u
	cause := context.Cause(sctx)
	if ctx.Err() != nil {
		select {
		case <-s.ackerDone:
		case <-u.clock.After(u.cfg.DrainTimeout):
		}
		var tok paho.Token
		if sess := u.cfg.Session; sess != nil {
			tok = sess.Closing(s.client)
		} else {
			tok = s.client.Publish(u.StatusTopic(), 1, true, []byte(`{"online":false}`))
		}
		if !tok.WaitTimeout(u.cfg.DrainTimeout) {
			u.log.Warn("offline status not acknowledged before shutdown")
		}
		s.client.Disconnect(250)
		close(s.abort)
		<-s.ackerDone
		s.forget()
		u.log.Info("uplink stopped")
		return nil
	}
	if sess := u.cfg.Session; sess != nil && !errors.Is(cause, errLinkLost) {
		// Ending the session with DISCONNECT discards the Will: say
		// goodbye explicitly, in case the connection still carries it.
		sess.Closing(s.client).WaitTimeout(u.cfg.DrainTimeout)
	}
	s.client.Disconnect(0)
	close(s.abort)
	<-s.ackerDone
	s.forget()
	return cause
}

// forget uncounts flights the acker never took (it stopped early).
func (s *delivery) forget() {
	for range s.flights {
		s.u.inflight.Add(-1)
	}
}

func (u *Uplink) onlineStatus() []byte {
	var buffered uint64
	if u.cfg.Buffered != nil {
		buffered = u.cfg.Buffered()
	}
	b, _ := json.Marshal(struct {
		Online   bool   `json:"online"`
		Version  string `json:"version,omitempty"`
		Buffered uint64 `json:"buffered"`
	}{true, u.cfg.Version, buffered})
	return b
}

// WithSeq adds the gateway sequence number to a payload. A JSON object gets a
// "seq" member; anything else is wrapped as {"seq":N,"payload":"…"} (a string
// if it is UTF-8, else "payload_b64" with base64).
func WithSeq(payload []byte, seq uint64) []byte {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) >= 2 && trimmed[0] == '{' && trimmed[len(trimmed)-1] == '}' {
		out := make([]byte, 0, len(trimmed)+28)
		out = append(out, `{"seq":`...)
		out = strconv.AppendUint(out, seq, 10)
		rest := bytes.TrimSpace(trimmed[1:])
		if rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, rest...)
	}
	wrapped := map[string]any{"seq": seq}
	if utf8.Valid(payload) {
		wrapped["payload"] = string(payload)
	} else {
		wrapped["payload_b64"] = payload // encoding/json writes []byte as base64
	}
	b, _ := json.Marshal(wrapped)
	return b
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isDone(t paho.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}
