package buffer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallFS mounts a tmpfs of the given size on a fresh directory, so that the
// file system really runs out of space (ENOSPC from bbolt's writes). It skips
// the test where mounting is not allowed.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test skipped: mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("disk-full test skipped: cannot mount a %s tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system is full and returns its name.
func fill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return name
		}
	}
}

// TestDiskFullDropOldestEvicts: on a full file system drop-oldest evicts the
// oldest records and stores the new ones, counting the evictions, instead of
// refusing the new records.
func TestDiskFullDropOldestEvicts(t *testing.T) {
	dir := smallFS(t, "1m")
	clk := &fakeClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	q := openTest(t, filepath.Join(dir, "buffer.db"), Options{MaxBytes: 1 << 30, FullPolicy: DropOldest, Now: clk.Now})
	defer q.Close()
	ctx := context.Background()
	recs := make([]Record, 20)
	var last uint64
	for i := range 600 { // about 2.8 MB of records into 1 MiB
		if i == 300 { // the buffer tries to grow again and finds the disk still full
			clk.Add(CommitFailureWindow + time.Second)
		}
		for j := range recs {
			recs[j] = bench200(j)
		}
		if err := q.Append(ctx, recs...); err != nil {
			t.Fatalf("append %d on a full disk with drop-oldest: %v", i, err)
		}
		last = recs[len(recs)-1].Seq
	}
	s := q.Stats()
	if s.Drops.DiskFull == 0 || s.Drops.Full != 0 {
		t.Fatalf("stats %+v; want evictions counted as disk_full (MaxBytes was never reached)", s)
	}
	if s.CommitFailuresRecent == 0 || !strings.Contains(s.LastCommitError, "no space") {
		t.Fatalf("stats %+v; want the disk-full attempts reported", s)
	}
	q.Rewind()
	got := readN(t, q, int(s.Records))
	if got[0].Seq != s.Drops.DiskFull+1 || got[len(got)-1].Seq != last {
		t.Fatalf("stored seqs %d..%d, want %d..%d: the oldest evicted, the newest kept", got[0].Seq, got[len(got)-1].Seq, s.Drops.DiskFull+1, last)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("hole between seq %d and %d: only the oldest may be evicted", got[i-1].Seq, got[i].Seq)
		}
	}
}

// TestDiskFullRejectNewAndRecovery: reject-new refuses the new records with
// ErrFull on a full file system; the recent-failure count that /healthz reads
// goes back to 0 once commits succeed again and the window has passed.
func TestDiskFullRejectNewAndRecovery(t *testing.T) {
	dir := smallFS(t, "1m")
	clk := &fakeClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	q := openTest(t, filepath.Join(dir, "buffer.db"), Options{FullPolicy: RejectNew, Now: clk.Now})
	defer q.Close()
	ctx := context.Background()
	if err := q.Append(ctx, rec(0)); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)
	recs := make([]Record, 100)
	for j := range recs {
		recs[j] = bench200(j)
	}
	if err := q.Append(ctx, recs...); !errors.Is(err, ErrFull) {
		t.Fatalf("append on a full disk with reject-new: %v, want ErrFull", err)
	}
	s := q.Stats()
	if s.Drops.DiskFull != 100 || s.Records != 1 || s.CommitFailuresRecent == 0 || s.LastCommitError == "" {
		t.Fatalf("stats %+v; want 100 refused for disk full, 1 kept, the failure reported", s)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(ctx, recs...); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if s := q.Stats(); s.CommitFailuresRecent == 0 {
		t.Fatalf("stats %+v; the failure a moment ago is still recent", s)
	}
	clk.Add(CommitFailureWindow + time.Second)
	if s := q.Stats(); s.CommitFailuresRecent != 0 || s.CommitFails == 0 || s.Records != 101 {
		t.Fatalf("stats %+v; want no recent failures after the window, the lifetime count kept, 101 records", s)
	}
}

// TestRecentFailuresBounded: the failure window keeps neither old failures
// nor more than maxRecentFailures times however fast commits fail.
func TestRecentFailuresBounded(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var f []time.Time
	for i := range 5000 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		f = append(recent(f, at), at)
	}
	if len(f) > maxRecentFailures {
		t.Fatalf("kept %d failure times, want at most %d", len(f), maxRecentFailures)
	}
	if got := recent(f, now.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("an hour later %d failures are still recent", len(got))
	}
}
