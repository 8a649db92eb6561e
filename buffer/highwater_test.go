package buffer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// appendAcked appends n records, acks them all and returns the highest seq.
func appendAcked(t *testing.T, q *Queue, n int) uint64 {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = rec(i)
	}
	if err := q.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if err := q.Ack(seqs...); err != nil {
		t.Fatal(err)
	}
	return recs[n-1].Seq
}

func appendOne(t *testing.T, q *Queue) uint64 {
	t.Helper()
	r := []Record{rec(0)}
	if err := q.Append(context.Background(), r...); err != nil {
		t.Fatal(err)
	}
	return r[0].Seq
}

// TestSeqContinuesAfterQuarantine: a cloud consumer dedupes by seq, so a new
// file must not reuse seqs, even when nothing of the old one is readable.
func TestSeqContinuesAfterQuarantine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	last := appendAcked(t, q, 100)
	q.Close()
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openTest(t, path, Options{})
	defer q.Close()
	if q.Stats().Quarantined == "" {
		t.Fatal("garbage file not quarantined")
	}
	if seq := appendOne(t, q); seq <= last {
		t.Fatalf("after quarantine the next seq is %d; seq %d was already issued", seq, last)
	}
}

// TestSeqContinuesAfterBufferFileLost: buffer.db deleted while stopped.
func TestSeqContinuesAfterBufferFileLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	last := appendAcked(t, q, 10)
	q.Close()
	os.Remove(path)
	os.Remove(path + ".clean")
	q = openTest(t, path, Options{})
	defer q.Close()
	if seq := appendOne(t, q); seq <= last {
		t.Fatalf("after losing the file the next seq is %d; seq %d was already issued", seq, last)
	}
}

// TestSeqHasNoGapAfterCleanRestart: Close writes the exact high-water mark,
// so the block reserved ahead is not skipped.
func TestSeqHasNoGapAfterCleanRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	last := appendAcked(t, q, 10)
	q.Close()
	q = openTest(t, path, Options{})
	defer q.Close()
	if seq := appendOne(t, q); seq != last+1 {
		t.Fatalf("after a clean restart the next seq is %d, want %d", seq, last+1)
	}
}

// TestHighWaterIsNotWrittenPerCommit: seqs are reserved in blocks, so a run
// of small commits writes the file once, not once per commit.
func TestHighWaterIsNotWrittenPerCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	defer q.Close()
	for range 50 {
		appendOne(t, q)
	}
	q.dbMu.RLock()
	gen, reserved := q.hw.gen, q.hw.reserved
	q.dbMu.RUnlock()
	if gen > 2 || reserved < 50 {
		t.Fatalf("50 commits wrote the high-water file %d times (reserved %d); want one block reservation", gen, reserved)
	}
	// A run longer than a block writes again before using a seq above it.
	recs := make([]Record, seqBlock+10)
	for i := range recs {
		recs[i] = rec(i)
	}
	if err := q.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	q.dbMu.RLock()
	reserved = q.hw.reserved
	q.dbMu.RUnlock()
	if last := recs[len(recs)-1].Seq; reserved < last {
		t.Fatalf("seq %d committed above the reserved %d", last, reserved)
	}
}

// TestHighWaterSurvivesATornSlot: a torn write of the newer slot leaves the
// older one, which is still at least every seq issued.
func TestHighWaterSurvivesATornSlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.seq")
	hw, _, err := openHighWater(path, os.OpenFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.set(1000); err != nil {
		t.Fatal(err)
	}
	torn := hw.slot // the next write goes here
	if err := hw.set(5000); err != nil {
		t.Fatal(err)
	}
	hw.close()
	raw, _ := os.ReadFile(path)
	if v, _, _, ok := parseHighWater(raw); !ok || v != 5000 {
		t.Fatalf("read %d %v, want 5000", v, ok)
	}
	raw[torn*hwSlotSize+12] ^= 0xff
	if v, _, _, ok := parseHighWater(raw); !ok || v != 1000 {
		t.Fatalf("with the newer slot torn read %d %v, want the older 1000", v, ok)
	}
	os.WriteFile(path, raw, 0o600)
	hw, damaged, err := openHighWater(path, os.OpenFile)
	if err != nil || damaged || hw.reserved != 1000 {
		t.Fatalf("reopen: reserved %d damaged %v err %v", hw.reserved, damaged, err)
	}
	hw.close()
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestSeqContinuesAfterCrashAndQuarantine: what kill -9 leaves (no Close,
// so no exact mark) and then a damaged file. Only the reservation written
// before each commit keeps the new seqs above the acknowledged ones.
func TestSeqContinuesAfterCrashAndQuarantine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{})
	defer q.Close()
	last := appendAcked(t, q, 100)
	last = max(last, appendOne(t, q))
	// The files as a crash would leave them, with the buffer file ruined.
	crashed := filepath.Join(t.TempDir(), "buffer.db")
	seq, err := os.ReadFile(path + ".seq")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed+".seq", seq, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, bytes.Repeat([]byte{0xee}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	q2 := openTest(t, crashed, Options{})
	defer q2.Close()
	if q2.Stats().Quarantined == "" {
		t.Fatal("ruined file not quarantined")
	}
	if seq := appendOne(t, q2); seq <= last {
		t.Fatalf("after a crash and a quarantine the next seq is %d; seq %d was already issued", seq, last)
	}
}
