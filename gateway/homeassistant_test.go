package gateway_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/localbroker"
)

// haEnv is the demo with home_assistant on, fan_enable writable without a
// signature, and the local user README's "Home Assistant" section gives
// Home Assistant.
func haEnv(t *testing.T) (*demo.Env, *gateway.Gateway, paho.Client, *haCapture) {
	t.Helper()
	return haEnvWith(t, nil)
}

// haEnvWith is haEnv with edit applied to the configuration before the
// gateway starts.
func haEnvWith(t *testing.T, edit func(*config.Config)) (*demo.Env, *gateway.Gateway, paho.Client, *haCapture) {
	t.Helper()
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	cfg := env.Config
	cfg.LocalBroker.HomeAssistant = &config.HomeAssistant{Prefix: "homeassistant"}
	setUnsigned(cfg, "ahu-1", "fan_enable", true)
	users, err := localbroker.LoadUsers(cfg.LocalBroker.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Set("homeassistant", []byte("ha-secret")); err != nil {
		t.Fatal(err)
	}
	if err := users.WriteFile(cfg.LocalBroker.UsersFile); err != nil {
		t.Fatal(err)
	}
	cfg.LocalBroker.ACL = append(cfg.LocalBroker.ACL, config.ACLRule{User: "homeassistant",
		Read:  []string{"lintel/demo-gw/#", "homeassistant/#"},
		Write: []string{"homeassistant/status", "lintel/demo-gw/ahu-1/fan_enable/set"}})
	if edit != nil {
		edit(cfg)
	}

	gw := runGateway(t, cfg, gateway.Options{Version: "test", Logger: quiet()})

	// Home Assistant as it connects: birth/will on homeassistant/status.
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://"+gw.LocalAddr("local")).SetClientID("home-assistant").
		SetUsername("homeassistant").SetPassword("ha-secret").SetProtocolVersion(4).SetAutoReconnect(false).
		SetWill("homeassistant/status", "offline", 0, true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("home assistant cannot log in: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	capt := &haCapture{last: map[string]string{}}
	for _, f := range []string{"homeassistant/#", "lintel/demo-gw/#"} {
		tok := c.Subscribe(f, 0, func(_ paho.Client, m paho.Message) { capt.add(m.Topic(), string(m.Payload())) })
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[f] > 2 {
			t.Fatalf("subscribe %s refused", f)
		}
	}
	// QoS 1 and its PUBACK: mochi handles one client's packets in order, so
	// once this is acknowledged the retained scans of the SUBSCRIBEs above
	// are over. mochi reads a topic's retained path without a lock in that
	// scan (v2.7.9), racing a retained publish such as Reload's; the test
	// must not start one before.
	if tok := c.Publish("homeassistant/status", 1, false, "online"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("birth message not acknowledged: %v", tok.Error())
	}
	return env, gw, c, capt
}

func setUnsigned(cfg *config.Config, device, point string, unsigned bool) {
	for i := range cfg.Devices {
		for j := range cfg.Devices[i].Points {
			if p := &cfg.Devices[i].Points[j]; cfg.Devices[i].Name == device && p.Name == point {
				p.UnsignedWrites = unsigned
			}
		}
	}
}

type haCapture struct {
	mu   sync.Mutex
	last map[string]string // topic → last payload
	all  []string          // "topic payload", every message
}

func (c *haCapture) add(topic, payload string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[topic] = payload
	c.all = append(c.all, topic+" "+payload)
}

func (c *haCapture) get(topic string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.last[topic]
	return p, ok
}

func (c *haCapture) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// render does what Home Assistant does with the switch's command_template,
// for the expressions it holds: value is payload_on or payload_off, now()
// and random give numbers. Anything else left unrendered fails the test.
func render(t *testing.T, tmpl, value string) string {
	t.Helper()
	out := strings.ReplaceAll(tmpl, "{{ value }}", value)
	out = strings.ReplaceAll(out, "{{ now().timestamp() }}", "1764561234.123456")
	out = strings.ReplaceAll(out, "{{ range(1000000) | random }}", "424242")
	if strings.Contains(out, "{{") || strings.Contains(out, "{%") {
		t.Fatalf("command_template has expressions this test does not render: %s", out)
	}
	return out
}

// TestHomeAssistantSeesTheBuildingAndSwitchesTheFan is the path a Home
// Assistant takes: log in with the documented ACL, read the discovery
// configs, see the devices online, switch the unsigned fan through the
// command gate; the signed door release is never a switch.
func TestHomeAssistantSeesTheBuildingAndSwitchesTheFan(t *testing.T) {
	env, _, c, capt := haEnv(t)
	const fanTopic = "homeassistant/switch/demo-gw/ahu-1_fan_enable/config"
	testwait.Until(t, "the fan's switch config", 10*time.Second, func() bool { _, ok := capt.get(fanTopic); return ok })
	if _, ok := capt.get("homeassistant/switch/demo-gw/doors-io_door_1_release/config"); ok {
		t.Fatal("the signed (critical) door release is announced as a switch")
	}
	testwait.Until(t, "the door release as a binary_sensor", 10*time.Second, func() bool {
		_, ok := capt.get("homeassistant/binary_sensor/demo-gw/doors-io_door_1_release/config")
		return ok
	})
	energy, _ := capt.get("homeassistant/sensor/demo-gw/energy-meter_energy/config")
	if !strings.Contains(energy, `"device_class":"energy"`) || !strings.Contains(energy, `"state_class":"total_increasing"`) {
		t.Errorf("energy config = %s", energy)
	}

	// Availability: both status topics say online.
	testwait.Until(t, "gateway and device online", 10*time.Second, func() bool {
		gw, _ := capt.get("lintel/demo-gw/$status")
		dev, _ := capt.get("lintel/demo-gw/ahu-1/$status")
		return strings.Contains(gw, `"online":true`) && strings.Contains(dev, `"online":true`)
	})

	var sw struct {
		CommandTopic    string `json:"command_topic"`
		CommandTemplate string `json:"command_template"`
		PayloadOn       string `json:"payload_on"`
		PayloadOff      string `json:"payload_off"`
	}
	p, _ := capt.get(fanTopic)
	if err := json.Unmarshal([]byte(p), &sw); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		payload string
		coil    bool
	}{{sw.PayloadOff, false}, {sw.PayloadOn, true}} {
		env := env
		cmd := render(t, sw.CommandTemplate, step.payload)
		before := len(capt.messages())
		if tok := c.Publish(sw.CommandTopic, 1, false, cmd); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", cmd, tok.Error())
		}
		testwait.Until(t, "the command's result", 10*time.Second, func() bool {
			for _, m := range capt.messages()[before:] {
				if strings.HasPrefix(m, "lintel/demo-gw/ahu-1/fan_enable/set/result ") {
					return true
				}
			}
			return false
		})
		for _, m := range capt.messages()[before:] {
			if strings.HasPrefix(m, "lintel/demo-gw/ahu-1/fan_enable/set/result ") && !strings.Contains(m, `"ok":true`) {
				t.Fatalf("command %s refused: %s", cmd, m)
			}
		}
		if got := env.Sim.Coil(building.UnitAHU, 10); got != step.coil {
			t.Fatalf("after %s the fan coil is %v", cmd, got)
		}
	}
}

// TestHomeAssistantNeverSeesAccessIdentities: a badge with a name and a
// card number goes through; nothing on the discovery prefix names or
// holds them, and the "last access" sensor reads only ts, door and event.
func TestHomeAssistantNeverSeesAccessIdentities(t *testing.T) {
	env, _, _, capt := haEnv(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	const lastTopic = "homeassistant/sensor/demo-gw/front-door_access_last/config"
	testwait.Until(t, "the last access config", 10*time.Second, func() bool { _, ok := capt.get(lastTopic); return ok })
	if err := env.Doors.Badge(1, "GRANTED", "0012345", "Alice Example"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the access event", 10*time.Second, func() bool { _, ok := capt.get("lintel/demo-gw/front-door/access"); return ok })
	last, _ := capt.get(lastTopic)
	var cfg map[string]any
	if err := json.Unmarshal([]byte(last), &cfg); err != nil {
		t.Fatal(err)
	}
	templates := []string{cfg["value_template"].(string), cfg["json_attributes_template"].(string)}
	for _, a := range cfg["availability"].([]any) {
		templates = append(templates, a.(map[string]any)["value_template"].(string))
	}
	var reads [][]string
	for _, tmpl := range templates {
		reads = append(reads, regexp.MustCompile(`value_json((?:\.[a-z_]+|\["[^"]*"\])*)`).FindAllStringSubmatch(tmpl, -1)...)
	}
	for _, m := range reads {
		if !slices.Contains([]string{".ts", ".online", `.fields["door"]`, `.fields["event"]`}, m[1]) {
			t.Errorf("last access reads value_json%s", m[1])
		}
	}
	if len(reads) < 4 {
		t.Errorf("last access config reads %d members; want ts, door, event and the two statuses: %s", len(reads), last)
	}
	for _, m := range capt.messages() {
		if !strings.HasPrefix(m, "homeassistant/") {
			continue
		}
		for _, secret := range []string{"Alice", "Example", "0012345", "card", `"name\"`, "fields.name"} {
			if strings.Contains(m, secret) {
				t.Errorf("discovery message holds %q: %s", secret, m)
			}
		}
	}
}

// TestReloadRemovesAStaleSwitch: once fan_enable needs a signature again,
// its switch config is emptied (Home Assistant deletes the entity) and it
// is announced as a binary_sensor.
func TestReloadRemovesAStaleSwitch(t *testing.T) {
	env, gw, _, capt := haEnv(t)
	const fanSwitch = "homeassistant/switch/demo-gw/ahu-1_fan_enable/config"
	testwait.Until(t, "the fan's switch config", 10*time.Second, func() bool { p, _ := capt.get(fanSwitch); return p != "" })
	next := *env.Config
	next.Devices = slices.Clone(next.Devices)
	for i := range next.Devices {
		next.Devices[i].Points = slices.Clone(next.Devices[i].Points)
	}
	setUnsigned(&next, "ahu-1", "fan_enable", false)
	if err := gw.Reload(&next); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the switch config emptied", 10*time.Second, func() bool { p, ok := capt.get(fanSwitch); return ok && p == "" })
	testwait.Until(t, "the fan as a binary_sensor", 10*time.Second, func() bool {
		_, ok := capt.get("homeassistant/binary_sensor/demo-gw/ahu-1_fan_enable/config")
		return ok
	})
}

// TestLocalGatewayStatusStaysLocal: the gateway's local $status (for Home
// Assistant's availability) is not buffered for the cloud, where the
// uplink's own status and Will hold that topic.
func TestLocalGatewayStatusStaysLocal(t *testing.T) {
	env, gw, _, capt := haEnv(t)
	testwait.Until(t, "the local gateway status", 10*time.Second, func() bool { p, _ := capt.get("lintel/demo-gw/$status"); return p != "" })
	testwait.Until(t, "uplink connected", 10*time.Second, func() bool { return gw.Stats().Uplink.Connected })
	later := len(env.Cloud.Received()) + 5
	testwait.Until(t, "more readings in the cloud", 10*time.Second, func() bool { return len(env.Cloud.Received()) >= later })
	for _, m := range env.Cloud.Received() {
		if m.Topic == "lintel/demo-gw/$status" && strings.Contains(string(m.Payload), `"since"`) {
			t.Fatalf("the local gateway status reached the cloud: %s", m.Payload)
		}
		if strings.HasPrefix(m.Topic, "homeassistant/") {
			t.Fatalf("a discovery config reached the cloud: %s", m.Topic)
		}
	}
}
