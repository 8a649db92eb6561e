package localbroker

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func unixLogin(sock, user, pass string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker("unix://" + sock).SetClientID("u-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return paho.ErrNotConnected
	}
	if tok.Error() == nil {
		c.Disconnect(0)
	}
	return tok.Error()
}

// TestHelperUnixBadLogins is not a test: TestUnixBackoffPerPeerUID runs the
// test binary as another user to fail logins on the socket.
func TestHelperUnixBadLogins(t *testing.T) {
	sock := os.Getenv("LINTEL_TEST_UNIX_SOCK")
	if sock == "" {
		t.Skip("helper process only")
	}
	for range guardFree + 1 {
		if unixLogin(sock, "alice", "guess") == nil {
			t.Fatal("wrong password accepted")
		}
	}
}

// TestUnixBackoffPerPeerUID: failed logins on the unix socket back off the
// peer's uid, not every local client: another uid on the socket and
// 127.0.0.1 TCP clients still log in.
func TestUnixBackoffPerPeerUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "mqtt.sock")
	b := startBroker(t, Config{
		Listeners: []Listener{{Name: "tcp", Address: "127.0.0.1:0"}, {Name: "sock", Kind: Unix, Address: sock}},
		Users:     users(t, "alice", "alice-password"),
		GuardBase: time.Minute,
	})
	os.Chmod(sock, 0o666) // let uid 65534 reach it in this test
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "-test.run", "^TestHelperUnixBadLogins$", "-test.count=1"}
	if qemu := os.Getenv("LINTEL_QEMU"); qemu != "" { // CI's armv6 run: the kernel cannot run bin itself
		args = append([]string{qemu}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "LINTEL_TEST_UNIX_SOCK="+sock, "HOME="+dir, "GOCOVERDIR="+dir)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper as uid 65534: %v\n%s", err, out)
	}
	if got := b.Counters().AuthFailures; got < guardFree {
		t.Fatalf("helper produced %d failures", got)
	}
	if err := unixLogin(sock, "alice", "alice-password"); err != nil {
		t.Fatalf("uid 0 on the socket was backed off by uid 65534's failures: %v", err)
	}
	if _, err := connect(b.Addr("tcp"), "alice", "alice-password"); err != nil {
		t.Fatalf("127.0.0.1 over TCP was backed off by a unix peer's failures: %v", err)
	}
}

// TestConnSourceUnixUID: a unix-socket connection is keyed by its peer uid.
func TestConnSourceUnixUID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := connSource(s), "uid:"+strconv.Itoa(os.Getuid()); got != want {
		t.Fatalf("connSource = %q, want %q", got, want)
	}
}
