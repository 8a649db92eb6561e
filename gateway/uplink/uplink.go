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
}

// Config describes the connection to the cloud broker.
type Config struct {
	// Broker is mqtts://host:port (ssl:// and tls:// are accepted too).
	Broker string
	// TLS must carry the CA to verify the broker and a client certificate.
	TLS      *tls.Config
	ClientID string
	// GatewayID names the gateway in its status topic.
	GatewayID   string
	TopicPrefix string
	MaxInflight int    // default 64
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
	// AckTimeout ends a session when a PUBACK takes longer than this: a
	// half-open connection (NAT dropped, broker hung) otherwise looks alive
	// until TCP gives up (default 30s).
	AckTimeout time.Duration
	// ConnectTimeout bounds the TCP, TLS and CONNECT handshake (default 15s).
	ConnectTimeout time.Duration
	MinBackoff     time.Duration // default 500ms
	MaxBackoff     time.Duration // default 60s
}

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
	LastError  string
	// CertNotAfter is when the client certificate expires.
	CertNotAfter time.Time
}

// Uplink store-and-forwards the buffer to the cloud broker.
type Uplink struct {
	cfg          Config
	src          Source
	log          *slog.Logger
	certNotAfter time.Time // of the client certificate, zero if unknown

	connected  atomic.Bool
	published  atomic.Uint64
	inflight   atomic.Int64
	acked      atomic.Uint64
	reconnects atomic.Uint64
	lastErr    atomic.Value // string
}

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
	u := &Uplink{cfg: cfg, src: src, log: logger.With("component", "uplink", "broker", cfg.Broker)}
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
	s.LastError, _ = u.lastErr.Load().(string)
	s.CertNotAfter = u.certNotAfter
	return s
}

// StatusTopic is where the retained online status and the Last Will go.
func (u *Uplink) StatusTopic() string {
	return u.cfg.TopicPrefix + "lintel/" + u.cfg.GatewayID + "/$status"
}

// Run connects, delivers, and reconnects with exponential backoff and jitter
// until ctx ends. Lintel, not paho, reconnects: paho's auto-reconnect can
// report a QoS1 publish as complete although no PUBACK arrived.
func (u *Uplink) Run(ctx context.Context) error {
	backoff := u.cfg.MinBackoff
	for first := true; ; first = false {
		if !first {
			u.reconnects.Add(1)
		}
		started := time.Now()
		err := u.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			u.lastErr.Store(err.Error())
			u.log.Warn("uplink down", "err", err, "retry_in", backoff)
		}
		if time.Since(started) > 30*time.Second {
			backoff = u.cfg.MinBackoff // it worked for a while: start over
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, u.cfg.MaxBackoff)
	}
}

// session runs one connection: connect, announce, deliver until the
// connection is lost or ctx ends.
func (u *Uplink) session(ctx context.Context) error {
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
		SetBinaryWill(u.StatusTopic(), []byte(`{"online":false}`), 1, true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	client := paho.NewClient(opts)
	if err := waitToken(ctx, client.Connect()); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	u.connected.Store(true)
	defer u.connected.Store(false)
	u.log.Info("uplink connected")

	if err := waitToken(ctx, client.Publish(u.StatusTopic(), 1, true, u.onlineStatus())); err != nil {
		client.Disconnect(0)
		return fmt.Errorf("publish online status: %w", err)
	}

	if u.cfg.OnCommand != nil {
		filter := u.cfg.TopicPrefix + "lintel/" + u.cfg.GatewayID + "/+/+/set"
		tok := client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
			u.cfg.OnCommand(strings.TrimPrefix(m.Topic(), u.cfg.TopicPrefix), m.Payload())
		})
		if err := waitToken(ctx, tok); err != nil {
			client.Disconnect(0)
			return fmt.Errorf("subscribe to commands: %w", err)
		}
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case err := <-lost:
			cancel(fmt.Errorf("connection lost: %w", err))
		case <-sctx.Done():
		}
	}()

	u.src.Rewind() // redeliver whatever was unacked, in seq order
	slots := make(chan struct{}, u.cfg.MaxInflight)
	ended := make(chan struct{}) // stop waiting for tokens of this session
	var wg sync.WaitGroup
	for sctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-sctx.Done():
			continue
		}
		n := 1
		for n < u.cfg.MaxInflight && tryAcquire(slots) {
			n++
		}
		recs, err := u.src.Read(sctx, n)
		for range n - len(recs) {
			<-slots
		}
		if err != nil {
			if sctx.Err() == nil {
				cancel(fmt.Errorf("read buffer: %w", err))
			}
			break
		}
		for _, r := range recs {
			tok := client.Publish(u.cfg.TopicPrefix+r.Topic, 1, r.Retain, WithSeq(r.Payload, r.Seq))
			u.published.Add(1)
			u.inflight.Add(1)
			wg.Add(1)
			go func(seq uint64) {
				defer wg.Done()
				defer func() { <-slots; u.inflight.Add(-1) }()
				timeout := time.NewTimer(u.cfg.AckTimeout)
				defer timeout.Stop()
				select {
				case <-tok.Done():
				case <-ended:
					return
				case <-timeout.C:
					cancel(fmt.Errorf("no PUBACK for seq %d within %v", seq, u.cfg.AckTimeout))
					return
				}
				if err := tok.Error(); err != nil {
					cancel(fmt.Errorf("publish seq %d: %w", seq, err))
					return
				}
				// The token completed without error only because the
				// broker's PUBACK arrived (AutoReconnect off).
				u.src.Ack(seq)
				u.acked.Add(1)
			}(r.Seq)
		}
	}

	cause := context.Cause(sctx)
	shutdown := ctx.Err() != nil
	if shutdown {
		// Bounded drain: PUBACKs for what is in flight still count.
		waitGroup(&wg, u.cfg.DrainTimeout)
		if t := client.Publish(u.StatusTopic(), 1, true, []byte(`{"online":false}`)); !t.WaitTimeout(u.cfg.DrainTimeout) {
			u.log.Warn("offline status not acknowledged before shutdown")
		}
		client.Disconnect(250)
	} else {
		client.Disconnect(0)
		waitGroup(&wg, 5*time.Second) // paho fails every token on disconnect
	}
	close(ended)
	wg.Wait()
	if shutdown {
		u.log.Info("uplink stopped")
		return nil
	}
	return cause
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

func tryAcquire(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitGroup(wg *sync.WaitGroup, timeout time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
