package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// eventDoc is a serial-line config with one event: match on line 8, point
// on line 9.
func eventDoc(match, point string) string {
	return fmt.Sprintf(`gateway: {id: gw1}
buses: [{name: doors, type: serial-line, port: /dev/ttyUSB1}]
devices:
  - name: front-door
    bus: doors
    events:
      - name: door
        match: '%s'
        point: "%s"
        value: state
`, match, point)
}

func TestTopicTemplateCaptures(t *testing.T) {
	for _, tc := range []struct {
		match, point string
		problem      string // "" when accepted
	}{
		{`^DOOR (?P<door>\d+) (?P<state>OPEN|CLOSED)$`, "door_{door}_open", ""},
		{`^DOOR (?P<door>[A-Za-z0-9_-]+) (?P<state>\w+)$`, "door_{door}_open", ""},
		{`^(?i)ZONE (?P<zone>[a-z]{1,3}) (?P<state>\w+)$`, "zone_{zone}", ""},
		{`^DOOR (?P<door>\d*) (?P<state>\w+)$`, "door_{door}", ""}, // "door_" is never empty
		{`^DOOR (?P<door>.*) (?P<state>OPEN|CLOSED)$`, "door_{door}_open",
			`8|devices[0].events[0].match|the point template "door_{door}_open" fills a topic level from {door}, which (?P<door>.*) lets hold "/", "+", "#", "$", NUL`},
		{`^DOOR (?P<door>[^ ]+) (?P<state>\w+)$`, "door_{door}_open", `8|devices[0].events[0].match|which (?P<door>[^ ]+) lets hold "/", "+", "#", "$", NUL`},
		{`^DOOR (?P<door>[0-9/]+) (?P<state>\w+)$`, "door_{door}_open", `8|devices[0].events[0].match|lets hold "/"; constrain it, e.g. (?P<door>\d+)`},
		{`^DOOR (?P<door>[0-9{}]+) (?P<state>\w+)$`, "door_{door}_open", `8|devices[0].events[0].match|lets hold "{", "}"`},
		{`^DOOR (?P<door>[\x00-\x09]+) (?P<state>\w+)$`, "door_{door}_open", `8|devices[0].events[0].match|lets hold NUL, control characters`},
		{`^DOOR (?P<door>\d*) (?P<state>\w+)$`, "{door}", `8|devices[0].events[0].match|can be empty`},
		{`^DOOR (?:(?P<door>\d+)|ALL) (?P<state>\w+)$`, "{door}", `8|devices[0].events[0].match|{door} can be empty`},
		{`^DOOR (?P<door>\d+) (?P<state>\w+)$`, "door/{door}", `9|devices[0].events[0].point|the point template "door/{door}" holds "/"`},
	} {
		_, err := Parse([]byte(eventDoc(tc.match, tc.point)), "t.yaml")
		if tc.problem == "" {
			if err != nil {
				t.Errorf("%s → %s refused:\n%v", tc.match, tc.point, err)
			}
			continue
		}
		var ps Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s → %s accepted, want %s", tc.match, tc.point, tc.problem)
			continue
		}
		wantProblems(t, ps, tc.problem)
	}
}

// expandLikeSerialline fills a template the way adapters/serialline's
// expand does: fields replaced in sorted name order, each everywhere.
func expandLikeSerialline(template string, re *regexp.Regexp, m []string) string {
	fields := map[string]string{}
	for i, name := range re.SubexpNames() {
		if name != "" {
			fields[name] = m[i]
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		template = strings.ReplaceAll(template, "{"+k+"}", fields[k])
	}
	return template
}

// validLevel is what an MQTT topic level filled from a frame must be.
func validLevel(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if strings.ContainsRune("/+#${}", r) || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return false
		}
	}
	return true
}

// FuzzTopicTemplate: whenever check accepts a template and pattern, no
// frame the pattern matches fills the template with an invalid topic level.
func FuzzTopicTemplate(f *testing.F) {
	f.Add(`DOOR (?P<door>\d+)`, "door_{door}_open", "DOOR 12")
	f.Add(`DOOR (?P<door>.*)`, "door_{door}_open", "DOOR 1/+/#")
	f.Add(`(?P<a>[a-z{}]+) (?P<b>\S+)`, "x_{a}", "{b} /x")
	f.Add(`(?P<a>\d?)`, "{a}", "")
	f.Add(`(?i)(?P<k>k+)`, "{k}", "\u212a")
	f.Add(`(?P<z>[^\x00-\x7f]+)`, "{z}", "\xff\xfe")
	f.Add(`(?:(?P<a>\d)|(?P<b>[a-z]))+`, "{a}{b}", "1a")
	f.Fuzz(func(t *testing.T, pattern, template, frame string) {
		re, err := regexp.Compile(pattern)
		if err != nil || len(template) > 200 {
			return
		}
		if checkTopicTemplate(re, template) != nil {
			return
		}
		m := re.FindStringSubmatch(frame)
		if m == nil {
			return
		}
		if got := expandLikeSerialline(template, re, m); !validLevel(got) {
			t.Fatalf("accepted pattern %q, template %q: frame %q fills level %q", pattern, template, frame, got)
		}
	})
}

// TestNamesThatBecomeTopicLevels: gateway, bus, device, point, event and
// command names are topic levels; none may hold a separator, a wildcard or
// a leading "$", and the uplink prefix must not make cloud topics "$" topics.
func TestNamesThatBecomeTopicLevels(t *testing.T) {
	doc := `gateway: {id: "gw/1"}
buses:
  - {name: "$SYS", type: modbus-tcp, address: 127.0.0.1:502}
  - {name: doors, type: serial-line, port: /dev/ttyUSB1}
devices:
  - name: "ahu+1"
    bus: "$SYS"
    points: [{name: "t#", table: holding, address: 1, type: uint16}]
  - name: door
    bus: doors
    events: [{name: "ev/1", match: 'X'}]
    commands: [{name: "un lock", send: "U\r\n"}]
uplink:
  broker: mqtts://cloud.example.com:8883
  tls: {ca_file: ca.pem, cert_file: gw.pem, key_file: gw.key}
  topic_prefix: "$share/x/"
`
	_, err := Parse([]byte(doc), "n.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("accepted: %v", err)
	}
	wantProblems(t, ps,
		`1|gateway.id|invalid name "gw/1"`,
		`3|buses[0].name|invalid name "$SYS"`,
		`6|devices[0].name|invalid name "ahu+1"`,
		`8|devices[0].points[0].name|invalid name "t#"`,
		`11|devices[1].events[0].name|invalid name "ev/1"`,
		`12|devices[1].commands[0].name|invalid name "un lock"`,
		`16|uplink.topic_prefix|must not start with "$"`,
	)
}
