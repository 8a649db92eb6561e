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
