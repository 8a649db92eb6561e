package statuspage_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// chromiumPath finds headless Chromium; outside CI its absence skips the
// browser test, under CI it fails it (.ci/run installs the package).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; .ci/run must install Debian's chromium package")
	}
	t.Skip("chromium not installed (apt-get install chromium); the real-browser test is skipped")
	return ""
}

// browser is headless Chromium driven over the DevTools protocol.
type browser struct {
	cmd  *exec.Cmd
	conn *websocket.Conn

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpReply
	logs    []string // console and log entries, to spot CSP violations
	readErr error
	done    chan struct{}
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{cmd: cmd, waiting: map[int]chan cdpReply{}, done: make(chan struct{})}
	t.Cleanup(func() {
		if b.conn != nil {
			b.conn.Close()
			<-b.done
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Chromium prints its DevTools endpoint on stderr.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), "DevTools listening on "); ok {
				found <- strings.TrimSpace(u)
			}
		}
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium printed no DevTools endpoint within 30s")
	}
	// Attach to the page Chromium opened: /json/list on the same port.
	host := strings.TrimPrefix(browserURL, "ws://")
	host, _, _ = strings.Cut(host, "/")
	var pageURL string
	deadline := time.Now().Add(10 * time.Second)
	for pageURL == "" {
		var targets []struct{ Type, WebSocketDebuggerURL string }
		if _, err := httpGetJSON("http://"+host+"/json/list", &targets); err == nil {
			for _, tg := range targets {
				if tg.Type == "page" {
					pageURL = tg.WebSocketDebuggerURL
				}
			}
		}
		if pageURL == "" && time.Now().After(deadline) {
			t.Fatal("no page target in chromium")
		}
		if pageURL == "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	b.conn, _, err = websocket.DefaultDialer.Dial(pageURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	go b.read()
	return b
}

func (b *browser) read() {
	defer close(b.done)
	for {
		var msg struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpReply
		}
		if err := b.conn.ReadJSON(&msg); err != nil {
			b.mu.Lock()
			b.readErr = err
			for _, ch := range b.waiting {
				close(ch)
			}
			b.waiting = map[int]chan cdpReply{}
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if msg.ID != 0 {
			if ch, ok := b.waiting[msg.ID]; ok {
				ch <- msg.cdpReply
				delete(b.waiting, msg.ID)
			}
		} else if msg.Method == "Log.entryAdded" || msg.Method == "Runtime.consoleAPICalled" || msg.Method == "Runtime.exceptionThrown" {
			b.logs = append(b.logs, string(msg.Params))
		}
		b.mu.Unlock()
	}
}

// call sends one DevTools command and decodes its result into out.
func (b *browser) call(method string, params any, out any) error {
	b.mu.Lock()
	if b.readErr != nil {
		b.mu.Unlock()
		return b.readErr
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.waiting[id] = ch
	err := b.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	b.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return errors.New("devtools connection closed")
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%s: no answer within 20s", method)
	}
}

// eval evaluates a JavaScript expression in the page. DevTools evaluation
// is not subject to the page's CSP; the page's own script is.
func (b *browser) eval(t *testing.T, expr string) json.RawMessage {
	t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		t.Fatalf("evaluate %q: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result.Value
}

// waitFor evaluates expr until it is true.
func (b *browser) waitFor(t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	if !testwait.Within(timeout, func() bool { return string(b.eval(t, expr)) == "true" }) {
		t.Fatalf("timed out after %v waiting for %s (%s); page: %s", timeout, what, expr, b.eval(t, "document.body ? document.body.innerText.slice(0, 400) : ''"))
	}
}

func TestBrowserLogsInSeesLiveValuesAndScreenshot(t *testing.T) {
	path := chromiumPath(t)
	d := startDemo(t)
	b := startBrowser(t, path)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		if err := b.call(m, map[string]any{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1000, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.call("Page.navigate", map[string]any{"url": d.base + "/"}, nil); err != nil {
		t.Fatal(err)
	}
	// Logged out, / sends the browser to the login form.
	b.waitFor(t, "the login form", `location.pathname === "/login" && !!document.getElementById("password")`, 15*time.Second)
	creds, _ := json.Marshal([]string{d.env.User, d.env.Password})
	b.eval(t, fmt.Sprintf(`(function(c){document.getElementById("user").value=c[0];document.getElementById("password").value=c[1];document.getElementById("submit").click();return true})(%s)`, creds))
	b.waitFor(t, "the status page after login", `location.pathname === "/" && document.getElementById("gateway") !== null`, 15*time.Second)
	if got := string(b.eval(t, `document.getElementById("gateway").textContent`)); got != `"demo-gw"` {
		t.Fatalf("gateway id shown %s", got)
	}
	// The cookie is out of script's reach (HttpOnly).
	if got := string(b.eval(t, `document.cookie`)); got != `""` {
		t.Errorf("document.cookie = %s; the session cookie must be HttpOnly", got)
	}
	// The embedded script runs under the CSP and connects its event stream.
	b.waitFor(t, "live updates", `document.getElementById("live-state").textContent.startsWith("Live: updated")`, 20*time.Second)
	// A value of the simulated building changes in the table.
	b.eval(t, `window.__first = {}; document.querySelectorAll("#value-rows tr").forEach(function(r){ window.__first[r.getAttribute("data-topic")] = r.querySelector("td.v").textContent }); true`)
	b.waitFor(t, "a live value change", `Array.from(document.querySelectorAll("#value-rows tr")).some(function(r){ var t = r.getAttribute("data-topic"); return (t in window.__first) && window.__first[t] !== r.querySelector("td.v").textContent })`, 30*time.Second)
	for _, id := range []string{"uplink", "buffer", "buses", "values", "audit", "commands", "chart", "reconnect", "clear-dead", "rerun-audit", "audit-result"} {
		if string(b.eval(t, fmt.Sprintf(`document.getElementById(%q) !== null`, id))) != "true" {
			t.Errorf("page lacks #%s", id)
		}
	}
	if n := string(b.eval(t, `document.querySelectorAll("#value-rows tr").length > 3`)); n != "true" {
		t.Error("fewer than 4 live values shown")
	}
	// The chart image loaded (same-origin SVG, allowed by img-src 'self').
	b.waitFor(t, "the chart", `document.getElementById("chart").complete && document.getElementById("chart").naturalWidth > 0`, 10*time.Second)
	// Re-run the audit through the form: the CSRF token travels, the result shows.
	b.eval(t, `document.getElementById("rerun-audit").click(); true`)
	b.waitFor(t, "the audit outcome", `!!document.getElementById("flash") && document.getElementById("flash").textContent.startsWith("Audit run:")`, 15*time.Second)
	b.waitFor(t, "live updates after reload", `document.getElementById("live-state").textContent.startsWith("Live:")`, 20*time.Second)

	var shot struct{ Data string }
	if err := b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, raw)
	if os.Getenv("LINTEL_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("testdata", "screenshot.png"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// On a phone the page fits the width: no sideways scrolling.
	if err := b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}, nil); err != nil {
		t.Fatal(err)
	}
	wide := `Array.from(document.querySelectorAll("body *")).filter(function(e){ return e.getBoundingClientRect().right > 391 }).slice(0, 5).map(function(e){ return e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right) })`
	if !testwait.Within(5*time.Second, func() bool { return string(b.eval(t, `document.documentElement.scrollWidth <= 390`)) == "true" }) {
		t.Fatalf("on a 390px phone the page scrolls sideways; too wide: %s", b.eval(t, wide))
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.logs {
		if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Content-Security-Policy") || strings.Contains(l, "exceptionDetails") {
			t.Errorf("browser reported: %s", l)
		}
	}
}

// checkScreenshot decodes the PNG and checks it is a real rendering, not a
// blank page: large enough and with many colours.
func checkScreenshot(t *testing.T, raw []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot is no PNG: %v", err)
	}
	bounds := img.Bounds()
	if bounds.Dx() < 300 || bounds.Dy() < 300 {
		t.Fatalf("screenshot is %v", bounds)
	}
	colours := map[uint32]bool{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|b>>8] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d colours: blank or unstyled", len(colours))
	}
}

func httpGetJSON(u string, out any) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}
