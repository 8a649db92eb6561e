package buffer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// healthyFile makes a closed buffer with three records and returns its path
// and bytes.
func healthyFile(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{})
	if err := q.Append(context.Background(), rec(1), rec(2), rec(3)); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, raw
}

// assertUntouched: no quarantine, and the file still holds its records.
func assertUntouched(t *testing.T, path string, raw []byte) {
	t.Helper()
	if m, _ := filepath.Glob(path + ".bad-*"); len(m) != 0 {
		t.Fatalf("a healthy file was quarantined: %v", m)
	}
	now, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(now, raw) {
		t.Fatalf("the healthy file was changed or moved: %v", err)
	}
}

// TestPermissionErrorsAreRefusedNotQuarantined: EACCES, EPERM and EROFS
// mean the file cannot be reached, not that it is damaged.
func TestPermissionErrorsAreRefusedNotQuarantined(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		is    error
		fix   string
	}{
		{syscall.EACCES, fs.ErrPermission, "chown -R lintel: "},
		{syscall.EPERM, fs.ErrPermission, "chown -R lintel: "},
		{syscall.EROFS, syscall.EROFS, "writable file system"},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			dir := t.TempDir()
			path, raw := healthyFile(t, dir)
			opts := Options{openFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				if name == path {
					return nil, &fs.PathError{Op: "open", Path: name, Err: tc.errno}
				}
				return os.OpenFile(name, flag, perm)
			}}
			q, err := Open(path, opts)
			if err == nil {
				q.Close()
				t.Fatal("Open succeeded on a file it cannot open")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.fix+dir) && !strings.Contains(err.Error(), tc.fix) {
				t.Fatalf("Open: %v; want errors.Is %v and the fix %q", err, tc.is, tc.fix)
			}
			assertUntouched(t, path, raw)
		})
	}
}

// TestImmutableFileIsRefused: a real EPERM (chattr +i refuses writes even to
// root).
func TestImmutableFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	path, raw := healthyFile(t, dir)
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i unavailable here (%v: %s): the injected EPERM case covers the classification", err, out)
	}
	defer exec.Command("chattr", "-i", path).Run()
	q, err := Open(path, Options{})
	if err == nil {
		q.Close()
		t.Fatal("Open succeeded on an immutable file")
	}
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "chown -R lintel: "+dir) {
		t.Fatalf("Open: %v; want a permission error naming chown -R lintel: %s", err, dir)
	}
	assertUntouched(t, path, raw)
}

// TestReadOnlyDataDirIsRefused: a real EROFS from a read-only bind mount.
func TestReadOnlyDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	path, raw := healthyFile(t, dir)
	os.Remove(path + ".clean") // the worst case: Open must write before it reads
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount here (%v: %s): the injected EROFS case covers the classification", err, out)
	}
	defer exec.Command("umount", dir).Run()
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only (%v: %s)", err, out)
	}
	q, err := Open(path, Options{})
	if err == nil {
		q.Close()
		t.Fatal("Open succeeded on a read-only file system")
	}
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "writable file system") {
		t.Fatalf("Open: %v; want EROFS with the fix named", err)
	}
	assertUntouched(t, path, raw)
	// ReadStats still works: `lintel buffer stats` is how one looks.
	if s, err := ReadStats(path); err != nil || s.Records != 3 {
		t.Fatalf("ReadStats on the read-only file: %+v %v", s, err)
	}
}

const permChildEnv = "LINTEL_BUFFER_PERM_CHILD"

// TestPermChild opens the buffer named in its environment and reports.
func TestPermChild(t *testing.T) {
	path := os.Getenv(permChildEnv)
	if path == "" {
		t.Skip("helper process for TestFileOwnedByRootIsRefused")
	}
	q, err := Open(path, Options{})
	if err == nil {
		q.Close()
		os.Stdout.WriteString("opened\n")
		return
	}
	if errors.Is(err, fs.ErrPermission) {
		os.Stdout.WriteString("permission: ")
	}
	os.Stdout.WriteString(err.Error() + "\n")
}

// TestFileOwnedByRootIsRefused is the field case: the data directory
// belongs to the service user, but buffer.db was created by root (someone
// ran the gateway as root once). The gateway, run as another user, must
// refuse with the fix, not move the file aside.
func TestFileOwnedByRootIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a file owned by another user")
	}
	const nobody = 65534
	base := t.TempDir()
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path, raw := healthyFile(t, dir)
	// The child needs to reach the directory and run a copy of this binary.
	for _, d := range []string{filepath.Dir(base), base} {
		os.Chmod(d, 0o755)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Skipf("chown: %v", err)
	}
	os.Chown(path+".seq", nobody, nobody)
	bin := filepath.Join(base, "buffer.test")
	if err := copyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := childCommand(bin, "-test.run=^TestPermChild$")
	cmd.Env = append(os.Environ(), permChildEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "permission") {
		t.Fatalf("child: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "permission: ") || !strings.Contains(string(out), "chown -R lintel: "+dir) {
		t.Fatalf("child output %q; want a permission error naming chown -R lintel: %s", out, dir)
	}
	assertUntouched(t, path, raw)
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
