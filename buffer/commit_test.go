package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// onDisk counts the records in a copy of the file as it is on disk now: what
// a power cut at this moment would leave.
func onDisk(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketNormal).Stats().KeyN + tx.Bucket(bucketHigh).Stats().KeyN
		return nil
	})
	return n
}

// TestWaiterCommitsEarly: a caller waiting for durability (Append,
// AppendAsync) does not wait out the commit interval, records enqueued before
// it ride along in the same commit, and the wait ends only once the commit is
// in the file.
func TestWaiterCommitsEarly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{CommitInterval: time.Hour})
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if err := q.Enqueue(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Append(ctx, rec(10)); err != nil {
		t.Fatalf("append with an hour's commit interval: %v (it waited for the interval)", err)
	}
	if s := q.Stats(); s.Commits != 1 || s.Records != 11 {
		t.Fatalf("stats %+v; want the 10 enqueued records and the appended one in 1 commit", s)
	}
	if n := onDisk(t, path); n != 11 {
		t.Fatalf("Append returned with %d records on disk, want 11", n)
	}

	done := make(chan error, 1)
	if err := q.AppendAsync(ctx, func(err error) { done <- err }, rec(11)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("AppendAsync was not notified: it waited for the commit interval")
	}
	if n := onDisk(t, path); n != 12 {
		t.Fatalf("AppendAsync notified with %d records on disk, want 12", n)
	}
}

// TestEnqueueKeepsTheInterval: records nobody waits for (adapter readings)
// and acks are committed once per interval, not one commit each.
func TestEnqueueKeepsTheInterval(t *testing.T) {
	const interval = 200 * time.Millisecond
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{CommitInterval: interval})
	defer q.Close()
	ctx := context.Background()
	start := time.Now()
	for i := range 300 { // 300 readings and 300 acks over about 0.6 s
		if err := q.Enqueue(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(uint64(i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			<-time.After(20 * time.Millisecond) // pace the producer, not a synchronisation
		}
	}
	elapsed := time.Since(start)
	testwait.Until(t, "the last reading committed", 10*time.Second, func() bool { return q.Stats().NextSeq == 301 })
	// One commit per interval, plus one for the last partial interval.
	limit := uint64((time.Since(start))/interval) + 2
	if c := q.Stats().Commits; c > limit {
		t.Fatalf("%d commits for 300 enqueued readings over %v; want at most %d (one per %v)", c, elapsed, limit, interval)
	}
}
