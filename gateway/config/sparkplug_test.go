package config

import (
	"errors"
	"testing"
)

// TestUplinkSparkplugFormat: format sparkplug-b needs a group_id, the edge
// node id defaults to the gateway id, ids may not hold / + #, and an
// unknown format is refused at its line.
func TestUplinkSparkplugFormat(t *testing.T) {
	doc := func(extra string) []byte {
		return []byte(`gateway: {id: gw1}
uplink:
  broker: mqtts://cloud.example.com:8883
  tls: {ca_file: ca.pem, cert_file: gw.pem, key_file: gw.key}
` + extra)
	}
	cfg, err := Parse(doc("  format: sparkplug-b\n  sparkplug: {group_id: site, primary_host_id: scada}\n"), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sp := cfg.Uplink.Sparkplug
	if cfg.Uplink.Format != FormatSparkplugB || sp == nil || sp.GroupID != "site" || sp.EdgeNodeID != "gw1" || sp.PrimaryHostID != "scada" || sp.QoS1Data {
		t.Fatalf("parsed %q %+v", cfg.Uplink.Format, sp)
	}
	var ps Problems
	_, err = Parse(doc("  format: sparkplug-b\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("no group_id accepted: %v", err)
	}
	wantProblems(t, ps, `2|uplink.sparkplug.group_id|required with format sparkplug-b`)
	_, err = Parse(doc("  format: sparkplug-b\n  sparkplug: {group_id: a/b, edge_node_id: \"n+\"}\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("bad ids accepted: %v", err)
	}
	wantProblems(t, ps, `6|uplink.sparkplug.group_id|"a/b" must not contain / + # or NUL`, `6|uplink.sparkplug.edge_node_id|"n+" must not contain / + # or NUL`)
	_, err = Parse(doc("  format: protobuf\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("unknown format accepted: %v", err)
	}
	wantProblems(t, ps, `5|uplink.format|"protobuf"; want json or sparkplug-b`)
}

// TestUplinkSparkplugPrimaryHostState: primary_host_state defaults to auto,
// takes 3.0 or 2.2 (also written as YAML numbers), refuses anything else
// at its line, and a fixed form without primary_host_id is refused.
func TestUplinkSparkplugPrimaryHostState(t *testing.T) {
	doc := func(extra string) []byte {
		return []byte(`gateway: {id: gw1}
uplink:
  broker: mqtts://cloud.example.com:8883
  tls: {ca_file: ca.pem, cert_file: gw.pem, key_file: gw.key}
  format: sparkplug-b
  sparkplug:
    group_id: site
` + extra)
	}
	for extra, want := range map[string]string{
		"    primary_host_id: scada\n":                                  "auto",
		"    primary_host_id: scada\n    primary_host_state: 2.2\n":     "2.2",
		"    primary_host_id: scada\n    primary_host_state: \"3.0\"\n": "3.0",
		"    primary_host_id: scada\n    primary_host_state: auto\n":    "auto",
	} {
		cfg, err := Parse(doc(extra), "u.yaml")
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := cfg.Uplink.Sparkplug.PrimaryHostState; got != want {
			t.Errorf("%q: primary_host_state %q, want %q", extra, got, want)
		}
	}
	var ps Problems
	_, err := Parse(doc("    primary_host_id: scada\n    primary_host_state: 2.1\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("primary_host_state 2.1 accepted: %v", err)
	}
	wantProblems(t, ps, `9|uplink.sparkplug.primary_host_state|"2.1"; want auto, 3.0 or 2.2`)
	_, err = Parse(doc("    primary_host_state: 2.2\n"), "u.yaml")
	if !errors.As(err, &ps) {
		t.Fatalf("primary_host_state without primary_host_id accepted: %v", err)
	}
	wantProblems(t, ps, `8|uplink.sparkplug.primary_host_state|needs primary_host_id`)
}
