package config

import (
	"strings"
	"testing"
)

func TestSampleWarnsOnNameLikeValues(t *testing.T) {
	cfg, err := Parse([]byte(`gateway: {id: gw1}
buses: [{name: doors, type: serial-line, port: /dev/ttyUSB1}]
devices:
  - name: front-door
    bus: doors
    events:
      - name: visit
        match: '^VISIT (?P<door>\d+) WHO=(?P<who>.*)$'
      - name: presence
        match: '^OCC (?P<occupant>\S+)$'
        privacy: {occupant: keep}
      - name: badge
        match: '^BADGE (?P<holder>.*)$'
        privacy: {holder: pseudonymize}
      - name: zone
        match: '^ZONE (?P<zone>.*)$'
`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sample := strings.Join([]string{
		"VISIT 1 WHO=visitor",
		"VISIT 2 WHO=Jane Doe\r",
		"OCC jane.doe@example.com",
		"BADGE Anna-Lena Müller",    // pseudonymized: fine
		"ZONE lobby",                // no name
		"VISIT 3 WHO=Doe, John",     // second hit on the same field: one warning
		"garbage that matches none", //
	}, "\n")
	ws, err := cfg.Sample(strings.NewReader(sample), "serial.log")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`s.yaml:8: devices[0].events[0].match: field "who" holds values that look like a person's name (two capitalised words) in serial.log (2 line(s), first line 2) and is published as is (no privacy rule)`,
		`s.yaml:10: devices[0].events[1].match: field "occupant" holds values that look like an e-mail address in serial.log (1 line(s), first line 3) and is published as is (privacy rule keep)`,
	}
	if len(ws) != len(want) {
		t.Fatalf("got %d warnings, want %d:\n%v", len(ws), len(want), ws)
	}
	for i, w := range want {
		if !strings.HasPrefix(ws[i].Error(), w) {
			t.Errorf("warning %d:\n got %s\nwant %s…", i, ws[i].Error(), w)
		}
		if strings.Contains(ws[i].Error(), "Jane") || strings.Contains(ws[i].Error(), "jane.doe") {
			t.Errorf("warning repeats the personal value: %s", ws[i].Error())
		}
	}
}
