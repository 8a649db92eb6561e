package sparkplug

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/buffer"
)

// Namespace is the first topic level of every Sparkplug B message.
const Namespace = "spBv1.0"

// Metric names Lintel declares in every NBIRTH besides the configured
// points.
const (
	MetricBdSeq   = "bdSeq"
	MetricRebirth = "Node Control/Rebirth"
	// MetricResult carries each command result as JSON
	// {"device","point","id","ok","error"} in an NDATA.
	MetricResult = "lintel/command_result"
	// MetricEvent carries any other Lintel record as JSON
	// {"topic","payload"} in an NDATA (command audit events, readings of
	// points not declared in a birth).
	MetricEvent = "lintel/event"
	// PropEnvelope is the DCMD/NCMD metric property (String) that carries a
	// signed Lintel command envelope.
	PropEnvelope = "lintel_envelope"
)

// Forms of the primary host's STATE (Config.PrimaryHostState).
const (
	// StateAuto follows both forms; once a 3.0 STATE was taken, 2.2
	// STATE messages are ignored.
	StateAuto = "auto"
	// State30 is spBv1.0/STATE/<host> with JSON {"online":bool,"timestamp":ms}.
	State30 = "3.0"
	// State22 is STATE/<host> with the UTF-8 payload ONLINE or OFFLINE.
	State22 = "2.2"
)

// MetricDef declares one metric in the births: a configured point.
type MetricDef struct {
	Device string // the Lintel device; a DBIRTH per device
	Name   string // the point
	Type   DataType
	Unit   string  // property "unit" when set
	Scale  float64 // property "scale" when not 0
}

// Config describes the edge node.
type Config struct {
	GroupID    string
	EdgeNodeID string
	// PrimaryHostID, if set, is the host application whose STATE gates
	// delivery: nothing is born or sent while it is offline.
	PrimaryHostID string
	// PrimaryHostState is the form of the primary host's STATE:
	// StateAuto (or ""), State30 or State22.
	PrimaryHostState string
	// QoS1Data sends DATA, DBIRTH and DDEATH at QoS 1 (outside the
	// specification, which says QoS 0) instead of QoS 0 behind a fence.
	QoS1Data bool
	// GatewayID is the Lintel gateway whose records (lintel/<gateway>/…)
	// are translated.
	GatewayID string
	// TopicPrefix goes before the fence topic lintel/<gateway>/$fence.
	TopicPrefix string
	Metrics     []MetricDef
	// StateFile is the bbolt file that keeps bdSeq across restarts.
	StateFile string
	// OnCommand receives DCMD writes translated to Lintel's command topic
	// lintel/<gateway>/<device>/<point>/set and envelope (the command
	// gate's input). Nil: DCMD writes are ignored.
	OnCommand func(topic string, payload []byte)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Node is a Sparkplug B edge node on the uplink: it is both the uplink's
// Encoder and its Session.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *store
	defs  map[string]map[string]MetricDef // device → point → def
	order []string                        // devices in declaration order

	mu         sync.Mutex
	bdSeq      uint64 // of the current connection (its Will)
	seq        uint64 // next seq on this connection
	born       bool   // NBIRTH sent on this connection
	hostOnline bool
	stateTS    int64             // timestamp of the last 3.0 STATE taken, kept across connections
	online30   bool              // what that STATE said
	statesSeen int               // STATE messages handled (tests wait on it)
	took30     bool              // a 3.0 STATE was taken: 2.2 ones are ignored (auto)
	warned22   bool              // that a 2.2 STATE was ignored was logged
	badState   map[string]string // topic → last malformed payload logged
	ready      chan struct{}     // closed while born && hostOnline
	liveSince  time.Time         // records older than the last NBIRTH are historical
	dead       map[string]bool
	last       map[string]Metric // device/point → last value sent
}

// New opens the bdSeq store. Close it after the uplink stopped.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	for key, id := range map[string]string{"group_id": cfg.GroupID, "edge_node_id": cfg.EdgeNodeID, "primary_host_id": cfg.PrimaryHostID} {
		if strings.ContainsAny(id, "/+#") || id == "" && key != "primary_host_id" {
			return nil, fmt.Errorf("sparkplug %s %q: must be non-empty without / + #", key, id)
		}
	}
	switch cfg.PrimaryHostState {
	case "":
		cfg.PrimaryHostState = StateAuto
	case StateAuto, State30, State22:
	default:
		return nil, fmt.Errorf("sparkplug primary_host_state %q: want auto, 3.0 or 2.2", cfg.PrimaryHostState)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s, err := openStore(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: logger.With("component", "sparkplug"), store: s,
		defs: map[string]map[string]MetricDef{}, ready: make(chan struct{}),
		dead: map[string]bool{}, last: map[string]Metric{}, badState: map[string]string{}}
	for _, d := range cfg.Metrics {
		if n.defs[d.Device] == nil {
			n.defs[d.Device] = map[string]MetricDef{}
			n.order = append(n.order, d.Device)
		}
		n.defs[d.Device][d.Name] = d
	}
	return n, nil
}

// Close closes the bdSeq store.
func (n *Node) Close() error { return n.store.close() }

// Topic returns spBv1.0/<group>/<kind>/<edge node>[/<device>].
func (n *Node) Topic(kind, device string) string {
	t := Namespace + "/" + n.cfg.GroupID + "/" + kind + "/" + n.cfg.EdgeNodeID
	if device != "" {
		t += "/" + device
	}
	return t
}

func (n *Node) nowMS() uint64 { return uint64(n.cfg.Now().UnixMilli()) }

// Will returns the NDEATH for the next connection with a new bdSeq, stored
// before it is used.
func (n *Node) Will() (string, []byte, byte, bool) {
	bd, err := n.store.next()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		// The host still sees NBIRTH and NDEATH agree; only a restart
		// could reuse this bdSeq.
		n.log.Error("bdSeq not stored", "err", err)
		bd = (n.bdSeq + 1) % 256
	}
	n.bdSeq = bd
	return n.Topic("NDEATH", ""), n.death(), 1, false
}

// death is the NDEATH payload: the bdSeq metric, no seq.
func (n *Node) death() []byte {
	p := Payload{Timestamp: n.nowMS(), Metrics: []Metric{{Name: MetricBdSeq, Datatype: Int64, Value: int64(n.bdSeq)}}}
	return p.Marshal()
}

// Connected subscribes to commands (and the primary host's STATE) and,
// unless a primary host must be seen online first, publishes the births.
func (n *Node) Connected(ctx context.Context, c paho.Client) error {
	n.mu.Lock()
	// stateTS and online30 are kept: a stale STATE retained on the
	// broker must not decide after a reconnect either.
	n.born, n.hostOnline = false, n.cfg.PrimaryHostID == ""
	n.setReady()
	n.mu.Unlock()
	subs := map[string]byte{n.Topic("NCMD", ""): 1, n.Topic("DCMD", "+"): 1}
	if id := n.cfg.PrimaryHostID; id != "" {
		if n.cfg.PrimaryHostState != State22 {
			subs[n.state30Topic()] = 1
		}
		if n.cfg.PrimaryHostState != State30 {
			subs[n.state22Topic()] = 1
		}
	}
	if err := wait(ctx, c.SubscribeMultiple(subs, n.onMessage)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hostOnline && !n.born {
		n.birth(c)
	}
	return nil
}

// setReady opens or closes the hold on delivery; n.mu is held.
func (n *Node) setReady() {
	open := n.born && n.hostOnline
	select {
	case <-n.ready:
		if !open {
			n.ready = make(chan struct{})
		}
	default:
		if open {
			close(n.ready)
		}
	}
}

// Hold blocks while the node is not born or the primary host is offline.
func (n *Node) Hold(ctx context.Context) error {
	n.mu.Lock()
	ready := n.ready
	n.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish stamps the connection's next seq (0–255, wrapping) on an encoded
// payload and publishes it, at QoS 0 unless QoS1Data.
func (n *Node) Publish(c paho.Client, topic string, _ bool, payload []byte) (paho.Token, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	qos := byte(0)
	if n.cfg.QoS1Data {
		qos = 1
	}
	return n.send(c, topic, qos, payload), qos == 0
}

// send publishes with the next seq; n.mu is held so that seqs go out in order.
func (n *Node) send(c paho.Client, topic string, qos byte, payload []byte) paho.Token {
	b := AppendSeq(append([]byte(nil), payload...), n.seq)
	n.seq = (n.seq + 1) % 256
	return c.Publish(topic, qos, false, b)
}

// FenceTopic is where Fence publishes.
func (n *Node) FenceTopic() string {
	return n.cfg.TopicPrefix + "lintel/" + n.cfg.GatewayID + "/$fence"
}

// Fence publishes an empty QoS 1 message outside the Sparkplug namespace;
// its PUBACK proves the broker took every QoS 0 message before it.
func (n *Node) Fence(c paho.Client) paho.Token {
	return c.Publish(n.FenceTopic(), 1, false, []byte{}) // paho refuses a nil payload
}

// Closing publishes the NDEATH itself: a clean DISCONNECT sends no Will.
func (n *Node) Closing(c paho.Client) paho.Token {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.born = false
	n.setReady()
	return c.Publish(n.Topic("NDEATH", ""), 1, false, n.death())
}

// birth publishes NBIRTH (seq 0) and a DBIRTH per device not known dead;
// records older than now are historical from here on. n.mu is held.
func (n *Node) birth(c paho.Client) {
	now := n.nowMS()
	n.seq = 0
	n.liveSince = n.cfg.Now()
	nb := Payload{Timestamp: now, Metrics: []Metric{
		{Name: MetricBdSeq, Timestamp: now, Datatype: Int64, Value: int64(n.bdSeq)},
		{Name: MetricRebirth, Timestamp: now, Datatype: Boolean, Value: false},
		{Name: MetricResult, Timestamp: now, Datatype: String, IsNull: true},
		{Name: MetricEvent, Timestamp: now, Datatype: String, IsNull: true},
	}}
	n.send(c, n.Topic("NBIRTH", ""), 0, nb.Marshal())
	for _, dev := range n.order {
		if !n.dead[dev] {
			n.send(c, n.Topic("DBIRTH", dev), 0, n.deviceBirth(dev, now))
		}
	}
	n.born = true
	n.setReady()
}

// deviceBirth declares every metric of dev with its datatype, unit and
// scale, and the last value sent (null if none).
func (n *Node) deviceBirth(dev string, now uint64) []byte {
	p := Payload{Timestamp: now}
	for _, d := range n.sortedDefs(dev) {
		m := Metric{Name: d.Name, Timestamp: now, Datatype: d.Type, IsNull: true}
		if l, ok := n.last[dev+"/"+d.Name]; ok {
			m.Timestamp, m.IsNull, m.Value = l.Timestamp, l.IsNull, l.Value
		}
		var ps PropertySet
		if d.Unit != "" {
			ps.Keys = append(ps.Keys, "unit")
			ps.Values = append(ps.Values, PropertyValue{Type: String, Value: d.Unit})
		}
		if d.Scale != 0 {
			ps.Keys = append(ps.Keys, "scale")
			ps.Values = append(ps.Values, PropertyValue{Type: Double, Value: d.Scale})
		}
		if len(ps.Keys) > 0 {
			m.Properties = &ps
		}
		p.Metrics = append(p.Metrics, m)
	}
	return p.Marshal()
}

func (n *Node) sortedDefs(dev string) []MetricDef {
	var out []MetricDef
	for _, d := range n.cfg.Metrics {
		if d.Device == dev {
			out = append(out, d)
		}
	}
	return out
}

// Encode implements the uplink's Encoder: a reading becomes a DDATA, a
// device $status a DBIRTH or DDEATH, a command result or any other record
// an NDATA. The seq is stamped by Publish.
func (n *Node) Encode(r buffer.Record) (string, []byte, error) {
	rest, ok := strings.CutPrefix(r.Topic, "lintel/"+n.cfg.GatewayID+"/")
	if !ok {
		return "", nil, fmt.Errorf("sparkplug: topic %q is not the gateway's", r.Topic)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.nowMS()
	historical := r.Time.Before(n.liveSince)
	levels := strings.Split(rest, "/")
	if len(levels) == 2 && levels[1] == "$status" {
		var st struct {
			Online *bool `json:"online"`
		}
		if err := json.Unmarshal(r.Payload, &st); err != nil || st.Online == nil {
			return "", nil, fmt.Errorf("sparkplug: device status %q: no online member", r.Payload)
		}
		dev := levels[0]
		n.dead[dev] = !*st.Online
		if *st.Online {
			return n.Topic("DBIRTH", dev), n.deviceBirth(dev, now), nil
		}
		p := Payload{Timestamp: now}
		return n.Topic("DDEATH", dev), p.Marshal(), nil
	}
	if len(levels) == 2 {
		if d, ok := n.defs[levels[0]][levels[1]]; ok {
			m, err := reading(d, r)
			if err != nil {
				return "", nil, err
			}
			m.IsHistorical = historical
			n.last[d.Device+"/"+d.Name] = m
			p := Payload{Timestamp: now, Metrics: []Metric{m}}
			return n.Topic("DDATA", d.Device), p.Marshal(), nil
		}
	}
	m := Metric{Name: MetricEvent, Timestamp: uint64(r.Time.UnixMilli()), Datatype: String, IsHistorical: historical}
	if len(levels) == 4 && levels[2] == "set" && levels[3] == "result" {
		var res map[string]any
		if err := json.Unmarshal(r.Payload, &res); err != nil {
			return "", nil, fmt.Errorf("sparkplug: command result: %w", err)
		}
		res["device"], res["point"] = levels[0], levels[1]
		b, _ := json.Marshal(res)
		m.Name, m.Value = MetricResult, string(b)
	} else {
		b, _ := json.Marshal(struct {
			Topic   string          `json:"topic"`
			Payload json.RawMessage `json:"payload,omitempty"`
			Text    string          `json:"text,omitempty"`
		}{Topic: r.Topic, Payload: rawIfJSON(r.Payload), Text: textIfNotJSON(r.Payload)})
		m.Value = string(b)
	}
	p := Payload{Timestamp: now, Metrics: []Metric{m}}
	return n.Topic("NDATA", ""), p.Marshal(), nil
}

func rawIfJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	return nil
}

func textIfNotJSON(b []byte) string {
	if json.Valid(b) {
		return ""
	}
	return string(b)
}

// reading converts a Lintel reading {"v","ts","q"} to a metric of d's type:
// a null or unconvertible value is sent as is_null, a quality other than
// good as the String property "quality".
func reading(d MetricDef, r buffer.Record) (Metric, error) {
	var rd struct {
		V  json.RawMessage `json:"v"`
		TS string          `json:"ts"`
		Q  string          `json:"q"`
	}
	if err := json.Unmarshal(r.Payload, &rd); err != nil {
		return Metric{}, fmt.Errorf("sparkplug: reading of %s/%s: %w", d.Device, d.Name, err)
	}
	m := Metric{Name: d.Name, Datatype: d.Type, Timestamp: uint64(r.Time.UnixMilli())}
	if ts, err := time.Parse(time.RFC3339Nano, rd.TS); err == nil {
		m.Timestamp = uint64(ts.UnixMilli())
	}
	m.Value = convert(d.Type, rd.V)
	m.IsNull = m.Value == nil
	if rd.Q != "" && rd.Q != "good" {
		m.Properties = &PropertySet{Keys: []string{"quality"}, Values: []PropertyValue{{Type: String, Value: rd.Q}}}
	}
	return m, nil
}

// convert returns the Go value for a metric of type t, nil if v does not fit.
func convert(t DataType, v json.RawMessage) any {
	var x any
	dec := json.NewDecoder(strings.NewReader(string(v)))
	dec.UseNumber()
	if len(v) == 0 || dec.Decode(&x) != nil || x == nil {
		return nil
	}
	switch t {
	case Boolean:
		switch x := x.(type) {
		case bool:
			return x
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil
			}
			return f != 0
		}
	case Int64:
		if num, ok := x.(json.Number); ok {
			if i, err := num.Int64(); err == nil {
				return i
			}
			if f, err := num.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
				return int64(f)
			}
		}
		if b, ok := x.(bool); ok {
			if b {
				return int64(1)
			}
			return int64(0)
		}
	case Double, Float:
		if num, ok := x.(json.Number); ok {
			if f, err := num.Float64(); err == nil {
				if t == Float {
					return float32(f)
				}
				return f
			}
		}
	case String, Text:
		if s, ok := x.(string); ok {
			return s
		}
		return string(v)
	}
	return nil
}

// onMessage handles NCMD, DCMD and STATE.
func (n *Node) onMessage(c paho.Client, msg paho.Message) {
	topic := msg.Topic()
	if n.cfg.PrimaryHostID != "" && (topic == n.state30Topic() || topic == n.state22Topic()) {
		n.onState(c, topic, msg.Payload())
		return
	}
	p, err := Unmarshal(msg.Payload())
	if err != nil {
		n.log.Warn("sparkplug command not decoded", "topic", topic, "err", err)
		return
	}
	if topic == n.Topic("NCMD", "") {
		for _, m := range p.Metrics {
			if m.Name == MetricRebirth && m.Value == true {
				n.log.Info("rebirth requested")
				n.mu.Lock()
				if n.hostOnline {
					n.birth(c)
				}
				n.mu.Unlock()
			}
		}
		return
	}
	dev, ok := strings.CutPrefix(topic, n.Topic("DCMD", "")+"/")
	if !ok || n.cfg.OnCommand == nil {
		return
	}
	for i, m := range p.Metrics {
		t, payload, err := n.Command(dev, p.Timestamp, i, m)
		if err != nil {
			n.log.Warn("sparkplug DCMD metric refused", "device", dev, "metric", m.Name, "err", err)
			continue
		}
		n.cfg.OnCommand(t, payload)
	}
}

// Command translates one DCMD metric to the command gate's topic and
// envelope. A String property lintel_envelope is the signed Lintel envelope,
// passed as is (the gate checks its signature over gateway, device, point
// and its own value); without it the metric's value becomes an unsigned
// envelope, which the gate accepts only for points configured for unsigned
// writes. The i-th metric of a DCMD with timestamp ts gets id spb-<ts>-<i>.
func (n *Node) Command(device string, ts uint64, i int, m Metric) (string, []byte, error) {
	if m.Name == "" || strings.ContainsAny(m.Name, "/+#") || strings.ContainsAny(device, "/+#") {
		return "", nil, errors.New("metric name must be a point name (aliases are not used)")
	}
	topic := "lintel/" + n.cfg.GatewayID + "/" + device + "/" + m.Name + "/set"
	if env, ok := m.Properties.Get(PropEnvelope).(string); ok {
		return topic, []byte(env), nil
	}
	if m.IsNull || m.Value == nil {
		return "", nil, errors.New("no value")
	}
	v := m.Value
	if f, ok := v.(float32); ok {
		v = float64(f)
	}
	value, err := json.Marshal(v)
	if err != nil {
		return "", nil, err
	}
	b, _ := json.Marshal(struct {
		ID    string          `json:"id"`
		Value json.RawMessage `json:"value"`
	}{"spb-" + strconv.FormatUint(ts, 10) + "-" + strconv.Itoa(i), value})
	return topic, b, nil
}

func (n *Node) state30Topic() string { return Namespace + "/STATE/" + n.cfg.PrimaryHostID }
func (n *Node) state22Topic() string { return "STATE/" + n.cfg.PrimaryHostID }

// onState takes the primary host's STATE in either form: offline holds
// delivery, online (again) publishes new births and releases it. A 3.0
// STATE older than the last one taken (a late Will of an earlier host
// session) counts as that last one: it changes nothing on this connection
// and, as the first STATE after a reconnect, restores what the last one
// said. Once a 3.0 STATE was taken, 2.2 ones are ignored
// (a retained leftover from before the host moved to 3.0 would otherwise
// decide). A payload of neither form is ignored, logged once per payload.
func (n *Node) onState(c paho.Client, topic string, payload []byte) {
	is30 := topic == n.state30Topic()
	var online, ok bool
	var ts int64
	if is30 {
		online, ts, ok = parseState30(payload)
	} else {
		online, ok = parseState22(payload)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.statesSeen++
	if !ok {
		if n.badState[topic] != string(payload) {
			n.badState[topic] = string(payload)
			n.log.Warn("primary host STATE not understood: ignored", "topic", topic, "payload", string(payload))
		}
		return
	}
	if is30 {
		if ts < n.stateTS {
			// The last STATE taken still holds: on a new connection a
			// stale retained STATE is the first one seen.
			n.log.Debug("stale primary host STATE ignored", "timestamp", ts, "last", n.stateTS)
			online = n.online30
		} else {
			n.stateTS, n.online30, n.took30 = ts, online, true
		}
	} else if n.took30 {
		if !n.warned22 {
			n.warned22 = true
			n.log.Warn("primary host publishes Sparkplug 3.0 STATE: "+topic+" ignored", "payload", string(payload))
		}
		return
	}
	switch {
	case online && !n.hostOnline:
		n.hostOnline = true
		n.birth(c)
	case !online && n.hostOnline:
		n.hostOnline = false
		n.setReady()
		n.log.Info("primary host offline: holding data", "host", n.cfg.PrimaryHostID, "topic", topic)
	}
}

// parseState30 reads {"online":bool,"timestamp":ms}; both members are
// required, the timestamp a whole non-negative number.
func parseState30(payload []byte) (online bool, ts int64, ok bool) {
	var st struct {
		Online    *bool    `json:"online"`
		Timestamp *float64 `json:"timestamp"`
	}
	if json.Unmarshal(payload, &st) != nil || st.Online == nil || st.Timestamp == nil {
		return false, 0, false
	}
	f := *st.Timestamp
	if f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return false, 0, false
	}
	return *st.Online, int64(f), true
}

// parseState22 reads the UTF-8 payload ONLINE or OFFLINE, exactly.
func parseState22(payload []byte) (online bool, ok bool) {
	switch string(payload) {
	case "ONLINE":
		return true, true
	case "OFFLINE":
		return false, true
	}
	return false, false
}

func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
