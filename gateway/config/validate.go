package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/gateway/privacy"
	"github.com/lintel-gw/lintel/gateway/uplink"
)

// nameRE is what a gateway, device or point name may be: one MQTT topic
// level without wildcards, separators or a leading "$".
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

type checker struct{ problems, warnings Problems }

func (c *checker) warn(path, format string, args ...any) {
	c.warnings = append(c.warnings, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) name(path, value string) {
	switch {
	case value == "":
		c.add(path, "missing; a name is required")
	case !nameRE.MatchString(value):
		c.add(path, "invalid name %q; use letters, digits, '-', '_' or '.', at most 64, starting with a letter or digit", value)
	}
}

func (c *checker) oneOf(path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		c.add(path, "unknown value %q; want one of %s", value, strings.Join(allowed, ", "))
	}
}

func (c *checker) required(path, value string) {
	if value == "" {
		c.add(path, "missing; required")
	}
}

// under is a report function for an adapter's checks: its keys are below
// path.
func (c *checker) under(path string) func(key, msg string) {
	return func(key, msg string) { c.add(path+"."+key, "%s", msg) }
}

func (c *checker) filter(path, f string) {
	if err := ValidFilter(f); err != nil {
		c.add(path, "invalid topic filter %q: %v", f, err)
	}
}

// validate checks everything that can be checked without touching the
// machine (files are opened by `lintel run`). Defaults are already applied.
func (cfg *Config) validate() Problems {
	c := &checker{}
	defer func() { cfg.Warnings = c.warnings }()
	c.name("gateway.id", cfg.Gateway.ID)
	c.oneOf("log.level", cfg.Log.Level, "debug", "info", "warn", "error")
	c.oneOf("log.format", cfg.Log.Format, "text", "json")

	if a := cfg.Metrics.Address; a != "off" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			c.add("metrics.address", "invalid address %q; want host:port (e.g. 127.0.0.1:9108) or off", a)
		}
	}
	if sp := cfg.StatusPage; sp != nil {
		host, _, err := net.SplitHostPort(sp.Address)
		switch {
		case err != nil:
			c.add("status_page.address", "invalid address %q; want host:port, e.g. 127.0.0.1:9109", sp.Address)
		case sp.TLS == nil && !isLoopbackHost(host):
			c.add("status_page.address", "address %q is not loopback, so the status page needs tls (cert_file, key_file); plain HTTP is only allowed on 127.0.0.1, ::1 or localhost", sp.Address)
		}
		if sp.TLS != nil {
			c.required("status_page.tls.cert_file", sp.TLS.CertFile)
			c.required("status_page.tls.key_file", sp.TLS.KeyFile)
		}
	}
	lb := cfg.LocalBroker
	listenerNames := map[string]bool{}
	for i, l := range lb.Listeners {
		p := fmt.Sprintf("local_broker.listeners[%d]", i)
		c.name(p+".name", l.Name)
		if listenerNames[l.Name] {
			c.add(p+".name", "duplicate listener name %q", l.Name)
		}
		listenerNames[l.Name] = true
		c.oneOf(p+".type", l.Type, "tcp", "websocket", "unix")
		if l.Type == "unix" {
			c.required(p+".address", l.Address)
			if l.TLS != nil {
				c.add(p+".tls", "a unix socket takes no tls")
			}
			continue
		}
		host, _, err := net.SplitHostPort(l.Address)
		if err != nil {
			c.add(p+".address", "invalid address %q; want host:port, e.g. 127.0.0.1:1883", l.Address)
			continue
		}
		if l.TLS == nil && !isLoopbackHost(host) {
			c.add(p+".address", "address %q is not loopback, so this listener needs tls (cert_file, key_file); plain MQTT is only allowed on 127.0.0.1, ::1 or localhost", l.Address)
		}
		if l.TLS != nil {
			c.required(p+".tls.cert_file", l.TLS.CertFile)
			c.required(p+".tls.key_file", l.TLS.KeyFile)
		}
	}
	for i, r := range lb.ACL {
		p := fmt.Sprintf("local_broker.acl[%d]", i)
		if r.User != "*" {
			c.name(p+".user", r.User)
		}
		if len(r.Read)+len(r.Write)+len(r.DenyRead)+len(r.DenyWrite)+len(r.Status) == 0 {
			c.add(p, "rule has no filters; give read, write, deny_read or deny_write (or status)")
		}
		for j, role := range r.Status {
			c.oneOf(fmt.Sprintf("%s.status[%d]", p, j), role, "view", "operate")
		}
		for key, filters := range map[string][]string{"read": r.Read, "write": r.Write, "deny_read": r.DenyRead, "deny_write": r.DenyWrite} {
			for j, f := range filters {
				c.filter(fmt.Sprintf("%s.%s[%d]", p, key, j), f)
			}
		}
	}
	if lb.Limits.MaxPacket < 1024 || lb.Limits.MaxPacket > 256<<20 {
		c.add("local_broker.limits.max_packet", "%d bytes is out of range; want 1KiB to 256MiB", lb.Limits.MaxPacket)
	}
	if lb.Limits.MaxClients < 1 {
		c.add("local_broker.limits.max_clients", "%d; want at least 1", lb.Limits.MaxClients)
	}
	c.brokerLimits(lb.Limits)
	if ha := lb.HomeAssistant; ha != nil {
		c.discoveryPrefix("local_broker.home_assistant.prefix", ha.Prefix)
	}

	buses := map[string]Bus{}
	for i, b := range cfg.Buses {
		p := fmt.Sprintf("buses[%d]", i)
		c.name(p+".name", b.Name)
		if _, dup := buses[b.Name]; dup {
			c.add(p+".name", "duplicate bus name %q", b.Name)
		}
		buses[b.Name] = b
		switch b.Type {
		case "modbus-tcp", "modbus-rtu-over-tcp":
			if _, _, err := net.SplitHostPort(b.Address); err != nil {
				c.add(p+".address", "invalid address %q; want host:port, e.g. 10.0.5.20:502", b.Address)
			}
		case "serial-line":
			c.serialPort(p, b)
			f := serialline.Framing{Kind: b.Framing, Delimiter: []byte(b.Delimiter), Length: b.FrameLength, LengthBytes: b.LengthBytes, MaxFrame: b.MaxFrame}
			if err := f.Validate(); err != nil {
				c.add(p+".framing", "%v", err)
			}
		case "modbus-rtu":
			c.serialPort(p, b)
		case BACnetIP:
			c.bacnetBus(p, b)
			c.bacnetDevices(cfg, p, b)
		default:
			c.add(p+".type", "unknown bus type %q; want one of %s", b.Type, strings.Join(BusTypes(), ", "))
		}
		if b.Type != BACnetIP {
			c.bacnetOnlyBus(p, b)
		}
		if b.Retries != nil && (*b.Retries < 0 || *b.Retries > 5) {
			c.add(p+".retries", "%d; want 0 to 5", *b.Retries)
		}
		if b.Pause.D() < 0 || b.Pause.D() > 5*time.Second {
			c.add(p+".pause", "%v; want 0 to 5s", b.Pause.D())
		}
		if b.Timeout.D() < 10*time.Millisecond || b.Timeout.D() > time.Minute {
			c.add(p+".timeout", "%v is out of range; want 10ms to 1m", b.Timeout.D())
		}
	}

	devices := map[string]bool{}
	for i, d := range cfg.Devices {
		p := fmt.Sprintf("devices[%d]", i)
		c.name(p+".name", d.Name)
		if devices[d.Name] {
			c.add(p+".name", "duplicate device name %q", d.Name)
		}
		devices[d.Name] = true
		bus, ok := buses[d.Bus]
		if !ok {
			c.add(p+".bus", "unknown bus %q; define it under buses", d.Bus)
		}
		if bus.Type == BACnetIP {
			continue // checked with its bus (bacnetDevices)
		}
		c.bacnetOnly(p, d)
		if bus.Type == "serial-line" {
			c.serialDevice(p, d)
			continue
		}
		if len(d.Events)+len(d.Requests)+len(d.Commands) > 0 {
			c.add(p, "events, requests and commands belong to serial-line devices; bus %q is %s", d.Bus, bus.Type)
		}
		modbus.CheckDevice(modbus.DeviceSpec{Unit: d.Unit, Poll: d.Poll.D(), MaxRegisters: d.MaxRegisters, MaxGap: d.MaxGap, Points: len(d.Points)}, c.under(p))
		points := map[string]bool{}
		for j, pt := range d.Points {
			pp := fmt.Sprintf("%s.points[%d]", p, j)
			c.name(pp+".name", pt.Name)
			if points[pt.Name] {
				c.add(pp+".name", "duplicate point name %q in device %q", pt.Name, d.Name)
			}
			points[pt.Name] = true
			c.point(pp, pt)
		}
	}

	for _, ut := range cfg.UnsignedTargets() {
		if ut.DoorLike != "" {
			c.warn(ut.Path+".unsigned_writes", "%s %q is written without a signature, and %s; remove unsigned_writes so that writes need a signed command (`lintel audit` fails on this)",
				ut.Kind, ut.Device+"/"+ut.Name, ut.DoorLike)
		}
	}

	if u := cfg.Uplink; u != nil {
		if err := uplink.CheckBroker(u.Broker); err != nil {
			c.add("uplink.broker", "%v", err)
		}
		c.required("uplink.tls.ca_file", u.TLS.CAFile)
		c.required("uplink.tls.cert_file", u.TLS.CertFile)
		c.required("uplink.tls.key_file", u.TLS.KeyFile)
		for i, f := range u.Forward {
			c.filter(fmt.Sprintf("uplink.forward[%d]", i), f)
		}
		switch {
		case strings.ContainsAny(u.TopicPrefix, "+#\x00"):
			c.add("uplink.topic_prefix", "prefix %q must not contain wildcards or NUL", u.TopicPrefix)
		case strings.HasPrefix(u.TopicPrefix, "$"):
			c.add("uplink.topic_prefix", "prefix %q must not start with \"$\": such topics are the broker's own ($SYS, $share)", u.TopicPrefix)
		}
		if ttl := u.Commands.MaxTTL.D(); ttl < 0 || ttl > time.Hour {
			c.add("uplink.commands.max_ttl", "%v; want up to 1h (a signed command stays usable this long)", ttl)
		}
		if u.MaxInflight < 1 || u.MaxInflight > 4096 {
			c.add("uplink.max_inflight", "%d is out of range 1-4096", u.MaxInflight)
		}
		if t := u.AckTimeout.D(); t < time.Second || t > 10*time.Minute {
			c.add("uplink.ack_timeout", "%v; want 1s to 10m", t)
		}
		if n := u.DeadLetterAfter; n < 1 || n > 100 {
			c.add("uplink.dead_letter_after", "%d; want 1 to 100", n)
		}
		switch u.Format {
		case FormatJSON:
		case FormatSparkplugB:
			sp := u.Sparkplug
			if sp.GroupID == "" {
				c.add("uplink.sparkplug.group_id", "required with format sparkplug-b")
			}
			for key, id := range map[string]string{"group_id": sp.GroupID, "edge_node_id": sp.EdgeNodeID, "primary_host_id": sp.PrimaryHostID} {
				if strings.ContainsAny(id, "/+#\x00") {
					c.add("uplink.sparkplug."+key, "%q must not contain / + # or NUL (it is a topic level)", id)
				}
			}
			switch st := sp.PrimaryHostState; {
			case st != "" && st != "auto" && st != "3.0" && st != "2.2":
				c.add("uplink.sparkplug.primary_host_state", "%q; want auto, 3.0 or 2.2", st)
			case st != "" && sp.PrimaryHostID == "":
				c.add("uplink.sparkplug.primary_host_state", "%q needs primary_host_id (the host whose STATE it describes)", st)
			}
		default:
			c.add("uplink.format", "%q; want json or sparkplug-b", u.Format)
		}
	}

	if cfg.Buffer.MaxBytes < 1<<20 {
		c.add("buffer.max_bytes", "%d bytes is too small; want at least 1MiB", cfg.Buffer.MaxBytes)
	}
	c.oneOf("buffer.full_policy", cfg.Buffer.FullPolicy, "drop-oldest", "reject-new")
	if ci := cfg.Buffer.CommitInterval.D(); ci < 10*time.Millisecond || ci > 10*time.Second {
		c.add("buffer.commit_interval", "%v is out of range; want 10ms to 10s", ci)
	}
	if ttl := cfg.Buffer.TTL.D(); ttl != 0 && ttl < time.Minute {
		c.add("buffer.ttl", "%v is too short; want 0 (no expiry) or at least 1m", ttl)
	}
	return c.problems
}

// brokerLimits checks the local broker's flood limits. Zeros were reported
// by explicitZeros (before defaults replaced them); negative values here.
// max_filters stops at 10,000: a filter can cost ~16 KB of the broker's
// topic tree (16 levels), so more could outgrow the unit's MemoryMax.
func (c *checker) brokerLimits(l Limits) {
	const p = "local_broker.limits."
	if t := l.ConnectTimeout.D(); t != 0 && (t < time.Second || t > time.Minute) {
		c.add(p+"connect_timeout", "%v; want 1s to 1m", t)
	}
	if l.MaxPending < 0 || l.MaxPending > 10_000 {
		c.add(p+"max_pending", "%d; want 1 to 10000", l.MaxPending)
	}
	if l.MaxPendingPerSource < 0 || l.MaxPendingPerSource > l.MaxPending {
		c.add(p+"max_pending_per_source", "%d; want 1 to max_pending (%d)", l.MaxPendingPerSource, l.MaxPending)
	}
	if l.MaxFilters < 0 || l.MaxFilters > 10_000 {
		c.add(p+"max_filters", "%d; want 1 to 10000", l.MaxFilters)
	}
	if l.MaxFiltersPerClient < 0 || l.MaxFiltersPerClient > l.MaxFilters {
		c.add(p+"max_filters_per_client", "%d; want 1 to max_filters (%d)", l.MaxFiltersPerClient, l.MaxFilters)
	}
	if l.MaxPasswordChecks < 0 || l.MaxPasswordChecks > 16 {
		c.add(p+"max_password_checks", "%d; want 1 to 16", l.MaxPasswordChecks)
	}
}

// discoveryPrefix checks a Home Assistant discovery prefix: whole topic
// levels without wildcards, not the broker's ($) and not Lintel's own
// lintel/ tree, where configs would be forwarded as readings.
func (c *checker) discoveryPrefix(path, prefix string) {
	first, _, _ := strings.Cut(prefix, "/")
	switch {
	case strings.ContainsAny(prefix, "+#\x00"):
		c.add(path, "prefix %q must not contain wildcards or NUL", prefix)
	case strings.HasPrefix(prefix, "$"):
		c.add(path, "prefix %q must not start with \"$\": such topics are the broker's own", prefix)
	case first == "lintel":
		c.add(path, "prefix %q is inside lintel/, where readings live; use e.g. homeassistant", prefix)
	case slices.Contains(strings.Split(prefix, "/"), ""):
		c.add(path, "prefix %q has an empty topic level", prefix)
	}
}

// serialPort checks the line settings of a bus on a serial port.
func (c *checker) serialPort(p string, b Bus) {
	c.required(p+".port", b.Port)
	if b.Baud < 300 || b.Baud > 4_000_000 {
		c.add(p+".baud", "%d is not a usable baud rate", b.Baud)
	}
	c.oneOf(p+".parity", b.Parity, "none", "even", "odd")
	if b.StopBits != 1 && b.StopBits != 2 {
		c.add(p+".stop_bits", "%d; want 1 or 2", b.StopBits)
	}
}

// placeholderRE finds {name} in templates.
var placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func (c *checker) serialDevice(p string, d Device) {
	if len(d.Points) > 0 {
		c.add(p+".points", "a serial-line device has events, not Modbus points")
	}
	if len(d.Events)+len(d.Commands) == 0 {
		c.add(p, "serial-line device has neither events nor commands")
	}
	names := map[string]bool{}
	for i, e := range d.Events {
		ep := fmt.Sprintf("%s.events[%d]", p, i)
		c.name(ep+".name", e.Name)
		if names[e.Name] {
			c.add(ep+".name", "duplicate event name %q", e.Name)
		}
		names[e.Name] = true
		re, err := regexp.Compile(e.Match)
		if err != nil {
			c.add(ep+".match", "invalid pattern: %v", err)
			continue
		}
		groups := map[string]bool{}
		for _, g := range re.SubexpNames() {
			if g != "" {
				groups[g] = true
			}
		}
		for field, rule := range e.Privacy {
			if !groups[field] {
				c.add(ep+".privacy."+field, "the pattern captures no field %q", field)
			}
			if _, err := privacy.ParseRule(rule); err != nil {
				c.add(ep+".privacy."+field, "%v", err)
			}
		}
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			if _, ruled := e.Privacy[g]; !ruled && privacy.LooksPersonal(g) {
				c.warn(ep+".match", "captured field %q looks personal but has no privacy rule; add privacy: {%s: pseudonymize} (or drop, or keep to accept it)", g, g)
			}
		}
		if e.Point != "" {
			fieldsOK := true
			for _, m := range placeholderRE.FindAllStringSubmatch(e.Point, -1) {
				if !groups[m[1]] {
					fieldsOK = false
					c.add(ep+".point", "template uses {%s}, which the pattern does not capture", m[1])
				} else if r := e.Privacy[m[1]]; r != "" && r != "keep" {
					fieldsOK = false
					c.add(ep+".point", "template uses {%s}, which is %s: personal data must not end up in a topic", m[1], r)
				}
			}
			if p := checkTopicTemplate(re, e.Point); fieldsOK && p != nil {
				c.add(ep+"."+p.key, "%s", p.msg)
			}
			if !groups[e.Value] {
				c.add(ep+".value", "the state value must be a captured field; %q is not", e.Value)
			}
		}
		if e.Priority != "" {
			c.oneOf(ep+".priority", e.Priority, "high", "normal")
		}
	}
	for i, r := range d.Requests {
		rp := fmt.Sprintf("%s.requests[%d]", p, i)
		c.required(rp+".send", r.Send)
		if r.Every.D() < 100*time.Millisecond {
			c.add(rp+".every", "%v is too short; want at least 100ms", r.Every.D())
		}
		if _, err := regexp.Compile(r.Expect); err != nil {
			c.add(rp+".expect", "invalid pattern: %v", err)
		}
	}
	for i, cmd := range d.Commands {
		cp := fmt.Sprintf("%s.commands[%d]", p, i)
		c.name(cp+".name", cmd.Name)
		c.required(cp+".send", cmd.Send)
		used := map[string]bool{}
		for _, m := range placeholderRE.FindAllStringSubmatch(cmd.Send, -1) {
			used[m[1]] = true
			if _, ok := cmd.Params[m[1]]; !ok {
				c.add(cp+".send", "template uses {%s}; declare it under params with enum, min/max or pattern", m[1])
			}
		}
		for name, prm := range cmd.Params {
			pp := cp + ".params." + name
			if !used[name] {
				c.add(pp, "parameter %q is not used in send", name)
			}
			if len(prm.Enum) == 0 && prm.Min == nil && prm.Max == nil && prm.Pattern == "" {
				c.add(pp, "parameter %q is unconstrained; give enum, min/max or pattern", name)
			}
			if _, err := regexp.Compile(prm.Pattern); err != nil {
				c.add(pp+".pattern", "invalid pattern: %v", err)
			}
			if prm.Min != nil && prm.Max != nil && *prm.Min > *prm.Max {
				c.add(pp, "min %v is above max %v", *prm.Min, *prm.Max)
			}
		}
		if _, err := regexp.Compile(cmd.Expect); err != nil {
			c.add(cp+".expect", "invalid pattern: %v", err)
		}
		if cmd.UnsignedWrites && cmd.Critical {
			c.add(cp+".unsigned_writes", "critical and unsigned_writes contradict: a critical command always needs a signature; remove one")
		}
	}
}

// point asks the Modbus adapter to check a point.
func (c *checker) point(path string, pt Point) {
	modbus.CheckPoint(modbus.PointSpec{
		Table: pt.Table, Type: pt.Type, Order: pt.Order, Address: pt.Address, Bit: pt.Bit, Length: pt.Length,
		Labels: len(pt.Labels) > 0, Scale: pt.Scale, Poll: pt.Poll.D(), Priority: pt.Priority, Deadband: pt.Report.Deadband,
		Writable: pt.Writable, Critical: pt.Critical, UnsignedWrites: pt.UnsignedWrites, Min: pt.Min, Max: pt.Max,
	}, c.under(path))
}

// IsLoopback reports whether a host:port address is on a loopback
// interface (127.0.0.0/8, ::1 or localhost).
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	return err == nil && isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidFilter checks an MQTT topic filter: "#" only as the last level, "+"
// only as a whole level.
func ValidFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("'#' must be a whole level and the last one")
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("'+' must be a whole level")
		}
	}
	return nil
}
