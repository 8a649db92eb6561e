package gateway_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// door3Config is where the door state named by "DOOR 3 …" is announced.
const door3Config = "homeassistant/binary_sensor/demo-gw/front-door_door_3_open/config"

// TestHomeAssistantDiscoversADoorNamedByAFrame: the demo's door controller
// names door 3, which no configuration lists; its state point is announced
// once as a binary_sensor of front-door, with the same availability as the
// device's other entities.
func TestHomeAssistantDiscoversADoorNamedByAFrame(t *testing.T) {
	env, _, _, capt := haEnv(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	const lastAccess = "homeassistant/sensor/demo-gw/front-door_access_last/config"
	testwait.Until(t, "the static configs", 10*time.Second, func() bool { _, ok := capt.get(lastAccess); return ok })
	if _, ok := capt.get(door3Config); ok {
		t.Fatal("door 3 announced before any frame named it")
	}
	for range 3 {
		if err := env.Doors.Emit("DOOR 3 OPEN"); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "door 3's discovery config", 10*time.Second, func() bool { _, ok := capt.get(door3Config); return ok })
	var cfg, static map[string]any
	p, _ := capt.get(door3Config)
	if err := json.Unmarshal([]byte(p), &cfg); err != nil {
		t.Fatalf("door 3 config %s: %v", p, err)
	}
	s, _ := capt.get(lastAccess)
	if err := json.Unmarshal([]byte(s), &static); err != nil {
		t.Fatal(err)
	}
	if cfg["state_topic"] != "lintel/demo-gw/front-door/door_3_open" || cfg["name"] != "door_3_open" {
		t.Errorf("door 3 config = %s", p)
	}
	for _, k := range []string{"availability", "availability_mode", "device"} {
		if fmt.Sprint(cfg[k]) != fmt.Sprint(static[k]) {
			t.Errorf("door 3 %s = %v; the device's other entities have %v", k, cfg[k], static[k])
		}
	}
	if _, ok := cfg["command_topic"]; ok {
		t.Errorf("a point named by a frame is writable in Home Assistant: %s", p)
	}
	// Announced once, however often the door reports.
	testwait.Until(t, "door 3's reading", 10*time.Second, func() bool {
		_, ok := capt.get("lintel/demo-gw/front-door/door_3_open")
		return ok
	})
	n := 0
	for _, m := range capt.messages() {
		if strings.HasPrefix(m, door3Config+" ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("door 3 config published %d times; want once", n)
	}
}

// TestHomeAssistantDoorFloodStopsAtTheCap: a line naming 10,000 doors gets
// at most homeassistant.MaxDynamic entities; the rest are counted.
func TestHomeAssistantDoorFloodStopsAtTheCap(t *testing.T) {
	env, gw, _, capt := haEnv(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	const flood = 10000
	var b strings.Builder
	for i := range flood {
		fmt.Fprintf(&b, "DOOR %d CLOSED\r\n", 1000+i)
	}
	if err := env.Doors.Send([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	announced := func() int {
		n := 0
		for _, m := range capt.messages() {
			if strings.HasPrefix(m, "homeassistant/binary_sensor/demo-gw/front-door_door_") {
				n++
			}
		}
		return n
	}
	testwait.Until(t, "every door seen by discovery", 60*time.Second, func() bool {
		return gw.DiscoveryOverflow() >= flood-256
	})
	testwait.Until(t, "256 configs delivered", 10*time.Second, func() bool { return announced() >= 256 })
	if got := gw.DiscoveryOverflow(); got != flood-256 {
		t.Errorf("overflow = %d; want %d", got, flood-256)
	}
	if got := announced(); got != 256 {
		t.Errorf("%d door configs announced; want the cap, 256", got)
	}
	body := scrape(t, "http://"+gw.MetricsAddr()+"/metrics")
	if got := metric(body, "lintel_ha_discovery_overflow_total"); got != flood-256 {
		t.Errorf("lintel_ha_discovery_overflow_total = %v; want %d", got, flood-256)
	}
}

// TestHomeAssistantNeverNamesAnEntityFromAPseudonym: a state point named
// from a pseudonymised capture (badge_{card}) is published as a reading
// but never announced, even though the pseudonym fits the capture.
func TestHomeAssistantNeverNamesAnEntityFromAPseudonym(t *testing.T) {
	env, _, _, capt := haEnvWith(t, func(cfg *config.Config) {
		for i := range cfg.Devices {
			if cfg.Devices[i].Name == "front-door" {
				cfg.Devices[i].Events = append(slices.Clone(cfg.Devices[i].Events),
					config.Event{Name: "presence", Match: `^BADGE (?P<card>[0-9a-z:]+) (?P<state>IN|OUT)$`, Point: "badge_{card}",
						Value: "state", Values: map[string]any{"IN": true, "OUT": false}, Privacy: map[string]string{"card": "pseudonymize"}},
					config.Event{Name: "seen", Match: `^SEEN (?P<holder>[0-9a-z]+) (?P<state>IN|OUT)$`, Point: "seen_{holder}",
						Value: "state", Values: map[string]any{"IN": true, "OUT": false}, Privacy: map[string]string{"holder": "drop"}})
			}
		}
	})
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	for _, line := range []string{"BADGE 0012345 IN", "SEEN alice IN", "DOOR 4 OPEN"} {
		if err := env.Doors.Emit(line); err != nil {
			t.Fatal(err)
		}
	}
	// Frames are handled in order: once door 4 is announced, the badge
	// and the seen frames went through discovery.
	testwait.Until(t, "door 4's config", 10*time.Second, func() bool {
		_, ok := capt.get("homeassistant/binary_sensor/demo-gw/front-door_door_4_open/config")
		return ok
	})
	sawReading := false
	for _, m := range capt.messages() {
		if strings.HasPrefix(m, "lintel/demo-gw/front-door/badge_p:") {
			sawReading = true
		}
		if strings.HasPrefix(m, "homeassistant/") && (strings.Contains(m, "badge") || strings.Contains(m, "seen") ||
			strings.Contains(m, "p:") || strings.Contains(m, "0012345") || strings.Contains(m, "alice")) {
			t.Errorf("discovery announces a name from a private field: %s", m)
		}
	}
	if !sawReading {
		t.Fatal("the pseudonymised reading was not published; the test proves nothing")
	}
}

// TestHomeAssistantReloadKeepsOrRemovesFrameNamedDoors: a reload that keeps
// the door template keeps door 3; one that removes it removes door 3.
func TestHomeAssistantReloadKeepsOrRemovesFrameNamedDoors(t *testing.T) {
	env, gw, _, capt := haEnv(t)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	if err := env.Doors.Emit("DOOR 3 OPEN"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "door 3's discovery config", 10*time.Second, func() bool { p, _ := capt.get(door3Config); return p != "" })

	same := *env.Config
	if err := gw.Reload(&same); err != nil {
		t.Fatal(err)
	}
	if err := env.Doors.Emit("DOOR 5 OPEN"); err != nil {
		t.Fatal(err)
	}
	const door5 = "homeassistant/binary_sensor/demo-gw/front-door_door_5_open/config"
	testwait.Until(t, "door 5 after the reload", 10*time.Second, func() bool { p, _ := capt.get(door5); return p != "" })
	if p, _ := capt.get(door3Config); p == "" {
		t.Fatal("a reload that keeps the door template removed door 3")
	}

	without := *env.Config
	without.Devices = slices.Clone(without.Devices)
	for i := range without.Devices {
		if without.Devices[i].Name == "front-door" {
			without.Devices[i].Events = slices.DeleteFunc(slices.Clone(without.Devices[i].Events),
				func(e config.Event) bool { return e.Point != "" })
		}
	}
	if err := gw.Reload(&without); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{door3Config, door5} {
		testwait.Until(t, topic+" emptied", 10*time.Second, func() bool { p, ok := capt.get(topic); return ok && p == "" })
	}
}
