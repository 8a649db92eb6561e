package statuspage

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/localbroker"
)

func TestClientCertificateLogsIn(t *testing.T) {
	ca, err := pki.NewCA("site CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("gateway", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := srvPair.TLS()
	gw := &fakeGateway{snap: sampleSnapshot()}
	// Served on a non-loopback-capable config: TLS makes that allowed.
	s, err := New(Config{
		Address: "0.0.0.0:9109",
		TLS:     &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		Users:   testUsers(t), Guard: localbroker.NewGuard(time.Minute), RoleOf: testRoles, Source: gw, Actions: gw,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Serve(ctx, l) })
	defer func() { cancel(); wg.Wait() }()
	base := "https://" + l.Addr().String()

	client := func(name string) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
		if name != "" {
			p, err := ca.Client(name, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := p.TLS()
			cfg.Certificates = []tls.Certificate{c}
		}
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: cfg}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, body := get(t, client("tech"), base+"/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "plant-7") || !strings.Contains(body, `id="reconnect"`) {
		t.Fatalf("certificate of operator tech: %s", resp.Status)
	}
	checkCookie(t, resp, sessionCookie, true)
	// A certificate for a name without a status role, or none, must log in.
	for _, name := range []string{"stranger", ""} {
		resp, _ := get(t, client(name), base+"/")
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("certificate %q: %s, want a redirect to the login", name, resp.Status)
		}
	}
}
