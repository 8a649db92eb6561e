package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
