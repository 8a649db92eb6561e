package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/localbroker"
)

func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runCommand(context.Background(), args[0], args[1:], strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCheckListsEveryProblemAndExits1(t *testing.T) {
	_, stderr, err := run(t, "", "check", "--config", "../../gateway/config/testdata/three-mistakes.yaml")
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("exit %v, want 1", err)
	}
	for _, want := range []string{"3 problem(s)", "three-mistakes.yaml:9: devices[0].points[0].type", "three-mistakes.yaml:10:", "three-mistakes.yaml:12: buffer.full_policy"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCheckOK(t *testing.T) {
	stdout, _, err := run(t, "", "check", "--config", "../../configs/lintel.example.yaml")
	if err != nil || strings.TrimSpace(stdout) != "ok" {
		t.Fatalf("check example: %v %q", err, stdout)
	}
}

func TestPasswdAddListRemove(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	if _, _, err := run(t, "s3cret-password\n", "passwd", "add", "--file", file, "bms"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(string(data), "s3cret") || !strings.HasPrefix(string(data), "bms:$2a$") {
		t.Fatalf("users file is not bcrypt: %q", data)
	}
	users, err := localbroker.LoadUsers(file)
	if err != nil || !users.Check("bms", []byte("s3cret-password")) {
		t.Fatalf("password does not check: %v", err)
	}
	if stdout, _, _ := run(t, "", "passwd", "list", "--file", file); stdout != "bms\n" {
		t.Fatalf("list = %q", stdout)
	}
	if _, _, err := run(t, "short\n", "passwd", "add", "--file", file, "x"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	if _, _, err := run(t, "", "passwd", "remove", "--file", file, "bms"); err != nil {
		t.Fatal(err)
	}
	if stdout, _, _ := run(t, "", "passwd", "list", "--file", file); stdout != "" {
		t.Fatalf("after remove, list = %q", stdout)
	}
}

func TestUnknownCommand(t *testing.T) {
	_, stderr, err := run(t, "", "frobnicate")
	if code, ok := err.(exitCode); !ok || code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("%v %q", err, stderr)
	}
}

// weakInstall writes a config whose only audit failure is a world-readable
// users file.
func weakInstall(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	users := localbroker.NewUsers()
	users.Set("dash", []byte("dash-password"))
	users.WriteFile(filepath.Join(dir, "users"))
	os.Chmod(filepath.Join(dir, "users"), 0o644)
	cfg := "gateway: {id: gw1, data_dir: data}\nmetrics: {address: '127.0.0.1:0'}\nlocal_broker:\n  listeners: [{name: local, address: 127.0.0.1:0}]\n  users_file: users\n  acl: [{user: dash, read: ['lintel/#']}]\n"
	path := filepath.Join(dir, "lintel.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	return path
}

func TestAuditExitCodesAndReport(t *testing.T) {
	path := weakInstall(t)
	stdout, _, err := run(t, "", "audit", "--config", path, "--user", strconv.Itoa(os.Getuid()))
	if code, ok := err.(exitCode); !ok || code != 1 {
		t.Fatalf("audit of a world-readable users file: %v, want exit 1", err)
	}
	if !strings.Contains(stdout, "FAIL  secret-files") || !strings.Contains(stdout, "fix: chmod 600") {
		t.Fatalf("report does not name the problem and the fix:\n%s", stdout)
	}
	t.Logf("lintel audit output:\n%s", stdout)
	os.Chmod(filepath.Join(filepath.Dir(path), "users"), 0o600)
	if os.Getuid() != 0 {
		if _, _, err := run(t, "", "audit", "--config", path); err != nil {
			t.Fatalf("audit after the fix: %v", err)
		}
	}
}

func TestRunRefusesOnAuditFailureUnlessOverridden(t *testing.T) {
	path := weakInstall(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start and stop at once
	var stderr bytes.Buffer
	err := runCommand(ctx, "run", []string{"--config", path}, strings.NewReader(""), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "secret-files") {
		t.Fatalf("run with a failing audit: %v", err)
	}
	overrides := []string{"--override-audit", "secret-files"}
	if os.Getuid() == 0 {
		overrides = append(overrides, "--override-audit", "run-as-root")
	}
	stderr.Reset()
	err = runCommand(ctx, "run", append([]string{"--config", path}, overrides...), strings.NewReader(""), io.Discard, &stderr)
	if err != nil {
		t.Fatalf("run with overrides: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "SECURITY AUDIT FAILURE OVERRIDDEN") {
		t.Fatalf("override not logged loudly:\n%s", stderr.String())
	}
}

func TestModbusCommissioning(t *testing.T) {
	srv, err := modbustest.NewTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u := srv.Unit(3)
	u.Holding[100], u.Holding[101] = 0x41AC, 0x0000
	srv.Unit(9)
	url := "tcp://" + srv.Addr
	out, _, err := run(t, "", "modbus", "read", "--url", url, "--unit", "3", "--address", "100", "--type", "float32")
	if err != nil || !strings.Contains(out, ": 21.5") {
		t.Fatalf("read: %v %q", err, out)
	}
	if _, _, err := run(t, "", "modbus", "write", "--url", url, "--unit", "3", "--address", "5", "--value", "42"); err != nil {
		t.Fatal(err)
	}
	if u.Holding[5] != 42 {
		t.Fatalf("register 5 = %d after write", u.Holding[5])
	}
	out, _, err = run(t, "", "modbus", "scan", "--url", url, "--from", "1", "--to", "12", "--timeout", "200ms")
	if err != nil || !strings.Contains(out, "unit   3 answers") || !strings.Contains(out, "unit   9 answers") || !strings.Contains(out, "2 unit(s) found") {
		t.Fatalf("scan: %v\n%s", err, out)
	}
}

// TestCheckPlanKeepsUnitZero: `unit: 0` is a real unit id; only a missing
// unit defaults to 1 (issue 12 item 11).
func TestCheckPlanKeepsUnitZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lintel.yaml")
	cfg := `gateway: {id: gw1}
buses:
  - {name: plant, type: modbus-tcp, address: 127.0.0.1:502}
devices:
  - {name: zero, bus: plant, unit: 0, points: [{name: v, table: holding, address: 1, type: uint16}]}
  - {name: unset, bus: plant, points: [{name: v, table: holding, address: 1, type: uint16}]}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "", "check", "--plan", "--config", path)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, stderr)
	}
	for _, want := range []string{"zero (unit 0,", "unset (unit 1,"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, stdout)
		}
	}
}

// TestCheckWarnsOnUnsignedDoor: check accepts the file (exit 0) but warns,
// with the line, about an unsigned write that looks like a door.
func TestCheckWarnsOnUnsignedDoor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lintel.yaml")
	cfg := `gateway: {id: gw1}
buses: [{name: plant, type: modbus-tcp, address: 127.0.0.1:502}]
devices:
  - name: io
    bus: plant
    points:
      - {name: door_1_release, table: coil, address: 0, type: bool, writable: true, unsigned_writes: true}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "", "check", "--config", path)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "warning: "+path+`:7: devices[0].points[0].unsigned_writes: point "io/door_1_release" is written without a signature`) {
		t.Fatalf("no warning with the line:\n%s", stdout)
	}
}

func TestCheckSampleWarnsOnNames(t *testing.T) {
	dir := t.TempDir()
	path, log := filepath.Join(dir, "lintel.yaml"), filepath.Join(dir, "serial.log")
	cfg := `gateway: {id: gw1}
buses: [{name: doors, type: serial-line, port: /dev/ttyUSB1}]
devices:
  - name: front-door
    bus: doors
    events:
      - {name: visit, match: '^VISIT (?P<door>\d+) WHO=(?P<who>.*)$'}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte("VISIT 1 WHO=visitor\r\nVISIT 2 WHO=Jane Doe\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "", "check", "--config", path)
	if err != nil || strings.Contains(stdout, "warning") {
		t.Fatalf("without a sample: %v %s %s", err, stdout, stderr)
	}
	stdout, stderr, err = run(t, "", "check", "--config", path, "--sample", log)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "warning: "+path+`:7: devices[0].events[0].match: field "who" holds values that look like a person's name`) ||
		!strings.Contains(stdout, "first line 2") || !strings.HasSuffix(stdout, "ok\n") {
		t.Fatalf("no warning naming the field and the sample line:\n%s", stdout)
	}
	if _, _, err := run(t, "", "check", "--config", path, "--sample", filepath.Join(dir, "missing.log")); err == nil {
		t.Fatal("a missing sample file passed")
	}
}

// TestMain lets a test run the real main (os.Exit and all) in a child
// process: the child is this test binary with LINTEL_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("LINTEL_TEST_MAIN") == "1" {
		os.Args = append([]string{"lintel"}, strings.Fields(os.Getenv("LINTEL_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lintel runs the real main with args in a child process and returns its
// exit status and output.
func lintel(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "LINTEL_TEST_MAIN=1", "LINTEL_TEST_ARGS="+strings.Join(args, " "))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// goodInstall writes a config that passes the audit (a 0600 users file);
// its metrics address is metrics.
func goodInstall(t *testing.T, metrics string) string {
	t.Helper()
	path := weakInstall(t)
	dir := filepath.Dir(path)
	if err := os.Chmod(filepath.Join(dir, "users"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("127.0.0.1:0'"), []byte(metrics+"'"), 1)
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rootOverride is what `lintel run` needs in tests run as root.
func rootOverride() []string {
	if os.Getuid() == 0 {
		return []string{"--override-audit", "run-as-root"}
	}
	return nil
}

// TestRunStartErrorExits1 starts the real binary with its metrics port
// taken: it must print the error plainly and exit 1, not panic, and leave
// the buffer closed.
func TestRunStartErrorExits1(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := goodInstall(t, taken.Addr().String())
	code, _, stderr := lintel(t, append([]string{"run", "--config", path}, rootOverride()...)...)
	if code != 1 || strings.Contains(stderr, "panic") || !strings.Contains(stderr, "lintel: metrics.address: listen tcp "+taken.Addr().String()) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	q, err := buffer.Open(filepath.Join(filepath.Dir(path), "data", "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatalf("buffer after a failed start: %v", err)
	}
	q.Close()
}

// TestHelpAndExitCodes runs the real main: help is asked for, so it is
// printed and the exit status is 0; a usage mistake exits 2.
func TestHelpAndExitCodes(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		inStdout []string // what the help must show
	}{
		{[]string{"--help"}, 0, []string{"usage: lintel <command>", "buffer stats"}},
		{[]string{"-h"}, 0, []string{"usage: lintel <command>"}},
		{[]string{"help"}, 0, []string{"usage: lintel <command>"}},
		{[]string{"help", "sign"}, 0, []string{"usage: lintel sign --key NAME.key", "print a signed command envelope"}},
		{[]string{"run", "--help"}, 0, []string{"usage: lintel run --config F", "-config", "-override-audit", "-shutdown-timeout"}},
		{[]string{"run", "-h"}, 0, []string{"usage: lintel run", "-config"}},
		{[]string{"demo", "--help"}, 0, []string{"usage: lintel demo", "-data-dir"}},
		{[]string{"keygen", "--help"}, 0, []string{"usage: lintel keygen", "-out"}},
		{[]string{"sign", "--help"}, 0, []string{"usage: lintel sign", "-ttl"}},
		{[]string{"ports", "--help"}, 0, []string{"usage: lintel ports", "-by-id"}},
		{[]string{"passwd", "--help"}, 0, []string{"usage: lintel passwd add|remove|list"}},
		{[]string{"passwd", "add", "--help"}, 0, []string{"usage: lintel passwd", "-file"}},
		{[]string{"buffer", "--help"}, 0, []string{"usage: lintel buffer stats"}},
		{[]string{"buffer", "stats", "--help"}, 0, []string{"usage: lintel buffer stats", "-json"}},
		{[]string{"modbus", "--help"}, 0, []string{"usage: lintel modbus read|write|scan"}},
		{[]string{"modbus", "read", "--help"}, 0, []string{"usage: lintel modbus", "-unit"}},
		{[]string{"check", "--help"}, 0, nil}, // check's own flags belong to its owner; exit 0 is the habit
		{[]string{"audit", "--help"}, 0, nil},
		{[]string{"frobnicate"}, 2, nil},
		{[]string{"help", "frobnicate"}, 2, nil},
		{nil, 2, nil},
		{[]string{"run", "--no-such-flag"}, 2, nil},
		{[]string{"passwd"}, 2, nil},
		{[]string{"buffer", "flush"}, 2, nil},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := lintel(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.inStdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if tc.code == 2 && !strings.Contains(stderr, "usage: lintel") {
				t.Errorf("a usage mistake does not show the usage on stderr:\n%s", stderr)
			}
		})
	}
}

// TestRunReloadsOnSIGHUPAndStopsOnSIGTERM runs the real binary: SIGHUP
// reloads the configuration, SIGTERM stops it cleanly with exit 0.
func TestRunReloadsOnSIGHUPAndStopsOnSIGTERM(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := l.Addr().String()
	l.Close()
	path := goodInstall(t, metrics)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--config", path}, rootOverride()...)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "LINTEL_TEST_MAIN=1", "LINTEL_TEST_ARGS="+strings.Join(args, " "))
	var stderr testwait.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waited bool // exited was received from
	defer func() {
		if !waited {
			cmd.Process.Kill()
			<-exited
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; stderr:\n%s", what, stderr.String())
			}
			select {
			case err := <-exited:
				waited = true
				t.Fatalf("lintel run exited (%v) while waiting for %s; stderr:\n%s", err, what, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitFor("/healthz to answer", func() bool {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	waitFor("the gateway running", func() bool { return strings.Contains(stderr.String(), "gateway running") })
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the reload", func() bool {
		s := stderr.String()
		return strings.Contains(s, "configuration reloaded") || strings.Contains(s, "reload refused")
	})
	if s := stderr.String(); !strings.Contains(s, "configuration reloaded") {
		t.Fatalf("SIGHUP did not reload:\n%s", s)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		waited = true
		if err != nil || strings.Contains(stderr.String(), "panic") {
			t.Fatalf("after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("lintel run did not stop on SIGTERM:\n%s", stderr.String())
	}
}
