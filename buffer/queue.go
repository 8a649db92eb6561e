package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// DefaultCommitInterval is the commit interval for enqueued records when
// Options leave it 0. Each commit rewrites a few tree pages and the meta page
// however few records it carries, so at 50 readings/s 2s costs about 540 disk
// bytes per 200-byte record, 1s about 825 and 200ms about 2,850 (SD wear; see
// BenchmarkSteady50PerSecond). Waiting callers are committed early anyway.
const DefaultCommitInterval = 2 * time.Second

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
	// CommitInterval is the longest a record nobody waits for (Enqueue)
	// or an ack waits for its group commit; 0 means DefaultCommitInterval.
	// Append and AppendAsync do not wait for it (see Queue.Append).
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
	// CheckInterval is how often the queue checks that its file is still
	// the one at its path (see ErrFileGone); 0 means 5s.
	CheckInterval time.Duration

	openFile openFileFunc // nil: os.OpenFile; tests inject failures
	// Now reads the wall clock; nil means time.Now. Tests inject a clock
	// that jumps; the package doc says how steps are handled.
	Now func() time.Time
}

func (o *Options) ensureDefaults() {
	if o.CommitInterval <= 0 {
		o.CommitInterval = DefaultCommitInterval
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
	if o.CheckInterval <= 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.openFile == nil {
		o.openFile = os.OpenFile
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
	// DiskFull counts records dropped because the file system was full
	// (ENOSPC, EDQUOT): the oldest evicted under drop-oldest, the new ones
	// refused under reject-new.
	DiskFull uint64 `json:"disk_full"`
}

// CommitFailureWindow is how far back Stats.CommitFailuresRecent counts.
const CommitFailureWindow = time.Minute

// Stats is a snapshot of the queue.
type Stats struct {
	Records     uint64 `json:"records"` // committed, not yet deleted
	High        uint64 `json:"high"`    // of which priority High
	Bytes       int64  `json:"bytes"`   // their encoded size
	NextSeq     uint64 `json:"next_seq"`
	Commits     uint64 `json:"commits"`      // transactions since Open
	CommitFails uint64 `json:"commit_fails"` // failed transactions since Open, including disk-full attempts retried after eviction
	// CommitFailuresRecent counts failed transactions in the last
	// CommitFailureWindow (at most 1023): a health signal that clears once
	// commits succeed again, unlike the lifetime CommitFails.
	CommitFailuresRecent uint64    `json:"commit_failures_recent"`
	LastCommitError      string    `json:"last_commit_error,omitempty"` // the latest failure, kept after recovery
	LastCommitErrorAt    time.Time `json:"last_commit_error_at,omitzero"`
	Drops                Drops     `json:"drops"`  // since Open
	Oldest               time.Time `json:"oldest"` // time of the oldest record, zero if empty
	Quarantined          string    `json:"quarantined,omitempty"`
	// DeadLetters is how many records sit in the dead-letter bucket (see
	// DeadLetter); they are not counted in Records or Bytes.
	DeadLetters uint64 `json:"dead_letters"`
	// Salvaged is how many records were copied out of the quarantined
	// file; SalvageLost how many fewer than its counter said it held.
	Salvaged    uint64 `json:"salvaged,omitempty"`
	SalvageLost uint64 `json:"salvage_lost,omitempty"`
	// Problem is set while the queue cannot store records durably (the
	// file or its directory vanished); Append fails with ErrFileGone.
	Problem string `json:"problem,omitempty"`
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

// waits reports whether a caller waits for this op's commit: such an op is
// committed without waiting out the interval.
func (o op) waits() bool { return o.done != nil || o.notify != nil }

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
	dbMu sync.RWMutex // read-held around every use of db; the file-gone recovery swaps db under the write lock
	opts Options
	log  *slog.Logger
	path string
	hw   *highWater // writer-owned after Open

	ident     fileID        // the open file's device and inode
	unwatch   chan struct{} // closed by Close to stop watch
	watched   chan struct{} // closed when watch returned
	filesOnce sync.Once
	suspect   atomic.Bool // a read found a bad record: no clean marker at Close

	clock   *clock
	ops     chan op
	closing chan struct{}
	stopped chan struct{}
	closeMu sync.Once

	mu      sync.Mutex
	stats   Stats
	problem string // Stats.Problem; kept apart so a commit's stats write-back cannot clear it
	cur     cursors
	changed chan struct{} // closed and replaced after every commit
	// diskCap, when not 0, caps the stored bytes below MaxBytes because
	// the file system filled up, until diskCapUntil. Writer only.
	diskCap      int64
	diskCapUntil time.Time
	// failures are the queue times of failed transactions within the
	// last CommitFailureWindow, oldest first.
	failures []time.Time
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

// newest is the latest stamp among the newest record of each class.
func newest(tx *bolt.Tx) time.Time {
	var t time.Time
	for _, name := range [][]byte{bucketHigh, bucketNormal} {
		if _, v := tx.Bucket(name).Cursor().Last(); v != nil {
			if rt, ok := recordTime(v); ok && rt.After(t) {
				t = rt
			}
		}
	}
	return t
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
// Seq in place. A nil error means every record is durable. Append does not
// wait out the commit interval: the writer commits as soon as it sees a
// waiting op (or, if a commit is running, as soon as that one ends), taking
// every op queued by then into the same transaction.
func (q *Queue) Append(ctx context.Context, recs ...Record) error {
	done := make(chan error, 1)
	if err := q.fileGone(); err != nil {
		return err
	}
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

// AppendAsync is Append without blocking the caller: done is called once the
// records are fsynced (nil) or could not be stored. Like Append it triggers an
// early commit. done runs on the writer goroutine, in commit order, and must
// not block. A nil done makes it an Enqueue.
func (q *Queue) AppendAsync(ctx context.Context, done func(error), recs ...Record) error {
	if err := q.fileGone(); err != nil {
		return err
	}
	return q.submit(ctx, op{recs: recs, notify: done})
}

// Enqueue hands recs to the writer and returns without waiting for the
// commit, which happens within the commit interval (earlier if a waiting op
// or MaxBatch records arrive). It blocks (honouring ctx) only while the
// writer is saturated.
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
	now, _ := q.clock.read()
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
		err := q.view(func(tx *bolt.Tx) error {
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
			q.markSuspect(err)
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
	now, wall := q.clock.read()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failures = recent(q.failures, now)
	s := q.stats
	s.Problem = q.problem
	s.CommitFailuresRecent = uint64(len(q.failures))
	if !s.Oldest.IsZero() { // stamps are queue time; report wall time
		s.Oldest = s.Oldest.Add(wall.Round(0).Sub(now))
	}
	return s
}

// Close commits what was submitted before it and closes the file.
func (q *Queue) Close() error {
	q.closeMu.Do(func() { close(q.closing) })
	<-q.stopped
	return q.closeFiles()
}

func (q *Queue) notify() {
	q.mu.Lock()
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

// write is the single writer. Records nobody waits for (Enqueue, acks) are
// gathered for at most one commit interval, or until MaxBatch records wait,
// and committed in one transaction. As soon as a gathered op has a waiter
// (Append, AppendAsync), the writer commits right away with whatever else is
// queued; waiters that arrive during that commit are taken by the next one as
// soon as it ends. Waiters therefore wait about one fsync, not an interval,
// and the commit rate rises with them only as far as the disk allows.
func (q *Queue) write() {
	defer close(q.stopped)
	timer := time.NewTimer(q.opts.CommitInterval)
	timer.Stop()
	for {
		var batch []op
		select {
		case o := <-q.ops:
			batch = append(batch, o)
		case <-q.closing:
			q.commit(q.drain(nil))
			return
		}
		n, waiting := len(batch[0].recs), batch[0].waits()
		timer.Reset(q.opts.CommitInterval)
		closing := false
	gather:
		for n < q.opts.MaxBatch && !waiting {
			select {
			case o := <-q.ops:
				batch = append(batch, o)
				n += len(o.recs)
				waiting = o.waits()
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
		if waiting {
			batch = q.take(batch, n)
		}
		q.commit(batch)
	}
}

// take adds the ops already queued, without waiting, while fewer than
// MaxBatch records are gathered.
func (q *Queue) take(batch []op, n int) []op {
	for n < q.opts.MaxBatch {
		select {
		case o := <-q.ops:
			batch = append(batch, o)
			n += len(o.recs)
		default:
			return batch
		}
	}
	return batch
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
// already stored are untouched. The steps inside the transaction, in order:
// the ops' own changes and acks, TTL expiry, eviction to fit, the new
// records, the counters (see commitTx).
func (q *Queue) commit(batch []op) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	base := q.stats
	q.mu.Unlock()

	var (
		st      Stats
		results []error
		refuse  bool // the disk is full under reject-new: store no new records
	)
	now, _ := q.clock.read()
	if q.diskCap > 0 && now.After(q.diskCapUntil) {
		q.diskCap = 0 // try the whole of MaxBytes again
	}
	apply := func(tx *bolt.Tx) error {
		c := newCommitTx(tx, &st)
		if err := c.applyOps(tx, batch); err != nil {
			return err
		}
		if q.opts.TTL > 0 {
			if err := c.expire(now.Add(-q.opts.TTL)); err != nil {
				return err
			}
		}
		if err := q.storeBatch(c, batch, results, refuse); err != nil {
			return err
		}
		st.Oldest = oldest(tx)
		return c.writeMeta(tx)
	}
	var err error
	for attempt := 0; ; attempt++ {
		st, results = base, make([]error, len(batch))
		if refuse && !hasAcks(batch) { // nothing left to write
			for i, o := range batch {
				if len(o.recs) > 0 {
					results[i] = ErrFull
					st.Drops.DiskFull += uint64(len(o.recs))
				}
			}
			err = nil
		} else {
			err = q.update(base.NextSeq, batch, apply)
		}
		if err == nil || !isDiskFull(err) || attempt == maxDiskFullRetries {
			break
		}
		q.failed(err)
		if q.opts.FullPolicy == RejectNew {
			if refuse {
				break
			}
			refuse = true
			continue
		}
		if !q.makeDiskRoom(batch, base.Bytes, attempt, now) {
			break
		}
		q.mu.Lock()
		base = q.stats
		q.mu.Unlock()
	}
	q.finishCommit(batch, st, results, err)
}

// commitTx is one attempt of a group commit inside a bbolt transaction. Its
// steps change st, a copy of the queue's stats that commit publishes only
// if the transaction commits.
type commitTx struct {
	buckets [2]*bolt.Bucket // indexed by Priority.index()
	st      *Stats
}

func newCommitTx(tx *bolt.Tx, st *Stats) *commitTx {
	c := &commitTx{buckets: [2]*bolt.Bucket{tx.Bucket(bucketNormal), tx.Bucket(bucketHigh)}, st: st}
	for _, b := range c.buckets {
		b.FillPercent = 1 // keys only ever grow: pack pages full
	}
	return c
}

// remove deletes one stored record and takes it off the counters.
func (c *commitTx) remove(prio Priority, k, v []byte) error {
	c.st.Bytes -= int64(len(v))
	c.st.Records--
	if prio == High {
		c.st.High--
	}
	return c.buckets[prio.index()].Delete(k)
}

// applyOps runs each op's own change and deletes the records it acks.
func (c *commitTx) applyOps(tx *bolt.Tx, batch []op) error {
	for _, o := range batch {
		if o.apply != nil {
			if err := o.apply(tx, c.st); err != nil {
				return err
			}
		}
		for _, seq := range o.acks {
			for prio, b := range c.buckets {
				if v := b.Get(seqKey(seq)); v != nil {
					if err := c.remove(Priority(prio), seqKey(seq), v); err != nil {
						return err
					}
					break
				}
			}
		}
	}
	return nil
}

// expire deletes, in each priority, the oldest records stamped before
// cutoff, stopping at the first one that is not.
func (c *commitTx) expire(cutoff time.Time) error {
	for prio, b := range c.buckets {
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.First() {
			if t, ok := recordTime(v); ok && !t.Before(cutoff) {
				break
			}
			if err := c.remove(Priority(prio), k, v); err != nil {
				return err
			}
			c.st.Drops.Expired++
		}
	}
	return nil
}

// evict deletes the oldest records, Normal first and High only if needed,
// until size more bytes fit under limit. Each is counted as a disk-full drop
// when the limit is the disk's, else as a full drop.
func (c *commitTx) evict(size, limit int64, diskLimited bool) error {
	for _, prio := range []Priority{Normal, High} {
		cur := c.buckets[prio.index()].Cursor()
		for k, v := cur.First(); k != nil && c.st.Bytes+size > limit; k, v = cur.First() {
			if err := c.remove(prio, k, v); err != nil {
				return err
			}
			if diskLimited {
				c.st.Drops.DiskFull++
			} else {
				c.st.Drops.Full++
			}
		}
	}
	return nil
}

// put stores records (already encoded, size bytes in all) under the next
// sequence numbers, which it writes back into the records.
func (c *commitTx) put(recs []Record, encoded [][]byte, size int64) error {
	for j := range recs {
		r := &recs[j]
		r.Seq = c.st.NextSeq
		if err := c.buckets[r.Priority.index()].Put(seqKey(r.Seq), encoded[j]); err != nil {
			return err
		}
		c.st.NextSeq++
		if r.Priority == High {
			c.st.High++
		}
	}
	c.st.Records += uint64(len(recs))
	c.st.Bytes += size
	return nil
}

// writeMeta persists the counters the next Open starts from.
func (c *commitTx) writeMeta(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyNextSeq, c.st.NextSeq}, {keyCount, c.st.Records}, {keyHigh, c.st.High}, {keyBytes, uint64(c.st.Bytes)}} {
		if err := meta.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// storeBatch stores each op's records, all or none per op, under the byte
// limit (MaxBytes, or the lower cap after the disk filled up): an op that
// does not fit is refused with ErrFull under reject-new (or when it alone
// exceeds the limit), else older records are evicted to make room. With
// refuse set (the disk is full under reject-new) every op is refused.
func (q *Queue) storeBatch(c *commitTx, batch []op, results []error, refuse bool) error {
	limit, diskLimited := q.opts.MaxBytes, false
	if q.diskCap > 0 && q.diskCap < limit {
		limit, diskLimited = q.diskCap, true
	}
	for i, o := range batch {
		if len(o.recs) == 0 {
			continue
		}
		if refuse {
			results[i] = ErrFull
			c.st.Drops.DiskFull += uint64(len(o.recs))
			continue
		}
		encoded := make([][]byte, len(o.recs))
		var size int64
		for j := range o.recs {
			encoded[j] = o.recs[j].encode()
			size += int64(len(encoded[j]))
		}
		if c.st.Bytes+size > limit {
			if q.opts.FullPolicy == RejectNew || size > limit {
				results[i] = ErrFull
				c.st.Drops.Rejected += uint64(len(o.recs))
				continue
			}
			if err := c.evict(size, limit, diskLimited); err != nil {
				return err
			}
		}
		if err := c.put(o.recs, encoded, size); err != nil {
			return err
		}
	}
	return nil
}

// makeDiskRoom is drop-oldest's answer to a full disk: it evicts a reserve
// of at least twice what the batch adds, more on each attempt, and keeps the
// buffer that much below where the disk filled up (stored bytes) for a
// while, evicting within each commit as at MaxBytes: pages freed by one
// commit are reused by the next, so the file stops growing and an eviction
// still finds free pages. It reports whether anything was evicted, that is
// whether another attempt can succeed.
func (q *Queue) makeDiskRoom(batch []op, stored int64, attempt int, now time.Time) bool {
	var need int64
	for _, o := range batch {
		for j := range o.recs {
			need += int64(headerSize + len(o.recs[j].Topic) + len(o.recs[j].Payload))
		}
	}
	need = max(2*need, diskReserve) << attempt
	q.diskCap, q.diskCapUntil = max(stored-need, 1), now.Add(CommitFailureWindow)
	n, err := q.evictForDisk(need)
	if err != nil {
		q.failed(err)
	}
	return err == nil && n > 0
}

// finishCommit publishes the committed stats (or records the failure), logs
// drops, and answers every op of the batch.
func (q *Queue) finishCommit(batch []op, st Stats, results []error, err error) {
	q.mu.Lock()
	prev := q.stats
	if err != nil {
		q.mu.Unlock()
		q.failed(err)
	} else {
		st.Commits++
		st.CommitFails, st.LastCommitError, st.LastCommitErrorAt = prev.CommitFails, prev.LastCommitError, prev.LastCommitErrorAt
		q.stats = st
		q.mu.Unlock()
	}
	if err != nil {
		q.log.Error("group commit failed; stored records are untouched", "ops", len(batch), "err", err)
	} else if d := st.Drops; d != prev.Drops {
		q.log.Warn("records dropped", "full", d.Full-prev.Drops.Full, "rejected", d.Rejected-prev.Drops.Rejected,
			"expired", d.Expired-prev.Drops.Expired, "disk_full", d.DiskFull-prev.Drops.DiskFull, "policy", q.opts.FullPolicy)
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

// diskReserve is the least drop-oldest evicts when the file system is full.
const diskReserve = 256 << 10

// maxDiskFullRetries bounds the evict-and-retry rounds of one commit on a
// full file system; each round evicts twice as much as the one before.
const maxDiskFullRetries = 8

// isDiskFull reports whether err means the file system is out of space.
// bbolt formats some errors with %s, so the message is checked too.
func isDiskFull(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

func hasAcks(batch []op) bool {
	for _, o := range batch {
		if len(o.acks) > 0 {
			return true
		}
	}
	return false
}

// evictForDisk deletes the oldest records, Normal before High, until need
// bytes of records are gone, in a transaction of its own: the pages it frees
// can only be reused by the next one. It returns how many it deleted.
func (q *Queue) evictForDisk(need int64) (int, error) {
	q.mu.Lock()
	st := q.stats
	q.mu.Unlock()
	n := 0
	err := q.update(0, nil, func(tx *bolt.Tx) error {
		var freed int64
		// Not commitTx.remove: it sets FillPercent 1 on the buckets, and with
		// that the eviction itself ran out of space on a full disk
		// (TestDiskFullDropOldestEvicts).
		for _, prio := range []Priority{Normal, High} {
			b := tx.Bucket(bucketOf(prio))
			c := b.Cursor()
			for k, v := c.First(); k != nil && freed < need; k, v = c.First() {
				freed += int64(len(v))
				st.Bytes -= int64(len(v))
				st.Records--
				if prio == High {
					st.High--
				}
				if err := b.Delete(k); err != nil {
					return err
				}
				n++
			}
		}
		if n == 0 {
			return nil
		}
		st.Oldest = oldest(tx)
		meta := tx.Bucket(bucketMeta)
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keyCount, st.Records}, {keyHigh, st.High}, {keyBytes, uint64(st.Bytes)}} {
			if err := meta.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	st.Drops.DiskFull += uint64(n)
	st.Commits++
	q.mu.Lock()
	st.CommitFails, st.LastCommitError, st.LastCommitErrorAt = q.stats.CommitFails, q.stats.LastCommitError, q.stats.LastCommitErrorAt
	q.stats = st
	q.mu.Unlock()
	q.log.Warn("file system full; evicted the oldest records (drop-oldest)", "records", n)
	return n, nil
}

// failed records a failed transaction for Stats.
func (q *Queue) failed(err error) {
	at, _ := q.clock.read()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stats.CommitFails++
	q.stats.LastCommitError = err.Error()
	q.stats.LastCommitErrorAt = at
	q.failures = append(recent(q.failures, at), at)
}

// maxRecentFailures bounds the failure times kept, however often commits
// fail; CommitFailuresRecent saturates there.
const maxRecentFailures = 1024

// recent drops the failure times that fell out of the window ending at now,
// and the oldest beyond maxRecentFailures-1, leaving room for one more.
func recent(failures []time.Time, now time.Time) []time.Time {
	from := now.Add(-CommitFailureWindow)
	i := max(0, len(failures)-(maxRecentFailures-1))
	for i < len(failures) && !failures[i].After(from) {
		i++
	}
	return failures[i:]
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
