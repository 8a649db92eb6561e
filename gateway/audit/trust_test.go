package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withLANListener adds a TLS listener that requires client certificates
// from lan-ca.pem, so that its client_ca_file is audited too.
func withLANListener(example string) string {
	return strings.Replace(example, "    - {name: local, address: 127.0.0.1:1883}",
		"    - {name: local, address: 127.0.0.1:1883}\n    - {name: lan, address: 0.0.0.0:8883, tls: {cert_file: /etc/lintel/bldg-a-gw1.pem, key_file: /etc/lintel/bldg-a-gw1.key, client_ca_file: /etc/lintel/lan-ca.pem}}", 1)
}

// TestTrustFilesAudited: every file that decides whom the gateway trusts
// (signer keys, CA certificates, the config and its profiles, the users
// file) and every directory above it must be writable only by root or the
// service user.
func TestTrustFilesAudited(t *testing.T) {
	example, err := os.ReadFile("../../configs/lintel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := withLANListener(string(example))
	for _, tc := range []struct {
		name   string
		weaken func(t *testing.T, etc string)
		want   []string // fragments of FAIL reasons; none: all pass
	}{
		{"as installed", func(*testing.T, string) {}, nil},
		{"signer key writable by others", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "signers", "ops.pub"), 0o646) },
			[]string{"uplink.commands.signers[0] " + "ETC/signers/ops.pub is writable by group or others (mode 0646)"}},
		{"signers directory group-writable", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "signers"), 0o770) },
			[]string{"directory ETC/signers (holding uplink.commands.signers[0]) is writable by group or others (mode 0770)"}},
		{"client CA group-writable", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "lan-ca.pem"), 0o664) },
			[]string{"local_broker.listeners[1].tls.client_ca_file ETC/lan-ca.pem is writable by group or others"}},
		{"uplink CA writable by others", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "cloud-ca.pem"), 0o602) },
			[]string{"uplink.tls.ca_file ETC/cloud-ca.pem is writable by group or others"}},
		{"config file writable by others", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "lintel.yaml"), 0o666) },
			[]string{"config file ETC/lintel.yaml is writable by group or others"}},
		{"profile writable by group", func(t *testing.T, etc string) { chmod(t, filepath.Join(etc, "profiles", "energy-meter.yaml"), 0o620) },
			[]string{"devices[1].profile ETC/profiles/energy-meter.yaml is writable by group or others"}},
		{"config directory writable by others", func(t *testing.T, etc string) { chmod(t, etc, 0o707) },
			[]string{"directory ETC (holding config file) is writable by group or others (mode 0707)"}},
		{"config directory is someone else's", func(t *testing.T, etc string) {
			if os.Getuid() != 0 {
				t.Skip("chown needs root")
			}
			if err := os.Chown(etc, 4242, -1); err != nil {
				t.Fatal(err)
			}
		}, []string{"directory ETC (holding config file) belongs to uid 4242, neither root nor the service user"}},
		{"config file is someone else's", func(t *testing.T, etc string) {
			if os.Getuid() != 0 {
				t.Skip("chown needs root")
			}
			if err := os.Chown(filepath.Join(etc, "lintel.yaml"), 4242, -1); err != nil {
				t.Fatal(err)
			}
		}, []string{"config file ETC/lintel.yaml belongs to uid 4242, neither root nor the service user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path, uid := install(t, text, 365*24*time.Hour)
			etc := filepath.Join(dir, "etc")
			if err := os.WriteFile(filepath.Join(etc, "lan-ca.pem"), []byte("ca"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Lchown(filepath.Join(etc, "lan-ca.pem"), uid, -1)
			tc.weaken(t, etc)
			var fails []string
			for _, f := range audit(t, path, uid) {
				if f.Check == CheckTrustFiles && f.Status == Fail {
					fails = append(fails, strings.ReplaceAll(f.Reason, etc, "ETC"))
					if f.Fix == "" {
						t.Errorf("FAIL without a fix: %s", f.Reason)
					}
				}
			}
			all := strings.Join(fails, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no FAIL mentioning %q; got:\n%s", w, all)
				}
			}
			if len(tc.want) == 0 && len(fails) > 0 {
				t.Errorf("FAILs on a careful install:\n%s", all)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
