package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/config"
)

func statusFindings(t *testing.T, sp *config.StatusPage, acl ...config.ACLRule) []Finding {
	t.Helper()
	cfg := &config.Config{StatusPage: sp}
	cfg.LocalBroker.ACL = acl
	a := &auditor{cfg: cfg, opts: Options{Now: time.Now()}}
	a.statusPage()
	return a.findings
}

func TestStatusPageExposedWithoutTLSFails(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9109", "192.0.2.7:9109", ":9109"} {
		f := statusFindings(t, &config.StatusPage{Address: addr})
		if len(f) != 1 || f[0].Status != Fail || !strings.Contains(f[0].Reason, addr) || !strings.Contains(f[0].Fix, "status_page.tls") {
			t.Errorf("%s without TLS: %+v, want one FAIL naming it with a fix", addr, f)
		}
	}
	cases := map[string]*config.StatusPage{
		"off":      nil,
		"loopback": {Address: "127.0.0.1:9109"},
		"tls":      {Address: "0.0.0.0:9109", TLS: &config.ServerTLS{CertFile: "c", KeyFile: "k"}},
	}
	for name, sp := range cases {
		f := statusFindings(t, sp)
		if len(f) != 1 || f[0].Status != Pass {
			t.Errorf("%s: %+v, want one PASS", name, f)
		}
	}
	f := statusFindings(t, &config.StatusPage{Address: "127.0.0.1:9109"}, config.ACLRule{User: "*", Status: []string{"view", "operate"}})
	if len(f) != 2 || f[1].Status != Warn {
		t.Errorf("operate for every user: %+v, want a WARN", f)
	}
}
