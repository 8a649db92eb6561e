package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors callers branch on.
var (
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("buffer closed")
	// ErrFull is returned by Append under the reject-new policy when the
	// records do not fit in MaxBytes.
	ErrFull = errors.New("buffer full")
	// ErrLocked is returned by Open and ReadStats when another process
	// (normally the running daemon) has the file open.
	ErrLocked = errors.New("buffer file in use by another process")
)

// FullPolicy says what happens when a commit would exceed MaxBytes.
type FullPolicy string

const (
	// DropOldest evicts the oldest records to make room: Normal ones
	// first, High ones only when no Normal record is left.
	DropOldest FullPolicy = "drop-oldest"
	// RejectNew refuses the new records with ErrFull.
	RejectNew FullPolicy = "reject-new"
)

// Options tune a Queue. The zero value is usable: see ensureDefaults.
type Options struct {
	// CommitInterval is the longest a record waits for its group commit.
	CommitInterval time.Duration
	// MaxBatch commits early once this many records are waiting.
	MaxBatch int
	// MaxBytes caps the stored records (encoded sizes); 0 means 512 MiB.
	MaxBytes int64
	// FullPolicy applies when MaxBytes would be exceeded.
	FullPolicy FullPolicy
	// TTL drops records older than this, counted as expired; 0 keeps them
	// until delivered or evicted.
	TTL time.Duration
	// Logger receives quarantine and commit failures.
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.CommitInterval <= 0 {
		o.CommitInterval = 200 * time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 512 << 20
	}
	if o.FullPolicy == "" {
		o.FullPolicy = DropOldest
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Drops counts records that were not delivered, by reason.
type Drops struct {
	Full     uint64 `json:"full"`     // evicted to make room (drop-oldest)
	Rejected uint64 `json:"rejected"` // refused (reject-new)
	Expired  uint64 `json:"expired"`  // older than the TTL
	// DeadLetters counts dead letters deleted because the dead-letter
	// bucket held MaxDeadLetters.
	DeadLetters uint64 `json:"dead_letters"`
}

// Stats is a snapshot of the queue.
type Stats struct {
	Records     uint64    `json:"records"` // committed, not yet deleted
	High        uint64    `json:"high"`    // of which priority High
	Bytes       int64     `json:"bytes"`   // their encoded size
	NextSeq     uint64    `json:"next_seq"`
	Commits     uint64    `json:"commits"`      // transactions since Open
	CommitFails uint64    `json:"commit_fails"` // failed group commits (e.g. disk full)
	Drops       Drops     `json:"drops"`        // since Open
	Oldest      time.Time `json:"oldest"`       // time of the oldest record, zero if empty
	Quarantined string    `json:"quarantined,omitempty"`
	// DeadLetters is how many records sit in the dead-letter bucket (see
	// DeadLetter); they are not counted in Records or Bytes.
	DeadLetters uint64 `json:"dead_letters"`
}

var (
	bucketHigh   = []byte("high")
	bucketNormal = []byte("normal")
	bucketMeta   = []byte("meta")
	keyNextSeq   = []byte("next_seq")
	keyBytes     = []byte("bytes")
	keyCount     = []byte("count")
	keyHigh      = []byte("count_high")
	keyDead      = []byte("count_dead")
)

func bucketOf(p Priority) []byte {
	if p == High {
		return bucketHigh
	}
	return bucketNormal
}

// op is one request to the writer goroutine.
type op struct {
	recs   []Record
	acks   []uint64
	done   chan error  // nil: the caller does not wait
	notify func(error) // called on the writer goroutine after the commit
	// apply runs inside the commit's transaction, in submission order
	// with the acks, for changes other than appends and acks (dead
	// letters); it updates st for what it changed. An error fails the
	// whole commit.
	apply func(tx *bolt.Tx, st *Stats) error
}

// cursors say what Read hands out next. Records with seq ≥ liveFrom are
// "live": committed since the last Rewind; older ones are the backlog.
type cursors struct {
	high     uint64 // next High seq
	backlog  uint64 // next Normal seq below liveFrom
	liveFrom uint64
	live     uint64 // next Normal seq at or above liveFrom
	gen      uint64 // bumped by Rewind
}

// Queue is a durable FIFO. All methods are safe for concurrent use.
type Queue struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	ops     chan op
	closing chan struct{}
	stopped chan struct{}
	closeMu sync.Once

	mu      sync.Mutex
	stats   Stats
	cur     cursors
	changed chan struct{} // closed and replaced after every commit
}

// Open opens or creates the queue file at path (mode 0600). A file that cannot
// be opened or fails its consistency check is quarantined and replaced by an
// empty one; only an error that a new file would not fix (ErrLocked, a
// directory that cannot be written) is returned.
func Open(path string, opts Options) (*Queue, error) {
	opts.ensureDefaults()
	q := &Queue{
		opts:    opts,
		log:     opts.Logger.With("component", "buffer"),
		ops:     make(chan op, 1024),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
		changed: make(chan struct{}),
	}
	db, err := openChecked(path)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("buffer %s: %w", path, err)
		}
		bad := fmt.Sprintf("%s.bad-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, bad); rerr != nil {
			return nil, fmt.Errorf("buffer %s: %w (and cannot move it aside: %v)", path, err, rerr)
		}
		q.log.Error("buffer file is unusable; moved aside, starting empty", "file", path, "moved_to", bad, "err", err)
		q.stats.Quarantined = bad
		if db, err = openChecked(path); err != nil {
			return nil, fmt.Errorf("buffer %s: new file: %w", path, err)
		}
	}
	q.db = db
	err = db.View(func(tx *bolt.Tx) error {
		q.stats = readStats(tx, q.stats)
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("buffer %s: %w", path, err)
	}
	q.cur.liveFrom = q.stats.NextSeq // everything already stored is backlog
	q.cur.live = q.stats.NextSeq
	go q.write()
	return q, nil
}

// openChecked opens the file and runs bbolt's consistency check. bbolt can
// panic on some corrupt files; that is turned into an error.
func openChecked(path string) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("corrupt file: %v", p)
		}
	}()
	// NoFreelistSync saves one page write per commit (SD wear); bbolt
	// rebuilds the freelist by scanning at open instead, as etcd does.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketHigh, bucketNormal, bucketMeta, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for cerr := range tx.Check() {
			return fmt.Errorf("consistency check: %w", cerr)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// readStats reads the persisted counters; prev supplies the in-memory ones.
func readStats(tx *bolt.Tx, prev Stats) Stats {
	meta := tx.Bucket(bucketMeta)
	prev.NextSeq = max(getUint(meta, keyNextSeq), 1)
	prev.Records = getUint(meta, keyCount)
	prev.High = getUint(meta, keyHigh)
	prev.Bytes = int64(getUint(meta, keyBytes))
	prev.DeadLetters = getUint(meta, keyDead)
	prev.Oldest = oldest(tx)
	return prev
}

// ReadStats reads the counters of a queue file without changing it. It
// returns ErrLocked while a daemon has the file open.
func ReadStats(path string) (Stats, error) {
	if _, err := os.Stat(path); err != nil {
		return Stats{}, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, bolt.ErrTimeout) {
		return Stats{}, ErrLocked
	}
	if err != nil {
		return Stats{}, err
	}
	defer db.Close()
	var s Stats
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil || tx.Bucket(bucketNormal) == nil || tx.Bucket(bucketHigh) == nil {
			return errors.New("not a Lintel buffer file")
		}
		s = readStats(tx, s)
		return nil
	})
	return s, err
}

func oldest(tx *bolt.Tx) time.Time {
	var t time.Time
	for _, name := range [][]byte{bucketHigh, bucketNormal} {
		if _, v := tx.Bucket(name).Cursor().First(); v != nil {
			if rt, ok := recordTime(v); ok && (t.IsZero() || rt.Before(t)) {
				t = rt
			}
		}
	}
	return t
}

// Append stores recs and returns once they are fsynced. It sets each record's
// Seq in place. A nil error means every record is durable.
func (q *Queue) Append(ctx context.Context, recs ...Record) error {
	done := make(chan error, 1)
	if err := q.submit(ctx, op{recs: recs, done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The records may still be committed; the caller must treat them
		// as not acknowledged.
		return ctx.Err()
	}
}

// AppendAsync is Append without waiting: done is called once the records are
// fsynced (nil) or could not be stored. done runs on the writer goroutine, in
// commit order, and must not block.
func (q *Queue) AppendAsync(ctx context.Context, done func(error), recs ...Record) error {
	return q.submit(ctx, op{recs: recs, notify: done})
}

// Enqueue hands recs to the writer and returns without waiting for the
// commit. It blocks (honouring ctx) only while the writer is saturated.
func (q *Queue) Enqueue(ctx context.Context, recs ...Record) error {
	return q.submit(ctx, op{recs: recs})
}

// Ack deletes delivered records. The deletes are committed with the next
// group; an ack lost in a crash means a duplicate delivery, never a loss.
// Acking an unknown or already deleted seq is a no-op.
func (q *Queue) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return q.submit(context.Background(), op{acks: seqs})
}

func (q *Queue) submit(ctx context.Context, o op) error {
	now := time.Now()
	for i := range o.recs {
		if o.recs[i].Time.IsZero() {
			o.recs[i].Time = now
		}
	}
	select {
	case <-q.closing:
		return ErrClosed
	default:
	}
	select {
	case q.ops <- o:
		return nil
	case <-q.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Read returns up to n committed records that were not handed out since the
// last Rewind, blocking until at least one is available or ctx ends. The
// order: High records oldest first; then Normal records, interleaving live
// ones (committed since the last Rewind) with the backlog, each part oldest
// first, so that fresh readings are not stuck behind hours of backlog.
func (q *Queue) Read(ctx context.Context, n int) ([]Record, error) {
	if n <= 0 {
		n = 1
	}
	for {
		q.mu.Lock()
		cur, changed := q.cur, q.changed
		q.mu.Unlock()

		var recs []Record
		next := cur
		err := q.db.View(func(tx *bolt.Tx) error {
			var err error
			scan := func(bucket []byte, prio Priority, from, below uint64, limit int) uint64 {
				c := tx.Bucket(bucket).Cursor()
				for k, v := c.Seek(seqKey(from)); k != nil && limit > 0 && err == nil; k, v = c.Next() {
					seq := binary.BigEndian.Uint64(k)
					if below > 0 && seq >= below {
						break
					}
					var r Record
					if r, err = decodeRecord(seq, v, prio); err == nil {
						recs = append(recs, r)
						from = seq + 1
						limit--
					}
				}
				return from
			}
			next.high = scan(bucketHigh, High, cur.high, 0, n)
			room := n - len(recs)
			next.live = scan(bucketNormal, Normal, max(cur.live, cur.liveFrom), 0, (room+1)/2)
			next.backlog = scan(bucketNormal, Normal, cur.backlog, cur.liveFrom, n-len(recs))
			next.live = scan(bucketNormal, Normal, next.live, 0, n-len(recs))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if len(recs) > 0 {
			q.mu.Lock()
			if q.cur.gen == cur.gen { // a Rewind in between wins
				q.cur = next
			}
			q.mu.Unlock()
			return recs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.stopped:
			return nil, ErrClosed
		}
	}
}

// Rewind makes Read hand out every stored record again, e.g. after the uplink
// lost its connection with records in flight. What is stored now becomes the
// backlog; records committed from now on are live.
func (q *Queue) Rewind() {
	q.mu.Lock()
	q.cur = cursors{liveFrom: q.stats.NextSeq, live: q.stats.NextSeq, gen: q.cur.gen + 1}
	q.mu.Unlock()
	q.notify()
}

// Stats returns a snapshot of the queue's counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stats
}

// Close commits what was submitted before it and closes the file.
func (q *Queue) Close() error {
	q.closeMu.Do(func() { close(q.closing) })
	<-q.stopped
	return q.db.Close()
}

func (q *Queue) notify() {
	q.mu.Lock()
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

// write is the single writer: it gathers ops for at most one commit interval
// (or until MaxBatch records wait) and commits them in one transaction.
func (q *Queue) write() {
	defer close(q.stopped)
	timer := time.NewTimer(0)
	<-timer.C
	for {
		var batch []op
		select {
		case o := <-q.ops:
			batch = append(batch, o)
		case <-q.closing:
			q.commit(q.drain(nil))
			return
		}
		n := len(batch[0].recs)
		timer.Reset(q.opts.CommitInterval)
		closing := false
	gather:
		for n < q.opts.MaxBatch {
			select {
			case o := <-q.ops:
				batch = append(batch, o)
				n += len(o.recs)
			case <-timer.C:
				break gather
			case <-q.closing:
				closing = true
				break gather
			}
		}
		timer.Stop()
		if closing {
			q.commit(q.drain(batch))
			return
		}
		q.commit(batch)
	}
}

// drain takes whatever is still queued once Close was called.
func (q *Queue) drain(batch []op) []op {
	for {
		select {
		case o := <-q.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
}

// commit applies a batch in one transaction and reports to waiters. On failure
// (disk full, I/O error) nothing of the batch is applied, and the records
// already stored are untouched.
func (q *Queue) commit(batch []op) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	st := q.stats
	q.mu.Unlock()

	results := make([]error, len(batch))
	now := time.Now()
	err := q.db.Update(func(tx *bolt.Tx) error {
		buckets := [2]*bolt.Bucket{tx.Bucket(bucketNormal), tx.Bucket(bucketHigh)}
		for _, b := range buckets {
			b.FillPercent = 1 // keys only ever grow: pack pages full
		}
		remove := func(prio Priority, k, v []byte) error {
			st.Bytes -= int64(len(v))
			st.Records--
			if prio == High {
				st.High--
			}
			return buckets[prio.index()].Delete(k)
		}
		for _, o := range batch {
			if o.apply != nil {
				if err := o.apply(tx, &st); err != nil {
					return err
				}
			}
			for _, seq := range o.acks {
				for prio, b := range buckets {
					if v := b.Get(seqKey(seq)); v != nil {
						if err := remove(Priority(prio), seqKey(seq), v); err != nil {
							return err
						}
						break
					}
				}
			}
		}
		if q.opts.TTL > 0 {
			cutoff := now.Add(-q.opts.TTL)
			for prio, b := range buckets {
				c := b.Cursor()
				for k, v := c.First(); k != nil; k, v = c.First() {
					if t, ok := recordTime(v); ok && !t.Before(cutoff) {
						break
					}
					if err := remove(Priority(prio), k, v); err != nil {
						return err
					}
					st.Drops.Expired++
				}
			}
		}
		for i, o := range batch {
			if len(o.recs) == 0 {
				continue
			}
			encoded := make([][]byte, len(o.recs))
			var size int64
			for j := range o.recs {
				encoded[j] = o.recs[j].encode()
				size += int64(len(encoded[j]))
			}
			if st.Bytes+size > q.opts.MaxBytes {
				if q.opts.FullPolicy == RejectNew || size > q.opts.MaxBytes {
					results[i] = ErrFull
					st.Drops.Rejected += uint64(len(o.recs))
					continue
				}
				// Evict Normal records first; High ones only if needed.
				for _, prio := range []Priority{Normal, High} {
					c := buckets[prio.index()].Cursor()
					for k, v := c.First(); k != nil && st.Bytes+size > q.opts.MaxBytes; k, v = c.First() {
						if err := remove(prio, k, v); err != nil {
							return err
						}
						st.Drops.Full++
					}
				}
			}
			for j := range o.recs {
				r := &o.recs[j]
				r.Seq = st.NextSeq
				if err := buckets[r.Priority.index()].Put(seqKey(r.Seq), encoded[j]); err != nil {
					return err
				}
				st.NextSeq++
				if r.Priority == High {
					st.High++
				}
			}
			st.Records += uint64(len(o.recs))
			st.Bytes += size
		}
		st.Oldest = oldest(tx)
		meta := tx.Bucket(bucketMeta)
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keyNextSeq, st.NextSeq}, {keyCount, st.Records}, {keyHigh, st.High}, {keyBytes, uint64(st.Bytes)}} {
			if err := meta.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
				return err
			}
		}
		return nil
	})

	q.mu.Lock()
	prev := q.stats
	if err != nil {
		q.stats.CommitFails++
	} else {
		st.Commits++
		st.CommitFails = prev.CommitFails
		q.stats = st
	}
	q.mu.Unlock()
	if err != nil {
		q.log.Error("group commit failed; stored records are untouched", "ops", len(batch), "err", err)
	} else if d := st.Drops; d != prev.Drops {
		q.log.Warn("records dropped", "full", d.Full-prev.Drops.Full, "rejected", d.Rejected-prev.Drops.Rejected,
			"expired", d.Expired-prev.Drops.Expired, "policy", q.opts.FullPolicy)
	}
	for i, o := range batch {
		result := results[i]
		if err != nil {
			result = fmt.Errorf("commit: %w", err)
		}
		if o.done != nil {
			o.done <- result
		}
		if o.notify != nil {
			o.notify(result)
		}
	}
	if err == nil {
		q.notify()
	}
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
