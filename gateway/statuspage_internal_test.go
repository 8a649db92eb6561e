package gateway

import (
	"testing"

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
