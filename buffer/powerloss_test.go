package buffer

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestPowerLossDuringCommit models a power cut during a group commit at the
// page level. bbolt writes a commit's data pages, fsyncs, then writes one
// meta page and fsyncs again. So what a cut can leave of commit n+1 is the
// file of commit n plus
//
//	(a) any subset of n+1's data pages (the meta write never happened),
//	(b) all of them and a torn meta page,
//	(c) all of it (the cut came after the second fsync),
//	(d) n+1's meta page with some of its data pages missing: a device that
//	    reorders writes across the flush. This breaks the contract bbolt
//	    relies on; the gateway must still start, and lose nothing of commit n.
//
// Every record whose Append returned by commit n (n+1 in case c) must be
// there, Open must never panic and new seqs must stay above every
// acknowledged one.
//
// The kernel here has no device-mapper (dm-flakey, dm-log-writes), so the
// states are built from snapshots of the file taken between commits rather
// than from a block device that drops writes. That covers bbolt's commit
// protocol and this package's validation and salvage; it does not cover the
// file system's own metadata after a cut (a file length or a rename lost
// by ext4) or a disk that acknowledges a flush it did not do for more than
// the last commit.
func TestPowerLossDuringCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{CommitInterval: time.Millisecond})
	defer q.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))

	acked := map[uint64][]byte{}
	var maxSeq uint64
	take := func() snap {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := os.ReadFile(path + ".seq")
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[uint64][]byte, len(acked))
		for k, v := range acked {
			m[k] = v
		}
		return snap{raw: raw, seq: seq, acked: m, maxSeq: maxSeq}
	}
	// Ack is asynchronous: the writer may commit the acks alone or with
	// the appends that follow. Each step here is one commit, so that the
	// snapshots around it differ by exactly one transaction: a cut during
	// a commit cannot leave pages of a later one (bbolt writes those only
	// after this commit's meta page is synced).
	ackSome := func() bool {
		var acks []uint64
		for seq := range acked {
			if rng.IntN(3) == 0 {
				acks = append(acks, seq)
			}
		}
		if len(acks) == 0 {
			return false
		}
		before := q.Stats().Commits
		if err := q.Ack(acks...); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, "the acks committed", 10*time.Second, func() bool { return q.Stats().Commits != before })
		for _, seq := range acks {
			delete(acked, seq)
		}
		return true
	}
	appendSome := func(round int) bool {
		n := 50 + rng.IntN(400)
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = rec(round*1000 + i)
			recs[i].Payload = append(recs[i].Payload, bytes.Repeat([]byte{'p'}, rng.IntN(300))...)
			if i%7 == 0 {
				recs[i].Priority = High
			}
		}
		if err := q.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			acked[r.Seq] = r.Payload
			maxSeq = max(maxSeq, r.Seq)
		}
		return true
	}
	txid := func(raw []byte) uint64 {
		bf, err := openBoltFile(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := bf.current()
		return cur.txid
	}

	appendSome(0)
	prev := take()
	states, quarantined := 0, 0
	// cut opens every state a power cut during the commit from prev to
	// next can leave.
	cut := func(round int, prev, next snap) {
		if a, b := txid(prev.raw), txid(next.raw); b != a+1 {
			t.Fatalf("round %d: %d transactions between the snapshots; the model covers one", round, b-a)
		}
		ps := int64(4096)
		var changed []int64 // data pages commit round wrote
		var metaPage int64 = -1
		for id := int64(0); id*ps < int64(len(next.raw)); id++ {
			a := pageOf(prev.raw, id, ps)
			b := pageOf(next.raw, id, ps)
			if bytes.Equal(a, b) {
				continue
			}
			if id < 2 {
				metaPage = id
				continue
			}
			changed = append(changed, id)
		}
		if metaPage < 0 || len(changed) == 0 {
			t.Fatalf("round %d: commit changed no meta or no data page", round)
		}
		build := func(pages []int64, meta []byte) []byte {
			out := make([]byte, len(next.raw))
			copy(out, prev.raw)
			for _, id := range pages {
				copy(out[id*ps:], pageOf(next.raw, id, ps))
			}
			if meta != nil {
				copy(out[metaPage*ps:], meta)
			}
			return out
		}
		subset := func() []int64 {
			var s []int64
			for _, id := range changed {
				if rng.IntN(2) == 0 {
					s = append(s, id)
				}
			}
			return s
		}
		newMeta := pageOf(next.raw, metaPage, ps)
		torn := bytes.Clone(pageOf(prev.raw, metaPage, ps))
		copy(torn[:16+32], newMeta[:16+32]) // the first half of the meta fields
		cases := []struct {
			name     string
			raw      []byte
			want     snap
			damaging bool // the device broke the write order
		}{
			{"no data page, no meta", build(nil, nil), prev, false},
			{"some data pages, no meta", build(subset(), nil), prev, false},
			{"some data pages, no meta (2)", build(subset(), nil), prev, false},
			{"all data pages, torn meta", build(changed, torn), prev, false},
			{"complete", build(changed, newMeta), next, false},
			{"meta written, data pages missing", build(subset(), newMeta), prev, true},
			{"meta written, no data page", build(nil, newMeta), prev, true},
		}
		for _, c := range cases {
			name := fmt.Sprintf("round %d: %s", round, c.name)
			s := powerLossOpen(t, name, c.raw, next.seq, c.want, maxSeq)
			if s.Quarantined != "" && !c.damaging {
				t.Fatalf("%s: quarantined a state that bbolt's commit protocol allows", name)
			}
			if s.Quarantined != "" {
				quarantined++
			}
			states++
		}
	}
	for round := 1; round <= 8; round++ {
		// Acks free pages that later commits reuse.
		for _, step := range []func(int) bool{func(int) bool { return ackSome() }, appendSome} {
			if !step(round) {
				continue
			}
			next := take()
			cut(round, prev, next)
			prev = next
		}
	}
	t.Logf("%d power-cut states opened, %d quarantined and salvaged", states, quarantined)
	if quarantined == 0 {
		t.Fatal("no reordered state was found damaged: the model did not reach salvage")
	}
}

// snap is the file after a commit and what it must hold.
type snap struct {
	raw, seq []byte
	acked    map[uint64][]byte // seq -> payload of every acknowledged, unacked record
	maxSeq   uint64
}

func pageOf(raw []byte, id, ps int64) []byte {
	if (id+1)*ps > int64(len(raw)) {
		return make([]byte, ps) // not yet in the file: reads as zeros after a grow
	}
	return raw[id*ps : (id+1)*ps]
}

// powerLossOpen opens one state and checks that every record of want is
// there with its payload and that new seqs stay above maxSeq.
func powerLossOpen(t *testing.T, name string, raw, seq []byte, want snap, maxSeq uint64) Stats {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".seq", seq, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(path, Options{CommitInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("%s: Open: %v", name, err)
	}
	defer q.Close()
	s := q.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := map[uint64][]byte{}
	for uint64(len(got)) < s.Records {
		recs, err := q.Read(ctx, 1000)
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		for _, r := range recs {
			got[r.Seq] = r.Payload
		}
	}
	for seq, p := range want.acked {
		if g, ok := got[seq]; !ok || !bytes.Equal(g, p) {
			t.Fatalf("%s: acknowledged record %d lost or changed (%d records, stats %+v)", name, seq, len(got), s)
		}
	}
	r := []Record{rec(0)}
	if err := q.Append(context.Background(), r...); err != nil {
		t.Fatalf("%s: append: %v", name, err)
	}
	if r[0].Seq <= maxSeq {
		t.Fatalf("%s: new seq %d, but %d was acknowledged", name, r[0].Seq, maxSeq)
	}
	return s
}

// TestPowerLossStaleTree is case (d) of TestPowerLossDuringCommit made
// deterministic: commit n+1's meta page reaches the disk, none of its data
// pages do, and its root is a page that commit n+1 took back from commit
// n-1's tree (bbolt reuses the pages a commit freed once the commit after
// it is done). Commit n-1's pages are all still on disk, so the meta page
// leads to a sound but older tree: every check of its structure passes, and
// opening it would drop every record commit n acknowledged.
func TestPowerLossStaleTree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{CommitInterval: time.Millisecond})
	defer q.Close()
	ctx := context.Background()
	first := []Record{rec(1), rec(2), rec(3)}
	if err := q.Append(ctx, first...); err != nil {
		t.Fatal(err)
	}
	last := []Record{rec(4), rec(5)}
	if err := q.Append(ctx, last...); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := os.ReadFile(path + ".seq")
	if err != nil {
		t.Fatal(err)
	}
	bf, err := openBoltFile(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	cur, old := bf.current()
	if old == nil {
		t.Fatal("no previous meta page")
	}
	// Commit n+1's meta page goes into the slot of commit n-1's, with
	// commit n-1's root.
	slot := int64(old.txid % 2)
	m := raw[slot*bf.ps+pageHeaderSize:]
	ne.PutUint64(m[40:], cur.pgid)
	ne.PutUint64(m[48:], cur.txid+1)
	h := fnv.New64a()
	h.Write(m[:56])
	ne.PutUint64(m[56:], h.Sum64())

	want := snap{acked: map[uint64][]byte{}}
	for _, r := range append(first, last...) {
		want.acked[r.Seq] = r.Payload
	}
	s := powerLossOpen(t, "stale tree", raw, seq, want, last[len(last)-1].Seq)
	if s.Quarantined == "" {
		t.Fatal("a meta page leading to an older tree was not treated as damage")
	}
}
