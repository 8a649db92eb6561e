package gateway

import (
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"

	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/statuspage"
)

func TestStatusRolesComeFromTheACL(t *testing.T) {
	cfg := &config.Config{}
	cfg.LocalBroker.ACL = []config.ACLRule{
		{User: "*", Status: []string{"view"}},
		{User: "tech", Status: []string{"operate"}},
		{User: "bms", Write: []string{"lintel/#"}},
	}
	g := &Gateway{cfg: cfg}
	for user, want := range map[string]statuspage.Role{"tech": statuspage.RoleOperate, "anyone": statuspage.RoleView, "bms": statuspage.RoleView} {
		if got := g.statusRole(user); got != want {
			t.Errorf("role of %s = %v, want %v", user, got, want)
		}
	}
	cfg.LocalBroker.ACL = cfg.LocalBroker.ACL[1:] // without the "*" rule a write grant gives no page role
	if got := g.statusRole("bms"); got != statuspage.RoleNone {
		t.Errorf("bms without a status key has role %v", got)
	}
}

func TestBusStatusFromTheAdapterReport(t *testing.T) {
	r := reportOf(nil)
	now := time.Now()
	failed, retry := now.Add(-10*time.Second), now.Add(time.Minute)
	r.Device(adapters.DeviceState{Name: "meter", LastError: "timeout", LastErrorAt: failed, Failures: 3, RetryAt: retry})
	r.Device(adapters.DeviceState{Name: "ahu", Online: true})
	r.Counter("bus_requests_total", 80)
	r.Counter("bus_timeouts_total", 3)
	r.Counter("bus_exceptions_total", 0)
	r.Histogram("bus_response_seconds", []float64{0.01, 0.1}, []uint64{2, 2, 0}, 0.04)
	b := busStatus("plant", "modbus-tcp", []string{"ahu every 1s"}, r)
	if b.Poll != "polls ahu every 1s; 80 requests; mean answer 10ms" || b.LastError != "3 timeouts since start" {
		t.Errorf("poll %q, error %q", b.Poll, b.LastError)
	}
	if len(b.Devices) != 2 || b.Devices[0].Name != "ahu" || !b.Devices[0].Online || b.Devices[1].Online {
		t.Fatalf("devices %+v", b.Devices)
	}
	if ahu := b.Devices[0]; ahu.Circuit != "closed" || ahu.LastError != "" || !ahu.RetryAt.IsZero() {
		t.Errorf("healthy device %+v", ahu)
	}
	want := statuspage.Device{Name: "meter", Circuit: "open", RetryAt: retry, LastError: "timeout", LastErrorAt: failed, Failures: 3}
	if m := b.Devices[1]; m != want {
		t.Errorf("failing device %+v, want %+v", m, want)
	}
}
