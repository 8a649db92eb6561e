package buffer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestDataDirDeletedWhileRunning: the directory vanishes under a running
// queue. New records are refused with ErrFileGone (so a local QoS1
// publisher gets no PUBACK) until the file is recreated; the unacked
// records, still readable through the open descriptor, move into the new
// file.
func TestDataDirDeletedWhileRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{CheckInterval: 10 * time.Millisecond})
	ctx := context.Background()
	recs := []Record{rec(1), rec(2), rec(3), rec(4), rec(5)}
	if err := q.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// A file where the directory was keeps the recovery from succeeding
	// at once, so the refusal can be seen.
	if err := os.WriteFile(dir, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the problem to be reported", 5*time.Second, func() bool { return q.Stats().Problem != "" })
	if p := q.Stats().Problem; !strings.Contains(p, "vanished") {
		t.Fatalf("problem %q", p)
	}
	if err := q.Append(ctx, rec(6)); !errors.Is(err, ErrFileGone) {
		t.Fatalf("Append while the file is gone: %v, want ErrFileGone", err)
	}
	if err := q.AppendAsync(ctx, func(error) { t.Error("AppendAsync accepted while the file is gone") }, rec(7)); !errors.Is(err, ErrFileGone) {
		t.Fatalf("AppendAsync while the file is gone: %v, want ErrFileGone", err)
	}
	// Adapters keep enqueueing (into the deleted file, moved later); their
	// commits must not clear the problem.
	commits := q.Stats().Commits
	for i := 0; q.Stats().Commits < commits+20; i++ {
		if err := q.Enqueue(ctx, rec(100+i)); err != nil {
			t.Fatal(err)
		}
		if q.Stats().Problem == "" {
			t.Fatalf("the problem was cleared by a commit while the file is still gone")
		}
	}
	if err := q.Append(ctx, rec(6)); !errors.Is(err, ErrFileGone) {
		t.Fatalf("Append after more commits while the file is gone: %v, want ErrFileGone", err)
	}

	os.Remove(dir)
	testwait.Until(t, "the file to be recreated", 5*time.Second, func() bool { return q.Stats().Problem == "" })
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("recreated data dir: %v %v, want mode 0700", fi, err)
	}
	after := []Record{rec(8)}
	if err := q.Append(ctx, after...); err != nil {
		t.Fatalf("Append after recovery: %v", err)
	}
	if after[0].Seq <= recs[4].Seq {
		t.Fatalf("seq %d after recovery, %d was issued before", after[0].Seq, recs[4].Seq)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything unacked is in the file now at the path: the appended
	// records, the enqueued ones and the one appended after recovery.
	q = openTest(t, path, Options{})
	defer q.Close()
	s := q.Stats()
	if s.Quarantined != "" {
		t.Fatalf("reopened stats %+v", s)
	}
	got := map[uint64]bool{}
	for _, r := range readN(t, q, int(s.Records)) {
		got[r.Seq] = true
	}
	for _, seq := range []uint64{recs[1].Seq, recs[2].Seq, recs[3].Seq, recs[4].Seq, after[0].Seq} {
		if !got[seq] {
			t.Fatalf("seq %d missing after recovery and restart (have %d records)", seq, len(got))
		}
	}
	if got[recs[0].Seq] {
		t.Fatalf("acked seq %d came back", recs[0].Seq)
	}
}

// TestReplacedFileIsNeverOverwritten: another file at the path is someone
// else's; the queue reports it and refuses new records.
func TestReplacedFileIsNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{CheckInterval: 10 * time.Millisecond})
	defer q.Close()
	if err := q.Append(context.Background(), rec(1)); err != nil {
		t.Fatal(err)
	}
	os.Rename(path, path+".moved")
	if err := os.WriteFile(path, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the problem to be reported", 5*time.Second, func() bool { return q.Stats().Problem != "" })
	if err := q.Append(context.Background(), rec(2)); !errors.Is(err, ErrFileGone) {
		t.Fatalf("Append: %v, want ErrFileGone", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "theirs" {
		t.Fatalf("the file at the path was overwritten: %q", b)
	}
}
