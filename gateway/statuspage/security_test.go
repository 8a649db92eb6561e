package statuspage

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/localbroker"
)

func TestRefusesNonLoopbackWithoutTLS(t *testing.T) {
	gw := &fakeGateway{snap: sampleSnapshot()}
	base := Config{Users: testUsers(t), Guard: localbroker.NewGuard(time.Minute), RoleOf: testRoles, Source: gw}
	for _, addr := range []string{"0.0.0.0:9109", ":9109", "192.0.2.10:9109", "[::]:9109", "gateway.example:9109"} {
		cfg := base
		cfg.Address = addr
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("New(%q) without TLS: err = %v, want a loopback refusal", addr, err)
		}
		cfg.TLS = &tls.Config{}
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%q) with TLS: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9109", "[::1]:9109", "localhost:9109"} {
		cfg := base
		cfg.Address = addr
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%q): %v", addr, err)
		}
	}
	// Serve checks the listener too: a caller cannot bind elsewhere.
	cfg := base
	cfg.Address = "127.0.0.1:9109"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeListener{addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 9109}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Serve(ctx, l); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Serve on a non-loopback listener: %v", err)
	}
	if !l.closed {
		t.Error("refused listener was not closed")
	}
}

type fakeListener struct {
	addr   net.Addr
	closed bool
}

func (l *fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l *fakeListener) Close() error              { l.closed = true; return nil }
func (l *fakeListener) Addr() net.Addr            { return l.addr }

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	check := func(path string, resp *http.Response) {
		t.Helper()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP allows unsafe sources: %q", path, csp)
		}
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "same-origin"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
	if resp, body := get(t, c, ts.url+"/static/"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "app.js") {
		t.Errorf("/static/ lists the assets: %s", resp.Status)
	}
	for _, p := range []string{"/login", "/", "/events", "/static/app.js", "/static/", "/nowhere"} {
		resp, _ := get(t, c, ts.url+p)
		check(p, resp)
	}
	ts.login(t, c, "operator")
	resp, body := get(t, c, ts.url+"/")
	check("/ (logged in)", resp)
	// The CSP is only worth something if the page needs no exception.
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(tag, ` src="/static/`) {
			t.Errorf("script tag without an embedded source: %s", tag)
		}
	}
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`), regexp.MustCompile(`https?://`)} {
		if loc := bad.FindStringIndex(body); loc != nil {
			t.Errorf("page has %q (inline script/style, event handler or external URL)", body[loc[0]:min(loc[1]+20, len(body))])
		}
	}
}

func TestCookieFlags(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		ts := newTestServer(t, tlsOn, nil)
		c := ts.client(t)
		resp, body := get(t, c, ts.url+"/login")
		checkCookie(t, resp, loginCookie, tlsOn)
		resp, _ = post(t, c, ts.url+"/login", url.Values{"csrf": {csrfOf(t, body)}, "user": {"viewer"}, "password": {testPassword}})
		checkCookie(t, resp, sessionCookie, tlsOn)
		if tlsOn && resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS under TLS")
		}
	}
}

func checkCookie(t *testing.T, resp *http.Response, name string, secure bool) {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name != name || c.MaxAge < 0 {
			continue
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != secure || c.Path != "/" {
			t.Errorf("cookie %s: HttpOnly=%v SameSite=%v Secure=%v (want %v) Path=%q", name, c.HttpOnly, c.SameSite, c.Secure, secure, c.Path)
		}
		if len(c.Value) < 40 {
			t.Errorf("cookie %s value %q is too short to be unguessable", name, c.Value)
		}
		return
	}
	t.Errorf("%s not set; cookies %v", name, resp.Cookies())
}

func TestLoginNeedsCSRFToken(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	_, body := get(t, c, ts.url+"/login")
	token := csrfOf(t, body)
	for name, form := range map[string]url.Values{
		"no token":    {"user": {"operator"}, "password": {testPassword}},
		"wrong token": {"csrf": {token + "x"}, "user": {"operator"}, "password": {testPassword}},
	} {
		resp, _ := post(t, c, ts.url+"/login", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("login with %s: %s, want 403", name, resp.Status)
		}
	}
	// A token from another browser (another login cookie) is refused too.
	other := ts.client(t)
	resp, _ := post(t, other, ts.url+"/login", url.Values{"csrf": {token}, "user": {"operator"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with a token without its cookie: %s, want 403", resp.Status)
	}
	// A cross-site Origin is refused even with the right token.
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/login", strings.NewReader(url.Values{"csrf": {token}, "user": {"operator"}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login from another origin: %s, want 403", resp.Status)
	}
	if n := ts.users.checks.Load(); n != 0 {
		t.Errorf("%d password checks for refused forms, want 0", n)
	}
}

func TestActionsNeedCSRFToken(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	token := ts.login(t, c, "operator")
	for _, a := range []string{"audit", "reconnect", "clear-dead-letters"} {
		for name, form := range map[string]url.Values{"no token": {}, "wrong token": {"csrf": {"forged"}}} {
			resp, _ := post(t, c, ts.url+"/action/"+a, form)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with %s: %s, want 403", a, name, resp.Status)
			}
		}
	}
	if ts.gw.reconnects.Load()+ts.gw.clears.Load() != 0 || ts.gw.audits.Load() != 0 {
		t.Fatalf("an action ran without a token: audits %d reconnects %d clears %d", ts.gw.audits.Load(), ts.gw.reconnects.Load(), ts.gw.clears.Load())
	}
	resp, _ := post(t, c, ts.url+"/logout", url.Values{})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without token: %s, want 403", resp.Status)
	}
	// With the token each action runs once and says so.
	for _, a := range []string{"audit", "reconnect", "clear-dead-letters"} {
		resp, _ := post(t, c, ts.url+"/action/"+a, url.Values{"csrf": {token}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s with token: %s, want 303", a, resp.Status)
		}
	}
	if ts.gw.audits.Load() != 1 || ts.gw.reconnects.Load() != 1 || ts.gw.clears.Load() != 1 {
		t.Errorf("actions ran audits %d reconnects %d clears %d, want 1 each", ts.gw.audits.Load(), ts.gw.reconnects.Load(), ts.gw.clears.Load())
	}
	_, body := get(t, c, ts.url+"/")
	if !strings.Contains(body, "Cleared 3 dead letters") || !strings.Contains(body, `id="audit-result">WARN`) {
		t.Errorf("page does not show the outcome and the audit result:\n%s", body)
	}
	// GET never acts.
	resp, _ = get(t, c, ts.url+"/action/reconnect")
	if resp.StatusCode == http.StatusSeeOther || ts.gw.reconnects.Load() != 1 {
		t.Errorf("GET /action/reconnect: %s, reconnects %d", resp.Status, ts.gw.reconnects.Load())
	}
}

func TestActionsNeedOperateRole(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	token := ts.login(t, c, "viewer")
	_, body := get(t, c, ts.url+"/")
	if strings.Contains(body, `action="/action/`) {
		t.Error("a viewer is offered the actions")
	}
	for _, a := range []string{"audit", "reconnect", "clear-dead-letters"} {
		resp, _ := post(t, c, ts.url+"/action/"+a, url.Values{"csrf": {token}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("viewer %s: %s, want 403", a, resp.Status)
		}
	}
	if ts.gw.audits.Load()+ts.gw.reconnects.Load()+ts.gw.clears.Load() != 0 {
		t.Error("a viewer ran an action")
	}
	// A valid broker user without any status role cannot log in at all.
	c2 := ts.client(t)
	_, body = get(t, c2, ts.url+"/login")
	resp, _ := post(t, c2, ts.url+"/login", url.Values{"csrf": {csrfOf(t, body)}, "user": {"nobody"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login of a user without a role: %s, want 401", resp.Status)
	}
}

func TestUnauthenticatedSeesNothing(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	resp, _ := get(t, c, ts.url+"/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("GET / logged out: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/events", "/chart.svg"} {
		resp, body := get(t, c, ts.url+p)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "plant-7") {
			t.Errorf("GET %s logged out: %s", p, resp.Status)
		}
	}
	resp, _ = post(t, c, ts.url+"/action/clear-dead-letters", url.Values{"csrf": {"x"}})
	if resp.StatusCode != http.StatusUnauthorized || ts.gw.clears.Load() != 0 {
		t.Errorf("action logged out: %s", resp.Status)
	}
	// A forged session cookie is no session.
	u, _ := url.Parse(ts.url)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "forged"}})
	resp, _ = get(t, c, ts.url+"/")
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("forged session: %s", resp.Status)
	}
}

func TestLoginBackoff(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	try := func(password string) int {
		_, body := get(t, c, ts.url+"/login")
		resp, _ := post(t, c, ts.url+"/login", url.Values{"csrf": {csrfOf(t, body)}, "user": {"operator"}, "password": {password}})
		return resp.StatusCode
	}
	var codes []int
	for range 5 {
		codes = append(codes, try("wrong password"))
	}
	for i, code := range codes {
		if code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401 (%v)", i+1, code, codes)
		}
	}
	checks := ts.users.checks.Load()
	// Now backing off (1 minute): even the right password is refused unchecked.
	if code := try(testPassword); code != http.StatusTooManyRequests {
		t.Fatalf("right password during back-off: %d, want 429", code)
	}
	if n := ts.users.checks.Load(); n != checks {
		t.Errorf("the password was checked during back-off (%d checks, want %d)", n, checks)
	}
}

func TestSessionEndsOnLogout(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	token := ts.login(t, c, "viewer")
	u, _ := url.Parse(ts.url)
	old := c.Jar.Cookies(u)
	resp, _ := post(t, c, ts.url+"/logout", url.Values{"csrf": {token}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	// Replaying the old cookie does not work.
	c2 := ts.client(t)
	c2.Jar.SetCookies(u, old)
	resp, _ = get(t, c2, ts.url+"/")
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("old session cookie after logout: %s, want a redirect to login", resp.Status)
	}
}

func TestPageShowsTheState(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := ts.client(t)
	ts.login(t, c, "viewer")
	_, body := get(t, c, ts.url+"/")
	for _, want := range []string{"plant-7", "rtu1", "ahu1: online", "meter: offline", ">42<", "expired 2", "1.0 GiB", `data-stat="buffer.dead">3<`, "renew now", "ahu1/setpoint", "every 5s", `data-stat="uplink.inflight">4<`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestRefusesAPageWithoutLoginGuard: the back-off is not optional wiring; a
// page built without it would let passwords be guessed at full speed.
func TestRefusesAPageWithoutLoginGuard(t *testing.T) {
	gw := &fakeGateway{snap: sampleSnapshot()}
	_, err := New(Config{Address: "127.0.0.1:0", Users: testUsers(t), RoleOf: testRoles, Source: gw, Actions: gw})
	if err == nil || !strings.Contains(err.Error(), "login guard") {
		t.Fatalf("New without a guard: %v, want a refusal naming the login guard", err)
	}
}
