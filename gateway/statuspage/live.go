package statuspage

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// value is the latest message on one topic.
type value struct {
	Topic string `json:"topic"`
	Name  string `json:"name"` // device/point: the topic without lintel/<gateway>/
	Value string `json:"value"`
	TS    string `json:"ts,omitempty"`
	ver   uint64
}

// hub keeps the latest value per topic and wakes the event streams.
type hub struct {
	mu      sync.Mutex
	ver     uint64
	values  map[string]*value
	changed chan struct{} // closed and replaced on every update
}

// maxPoints bounds the topics the hub remembers; later new ones are not
// shown (the gateway's points are far fewer).
const (
	maxPoints   = 5000
	maxValueLen = 80
	// streamEvery is the least time between two batches to one browser:
	// a point polled fast costs one message per half second, not more.
	streamEvery = 500 * time.Millisecond
	statsEvery  = 5 * time.Second
)

func newHub() *hub {
	return &hub{values: map[string]*value{}, changed: make(chan struct{})}
}

// update is the broker callback; it must not block.
func (h *hub) update(topic string, payload []byte) {
	v := value{Topic: topic, Name: topic, Value: string(payload)}
	if rest, ok := strings.CutPrefix(topic, "lintel/"); ok {
		if _, name, ok := strings.Cut(rest, "/"); ok {
			v.Name = name
		}
	}
	// Readings are {"v": ..., "unit": ..., "ts": ..., "q": ...}; anything
	// else is shown as it came.
	var reading struct {
		V      json.RawMessage `json:"v"`
		Online *bool           `json:"online"`
		Unit   string          `json:"unit"`
		TS     string          `json:"ts"`
		Q      string          `json:"q"`
	}
	err := json.Unmarshal(payload, &reading)
	if err == nil && reading.V != nil {
		v.Value = string(reading.V)
		var str string
		var f float64
		switch {
		case json.Unmarshal(reading.V, &str) == nil:
			v.Value = str
		case json.Unmarshal(reading.V, &f) == nil:
			v.Value = strconv.FormatFloat(f, 'g', 6, 64) // a float32 register's noise digits say nothing
		}
		if reading.Unit != "" {
			v.Value += " " + reading.Unit
		}
		if reading.Q != "" && reading.Q != "good" {
			v.Value += " (" + reading.Q + ")"
		}
		if ts, err := time.Parse(time.RFC3339Nano, reading.TS); err == nil {
			v.TS = ts.UTC().Format("15:04:05")
		}
	} else if err == nil && reading.Online != nil { // a device's $status
		v.Value = map[bool]string{true: "online", false: "offline"}[*reading.Online]
	}
	if !utf8.ValidString(v.Value) {
		v.Value = fmt.Sprintf("(%d bytes)", len(payload))
	}
	if len(v.Value) > maxValueLen {
		v.Value = v.Value[:maxValueLen] + "…"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.values[topic]; !ok && len(h.values) >= maxPoints {
		return
	}
	h.ver++
	v.ver = h.ver
	h.values[topic] = &v
	close(h.changed)
	h.changed = make(chan struct{})
}

// since returns the values changed after version ver, the current version
// and the channel closed at the next change.
func (h *hub) since(ver uint64) ([]value, uint64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []value
	for _, k := range slices.Sorted(maps.Keys(h.values)) {
		if v := h.values[k]; v.ver > ver {
			out = append(out, *v)
		}
	}
	return out, h.ver, h.changed
}

func (h *hub) all() []value {
	v, _, _ := h.since(0)
	return v
}

// liveStats are the numbers the page refreshes without a reload.
type liveStats struct {
	Records     uint64 `json:"buffer.records"`
	Oldest      string `json:"buffer.oldest"`
	DeadLetters uint64 `json:"buffer.dead"`
	Connected   string `json:"uplink.connected"`
	InFlight    int64  `json:"uplink.inflight"`
	LastAck     string `json:"uplink.lastack"`
}

func (s *Server) liveStats() liveStats {
	snap := s.cfg.Source.Snapshot()
	now := s.cfg.Now()
	ls := liveStats{Records: snap.Buffer.Records, Oldest: ageAt(now, snap.Buffer.Oldest), DeadLetters: snap.Buffer.DeadLetters}
	if u := snap.Uplink; u != nil {
		ls.Connected = "no"
		if u.Connected {
			ls.Connected = "yes"
		}
		ls.InFlight = u.InFlight
		ls.LastAck = ago(now, u.LastAck)
	}
	return ls
}

// handleEvents streams value changes and stats as server-sent events.
// A stream ends within statsEvery once its session has ended (logout,
// idle or age limit).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, id string, _ session) {
	select {
	case s.sse <- struct{}{}:
		defer func() { <-s.sse }()
	default:
		http.Error(w, "too many open status pages", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	send := func(event string, data any) error {
		b, _ := json.Marshal(data)
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send("stats", s.liveStats()); err != nil {
		return
	}
	var ver uint64
	stats := time.NewTicker(statsEvery)
	defer stats.Stop()
	for {
		vals, v, changed := s.live.since(ver)
		ver = v
		if len(vals) > 0 {
			if err := send("values", vals); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-stats.C:
			if !s.sessions.alive(id) {
				return
			}
			if err := send("stats", s.liveStats()); err != nil {
				return
			}
			continue
		case <-changed:
		}
		select { // gather a half second of changes into one batch
		case <-r.Context().Done():
			return
		case <-time.After(streamEvery):
		}
	}
}
