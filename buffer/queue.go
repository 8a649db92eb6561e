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
	// ErrFull is returned by Append and Enqueue under the reject-new policy
	// when the records do not fit in MaxBytes.
	ErrFull = errors.New("buffer full")
)

// FullPolicy says what happens when a commit would exceed MaxBytes.
type FullPolicy string

const (
	// DropOldest evicts the oldest records to make room (counted as drops).
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

// Stats is a snapshot of the queue.
type Stats struct {
	Records     uint64 // committed, unacked records
	Bytes       int64  // their encoded size
	NextSeq     uint64 // the sequence number the next record will get
	Commits     uint64 // transactions committed since Open
	DropsFull   uint64 // records evicted or refused because the buffer was full
	CommitFails uint64 // group commits that failed (e.g. disk full)
	Oldest      time.Time
	Quarantined string // path of a bad file moved aside at Open, if any
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyNextSeq    = []byte("next_seq")
	keyBytes      = []byte("bytes")
	keyCount      = []byte("count")
)

// op is one request to the writer goroutine.
type op struct {
	recs []Record
	acks []uint64
	done chan error // nil: the caller does not wait
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

	mu       sync.Mutex
	stats    Stats
	readNext uint64        // next seq Read hands out
	changed  chan struct{} // closed and replaced after every commit
}

// Open opens or creates the queue file at path (mode 0600). A file that cannot
// be opened or fails its consistency check is quarantined and replaced by an
// empty one; only an error that a new file would not fix (a lock held by
// another process, a directory that cannot be written) is returned.
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
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("buffer %s: in use by another process", path)
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
	if err := q.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("buffer %s: %w", path, err)
	}
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
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketMeta} {
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

func (q *Queue) load() error {
	return q.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		q.stats.NextSeq = max(getUint(meta, keyNextSeq), 1)
		q.stats.Records = getUint(meta, keyCount)
		q.stats.Bytes = int64(getUint(meta, keyBytes))
		if k, v := tx.Bucket(bucketRecords).Cursor().First(); k != nil {
			if r, err := decodeRecord(binary.BigEndian.Uint64(k), v); err == nil {
				q.stats.Oldest = r.Time
			}
		}
		return nil
	})
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

// Read returns up to max committed records, oldest first, starting after the
// last one handed out. It blocks until at least one is available or ctx ends.
func (q *Queue) Read(ctx context.Context, max int) ([]Record, error) {
	if max <= 0 {
		max = 1
	}
	for {
		q.mu.Lock()
		from, changed := q.readNext, q.changed
		q.mu.Unlock()

		var recs []Record
		err := q.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(seqKey(from)); k != nil && len(recs) < max; k, v = c.Next() {
				r, err := decodeRecord(binary.BigEndian.Uint64(k), v)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if len(recs) > 0 {
			q.mu.Lock()
			// A Rewind between our snapshot and now wins.
			if q.readNext == from {
				q.readNext = recs[len(recs)-1].Seq + 1
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

// Rewind makes the next Read start again at the oldest unacked record, e.g.
// after the uplink lost its connection with records in flight.
func (q *Queue) Rewind() {
	q.mu.Lock()
	q.readNext = 0
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
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
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
	var oldest time.Time
	var drops uint64
	err := q.db.Update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		recs.FillPercent = 1 // keys only ever grow: pack pages full
		for _, o := range batch {
			for _, seq := range o.acks {
				if v := recs.Get(seqKey(seq)); v != nil {
					st.Bytes -= int64(len(v))
					st.Records--
					if err := recs.Delete(seqKey(seq)); err != nil {
						return err
					}
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
					drops += uint64(len(o.recs))
					continue
				}
				n, freed, err := evictOldest(recs, st.Bytes+size-q.opts.MaxBytes)
				if err != nil {
					return err
				}
				st.Records -= n
				st.Bytes -= freed
				drops += n
			}
			for j := range o.recs {
				o.recs[j].Seq = st.NextSeq
				if err := recs.Put(seqKey(st.NextSeq), encoded[j]); err != nil {
					return err
				}
				st.NextSeq++
			}
			st.Records += uint64(len(o.recs))
			st.Bytes += size
		}
		if k, v := recs.Cursor().First(); k != nil {
			if r, err := decodeRecord(binary.BigEndian.Uint64(k), v); err == nil {
				oldest = r.Time
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keyNextSeq, st.NextSeq}, {keyCount, st.Records}, {keyBytes, uint64(st.Bytes)}} {
			if err := meta.Put(kv.k, binary.BigEndian.AppendUint64(nil, kv.v)); err != nil {
				return err
			}
		}
		return nil
	})

	q.mu.Lock()
	if err != nil {
		q.stats.CommitFails++
	} else {
		st.Commits++
		st.DropsFull += drops
		st.Oldest = oldest
		st.CommitFails = q.stats.CommitFails
		st.Quarantined = q.stats.Quarantined
		q.stats = st
	}
	q.mu.Unlock()
	if err != nil {
		q.log.Error("group commit failed; stored records are untouched", "ops", len(batch), "err", err)
	} else if drops > 0 {
		q.log.Warn("buffer full", "policy", q.opts.FullPolicy, "dropped", drops)
	}
	for i, o := range batch {
		if o.done == nil {
			continue
		}
		if err != nil {
			o.done <- fmt.Errorf("commit: %w", err)
		} else {
			o.done <- results[i]
		}
	}
	if err == nil {
		q.notify()
	}
}

// evictOldest deletes records from the front until at least need bytes are freed.
func evictOldest(b *bolt.Bucket, need int64) (n uint64, freed int64, err error) {
	c := b.Cursor()
	for k, v := c.First(); k != nil && freed < need; k, v = c.First() {
		freed += int64(len(v))
		n++
		if err := c.Delete(); err != nil {
			return n, freed, err
		}
	}
	return n, freed, nil
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
