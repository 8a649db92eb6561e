package sparkplug

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// TestBirthsDataSeqWrap: a consumer sees NBIRTH (seq 0, bdSeq), a DBIRTH per
// device declaring datatype, unit and scale, then DDATA whose seq runs on
// without a gap through 255 → 0; every reading arrives once, live; the
// buffer empties, so the QoS 0 data was acked behind QoS 1 fences.
func TestBirthsDataSeqWrap(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "")
	r.startEdge(t, Config{}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	const n = 600
	r.appendReadings(t, 0, n)
	testwait.Until(t, "all readings", 10*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == n })
	testwait.Until(t, "buffer empty", 5*time.Second, func() bool { return r.queue.Stats().Records == 0 })
	h.noProblems(t)
	count, hist := h.seen("ahu/t")
	for v := range n {
		if count[float64(v)] != 1 {
			t.Fatalf("value %d arrived %d times", v, count[float64(v)])
		}
	}
	if hist != 0 {
		t.Fatalf("%d live readings flagged historical", hist)
	}
	if h.count("NBIRTH") != 1 || h.bdSeqs[0] != 0 {
		t.Fatalf("NBIRTHs %d with bdSeqs %v, want one with bdSeq 0", h.count("NBIRTH"), h.bdSeqs)
	}
	fences := 0
	var birth *Payload
	for _, m := range r.cloud.Received() {
		switch {
		case m.Topic == "lintel/gw1/$fence":
			fences++
		case m.Topic == "spBv1.0/site/DBIRTH/gw1/ahu":
			birth, _ = Unmarshal(m.Payload)
		case !strings.HasPrefix(m.Topic, "spBv1.0/site/"):
			t.Errorf("unexpected topic %q", m.Topic)
		}
	}
	if fences == 0 || fences >= n {
		t.Errorf("%d fences for %d records: want batching", fences, n)
	}
	temp, ok := metric(birth, "t")
	if !ok || temp.Datatype != Double || temp.Properties.Get("unit") != "°C" || temp.Properties.Get("scale") != 0.1 || !temp.IsNull {
		t.Errorf("DBIRTH metric t: %+v %+v", temp, temp.Properties)
	}
	if on, ok := metric(birth, "on"); !ok || on.Datatype != Boolean {
		t.Errorf("DBIRTH metric on: %+v", on)
	}
}

// TestRebirth: an NCMD Node Control/Rebirth brings a new NBIRTH (seq 0,
// same bdSeq) and DBIRTHs carrying the last values, and data goes on.
func TestRebirth(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "")
	r.startEdge(t, Config{}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	r.appendReadings(t, 0, 10)
	testwait.Until(t, "readings", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 10 })
	h.rebirth()
	testwait.Until(t, "rebirth", 5*time.Second, func() bool { return h.count("NBIRTH") == 2 && h.count("DBIRTH") == 4 })
	r.appendReadings(t, 10, 10)
	testwait.Until(t, "readings after rebirth", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 20 })
	h.noProblems(t)
	if h.bdSeqs[0] != h.bdSeqs[1] {
		t.Fatalf("rebirth changed bdSeq: %v", h.bdSeqs)
	}
	var last *Payload
	for _, m := range r.cloud.Received() {
		if m.Topic == "spBv1.0/site/DBIRTH/gw1/ahu" {
			last, _ = Unmarshal(m.Payload)
		}
	}
	if temp, _ := metric(last, "t"); temp.IsNull || temp.Value != 9.0 {
		t.Fatalf("DBIRTH after rebirth: t = %+v, want the last value 9", temp)
	}
}

// TestOutageAndKill: through a cloud outage and an abrupt end of the
// gateway's connection (what the broker sees of kill -9), with a primary
// host: no reading is lost; readings sent before the outage and not yet
// behind a PUBACK'd fence may arrive twice; the backlog is historical; the
// Will NDEATH carries the bdSeq of the NBIRTH it ends, and bdSeq grows
// across the restart (it is kept in sparkplug.db).
func TestOutageAndKill(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "scada")
	cut := cloudtest.NewCutter(t, r.cloud.Addr())
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "mqtts://"+cut.Addr())
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	r.appendReadings(t, 0, 100)
	testwait.Until(t, "first readings", 10*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 100 })

	// Cloud outage: the broker dies (no Will), readings pile up.
	r.cloud.Stop()
	r.appendReadings(t, 100, 100)
	if err := r.cloud.Restart(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "backlog after the outage", 15*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 200 })
	_, hist := h.seen("ahu/t")
	if hist < 100 {
		t.Fatalf("%d historical readings after the outage, want the 100 buffered during it", hist)
	}

	// Abrupt end with readings in flight: cut the connection, then stop.
	r.appendReadings(t, 200, 100)
	deaths := h.count("NDEATH")
	cut.Close()
	e.stop()
	testwait.Until(t, "Will NDEATH", 5*time.Second, func() bool { return h.count("NDEATH") > deaths })

	// Restart from the same data dir.
	cut2 := cloudtest.NewCutter(t, r.cloud.Addr())
	r.startEdge(t, Config{PrimaryHostID: "scada"}, "mqtts://"+cut2.Addr())
	testwait.Until(t, "everything after the restart", 15*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 300 })
	testwait.Until(t, "buffer empty", 5*time.Second, func() bool { return r.queue.Stats().Records == 0 })
	h.noProblems(t)
	count, _ := h.seen("ahu/t")
	dups := 0
	for v := range 300 {
		if count[float64(v)] == 0 {
			t.Fatalf("value %d lost", v)
		}
		dups += count[float64(v)] - 1
	}
	h.mu.Lock()
	bd := append([]int64(nil), h.bdSeqs...)
	h.mu.Unlock()
	for i := 1; i < len(bd); i++ {
		if bd[i] <= bd[i-1] {
			t.Fatalf("bdSeq did not grow across reconnects and the restart: %v", bd)
		}
	}
	t.Logf("bdSeqs %v, NDEATH %v, duplicates %d of 300", bd, h.deaths, dups)
}

// TestStateOfflineHoldsThenReplaysHistorical: while the primary host's
// STATE says offline nothing is sent and readings stay buffered; when it
// is online again the node births anew and replays them with is_historical.
func TestStateOfflineHoldsThenReplaysHistorical(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "scada")
	e := r.startEdge(t, Config{PrimaryHostID: "scada"}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	r.appendReadings(t, 0, 10)
	testwait.Until(t, "live readings", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 10 })

	h.setState(false)
	testwait.Until(t, "node holds", 5*time.Second, func() bool {
		e.node.mu.Lock()
		defer e.node.mu.Unlock()
		return !e.node.hostOnline
	})
	r.appendReadings(t, 10, 20)
	// Observe for a while that nothing leaves the buffer.
	if testwait.Within(300*time.Millisecond, func() bool { c, _ := h.seen("ahu/t"); return len(c) != 10 }) {
		c, _ := h.seen("ahu/t")
		t.Fatalf("%d readings reached the cloud while the primary host was offline", len(c)-10)
	}
	if got := r.queue.Stats().Records; got != 20 {
		t.Fatalf("buffer holds %d records while the host is offline, want 20", got)
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
}

// TestDeviceStatusBirthsAndDeaths: a device's $status offline becomes its
// DDEATH, online a DBIRTH (declaring its metrics again), in seq order; a
// rebirth while it is dead leaves it out.
func TestDeviceStatusBirthsAndDeaths(t *testing.T) {
	r := newRig(t)
	h := newHost(t, r, "")
	r.startEdge(t, Config{}, "")
	testwait.Until(t, "births", 5*time.Second, func() bool { return h.count("DBIRTH") == 2 })
	status := func(online bool) {
		p := `{"online":false,"since":"2026-12-01T04:00:00.000Z","error":"timeout"}`
		if online {
			p = `{"online":true,"since":"2026-12-01T04:00:00.000Z"}`
		}
		if err := r.queue.Append(context.Background(), buffer.Record{Topic: "lintel/gw1/meter/$status", Payload: []byte(p), Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	status(false)
	testwait.Until(t, "DDEATH", 5*time.Second, func() bool { return h.count("DDEATH") == 1 })
	h.rebirth()
	testwait.Until(t, "rebirth", 5*time.Second, func() bool { return h.count("NBIRTH") == 2 })
	r.appendReadings(t, 0, 1) // a marker: the rebirth's DBIRTHs came before it
	testwait.Until(t, "marker", 5*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == 1 })
	if got := h.count("DBIRTH"); got != 3 {
		t.Fatalf("%d DBIRTHs, want 3: the rebirth must leave the dead meter out", got)
	}
	status(true)
	testwait.Until(t, "DBIRTH", 5*time.Second, func() bool { return h.count("DBIRTH") == 4 })
	h.noProblems(t)
	h.mu.Lock()
	_, declared := h.declared["meter/kwh"]
	h.mu.Unlock()
	if !declared {
		t.Fatal("the meter's DBIRTH did not declare kwh")
	}
}
