package homeassistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/lintel-gw/lintel/adapters"
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

// Template is a family of state points whose names are known only once a
// frame names them (a serial-line event with point: door_{door}_open).
// Observe announces a point of the family the first time a reading of it
// arrives. List only templates whose captures are kept raw and are not
// personal: the name of the entity is the filled template.
type Template struct {
	Event string         // the event that fills it, for logs
	Shape *regexp.Regexp // the whole point name: the template with its captures as the pattern
	Kind  Kind           // never a switch: such points cannot be written
	Unit  string
}

// Device is one Lintel device.
type Device struct {
	Name      string
	Model     string // e.g. the bus type, shown as the model
	Points    []Point
	Events    []Event
	Templates []Template
}

// MaxDynamic bounds the points Observe announces per device: a serial line
// can be made to name any number of doors.
const MaxDynamic = 256

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
	log     *slog.Logger

	mu        sync.Mutex
	published map[string]bool // config topics holding a config now
	site      *Site           // as of the last Sync; nil before it and after Clear
	devices   map[string]*dynDevice
	overflow  uint64
	failures  uint64 // Observe's failed publishes, for rate-limited logs
}

// dynDevice is what Observe knows of one device of the site.
type dynDevice struct {
	dev       Device
	static    map[string]bool   // points the site lists: never announced again
	announced map[string]string // frame-named point → its config topic
	full      bool              // the cap was reached and logged
}

// New returns a Discovery that publishes through publish and logs to log
// (nil: no logs).
func New(publish PublishFunc, log *slog.Logger) *Discovery {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Discovery{publish: publish, log: log, published: map[string]bool{}, devices: map[string]*dynDevice{}}
}

// Sync publishes every config of site, then an empty retained payload on
// each config topic the previous Sync published that site no longer has.
// A point Observe announced stays while a template of its device still
// matches its name and site does not list it; otherwise it is removed too.
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
	d.keepDynamic(site, configs)
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
	d.site, d.devices = nil, map[string]*dynDevice{}
	return errors.Join(errs...)
}

// keepDynamic replaces the devices Observe works on with site's, and adds
// to configs the points Observe announced that site still allows.
func (d *Discovery) keepDynamic(site Site, configs map[string][]byte) {
	devices := make(map[string]*dynDevice, len(site.Devices))
	for _, dev := range site.Devices {
		dd := &dynDevice{dev: dev, static: map[string]bool{}, announced: map[string]string{}}
		for _, p := range dev.Points {
			dd.static[p.Name] = true
		}
		for _, e := range dev.Events {
			dd.static[e.Name] = true
		}
		if old := d.devices[dev.Name]; old != nil {
			for _, name := range slices.Sorted(maps.Keys(old.announced)) {
				t, ok := dd.template(name)
				if dd.static[name] || !ok || old.announced[name] == "" {
					continue
				}
				topic, payload, err := dynamicConfig(site, dev, name, t)
				if _, taken := configs[topic]; err != nil || taken {
					continue
				}
				configs[topic] = payload
				dd.announced[name] = topic
			}
			dd.full = old.full && len(dd.announced) >= MaxDynamic
		}
		devices[dev.Name] = dd
	}
	d.site, d.devices = &site, devices
}

// template returns the first template of the device whose shape is name.
func (dd *dynDevice) template(name string) (Template, bool) {
	for _, t := range dd.dev.Templates {
		if t.Shape != nil && t.Shape.MatchString(name) {
			return t, true
		}
	}
	return Template{}, false
}

// Observe announces point of device when a reading of it arrives: if the
// device is in the site of the last Sync, does not list point, has a
// template whose shape is point, the name is one valid topic level and a
// valid Home Assistant object id ('.' read as '_'), and
// fewer than MaxDynamic points of the device were announced so. Beyond the
// cap a point is counted (Overflow) and the first one logged per device;
// nothing is kept for it. Call it for every reading: for a device without
// templates or a point already known it only looks up two maps.
func (d *Discovery) Observe(ctx context.Context, device, point string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dd := d.devices[device]
	if d.site == nil || dd == nil || len(dd.dev.Templates) == 0 || dd.static[point] {
		return
	}
	if _, seen := dd.announced[point]; seen {
		return
	}
	if adapters.ValidTopicLevel(point) != nil || !validObjectID(slug(point)) {
		return
	}
	t, ok := dd.template(point)
	if !ok {
		return
	}
	if len(dd.announced) >= MaxDynamic {
		d.overflow++
		if !dd.full {
			dd.full = true
			d.log.Warn("home assistant: a device names more points than discovery announces; the others are only counted (logged once)",
				"device", device, "event", t.Event, "max", MaxDynamic)
		}
		return
	}
	topic, payload, err := dynamicConfig(*d.site, dd.dev, point, t)
	if err != nil {
		return // only strings and maps of them: cannot happen
	}
	if d.published[topic] {
		// Another entity holds the topic (names differing by '.' and '_'):
		// remembered, so that it costs no config per reading, and counted
		// in the cap.
		dd.announced[point] = ""
		return
	}
	if err := d.publish(ctx, topic, payload); err != nil {
		// Not remembered: the next reading tries again.
		d.failures++
		if d.failures%1000 == 1 {
			d.log.Warn("home assistant: cannot announce a point named by a frame", "device", device, "event", t.Event, "err", err, "failures", d.failures)
		}
		return
	}
	d.published[topic] = true
	dd.announced[point] = topic
}

// Overflow is how many times Observe left a point out because its device
// had MaxDynamic announced points.
func (d *Discovery) Overflow() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overflow
}

// dynamicConfig is the config of a point named by a frame: the name is the
// only value from the frame it holds, and it is never a switch.
func dynamicConfig(site Site, dev Device, name string, t Template) (topic string, payload []byte, err error) {
	component, cfg := pointConfig(site, dev, Point{Name: name, Kind: t.Kind, Unit: t.Unit})
	topic, cfg["object_id"] = entityTopic(site, component, dev.Name, name)
	payload, err = json.Marshal(cfg)
	return topic, payload, err
}

// entityTopic returns an entity's discovery topic and object_id.
func entityTopic(site Site, component, device, entity string) (topic, objectID string) {
	return site.Prefix + "/" + component + "/" + slug(site.GatewayID) + "/" + slug(device) + "_" + slug(entity) + "/config",
		slug(site.GatewayID) + "_" + slug(device) + "_" + slug(entity)
}

// commonConfig holds the keys every entity of dev has: name, unique_id,
// device and availability.
func commonConfig(site Site, dev Device, entity string) map[string]any {
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
			{"topic": "lintel/" + site.GatewayID + "/" + dev.Name + "/$status", "value_template": onlineTemplate},
			{"topic": "lintel/" + site.GatewayID + "/$status", "value_template": onlineTemplate},
		},
		"availability_mode": "all",
	}
}

// pointConfig returns a point's component and config (without object_id).
func pointConfig(site Site, dev Device, p Point) (string, map[string]any) {
	base := "lintel/" + site.GatewayID + "/" + dev.Name + "/"
	cfg := commonConfig(site, dev, p.Name)
	cfg["state_topic"] = base + p.Name
	switch {
	case p.Kind == Bool && p.Switch:
		cfg["value_template"] = boolTemplate
		cfg["state_on"], cfg["state_off"] = "ON", "OFF"
		cfg["command_topic"] = base + p.Name + "/set"
		cfg["command_template"] = CommandTemplate
		cfg["payload_on"], cfg["payload_off"] = "true", "false"
		return "switch", cfg
	case p.Kind == Bool:
		cfg["value_template"] = boolTemplate
		cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
		return "binary_sensor", cfg
	case p.Kind == Text:
		cfg["value_template"] = valueTemplate
		return "sensor", cfg
	}
	cfg["value_template"] = valueTemplate
	unit, class, state := Classify(p.Name, p.Unit)
	if unit != "" {
		cfg["unit_of_measurement"] = unit
	}
	if class != "" {
		cfg["device_class"] = class
	}
	cfg["state_class"] = state
	return "sensor", cfg
}

// Configs returns every discovery config of site by topic
// (<prefix>/<component>/<gateway>/<device>_<point>/config). An entity whose
// topic is already taken is left out and named in err.
func Configs(site Site) (map[string][]byte, error) {
	out := map[string][]byte{}
	var errs []error
	add := func(component, device, entity string, cfg map[string]any) {
		topic, objectID := entityTopic(site, component, device, entity)
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
		for _, p := range dev.Points {
			component, cfg := pointConfig(site, dev, p)
			add(component, dev.Name, p.Name, cfg)
		}
		for _, e := range dev.Events {
			cfg := commonConfig(site, dev, "last "+e.Name)
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

// validObjectID reports whether s may be part of a discovery topic's
// object_id, which Home Assistant limits to [a-zA-Z0-9_-]: it ignores a
// config published elsewhere.
func validObjectID(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	})
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
