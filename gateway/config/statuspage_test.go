package config

import (
	"path/filepath"
	"testing"
)

func TestStatusPageOpenWithoutTLSRefused(t *testing.T) {
	wantProblems(t, problems(t, "status-page.yaml"),
		`3|status_page.address|address "0.0.0.0:9109" is not loopback, so the status page needs tls`,
		`6|local_broker.acl[0].status[1]|unknown value "admin"; want one of view, operate`)
}

func TestStatusPageWithTLS(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "status-page-tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sp := cfg.StatusPage
	if sp == nil || sp.TLS == nil || sp.TLS.CertFile != filepath.Join("testdata", "page.crt") {
		t.Fatalf("status page %+v: want TLS with paths resolved against the config", sp)
	}
	if got := cfg.LocalBroker.ACL[0].Status; len(got) != 2 || got[1] != "operate" {
		t.Errorf("acl status roles %v", got)
	}
}

func TestStatusPageOffByDefaultAndLoopbackWhenOn(t *testing.T) {
	cfg, err := Parse([]byte("gateway: {id: gw1}\n"), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StatusPage != nil {
		t.Errorf("status page on by default: %+v", cfg.StatusPage)
	}
	cfg, err = Parse([]byte("gateway: {id: gw1}\nstatus_page: {}\n"), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StatusPage == nil || cfg.StatusPage.Address != DefaultStatusPage {
		t.Errorf("status_page: {} gives %+v, want %s", cfg.StatusPage, DefaultStatusPage)
	}
}
