package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/localbroker"
)

// servePage runs a Server on a loopback listener until the test ends.
func servePage(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Serve(ctx, l); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return "http://" + l.Addr().String()
}

func startLocalBroker(t *testing.T) *localbroker.Broker {
	t.Helper()
	b, err := localbroker.New(localbroker.Config{Listeners: []localbroker.Listener{{Name: "local", Address: "127.0.0.1:0"}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// sseEvent is one parsed server-sent event.
type sseEvent struct{ name, data string }

// readEvents parses a stream into ch until it ends.
func readEvents(r io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		case line == "":
			ch <- ev
			ev = sseEvent{}
		}
	}
}

// seen is what a browser would show: the latest value per topic.
type seen map[string]string

// waitValue reads events into s until topic has want, or the deadline.
func (s seen) waitValue(t *testing.T, ch <-chan sseEvent, topic, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for s[topic] != want {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before %s = %s", topic, want)
			}
			if ev.name != "values" {
				continue
			}
			var vs []value
			if err := json.Unmarshal([]byte(ev.data), &vs); err != nil {
				t.Fatalf("values event %q: %v", ev.data, err)
			}
			for _, v := range vs {
				s[v.Topic] = v.Value
			}
		case <-deadline:
			t.Fatalf("no value %s = %s within 10s", topic, want)
		}
	}
}

func TestEventsStreamLiveValuesFromTheBroker(t *testing.T) {
	b := startLocalBroker(t)
	gw := &fakeGateway{snap: sampleSnapshot()}
	s, err := New(Config{Address: "127.0.0.1:0", Users: testUsers(t), Guard: localbroker.NewGuard(time.Minute), RoleOf: testRoles, Source: gw, Broker: b, Filter: "lintel/plant-7/+/+"})
	if err != nil {
		t.Fatal(err)
	}
	base := servePage(t, s)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ts := &testServer{url: base}
	ts.login(t, c, "viewer")

	ctx := context.Background()
	publish := func(topic, payload string) {
		t.Helper()
		if err := b.Publish(ctx, topic, []byte(payload), false, localbroker.Normal); err != nil {
			t.Fatal(err)
		}
	}
	publish("lintel/plant-7/ahu1/supply_temp", `{"ts":"2026-12-01T04:00:00Z","v":21.5,"unit":"°C","q":"good"}`)
	// The value published before the browser connected comes with the first batch.
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, base+"/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("/events: %s %q", resp.Status, ct)
	}
	ch := make(chan sseEvent, 64)
	go readEvents(resp.Body, ch)
	shown := seen{}
	shown.waitValue(t, ch, "lintel/plant-7/ahu1/supply_temp", "21.5 °C")
	// A change arrives live; a topic outside the filter never does.
	publish("lintel/other/ahu1/supply_temp", `{"v":99}`)
	publish("lintel/plant-7/ahu1/supply_temp", `{"ts":"2026-12-01T04:00:05Z","v":22,"unit":"°C"}`)
	publish("lintel/plant-7/door/state", `{"v":"closed","q":"stale"}`)
	shown.waitValue(t, ch, "lintel/plant-7/ahu1/supply_temp", "22 °C")
	shown.waitValue(t, ch, "lintel/plant-7/door/state", "closed (stale)")
	if _, ok := shown["lintel/other/ahu1/supply_temp"]; ok {
		t.Error("a value outside the filter was streamed")
	}
	for _, v := range s.live.all() {
		if strings.HasPrefix(v.Topic, "lintel/other/") {
			t.Errorf("value outside the filter kept: %v", v)
		}
	}
	// Logging out ends the stream (checked with each stats tick).
	_, body := get(t, c, base+"/")
	resp2, _ := post(t, c, base+"/logout", url.Values{"csrf": {csrfOf(t, body)}})
	if resp2.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp2.Status)
	}
	deadline := time.After(2 * statsEvery)
	for ended := false; !ended; {
		select {
		case _, ok := <-ch:
			ended = !ok
		case <-deadline:
			t.Fatal("event stream still open after logout")
		}
	}
}

func TestPageShowsLatestValuesOnLoad(t *testing.T) {
	b := startLocalBroker(t)
	gw := &fakeGateway{snap: sampleSnapshot()}
	s, err := New(Config{Address: "127.0.0.1:0", Users: testUsers(t), Guard: localbroker.NewGuard(time.Minute), RoleOf: testRoles, Source: gw, Broker: b, Filter: "lintel/plant-7/+/+"})
	if err != nil {
		t.Fatal(err)
	}
	base := servePage(t, s)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	(&testServer{url: base}).login(t, c, "viewer")
	if err := b.Publish(context.Background(), "lintel/plant-7/ahu1/supply_temp", []byte(`{"ts":"2026-12-01T04:00:05Z","v":22,"unit":"°C"}`), false, localbroker.Normal); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the published value in the hub", 5*time.Second, func() bool { return len(s.live.all()) > 0 })
	// The page itself shows the latest values on load.
	_, body := get(t, c, base+"/")
	if !strings.Contains(body, `<td class="v">22 °C</td><td class="t">04:00:05</td>`) {
		t.Error("page does not show the latest value")
	}
}

func TestEventsBatchChangesPerStream(t *testing.T) {
	// A point changing fast costs a browser one batch per streamEvery, not
	// one message per change.
	h := newHub()
	for i := range 1000 {
		h.update("lintel/g/d/p", []byte(`{"v":`+strings.Repeat("1", 1+i%3)+`}`))
	}
	vals, ver, _ := h.since(0)
	if len(vals) != 1 || ver != 1000 {
		t.Fatalf("since(0) = %d values at version %d, want 1 at 1000", len(vals), ver)
	}
	if vals2, _, _ := h.since(ver); len(vals2) != 0 {
		t.Fatalf("no change since %d but got %v", ver, vals2)
	}
}

func TestHubBoundsTopicsAndValues(t *testing.T) {
	h := newHub()
	for i := range maxPoints + 10 {
		h.update("t/"+strings.Repeat("x", 1)+"/"+string(rune('a'+i%26))+"/"+url.PathEscape(time.Duration(i).String()), []byte("1"))
	}
	if n := len(h.all()); n != maxPoints {
		t.Errorf("hub keeps %d topics, want the bound %d", n, maxPoints)
	}
	h3 := newHub()
	h3.update("lintel/g/ahu/$status", []byte(`{"online":false,"since":"2026-12-01T04:00:00Z"}`))
	h3.update("lintel/g/ahu/temp", []byte(`{"v":21.56299591064453,"unit":"°C","ts":"2026-12-01T04:00:00Z","q":"good"}`))
	if got := h3.all(); got[0].Value != "offline" || got[1].Value != "21.563 °C" || got[1].Name != "ahu/temp" {
		t.Errorf("status and float reading shown as %+v", got)
	}
	h2 := newHub()
	h2.update("a/b", []byte(`{"v":"`+strings.Repeat("y", 500)+`"}`))
	if v := h2.all()[0].Value; len(v) > maxValueLen+4 {
		t.Errorf("value of %d bytes kept, want at most %d", len(v), maxValueLen)
	}
}

func TestChartShowsDepthAndDrainRate(t *testing.T) {
	r := newRing(4)
	t0 := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	for i, s := range []sample{{depth: 100, acked: 0}, {depth: 80, acked: 20}, {depth: 50, acked: 50}, {depth: 10, acked: 90}, {depth: 0, acked: 100}} {
		s.at = t0.Add(time.Duration(i) * 10 * time.Second)
		r.add(s)
	}
	got := r.list()
	if len(got) != 4 || got[0].depth != 80 || got[3].depth != 0 {
		t.Fatalf("ring keeps %v, want the last 4 oldest first", got)
	}
	svg := string(chartSVG(got, 10*time.Second))
	if strings.Count(svg, "<polyline") != 2 {
		t.Errorf("want two lines (depth, drain):\n%s", svg)
	}
	// Peak depth 80 records; peak drain 40 records in 10 s = 4.0/s.
	for _, want := range []string{"peak 80 records", "peak 4.0/s"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "style=") {
		t.Error("chart uses inline style, which the CSP blocks")
	}
}
