package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/uplink"
)

// Stats is a snapshot for status displays.
type Stats struct {
	Buffer        buffer.Stats
	Uplink        uplink.Stats
	PublishErrors uint64
	// InvalidTopics counts adapter messages refused because their device
	// or point is not a valid topic level.
	InvalidTopics uint64
}

// MetricsAddr is where /metrics and /healthz are served ("" when off).
func (g *Gateway) MetricsAddr() string {
	if g.metrics == nil {
		return ""
	}
	return g.metrics.Addr().String()
}

// Stats returns a snapshot of the gateway's counters.
func (g *Gateway) Stats() Stats {
	s := Stats{Buffer: g.queue.Stats(), PublishErrors: g.pubErrs.Load(), InvalidTopics: g.badTopics.Load()}
	if g.uplink != nil {
		s.Uplink = g.uplink.Stats()
	}
	return s
}

// statsFile is where a running gateway leaves a snapshot of the buffer's
// counters for `lintel buffer stats` (the bbolt file is locked while open).
const statsFile = "buffer-stats.json"

// BufferStats returns the buffer counters of the gateway configured by cfg:
// read from the file when no daemon runs, else from the snapshot the daemon
// writes every few seconds. live says which.
func BufferStats(cfg *config.Config) (s buffer.Stats, asOf time.Time, live bool, err error) {
	s, err = buffer.ReadStats(filepath.Join(cfg.Gateway.DataDir, "buffer.db"))
	if !errors.Is(err, buffer.ErrLocked) {
		return s, time.Now(), false, err
	}
	path := filepath.Join(cfg.Gateway.DataDir, statsFile)
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return s, time.Time{}, true, fmt.Errorf("the buffer is in use by a running gateway and its snapshot is unreadable: %w", rerr)
	}
	var snap struct {
		At    time.Time    `json:"at"`
		Stats buffer.Stats `json:"buffer"`
	}
	if err := json.Unmarshal(data, &snap); err != nil {
		return s, time.Time{}, true, fmt.Errorf("%s: %w", path, err)
	}
	return snap.Stats, snap.At, true, nil
}

// writeStats writes the snapshot atomically (mode 0600).
func (g *Gateway) writeStats() {
	data, _ := json.Marshal(struct {
		At    time.Time    `json:"at"`
		Stats buffer.Stats `json:"buffer"`
	}{time.Now(), g.queue.Stats()})
	path := filepath.Join(g.dataDir, statsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		g.log.Warn("cannot write buffer stats snapshot", "err", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		g.log.Warn("cannot write buffer stats snapshot", "err", err)
	}
}
