package buffer

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDeadLetterMovesRecordsOutOfTheQueueDurably(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{})
	recs := []Record{rec(1), rec(2), rec(3), rec(4), rec(5)}
	recs[3].Priority = High
	if err := q.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	before := q.Stats()
	before0 := time.Now()
	if err := q.DeadLetter("broker refused topic", 2, 4, 99); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	size2 := int64(len(recs[1].encode()))
	size4 := int64(len(recs[3].encode()))
	if s.DeadLetters != 2 || s.Records != 3 || s.High != 0 || s.Bytes != before.Bytes-size2-size4 {
		t.Fatalf("stats after DeadLetter(2,4,99) = %+v (before %+v); want 2 dead, 3 records, 0 high", s, before)
	}

	// Committed when DeadLetter returns: a copy of the file taken now has it.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if cs, err := ReadStats(cp); err != nil || cs.DeadLetters != 2 || cs.Records != 3 {
		t.Fatalf("file right after DeadLetter returned: %+v %v; want 2 dead letters, 3 records", cs, err)
	}

	got := readN(t, q, 3)
	for _, r := range got {
		if r.Seq == 2 || r.Seq == 4 {
			t.Fatalf("Read handed out dead-lettered seq %d", r.Seq)
		}
	}
	q.Rewind()
	if got := readN(t, q, 3); got[0].Seq != 1 || got[1].Seq != 3 || got[2].Seq != 5 {
		t.Fatalf("after Rewind read %d,%d,%d; want 1,3,5", got[0].Seq, got[1].Seq, got[2].Seq)
	}

	check := func(q *Queue) {
		t.Helper()
		dead, err := q.DeadLetters(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 2 {
			t.Fatalf("%d dead letters, want 2", len(dead))
		}
		for i, want := range []Record{recs[1], recs[3]} {
			d := dead[i]
			if d.Seq != want.Seq || d.Topic != want.Topic || !bytes.Equal(d.Payload, want.Payload) ||
				d.Priority != want.Priority || !d.Time.Equal(want.Time) {
				t.Fatalf("dead letter %d = %+v, want %+v", i, d.Record, want)
			}
			if d.Reason != "broker refused topic" || d.At.Before(before0.Add(-time.Second)) || d.At.After(time.Now()) {
				t.Fatalf("dead letter %d reason %q at %v", i, d.Reason, d.At)
			}
		}
		if one, err := q.DeadLetters(1); err != nil || len(one) != 1 || one[0].Seq != 2 {
			t.Fatalf("DeadLetters(1) = %+v %v, want only seq 2", one, err)
		}
	}
	check(q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	rs, err := ReadStats(path)
	if err != nil || rs.DeadLetters != 2 {
		t.Fatalf("ReadStats after close: %+v %v; want 2 dead letters", rs, err)
	}
	js, _ := json.Marshal(rs)
	if !strings.Contains(string(js), `"dead_letters":2`) {
		t.Fatalf("stats JSON %s lacks dead_letters", js)
	}

	q = openTest(t, path, Options{})
	check(q) // survives a restart
	if s := q.Stats(); s.DeadLetters != 2 || s.Records != 3 {
		t.Fatalf("stats after reopen %+v", s)
	}
	n, err := q.ClearDeadLetters()
	if err != nil || n != 2 {
		t.Fatalf("ClearDeadLetters = %d, %v; want 2", n, err)
	}
	if dead, _ := q.DeadLetters(0); len(dead) != 0 || q.Stats().DeadLetters != 0 {
		t.Fatalf("after clear: %d dead letters, stats %d", len(dead), q.Stats().DeadLetters)
	}
	q.Close()
	if rs, err := ReadStats(path); err != nil || rs.DeadLetters != 0 || rs.Records != 3 {
		t.Fatalf("ReadStats after clear and close: %+v %v", rs, err)
	}
}

func TestDeadLettersAreBounded(t *testing.T) {
	ctx := context.Background()
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer q.Close()
	const n = MaxDeadLetters + 5
	recs := make([]Record, n)
	seqs := make([]uint64, n)
	for i := range recs {
		recs[i] = rec(i)
	}
	if err := q.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		seqs[i] = recs[i].Seq
	}
	if err := q.DeadLetter("poison", seqs...); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.DeadLetters != MaxDeadLetters || s.Drops.DeadLetters != 5 || s.Records != 0 || s.Bytes != 0 {
		t.Fatalf("stats %+v; want %d dead letters kept, 5 dropped, queue empty", s, MaxDeadLetters)
	}
	dead, err := q.DeadLetters(1)
	if err != nil || dead[0].Seq != 6 {
		t.Fatalf("oldest dead letter %+v %v; want seq 6 (1..5 dropped)", dead, err)
	}
}

func TestDeadLetterAfterCloseFails(t *testing.T) {
	q := openTest(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	q.Close()
	if err := q.DeadLetter("x", 1); err == nil {
		t.Fatal("DeadLetter after Close succeeded")
	}
}
