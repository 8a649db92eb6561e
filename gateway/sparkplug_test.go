package gateway

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lintel-gw/lintel/gateway/config"
)

// TestSparkplugNodeGetsPrimaryHostState: uplink.sparkplug.primary_host_state
// reaches the edge node (an unknown form, which config validation would
// refuse first, is refused by the node too).
func TestSparkplugNodeGetsPrimaryHostState(t *testing.T) {
	g := &Gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg := func(state string) *config.Config {
		return &config.Config{
			Gateway: config.Gateway{ID: "gw1", DataDir: t.TempDir()},
			Uplink: &config.Uplink{Format: config.FormatSparkplugB, Sparkplug: &config.Sparkplug{
				GroupID: "site", EdgeNodeID: "gw1", PrimaryHostID: "scada", PrimaryHostState: state}},
		}
	}
	n, err := g.sparkplugNode(cfg("2.2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if _, err := g.sparkplugNode(cfg("1.0"), nil); err == nil || !strings.Contains(err.Error(), "primary_host_state") {
		t.Fatalf("primary_host_state 1.0 not passed to the node: %v", err)
	}
}
