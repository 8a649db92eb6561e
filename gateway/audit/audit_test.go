package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/localbroker"
)

// install lays out what a careful integrator installs for the example
// config under dir: users file, uplink certificates, data dir, all private
// to the service user. It returns the config path and the service uid.
func install(t *testing.T, example string, certValid time.Duration) (dir, path string, uid int) {
	t.Helper()
	dir = t.TempDir()
	uid = os.Getuid()
	if uid == 0 {
		uid = 65534 // as root, act for an unprivileged service user
	}
	etc, data := filepath.Join(dir, "etc"), filepath.Join(dir, "data")
	for _, d := range []string{etc, data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	users := localbroker.NewUsers()
	users.Set("dashboard", []byte("dashboard-password"))
	users.Set("bms", []byte("bms-password"))
	if err := users.WriteFile(filepath.Join(etc, "users")); err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.NewCA("cloud", time.Hour)
	pair, _ := ca.ClientValid("bldg-a-gw1", time.Now().Add(-time.Hour), time.Now().Add(certValid))
	files := map[string][]byte{"cloud-ca.pem": ca.CertPEM, "bldg-a-gw1.pem": pair.CertPEM, "bldg-a-gw1.key": pair.KeyPEM}
	os.MkdirAll(filepath.Join(etc, "signers"), 0o700)
	if _, err := command.GenerateKey(filepath.Join(etc, "signers", "ops")); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(etc, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	profiles, _ := filepath.Glob("../../configs/profiles/*.yaml")
	os.MkdirAll(filepath.Join(etc, "profiles"), 0o700)
	for _, p := range profiles {
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(etc, "profiles", filepath.Base(p)), b, 0o600)
	}
	text := strings.ReplaceAll(example, "/etc/lintel/", etc+"/")
	text = strings.ReplaceAll(text, "/var/lib/lintel", data)
	path = filepath.Join(etc, "lintel.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, -1) })
	return dir, path, uid
}

func audit(t *testing.T, path string, uid int) []Finding {
	t.Helper()
	cfg, problems, err := config.LoadForAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	return Run(cfg, problems, Options{ServiceUID: uid})
}

func TestExampleConfigPasses(t *testing.T) {
	example, err := os.ReadFile("../../configs/lintel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, path, uid := install(t, string(example), 365*24*time.Hour)
	findings := audit(t, path, uid)
	for _, f := range findings {
		if f.Status == Fail {
			t.Errorf("FAIL %s: %s", f.Check, f.Reason)
		}
	}
	if len(findings) < 8 {
		t.Fatalf("only %d findings: %+v", len(findings), findings)
	}
}

// TestWeakConfigFailsOnEveryProblem plants one problem per check and
// expects each to be named.
func TestWeakConfigFailsOnEveryProblem(t *testing.T) {
	weak := `gateway: {id: gw1, data_dir: /var/lib/lintel}
metrics: {address: 0.0.0.0:9108}
local_broker:
  listeners:
    - {name: lan, address: 0.0.0.0:1883}
  users_file: /etc/lintel/users
  acl:
    - {user: "*", write: ["lintel/#"]}
    - {user: dashboard, write: ["#"]}
uplink:
  broker: mqtts://cloud.example.com:8883
  tls: {ca_file: /etc/lintel/users, cert_file: /etc/lintel/bldg-a-gw1.pem, key_file: /etc/lintel/bldg-a-gw1.key}
buffer: {max_bytes: 100000GiB}
buses: [{name: doors, type: serial-line, port: /dev/ttyUSB1}]
devices:
  - name: door
    bus: doors
    events: [{name: access, match: '^EVT CARD=(?P<card>\d+) NAME=(?P<holder_name>.*)$', privacy: {card: pseudonymize}}]
    commands: [{name: unlock, send: "UNLOCK\r\n", critical: true}, {name: release, send: "REL\r\n", unsigned_writes: true}]
`
	dir, path, _ := install(t, weak, -time.Minute) // expired a minute ago
	os.Chmod(filepath.Join(dir, "etc", "users"), 0o644)
	os.Chmod(filepath.Join(dir, "etc", "bldg-a-gw1.key"), 0o640)
	os.Chmod(filepath.Join(dir, "data"), 0o755)
	findings := audit(t, path, 0) // and run as root

	want := map[string][]string{
		CheckConfig:      {"0.0.0.0:1883"},
		CheckListeners:   {`"lan" accepts plain MQTT on the network address 0.0.0.0:1883`},
		CheckACL:         {"every user write command topics", `user "dashboard" write to every topic`},
		CheckSecretFiles: {"users_file", "(mode 0644)", "uplink.tls.key_file", "(mode 0640)", "not the service user"},
		CheckUplinkTLS:   {"holds no usable CA certificate"},
		CheckUplinkCert:  {"expired"},
		CheckBuffer:      {"more than the"},
		CheckRoot:        {"root"},
		CheckDataDir:     {"mode 0755"},
		CheckPrivacy:     {`"holder_name" looks personal`},
		CheckSigners:     {"door/unlock", "no uplink.commands.signers"},
		CheckMetrics:     {"0.0.0.0:9108"},
		CheckUnsigned:    {`command "door/release" is written without a signature`},
		CheckTrustFiles:  {"lintel.yaml belongs to uid", "neither root nor the service user (uid 0)"},
	}
	for check, fragments := range want {
		var reasons []string
		for _, f := range findings {
			if f.Check == check && f.Status == Fail {
				reasons = append(reasons, f.Reason)
				if f.Fix == "" {
					t.Errorf("%s FAIL without a fix: %s", check, f.Reason)
				}
			}
		}
		all := strings.Join(reasons, "\n")
		for _, frag := range fragments {
			if !strings.Contains(all, frag) {
				t.Errorf("check %s: no FAIL mentioning %q; got:\n%s", check, frag, all)
			}
		}
	}
	if got := len(Failed(findings)); got != len(want) {
		t.Errorf("%d checks failed, want %d: %v", got, len(want), Failed(findings))
	}
}

func TestCertificateExpiringSoonWarns(t *testing.T) {
	example, _ := os.ReadFile("../../configs/lintel.example.yaml")
	_, path, uid := install(t, string(example), 10*24*time.Hour)
	for _, f := range audit(t, path, uid) {
		if f.Check == CheckUplinkCert {
			if f.Status != Warn || !strings.Contains(f.Reason, "expires in") {
				t.Fatalf("certificate expiring in 10 days: %+v", f)
			}
			return
		}
	}
	t.Fatal("no uplink-cert finding")
}

// TestUnsignedDoorWritesFail: an unsigned write is acceptable for a
// setpoint, never for something that looks like a door, lock, alarm or relay.
func TestUnsignedDoorWritesFail(t *testing.T) {
	example, _ := os.ReadFile("../../configs/lintel.example.yaml")
	text := strings.Replace(string(example), "writable: true, min: 16, max: 28}",
		"writable: true, min: 16, max: 28, unsigned_writes: true}\n      - {name: door_2_release, table: coil, address: 11, type: bool, writable: true, unsigned_writes: true}", 1)
	if text == string(example) {
		t.Fatal("the example has no setpoint line to edit")
	}
	_, path, uid := install(t, text, 365*24*time.Hour)
	findings := audit(t, path, uid)
	var fails []string
	for _, f := range findings {
		if f.Check == CheckUnsigned && f.Status == Fail {
			fails = append(fails, f.Reason)
		}
	}
	line := 1 + strings.Count(text[:strings.Index(text, "door_2_release")], "\n")
	if len(fails) != 1 || !strings.Contains(fails[0], fmt.Sprintf(`point "ahu-1/door_2_release" is written without a signature (%s:%d: devices[0].points[3].unsigned_writes)`, path, line)) {
		t.Fatalf("unsigned-writes FAILs %q, want exactly door_2_release", fails)
	}
	if got := Failed(findings); len(got) != 1 || got[0] != CheckUnsigned {
		t.Fatalf("failed checks %v, want only %s", got, CheckUnsigned)
	}

	// Without the door point, the unsigned setpoint passes and is named.
	text = strings.Replace(string(example), "writable: true, min: 16, max: 28}", "writable: true, min: 16, max: 28, unsigned_writes: true}", 1)
	_, path, uid = install(t, text, 365*24*time.Hour)
	for _, f := range audit(t, path, uid) {
		if f.Check == CheckUnsigned && (f.Status != Pass || !strings.Contains(f.Reason, "ahu-1/setpoint")) {
			t.Fatalf("unsigned setpoint: %+v", f)
		}
	}
}
