package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openFileFunc is os.OpenFile; tests replace it to inject errors.
type openFileFunc func(name string, flag int, perm os.FileMode) (*os.File, error)

// boltOptions are the live queue's bbolt options. NoFreelistSync saves one
// page write per commit (SD wear); bbolt rebuilds the freelist by walking
// the tree at open instead, as etcd does.
func boltOptions(f *os.File) *bolt.Options {
	return &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Hand bbolt the file this package opened, locked and validated,
		// so nothing can swap it in between. bbolt's own flock on the same
		// open file description succeeds.
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil },
	}
}

// Open opens or creates the queue file at path (mode 0600), with its seq
// high-water file (<path>.seq) beside it.
//
// Unless Close left a clean-shutdown marker (<path>.clean) that matches the
// file, the whole file is validated first, with bounds-checked reads and
// without bbolt (see boltfile.go). A file with proven damage is moved aside
// as <path>.bad-<time>, every record that can still be read is copied into a
// new file with its seq, and Stats reports it. Errors that a new file would
// not fix are returned and the file is left alone: ErrLocked, and no
// permission or a read-only file system (errors.Is(err, fs.ErrPermission) or
// syscall.EROFS), with the fix in the message.
func Open(path string, opts Options) (*Queue, error) {
	opts.ensureDefaults()
	q := &Queue{
		opts:    opts,
		path:    path,
		log:     opts.Logger.With("component", "buffer"),
		ops:     make(chan op, 1024),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
		changed: make(chan struct{}),
		unwatch: make(chan struct{}),
		watched: make(chan struct{}),
	}
	if err := q.open(); err != nil {
		return nil, err
	}
	go q.write()
	go q.watch()
	return q, nil
}

func (q *Queue) open() error {
	path, openFile := q.path, q.opts.openFile
	clean, err := takeCleanMarker(path)
	if err != nil {
		return refusal(path, "clean-shutdown marker", err)
	}
	if err := adoptSalvage(path); err != nil {
		return refusal(path, "salvaged file", err)
	}
	hw, hwDamaged, err := openHighWater(path+".seq", openFile)
	if err != nil {
		return refusal(path, "seq high-water file", err)
	}
	if hwDamaged {
		q.log.Warn("seq high-water file unreadable; seqs continue from the buffer file", "file", hw.path)
	}
	q.hw = hw
	db, err := q.openDB(clean)
	if err != nil {
		hw.close()
		return err
	}
	q.db = db
	err = db.View(func(tx *bolt.Tx) error {
		q.stats = readStats(tx, q.stats)
		q.clock = newClock(q.opts.Now, newest(tx))
		return nil
	})
	if err != nil {
		db.Close()
		hw.close()
		return fmt.Errorf("buffer %s: %w", path, err)
	}
	// Seqs continue above every seq the high-water file allowed: after a
	// quarantine or a lost file the buffer's own counter starts lower.
	q.stats.NextSeq = max(q.stats.NextSeq, hw.reserved+1)
	q.cur.liveFrom = q.stats.NextSeq // everything already stored is backlog
	q.cur.live = q.stats.NextSeq
	if fi, err := os.Stat(path); err == nil {
		q.ident = fileIdentity(fi)
	}
	return nil
}

// openDB opens, locks and validates the buffer file, quarantining it when
// it is damaged.
func (q *Queue) openDB(clean bool) (*bolt.DB, error) {
	path := q.path
	f, err := q.opts.openFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, refusal(path, "open", err)
	}
	if err := lockFile(f, true, time.Second); err != nil {
		f.Close()
		return nil, fmt.Errorf("buffer %s: %w", path, err)
	}
	damage := validate(f, clean)
	if damage == nil {
		db, err := boltOpen(path, f) // closes f on failure
		if err == nil {
			if !clean {
				releaseMapping(db, f)
			}
			if err = createBuckets(db); err == nil {
				return db, nil
			}
			db.Close()
		}
		if !isDamage(err) {
			return nil, refusal(path, "open", err)
		}
		damage = err
	} else {
		f.Close()
		if !isDamage(damage) {
			return nil, refusal(path, "read", damage)
		}
	}
	return q.quarantine(damage)
}

// validate checks an existing file: fully, or only its meta pages and
// length after a clean shutdown. An empty file is new.
func validate(f *os.File, clean bool) (err error) {
	// Every read is bounds-checked; should one still panic, the file is
	// treated as damaged (kept intact, salvaged) rather than crash-looping
	// the gateway.
	defer func() {
		if p := recover(); p != nil {
			err = corruptf("validation stopped: %v", p)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	bf, err := openBoltFile(f, fi.Size())
	if err != nil {
		return err
	}
	if clean {
		return bf.quickCheck()
	}
	cur, _ := bf.current()
	fc, _, err := bf.scan(cur, true, false)
	if err != nil {
		return err
	}
	if txid, ok := fc.meta[string(keyTxID)]; ok && txid != cur.txid {
		return corruptf("meta page of txid %d leads to a tree stamped by txid %d: the commit's data pages were lost, or another program wrote the file", cur.txid, txid)
	}
	return nil
}

// keyTxID in the meta bucket holds the id of the transaction that wrote the
// tree. A power cut on a device that reorders writes across a flush can
// leave a commit's meta page without its data pages. If the commit's root
// is a page it took back from the tree before the previous one (bbolt
// reuses a commit's freed pages once the next commit is done), that meta
// page leads to the older tree, still intact on disk: sound in every other
// check, it would silently drop every record the previous commit stored.
// The stamp tells the two apart; files without it (older versions) are not
// checked for this.
var keyTxID = []byte("txid")

// stampTx records tx's id in the meta bucket. Every write transaction of
// this package calls it last, so that a tree reached from a meta page
// carries that meta page's txid. A file written afterwards by another
// program is quarantined (and salvaged) at the next full check.
func stampTx(tx *bolt.Tx) error {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return nil
	}
	return b.Put(keyTxID, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
}

// boltOpen opens a validated file. bbolt panics are turned into damage, as a
// last line: validation is meant to have ruled them out.
func boltOpen(path string, f *os.File) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			// bbolt's mapping of the file outlives a panic in Open and keeps
			// the lock: release it for the quarantine. The mapping leaks.
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
			db, err = nil, corruptf("bbolt: %v", p)
		}
	}()
	db, err = bolt.Open(path, 0o600, boltOptions(f))
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, ErrLocked
	}
	return db, err
}

// releaseMapping drops the process's mapping of the pages bbolt touched
// while rebuilding its freelist at open (every page of the tree, after a
// crash): they would otherwise count in the process's RSS (RssFile) until
// unmapped, as large as the file. The pages stay in the page cache and are
// mapped again when used; bbolt maps the file read-only and writes with
// pwrite, so nothing is lost.
func releaseMapping(db *bolt.DB, f *os.File) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return
	}
	syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(fi.Size()), syscall.MADV_DONTNEED)
}

func createBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketHigh, bucketNormal, bucketMeta, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return stampTx(tx)
	})
}

// isDamage says whether err proves the file is damaged (as opposed to the
// file being unreachable): only then is it quarantined. An I/O error while
// reading counts: the file has pages that cannot be read back.
func isDamage(err error) bool {
	return errors.Is(err, errCorrupt) || errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrChecksum) ||
		errors.Is(err, bolt.ErrVersionMismatch) || errors.Is(err, bolt.ErrIncompatibleValue) || errors.Is(err, syscall.EIO)
}

// refusal wraps an error that leaves the file alone. Permission and
// read-only errors name the fix.
func refusal(path, what string, err error) error {
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("buffer %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("buffer %s: %s: %w (the file is left untouched; give the gateway's user the data directory, e.g. chown -R lintel: %s)", path, what, err, dir)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("buffer %s: %s: %w (the file is left untouched; the data directory %s must be on a writable file system)", path, what, err, dir)
	}
	return fmt.Errorf("buffer %s: %s: %w", path, what, err)
}

// quarantine moves the damaged file aside and builds a new one from every
// record that can still be read, each with its seq.
func (q *Queue) quarantine(cause error) (*bolt.DB, error) {
	path := q.path
	f, err := q.opts.openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, refusal(path, "open damaged file", err)
	}
	defer f.Close()
	if err := lockFile(f, true, time.Second); err != nil {
		return nil, fmt.Errorf("buffer %s: %w", path, err)
	}
	s := salvage(f)

	// Build the new file beside the old one, then swap them: a crash in
	// between leaves <path>.salvage, which the next Open adopts.
	tmp := path + ".salvage"
	os.Remove(tmp)
	if err := writeSalvage(tmp, s, q.hw.reserved, q.opts.openFile); err != nil {
		os.Remove(tmp)
		return nil, refusal(path, "write salvaged records", err)
	}
	bad := fmt.Sprintf("%s.bad-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	for i := 1; ; i++ {
		if _, err := os.Lstat(bad); errors.Is(err, fs.ErrNotExist) {
			break
		}
		bad = fmt.Sprintf("%s.bad-%s.%d", path, time.Now().UTC().Format("20060102T150405Z"), i)
	}
	if err := os.Rename(path, bad); err != nil {
		return nil, refusal(path, "move damaged file aside", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, refusal(path, "move salvaged file in place", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, refusal(path, "sync data directory", err)
	}
	q.stats.Quarantined = bad
	q.stats.Salvaged = uint64(len(s.records))
	q.stats.SalvageLost = s.lost()
	q.log.Error("buffer file is damaged; moved aside, readable records salvaged with their seqs",
		"file", path, "moved_to", bad, "salvaged", len(s.records), "dead_letters", len(s.dead),
		"lost_at_least", s.lost(), "damaged_parts", len(s.damage), "err", cause)
	for i, d := range s.damage {
		if i == 10 {
			break
		}
		q.log.Warn("damaged part of the buffer file skipped", "file", bad, "err", d)
	}

	nf, err := q.opts.openFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, refusal(path, "open salvaged file", err)
	}
	if err := lockFile(nf, true, time.Second); err != nil {
		nf.Close()
		return nil, fmt.Errorf("buffer %s: %w", path, err)
	}
	db, err := boltOpen(path, nf)
	if err != nil {
		return nil, fmt.Errorf("buffer %s: salvaged file: %w", path, err)
	}
	return db, nil
}

// salvaged is what could be read from a damaged file.
type salvaged struct {
	records  map[uint64]storedRecord
	dead     map[uint64][]byte
	nextSeq  uint64 // from the damaged file's meta bucket, 0 if unreadable
	expected uint64 // the damaged file's record counter, 0 if unreadable
	damage   []error
}

func (s *salvaged) lost() uint64 {
	if n := uint64(len(s.records)); s.expected > n {
		return s.expected - n
	}
	return 0
}

// salvage reads every record it can. First the tree of the current meta
// page, then the previous one (bbolt leaves the previous transaction's pages
// intact until the next commit): records only the previous tree holds were
// acked or dead-lettered in the last transaction and come back as
// duplicates with their own seq (at-least-once). Then every other page that
// is a well-formed leaf of seq-keyed records: a truncated or damaged tree
// often loses its root and branch pages (bbolt writes them last, at the end
// of the file) while most leaves are intact. Records found there may have
// been delivered already (freed pages keep old leaves) and come back with
// their own seq as Normal priority (a leaf does not say its class); ones at
// or above the file's next seq belong to a commit that never completed and
// are left out. Loose leaves are read only when the current tree lost a
// page: an intact tree holds every live record, and the loose leaves then
// hold only delivered ones.
func salvage(f *os.File) (s *salvaged) {
	s = &salvaged{records: map[uint64]storedRecord{}, dead: map[uint64][]byte{}}
	defer func() { // as in validate: keep what was read so far
		if p := recover(); p != nil {
			s.damage = append(s.damage, fmt.Errorf("salvage stopped: %v", p))
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		s.damage = append(s.damage, err)
		return s
	}
	bf, err := openBoltFile(f, fi.Size())
	if err != nil {
		s.damage = append(s.damage, err)
		bf = &boltFile{r: f, size: fi.Size(), ps: 4096} // bbolt's default: try it for orphan leaves
	}
	seen := map[uint64]bool{}
	cur, prev := bf.current()
	var hwm uint64
	lost := cur == nil
	for i, m := range []*boltMeta{cur, prev} {
		if m == nil {
			continue
		}
		hwm = max(hwm, m.pgid)
		fc, w, err := bf.scan(m, false, true)
		for id := range w.seen {
			seen[id] = true
		}
		if err != nil {
			s.damage = append(s.damage, err)
			continue
		}
		if i == 0 || s.nextSeq == 0 {
			s.nextSeq, s.expected = fc.meta[string(keyNextSeq)], fc.meta[string(keyCount)]
		}
		if i == 0 {
			s.damage = append(s.damage, w.damaged...)
			// Fewer records than the counter committed with them: a
			// subtree is hidden (e.g. a branch page's count rotted).
			want, counted := fc.meta[string(keyCount)]
			lost = w.lost || counted && fc.n+fc.bad < want
		}
		for seq, v := range fc.dead {
			if _, ok := s.dead[seq]; !ok {
				s.dead[seq] = v
			}
		}
		for seq, r := range fc.records {
			s.add(seq, r)
		}
	}
	if !lost {
		return s
	}
	if hwm == 0 || hwm > uint64(bf.size/bf.ps) {
		hwm = uint64(bf.size / bf.ps)
	}
	for id := uint64(2); id < hwm; id++ {
		if seen[id] {
			continue
		}
		p, err := bf.page(id, hwm)
		if err != nil {
			continue
		}
		branch, elems, err := parseNode(p, id, false)
		if err != nil || branch {
			continue
		}
		recs := make(map[uint64]storedRecord, len(elems))
		for _, e := range elems {
			if e.bucket || len(e.key) != 8 {
				break
			}
			seq := binary.BigEndian.Uint64(e.key)
			if _, err := decodeRecord(seq, e.value, Normal); err != nil || s.nextSeq > 0 && seq >= s.nextSeq {
				break
			}
			recs[seq] = storedRecord{prio: Normal, value: bytes.Clone(e.value)}
		}
		if len(recs) != len(elems) {
			continue // not a page of records: all or nothing
		}
		for seq, r := range recs {
			s.add(seq, r)
		}
	}
	return s
}

func (s *salvaged) add(seq uint64, r storedRecord) {
	if _, ok := s.records[seq]; ok {
		return
	}
	if _, dead := s.dead[seq]; !dead {
		s.records[seq] = r
	}
}

// writeSalvage writes the salvaged records into a new file at path. It is
// built without per-transaction fsyncs and synced once at the end.
func writeSalvage(path string, s *salvaged, floor uint64, openFile openFileFunc) error {
	f, err := openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	o := boltOptions(f)
	o.NoSync = true
	db, err := bolt.Open(path, 0o600, o)
	if err != nil {
		return err
	}
	if err := createBuckets(db); err != nil {
		db.Close()
		return err
	}
	var st Stats
	st.NextSeq = max(s.nextSeq, floor+1, 1)
	seqs := make([]uint64, 0, len(s.records))
	for seq := range s.records {
		seqs = append(seqs, seq)
	}
	put := func(bucket []byte, kvs func(b *bolt.Bucket) error) error {
		return db.Update(func(tx *bolt.Tx) error { return kvs(tx.Bucket(bucket)) })
	}
	const chunk = 50_000 // bounds the memory of one transaction
	for len(seqs) > 0 {
		n := min(chunk, len(seqs))
		part := seqs[:n]
		seqs = seqs[n:]
		err := db.Update(func(tx *bolt.Tx) error {
			for _, seq := range part {
				r := s.records[seq]
				if err := tx.Bucket(bucketOf(r.prio)).Put(seqKey(seq), r.value); err != nil {
					return err
				}
				st.Records++
				st.Bytes += int64(len(r.value))
				if r.prio == High {
					st.High++
				}
				st.NextSeq = max(st.NextSeq, seq+1)
			}
			return nil
		})
		if err != nil {
			db.Close()
			return err
		}
	}
	err = put(bucketDead, func(b *bolt.Bucket) error {
		for seq, v := range s.dead {
			if err := b.Put(seqKey(seq), v); err != nil {
				return err
			}
			st.DeadLetters++
			st.NextSeq = max(st.NextSeq, seq+1)
		}
		return nil
	})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketMeta)
			for _, kv := range []struct {
				k []byte
				v uint64
			}{{keyNextSeq, st.NextSeq}, {keyCount, st.Records}, {keyHigh, st.High}, {keyBytes, uint64(st.Bytes)}, {keyDead, st.DeadLetters}} {
				if err := b.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
					return err
				}
			}
			return stampTx(tx) // the last transaction: its tree is the file's
		})
	}
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// adoptSalvage finishes a quarantine that a crash interrupted after the
// damaged file was moved aside but before the salvaged one took its place.
func adoptSalvage(path string) error {
	tmp := path + ".salvage"
	if _, err := os.Lstat(tmp); err != nil {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		// The swap never started: the damaged file is still in place and
		// will be salvaged again.
		return os.Remove(tmp)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// lockFile takes bbolt's lock (flock) on f, retrying until timeout.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadStats reads the counters of a queue file without changing it and
// without bbolt: a damaged file gives an error, never a panic. It returns
// ErrLocked while a daemon has the file open.
func ReadStats(path string) (Stats, error) {
	f, size, err := statFile(path)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	if err := lockFile(f, false, 100*time.Millisecond); err != nil {
		return Stats{}, err
	}
	s, err := statsOf(f, size)
	if errors.Is(err, errCorrupt) {
		return Stats{}, fmt.Errorf("buffer %s: %w (the gateway's next start moves it aside and salvages what it can)", path, err)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("buffer %s: %w", path, err)
	}
	if b, err := os.ReadFile(path + ".seq"); err == nil {
		if hw, _, _, ok := parseHighWater(b); ok {
			s.NextSeq = max(s.NextSeq, hw+1)
		}
	}
	return s, nil
}

// statsOf reads the meta bucket and the first record of each class.
func statsOf(f *os.File, size int64) (s Stats, err error) {
	defer func() { // as in validate
		if p := recover(); p != nil {
			err = corruptf("reading stopped: %v", p)
		}
	}()
	bf, err := openBoltFile(f, size)
	if err != nil {
		return s, err
	}
	cur, _ := bf.current()
	w := &walker{bf: bf, hwm: cur.pgid, strict: true, seen: map[uint64]bool{}}
	root := make([]byte, 16)
	ne.PutUint64(root, cur.root)
	found := map[string][]byte{}
	err = w.bucket(root, 0, func(e nodeElem, _ int) error {
		if e.bucket {
			found[string(e.key)] = e.value
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	for _, b := range [][]byte{bucketHigh, bucketNormal, bucketMeta} {
		if found[string(b)] == nil {
			return s, errors.New("not a Lintel buffer file")
		}
	}
	meta := map[string]uint64{}
	err = w.bucket(found[string(bucketMeta)], 1, func(e nodeElem, _ int) error {
		if !e.bucket && len(e.value) == 8 {
			meta[string(e.key)] = binary.BigEndian.Uint64(e.value)
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	s.NextSeq = max(meta[string(keyNextSeq)], 1)
	s.Records, s.High, s.Bytes = meta[string(keyCount)], meta[string(keyHigh)], int64(meta[string(keyBytes)])
	s.DeadLetters = meta[string(keyDead)]
	errStop := errors.New("stop")
	for _, b := range [][]byte{bucketHigh, bucketNormal} {
		err := w.bucket(found[string(b)], 1, func(e nodeElem, _ int) error {
			if t, ok := recordTime(e.value); ok && (s.Oldest.IsZero() || t.Before(s.Oldest)) {
				s.Oldest = t
			}
			return errStop
		})
		if err != nil && err != errStop {
			return s, err
		}
	}
	return s, nil
}

// The clean-shutdown marker (<path>.clean) is written by Close after the
// file is closed and removed by Open before the file is opened. It names the
// file's inode, size and modification time and a hash of its meta pages and
// freelist, so a file replaced, changed or rotted in those pages while the
// gateway was stopped is checked in full. It cannot vouch for the other
// pages; see doc.go.
func cleanMarker(path string) (string, error) {
	f, size, err := statFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	bf, err := openBoltFile(f, size)
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	for _, off := range []int64{0, bf.ps} {
		b := make([]byte, pageHeaderSize+64)
		if _, err := f.ReadAt(b, off); err != nil {
			return "", err
		}
		h.Write(b)
	}
	cur, _ := bf.current()
	if cur.freelist != noFreelist {
		p, err := bf.page(cur.freelist, cur.pgid)
		if err != nil {
			return "", err
		}
		h.Write(p)
	}
	id := fileIdentity(fi)
	return fmt.Sprintf("lintel buffer clean v1 %d %d %d %d %x\n", id.dev, id.ino, size, fi.ModTime().UnixNano(), h.Sum64()), nil
}

func writeCleanMarker(path string) error {
	m, err := cleanMarker(path)
	if err != nil {
		return err
	}
	return createAtomically(path+".clean", []byte(m), os.OpenFile)
}

// takeCleanMarker reports whether a marker matching the file was there and
// removes it durably, so that a crash from now on means a full check.
func takeCleanMarker(path string) (bool, error) {
	b, err := os.ReadFile(path + ".clean")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, merr := cleanMarker(path)
	clean := merr == nil && string(b) == m
	if err := os.Remove(path + ".clean"); err != nil {
		return false, err
	}
	return clean, syncDir(filepath.Dir(path))
}

// fileID is what identifies a file across paths.
type fileID struct{ dev, ino uint64 }

func fileIdentity(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return fileID{}
}
