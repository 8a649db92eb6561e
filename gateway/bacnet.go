package gateway

import (
	"log/slog"

	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/gateway/config"
)

// newBACnet builds the adapter of a bacnet-ip bus and its devices; config
// validation already ran the adapter's own checks on them.
func newBACnet(cfg *config.Config, b config.Bus, log *slog.Logger) (*bacnet.Bus, error) {
	bc, err := cfg.BACnet(b.Name)
	if err != nil {
		return nil, err
	}
	return bacnet.New(bc, log)
}
