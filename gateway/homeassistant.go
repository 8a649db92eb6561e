package gateway

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
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
		})
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

// haSite describes cfg's devices for Home Assistant. A bool point is a
// switch only if it is a writable coil whose writes need no signature.
// Serial-line events show only fields kept raw that do not look personal;
// state points named from a frame (door_{door}) are not announced, since
// their names are known only once frames arrive.
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
				continue
			}
			dev.Events = append(dev.Events, homeassistant.Event{Name: e.Name, Fields: shownFields(e)})
		}
		if len(dev.Points)+len(dev.Events) > 0 {
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
