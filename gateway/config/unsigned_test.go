package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// modbusDoc is a config with one Modbus device named dev whose points are
// given as YAML flow mappings, one a line, from line 5 on.
func modbusDoc(dev string, points ...string) string {
	return "gateway: {id: gw1}\nbuses: [{name: plant, type: modbus-tcp, address: 127.0.0.1:502}]\ndevices:\n  - name: " + dev + "\n    bus: plant\n    points:\n      - " + strings.Join(points, "\n      - ") + "\n"
}

// serialDoc is a config with one serial-line device named dev and the
// given commands, one a line.
func serialDoc(dev string, commands ...string) string {
	return "gateway: {id: gw1}\nbuses: [{name: panel, type: serial-line, port: /dev/ttyS0}]\ndevices:\n  - name: " + dev + "\n    bus: panel\n    commands:\n      - " + strings.Join(commands, "\n      - ") + "\n"
}

func TestUnsignedWritesConflictsAreErrors(t *testing.T) {
	_, err := Parse([]byte(modbusDoc("ahu",
		`{name: a, table: holding, address: 1, type: uint16, writable: true, critical: true, unsigned_writes: true}`,
		`{name: b, table: holding, address: 2, type: uint16, unsigned_writes: true}`,
	)), "u.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	wantProblems(t, ps,
		`7|devices[0].points[0].unsigned_writes|critical and unsigned_writes contradict`,
		`8|devices[0].points[1].unsigned_writes|unsigned_writes applies to writable points`,
	)
	_, err = Parse([]byte(serialDoc("panel",
		`{name: mode, send: "MODE\r\n", critical: true, unsigned_writes: true}`)), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	wantProblems(t, ps, `7|devices[0].commands[0].unsigned_writes|critical and unsigned_writes contradict`)
}

func TestUnsignedDoorLikeWritesWarn(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		warn string // "" for no warning
	}{
		{modbusDoc("io", `{name: door_1_release, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `u.yaml:7: devices[0].points[0].unsigned_writes: point "io/door_1_release" is written without a signature, and its name suggests a door, lock, alarm or relay ("door")`},
		{modbusDoc("io", `{name: output_1, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true, labels: {0: locked, 1: unlocked}}`), `label "locked" suggests`},
		{modbusDoc("io", `{name: output_1, table: coil, address: 1, type: bool, writable: true, unsigned_writes: true}`), `table coil suggests a relay`},
		{modbusDoc("doors-io", `{name: output_1, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `its device name suggests a door, lock, alarm or relay ("doors")`},
		{modbusDoc("panel", `{name: arm_mode, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `("arm")`},
		{modbusDoc("panel", `{name: MagLockRelay, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `("lock")`},
		{modbusDoc("panel", `{name: maglock_2, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `("maglock")`},
		{modbusDoc("panel", `{name: doorrelease, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `("doorrelease")`},
		{modbusDoc("panel", `{name: relays_all, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), `("relays")`},
		{serialDoc("panel", `{name: disarm, send: "DISARM\r\n", unsigned_writes: true}`), `u.yaml:7: devices[0].commands[0].unsigned_writes: command "panel/disarm" is written without a signature`},
		{serialDoc("panel", `{name: out, send: "RLY 1 ON\r\n", unsigned_writes: true}`), `its send text suggests a door, lock, alarm or relay ("rly")`},
		{serialDoc("panel", `{name: status, send: "STATUS?\r\n", unsigned_writes: true}`), ""},
		{modbusDoc("ahu", `{name: setpoint, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), ""},
		{modbusDoc("ahu", `{name: clock_sync, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true, labels: {0: off, 1: warm}}`), ""},
		{modbusDoc("outdoor-unit", `{name: block_size, table: holding, address: 1, type: uint16, writable: true, unsigned_writes: true}`), ""},
		// Signed (the default) door points do not warn.
		{modbusDoc("io", `{name: door_1_release, table: coil, address: 1, type: bool, writable: true}`), ""},
	} {
		cfg, err := Parse([]byte(tc.doc), "u.yaml")
		if err != nil {
			t.Fatalf("%s\n%v", tc.doc, err)
		}
		var got []string
		for _, w := range cfg.Warnings {
			if strings.Contains(w.Msg, "without a signature") {
				got = append(got, w.Error())
			}
		}
		switch {
		case tc.warn == "" && len(got) > 0:
			t.Errorf("%s\nwarned: %v", tc.doc, got)
		case tc.warn != "" && (len(got) != 1 || !strings.Contains(got[0], tc.warn)):
			t.Errorf("%s\nwarnings %q, want one containing %q", tc.doc, got, tc.warn)
		}
	}
}

// TestExampleDocumentsDoorWords keeps the word list in lintel.example.yaml
// the one the check uses.
func TestExampleDocumentsDoorWords(t *testing.T) {
	example, err := os.ReadFile("../../configs/lintel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(example), "#", "")), " ")
	for _, w := range doorWords {
		if !strings.Contains(text, " "+w+",") && !strings.Contains(text, " "+w+" or") {
			t.Errorf("lintel.example.yaml does not list %q among the door-like words", w)
		}
	}
}
