package gateway

import (
	"testing"

	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/homeassistant"
)

// TestHATemplateRefusesPrivateFields: a template is offered to discovery
// only if every field of the name and the value is kept raw and does not
// look personal; its shape is the template with the captures' patterns.
func TestHATemplateRefusesPrivateFields(t *testing.T) {
	door := config.Event{Name: "door", Match: `^DOOR (?P<door>\d+) (?P<state>OPEN|CLOSED)$`, Point: "door_{door}_open",
		Value: "state", Values: map[string]any{"OPEN": true, "CLOSED": false}}
	with := func(edit func(e *config.Event)) config.Event {
		e := door
		edit(&e)
		return e
	}
	for _, c := range []struct {
		what string
		e    config.Event
	}{
		{"pseudonymised capture", with(func(e *config.Event) { e.Privacy = map[string]string{"door": "pseudonymize"} })},
		{"dropped capture", with(func(e *config.Event) { e.Privacy = map[string]string{"door": "drop"} })},
		{"pseudonymised value", with(func(e *config.Event) { e.Privacy = map[string]string{"state": "pseudonymize"} })},
		{"personal-looking capture kept", with(func(e *config.Event) {
			e.Match, e.Point, e.Privacy = `^DOOR (?P<badge>\d+) (?P<state>OPEN|CLOSED)$`, "door_{badge}", map[string]string{"badge": "keep"}
		})},
		{"personal-looking capture without rule", with(func(e *config.Event) {
			e.Match, e.Point = `^DOOR (?P<user>\d+) (?P<state>OPEN|CLOSED)$`, "door_{user}"
		})},
		{"template field not captured", with(func(e *config.Event) { e.Point = "door_{room}" })},
	} {
		if tmpl, ok := haTemplate(c.e); ok {
			t.Errorf("%s: offered to discovery as %s", c.what, tmpl.Shape)
		}
	}

	tmpl, ok := haTemplate(with(func(e *config.Event) { e.Privacy = map[string]string{"door": "keep"} }))
	if !ok || tmpl.Kind != homeassistant.Bool || tmpl.Event != "door" {
		t.Fatalf("door template = %+v, %v; want a Bool template", tmpl, ok)
	}
	for name, want := range map[string]bool{"door_3_open": true, "door_12_open": true, "door_x_open": false,
		"door__open": false, "door_3_openX": false, "Xdoor_3_open": false, "door_3": false} {
		if got := tmpl.Shape.MatchString(name); got != want {
			t.Errorf("shape %s matches %q = %v; want %v", tmpl.Shape, name, got, want)
		}
	}

	// Flags and repeated names carry over; the literal part is literal.
	multi := config.Event{Name: "zone", Match: `(?i)^(?:Z (?P<z>[a-c]+)|ZONE (?P<z>\d))$`, Point: "z.{z}", Value: "z"}
	tmpl, ok = haTemplate(multi)
	if !ok || tmpl.Kind != homeassistant.Text {
		t.Fatalf("zone template = %+v, %v", tmpl, ok)
	}
	for name, want := range map[string]bool{"z.AbC": true, "z.7": true, "zx7": false, "z.d": false} {
		if got := tmpl.Shape.MatchString(name); got != want {
			t.Errorf("shape %s matches %q = %v; want %v", tmpl.Shape, name, got, want)
		}
	}
	if tmpl, ok := haTemplate(config.Event{Name: "lvl", Match: `^L (?P<n>\d) (?P<v>HI|LO)$`, Point: "level_{n}", Value: "v",
		Values: map[string]any{"HI": 1, "LO": 0.5}}); !ok || tmpl.Kind != homeassistant.Number {
		t.Errorf("numeric values give %+v, %v; want a Number template", tmpl, ok)
	}
}
