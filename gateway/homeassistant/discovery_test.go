package homeassistant_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway/homeassistant"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/localbroker"
)

// Keys Home Assistant documents for MQTT discovery of each platform
// (home-assistant.io/integrations/{sensor,binary_sensor,switch}.mqtt),
// written out in full as the configuration variables are named there. A
// key not listed is refused: Home Assistant rejects unknown keys.
var (
	entityKeys = []string{
		"availability", "availability_mode", "availability_template", "availability_topic",
		"default_entity_id", "device", "enabled_by_default", "encoding", "entity_category", "entity_picture",
		"icon", "json_attributes_template", "json_attributes_topic", "name", "object_id",
		"payload_available", "payload_not_available", "platform", "qos", "unique_id",
		"state_topic", "value_template",
	}
	platformKeys = map[string][]string{
		"sensor": {"device_class", "expire_after", "force_update", "last_reset_value_template",
			"options", "suggested_display_precision", "state_class", "unit_of_measurement"},
		"binary_sensor": {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on"},
		"switch": {"command_template", "command_topic", "device_class", "optimistic", "payload_off", "payload_on",
			"retain", "state_off", "state_on"},
	}
	requiredKeys = map[string][]string{
		"sensor":        {"state_topic", "unique_id", "device", "name"},
		"binary_sensor": {"state_topic", "unique_id", "device", "name"},
		"switch":        {"command_topic", "state_topic", "unique_id", "device", "name"},
	}
	deviceKeys = []string{"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
		"model", "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
	availabilityKeys = []string{"payload_available", "payload_not_available", "topic", "value_template"}
	sensorClasses    = []string{"temperature", "humidity", "power", "energy", "voltage", "current", "pressure",
		"frequency", "apparent_power", "illuminance", "carbon_dioxide", "timestamp"}
	stateClasses = []string{"measurement", "total", "total_increasing"}
)

// site is a gateway with every kind of entity. The access event captured
// door, event, card and name; only door and event are kept raw.
func site(points ...homeassistant.Point) homeassistant.Site {
	if points == nil {
		points = []homeassistant.Point{
			{Name: "supply_temp", Kind: homeassistant.Number, Unit: "°C"},
			{Name: "humidity", Kind: homeassistant.Number, Unit: "%RH"},
			{Name: "energy", Kind: homeassistant.Number, Unit: "kWh"},
			{Name: "co2", Kind: homeassistant.Number, Unit: "ppm"},
			{Name: "fan_speed", Kind: homeassistant.Number, Unit: "%"},
			{Name: "mode", Kind: homeassistant.Text},
			{Name: "filter_alarm", Kind: homeassistant.Bool},
			{Name: "fan_enable", Kind: homeassistant.Bool, Switch: true},
		}
	}
	return homeassistant.Site{Prefix: "homeassistant", GatewayID: "gw1", Version: "test", Devices: []homeassistant.Device{
		{Name: "ahu-1", Model: "modbus-tcp", Points: points},
		{Name: "front-door", Model: "serial-line", Events: []homeassistant.Event{{Name: "access", Fields: []string{"door", "event"}}}},
	}}
}

// haBroker is a local broker with the user Home Assistant needs (README,
// "Home Assistant"): read lintel/gw1/# and the discovery prefix, write its
// own birth/will and the unsigned switch's /set.
func haBroker(t *testing.T) (*localbroker.Broker, string) {
	t.Helper()
	users := localbroker.NewUsers()
	if err := users.Set("ha", []byte("ha-secret")); err != nil {
		t.Fatal(err)
	}
	acl := localbroker.NewACL([]localbroker.Rule{{User: "ha",
		Read:  []string{"lintel/gw1/#", "homeassistant/#"},
		Write: []string{"homeassistant/status", "lintel/gw1/ahu-1/fan_enable/set"}}})
	b, err := localbroker.New(localbroker.Config{
		Listeners: []localbroker.Listener{{Name: "local", Address: "127.0.0.1:0"}},
		Users:     users, ACL: acl,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, b.Addr("local")
}

func retainedPublish(b *localbroker.Broker) homeassistant.PublishFunc {
	return func(ctx context.Context, topic string, payload []byte) error {
		return b.Publish(ctx, topic, payload, true, localbroker.Normal)
	}
}

// collector is a paho client subscribed to the discovery prefix.
type collector struct {
	mu   sync.Mutex
	msgs map[string][]byte // last payload per topic
	seen []string          // topics in arrival order, empty payloads too
}

func subscribe(t *testing.T, addr string) *collector {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://"+addr).SetClientID(fmt.Sprintf("ha-%d", time.Now().UnixNano())).
		SetUsername("ha").SetPassword("ha-secret").SetAutoReconnect(false).SetProtocolVersion(4).
		SetWill("homeassistant/status", "offline", 0, false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("home assistant user cannot connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	col := &collector{msgs: map[string][]byte{}}
	tok := c.Subscribe("homeassistant/#", 0, func(_ paho.Client, m paho.Message) {
		col.mu.Lock()
		defer col.mu.Unlock()
		col.msgs[m.Topic()] = slices.Clone(m.Payload())
		col.seen = append(col.seen, m.Topic())
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if st := tok.(*paho.SubscribeToken).Result()["homeassistant/#"]; st > 2 {
		t.Fatalf("subscription to the discovery prefix refused: %#x", st)
	}
	return col
}

func (c *collector) snapshot() map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]byte, len(c.msgs))
	for k, v := range c.msgs {
		out[k] = v
	}
	return out
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testwait.Until(t, what, 10*time.Second, ok)
}

// templateVarRE finds what a template reads from the message.
var templateVarRE = regexp.MustCompile(`value_json((?:\.[A-Za-z_]+|\["[^"]*"\])*)`)

// allowedReads is every message member a template may read: the reading's
// v and q, the time stamp, the status's online, and the kept event fields.
var allowedReads = []string{".v", ".q", ".ts", ".online", `.fields["door"]`, `.fields["event"]`}

// checkConfig validates one discovery payload against the schema above.
func checkConfig(t *testing.T, topic string, payload []byte) map[string]any {
	t.Helper()
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0] != "homeassistant" || parts[4] != "config" || parts[2] != "gw1" {
		t.Errorf("%s: not <prefix>/<component>/<node_id>/<object_id>/config", topic)
		return nil
	}
	idRE := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	if !idRE.MatchString(parts[2]) || !idRE.MatchString(parts[3]) {
		t.Errorf("%s: node_id/object_id hold characters Home Assistant refuses", topic)
	}
	platform := parts[1]
	allowed, ok := platformKeys[platform]
	if !ok {
		t.Errorf("%s: unexpected platform %q", topic, platform)
		return nil
	}
	var cfg map[string]any
	if err := json.Unmarshal(payload, &cfg); err != nil {
		t.Errorf("%s: %v", topic, err)
		return nil
	}
	for k := range cfg {
		if !slices.Contains(entityKeys, k) && !slices.Contains(allowed, k) {
			t.Errorf("%s: key %q is not in Home Assistant's %s schema", topic, k, platform)
		}
	}
	for _, k := range requiredKeys[platform] {
		if _, ok := cfg[k]; !ok {
			t.Errorf("%s: required key %q missing", topic, k)
		}
	}
	dev, _ := cfg["device"].(map[string]any)
	for k := range dev {
		if !slices.Contains(deviceKeys, k) {
			t.Errorf("%s: device key %q is not in the schema", topic, k)
		}
	}
	if ids, _ := dev["identifiers"].([]any); len(ids) == 0 || dev["manufacturer"] != "Lintel" {
		t.Errorf("%s: device %v lacks identifiers or manufacturer Lintel", topic, dev)
	}
	if av, ok := cfg["availability"].([]any); ok {
		for _, a := range av {
			for k := range a.(map[string]any) {
				if !slices.Contains(availabilityKeys, k) {
					t.Errorf("%s: availability key %q is not in the schema", topic, k)
				}
			}
		}
		if cfg["availability_mode"] != "all" {
			t.Errorf("%s: availability_mode %v, want all", topic, cfg["availability_mode"])
		}
	}
	if dc, ok := cfg["device_class"].(string); ok && platform == "sensor" && !slices.Contains(sensorClasses, dc) {
		t.Errorf("%s: device_class %q", topic, dc)
	}
	if sc, ok := cfg["state_class"].(string); ok && !slices.Contains(stateClasses, sc) {
		t.Errorf("%s: state_class %q", topic, sc)
	}
	for k, v := range cfg {
		s, ok := v.(string)
		if !ok || !strings.HasSuffix(k, "template") {
			continue
		}
		for _, m := range templateVarRE.FindAllStringSubmatch(s, -1) {
			if !slices.Contains(allowedReads, m[1]) {
				t.Errorf("%s: %s reads value_json%s, which is not a shown member", topic, k, m[1])
			}
		}
	}
	return cfg
}

func TestDiscoveryThroughTheLocalBrokerMatchesTheSchema(t *testing.T) {
	b, addr := haBroker(t)
	col := subscribe(t, addr)
	d := homeassistant.New(retainedPublish(b), nil)
	want, err := homeassistant.Configs(site())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(context.Background(), site()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every config at the subscriber", func() bool { return len(col.snapshot()) == len(want) })
	got := col.snapshot()
	byID := map[string]map[string]any{}
	platforms := map[string]int{}
	for topic, payload := range got {
		cfg := checkConfig(t, topic, payload)
		if cfg == nil {
			continue
		}
		platforms[strings.Split(topic, "/")[1]]++
		id, _ := cfg["unique_id"].(string)
		if _, dup := byID[id]; dup {
			t.Errorf("unique_id %q twice", id)
		}
		byID[id] = cfg
	}
	if platforms["sensor"] != 7 || platforms["binary_sensor"] != 2 || platforms["switch"] != 1 {
		t.Errorf("platforms = %v; want 7 sensors (6 points + last access), 2 binary_sensors (alarm, gateway), 1 switch", platforms)
	}
	temp := byID["lintel_gw1_ahu-1_supply_temp"]
	if temp["device_class"] != "temperature" || temp["unit_of_measurement"] != "°C" || temp["state_class"] != "measurement" ||
		temp["state_topic"] != "lintel/gw1/ahu-1/supply_temp" || temp["object_id"] != "gw1_ahu-1_supply_temp" {
		t.Errorf("supply_temp = %v", temp)
	}
	av := temp["availability"].([]any)
	if len(av) != 2 || av[0].(map[string]any)["topic"] != "lintel/gw1/ahu-1/$status" || av[1].(map[string]any)["topic"] != "lintel/gw1/$status" {
		t.Errorf("availability = %v; want the device's and the gateway's $status", av)
	}
	dev := temp["device"].(map[string]any)
	if dev["via_device"] != "lintel_gw1" || dev["model"] != "modbus-tcp" || dev["name"] != "ahu-1" {
		t.Errorf("device = %v", dev)
	}
	if e := byID["lintel_gw1_ahu-1_energy"]; e["device_class"] != "energy" || e["state_class"] != "total_increasing" {
		t.Errorf("energy = %v", e)
	}
	if h := byID["lintel_gw1_ahu-1_humidity"]; h["device_class"] != "humidity" || h["unit_of_measurement"] != "%" {
		t.Errorf("humidity = %v", h)
	}
	if c := byID["lintel_gw1_ahu-1_co2"]; c["device_class"] != "carbon_dioxide" {
		t.Errorf("co2 = %v", c)
	}
	if f := byID["lintel_gw1_ahu-1_fan_speed"]; f["device_class"] != nil || f["unit_of_measurement"] != "%" {
		t.Errorf("fan_speed = %v", f)
	}
	sw := byID["lintel_gw1_ahu-1_fan_enable"]
	if sw["command_topic"] != "lintel/gw1/ahu-1/fan_enable/set" || sw["payload_on"] != "true" || sw["command_template"] == nil {
		t.Errorf("switch = %v", sw)
	}
	if gw := byID["lintel_gw1_status"]; gw["state_topic"] != "lintel/gw1/$status" || gw["device_class"] != "connectivity" {
		t.Errorf("gateway = %v", gw)
	}
	last := byID["lintel_gw1_front-door_access_last"]
	if last["value_template"] != "{{ value_json.ts }}" || last["device_class"] != "timestamp" {
		t.Errorf("last access = %v", last)
	}
}

// TestEventsShowNoPersonalField: the access event also captures card
// (pseudonymised) and name (dropped); nothing on the discovery prefix
// names them, only the kept door and event fields are read.
func TestEventsShowNoPersonalField(t *testing.T) {
	b, addr := haBroker(t)
	col := subscribe(t, addr)
	if err := homeassistant.New(retainedPublish(b), nil).Sync(context.Background(), site()); err != nil {
		t.Fatal(err)
	}
	want, _ := homeassistant.Configs(site())
	waitFor(t, "every config", func() bool { return len(col.snapshot()) == len(want) })
	for topic, payload := range col.snapshot() {
		for _, personal := range []string{"card", "fields.name", `fields["name"]`, "who"} {
			if strings.Contains(string(payload), personal) {
				t.Errorf("%s mentions %q: %s", topic, personal, payload)
			}
		}
		checkConfig(t, topic, payload) // every template reads only allowed members
	}
	var last map[string]any
	json.Unmarshal(col.snapshot()["homeassistant/sensor/gw1/front-door_access_last/config"], &last)
	if tmpl, _ := last["json_attributes_template"].(string); !strings.Contains(tmpl, `fields["door"]`) || !strings.Contains(tmpl, `fields["event"]`) {
		t.Fatalf("last access attributes = %q; want door and event", tmpl)
	}
}

func TestSyncRemovesEntitiesThatDisappeared(t *testing.T) {
	b, addr := haBroker(t)
	d := homeassistant.New(retainedPublish(b), nil)
	if err := d.Sync(context.Background(), site()); err != nil {
		t.Fatal(err)
	}
	live := subscribe(t, addr)
	all, _ := homeassistant.Configs(site())
	waitFor(t, "retained configs", func() bool { return len(live.snapshot()) == len(all) })
	smaller := site(homeassistant.Point{Name: "supply_temp", Kind: homeassistant.Number, Unit: "°C"})
	if err := d.Sync(context.Background(), smaller); err != nil {
		t.Fatal(err)
	}
	gone := "homeassistant/switch/gw1/ahu-1_fan_enable/config"
	waitFor(t, "an empty config for the removed switch", func() bool { return len(live.snapshot()[gone]) == 0 })
	kept, _ := homeassistant.Configs(smaller)
	// A client connecting now gets only what is left.
	fresh := subscribe(t, addr)
	waitFor(t, "retained configs for a new client", func() bool { return len(fresh.snapshot()) == len(kept) })
	for topic := range fresh.snapshot() {
		if _, ok := kept[topic]; !ok {
			t.Errorf("stale config still retained: %s", topic)
		}
	}
	// Empty payloads were sent exactly for the removed entities.
	live.mu.Lock()
	defer live.mu.Unlock()
	for topic, p := range live.msgs {
		_, keep := kept[topic]
		if keep == (len(p) == 0) {
			t.Errorf("%s: payload %q after the second sync; kept %v", topic, p, keep)
		}
	}
}

func TestClearRemovesEverything(t *testing.T) {
	b, addr := haBroker(t)
	d := homeassistant.New(retainedPublish(b), nil)
	if err := d.Sync(context.Background(), site()); err != nil {
		t.Fatal(err)
	}
	if err := d.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A marker published after Clear: once a new client has it, it would
	// have had any config still retained.
	if err := b.Publish(context.Background(), "homeassistant/marker", []byte("x"), true, localbroker.Normal); err != nil {
		t.Fatal(err)
	}
	fresh := subscribe(t, addr)
	waitFor(t, "the marker", func() bool { return fresh.snapshot()["homeassistant/marker"] != nil })
	if got := fresh.snapshot(); len(got) != 1 {
		t.Fatalf("retained after Clear: %d topics, want only the marker", len(got))
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ point, unit, show, class, state string }{
		{"t", "°F", "°F", "temperature", "measurement"},
		{"rh", "%RH", "%", "humidity", "measurement"},
		{"p", "W", "W", "power", "measurement"},
		{"e", "Wh", "Wh", "energy", "total_increasing"},
		{"v", "V", "V", "voltage", "measurement"},
		{"i", "A", "A", "current", "measurement"},
		{"dp", "Pa", "Pa", "pressure", "measurement"},
		{"baro", "hPa", "hPa", "pressure", "measurement"},
		{"room_co2", "ppm", "ppm", "carbon_dioxide", "measurement"},
		{"voc", "ppm", "ppm", "", "measurement"},
		{"speed", "rpm", "rpm", "", "measurement"},
	} {
		show, class, state := homeassistant.Classify(tc.point, tc.unit)
		if show != tc.show || class != tc.class || state != tc.state {
			t.Errorf("Classify(%q, %q) = %q, %q, %q; want %q, %q, %q", tc.point, tc.unit, show, class, state, tc.show, tc.class, tc.state)
		}
	}
}

func TestCollidingNamesAreReportedNotOverwritten(t *testing.T) {
	s := site(homeassistant.Point{Name: "a.b", Kind: homeassistant.Number}, homeassistant.Point{Name: "a_b", Kind: homeassistant.Number})
	configs, err := homeassistant.Configs(s)
	if err == nil || !strings.Contains(err.Error(), "ahu-1/a_b") {
		t.Fatalf("err = %v; want the second name reported", err)
	}
	var cfg map[string]any
	json.Unmarshal(configs["homeassistant/sensor/gw1/ahu-1_a_b/config"], &cfg)
	if cfg["name"] != "a.b" {
		t.Fatalf("the first entity was overwritten: %v", cfg)
	}
}
