package statuspage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// demoGateway runs what `lintel demo` runs (simulated building, cloud,
// gateway with the status page) until the test ends.
type demoGateway struct {
	env  *demo.Env
	gw   *gateway.Gateway
	base string
}

func startDemo(t *testing.T) *demoGateway {
	t.Helper()
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	gw, err := gateway.New(env.Config, gateway.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gw.Run(ctx); err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	addr := gw.StatusPageAddr()
	if addr == "" {
		t.Fatal("the demo serves no status page")
	}
	d := &demoGateway{env: env, gw: gw, base: "http://" + addr}
	// Wait until the page answers (Run starts serving it).
	testwait.Until(t, "the status page at "+d.base+" answering", 10*time.Second, func() bool {
		resp, err := http.Get(d.base + "/login")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return d
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// login logs the demo user in through the login form; the response is the
// one the login redirected to.
func (d *demoGateway) login(t *testing.T) (*http.Client, *http.Response) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(d.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	m := csrfField.FindStringSubmatch(readBody(t, resp))
	if m == nil {
		t.Fatal("no login form")
	}
	resp, err = c.PostForm(d.base+"/login", url.Values{"csrf": {m[1]}, "user": {d.env.User}, "password": {d.env.Password}})
	if err != nil {
		t.Fatal(err)
	}
	return c, resp
}

// TestDemoStatusPageOverHTTP drives the wiring without a browser: the demo
// user logs in (users file, ACL status roles), the page shows the demo's
// buses, and readings from the simulated building stream live.
func TestDemoStatusPageOverHTTP(t *testing.T) {
	d := startDemo(t)
	c, resp := d.login(t)
	page := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("login as %s: %s at %s", d.env.User, resp.Status, resp.Request.URL)
	}
	for _, want := range []string{"demo-gw", "plant", "ahu-1", `id="reconnect"`, `id="clear-dead"`, `id="audit-result"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// A wrong password is refused.
	c2 := &http.Client{}
	c2.Jar, _ = cookiejar.New(nil)
	resp, _ = c2.Get(d.base + "/login")
	m := csrfField.FindStringSubmatch(readBody(t, resp))
	resp, _ = c2.PostForm(d.base+"/login", url.Values{"csrf": {m[1]}, "user": {d.env.User}, "password": {"wrong-password"}})
	readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %s", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Some point of the simulated building changes value on the stream.
	first := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: [")
		if !ok {
			continue
		}
		var vals []struct{ Topic, Value string }
		if err := json.Unmarshal([]byte("["+line), &vals); err != nil {
			t.Fatalf("values %q: %v", line, err)
		}
		for _, v := range vals {
			if !strings.HasPrefix(v.Topic, "lintel/demo-gw/") {
				t.Fatalf("value of another gateway streamed: %s", v.Topic)
			}
			if was, seen := first[v.Topic]; seen && was != v.Value {
				return // a live change
			}
			first[v.Topic] = v.Value
		}
	}
	t.Fatalf("no value changed on the event stream within 30s (saw %d topics): %v", len(first), sc.Err())
}

// TestDemoPageShowsASilentDevicesErrorAndCircuit: a device of the demo
// building that stops answering shows on the page as offline, with the
// kind of its last error and an open circuit; answering again, it is
// online with the error kept as history.
func TestDemoPageShowsASilentDevicesErrorAndCircuit(t *testing.T) {
	d := startDemo(t)
	c, resp := d.login(t)
	readBody(t, resp)
	page := func() string {
		resp, err := c.Get(d.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		return readBody(t, resp)
	}
	// The device's list item, up to its end.
	meter := func(p string) string {
		_, li, _ := strings.Cut(p, "energy-meter: ")
		li, _, _ = strings.Cut(li, "</li>")
		return li
	}
	testwait.Until(t, "energy-meter online on the page", 10*time.Second, func() bool { return strings.HasPrefix(meter(page()), "online") })

	d.env.Sim.SetSilent(building.UnitMeter, true)
	testwait.Until(t, "energy-meter offline with an open circuit", 15*time.Second, func() bool {
		li := meter(page())
		return strings.HasPrefix(li, "offline") && strings.Contains(li, "(circuit open, retry at ")
	})
	if li := meter(page()); !strings.Contains(li, "last error: exception 11 (gateway target device failed to respond), ") || !strings.Contains(li, "failures in a row") {
		t.Errorf("offline meter on the page: %q", li)
	}
	d.env.Sim.SetSilent(building.UnitMeter, false)
	testwait.Until(t, "energy-meter back online", 30*time.Second, func() bool { return strings.HasPrefix(meter(page()), "online") })
	if li := meter(page()); strings.Contains(li, "circuit") || !strings.Contains(li, "last error: exception 11") {
		t.Errorf("recovered meter on the page: %q", li)
	}
}
