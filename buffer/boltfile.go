package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// This file reads bbolt's on-disk format with pread and bounds checks, without
// bbolt. It exists because bbolt cannot be trusted with a damaged file: it
// mmaps the file (a page past the end of a truncated file faults with SIGBUS,
// which recover cannot catch); the freelist rebuild at Open (NoFreelistSync)
// walks the tree in a goroutine of its own, where a "Page expected to be …"
// assertion kills the process; and tx.Check runs in another goroutine that
// stays blocked when its caller stops reading errors early. A child process would contain the crash, but
// the gateway would need a hidden sub-command and twice the file reads. So the
// file is validated here first, in the caller's goroutine, with every offset
// checked against the file size and page span; only a file that passes is
// handed to bbolt. The same reader salvages records from a file that fails.
//
// Layout (bbolt v1.x, format version 2, native byte order — little-endian
// on every platform Lintel ships for):
//
//	page header: id u64, flags u16, count u16, overflow u32
//	meta (at 16): magic u32, version u32, pageSize u32, flags u32,
//	    root pgid u64, root sequence u64, freelist u64, pgid u64, txid u64,
//	    checksum u64 (FNV-64a of the 56 bytes before it)
//	branch element: pos u32, ksize u32, pgid u64 (pos from the element)
//	leaf element: flags u32, pos u32, ksize u32, vsize u32
//	bucket value: root pgid u64, sequence u64, then the inline page if root is 0

const (
	pageHeaderSize = 16
	elemSize       = 16
	flagBranch     = 0x01
	flagLeaf       = 0x02
	flagMeta       = 0x04
	flagFreelist   = 0x10
	leafIsBucket   = 0x01
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	maxTreeDepth   = 64 // far deeper than any real file; bounds recursion on a cycle
)

var ne = binary.NativeEndian

// errCorrupt marks proven damage: the file was readable but its content is
// not a sound bbolt file.
var errCorrupt = errors.New("damaged file")

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

func parseMeta(page []byte) (boltMeta, error) {
	if len(page) < pageHeaderSize+64 {
		return boltMeta{}, corruptf("short meta page")
	}
	if ne.Uint16(page[8:]) != flagMeta {
		return boltMeta{}, corruptf("meta page has flags %#x", ne.Uint16(page[8:]))
	}
	m := page[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:56])
	switch {
	case ne.Uint32(m[0:]) != boltMagic:
		return boltMeta{}, corruptf("meta page: bad magic")
	case ne.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, corruptf("meta page: version %d", ne.Uint32(m[4:]))
	case ne.Uint64(m[56:]) != h.Sum64():
		return boltMeta{}, corruptf("meta page: checksum mismatch")
	}
	return boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, nil
}

// boltFile is a read-only view of a bbolt file through pread.
type boltFile struct {
	r     io.ReaderAt
	size  int64
	ps    int64
	metas [2]*boltMeta // nil where invalid
	errs  [2]error     // why a meta is invalid
}

// openBoltFile reads both meta pages. It fails with errCorrupt when neither
// is valid or the valid ones do not fit the file.
func openBoltFile(r io.ReaderAt, size int64) (*boltFile, error) {
	bf := &boltFile{r: r, size: size}
	if size < 2*1024 {
		return nil, corruptf("file of %d bytes is too short for two meta pages", size)
	}
	buf := make([]byte, pageHeaderSize+64)
	if _, err := r.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read meta page 0: %w", err)
	}
	m0, err0 := parseMeta(buf)
	// The page size comes from meta 0; if that is damaged, try the sizes a
	// bbolt file can have for meta 1 (bbolt does the same with the OS page
	// size).
	sizes := []uint32{4096, 16384, 65536, 8192, 32768, 1024, 2048}
	if err0 == nil {
		sizes = []uint32{m0.pageSize}
	}
	bf.errs[0] = err0
	var m1 boltMeta
	err1 := corruptf("meta page 1 not found")
	for _, ps := range sizes {
		if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 || int64(ps)*2 > size {
			continue
		}
		if _, err := r.ReadAt(buf, int64(ps)); err != nil {
			return nil, fmt.Errorf("read meta page 1: %w", err)
		}
		if m1, err1 = parseMeta(buf); err1 == nil && m1.pageSize == ps {
			break
		} else if err1 == nil {
			err1 = corruptf("meta page 1 says page size %d", m1.pageSize)
		}
	}
	bf.errs[1] = err1
	for i, m := range []struct {
		m   boltMeta
		err error
	}{{m0, err0}, {m1, err1}} {
		if m.err != nil {
			continue
		}
		if err0 == nil && err1 == nil && m0.pageSize != m1.pageSize {
			return nil, corruptf("meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
		}
		mm := m.m
		if mm.pageSize < 1024 || mm.pageSize > 1<<16 || mm.pageSize&(mm.pageSize-1) != 0 {
			bf.errs[i] = corruptf("meta page %d: page size %d", i, mm.pageSize)
			continue
		}
		bf.ps = int64(mm.pageSize)
		if mm.pgid < 3 || mm.root < 2 || mm.root >= mm.pgid || (mm.freelist != noFreelist && (mm.freelist < 2 || mm.freelist >= mm.pgid)) {
			bf.errs[i] = corruptf("meta page %d: page ids out of range (root %d, freelist %d, high water %d)", i, mm.root, int64(mm.freelist), mm.pgid)
			continue
		}
		bf.metas[i] = &mm
	}
	if bf.metas[0] == nil && bf.metas[1] == nil {
		return nil, corruptf("no valid meta page (%v; %v)", bf.errs[0], bf.errs[1])
	}
	return bf, nil
}

// current is the meta bbolt would use: the valid one with the higher txid.
// other is the remaining valid one, or nil.
func (bf *boltFile) current() (cur, other *boltMeta) {
	a, b := bf.metas[0], bf.metas[1]
	if a == nil || (b != nil && b.txid > a.txid) {
		a, b = b, a
	}
	return a, b
}

// page reads page id with its overflow pages; hwm is the meta's high-water
// page id. Every page bbolt may reach must lie inside the file: bbolt maps it,
// and touching a mapped page past the end of the file is a SIGBUS.
func (bf *boltFile) page(id, hwm uint64) ([]byte, error) {
	if id < 2 || id >= hwm {
		return nil, corruptf("page %d outside 2..%d", id, hwm)
	}
	if int64(id) > bf.size/bf.ps {
		return nil, corruptf("page %d is past the end of the file (truncated at %d bytes)", id, bf.size)
	}
	var hdr [pageHeaderSize]byte
	if _, err := bf.r.ReadAt(hdr[:], int64(id)*bf.ps); err != nil {
		return nil, bf.readErr(id, err)
	}
	if got := ne.Uint64(hdr[0:]); got != id {
		return nil, corruptf("page %d identifies itself as %d", id, got)
	}
	n := uint64(ne.Uint32(hdr[12:])) + 1
	if id+n > hwm {
		return nil, corruptf("page %d: %d overflow pages pass the high water mark %d", id, n-1, hwm)
	}
	if end := int64(id+n) * bf.ps; end > bf.size {
		return nil, corruptf("page %d ends at byte %d, past the end of the file (%d bytes: truncated)", id, end, bf.size)
	}
	buf := make([]byte, int64(n)*bf.ps)
	if _, err := bf.r.ReadAt(buf, int64(id)*bf.ps); err != nil {
		return nil, bf.readErr(id, err)
	}
	return buf, nil
}

func (bf *boltFile) readErr(id uint64, err error) error {
	if errors.Is(err, io.EOF) {
		return corruptf("page %d: file truncated", id)
	}
	return fmt.Errorf("read page %d: %w", id, err)
}

// nodeElem is one element of a branch or leaf page, sliced out of the page.
type nodeElem struct {
	key, value []byte
	child      uint64 // branch only
	bucket     bool   // leaf only
}

// parseNode checks a branch or leaf page (or an inline bucket page) and
// returns its elements: every offset inside the page, keys strictly
// increasing.
func parseNode(p []byte, wantID uint64, inline bool) (branch bool, elems []nodeElem, err error) {
	if len(p) < pageHeaderSize {
		return false, nil, corruptf("page %d: short", wantID)
	}
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	switch {
	case flags == flagBranch && !inline:
		branch = true
		if count == 0 {
			return false, nil, corruptf("page %d: empty branch", wantID)
		}
	case flags == flagLeaf:
	default:
		return false, nil, corruptf("page %d: flags %#x where a branch or leaf page belongs", wantID, flags)
	}
	if pageHeaderSize+count*elemSize > len(p) {
		return false, nil, corruptf("page %d: %d elements do not fit", wantID, count)
	}
	elems = make([]nodeElem, count)
	for i := range count {
		off := pageHeaderSize + i*elemSize
		e := p[off : off+elemSize]
		var pos, ksize, vsize uint64
		if branch {
			pos, ksize = uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			elems[i].child = ne.Uint64(e[8:])
		} else {
			elems[i].bucket = ne.Uint32(e[0:])&leafIsBucket != 0
			pos, ksize, vsize = uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		}
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(p)) {
			return false, nil, corruptf("page %d: element %d points past the page", wantID, i)
		}
		elems[i].key = p[start : start+ksize]
		elems[i].value = p[start+ksize : start+ksize+vsize]
		if i > 0 && bytes.Compare(elems[i-1].key, elems[i].key) >= 0 {
			return false, nil, corruptf("page %d: keys out of order at element %d", wantID, i)
		}
	}
	return branch, elems, nil
}

// walker visits the key/values of a bucket tree. In strict mode the first
// damage ends the walk; otherwise a damaged subtree is skipped and counted,
// and the walk goes on (salvage).
type walker struct {
	bf      *boltFile
	hwm     uint64
	strict  bool
	seen    map[uint64]bool // pages already visited: a page reached twice is damage
	damaged []error         // skipped subtrees and records (salvage mode)
	lost    bool            // a subtree was skipped, not just a record
}

// failRecord skips one bad record (salvage mode): the tree is intact.
func (w *walker) failRecord(err error) error {
	if w.strict {
		return err
	}
	w.damaged = append(w.damaged, err)
	return nil
}

// fail ends a strict walk; in salvage mode it skips the subtree (a page that
// is damaged or cannot be read) and goes on.
func (w *walker) fail(err error) error {
	if w.strict {
		return err
	}
	w.lost = true
	w.damaged = append(w.damaged, err)
	return nil
}

// bucket walks the bucket whose value (header + inline page) is v, calling fn
// for each element of its leaves in key order.
func (w *walker) bucket(v []byte, depth int, fn func(e nodeElem, depth int) error) error {
	if len(v) < 16 {
		return w.fail(corruptf("bucket value of %d bytes", len(v)))
	}
	if root := ne.Uint64(v[0:]); root != 0 {
		return w.tree(root, nil, nil, depth, fn)
	}
	_, elems, err := parseNode(v[16:], 0, true)
	if err != nil {
		return w.fail(err)
	}
	for _, e := range elems {
		if err := fn(e, depth); err != nil {
			return err
		}
	}
	return nil
}

// tree walks the subtree at page id; its keys must lie in [lo, hi) (nil: no
// bound), as the parent's branch keys say.
func (w *walker) tree(id uint64, lo, hi []byte, depth int, fn func(e nodeElem, depth int) error) error {
	if depth > maxTreeDepth {
		return w.fail(corruptf("page %d: tree deeper than %d", id, maxTreeDepth))
	}
	if w.seen[id] {
		return w.fail(corruptf("page %d reached twice", id))
	}
	p, err := w.bf.page(id, w.hwm)
	if err != nil {
		return w.fail(err)
	}
	for i := range uint64(ne.Uint32(p[12:])) + 1 {
		if i > 0 && w.seen[id+i] {
			return w.fail(corruptf("page %d: overflow page %d is also reached on its own", id, id+i))
		}
		w.seen[id+i] = true
	}
	branch, elems, err := parseNode(p, id, false)
	if err == nil && len(elems) > 0 && (lo != nil && bytes.Compare(elems[0].key, lo) < 0 ||
		hi != nil && bytes.Compare(elems[len(elems)-1].key, hi) >= 0) {
		err = corruptf("page %d: keys outside the range its parent gives", id)
	}
	if err != nil {
		return w.fail(err)
	}
	for i, e := range elems {
		if branch {
			next := hi
			if i+1 < len(elems) {
				next = elems[i+1].key
			}
			if err := w.tree(e.child, e.key, next, depth+1, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(e, depth); err != nil {
			return err
		}
	}
	return nil
}

// fileContent is what a walk of one meta's tree found.
type fileContent struct {
	records map[uint64]storedRecord // high and normal, by seq
	dead    map[uint64][]byte       // dead-letter values, by seq
	meta    map[string]uint64       // the meta bucket's counters
	buckets map[string]bool         // top-level buckets present
	bad     uint64                  // records skipped: wrong key size or undecodable
	// what the walk counted, to compare with the meta bucket's counters
	n, high, bytes, ndead uint64
	maxSeq                uint64 // highest seq of a record or dead letter
}

type storedRecord struct {
	prio  Priority
	value []byte
}

// scan walks the tree of meta m. In strict mode it returns the first damage;
// otherwise it returns what it could read, with damaged subtrees listed in
// the walker. keep says whether to keep the record values (salvage) or only
// check them (validation).
func (bf *boltFile) scan(m *boltMeta, strict, keep bool) (*fileContent, *walker, error) {
	w := &walker{bf: bf, hwm: m.pgid, strict: strict, seen: map[uint64]bool{}}
	fc := &fileContent{records: map[uint64]storedRecord{}, dead: map[uint64][]byte{}, meta: map[string]uint64{}, buckets: map[string]bool{}}
	rootVal := make([]byte, 16)
	ne.PutUint64(rootVal, m.root)
	err := w.bucket(rootVal, 0, func(top nodeElem, depth int) error {
		if !top.bucket {
			return w.fail(corruptf("top level holds key %q that is not a bucket", top.key))
		}
		name := string(top.key)
		fc.buckets[name] = true
		prio := Normal
		switch name {
		case string(bucketHigh):
			prio = High
			fallthrough
		case string(bucketNormal):
			return w.bucket(top.value, depth+1, func(e nodeElem, _ int) error {
				if e.bucket || len(e.key) != 8 {
					return w.fail(corruptf("bucket %s: key %x is not a seq", name, e.key))
				}
				seq := binary.BigEndian.Uint64(e.key)
				if _, _, ok := recordLayout(e.value); !ok {
					fc.bad++
					return w.failRecord(corruptf("bucket %s: record %d is malformed", name, seq))
				}
				fc.n++
				fc.maxSeq = max(fc.maxSeq, seq)
				fc.bytes += uint64(len(e.value))
				if prio == High {
					fc.high++
				}
				if keep { // validation only counts: a map of every seq would cost ~100 MB at 1M records
					fc.records[seq] = storedRecord{prio: prio, value: bytes.Clone(e.value)}
				}
				return nil
			})
		case string(bucketDead):
			return w.bucket(top.value, depth+1, func(e nodeElem, _ int) error {
				if e.bucket || len(e.key) != 8 {
					return w.fail(corruptf("bucket dead: key %x is not a seq", e.key))
				}
				seq := binary.BigEndian.Uint64(e.key)
				if _, err := decodeDead(seq, e.value); err != nil {
					fc.bad++
					return w.failRecord(corruptf("bucket dead: %v", err))
				}
				fc.ndead++
				fc.maxSeq = max(fc.maxSeq, seq)
				if keep {
					fc.dead[seq] = bytes.Clone(e.value)
				}
				return nil
			})
		case string(bucketMeta):
			return w.bucket(top.value, depth+1, func(e nodeElem, _ int) error {
				if !e.bucket && len(e.value) == 8 {
					fc.meta[string(e.key)] = binary.BigEndian.Uint64(e.value)
				}
				return nil
			})
		default: // not ours: check its structure only
			return w.bucket(top.value, depth+1, func(nodeElem, int) error { return nil })
		}
	})
	if err != nil {
		return nil, w, err
	}
	if strict && fc.buckets[string(bucketMeta)] {
		// The counters are committed with the records they count: a
		// mismatch means part of the tree is no longer reachable.
		for _, c := range []struct {
			key   []byte
			found uint64
		}{{keyCount, fc.n}, {keyHigh, fc.high}, {keyBytes, fc.bytes}, {keyDead, fc.ndead}} {
			if want, ok := fc.meta[string(c.key)]; ok && want != c.found {
				return nil, w, corruptf("meta says %s %d, the tree holds %d", c.key, want, c.found)
			}
		}
		// A stored seq at or above next_seq would be issued again.
		if next, ok := fc.meta[string(keyNextSeq)]; ok && fc.maxSeq >= next {
			return nil, w, corruptf("meta says next_seq %d, but seq %d is stored", next, fc.maxSeq)
		}
	}
	if strict && m.freelist != noFreelist {
		if err := bf.checkFreelist(m, w.seen); err != nil {
			return nil, w, err
		}
	}
	return fc, w, nil
}

// checkFreelist proves that the freelist lists no page that is in use: bbolt
// would hand such a page out again and overwrite live data.
func (bf *boltFile) checkFreelist(m *boltMeta, used map[uint64]bool) error {
	p, err := bf.page(m.freelist, m.pgid)
	if err != nil {
		return err
	}
	if f := ne.Uint16(p[8:]); f != flagFreelist {
		return corruptf("freelist page %d has flags %#x", m.freelist, f)
	}
	start, count := pageHeaderSize, uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		count = ne.Uint64(p[pageHeaderSize:])
		start += 8
	}
	if count > uint64(len(p)-start)/8 {
		return corruptf("freelist page %d: %d ids do not fit", m.freelist, count)
	}
	for i := range count {
		id := ne.Uint64(p[start+int(i)*8:])
		if id < 2 || id >= m.pgid || used[id] || id >= m.freelist && id <= m.freelist+uint64(ne.Uint32(p[12:])) {
			return corruptf("freelist page %d lists page %d, which is in use or out of range", m.freelist, id)
		}
	}
	return nil
}

// quickCheck is the check after a clean shutdown (the marker has vouched for
// the meta and freelist pages): that the file is as long as the current
// meta's high-water mark says, which is what a truncated copy gets wrong,
// and that the root page is where the meta says. It reads one page.
func (bf *boltFile) quickCheck() error {
	cur, _ := bf.current()
	if end := int64(cur.pgid) * bf.ps; end > bf.size {
		return corruptf("file is %d bytes but its pages reach byte %d: truncated", bf.size, end)
	}
	_, err := bf.page(cur.root, cur.pgid)
	return err
}

// statFile opens path for reading with its size.
func statFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}
