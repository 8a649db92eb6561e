package buffer

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCleanMarkerSelectsTheCheck: after a clean Close, Open trusts the file
// beyond its meta pages and freelist (the fast start); without the marker,
// or with one that does not match the file, it checks every page. The
// damage used here is one only the full check sees: a record whose version
// byte rotted.
func TestCleanMarkerSelectsTheCheck(t *testing.T) {
	g := buildGoodFile(t, false)
	// Find a live record's value on its leaf page and break its version byte.
	var damaged []byte
	for seq, page := range g.live {
		p := g.raw[int64(page)*g.ps : int64(page+1)*g.ps]
		_, elems, err := parseNode(p, page, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			if len(e.key) == 8 && bytes.Equal(e.key, seqKey(seq)) {
				off := int64(page)*g.ps + int64(cap(p)-cap(e.value))
				damaged = bytes.Clone(g.raw)
				damaged[off] ^= 0x40
			}
		}
		break
	}
	if damaged == nil {
		t.Fatal("no record found to damage")
	}
	for _, tc := range []struct {
		name       string
		marker     func(path string) error
		quarantine bool
	}{
		{"matching marker: quick check", writeCleanMarker, false},
		{"no marker: full check", func(string) error { return nil }, true},
		{"marker of another state of the file: full check", func(path string) error {
			if err := writeCleanMarker(path); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write(make([]byte, 4096)) // grows: size and mtime differ
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := tc.marker(path); err != nil {
				t.Fatal(err)
			}
			q := openTest(t, path, Options{})
			if _, err := os.Stat(path + ".clean"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("marker still there while open (%v): a crash now would skip the full check", err)
			}
			if got := q.Stats().Quarantined != ""; got != tc.quarantine {
				t.Fatalf("quarantined %v, want %v", got, tc.quarantine)
			}
			if tc.quarantine {
				q.Close()
				return
			}
			// The quick check missed it; reading finds it, and then Close
			// must not vouch for the file.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := q.Read(ctx, 100_000); !errors.Is(err, errBadRecord) {
				t.Fatalf("Read over the rotted record: %v, want a malformed-record error", err)
			}
			q.Close()
			if _, err := os.Stat(path + ".clean"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Close left a clean marker after a read found damage (%v)", err)
			}
			q = openTest(t, path, Options{})
			defer q.Close()
			if s := q.Stats(); s.Quarantined == "" || s.Salvaged != uint64(len(g.live)-1) {
				t.Fatalf("next start: %+v; want quarantined with %d records salvaged", s, len(g.live)-1)
			}
		})
	}
}

// TestCloseLeavesAMarkerAndASyncedFreelist: what makes the next start fast.
func TestCloseLeavesAMarkerAndASyncedFreelist(t *testing.T) {
	path, raw := healthyFile(t, t.TempDir())
	m, err := os.ReadFile(path + ".clean")
	if err != nil {
		t.Fatalf("no clean-shutdown marker after Close: %v", err)
	}
	if want, _ := cleanMarker(path); string(m) != want {
		t.Fatalf("marker %q does not match the file (%q)", m, want)
	}
	bf, err := openBoltFile(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := bf.current(); cur.freelist == noFreelist {
		t.Fatal("Close left no freelist: the next Open walks every page to rebuild it")
	}
}
