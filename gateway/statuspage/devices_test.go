package statuspage

import (
	"strings"
	"testing"
	"time"
)

// TestPageShowsEachDevicesLastErrorAndCircuit: a device's last error (its
// kind and how long ago), its failures in a row and its circuit with the
// next try are on the page, escaped; a device that answers again shows its
// last error as history.
func TestPageShowsEachDevicesLastErrorAndCircuit(t *testing.T) {
	now := time.Date(2026, 12, 1, 6, 30, 0, 0, time.UTC)
	ts := newTestServer(t, false, func(c *Config) { c.Now = func() time.Time { return now } })
	ts.gw.mu.Lock()
	ts.gw.snap.Buses[0].Devices = []Device{
		{Name: "ahu1", Online: true, Circuit: "closed", LastError: "timeout", LastErrorAt: now.Add(-3 * time.Minute)},
		{Name: "meter", Online: false, Circuit: "open", LastError: `exception 2 <script>alert(1)</script>`, LastErrorAt: now.Add(-12 * time.Second),
			Failures: 4, RetryAt: now.Add(40 * time.Second)},
		{Name: "vav", Online: true, Circuit: "closed"},
		{Name: "chiller", Online: false, Circuit: "half-open", RetryAt: now.Add(-time.Second), LastError: "timeout", LastErrorAt: now.Add(-time.Minute), Failures: 1},
	}
	ts.gw.mu.Unlock()
	c := ts.client(t)
	ts.login(t, c, "viewer")
	_, body := get(t, c, ts.url+"/")
	for _, want := range []string{
		"ahu1: online", "meter: offline",
		"circuit open, retry at 2026-12-01 06:30:40Z",
		"last error: exception 2 &lt;script&gt;alert(1)&lt;/script&gt;, 12s ago",
		"4 failures in a row",
		"last error: timeout, 3m0s ago",
		"chiller: offline (circuit half-open: retry due)",
		"1 failure in a row",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("a device's error text is not escaped")
	}
	_, vav, _ := strings.Cut(body, "vav: online")
	vav, _, _ = strings.Cut(vav, "</li>")
	if strings.Contains(vav, "last error") || strings.Contains(vav, "circuit") {
		t.Errorf("a healthy device without errors shows %q", vav)
	}
}
