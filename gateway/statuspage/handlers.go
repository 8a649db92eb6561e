package statuspage

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// Handler returns the page's routes, every answer with the security headers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/login", s.handleLogin)
	mux.Handle("GET /static/{file}", s.static) // files only: no directory listing
	mux.HandleFunc("GET /{$}", s.authorized(RoleView, s.handlePage))
	mux.HandleFunc("GET /events", s.authorized(RoleView, s.handleEvents))
	mux.HandleFunc("GET /chart.svg", s.authorized(RoleView, s.handleChart))
	mux.HandleFunc("POST /logout", s.authorized(RoleView, s.handleLogout))
	mux.HandleFunc("POST /action/audit", s.authorized(RoleOperate, s.actionAudit))
	mux.HandleFunc("POST /action/reconnect", s.authorized(RoleOperate, s.actionReconnect))
	mux.HandleFunc("POST /action/clear-dead-letters", s.authorized(RoleOperate, s.actionClearDeadLetters))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.securityHeaders(w)
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := s.pages.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("status page template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// pageData is what page.html renders.
type pageData struct {
	Snapshot
	User       string
	CanOperate bool
	CSRF       string
	Flash      string
	Audit      []Finding
	AuditAt    time.Time
	AuditWorst string
	Values     []value
	Now        time.Time
	CertWarn   bool
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request, id string, sess session) {
	snap := s.cfg.Source.Snapshot()
	audit, at := s.lastAudit()
	d := pageData{
		Snapshot:   snap,
		User:       sess.user,
		CanOperate: s.cfg.RoleOf(sess.user) >= RoleOperate && s.cfg.Actions != nil,
		CSRF:       sess.csrf,
		Flash:      s.sessions.takeFlash(id),
		Audit:      audit,
		AuditAt:    at,
		AuditWorst: worst(audit),
		Values:     s.live.all(),
		Now:        s.cfg.Now(),
	}
	if u := snap.Uplink; u != nil && !u.CertNotAfter.IsZero() {
		d.CertWarn = u.CertNotAfter.Sub(d.Now) < 30*24*time.Hour
	}
	s.render(w, http.StatusOK, "page.html", d)
}

func worst(fs []Finding) string {
	w := ""
	for _, f := range fs {
		switch {
		case f.Status == "FAIL":
			return "FAIL"
		case f.Status == "WARN":
			w = "WARN"
		case w == "":
			w = "PASS"
		}
	}
	return w
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, id string, _ session) {
	s.sessions.remove(id)
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) done(w http.ResponseWriter, r *http.Request, id, user, action, outcome string) {
	s.log.Info("status page action", "user", user, "action", action, "outcome", outcome, "source", sourceOf(r))
	s.sessions.setFlash(id, outcome)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) actionAudit(w http.ResponseWriter, r *http.Request, id string, sess session) {
	f := s.runAudit()
	s.done(w, r, id, sess.user, "audit", fmt.Sprintf("Audit run: %s (%d checks).", worst(f), len(f)))
}

func (s *Server) actionReconnect(w http.ResponseWriter, r *http.Request, id string, sess session) {
	outcome := "Uplink reconnect requested."
	if err := s.cfg.Actions.ReconnectUplink(); err != nil {
		outcome = "Uplink reconnect failed: " + err.Error()
	}
	s.done(w, r, id, sess.user, "reconnect", outcome)
}

func (s *Server) actionClearDeadLetters(w http.ResponseWriter, r *http.Request, id string, sess session) {
	n, err := s.cfg.Actions.ClearDeadLetters()
	outcome := fmt.Sprintf("Cleared %d dead letters.", n)
	if err != nil {
		outcome = "Clearing dead letters failed: " + err.Error()
	}
	s.done(w, r, id, sess.user, "clear-dead-letters", outcome)
}

func (s *Server) handleChart(w http.ResponseWriter, r *http.Request, _ string, _ session) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(chartSVG(s.samples.list(), s.cfg.SampleEvery))
}

// funcs are the templates' formatting helpers.
func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"ago": func(t time.Time) string { return ago(now(), t) },
		"age": func(t time.Time) string { return ageAt(now(), t) },
		"dur": func(d time.Duration) string { return age(d) },
		"until": func(t time.Time) string {
			if t.IsZero() {
				return "unknown"
			}
			left := t.Sub(now())
			if left < 0 {
				return "expired " + t.UTC().Format("2006-01-02")
			}
			return fmt.Sprintf("%s (in %d days)", t.UTC().Format("2006-01-02"), int(left.Hours()/24))
		},
		"bytes": func(n int64) string {
			if n < 0 {
				return "unknown"
			}
			return humanBytes(n)
		},
		"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	}
}

// ago says how long before now t was, "never" for zero.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return age(now.Sub(t)) + " ago"
}

// ageAt is the age of t at now, a dash for zero.
func ageAt(now, t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return age(now.Sub(t))
}

func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
