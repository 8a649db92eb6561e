package gateway

import (
	"context"
	"encoding/json"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/homeassistant"
	"github.com/lintel-gw/lintel/gateway/privacy"
	"github.com/lintel-gw/lintel/localbroker"
)

// statusTopic is the gateway's own retained status on the local broker,
// which Home Assistant's availability follows. It is not forwarded: the
// uplink keeps the cloud's copy (and its Will) itself.
func (g *Gateway) statusTopic() string { return "lintel/" + g.id + "/" + adapters.StatusPoint }

// publishStatus sets the gateway's retained status on the local broker.
func (g *Gateway) publishStatus(ctx context.Context, online bool) {
	payload, _ := json.Marshal(adapters.DeviceStatus{Online: online, Since: adapters.Timestamp(time.Now())})
	if err := g.broker.Publish(ctx, g.statusTopic(), payload, true, localbroker.High); err != nil {
		g.log.Warn("cannot publish the gateway status on the local broker", "err", err)
	}
}

// syncDiscovery publishes (or, when home_assistant is off, removes) the Home
// Assistant discovery configs for cfg. Failures are logged: the gateway
// runs without them.
func (g *Gateway) syncDiscovery(ctx context.Context, cfg *config.Config) {
	ha := cfg.LocalBroker.HomeAssistant
	if ha == nil && g.ha == nil {
		return
	}
	if g.ha == nil {
		g.ha = homeassistant.New(func(ctx context.Context, topic string, payload []byte) error {
			return g.broker.Publish(ctx, topic, payload, true, localbroker.Normal)
		}, g.log)
		g.haLive.Store(g.ha)
	}
	var err error
	if ha == nil {
		err = g.ha.Clear(ctx)
	} else {
		err = g.ha.Sync(ctx, haSite(cfg, g.version))
	}
	if err != nil {
		g.log.Warn("home assistant discovery incomplete", "err", err)
	}
}

// observeReading lets discovery announce a state point named by a frame
// (door_{door}_open) when its first reading passes. It runs on the
// adapters' publish path, so it reads haLive, not ha (guarded by mu, which
// Reload holds while it waits for the adapters to stop).
func (g *Gateway) observeReading(ctx context.Context, m adapters.Message) {
	if d := g.haLive.Load(); d != nil {
		d.Observe(ctx, m.Device, m.Point)
	}
}

// haSite describes cfg's devices for Home Assistant. A bool point is a
// switch only if it is a writable coil whose writes need no signature.
// Serial-line events show only fields kept raw that do not look personal;
// a state point named from a frame (door_{door}) becomes a Template, which
// discovery announces once a reading names a point, only if every field
// of its name and its value is kept raw and does not look personal.
func haSite(cfg *config.Config, version string) homeassistant.Site {
	site := homeassistant.Site{Prefix: cfg.LocalBroker.HomeAssistant.Prefix, GatewayID: cfg.Gateway.ID, Version: version}
	busType := map[string]string{}
	for _, b := range cfg.Buses {
		busType[b.Name] = b.Type
	}
	for _, d := range cfg.Devices {
		dev := homeassistant.Device{Name: d.Name, Model: busType[d.Bus]}
		for _, p := range d.Points {
			hp := homeassistant.Point{Name: p.Name, Unit: p.Unit}
			switch {
			case p.Type == "bool":
				hp.Kind = homeassistant.Bool
				hp.Switch = p.Writable && p.Table == "coil" && p.UnsignedWrites && !p.Critical
			case p.Type == "string" || len(p.Labels) > 0:
				hp.Kind = homeassistant.Text
			}
			dev.Points = append(dev.Points, hp)
		}
		for _, e := range d.Events {
			if e.Point != "" {
				if t, ok := haTemplate(e); ok {
					dev.Templates = append(dev.Templates, t)
				}
				continue
			}
			dev.Events = append(dev.Events, homeassistant.Event{Name: e.Name, Fields: shownFields(e)})
		}
		if len(dev.Points)+len(dev.Events)+len(dev.Templates) > 0 {
			site.Devices = append(site.Devices, dev)
		}
	}
	return site
}

// shownFields are an event's captured fields that are published raw (no
// privacy rule, or keep) and whose names do not look personal.
func shownFields(e config.Event) []string {
	re, err := regexp.Compile(e.Match)
	if err != nil { // checked by config
		return nil
	}
	var out []string
	for _, f := range re.SubexpNames() {
		if f == "" || slices.Contains(out, f) || privacy.LooksPersonal(f) {
			continue
		}
		if rule := e.Privacy[f]; rule == "" || rule == "keep" {
			out = append(out, f)
		}
	}
	return out
}

// placeholder is a field in a point template: {door}.
var placeholder = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)

// haTemplate describes a templated state point for discovery: its shape is
// the template with each {field} replaced by the field's capture pattern.
// It is refused (false) when a field of the name or the value field is
// pseudonymised, dropped or looks personal: an entity would then be named
// after, or show, a person.
func haTemplate(e config.Event) (homeassistant.Template, bool) {
	raw := func(f string) bool {
		rule := e.Privacy[f]
		return (rule == "" || rule == privacy.Keep) && !privacy.LooksPersonal(f)
	}
	tree, err := syntax.Parse(e.Match, syntax.Perl)
	if err != nil || !raw(e.Value) { // the pattern is checked by config
		return homeassistant.Template{}, false
	}
	var shape strings.Builder
	shape.WriteString("^(?:")
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(e.Point, -1) {
		field := e.Point[m[2]:m[3]]
		subs := captures(tree, field)
		if len(subs) == 0 || !raw(field) {
			return homeassistant.Template{}, false
		}
		shape.WriteString(regexp.QuoteMeta(e.Point[last:m[0]]))
		shape.WriteString("(?:" + strings.Join(subs, "|") + ")")
		last = m[1]
	}
	shape.WriteString(regexp.QuoteMeta(e.Point[last:]) + ")$")
	re, err := regexp.Compile(shape.String())
	if err != nil {
		return homeassistant.Template{}, false
	}
	return homeassistant.Template{Event: e.Name, Shape: re, Kind: valuesKind(e.Values)}, true
}

// captures returns the pattern of every group named field in re.
func captures(re *syntax.Regexp, field string) []string {
	var out []string
	if re.Op == syntax.OpCapture && re.Name == field {
		out = append(out, re.Sub[0].String())
	}
	for _, sub := range re.Sub {
		out = append(out, captures(sub, field)...)
	}
	return out
}

// valuesKind is Bool when an event maps every value to a bool, Number when
// to a number, else Text (the raw field, or a mix).
func valuesKind(values map[string]any) homeassistant.Kind {
	bools, numbers := 0, 0
	for _, v := range values {
		switch v.(type) {
		case bool:
			bools++
		case int, int64, uint64, float64:
			numbers++
		}
	}
	switch {
	case len(values) > 0 && bools == len(values):
		return homeassistant.Bool
	case len(values) > 0 && numbers == len(values):
		return homeassistant.Number
	}
	return homeassistant.Text
}
