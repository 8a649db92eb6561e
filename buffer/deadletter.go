package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketDead holds dead letters keyed by their original seq. A file written
// before dead letters existed gets the bucket at its next Open; ReadStats
// treats a missing bucket as empty.
var bucketDead = []byte("dead")

// MaxDeadLetters bounds the dead-letter bucket: a record that cannot be
// delivered must not make the file grow without limit. When a move would
// exceed it, the oldest dead letters (lowest seq) are deleted and counted in
// Drops.DeadLetters.
const MaxDeadLetters = 10_000

// DeadRecord is a record moved out of the queue by DeadLetter.
type DeadRecord struct {
	Record
	Reason string
	At     time.Time // when it was moved
}

// deadVersion is the layout of a dead-letter value:
// version(1) priority(1) at-unixnano(8) uvarint(len(reason)) reason record,
// where record is the record's own encoding. The version byte differs from
// recordVersion so that salvage can never mistake a dead letter for a record.
const deadVersion = 0xD1

func encodeDead(prio Priority, at time.Time, reason string, rec []byte) []byte {
	buf := make([]byte, 0, 10+binary.MaxVarintLen16+len(reason)+len(rec))
	buf = append(buf, deadVersion, byte(prio.index()))
	buf = binary.BigEndian.AppendUint64(buf, uint64(at.UnixNano()))
	buf = binary.AppendUvarint(buf, uint64(len(reason)))
	buf = append(buf, reason...)
	return append(buf, rec...)
}

func decodeDead(seq uint64, b []byte) (DeadRecord, error) {
	if len(b) < 10 || b[0] != deadVersion {
		return DeadRecord{}, fmt.Errorf("dead letter %d: %w", seq, errBadRecord)
	}
	prio := Normal
	if b[1] == 1 {
		prio = High
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10])))
	n, w := binary.Uvarint(b[10:])
	if w <= 0 || uint64(len(b)-10-w) < n {
		return DeadRecord{}, fmt.Errorf("dead letter %d: %w", seq, errBadRecord)
	}
	start := 10 + w
	reason := string(b[start : start+int(n)])
	r, err := decodeRecord(seq, b[start+int(n):], prio)
	if err != nil {
		return DeadRecord{}, fmt.Errorf("dead letter: %w", err)
	}
	return DeadRecord{Record: r, Reason: reason, At: at}, nil
}

// DeadLetter moves the records with these seqs out of the queue into the
// dead-letter bucket, with a reason; they are no longer handed out by Read,
// and they survive restarts until cleared. The move is one transaction of the
// writer, fsynced before DeadLetter returns nil. Seqs that are not stored
// (already acked, evicted or dead-lettered) are skipped, as Ack does.
func (q *Queue) DeadLetter(reason string, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	at := time.Now()
	return q.applyWait(func(tx *bolt.Tx, st *Stats) error {
		dead := tx.Bucket(bucketDead)
		ct := newCommitTx(tx, st)
		for _, seq := range seqs {
			k := seqKey(seq)
			for _, prio := range []Priority{Normal, High} {
				v := ct.buckets[prio.index()].Get(k)
				if v == nil {
					continue
				}
				if dead.Get(k) == nil {
					st.DeadLetters++
				}
				// v is only valid until b changes: encode before Delete.
				if err := dead.Put(k, encodeDead(prio, at, reason, v)); err != nil {
					return err
				}
				if err := ct.remove(prio, k, v); err != nil {
					return err
				}
				break
			}
		}
		c := dead.Cursor()
		for k, _ := c.First(); k != nil && st.DeadLetters > MaxDeadLetters; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			st.DeadLetters--
			st.Drops.DeadLetters++
		}
		return putUint(tx, keyDead, st.DeadLetters)
	})
}

// DeadLetters returns up to max dead letters (all when max ≤ 0), lowest seq
// first.
func (q *Queue) DeadLetters(max int) ([]DeadRecord, error) {
	var out []DeadRecord
	err := q.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.First(); k != nil && (max <= 0 || len(out) < max); k, v = c.Next() {
			d, err := decodeDead(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// ClearDeadLetters deletes every dead letter and returns how many it deleted.
func (q *Queue) ClearDeadLetters() (int, error) {
	var n int
	err := q.applyWait(func(tx *bolt.Tx, st *Stats) error {
		n = 0
		if err := tx.DeleteBucket(bucketDead); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		if _, err := tx.CreateBucket(bucketDead); err != nil {
			return err
		}
		n = int(st.DeadLetters)
		st.DeadLetters = 0
		return putUint(tx, keyDead, 0)
	})
	if err != nil {
		return 0, fmt.Errorf("clear dead letters: %w", err)
	}
	return n, nil
}

// applyWait runs fn in the writer's next commit and waits until that commit
// is fsynced (or failed).
func (q *Queue) applyWait(fn func(tx *bolt.Tx, st *Stats) error) error {
	done := make(chan error, 1)
	if err := q.submit(context.Background(), op{apply: fn, done: done}); err != nil {
		return err
	}
	return <-done
}

func putUint(tx *bolt.Tx, k []byte, v uint64) error {
	return tx.Bucket(bucketMeta).Put(k, binary.BigEndian.AppendUint64(nil, v))
}
