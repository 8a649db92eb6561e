package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Kind is what a point's reading holds.
type Kind int

// Kinds of point values.
const (
	Number Kind = iota // a number, with a unit
	Bool
	Text // a string, or a labelled integer published as its label
)

// Point is one reading, published on lintel/<gw>/<device>/<point> as
// {"v":…,"unit":…,"ts":…,"q":…}.
type Point struct {
	Name string
	Kind Kind
	Unit string
	// Switch shows a Bool point as a switch. Set it only for a writable coil
	// whose writes need no signature: Home Assistant cannot sign.
	Switch bool
}

// Event is an event published on lintel/<gw>/<device>/<event> as
// {"ts":…,"fields":{…}}.
type Event struct {
	Name string
	// Fields may be shown as attributes of the "last event" sensor. List
	// only fields that are kept raw and are not personal: no template reads
	// any other field.
	Fields []string
}

// Device is one Lintel device.
type Device struct {
	Name   string
	Model  string // e.g. the bus type, shown as the model
	Points []Point
	Events []Event
}

// Site is everything to announce.
type Site struct {
	Prefix    string // discovery prefix, e.g. homeassistant
	GatewayID string
	Version   string // the gateway's software version, may be empty
	Devices   []Device
}

// PublishFunc publishes one retained message on the local broker.
type PublishFunc func(ctx context.Context, topic string, payload []byte) error

// Discovery publishes a Site's configs and removes those of entities that
// disappeared since the previous Sync. It is safe for concurrent use.
type Discovery struct {
	publish PublishFunc

	mu        sync.Mutex
	published map[string]bool // config topics holding a config now
}

// New returns a Discovery that publishes through publish.
func New(publish PublishFunc) *Discovery {
	return &Discovery{publish: publish, published: map[string]bool{}}
}

// Sync publishes every config of site, then an empty retained payload on
// each config topic the previous Sync published that site no longer has.
// Entities whose discovery topic another one already took (names that
// differ only by '.' and '_') are skipped and named in the error; the others
// are published.
func (d *Discovery) Sync(ctx context.Context, site Site) error {
	configs, collisions := Configs(site)
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if collisions != nil {
		errs = append(errs, collisions)
	}
	for _, topic := range slices.Sorted(maps.Keys(configs)) {
		if err := d.publish(ctx, topic, configs[topic]); err != nil {
			errs = append(errs, fmt.Errorf("discovery config %s: %w", topic, err))
			continue
		}
		d.published[topic] = true
	}
	for _, topic := range slices.Sorted(maps.Keys(d.published)) {
		if _, ok := configs[topic]; ok {
			continue
		}
		if err := d.publish(ctx, topic, nil); err != nil {
			errs = append(errs, fmt.Errorf("discovery removal %s: %w", topic, err))
			continue
		}
		delete(d.published, topic)
	}
	return errors.Join(errs...)
}

// Clear removes every entity the previous Sync published (home_assistant
// turned off).
func (d *Discovery) Clear(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, topic := range slices.Sorted(maps.Keys(d.published)) {
		if err := d.publish(ctx, topic, nil); err != nil {
			errs = append(errs, fmt.Errorf("discovery removal %s: %w", topic, err))
			continue
		}
		delete(d.published, topic)
	}
	return errors.Join(errs...)
}

// Configs returns every discovery config of site by topic
// (<prefix>/<component>/<gateway>/<device>_<point>/config). An entity whose
// topic is already taken is left out and named in err.
func Configs(site Site) (map[string][]byte, error) {
	out := map[string][]byte{}
	var errs []error
	add := func(component, device, entity string, cfg map[string]any) {
		objectID := slug(site.GatewayID) + "_" + slug(device) + "_" + slug(entity)
		topic := site.Prefix + "/" + component + "/" + slug(site.GatewayID) + "/" + slug(device) + "_" + slug(entity) + "/config"
		if _, taken := out[topic]; taken {
			errs = append(errs, fmt.Errorf("home assistant: %s/%s has the same discovery topic as another entity; not announced", device, entity))
			return
		}
		cfg["object_id"] = objectID
		payload, err := json.Marshal(cfg)
		if err != nil { // only strings, bools and maps of them: cannot happen
			errs = append(errs, fmt.Errorf("home assistant: %s/%s: %w", device, entity, err))
			return
		}
		out[topic] = payload
	}
	gwStatus := "lintel/" + site.GatewayID + "/$status"
	for _, dev := range site.Devices {
		base := "lintel/" + site.GatewayID + "/" + dev.Name + "/"
		common := func(entity string) map[string]any {
			device := map[string]any{
				"identifiers":  []string{"lintel_" + site.GatewayID + "_" + dev.Name},
				"name":         dev.Name,
				"manufacturer": "Lintel",
				"via_device":   "lintel_" + site.GatewayID,
			}
			if dev.Model != "" {
				device["model"] = dev.Model
			}
			return map[string]any{
				"name":      entity,
				"unique_id": "lintel_" + site.GatewayID + "_" + dev.Name + "_" + entity,
				"device":    device,
				"availability": []map[string]any{
					{"topic": base + "$status", "value_template": onlineTemplate},
					{"topic": gwStatus, "value_template": onlineTemplate},
				},
				"availability_mode": "all",
			}
		}
		for _, p := range dev.Points {
			cfg := common(p.Name)
			cfg["state_topic"] = base + p.Name
			switch {
			case p.Kind == Bool && p.Switch:
				cfg["value_template"] = boolTemplate
				cfg["state_on"], cfg["state_off"] = "ON", "OFF"
				cfg["command_topic"] = base + p.Name + "/set"
				cfg["command_template"] = CommandTemplate
				cfg["payload_on"], cfg["payload_off"] = "true", "false"
				add("switch", dev.Name, p.Name, cfg)
			case p.Kind == Bool:
				cfg["value_template"] = boolTemplate
				cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
				add("binary_sensor", dev.Name, p.Name, cfg)
			case p.Kind == Text:
				cfg["value_template"] = valueTemplate
				add("sensor", dev.Name, p.Name, cfg)
			default:
				cfg["value_template"] = valueTemplate
				unit, class, state := Classify(p.Name, p.Unit)
				if unit != "" {
					cfg["unit_of_measurement"] = unit
				}
				if class != "" {
					cfg["device_class"] = class
				}
				cfg["state_class"] = state
				add("sensor", dev.Name, p.Name, cfg)
			}
		}
		for _, e := range dev.Events {
			cfg := common("last " + e.Name)
			cfg["unique_id"] = "lintel_" + site.GatewayID + "_" + dev.Name + "_" + e.Name + "_last"
			cfg["state_topic"] = base + e.Name
			cfg["value_template"] = "{{ value_json.ts }}"
			cfg["device_class"] = "timestamp"
			if len(e.Fields) > 0 {
				cfg["json_attributes_topic"] = base + e.Name
				cfg["json_attributes_template"] = fieldsTemplate(e.Fields)
			}
			add("sensor", dev.Name, e.Name+"_last", cfg)
		}
	}
	gateway := map[string]any{
		"name":      "lintel " + site.GatewayID,
		"unique_id": "lintel_" + site.GatewayID + "_status",
		"device": map[string]any{
			"identifiers":  []string{"lintel_" + site.GatewayID},
			"name":         "Lintel " + site.GatewayID,
			"manufacturer": "Lintel",
			"model":        "gateway",
		},
		"state_topic":    gwStatus,
		"value_template": "{{ 'ON' if value_json.online else 'OFF' }}",
		"device_class":   "connectivity",
	}
	if site.Version != "" {
		gateway["device"].(map[string]any)["sw_version"] = site.Version
	}
	add("binary_sensor", "gateway", "status", gateway)
	return out, errors.Join(errs...)
}

// Templates. They read only v, q, ts, online and the listed event fields.
const (
	onlineTemplate = "{{ 'online' if value_json.online else 'offline' }}"
	// A bad reading is unknown, not a stale number.
	valueTemplate = "{{ None if value_json.q == 'bad' else value_json.v }}"
	boolTemplate  = "{{ None if value_json.q == 'bad' else ('ON' if value_json.v else 'OFF') }}"
	// CommandTemplate turns a switch's payload_on/payload_off (true/false)
	// into an unsigned command envelope with a new id.
	CommandTemplate = `{"id":"ha-{{ now().timestamp() }}-{{ range(1000000) | random }}","value":{{ value }}}`
)

// fieldsTemplate shows the given event fields, and only them, as attributes.
func fieldsTemplate(fields []string) string {
	parts := make([]string, len(fields))
	for i, f := range slices.Sorted(slices.Values(fields)) {
		parts[i] = fmt.Sprintf("%q: value_json.fields[%q]", f, f)
	}
	return "{{ {" + strings.Join(parts, ", ") + "} | tojson }}"
}

// slug keeps a name usable in a discovery topic and an entity id: Lintel
// names may hold '.', Home Assistant's ids may not.
func slug(name string) string {
	return strings.ReplaceAll(name, ".", "_")
}

// Classify returns the unit to show, the device_class (empty if none fits)
// and the state_class for a numeric point.
func Classify(point, unit string) (showUnit, deviceClass, stateClass string) {
	u := strings.TrimSpace(unit)
	switch u {
	case "°C", "°F", "K":
		return u, "temperature", "measurement"
	case "%RH", "% RH", "%rh":
		return "%", "humidity", "measurement" // Home Assistant wants "%" for humidity
	case "W", "kW", "MW":
		return u, "power", "measurement"
	case "Wh", "kWh", "MWh":
		return u, "energy", "total_increasing"
	case "V", "mV", "kV":
		return u, "voltage", "measurement"
	case "A", "mA":
		return u, "current", "measurement"
	case "Pa", "hPa", "kPa", "bar", "mbar", "psi":
		return u, "pressure", "measurement"
	case "Hz":
		return u, "frequency", "measurement"
	case "VA":
		return u, "apparent_power", "measurement"
	case "lx":
		return u, "illuminance", "measurement"
	case "ppm":
		if strings.Contains(strings.ToLower(point), "co2") {
			return u, "carbon_dioxide", "measurement"
		}
	}
	return u, "", "measurement"
}
