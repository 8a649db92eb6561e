package command

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lintel-gw/lintel/adapters"
)

// Reasons a command is refused; each is what the result topic says.
const (
	ReasonTooLarge      = "envelope too large"
	ReasonMalformed     = "malformed envelope"
	ReasonBadTopic      = "not a command topic"
	ReasonOtherGateway  = "addressed to another gateway"
	ReasonUnknownTarget = "unknown device, point or command"
	ReasonNotWritable   = "not writable"
	ReasonInvalidValue  = "invalid value"
	ReasonUnsigned      = "signature missing"
	ReasonBadSignature  = "signature invalid"
	ReasonNoSigners     = "no signer configured"
	ReasonExpired       = "expired"
	ReasonTooFarAhead   = "expires too far in the future"
	ReasonReplayed      = "nonce already used"
	ReasonRateLimited   = "rate limit exceeded"
	ReasonBusy          = "too many commands in progress"
	ReasonWriteFailed   = "device write failed"
	ReasonStopping      = "gateway stopping"
)

// Target is what the gate needs of a device's adapter: a write checked
// without touching the device, then made. CheckWrite's errors wrap
// adapters.ErrUnknownTarget, adapters.ErrNotWritable or
// adapters.ErrInvalidValue (see adapters.Writable).
type Target interface {
	CheckWrite(w adapters.WriteRequest) (needsSignature bool, err error)
	Write(ctx context.Context, w adapters.WriteRequest) error
}

// Config describes a gate.
type Config struct {
	GatewayID string
	// Targets maps device names to their adapters.
	Targets map[string]Target
	Signers []Signer
	// MaxTTL is the furthest in the future a signed command may expire
	// (default 5m): a leaked signed command is useless soon after.
	MaxTTL time.Duration
	// RatePerMinute bounds accepted commands per device point (default 30).
	RatePerMinute int
	// NonceFile is the bbolt file remembering used nonces across restarts.
	NonceFile string
	// AuditFile is the local JSON-lines log of accepted commands, rotated at
	// 1 MiB (3 kept). Refusals go to a file of their own beside it
	// (commands-refused.log for commands.log), so that no number of refusals
	// can rotate an accepted command out.
	AuditFile string
	// RefusalWindow is the period over which refusals are aggregated
	// (default 10s): per source and target, the first few of a window are
	// reported one by one, the rest in one summary when it ends.
	RefusalWindow time.Duration
	// Publish sends results and audit events (in process, through the
	// local broker, so they are buffered and forwarded).
	Publish func(ctx context.Context, topic string, payload []byte) error
	// WriteTimeout bounds one adapter write (default 10s).
	WriteTimeout time.Duration
	Now          func() time.Time
}

// Result is the answer to one command attempt.
type Result struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Gate is the only path from a command message to Adapter.Write.
type Gate struct {
	cfg    Config
	log    *slog.Logger
	nonces *bolt.DB
	// horizon: nonces of commands that expired before it may have been
	// pruned, so such a command is refused whatever the clock says now.
	horizon time.Time

	mu     sync.Mutex
	recent map[string][]time.Time // device/point → accepted command times
	counts map[string]uint64      // "ok" or the refusal reason → attempts
	// stopping is set by Stop; writes counts writes in progress (Add only
	// under mu while not stopping, so Stop's Wait sees every one).
	stopping bool
	writes   sync.WaitGroup
	auditMu  sync.Mutex

	refMu     sync.Mutex
	refusals  map[refusalKey]*refusalWindow
	reported  int       // refusals reported one by one in the current window, all keys
	windowAt  time.Time // start of that window
	stopSweep chan struct{}
	sweepDone chan struct{}
}

// Bounds of what refusals may cost per RefusalWindow: at most refusalBurst
// reported one by one per key and refusalBudget in all, and one summary per
// key, with at most maxRefusalKeys keys (the excess shares one key per
// source).
const (
	refusalBurst   = 3
	refusalBudget  = 20
	maxRefusalKeys = 32
)

// refusalKey is what refusals are aggregated by.
type refusalKey struct{ source, device, point string }

// refusalWindow counts one key's refusals in the current window.
type refusalWindow struct {
	start   time.Time
	seen    int
	quiet   int               // not reported one by one
	reasons map[string]uint64 // of the quiet ones
}

var (
	bucketNonces = []byte("nonces")
	bucketMeta   = []byte("meta")
	keyHorizon   = []byte("pruned-before") // unix seconds, big endian
)

// Open opens the nonce store and prepares the audit log.
func Open(cfg Config, logger *slog.Logger) (*Gate, error) {
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 5 * time.Minute
	}
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = 30
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefusalWindow <= 0 {
		cfg.RefusalWindow = 10 * time.Second
	}
	db, err := bolt.Open(cfg.NonceFile, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("nonce store %s: %w", cfg.NonceFile, err)
	}
	g := &Gate{cfg: cfg, log: logger.With("component", "command"), nonces: db, recent: map[string][]time.Time{}, counts: map[string]uint64{},
		refusals: map[refusalKey]*refusalWindow{}, stopSweep: make(chan struct{}), sweepDone: make(chan struct{})}
	if err := g.pruneNonces(); err != nil {
		db.Close()
		return nil, fmt.Errorf("nonce store %s: %w", cfg.NonceFile, err)
	}
	go g.sweep(g.stopSweep)
	return g, nil
}

// sweep writes the summaries of ended refusal windows until Close.
func (g *Gate) sweep(stop <-chan struct{}) {
	defer close(g.sweepDone)
	t := time.NewTicker(g.cfg.RefusalWindow)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.summarize(g.takeEnded(g.cfg.Now(), false))
		}
	}
}

// SetTargets replaces the devices the gate may write (a configuration reload).
func (g *Gate) SetTargets(t map[string]Target) {
	g.mu.Lock()
	g.cfg.Targets = t
	g.mu.Unlock()
}

// Close writes the summaries of refusals not yet reported and closes the
// nonce store.
func (g *Gate) Close() error {
	g.refMu.Lock()
	stopped := g.stopSweep == nil
	if !stopped {
		close(g.stopSweep)
		g.stopSweep = nil
	}
	g.refMu.Unlock()
	if stopped {
		return nil
	}
	<-g.sweepDone
	g.summarize(g.takeEnded(g.cfg.Now(), true))
	return g.nonces.Close()
}

// Stop refuses every command from now on ("gateway stopping", answered and
// audited, nothing written) and waits for writes in progress to end. The
// gateway calls it first when it begins to shut down. A Handle whose ctx has
// ended is refused the same way.
func (g *Gate) Stop() {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	g.writes.Wait()
}

// beginWrite registers a write unless the gate is stopping.
func (g *Gate) beginWrite(ctx context.Context) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping || ctx.Err() != nil {
		return false
	}
	g.writes.Add(1)
	return true
}

func (g *Gate) isStopping(ctx context.Context) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping || ctx.Err() != nil
}

// Refuse answers and audits a command that is refused before any check,
// e.g. ReasonBusy when every command slot is taken. Like every refusal it
// counts against the refusal window, so a flood of them stays bounded.
func (g *Gate) Refuse(ctx context.Context, source, topic string, payload []byte, reason string) Result {
	a := attempt{source: source}
	if levels := strings.Split(topic, "/"); len(levels) == 5 && levels[0] == "lintel" && levels[4] == "set" {
		a.device, a.point = levels[2], levels[3]
	}
	if len(payload) <= MaxEnvelope {
		if e, err := ParseEnvelope(payload); err == nil {
			a.env.ID = e.ID
		}
	}
	res := Result{ID: a.env.ID, Error: reason}
	g.answer(ctx, a, res)
	return res
}

// attempt is one command as it goes through the checks.
type attempt struct {
	source, device, point, signer string
	env                           Envelope
}

// Handle checks a command received on topic (lintel/<gateway>/<device>/<point>/set,
// any cloud prefix removed) from source ("cloud" or "local"), writes it if
// every check passes, and answers on the result topic. Every attempt is
// audited.
func (g *Gate) Handle(ctx context.Context, source, topic string, payload []byte) Result {
	a := attempt{source: source}
	res := g.check(ctx, &a, topic, payload)
	g.answer(ctx, a, res)
	return res
}

func (g *Gate) check(ctx context.Context, a *attempt, topic string, payload []byte) Result {
	fail := func(reason string, detail ...string) Result {
		r := Result{ID: a.env.ID, Error: reason}
		if len(detail) > 0 && detail[0] != "" {
			r.Error += ": " + detail[0]
		}
		return r
	}
	levels := strings.Split(topic, "/")
	if len(levels) != 5 || levels[0] != "lintel" || levels[4] != "set" {
		return fail(ReasonBadTopic)
	}
	gateway := levels[1]
	a.device, a.point = levels[2], levels[3] // from here on, answered on the result topic
	if len(payload) > MaxEnvelope {
		return fail(ReasonTooLarge)
	}
	if g.isStopping(ctx) {
		return fail(ReasonStopping)
	}
	env, err := ParseEnvelope(payload)
	a.env.ID = env.ID
	if err != nil {
		return fail(ReasonMalformed, err.Error())
	}
	a.env = env
	if gateway != g.cfg.GatewayID {
		return fail(ReasonOtherGateway)
	}
	g.mu.Lock()
	target, ok := g.cfg.Targets[a.device]
	g.mu.Unlock()
	if !ok {
		return fail(ReasonUnknownTarget)
	}
	w := adapters.WriteRequest{Device: a.device, Point: a.point, Value: env.Value}
	needsSignature, err := target.CheckWrite(w)
	switch {
	case errors.Is(err, adapters.ErrUnknownTarget):
		return fail(ReasonUnknownTarget)
	case errors.Is(err, adapters.ErrNotWritable):
		return fail(ReasonNotWritable)
	case err != nil:
		return fail(ReasonInvalidValue, strings.TrimPrefix(err.Error(), a.device+"/"+a.point+": invalid value: "))
	}
	if needsSignature {
		if r, ok := g.authenticate(a, gateway); !ok {
			return r
		}
	}
	if !g.allowRate(a.device + "/" + a.point) {
		return fail(ReasonRateLimited)
	}
	if !g.beginWrite(ctx) {
		return fail(ReasonStopping)
	}
	defer g.writes.Done()
	wctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel()
	if err := target.Write(wctx, w); err != nil {
		return fail(ReasonWriteFailed, err.Error())
	}
	return Result{ID: env.ID, OK: true}
}

// authenticate applies the checks for signed commands: a configured
// signer's signature, an expiry in the near future, an unused nonce. The
// nonce is stored (fsynced) before the write, so a crash cannot reopen it.
func (g *Gate) authenticate(a *attempt, gateway string) (Result, bool) {
	e := a.env
	fail := func(reason string) (Result, bool) { return Result{ID: e.ID, Error: reason}, false }
	if len(g.cfg.Signers) == 0 {
		return fail(ReasonNoSigners)
	}
	if e.Sig == "" || e.Expires == "" || e.Nonce == "" {
		return fail(ReasonUnsigned)
	}
	sig, err := base64.StdEncoding.DecodeString(e.Sig)
	msg, cerr := Canonical(gateway, a.device, a.point, e)
	if err != nil || cerr != nil || len(sig) != ed25519.SignatureSize {
		return fail(ReasonBadSignature)
	}
	for _, s := range g.cfg.Signers {
		if ed25519.Verify(s.Key, msg, sig) {
			a.signer = s.Name
			break
		}
	}
	if a.signer == "" {
		return fail(ReasonBadSignature)
	}
	expires, err := time.Parse(time.RFC3339, e.Expires)
	now := g.cfg.Now()
	switch {
	case err != nil:
		return Result{ID: e.ID, Error: ReasonMalformed + ": expires is not RFC 3339"}, false
	case !expires.After(now):
		return fail(ReasonExpired)
	case expires.Before(g.horizon):
		g.log.Error("command expires before the nonce store's horizon: the clock went back", "now", now, "horizon", g.horizon)
		return fail(ReasonExpired)
	case expires.After(now.Add(g.cfg.MaxTTL)):
		return fail(ReasonTooFarAhead)
	}
	fresh, err := g.useNonce(e.Nonce, expires)
	if err != nil {
		g.log.Error("nonce store", "err", err)
		return fail(ReasonWriteFailed + ": nonce store unavailable")
	}
	if !fresh {
		return fail(ReasonReplayed)
	}
	return Result{}, true
}

// useNonce records nonce; it reports false if it was seen before.
func (g *Gate) useNonce(nonce string, expires time.Time) (fresh bool, err error) {
	err = g.nonces.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNonces)
		if err != nil {
			return err
		}
		if b.Get([]byte(nonce)) != nil {
			return nil
		}
		fresh = true
		return b.Put([]byte(nonce), binary.BigEndian.AppendUint64(nil, uint64(expires.Unix())))
	})
	return fresh, err
}

// pruneNonces forgets nonces whose commands expired over a day ago and
// records that horizon (it only moves forwards): a command expiring before
// it is refused even if the clock later goes back, since its nonce may be
// gone.
func (g *Gate) pruneNonces() error {
	cutoff := uint64(g.cfg.Now().Add(-24 * time.Hour).Unix())
	return g.nonces.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyHorizon); len(v) == 8 {
			cutoff = max(cutoff, binary.BigEndian.Uint64(v))
		}
		if err := meta.Put(keyHorizon, binary.BigEndian.AppendUint64(nil, cutoff)); err != nil {
			return err
		}
		g.horizon = time.Unix(int64(cutoff), 0)
		b, err := tx.CreateBucketIfNotExists(bucketNonces)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < cutoff {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (g *Gate) allowRate(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	times := g.recent[key]
	for i, t := range times {
		if t.After(now) { // the clock went back: count them from now, not from the future
			times[i] = now
		}
	}
	for len(times) > 0 && now.Sub(times[0]) >= time.Minute {
		times = times[1:]
	}
	if len(times) >= g.cfg.RatePerMinute {
		g.recent[key] = times
		return false
	}
	g.recent[key] = append(times, now)
	return true
}

// Counts returns the attempts so far by outcome: "ok" or the refusal reason.
func (g *Gate) Counts() map[string]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]uint64, len(g.counts))
	for k, v := range g.counts {
		out[k] = v
	}
	return out
}

// answer counts the attempt, and reports it: an accepted command is logged,
// appended to the audit log, answered on its result topic and published on
// $commands. A refusal is reported one by one (a WARN line, a line in the
// refusals log, the result: one published record) only within the bounds
// of its refusal window; beyond them it is counted into the window's summary.
// Command values are never recorded.
func (g *Gate) answer(ctx context.Context, a attempt, r Result) {
	outcome, _, _ := strings.Cut(r.Error, ":")
	if r.OK {
		outcome = "ok"
	}
	g.mu.Lock()
	g.counts[outcome]++
	g.mu.Unlock()
	entry := map[string]any{
		"source": a.source, "id": a.env.ID, "device": a.device, "point": a.point,
		"ok": fmt.Sprint(r.OK), "error": r.Error, "signer": a.signer,
	}
	if r.OK {
		g.log.Info("command accepted", "source", a.source, "id", a.env.ID, "device", a.device, "point", a.point, "signer", a.signer)
		g.appendAudit(g.cfg.AuditFile, entry)
		g.publishResult(ctx, a, r)
		g.publishEvent(ctx, entry)
		return
	}
	if !g.noteRefusal(a, outcome) {
		return
	}
	g.log.Warn("command refused", "source", a.source, "id", a.env.ID, "device", a.device, "point", a.point, "reason", r.Error)
	g.appendAudit(refusedFile(g.cfg.AuditFile), entry)
	g.publishResult(ctx, a, r)
}

func (g *Gate) publishResult(ctx context.Context, a attempt, r Result) {
	if g.cfg.Publish == nil || a.device == "" || a.point == "" {
		return
	}
	payload, _ := json.Marshal(r)
	topic := "lintel/" + g.cfg.GatewayID + "/" + a.device + "/" + a.point + "/set/result"
	if err := g.cfg.Publish(ctx, topic, payload); err != nil {
		g.log.Debug("cannot publish command result", "err", err)
	}
}

func (g *Gate) publishEvent(ctx context.Context, fields map[string]any) {
	if g.cfg.Publish == nil {
		return
	}
	event, _ := json.Marshal(struct {
		TS     string         `json:"ts"`
		Fields map[string]any `json:"fields"`
	}{g.cfg.Now().UTC().Format(adapters.TimeFormat), fields})
	g.cfg.Publish(ctx, "lintel/"+g.cfg.GatewayID+"/$commands", event)
}

// noteRefusal counts a refusal in its window and reports whether it is
// within the bounds that are reported one by one.
func (g *Gate) noteRefusal(a attempt, reason string) bool {
	now := g.cfg.Now()
	g.refMu.Lock()
	if ended(g.windowAt, now, g.cfg.RefusalWindow) {
		g.windowAt, g.reported = now, 0
	}
	k := refusalKey{a.source, a.device, a.point}
	if _, ok := g.refusals[k]; !ok && len(g.refusals) >= maxRefusalKeys {
		k = refusalKey{source: a.source, device: "*", point: "*"}
	}
	w := g.refusals[k]
	if w == nil {
		w = &refusalWindow{start: now, reasons: map[string]uint64{}}
		g.refusals[k] = w
	}
	w.seen++
	report := w.seen <= refusalBurst && g.reported < refusalBudget
	if report {
		g.reported++
	} else {
		w.quiet++
		w.reasons[reason]++
	}
	g.refMu.Unlock()
	return report
}

// ended reports whether a window that started at start is over at now; a
// clock that went backwards ends it too.
func ended(start, now time.Time, window time.Duration) bool {
	return now.Sub(start) >= window || now.Before(start)
}

type refusalSummary struct {
	key     refusalKey
	start   time.Time
	quiet   int
	reasons map[string]uint64
}

// takeEnded removes the refusal windows that ended (all of them if all) and
// returns the summaries of those with quiet refusals.
func (g *Gate) takeEnded(now time.Time, all bool) []refusalSummary {
	g.refMu.Lock()
	defer g.refMu.Unlock()
	var out []refusalSummary
	for k, w := range g.refusals {
		if !all && !ended(w.start, now, g.cfg.RefusalWindow) {
			continue
		}
		delete(g.refusals, k)
		if w.quiet > 0 {
			out = append(out, refusalSummary{k, w.start, w.quiet, w.reasons})
		}
	}
	return out
}

// summarize reports each summary: one WARN line, one line in the refusals
// log, one $commands event.
func (g *Gate) summarize(sums []refusalSummary) {
	for _, s := range sums {
		g.log.Warn("commands refused (summary)", "source", s.key.source, "device", s.key.device, "point", s.key.point,
			"refused", s.quiet, "since", s.start.UTC().Format(adapters.TimeFormat), "reasons", s.reasons)
		entry := map[string]any{
			"source": s.key.source, "device": s.key.device, "point": s.key.point, "ok": "false",
			"refused": s.quiet, "since": s.start.UTC().Format(adapters.TimeFormat), "reasons": s.reasons,
		}
		g.appendAudit(refusedFile(g.cfg.AuditFile), entry)
		g.publishEvent(context.Background(), entry)
	}
}

// refusedFile is the refusals log beside the audit log: commands.log →
// commands-refused.log.
func refusedFile(audit string) string {
	if audit == "" {
		return ""
	}
	return strings.TrimSuffix(audit, ".log") + "-refused.log"
}

const (
	auditMaxBytes = 1 << 20
	auditKeep     = 3
)

// appendAudit appends entry to the JSON-lines file path, rotating it at
// auditMaxBytes.
func (g *Gate) appendAudit(path string, entry map[string]any) {
	if path == "" {
		return
	}
	g.auditMu.Lock()
	defer g.auditMu.Unlock()
	full := map[string]any{"ts": g.cfg.Now().UTC().Format(adapters.TimeFormat)}
	for k, v := range entry {
		full[k] = v
	}
	line, _ := json.Marshal(full)
	if fi, err := os.Stat(path); err == nil && fi.Size()+int64(len(line)) > auditMaxBytes {
		for i := auditKeep - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))
		}
		os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		g.log.Error("command audit log", "err", err)
		return
	}
	defer f.Close()
	f.Write(append(line, '\n'))
}
