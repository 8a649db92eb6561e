package config

import (
	"errors"
	"testing"
	"time"
)

func limitsDoc(limits string) []byte {
	return []byte("gateway: {id: gw1}\nlocal_broker:\n  limits:\n" + limits)
}

func TestBrokerLimitsDefaults(t *testing.T) {
	cfg, err := Parse(limitsDoc("    max_clients: 10\n"), "l.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.LocalBroker.Limits
	if l.ConnectTimeout.D() != 5*time.Second || l.MaxPending != 256 || l.MaxPendingPerSource != 16 ||
		l.MaxFiltersPerClient != 100 || l.MaxFilters != 2000 || l.MaxPasswordChecks != 2 {
		t.Fatalf("defaults = %+v", l)
	}
}

func TestBrokerLimitsSet(t *testing.T) {
	cfg, err := Parse(limitsDoc(`    connect_timeout: 2s
    max_pending: 64
    max_pending_per_source: 4
    max_filters_per_client: 50
    max_filters: 500
    max_password_checks: 1
`), "l.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.LocalBroker.Limits
	if l.ConnectTimeout.D() != 2*time.Second || l.MaxPending != 64 || l.MaxPendingPerSource != 4 ||
		l.MaxFiltersPerClient != 50 || l.MaxFilters != 500 || l.MaxPasswordChecks != 1 {
		t.Fatalf("limits = %+v", l)
	}
}

func TestBrokerLimitsZerosRefused(t *testing.T) {
	_, err := Parse(limitsDoc(`    connect_timeout: 0s
    max_pending: 0
    max_pending_per_source: 0
    max_filters_per_client: 0
    max_filters: 0
    max_password_checks: 0
`), "l.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("zeros accepted: %v", err)
	}
	wantProblems(t, ps,
		`4|local_broker.limits.connect_timeout|0s; want 1s to 1m`,
		`5|local_broker.limits.max_pending|0; want 1 to 10000`,
		`6|local_broker.limits.max_pending_per_source|0; want 1 to max_pending`,
		`7|local_broker.limits.max_filters_per_client|0; want 1 to max_filters`,
		`8|local_broker.limits.max_filters|0; want 1 to 10000`,
		`9|local_broker.limits.max_password_checks|0; want 1 to 16`,
	)
}

func TestBrokerLimitsOutOfRange(t *testing.T) {
	_, err := Parse(limitsDoc(`    connect_timeout: 2m
    max_pending: 100
    max_pending_per_source: 300
    max_filters_per_client: 3000
    max_filters: 2500
    max_password_checks: 17
`), "l.yaml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("out of range accepted: %v", err)
	}
	wantProblems(t, ps,
		`4|local_broker.limits.connect_timeout|2m0s; want 1s to 1m`,
		`6|local_broker.limits.max_pending_per_source|300; want 1 to max_pending (100)`,
		`7|local_broker.limits.max_filters_per_client|3000; want 1 to max_filters (2500)`,
		`9|local_broker.limits.max_password_checks|17; want 1 to 16`,
	)
	_, err = Parse(limitsDoc("    max_pending: 10001\n    max_filters: 10001\n"), "l.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("out of range accepted: %v", err)
	}
	wantProblems(t, ps,
		`4|local_broker.limits.max_pending|10001; want 1 to 10000`,
		`5|local_broker.limits.max_filters|10001; want 1 to 10000`,
	)
}

func TestSerialParamUnicode(t *testing.T) {
	cfg, err := Parse([]byte(serialDoc("panel",
		`{name: say, send: "SAY {text}\r\n", unsigned_writes: true, params: {text: {pattern: '.{1,20}', unicode: true}}}`,
		`{name: beep, send: "BEEP {n}\r\n", unsigned_writes: true, params: {n: {min: 1, max: 3}}}`)), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmds := cfg.Devices[0].Commands
	if !cmds[0].Params["text"].Unicode || cmds[1].Params["n"].Unicode {
		t.Fatalf("unicode: say %v, beep %v; want true, false", cmds[0].Params["text"].Unicode, cmds[1].Params["n"].Unicode)
	}
	sl, err := cfg.SerialLine("panel", nil)
	if err != nil {
		t.Fatal(err)
	}
	adapter := sl.Devices[0].Commands
	if !adapter[0].Params["text"].Unicode || adapter[1].Params["n"].Unicode {
		t.Fatalf("adapter config unicode: say %v, beep %v; want true, false", adapter[0].Params["text"].Unicode, adapter[1].Params["n"].Unicode)
	}
}

func TestHomeAssistantSection(t *testing.T) {
	doc := func(extra string) []byte { return []byte("gateway: {id: gw1}\nlocal_broker:\n" + extra) }
	cfg, err := Parse(doc("  users_file: users\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LocalBroker.HomeAssistant != nil {
		t.Fatalf("home_assistant on without the key: %+v", cfg.LocalBroker.HomeAssistant)
	}
	cfg, err = Parse(doc("  home_assistant: {}\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ha := cfg.LocalBroker.HomeAssistant; ha == nil || ha.Prefix != "homeassistant" {
		t.Fatalf("home_assistant: {} = %+v; want prefix homeassistant", ha)
	}
	cfg, err = Parse(doc("  home_assistant: {prefix: site/ha}\n"), "h.yaml")
	if err != nil || cfg.LocalBroker.HomeAssistant.Prefix != "site/ha" {
		t.Fatalf("prefix site/ha: %v", err)
	}
	for _, bad := range []string{"ha/+", "ha/#", "$SYS", "lintel/x", "lintel", "ha//x", "/ha", "ha/"} {
		_, err := Parse(doc("  home_assistant:\n    prefix: \""+bad+"\"\n"), "h.yaml")
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "local_broker.home_assistant.prefix" || ps[0].Line != 4 {
			t.Errorf("prefix %q: %v; want one problem at h.yaml:4 local_broker.home_assistant.prefix", bad, err)
		}
	}
}
