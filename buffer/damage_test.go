package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// goodFile is a realistic buffer file and what it holds.
type goodFile struct {
	raw    []byte
	seqRaw []byte            // the seq high-water file beside it
	all    map[uint64]Record // every record ever appended, by seq
	maxSeq uint64
	live   map[uint64]uint64 // live seq -> the leaf page holding it
	pages  map[string][]uint64
	ps     int64
}

// buildGoodFile appends records of both classes, acks the oldest (so the
// file has freed pages), dead-letters a few and closes the queue. With
// syncFreelist the file is rewritten by bbolt with a synced freelist page, so
// that page type can be damaged too.
func buildGoodFile(t *testing.T, syncFreelist bool) *goodFile {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openTest(t, path, Options{})
	ctx := context.Background()
	g := &goodFile{all: map[uint64]Record{}}
	for batch := range 6 {
		recs := make([]Record, 500)
		for i := range recs {
			recs[i] = rec(batch*500 + i)
			recs[i].Payload = append(recs[i].Payload, bytes.Repeat([]byte{'x'}, 60+i%50)...)
			if i%10 == 0 {
				recs[i].Priority = High
			}
		}
		if err := q.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			g.all[r.Seq] = r
			g.maxSeq = max(g.maxSeq, r.Seq)
		}
	}
	var acks []uint64
	for seq := uint64(1); seq <= 700; seq++ {
		acks = append(acks, seq)
	}
	if err := q.Ack(acks...); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter("test", 800, 801, 802); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if syncFreelist {
		db, err := bolt.Open(path, 0o600, &bolt.Options{}) // writes the freelist on open
		if err != nil {
			t.Fatal(err)
		}
		// Stamped like the package's own transactions, so that only the
		// damage each case adds makes the file fail the full check.
		err = db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put([]byte("x"), []byte("y")); err != nil {
				return err
			}
			return stampTx(tx)
		})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = validate(f, false)
	f.Close()
	if err != nil {
		t.Fatalf("the undamaged file fails the full check: %v", err)
	}
	if g.raw, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if g.seqRaw, err = os.ReadFile(path + ".seq"); err != nil {
		t.Fatal(err)
	}
	g.classify(t)
	return g
}

// classify finds the page of each type that the current tree reaches, and
// which leaf holds each live record.
func (g *goodFile) classify(t *testing.T) {
	t.Helper()
	bf, err := openBoltFile(bytes.NewReader(g.raw), int64(len(g.raw)))
	if err != nil {
		t.Fatal(err)
	}
	g.ps = bf.ps
	cur, _ := bf.current()
	_, w, err := bf.scan(cur, true, false)
	if err != nil {
		t.Fatalf("the good file fails validation: %v", err)
	}
	g.pages = map[string][]uint64{"meta": {0, 1}}
	if cur.freelist != noFreelist {
		g.pages["freelist"] = []uint64{cur.freelist}
	}
	g.live = map[uint64]uint64{}
	for id := uint64(2); id < cur.pgid; id++ {
		if !w.seen[id] {
			continue
		}
		p, err := bf.page(id, cur.pgid)
		if err != nil || ne.Uint64(p) != id {
			continue // an overflow page
		}
		branch, elems, err := parseNode(p, id, false)
		if err != nil {
			t.Fatal(err)
		}
		if branch {
			g.pages["branch"] = append(g.pages["branch"], id)
			continue
		}
		g.pages["leaf"] = append(g.pages["leaf"], id)
		for _, e := range elems {
			if len(e.key) == 8 && !e.bucket && len(e.value) > 0 && e.value[0] == recordVersion {
				g.live[binary.BigEndian.Uint64(e.key)] = id
			}
		}
	}
	for _, typ := range []string{"meta", "branch", "leaf"} {
		if len(g.pages[typ]) == 0 {
			t.Fatalf("test file has no %s page: %v", typ, g.pages)
		}
	}
}

// openDamaged runs Open on a damaged copy and checks what it promises: no
// panic, done within 5 s, a damaged file kept intact as <name>.bad-<time>,
// no record changed beyond what one bit flip can change, and new seqs above
// every seq ever issued. It returns the seqs the reopened queue holds.
func openDamaged(t *testing.T, g *goodFile, name string, damaged []byte, maxAnomalies int) (map[uint64]bool, Stats) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".seq", g.seqRaw, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	q, err := Open(path, Options{CommitInterval: time.Millisecond})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: Open took %v", name, d)
	}
	if err != nil {
		t.Fatalf("%s: Open: %v", name, err)
	}
	defer q.Close()
	s := q.Stats()
	if s.Quarantined != "" {
		if !strings.HasPrefix(filepath.Base(s.Quarantined), "buffer.db.bad-") {
			t.Fatalf("%s: quarantined as %q", name, s.Quarantined)
		}
		if kept, err := os.ReadFile(s.Quarantined); err != nil || !bytes.Equal(kept, damaged) {
			t.Fatalf("%s: the damaged file was not kept intact: %v", name, err)
		}
		if s.Salvaged != s.Records {
			t.Fatalf("%s: salvaged %d but the queue holds %d", name, s.Salvaged, s.Records)
		}
	}
	got := map[uint64]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	anomalies := 0
	for uint64(len(got)) < s.Records {
		recs, err := q.Read(ctx, 1000)
		if err != nil {
			t.Fatalf("%s: read after %d of %d records: %v", name, len(got), s.Records, err)
		}
		for _, r := range recs {
			if got[r.Seq] {
				t.Fatalf("%s: seq %d handed out twice", name, r.Seq)
			}
			got[r.Seq] = true
			orig, ok := g.all[r.Seq]
			if !ok || orig.Topic != r.Topic || !bytes.Equal(orig.Payload, r.Payload) {
				anomalies++
			}
		}
	}
	if anomalies > maxAnomalies {
		t.Fatalf("%s: %d records differ from what was appended (at most %d allowed)", name, anomalies, maxAnomalies)
	}
	r := []Record{rec(99999)}
	if err := q.Append(context.Background(), r...); err != nil {
		t.Fatalf("%s: append after open: %v", name, err)
	}
	if r[0].Seq <= g.maxSeq {
		t.Fatalf("%s: new record got seq %d, but seq %d was issued before", name, r[0].Seq, g.maxSeq)
	}
	return got, s
}

// TestTruncatedFileIsQuarantinedAndSalvaged cuts the file at many offsets:
// Open never panics, and every live record whose leaf page survived the cut
// whole is salvaged with its seq.
func TestTruncatedFileIsQuarantinedAndSalvaged(t *testing.T) {
	g := buildGoodFile(t, false)
	size := int64(len(g.raw))
	var cuts []int64
	for _, c := range []int64{1, 100, 4095, 4096, 4097, 2 * 4096, 2*4096 + 17, 3 * 4096} {
		cuts = append(cuts, c)
	}
	for i := int64(1); i < 20; i++ {
		cuts = append(cuts, size*i/20, size*i/20+g.ps/2)
	}
	cuts = append(cuts, size-g.ps, size-1)
	quarantined := 0
	for _, cut := range cuts {
		if cut <= 0 || cut >= size {
			continue
		}
		name := fmt.Sprintf("cut at %d of %d", cut, size)
		got, s := openDamaged(t, g, name, g.raw[:cut], 0)
		if s.Quarantined != "" {
			quarantined++
		}
		for seq, page := range g.live {
			if int64(page+1)*g.ps <= cut && !got[seq] {
				t.Fatalf("%s: live seq %d on intact leaf page %d was not salvaged (%d salvaged)", name, seq, page, len(got))
			}
		}
		if cut == size/2 {
			t.Logf("%s: %d of %d live records salvaged, stats %+v", name, len(got), len(g.live), s)
		}
	}
	if quarantined == 0 {
		t.Fatal("no truncation was quarantined")
	}
}

// TestBitFlipsInEveryPageType flips bits in the header, elements and data of
// meta, freelist, branch and leaf pages.
func TestBitFlipsInEveryPageType(t *testing.T) {
	for _, syncFreelist := range []bool{false, true} {
		g := buildGoodFile(t, syncFreelist)
		types := []string{"meta", "branch", "leaf"}
		if syncFreelist {
			types = []string{"freelist", "meta"}
		}
		for _, typ := range types {
			ids := g.pages[typ]
			if len(ids) > 3 {
				ids = []uint64{ids[0], ids[len(ids)/2], ids[len(ids)-1]}
			}
			if len(ids) == 0 {
				t.Fatalf("no %s page to damage", typ)
			}
			offsets := []int64{0, 1, 7, 8, 9, 10, 11, 12, 15, 16, 17, 20, 23, 24, 28, 31, 32, 40, 47, 48, 56, 63, 64, 72, 79, g.ps / 2, g.ps - 1}
			if testing.Short() {
				offsets = []int64{0, 8, 10, 12, 16, 20, 24, 56, g.ps - 1}
			}
			quarantined, tried := 0, 0
			for _, id := range ids {
				for i, off := range offsets {
					// Low and high bits alternate; both for the page header.
					masks := []byte{0x01 << (7 * (i % 2))}
					if off < pageHeaderSize {
						masks = []byte{0x01, 0x80}
					}
					for _, mask := range masks {
						d := bytes.Clone(g.raw)
						d[int64(id)*g.ps+off] ^= mask
						_, s := openDamaged(t, g, fmt.Sprintf("%s page %d byte %d ^%#x (freelist synced %v)", typ, id, off, mask, syncFreelist), d, 1)
						tried++
						if s.Quarantined != "" {
							quarantined++
						}
					}
				}
			}
			t.Logf("%s pages: %d of %d flips quarantined", typ, quarantined, tried)
			if typ != "meta" && quarantined == 0 {
				t.Fatalf("no flip in a %s page was found", typ)
			}
		}
		// Both meta pages at once: no valid meta, the leaves are still there.
		d := bytes.Clone(g.raw)
		d[16] ^= 1
		d[g.ps+16] ^= 1
		got, s := openDamaged(t, g, "both meta pages", d, 0)
		if s.Quarantined == "" || len(got) < len(g.live)/2 {
			t.Fatalf("both meta pages damaged: quarantined %q, salvaged %d of %d live records", s.Quarantined, len(got), len(g.live))
		}
	}
}

// TestOneDamagedMetaFallsBackWithoutQuarantine: a torn meta page is what a
// power cut during a commit leaves; bbolt uses the other one, and that is
// not damage.
func TestOneDamagedMetaFallsBackWithoutQuarantine(t *testing.T) {
	g := buildGoodFile(t, false)
	bf, _ := openBoltFile(bytes.NewReader(g.raw), int64(len(g.raw)))
	cur, _ := bf.current()
	newest := int64(0)
	if bf.metas[1] == cur {
		newest = 1
	}
	d := bytes.Clone(g.raw)
	d[newest*g.ps+16+56] ^= 0xff // the checksum
	_, s := openDamaged(t, g, "newest meta torn", d, 0)
	if s.Quarantined != "" {
		t.Fatalf("a torn meta page was quarantined: %+v", s)
	}
}

// TestReadStatsOnDamagedFilesNeverPanics is what `lintel buffer stats` runs.
func TestReadStatsOnDamagedFilesNeverPanics(t *testing.T) {
	g := buildGoodFile(t, false)
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	try := func(d []byte) error {
		if err := os.WriteFile(path, d, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadStats(path)
		return err
	}
	if err := try(g.raw); err != nil {
		t.Fatalf("good file: %v", err)
	}
	if err := try(g.raw[:len(g.raw)/2]); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("half file: %v, want a 'damaged' error", err)
	}
	for _, typ := range []string{"meta", "branch", "leaf"} {
		for _, id := range g.pages[typ] {
			for _, off := range []int64{0, 8, 10, 16, 20, 24} {
				d := bytes.Clone(g.raw)
				d[int64(id)*g.ps+off] ^= 0x80
				try(d) // an error or not, it must return
			}
		}
	}
}

// FuzzOpen: whatever the bytes, Open returns (an error or a queue), and
// never panics. Seeds are damaged copies of a real file.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 8192))
	seed := seedFile(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(seed[:3*4096+5])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "buffer.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ReadStats(path)
		q, err := Open(path, Options{CommitInterval: time.Millisecond})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := q.Append(context.Background(), rec(1)); err != nil {
			t.Fatalf("append: %v", err)
		}
		q.Close()
	})
}

func seedFile(f *testing.F) []byte {
	path := filepath.Join(f.TempDir(), "buffer.db")
	q := openTest(f, path, Options{})
	recs := make([]Record, 300)
	for i := range recs {
		recs[i] = rec(i)
	}
	if err := q.Append(context.Background(), recs...); err != nil {
		f.Fatal(err)
	}
	q.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return raw
}

// TestHiddenSubtreeIsSalvaged: a branch page whose count rotted downwards
// still parses, but hides its last child. The counters committed with the
// records expose it, and salvage finds the hidden leaves.
func TestHiddenSubtreeIsSalvaged(t *testing.T) {
	g := buildGoodFile(t, false)
	for _, id := range g.pages["branch"] {
		d := bytes.Clone(g.raw)
		off := int64(id)*g.ps + 10
		count := ne.Uint16(d[off:])
		if count < 2 {
			continue
		}
		ne.PutUint16(d[off:], count-1)
		name := fmt.Sprintf("branch page %d count %d -> %d", id, count, count-1)
		got, s := openDamaged(t, g, name, d, 0)
		if s.Quarantined == "" {
			t.Fatalf("%s: not quarantined", name)
		}
		for seq := range g.live {
			if !got[seq] {
				t.Fatalf("%s: live seq %d lost", name, seq)
			}
		}
	}
}

// TestNextSeqBelowStoredSeqIsDamage: a rotted next_seq counter would hand
// out a seq that is stored already (overwriting that record); the full
// check finds it and the salvaged file continues above it.
func TestNextSeqBelowStoredSeqIsDamage(t *testing.T) {
	g := buildGoodFile(t, false)
	d := bytes.Clone(g.raw)
	var want [8]byte
	binary.BigEndian.PutUint64(want[:], g.maxSeq+1)
	pattern := append([]byte("next_seq"), want[:]...)
	if !bytes.Contains(d, pattern) {
		t.Fatal("next_seq not found in the file")
	}
	// Every copy (freed pages keep old ones): far below the stored seqs.
	d = bytes.ReplaceAll(d, pattern, append([]byte("next_seq"), 0, 0, 0, 0, 0, 0, 0, 5))
	_, s := openDamaged(t, g, "next_seq rotted to 5", d, 0)
	if s.Quarantined == "" {
		t.Fatal("a next_seq below stored seqs was not found")
	}
}
