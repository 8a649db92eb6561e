package sparkplug

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// TestState22OfflineHoldsThenReplaysHistorical: a Sparkplug 2.2 primary
// host (STATE/<host>, ONLINE/OFFLINE) gates delivery as a 3.0 one does, with
// the form configured or left to auto.
func TestState22OfflineHoldsThenReplaysHistorical(t *testing.T) {
	for _, form := range []string{"", StateAuto, State22} {
		t.Run("form="+form, func(t *testing.T) {
			r := newRig(t)
			h := newHostForm(t, r, "scada", State22)
			e := r.startEdge(t, Config{PrimaryHostID: "scada", PrimaryHostState: form}, "")
			testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
			r.appendReadings(t, 0, 10)
			testwait.Until(t, "live readings", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 10 })

			h.setState(false)
			testwait.Until(t, "node holds", 5*time.Second, func() bool { return !e.hostOnline() })
			r.appendReadings(t, 10, 20)
			if testwait.Within(300*time.Millisecond, func() bool { c, _ := h.seen("ahu/t"); return len(c) != 10 }) {
				c, _ := h.seen("ahu/t")
				t.Fatalf("%d readings reached the cloud while the primary host was OFFLINE", len(c)-10)
			}
			if got := r.queue.Stats().Records; got != 20 {
				t.Fatalf("buffer holds %d records while the host is OFFLINE, want 20", got)
			}

			h.setState(true)
			testwait.Until(t, "replay", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 30 })
			h.noProblems(t)
			if _, hist := h.seen("ahu/t"); hist != 20 {
				t.Fatalf("%d readings flagged historical, want the 20 held", hist)
			}
			if h.count("NBIRTH") != 2 {
				t.Fatalf("%d NBIRTHs, want a new one when the host came back", h.count("NBIRTH"))
			}
		})
	}
}

// TestState30OnlyIgnores22: configured for 3.0, the node does not follow a
// 2.2 OFFLINE on STATE/<host>.
func TestState30OnlyIgnores22(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "scada")
	e := r.startEdge(t, Config{PrimaryHostID: "scada", PrimaryHostState: State30}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	h.publish("STATE/scada", "OFFLINE")
	h.setState(true) // a marker the node does take: STATE/scada came first on the host's connection
	testwait.Until(t, "marker STATE", 5*time.Second, func() bool { return e.statesSeen() >= 2 })
	// Observe for a while: callbacks may run out of order.
	if testwait.Within(300*time.Millisecond, func() bool { return e.statesSeen() > 2 }) || !e.hostOnline() {
		t.Fatalf("online %v after %d STATEs: a 3.0-only node took STATE/scada", e.hostOnline(), e.statesSeen())
	}
}

// TestStateStale30Ignored: a 3.0 STATE with an older timestamp than the
// last one taken (a late Will of an earlier host session) does not flip
// the state: data stays live, no new birth.
func TestStateStale30Ignored(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "scada")
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	seen := e.statesSeen()
	h.mu.Lock()
	stale := h.stateT - 1000
	h.mu.Unlock()
	h.publish(Namespace+"/STATE/scada", `{"online":false,"timestamp":`+strconv.FormatInt(stale, 10)+`}`)
	testwait.Until(t, "stale STATE handled", 5*time.Second, func() bool { return e.statesSeen() > seen })
	if !e.hostOnline() {
		t.Fatal("a stale offline STATE held delivery")
	}
	r.appendReadings(t, 0, 10)
	testwait.Until(t, "live readings", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 10 })
	if _, hist := h.seen("ahu/t"); hist != 0 || h.count("NBIRTH") != 1 {
		t.Fatalf("%d historical, %d NBIRTHs after a stale STATE; want 0 and 1", hist, h.count("NBIRTH"))
	}
}

// TestStateAutoPrefers30: in auto, once the host's 3.0 STATE was taken, a
// 2.2 STATE/<host> (a leftover retained from before an upgrade) is ignored
// and logged once.
func TestStateAutoPrefers30(t *testing.T) {
	r := newRig(t)
	var logs testwait.Buffer
	r.log = slog.New(slog.NewTextHandler(&logs, nil))
	h := newHost(t, r, "scada")
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	seen := e.statesSeen()
	h.publish("STATE/scada", "OFFLINE")
	h.publish("STATE/scada", "OFFLINE")
	testwait.Until(t, "2.2 STATEs handled", 5*time.Second, func() bool { return e.statesSeen() >= seen+2 })
	if !e.hostOnline() {
		t.Fatal("a 2.2 OFFLINE overrode the host's 3.0 STATE")
	}
	if n := strings.Count(logs.String(), "STATE/scada ignored"); n != 1 {
		t.Fatalf("ignored 2.2 STATE logged %d times, want once:\n%s", n, logs.String())
	}
	r.appendReadings(t, 0, 5)
	testwait.Until(t, "live readings", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 5 })
}

// TestStateMalformedLoggedOnce: a STATE payload of neither form is logged
// once (not on every repeat) and ignored: the state does not flip.
func TestStateMalformedLoggedOnce(t *testing.T) {
	r := newRig(t)
	var logs testwait.Buffer
	r.log = slog.New(slog.NewTextHandler(&logs, nil))
	h := newHost(t, r, "scada")
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	seen := e.statesSeen()
	bad := []struct{ topic, payload string }{
		{Namespace + "/STATE/scada", `{"online":"no","timestamp":99999999999999}`},
		{Namespace + "/STATE/scada", `{"online":"no","timestamp":99999999999999}`},
		{Namespace + "/STATE/scada", `{"online":false}`},
		{"STATE/scada", "offline"},
	}
	for _, b := range bad {
		h.publish(b.topic, b.payload)
	}
	testwait.Until(t, "bad STATEs handled", 5*time.Second, func() bool { return e.statesSeen() >= seen+len(bad) })
	if !e.hostOnline() {
		t.Fatal("a malformed STATE flipped the host offline")
	}
	if n := strings.Count(logs.String(), "STATE not understood"); n != 3 {
		t.Fatalf("malformed STATE logged %d times, want 3 (each distinct payload once):\n%s", n, logs.String())
	}
	h.setState(false) // a valid STATE still counts
	testwait.Until(t, "valid offline", 5*time.Second, func() bool { return !e.hostOnline() })
}

func (e *edge) hostOnline() bool {
	e.node.mu.Lock()
	defer e.node.mu.Unlock()
	return e.node.hostOnline
}

func (e *edge) statesSeen() int {
	e.node.mu.Lock()
	defer e.node.mu.Unlock()
	return e.node.statesSeen
}

// TestStateStaleWillAfterReconnect: the last STATE timestamp taken outlives
// the node's own connection. An earlier host session's Will, delivered
// late, leaves a stale offline STATE retained; after the node reconnects
// it receives that stale STATE first and must not hold delivery on it.
func TestStateStaleWillAfterReconnect(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "scada")
	cut := cloudtest.NewCutter(t, r.cloud.Addr())
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "mqtts://"+cut.Addr())
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	h.mu.Lock()
	stale := h.stateT - 1000
	h.mu.Unlock()
	seen := e.statesSeen()
	h.publish(Namespace+"/STATE/scada", `{"online":false,"timestamp":`+strconv.FormatInt(stale, 10)+`}`)
	testwait.Until(t, "stale STATE handled", 5*time.Second, func() bool { return e.statesSeen() > seen })

	seen = e.statesSeen()
	cut.Cut()
	testwait.Until(t, "retained stale STATE after the reconnect", 10*time.Second, func() bool { return e.statesSeen() > seen })
	testwait.Until(t, "births after the reconnect", 5*time.Second, func() bool { return h.count("NBIRTH") == 2 })
	r.appendReadings(t, 0, 10)
	testwait.Until(t, "readings after the reconnect", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 10 })
	h.noProblems(t)
}
