package statuspage

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lintel-gw/lintel/localbroker"
)

// fakeGateway is a Source and Actions whose calls a test can count.
type fakeGateway struct {
	mu         sync.Mutex
	snap       Snapshot
	audits     atomic.Int32
	reconnects atomic.Int32
	clears     atomic.Int32
}

func (f *fakeGateway) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeGateway) Audit() []Finding {
	f.audits.Add(1)
	return []Finding{{Check: "status-page", Status: "PASS", Reason: "loopback"}, {Check: "users", Status: "WARN", Reason: "weak", Fix: "set a password"}}
}

func (f *fakeGateway) ReconnectUplink() error { f.reconnects.Add(1); return nil }

func (f *fakeGateway) ClearDeadLetters() (int, error) { f.clears.Add(1); return 3, nil }

// countingUsers counts password checks, to prove a blocked login skips it.
type countingUsers struct {
	*localbroker.Users
	checks atomic.Int32
}

func (c *countingUsers) Check(name string, pw []byte) bool {
	c.checks.Add(1)
	return c.Users.Check(name, pw)
}

const testPassword = "correct horse battery"

// testUsers hashes at bcrypt's minimum cost: the default cost under the
// race detector would make these tests take minutes.
func testUsers(t *testing.T) *countingUsers {
	t.Helper()
	var file strings.Builder
	for _, n := range []string{"viewer", "operator", "nobody"} {
		h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		file.WriteString(n + ":" + string(h) + "\n")
	}
	u, err := localbroker.ParseUsers(strings.NewReader(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	return &countingUsers{Users: u}
}

func testRoles(user string) Role {
	switch user {
	case "viewer":
		return RoleView
	case "operator", "tech":
		return RoleOperate
	}
	return RoleNone
}

func sampleSnapshot() Snapshot {
	now := time.Now()
	return Snapshot{
		GatewayID: "plant-7", Version: "test",
		Uplink:   &Uplink{Connected: true, LastAck: now.Add(-2 * time.Second), InFlight: 4, CertNotAfter: now.Add(10 * 24 * time.Hour)},
		Buffer:   Buffer{Records: 42, Bytes: 4096, Oldest: now.Add(-time.Minute), Drops: map[string]uint64{"full": 0, "expired": 2}, DiskFree: 1 << 30, DeadLetters: 3},
		Buses:    []Bus{{Name: "rtu1", Kind: "modbus", Devices: []Device{{Name: "ahu1", Online: true}, {Name: "meter", Online: false}}, Poll: "every 5s"}},
		Commands: []Command{{Time: now, Source: "cloud", ID: "c1", Device: "ahu1", Point: "setpoint", OK: true}},
	}
}

type testServer struct {
	*Server
	gw    *fakeGateway
	users *countingUsers
	url   string
	ts    *httptest.Server
}

// newTestServer serves a page over httptest, with TLS when tlsOn.
func newTestServer(t *testing.T, tlsOn bool, mutate func(*Config)) *testServer {
	t.Helper()
	gw := &fakeGateway{snap: sampleSnapshot()}
	users := testUsers(t)
	cfg := Config{Address: "127.0.0.1:0", Users: users, Guard: localbroker.NewGuard(time.Minute), RoleOf: testRoles, Source: gw, Actions: gw}
	if tlsOn {
		cfg.TLS = &tls.Config{}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ts *httptest.Server
	if tlsOn {
		ts = httptest.NewTLSServer(s.Handler())
	} else {
		ts = httptest.NewServer(s.Handler())
	}
	t.Cleanup(ts.Close)
	return &testServer{Server: s, gw: gw, users: users, url: ts.URL, ts: ts}
}

// client returns a browser-like client: a cookie jar, no redirects followed.
func (ts *testServer) client(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := ts.ts.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf token in page:\n%s", body)
	}
	return m[1]
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// login logs user in and returns the main page's CSRF token.
func (ts *testServer) login(t *testing.T, c *http.Client, user string) string {
	t.Helper()
	_, body := get(t, c, ts.url+"/login")
	resp, body := post(t, c, ts.url+"/login", url.Values{"csrf": {csrfOf(t, body)}, "user": {user}, "password": {testPassword}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s: %s\n%s", user, resp.Status, body)
	}
	resp, body = get(t, c, ts.url+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page after login: %s", resp.Status)
	}
	return csrfOf(t, body)
}
