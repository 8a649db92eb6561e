package command

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/demo/building"
)

// records counts log records by level and message.
type records struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[r.Level.String()]++
	h.n[r.Message]++
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }
func (h *records) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[key]
}

func (w *world) publishedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.published {
		n += len(p)
	}
	return n
}

func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, p := range []string{path + ".3", path + ".2", path + ".1", path} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 2<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				out = append(out, m)
			}
		}
		f.Close()
	}
	return out
}

// Issue 11 item 6: a flood of refusals neither erases the record of an
// accepted command nor multiplies into log lines and cloud records.
func TestRefusalFloodKeepsTheAuditAndDoesNotAmplify(t *testing.T) {
	w := newWorld(t)
	logs := &records{}
	w.gate.Close()
	g, err := Open(w.cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	w.gate = g
	t.Cleanup(func() { g.Close() })
	ctx := context.Background()
	const release = "lintel/gw1/doors-io/door_1_release/set"
	if r := g.Handle(ctx, "cloud", release, w.signed(t, w.key, "doors-io", "door_1_release", `true`, time.Minute)); !r.OK {
		t.Fatalf("signed release: %+v", r)
	}
	before := w.publishedCount()

	const flood = 26000
	for i := range flood {
		topic, payload := release, []byte(fmt.Sprintf(`{"id":"f%d","value":true}`, i))
		switch i % 4 {
		case 1: // a different unknown device each time
			topic = fmt.Sprintf("lintel/gw1/dev%d/x/set", i)
		case 2:
			payload = []byte(`{"id":`)
		}
		src := "cloud"
		if i%2 == 1 {
			src = "local"
		}
		if r := g.Handle(ctx, src, topic, payload); r.OK {
			t.Fatalf("flood command %d accepted", i)
		}
	}
	if err := g.Close(); err != nil { // flushes the last summaries
		t.Fatal(err)
	}
	if !w.sim.Coil(building.UnitDoorIO, 0) {
		t.Fatal("coil changed")
	}

	accepted := auditLines(t, w.cfg.AuditFile)
	found := false
	for _, e := range accepted {
		found = found || e["ok"] == "true" && e["device"] == "doors-io"
		if e["ok"] != "true" {
			t.Fatalf("a refusal in the accepted-commands log: %v", e)
		}
	}
	if !found {
		t.Fatalf("the accepted release is gone from %s (%d entries)", w.cfg.AuditFile, len(accepted))
	}

	// Every refusal is accounted for: individually or in a summary.
	total := 0
	for _, e := range auditLines(t, refusedFile(w.cfg.AuditFile)) {
		if n, ok := e["refused"].(float64); ok {
			total += int(n)
		} else {
			total++
		}
	}
	if total != flood {
		t.Fatalf("refusal audit accounts for %d refusals, want %d", total, flood)
	}
	published := w.publishedCount() - before
	warns := logs.count("WARN")
	t.Logf("%d refusals: %d published records, %d WARN lines", flood, published, warns)
	if published > 200 || warns > 200 {
		t.Fatalf("%d refusals made %d published records and %d WARN lines; want at most 200 each", flood, published, warns)
	}
}
