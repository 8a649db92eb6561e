package statuspage

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Cookie names.
const (
	sessionCookie = "lintel_session"
	loginCookie   = "lintel_login" // binds the login form's CSRF token
)

// Session lifetimes.
const (
	sessionIdle    = 30 * time.Minute
	sessionMax     = 8 * time.Hour
	maxSessions    = 256
	maxPasswordLen = 1024
	maxUserLen     = 256
)

type session struct {
	user    string
	csrf    string
	created time.Time
	seen    time.Time
	flash   string // the last action's outcome, shown once
}

// sessions are kept in memory: a restart logs everyone out.
type sessions struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(user string) (string, *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	ss.expire(now)
	if len(ss.m) >= maxSessions { // make room: the least recently seen goes
		var oldest string
		for id, s := range ss.m {
			if oldest == "" || s.seen.Before(ss.m[oldest].seen) {
				oldest = id
			}
		}
		delete(ss.m, oldest)
	}
	id := randomToken()
	s := &session{user: user, csrf: randomToken(), created: now, seen: now}
	ss.m[id] = s
	return id, s
}

func (ss *sessions) expire(now time.Time) {
	for id, s := range ss.m {
		if now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax {
			delete(ss.m, id)
		}
	}
}

// get returns a copy of the live session id, touching it.
func (ss *sessions) get(id string) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return session{}, false
	}
	now := ss.now()
	if now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax {
		delete(ss.m, id)
		return session{}, false
	}
	s.seen = now
	return *s, true
}

// alive reports whether session id still exists, without touching it: an
// open event stream does not keep a session from going idle.
func (ss *sessions) alive(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return false
	}
	now := ss.now()
	return now.Sub(s.seen) <= sessionIdle && now.Sub(s.created) <= sessionMax
}

func (ss *sessions) setFlash(id, msg string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.flash = msg
	}
}

func (ss *sessions) takeFlash(id string) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return ""
	}
	f := s.flash
	s.flash = ""
	return f
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// securityHeaders are sent with every answer.
func (s *Server) securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: with it Chromium sends "Origin: null" on a form POST
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if s.cfg.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

func (s *Server) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.TLS != nil, SameSite: http.SameSiteStrictMode,
	}
}

// sourceOf is the login guard's source: the peer's IP address.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sameOrigin refuses a request whose Origin header names another site.
// Browsers send Origin on POST; a request without one (not a browser) still
// needs its CSRF token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// loginToken is the login form's CSRF token: an HMAC of its cookie.
func (s *Server) loginToken(cookie string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("login\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func equalTokens(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// current returns the request's session: its cookie, or else a verified
// client certificate, which opens a session for its common name.
func (s *Server) current(w http.ResponseWriter, r *http.Request) (string, session, bool) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess, ok := s.sessions.get(c.Value); ok {
			return c.Value, sess, true
		}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		user := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if user != "" && s.cfg.RoleOf(user) >= RoleView {
			id, sess := s.sessions.create(user)
			http.SetCookie(w, s.cookie(sessionCookie, id, 0))
			s.log.Info("status page login", "user", user, "by", "client certificate", "source", sourceOf(r))
			return id, *sess, true
		}
	}
	return "", session{}, false
}

// handleLogin shows the form (GET) and checks a login (POST).
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		pre := randomToken()
		http.SetCookie(w, s.cookie(loginCookie, pre, 600))
		s.render(w, http.StatusOK, "login.html", map[string]any{"CSRF": s.loginToken(pre)})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		c, err := r.Cookie(loginCookie)
		if err != nil || !sameOrigin(r) || r.ParseForm() != nil || !equalTokens(r.PostForm.Get("csrf"), s.loginToken(c.Value)) {
			http.Error(w, "forbidden: missing or stale form token; reload the login page", http.StatusForbidden)
			return
		}
		user, password := r.PostForm.Get("user"), r.PostForm.Get("password")
		src := sourceOf(r)
		fail := func(code int, msg string) {
			pre := randomToken()
			http.SetCookie(w, s.cookie(loginCookie, pre, 600))
			s.render(w, code, "login.html", map[string]any{"CSRF": s.loginToken(pre), "Error": msg})
		}
		if len(user) > maxUserLen || len(password) > maxPasswordLen {
			fail(http.StatusBadRequest, "Login refused.")
			return
		}
		if s.cfg.Guard.Blocked(src, user) {
			s.log.Warn("status page login refused during back-off", "user", user, "source", src)
			fail(http.StatusTooManyRequests, "Too many failed logins: wait and try again.")
			return
		}
		if !s.cfg.Users.Check(user, []byte(password)) || s.cfg.RoleOf(user) < RoleView {
			s.cfg.Guard.Fail(src, user)
			s.log.Warn("status page login failed", "user", user, "source", src)
			fail(http.StatusUnauthorized, "Wrong user name or password, or no status role for this user.")
			return
		}
		s.cfg.Guard.Succeed(src, user)
		id, _ := s.sessions.create(user)
		s.log.Info("status page login", "user", user, "by", "password", "source", src)
		http.SetCookie(w, s.cookie(loginCookie, "", -1))
		http.SetCookie(w, s.cookie(sessionCookie, id, 0))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// authorized wraps h: it needs a session of role, and for a POST its CSRF
// token and a same-origin Origin.
func (s *Server) authorized(role Role, h func(http.ResponseWriter, *http.Request, string, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, sess, ok := s.current(w, r)
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path == "/" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "unauthorized: log in first", http.StatusUnauthorized)
			return
		}
		if s.cfg.RoleOf(sess.user) < role {
			http.Error(w, "forbidden: this user has no status role "+roleName(role), http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
			if !sameOrigin(r) || r.ParseForm() != nil || !equalTokens(r.PostForm.Get("csrf"), sess.csrf) {
				http.Error(w, "forbidden: missing or wrong form token", http.StatusForbidden)
				return
			}
		}
		h(w, r, id, sess)
	}
}

func roleName(r Role) string {
	switch r {
	case RoleView:
		return "view"
	case RoleOperate:
		return "operate"
	}
	return "none"
}
