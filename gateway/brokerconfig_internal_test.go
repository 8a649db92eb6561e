package gateway

import (
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/localbroker"
)

func TestBrokerConfigMapsEveryLimit(t *testing.T) {
	cfg, err := config.Parse([]byte(`gateway: {id: gw1}
local_broker:
  limits: {max_packet: 8KiB, max_clients: 7, connect_timeout: 3s, max_pending: 40, max_pending_per_source: 3,
           max_filters_per_client: 20, max_filters: 300, max_password_checks: 4}
`), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := brokerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := localbroker.Limits{MaxPacket: 8 << 10, MaxClients: 7, ConnectTimeout: 3 * time.Second, MaxPending: 40,
		MaxPendingPerSource: 3, MaxFiltersPerClient: 20, MaxFilters: 300, MaxPasswordChecks: 4}
	if bc.Limits != want {
		t.Fatalf("limits = %+v, want %+v", bc.Limits, want)
	}
}
