package serialline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.bug.st/serial"

	"github.com/lintel-gw/lintel/adapters"
)

// Minimiser applies an event's privacy rules to the fields it captured and
// returns the fields as they may be published. gateway/privacy's site Key is
// the one the gateway passes; the policy lives there, not in the adapter.
type Minimiser interface {
	Apply(fields map[string]string, rules map[string]string) map[string]string
}

// Pseudonymize is the rule that needs Config.Key.
const Pseudonymize = "pseudonymize"

// Event turns matching frames into a published event, or into a state point.
type Event struct {
	Name string
	// Match's named groups are the event's fields.
	Match *regexp.Regexp
	// Privacy rules by field (keep, pseudonymize, drop); fields without a
	// rule are kept.
	Privacy map[string]string
	// Point, if set, makes the event a state reading: a template such as
	// "door_{door}" naming the point, whose value is the field Value (or
	// its entry in Values, e.g. OPEN → true).
	Point  string
	Value  string
	Values map[string]any
	// Normal lowers the delivery priority; events are High by default.
	Normal bool
}

// Request is sent periodically; a frame matching Expect within Timeout is
// its answer. Answers are parsed by the events like any frame.
type Request struct {
	Send    []byte
	Every   time.Duration
	Expect  *regexp.Regexp // nil: no answer expected
	Timeout time.Duration
}

// Param constrains one command parameter. A value is sent as printable
// ASCII only (space to ~), or, with Unicode, as printable Unicode (no
// control, format or line/paragraph separator characters). A parameter
// with Min or Max is a number: given as a JSON number or a string in plain
// decimal (no sign +, exponent, hex, leading zeros, NaN or Inf), it is sent
// in one canonical form: an integer in plain decimal when the bounds are
// whole numbers (2.5 is refused then), else the shortest plain decimal.
// Pattern must match the whole value (New anchors it).
type Param struct {
	Enum     []string
	Min, Max *float64
	Pattern  *regexp.Regexp
	Unicode  bool
}

// Command is a template such as "UNLOCK {door}\r\n" whose parameters come
// from the command's JSON object value.
type Command struct {
	Name     string
	Send     string
	Params   map[string]Param
	Critical bool // needs a signed command, whatever UnsignedWrites says
	// UnsignedWrites lets commands without a signature send this command
	// (config: unsigned_writes: true). Off by default: every command is signed.
	UnsignedWrites bool
	Expect         *regexp.Regexp // optional acknowledgement
	Timeout        time.Duration
}

// Device is one controller on the line.
type Device struct {
	Name     string
	Events   []Event
	Requests []Request
	Commands []Command
}

// Config describes a serial line and its devices.
type Config struct {
	Name     string
	Port     string // device path; prefer /dev/serial/by-id/… names
	Baud     int
	Parity   string // none, even, odd
	StopBits int
	Framing  Framing
	Devices  []Device
	// Key applies the privacy rules; required when any rule pseudonymizes.
	Key Minimiser
	// OfflineAfter request timeouts in a row mark a device offline (default 3).
	OfflineAfter int
	// Open opens the port; nil uses go.bug.st/serial. Tests substitute it.
	Open func(cfg Config) (Port, error)
}

// Port is what the line needs of a serial port (go.bug.st/serial.Port
// satisfies it).
type Port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
	SetReadTimeout(t time.Duration) error
}

// Sentinel errors of Write besides adapters.ErrUnknownTarget and
// adapters.ErrInvalidValue (unknown command, invalid parameters), which the
// command gate reports by kind.
var (
	ErrNotConnected = errors.New("serial port not open")
	ErrNoAck        = errors.New("no acknowledgement from the device")
)

// Line is the serial-line adapter for one port.
type Line struct {
	cfg Config
	log *slog.Logger

	writeMu sync.Mutex // one write (and its answer) at a time
	mu      sync.Mutex
	port    Port
	waiters []*waiter

	// Counters. BadTopics counts readings dropped because a template filled
	// from a frame made an invalid topic level.
	Frames, Unmatched, Dropped, BadTopics atomic.Uint64

	badMu     sync.Mutex
	badLogged map[string]bool // device/event already logged for a bad topic

	stMu sync.Mutex
	st   *status

	// health is each device's last error and back-off, for Report; the
	// map is fixed by New.
	health map[string]*adapters.Health
}

// Stats are a line's counters and its devices' states.
type Stats struct {
	Frames, Unmatched, Dropped, BadTopics uint64
	Online                                map[string]bool
}

// Stats returns the line's counters.
func (l *Line) Stats() Stats {
	s := Stats{Frames: l.Frames.Load(), Unmatched: l.Unmatched.Load(), Dropped: l.Dropped.Load(), BadTopics: l.BadTopics.Load(), Online: map[string]bool{}}
	l.stMu.Lock()
	st := l.st
	l.stMu.Unlock()
	for _, d := range l.cfg.Devices {
		s.Online[d.Name] = false
	}
	if st != nil {
		st.mu.Lock()
		for name, on := range st.online {
			s.Online[name] = on != nil && *on
		}
		st.mu.Unlock()
	}
	return s
}

type waiter struct {
	expect *regexp.Regexp
	got    chan string
}

// New checks the configuration.
func New(cfg Config, logger *slog.Logger) (*Line, error) {
	if err := cfg.Framing.Validate(); err != nil {
		return nil, err
	}
	cfg.Framing.ensureDefaults()
	if cfg.Baud == 0 {
		cfg.Baud = 9600
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = 3
	}
	if cfg.Open == nil {
		cfg.Open = openSerial
	}
	cfg.Devices = anchorPatterns(cfg.Devices)
	for _, d := range cfg.Devices {
		for _, e := range d.Events {
			for field, r := range e.Privacy {
				if slices.Index(e.Match.SubexpNames(), field) < 0 {
					return nil, fmt.Errorf("device %q event %q: privacy rule for %q, which the pattern does not capture", d.Name, e.Name, field)
				}
				if r == Pseudonymize && cfg.Key == nil {
					return nil, fmt.Errorf("device %q event %q: pseudonymize needs the site key", d.Name, e.Name)
				}
			}
		}
	}
	health := map[string]*adapters.Health{}
	for _, d := range cfg.Devices {
		health[d.Name] = &adapters.Health{}
	}
	return &Line{cfg: cfg, log: logger.With("component", "serialline", "bus", cfg.Name), badLogged: map[string]bool{}, health: health}, nil
}

// anchorPatterns returns a copy of devices whose parameter patterns must
// match the whole value: [A-Z]+ must not pass "hi WORLD; UNLOCK 1".
func anchorPatterns(devices []Device) []Device {
	out := slices.Clone(devices)
	for i, d := range out {
		out[i].Commands = slices.Clone(d.Commands)
		for j, c := range out[i].Commands {
			params := make(map[string]Param, len(c.Params))
			for name, p := range c.Params {
				if p.Pattern != nil {
					p.Pattern = regexp.MustCompile(`^(?:` + p.Pattern.String() + `)$`) // compiles: the inner one did
				}
				params[name] = p
			}
			out[i].Commands[j].Params = params
		}
	}
	return out
}

func openSerial(cfg Config) (Port, error) {
	mode := &serial.Mode{BaudRate: cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	switch cfg.Parity {
	case "even":
		mode.Parity = serial.EvenParity
	case "odd":
		mode.Parity = serial.OddParity
	}
	if cfg.StopBits == 2 {
		mode.StopBits = serial.TwoStopBits
	}
	return serial.Open(cfg.Port, mode)
}

// CheckWrite validates a command without sending anything and reports
// whether it must be signed.
func (l *Line) CheckWrite(w adapters.WriteRequest) (needsSignature bool, err error) {
	_, c, err := l.command(w.Device, w.Point)
	if err != nil {
		return true, err
	}
	needsSignature = c.Critical || !c.UnsignedWrites
	if _, err := c.bind(w.Value); err != nil {
		return needsSignature, fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, adapters.ErrInvalidValue, err)
	}
	return needsSignature, nil
}

// Run opens the port, reads frames and runs the periodic requests until ctx
// ends. When the port fails (a USB adapter unplugged) every device is
// reported offline and the port is reopened with backoff until it returns.
func (l *Line) Run(ctx context.Context, pub adapters.Publisher) error {
	status := newStatus(l.cfg.Devices, pub)
	l.stMu.Lock()
	l.st = status
	l.stMu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	reqCtx, stopRequests := context.WithCancel(ctx)
	defer stopRequests()
	for _, d := range l.cfg.Devices {
		for _, r := range d.Requests {
			wg.Go(func() { l.poll(reqCtx, d.Name, r, status) })
		}
	}

	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		port, err := l.cfg.Open(l.cfg)
		if err != nil {
			status.all(ctx, false, "cannot open "+l.cfg.Port+": "+err.Error())
			now := time.Now()
			for _, h := range l.health {
				h.Failed("cannot open port", now)
				h.BackOff(now.Add(backoff))
			}
			l.log.Debug("port not available", "port", l.cfg.Port, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 500 * time.Millisecond
		port.SetReadTimeout(200 * time.Millisecond)
		l.mu.Lock()
		l.port = port
		l.mu.Unlock()
		l.log.Info("port open", "port", l.cfg.Port)
		status.all(ctx, true, "")
		for _, h := range l.health {
			h.Answered()
		}

		err = l.read(ctx, port, pub, status)

		l.mu.Lock()
		l.port = nil
		l.mu.Unlock()
		port.Close()
		if ctx.Err() == nil {
			l.log.Warn("port lost; reopening", "port", l.cfg.Port, "err", err)
			status.all(ctx, false, "port lost: "+err.Error())
			for _, h := range l.health {
				h.Failed("port lost", time.Now())
			}
		}
	}
	return nil
}

func (l *Line) read(ctx context.Context, port Port, pub adapters.Publisher, status *status) error {
	fr := NewFramer(l.cfg.Framing)
	buf := make([]byte, 1024)
	dropped := uint64(0)
	for ctx.Err() == nil {
		n, err := port.Read(buf)
		if err != nil {
			return err
		}
		for _, frame := range fr.Feed(buf[:n]) {
			l.Frames.Add(1)
			l.handle(ctx, frame, pub)
		}
		if fr.Dropped != dropped {
			l.log.Warn("dropped garbage or over-long frames", "count", fr.Dropped-dropped, "total", fr.Dropped)
			l.Dropped.Add(fr.Dropped - dropped)
			dropped = fr.Dropped
			l.lineError("garbage or over-long frame dropped")
		}
	}
	return nil
}

// handle answers waiting requests and publishes what the events make of a
// frame. Frame contents are never logged: they may hold names.
func (l *Line) handle(ctx context.Context, frame []byte, pub adapters.Publisher) {
	text := strings.ToValidUTF8(string(frame), "\uFFFD")
	at := time.Now()
	answer := false
	l.mu.Lock()
	for i, w := range l.waiters {
		if w.expect.MatchString(text) {
			w.got <- text
			l.waiters = slices.Delete(l.waiters, i, i+1)
			answer = true
			break
		}
	}
	l.mu.Unlock()

	matched := false
	for _, d := range l.cfg.Devices {
		for _, e := range d.Events {
			m := e.Match.FindStringSubmatch(text)
			if m == nil {
				continue
			}
			matched = true
			if err := l.publishEvent(ctx, d.Name, e, m, at, pub); err != nil {
				l.log.Warn("cannot publish event", "device", d.Name, "event", e.Name, "err", err)
			}
			break // one event per frame and device
		}
	}
	if !matched {
		l.Unmatched.Add(1)
		l.log.Debug("frame matches no event", "bytes", len(frame))
		if !answer { // an answer to a request is no error, even if no event parses it
			l.lineError("frame matched no event")
		}
	}
}

// lineError records a problem of a frame that belongs to no device as the
// last error of the line's device when the line has only one; on a shared
// line it is only counted (Unmatched, Dropped). kind is a fixed
// description: the frame may hold names and is never recorded.
func (l *Line) lineError(kind string) {
	if len(l.cfg.Devices) == 1 {
		l.health[l.cfg.Devices[0].Name].Error(kind, time.Now())
	}
}

func (l *Line) publishEvent(ctx context.Context, device string, e Event, m []string, at time.Time, pub adapters.Publisher) error {
	raw := map[string]string{}
	for i, name := range e.Match.SubexpNames() {
		if name != "" && i < len(m) {
			raw[name] = m[i]
		}
	}
	fields := raw
	if len(e.Privacy) > 0 {
		fields = l.cfg.Key.Apply(raw, e.Privacy)
	}
	msg := adapters.Message{Device: device, High: !e.Normal}
	if e.Point != "" {
		point, value := expand(e.Point, fields), fields[e.Value]
		if err := adapters.ValidTopicLevel(point); err != nil {
			l.badTopic(device, e.Name, err)
			return nil
		}
		var v any = value
		if mapped, ok := e.Values[value]; ok {
			v = mapped
		}
		payload, err := json.Marshal(adapters.Reading{V: v, TS: adapters.Timestamp(at), Q: adapters.QualityGood})
		if err != nil {
			return err
		}
		msg.Point, msg.Payload, msg.Retain = point, payload, true
	} else {
		payload, err := json.Marshal(struct {
			TS     adapters.Timestamp `json:"ts"`
			Fields map[string]string  `json:"fields"`
		}{adapters.Timestamp(at), fields})
		if err != nil {
			return err
		}
		msg.Point, msg.Payload = e.Name, payload
	}
	return pub.Publish(ctx, msg)
}

// badTopic counts a reading dropped for its topic and logs it the first time
// per event (the frame may hold personal data and is not logged).
func (l *Line) badTopic(device, event string, err error) {
	l.BadTopics.Add(1)
	l.health[device].Error("event made an invalid topic", time.Now())
	l.badMu.Lock()
	first := !l.badLogged[device+"/"+event]
	l.badLogged[device+"/"+event] = true
	l.badMu.Unlock()
	if first {
		l.log.Warn("event would publish on an invalid topic; dropped", "device", device, "event", event, "err", err,
			"hint", "narrow the event's capture so it cannot hold / + # $ or control characters")
	}
}

// expand replaces {field} in a template with the field's value.
func expand(template string, fields map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		template = strings.ReplaceAll(template, "{"+k+"}", fields[k])
	}
	return template
}

// poll sends a request periodically and tracks its answers.
func (l *Line) poll(ctx context.Context, device string, r Request, st *status) {
	t := time.NewTicker(r.Every)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := l.transact(ctx, r.Send, r.Expect, r.Timeout)
		switch {
		case errors.Is(err, ErrNotConnected), ctx.Err() != nil:
		case err != nil:
			misses++
			kind := "no answer to request"
			if !errors.Is(err, ErrNoAck) {
				kind = "write failed"
			}
			l.health[device].Failed(kind, time.Now())
			if misses == l.cfg.OfflineAfter {
				l.log.Warn("device not answering", "device", device, "misses", misses)
				st.set(ctx, device, false, fmt.Sprintf("no answer to %d requests", misses))
			}
		default:
			if misses >= l.cfg.OfflineAfter {
				st.set(ctx, device, true, "")
			}
			misses = 0
			l.health[device].Answered()
		}
	}
}

// transact writes data and, if expect is set, waits for a matching frame.
func (l *Line) transact(ctx context.Context, data []byte, expect *regexp.Regexp, timeout time.Duration) (string, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	port := l.port
	var w *waiter
	if port != nil && expect != nil {
		w = &waiter{expect: expect, got: make(chan string, 1)}
		l.waiters = append(l.waiters, w)
	}
	l.mu.Unlock()
	if port == nil {
		return "", ErrNotConnected
	}
	defer l.dropWaiter(w)
	if _, err := port.Write(data); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	if w == nil {
		return "", nil
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	select {
	case answer := <-w.got:
		return answer, nil
	case <-time.After(timeout):
		return "", ErrNoAck
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (l *Line) dropWaiter(w *waiter) {
	if w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := slices.Index(l.waiters, w); i >= 0 {
		l.waiters = slices.Delete(l.waiters, i, i+1)
	}
}

// Write sends a command: Point names the command, Value is a JSON object of
// its parameters, e.g. {"door":"2"} for "UNLOCK {door}". Every parameter
// must be given and valid, no other may be given, and no value may hold
// control characters, so a parameter cannot smuggle a second command.
func (l *Line) Write(ctx context.Context, w adapters.WriteRequest) error {
	_, c, err := l.command(w.Device, w.Point)
	if err != nil {
		return err
	}
	params, err := c.bind(w.Value)
	if err != nil {
		return fmt.Errorf("%s/%s: %w: %v", w.Device, w.Point, adapters.ErrInvalidValue, err)
	}
	_, err = l.transact(ctx, []byte(expand(c.Send, params)), c.Expect, c.Timeout)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", w.Device, w.Point, err)
	}
	return nil
}

func (l *Line) command(device, name string) (Device, Command, error) {
	for _, d := range l.cfg.Devices {
		if d.Name != device {
			continue
		}
		for _, c := range d.Commands {
			if c.Name == name {
				return d, c, nil
			}
		}
	}
	return Device{}, Command{}, fmt.Errorf("%s/%s: %w", device, name, adapters.ErrUnknownTarget)
}

// bind checks a JSON object of parameters against the command and returns
// the text to send for each.
func (c Command) bind(value json.RawMessage) (map[string]string, error) {
	var raw map[string]any
	if len(value) > 0 && string(value) != "null" {
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.UseNumber() // the number's own text, not a float64 round trip
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("want a JSON object of parameters: %v", err)
		}
	}
	out := map[string]string{}
	for name := range raw {
		if _, ok := c.Params[name]; !ok {
			return nil, fmt.Errorf("unknown parameter %q", name)
		}
	}
	for name, p := range c.Params {
		v, ok := raw[name]
		if !ok {
			return nil, fmt.Errorf("missing parameter %q", name)
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		default:
			return nil, fmt.Errorf("parameter %q: want a string or number", name)
		}
		s, err := p.encode(s)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %v", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// plainDecimal is the only number syntax accepted: no +, exponent, hex,
// leading zeros, NaN or Inf.
var plainDecimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// maxNumber bounds a number's text; a longer one is refused.
const maxNumber = 40

// encode checks s and returns the text to send: s itself, or for a number
// its canonical form. Enum and pattern apply to what is sent.
func (p Param) encode(s string) (string, error) {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		if p.Unicode {
			return !unicode.IsPrint(r)
		}
		return r < 0x20 || r > 0x7e
	}) {
		if p.Unicode {
			return "", errors.New("only printable characters are allowed")
		}
		return "", errors.New("only printable ASCII is allowed")
	}
	if p.Min != nil || p.Max != nil {
		if len(s) > maxNumber || !plainDecimal.MatchString(s) {
			return "", fmt.Errorf("%q is not a plain decimal number", s)
		}
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
			return "", fmt.Errorf("%q is not a number", s)
		}
		if p.Min != nil && n < *p.Min || p.Max != nil && n > *p.Max {
			return "", fmt.Errorf("%s is out of range", s)
		}
		if p.integral() {
			if n != math.Trunc(n) || math.Abs(n) >= 1<<53 {
				return "", fmt.Errorf("%s is not a whole number", s)
			}
			s = strconv.FormatInt(int64(n), 10)
		} else {
			s = strconv.FormatFloat(n+0, 'f', -1, 64) // +0 turns -0 into 0
		}
	}
	if len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
		return "", fmt.Errorf("%q is not one of %s", s, strings.Join(p.Enum, ", "))
	}
	if p.Pattern != nil && !p.Pattern.MatchString(s) {
		return "", fmt.Errorf("%q does not match %s", s, p.Pattern)
	}
	return s, nil
}

// integral reports whether the bounds are whole numbers: the parameter is an
// integer then.
func (p Param) integral() bool {
	whole := func(f *float64) bool { return f == nil || *f == math.Trunc(*f) }
	return whole(p.Min) && whole(p.Max)
}

// status publishes each device's retained $status on change.
type status struct {
	mu     sync.Mutex
	pub    adapters.Publisher
	online map[string]*bool
}

func newStatus(devices []Device, pub adapters.Publisher) *status {
	s := &status{pub: pub, online: map[string]*bool{}}
	for _, d := range devices {
		s.online[d.Name] = nil
	}
	return s
}

func (s *status) all(ctx context.Context, online bool, errText string) {
	for _, d := range slices.Sorted(maps.Keys(s.online)) {
		s.set(ctx, d, online, errText)
	}
}

func (s *status) set(ctx context.Context, device string, online bool, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.online[device]; cur != nil && *cur == online {
		return
	}
	s.online[device] = &online
	payload, _ := json.Marshal(adapters.DeviceStatus{Online: online, Since: adapters.Timestamp(time.Now()), Error: errText})
	s.pub.Publish(ctx, adapters.Message{Device: device, Point: adapters.StatusPoint, Payload: payload, Retain: true, High: true})
}
