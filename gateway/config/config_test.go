package config

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func problems(t *testing.T, file string) Problems {
	t.Helper()
	_, err := Load(filepath.Join("testdata", file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("%s: error %v is not a list of problems", file, err)
	}
	return ps
}

// wantProblems checks that each "line|path|fragment" is reported exactly.
func wantProblems(t *testing.T, ps Problems, want ...string) {
	t.Helper()
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
	for _, w := range want {
		parts := strings.SplitN(w, "|", 3)
		found := false
		for _, p := range ps {
			if p.Path == parts[1] && strings.Contains(p.Msg, parts[2]) && parts[0] == strconv.Itoa(p.Line) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing problem at line %s, %s: %q; got:\n%v", parts[0], parts[1], parts[2], ps)
		}
	}
}

func TestGoodConfigGetsDefaultsAndResolvedPaths(t *testing.T) {
	cfg, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata")
	if cfg.Gateway.DataDir != "testdata/state" && cfg.Gateway.DataDir != filepath.Join(abs, "state") {
		t.Errorf("data_dir = %q, want it relative to the config file", cfg.Gateway.DataDir)
	}
	if cfg.Uplink.TLS.KeyFile != "/etc/lintel/gw.key" || cfg.Uplink.TLS.CAFile != "testdata/certs/ca.pem" {
		t.Errorf("uplink tls paths = %+v", cfg.Uplink.TLS)
	}
	if got := cfg.LocalBroker.Listeners; len(got) != 1 || got[0].Address != "127.0.0.1:1883" {
		t.Errorf("default listener = %+v, want loopback 1883", got)
	}
	if cfg.Uplink.Forward[0] != "lintel/bldg-a-gw1/#" || cfg.Uplink.MaxInflight != 1024 {
		t.Errorf("uplink defaults = %+v", cfg.Uplink)
	}
	if cfg.Buffer.MaxBytes != 64<<20 || cfg.Buffer.CommitInterval.D() != 2*time.Second || cfg.Buffer.FullPolicy != "drop-oldest" {
		t.Errorf("buffer = %+v", cfg.Buffer)
	}
	if cfg.Devices[0].Poll.D() != 5*time.Second || cfg.Devices[0].Points[0].Report.MaxInterval.D() != 5*time.Minute {
		t.Errorf("device = %+v", cfg.Devices[0])
	}
}

func TestThreeMistakesAllReportedWithLines(t *testing.T) {
	ps := problems(t, "three-mistakes.yaml")
	wantProblems(t, ps,
		`9|devices[0].points[0].type|unknown type "flaot32"; want one of bool, int16`,
		`10|devices[0].points[1].type|type bool needs table coil or discrete, not "input"`,
		`12|buffer.full_policy|unknown value "drop-newest"; want one of drop-oldest, reject-new`,
	)
	if msg := ps.Error(); !strings.Contains(msg, "testdata/three-mistakes.yaml:9: devices[0].points[0].type: unknown type \"flaot32\"") {
		t.Errorf("message does not read file:line: path: problem:\n%s", msg)
	}
}

func TestUnknownKeysAndBadValuesAllReported(t *testing.T) {
	wantProblems(t, problems(t, "unknown-and-typed.yaml"),
		`3|gateway.colour|unknown key "colour"; want one of data_dir, id`,
		`8|buses[0].timeout|invalid duration "5 seconds"`,
		`12|devices[0].unit|want a whole number, got "three"`,
		`15|buffer.max_bytes|invalid size "12 parsecs"`,
	)
}

func TestNetworkListenerWithoutTLSRefused(t *testing.T) {
	wantProblems(t, problems(t, "open-listener.yaml"),
		`4|local_broker.listeners[0].address|address "0.0.0.0:1883" is not loopback, so this listener needs tls`)
}

func TestPlaintextUplinkRefused(t *testing.T) {
	wantProblems(t, problems(t, "plaintext-uplink.yaml"),
		`3|uplink.broker|must use mutual TLS`,
		`2|uplink.tls.ca_file|missing`,
		`2|uplink.tls.cert_file|missing`,
		`2|uplink.tls.key_file|missing`,
	)
}

func TestSerialLineMistakesAndPersonalFieldWarning(t *testing.T) {
	wantProblems(t, problems(t, "serial-mistakes.yaml"),
		`3|buses[0].framing|fixed framing needs a frame_length`,
		`10|devices[0].events[0].privacy.badge|the pattern captures no field "badge"`,
		`13|devices[0].events[1].point|template uses {card}, which is pseudonymize`,
		`17|devices[0].commands[0].send|template uses {mode}`,
	)
	cfg, err := Load("testdata/good-serial.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), `good-serial.yaml:8: devices[0].events[0].match: captured field "name" looks personal`) {
		t.Fatalf("warnings %v", cfg.Warnings)
	}
}

func TestProfiles(t *testing.T) {
	cfg, err := Load("testdata/with-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := cfg.Devices[0], cfg.Devices[1]
	if len(m1.Points) != 3 || m1.Points[0].Name != "power" || m1.Points[2].Name != "serial" || m1.MaxRegisters != 40 {
		t.Fatalf("meter-1 = %+v", m1)
	}
	if len(m2.Points) != 2 || m2.MaxRegisters != 20 || m2.Points[1].Labels[1] != "fault" {
		t.Fatalf("meter-2 = %+v (its own max_registers wins)", m2)
	}
	ps := problems(t, "broken-profile.yaml")
	if len(ps) != 1 || !strings.Contains(ps.Error(), "testdata/profiles/broken.yaml:3: points[1].adress: unknown key") {
		t.Fatalf("broken profile: %v", ps)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse([]byte("gateway:\n  id: gw1\n   bad: [\n"), "broken.yaml")
	var ps Problems
	if !errors.As(err, &ps) || ps[0].Line == 0 || !strings.HasPrefix(ps.Error(), "broken.yaml:") {
		t.Fatalf("syntax error %v has no file and line", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]Size{"65536": 65536, "64KiB": 64 << 10, "512MiB": 512 << 20, "1GB": 1e9, "2 GiB": 2 << 30} {
		var s Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q -> %d, %v; want %d", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1TB", "MiB", "1.5MiB"} {
		var s Size
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted as %d", bad, s)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for _, f := range []string{"#", "a/+/b", "a/#", "+"} {
		if err := ValidFilter(f); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	for _, f := range []string{"", "a/#/b", "a#", "a/b+", "#/a"} {
		if ValidFilter(f) == nil {
			t.Errorf("%q accepted", f)
		}
	}
}

func TestUnitZeroKeptUnsetDefaultsToOne(t *testing.T) {
	cfg, err := Parse([]byte(`gateway: {id: gw1}
buses: [{name: plant, type: modbus-tcp, address: 127.0.0.1:502}]
devices:
  - {name: zero, bus: plant, unit: 0, points: [{name: v, table: holding, address: 1, type: uint16}]}
  - {name: unset, bus: plant, points: [{name: v, table: holding, address: 1, type: uint16}]}
`), "units.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Devices[0].UnitID(); got != 0 {
		t.Errorf("unit: 0 became %d", got)
	}
	if got := cfg.Devices[1].UnitID(); got != 1 {
		t.Errorf("missing unit became %d, want 1", got)
	}
	_, err = Parse([]byte(`gateway: {id: gw1}
buses: [{name: plant, type: modbus-tcp, address: 127.0.0.1:502}]
devices:
  - {name: d, bus: plant, unit: 248, points: [{name: v, table: holding, address: 1, type: uint16}]}
`), "units.yaml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Error() != "units.yaml:4: devices[0].unit: unit id 248 is out of range 0-247" {
		t.Fatalf("unit 248: %v", err)
	}
}

func TestUplinkAckTimeoutAndDeadLetter(t *testing.T) {
	doc := func(extra string) []byte {
		return []byte(`gateway: {id: gw1}
uplink:
  broker: mqtts://cloud.example.com:8883
  tls: {ca_file: ca.pem, cert_file: gw.pem, key_file: gw.key}
` + extra)
	}
	cfg, err := Parse(doc(""), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.AckTimeout.D() != 30*time.Second || cfg.Uplink.DeadLetterAfter != 3 {
		t.Fatalf("defaults: ack_timeout %v, dead_letter_after %d; want 30s, 3", cfg.Uplink.AckTimeout.D(), cfg.Uplink.DeadLetterAfter)
	}
	cfg, err = Parse(doc("  ack_timeout: 5s\n  dead_letter_after: 7\n"), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.AckTimeout.D() != 5*time.Second || cfg.Uplink.DeadLetterAfter != 7 {
		t.Fatalf("set: %v, %d", cfg.Uplink.AckTimeout.D(), cfg.Uplink.DeadLetterAfter)
	}
	_, err = Parse(doc("  ack_timeout: 0s\n  dead_letter_after: 0\n"), "u.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("zeros accepted: %v", err)
	}
	wantProblems(t, ps, `5|uplink.ack_timeout|0s; want 1s to 10m`, `6|uplink.dead_letter_after|0; want 1 to 100`)
	_, err = Parse(doc("  ack_timeout: 11m\n  dead_letter_after: 101\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("out of range accepted: %v", err)
	}
	wantProblems(t, ps, `5|uplink.ack_timeout|11m0s; want 1s to 10m`, `6|uplink.dead_letter_after|101; want 1 to 100`)
}

// TestProfilePointProblemsPointAtTheProfile: a point from a profile is
// reported at its line in the profile, a device's own point at its own
// line and index (profile points come first in Device.Points).
func TestProfilePointProblemsPointAtTheProfile(t *testing.T) {
	_, err := Load("testdata/profile-problems.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("accepted: %v", err)
	}
	msg := ps.Error()
	for _, want := range []string{
		`testdata/profiles/mixed.yaml:3: points[1].type: type bool needs table coil or discrete, not "input" (or a bit: 0-15 of the register) (in device "m")`,
		`testdata/profile-problems.yaml:8: devices[0].points[0].type: unknown type "flaot"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %s\ngot:\n%s", want, msg)
		}
	}
	if len(ps) != 2 {
		t.Errorf("got %d problems, want 2:\n%s", len(ps), msg)
	}
	cfg, _, err := LoadForAudit("testdata/profile-problems.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const where = "testdata/profiles/mixed.yaml:4: points[2].unsigned_writes"
	if u := cfg.UnsignedTargets(); len(u) != 1 || u[0].Where != where {
		t.Errorf("unsigned targets %+v, want one at %s", u, where)
	}
	if len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0].Error(), where+`: point "m/door_release" is written without a signature`) {
		t.Errorf("warnings %v", cfg.Warnings)
	}
}
