package privacy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyCreatedOnceStableAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "privacy.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Pseudonym("0012345") != k2.Pseudonym("0012345") {
		t.Fatal("pseudonym changed after reloading the key")
	}
	other, _ := LoadOrCreateKey(filepath.Join(t.TempDir(), "privacy.key"))
	if other.Pseudonym("0012345") == k1.Pseudonym("0012345") {
		t.Fatal("two sites produce the same pseudonym")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
}

func TestApply(t *testing.T) {
	k := NewKey([]byte("0123456789abcdef0123456789abcdef"))
	out := k.Apply(map[string]string{"door": "2", "card": "0012345", "name": "Alice Example"},
		map[string]Rule{"card": Pseudonymize, "name": Drop})
	if out["door"] != "2" || out["name"] != "" || len(out) != 2 {
		t.Fatalf("apply = %v", out)
	}
	if p := out["card"]; !strings.HasPrefix(p, "p:") || len(p) != 34 || strings.Contains(p, "0012345") {
		t.Fatalf("pseudonym %q", p)
	}
	if k.Pseudonym("0012345") == k.Pseudonym("0012346") {
		t.Fatal("different badges share a pseudonym")
	}
}

func TestLooksPersonal(t *testing.T) {
	for _, f := range []string{"name", "card", "Badge_ID", "user", "email", "phone", "holder_name"} {
		if !LooksPersonal(f) {
			t.Errorf("%q not flagged", f)
		}
	}
	for _, f := range []string{"door", "event", "zone", "state"} {
		if LooksPersonal(f) {
			t.Errorf("%q flagged", f)
		}
	}
}
