package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTest(t testing.TB, path string, opts Options) *Queue {
	t.Helper()
	if opts.CommitInterval == 0 {
		opts.CommitInterval = 5 * time.Millisecond
	}
	q, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func rec(i int) Record {
	return Record{Topic: fmt.Sprintf("lintel/gw/dev/p%d", i), Payload: []byte(fmt.Sprintf(`{"v":%d}`, i))}
}

func readN(t *testing.T, q *Queue, n int) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []Record
	for len(out) < n {
		recs, err := q.Read(ctx, n-len(out))
		if err != nil {
			t.Fatalf("read after %d of %d: %v", len(out), n, err)
		}
		out = append(out, recs...)
	}
	return out
}

func TestAppendReadAckSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	recs := []Record{rec(1), rec(2), rec(3)}
	if err := q.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d got seq %d, want %d", i, r.Seq, i+1)
		}
	}
	got := readN(t, q, 3)
	for i, r := range got {
		if r.Topic != recs[i].Topic || !bytes.Equal(r.Payload, recs[i].Payload) || r.Seq != recs[i].Seq {
			t.Fatalf("read %d = %+v, want %+v", i, r, recs[i])
		}
	}
	if err := q.Ack(got[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openTest(t, path, Options{})
	defer q.Close()
	got = readN(t, q, 2)
	if got[0].Seq != 2 || got[1].Seq != 3 {
		t.Fatalf("after reopen read seqs %d,%d; want 2,3", got[0].Seq, got[1].Seq)
	}
	next := rec(4)
	if err := q.Append(ctx, next); err != nil {
		t.Fatal(err)
	}
	if s := q.Stats(); s.Records != 3 || s.NextSeq != 5 {
		t.Fatalf("stats %+v, want 3 records and next seq 5", s)
	}
}

func TestRewindHandsOutUnackedAgainInOrder(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer q.Close()
	ctx := context.Background()
	for i := range 5 {
		if err := q.Append(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	first := readN(t, q, 5)
	if err := q.Ack(first[1].Seq, first[3].Seq); err != nil {
		t.Fatal(err)
	}
	// Acks are applied with the next commit; one more durable append
	// guarantees they are.
	if err := q.Append(ctx, rec(5)); err != nil {
		t.Fatal(err)
	}
	q.Rewind()
	again := readN(t, q, 4)
	want := []uint64{1, 3, 5, 6}
	for i, r := range again {
		if r.Seq != want[i] {
			t.Fatalf("after rewind got seq %d at %d, want %v", r.Seq, i, want)
		}
	}
}

func TestReadBlocksUntilAppendOrCancel(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := q.Read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on empty queue: %v, want deadline exceeded", err)
	}
	got := make(chan []Record, 1)
	go func() {
		recs, _ := q.Read(context.Background(), 10)
		got <- recs
	}()
	if err := q.Enqueue(context.Background(), rec(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case recs := <-got:
		if len(recs) != 1 || recs[0].Seq != 1 {
			t.Fatalf("got %+v", recs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not wake up after Enqueue")
	}
}

func TestFullPolicies(t *testing.T) {
	ctx := context.Background()
	size := int64(len((&Record{Topic: rec(1).Topic, Payload: rec(1).Payload}).encode()))

	t.Run("drop-oldest", func(t *testing.T) {
		q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 3 * size, FullPolicy: DropOldest})
		defer q.Close()
		for i := 1; i <= 5; i++ {
			if err := q.Append(ctx, rec(i)); err != nil {
				t.Fatal(err)
			}
		}
		s := q.Stats()
		if s.Records != 3 || s.Drops.Full != 2 {
			t.Fatalf("stats %+v, want 3 records, 2 drops", s)
		}
		got := readN(t, q, 3)
		if got[0].Seq != 3 || got[2].Seq != 5 {
			t.Fatalf("kept seqs %d..%d, want 3..5 (oldest dropped)", got[0].Seq, got[2].Seq)
		}
	})
	t.Run("reject-new", func(t *testing.T) {
		q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 3 * size, FullPolicy: RejectNew})
		defer q.Close()
		for i := 1; i <= 3; i++ {
			if err := q.Append(ctx, rec(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Append(ctx, rec(4)); !errors.Is(err, ErrFull) {
			t.Fatalf("append into full buffer: %v, want ErrFull", err)
		}
		s := q.Stats()
		if s.Records != 3 || s.Drops.Rejected != 1 || s.NextSeq != 4 {
			t.Fatalf("stats %+v, want 3 records kept, 1 refused, next seq 4", s)
		}
	})
}

func TestCorruptFileIsQuarantined(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	junk := bytes.Repeat([]byte("not a bbolt file "), 1024)
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	q := openTest(t, path, Options{})
	defer q.Close()
	s := q.Stats()
	if s.Quarantined == "" || !strings.HasPrefix(filepath.Base(s.Quarantined), "buffer.db.bad-") {
		t.Fatalf("quarantined = %q, want buffer.db.bad-<time>", s.Quarantined)
	}
	kept, err := os.ReadFile(s.Quarantined)
	if err != nil || !bytes.Equal(kept, junk) {
		t.Fatalf("bad file not kept intact for inspection: %v", err)
	}
	if err := q.Append(context.Background(), rec(1)); err != nil {
		t.Fatalf("append to fresh file after quarantine: %v", err)
	}
}

func TestSecondOpenIsRefusedNotQuarantined(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	defer q.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want 'in use'", err)
	}
	if matches, _ := filepath.Glob(path + ".bad-*"); len(matches) != 0 {
		t.Fatalf("a locked file was quarantined: %v", matches)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	q.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("buffer file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	q.Close()
	if err := q.Append(context.Background(), rec(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

func TestHighPriorityEvictedLastAndReadFirst(t *testing.T) {
	ctx := context.Background()
	size := int64(len((&Record{Topic: rec(1).Topic, Payload: rec(1).Payload}).encode()))
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 4 * size})
	defer q.Close()
	alarm := rec(0)
	alarm.Priority = High
	if err := q.Append(ctx, alarm); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ { // overflow with telemetry
		if err := q.Append(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	s := q.Stats()
	if s.Records != 4 || s.High != 1 || s.Drops.Full != 3 {
		t.Fatalf("stats %+v; want 4 records kept, the alarm among them, 3 telemetry evicted", s)
	}
	got := readN(t, q, 4)
	if got[0].Seq != 1 || got[0].Priority != High {
		t.Fatalf("first read %+v, want the alarm (seq 1)", got[0])
	}
	if got[1].Seq != 5 || got[3].Seq != 7 {
		t.Fatalf("telemetry seqs %d..%d, want 5..7 (oldest evicted)", got[1].Seq, got[3].Seq)
	}

	// Only High records left: they are evicted too rather than refusing.
	q2 := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 2 * size})
	defer q2.Close()
	for i := range 3 {
		r := rec(i)
		r.Priority = High
		if err := q2.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if s := q2.Stats(); s.High != 2 || s.Drops.Full != 1 {
		t.Fatalf("stats %+v, want 2 high kept, 1 evicted", s)
	}
}

// TestReadInterleavesLiveWithBacklog: after a Rewind, records committed since
// then are handed out alongside the old backlog, not after all of it.
func TestReadInterleavesLiveWithBacklog(t *testing.T) {
	ctx := context.Background()
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer q.Close()
	backlog := make([]Record, 100)
	for i := range backlog {
		backlog[i] = rec(i)
	}
	if err := q.Append(ctx, backlog...); err != nil {
		t.Fatal(err)
	}
	q.Rewind() // a session starts: the 100 records are backlog
	live := []Record{rec(1000), rec(1001)}
	if err := q.Append(ctx, live...); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]bool{}
	for _, r := range got {
		seqs[r.Seq] = true
	}
	if !seqs[101] || !seqs[102] || !seqs[1] {
		t.Fatalf("first read of 10 = %v; want the live seqs 101, 102 and the oldest backlog seq 1", seqs)
	}
	// Every record exactly once across reads.
	rest := readN(t, q, 92)
	for _, r := range rest {
		if seqs[r.Seq] {
			t.Fatalf("seq %d handed out twice", r.Seq)
		}
		seqs[r.Seq] = true
	}
	if len(seqs) != 102 {
		t.Fatalf("handed out %d distinct records, want 102", len(seqs))
	}
}

func TestTTLDropsOldRecords(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{TTL: time.Hour})
	defer q.Close()
	old := rec(1)
	old.Time = time.Now().Add(-2 * time.Hour)
	fresh := rec(2)
	if err := q.Append(context.Background(), old, fresh); err != nil {
		t.Fatal(err)
	}
	// The TTL sweep runs with every commit; the next one removes the old record.
	if err := q.Append(context.Background(), rec(3)); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.Records != 2 || s.Drops.Expired != 1 {
		t.Fatalf("stats %+v; want the 2-hour-old record expired and 2 kept", s)
	}
	if got := readN(t, q, 2); got[0].Seq != 2 {
		t.Fatalf("first record seq %d, want 2", got[0].Seq)
	}
}

func TestReadStatsWhileOpenAndClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	hi := rec(2)
	hi.Priority = High
	if err := q.Append(context.Background(), rec(1), hi); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStats(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("ReadStats on an open queue: %v, want ErrLocked", err)
	}
	q.Close()
	s, err := ReadStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 2 || s.High != 1 || s.NextSeq != 3 || s.Oldest.IsZero() {
		t.Fatalf("stats %+v", s)
	}
	before, _ := os.ReadFile(path)
	ReadStats(path)
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("ReadStats changed the file")
	}
}

func TestAppendAsyncNotifiesAfterCommitInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{CommitInterval: 20 * time.Millisecond})
	got := make(chan int, 100)
	for i := range 100 {
		if err := q.AppendAsync(context.Background(), func(err error) {
			if err != nil {
				t.Error(err)
			}
			got <- i
		}, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	for want := range 100 {
		select {
		case i := <-got:
			if i != want {
				t.Fatalf("notification %d arrived as %d: out of order", want, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no notification")
		}
	}
	q.Close()
	s, err := ReadStats(path) // notified means durable: on disk after close
	if err != nil || s.Records != 100 {
		t.Fatalf("stats %+v %v", s, err)
	}
}
