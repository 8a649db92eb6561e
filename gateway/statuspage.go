package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lintel-gw/lintel/gateway/audit"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/statuspage"
	"github.com/lintel-gw/lintel/localbroker"
)

// openStatusPage prepares the status page and binds its listener, when
// configured (New fails on a taken port like for the broker).
func (g *Gateway) openStatusPage(cfg *config.Config, version string) error {
	sp := cfg.StatusPage
	if sp == nil {
		return nil
	}
	if cfg.LocalBroker.UsersFile != "" {
		if _, err := localbroker.LoadUsers(cfg.LocalBroker.UsersFile); err != nil {
			return fmt.Errorf("status_page: %w", err)
		}
	}
	pc := statuspage.Config{
		Address: sp.Address,
		Users:   usersFile(cfg.LocalBroker.UsersFile),
		Guard:   localbroker.NewGuard(0),
		RoleOf:  g.statusRole,
		Source:  statusSource{g: g, version: version},
		Actions: statusActions{g: g},
		Broker:  g.broker,
		Filter:  "lintel/" + g.id + "/+/+",
		Logger:  g.log.With("component", "status-page"),
	}
	if sp.TLS != nil {
		t, err := serverTLS(sp.TLS)
		if err != nil {
			return fmt.Errorf("status_page.tls: %w", err)
		}
		if t.ClientCAs != nil {
			// A certificate logs in; without one the password form still works.
			t.ClientAuth = tls.VerifyClientCertIfGiven
		}
		pc.TLS = t
	}
	var err error
	if g.status, err = statuspage.New(pc); err != nil {
		return fmt.Errorf("status_page: %w", err)
	}
	if g.statusL, err = net.Listen("tcp", sp.Address); err != nil {
		return fmt.Errorf("status_page.address: %w", err)
	}
	return nil
}

// usersFile checks passwords against the local broker's users file as it
// is now: `lintel passwd` takes effect on the page without a restart.
type usersFile string

func (f usersFile) Check(name string, password []byte) bool {
	if f == "" {
		return false // no users file: client certificates only
	}
	u, err := localbroker.LoadUsers(string(f))
	return err == nil && u.Check(name, password)
}

// StatusPageAddr is where the status page is served ("" when off).
func (g *Gateway) StatusPageAddr() string {
	if g.statusL == nil {
		return ""
	}
	return g.statusL.Addr().String()
}

// statusRole reads the status roles of user from the ACL in force.
func (g *Gateway) statusRole(user string) statuspage.Role {
	g.busMu.RLock()
	rules := g.cfg.LocalBroker.ACL
	g.busMu.RUnlock()
	role := statuspage.RoleNone
	for _, r := range rules {
		if r.User != user && r.User != "*" {
			continue
		}
		for _, s := range r.Status {
			switch {
			case s == "operate":
				role = statuspage.RoleOperate
			case s == "view" && role < statuspage.RoleView:
				role = statuspage.RoleView
			}
		}
	}
	return role
}

// statusSource gathers the page's snapshot from the gateway's parts.
type statusSource struct {
	g       *Gateway
	version string
}

func (s statusSource) Snapshot() statuspage.Snapshot {
	g := s.g
	st := g.Stats()
	b := st.Buffer
	snap := statuspage.Snapshot{
		GatewayID: g.id,
		Version:   s.version,
		Buffer: statuspage.Buffer{
			Records: b.Records, Bytes: b.Bytes, Oldest: b.Oldest, DeadLetters: b.DeadLetters, Problem: b.Problem,
			Drops:    map[string]uint64{"full": b.Drops.Full, "rejected": b.Drops.Rejected, "expired": b.Drops.Expired},
			DiskFree: diskFree(g.dataDir),
		},
	}
	if g.uplink != nil {
		u := st.Uplink
		snap.Uplink = &statuspage.Uplink{
			Connected: u.Connected, LastAck: u.LastAck, InFlight: u.InFlight, OldestInflight: u.OldestInflight,
			RetryAt: u.RetryAt, Acked: u.Acked, LastError: u.LastError, CertNotAfter: u.CertNotAfter,
		}
	}
	g.busMu.RLock()
	polls, kinds := map[string][]string{}, map[string]string{}
	for _, d := range g.cfg.Devices {
		polls[d.Bus] = append(polls[d.Bus], fmt.Sprintf("%s every %v", d.Name, d.Poll.D()))
	}
	for _, b := range g.cfg.Buses {
		kinds[b.Name] = b.Type
	}
	g.busMu.RUnlock()
	buses := g.currentBuses()
	for _, name := range slices.Sorted(maps.Keys(buses)) {
		snap.Buses = append(snap.Buses, busStatus(name, kinds[name], polls[name], reportOf(buses[name])))
	}
	log := filepath.Join(g.dataDir, commandLog)
	snap.Commands = statuspage.ReadCommandLogs(10, log, strings.TrimSuffix(log, ".log")+"-refused.log")
	return snap
}

// busStatus summarises what a bus reported (the same report /metrics
// uses): poll periods, request count and mean answer time, error counts,
// and each device's state with its last error and circuit.
func busStatus(name, kind string, polls []string, r *busReport) statuspage.Bus {
	bus := statuspage.Bus{Name: name, Kind: kind}
	var parts, errs []string
	if len(polls) > 0 {
		parts = append(parts, "polls "+joinComma(polls))
	}
	for _, c := range r.counters {
		label := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(c.name, "bus_"), "serial_"), "_total"), "_", " ")
		switch {
		case strings.Contains(c.name, "timeout"), strings.Contains(c.name, "error"), strings.Contains(c.name, "exception"), strings.Contains(c.name, "dropped"):
			if c.v > 0 {
				errs = append(errs, fmt.Sprintf("%d %s", c.v, label))
			}
		default:
			parts = append(parts, fmt.Sprintf("%d %s", c.v, label))
		}
	}
	for _, h := range r.histograms {
		n := uint64(0)
		for _, c := range h.counts {
			n += c
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("mean answer %v", time.Duration(h.sum/float64(n)*float64(time.Second)).Round(100*time.Microsecond)))
		}
	}
	bus.Poll = strings.Join(parts, "; ")
	if len(errs) > 0 {
		bus.LastError = strings.Join(errs, ", ") + " since start"
	}
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(r.devices)) {
		d := r.devices[name]
		bus.Devices = append(bus.Devices, statuspage.Device{
			Name: name, Online: d.Online, Circuit: d.Circuit(now), RetryAt: d.RetryAt,
			LastError: d.LastError, LastErrorAt: d.LastErrorAt, Failures: d.Failures,
		})
	}
	return bus
}

func joinComma(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}

// statusActions are the page's three actions.
type statusActions struct{ g *Gateway }

func (a statusActions) Audit() []statuspage.Finding {
	a.g.busMu.RLock()
	cfg := a.g.cfg
	a.g.busMu.RUnlock()
	var out []statuspage.Finding
	for _, f := range audit.Run(cfg, nil, audit.Options{}) {
		out = append(out, statuspage.Finding{Check: f.Check, Status: string(f.Status), Reason: f.Reason, Fix: f.Fix})
	}
	return out
}

func (a statusActions) ReconnectUplink() error {
	if a.g.uplink == nil {
		return errors.New("no uplink configured")
	}
	a.g.uplink.Reconnect()
	return nil
}

func (a statusActions) ClearDeadLetters() (int, error) { return a.g.queue.ClearDeadLetters() }

// commandLog is the command gate's audit log in the data dir.
const commandLog = "commands.log"
