package sparkplug

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	stateBucket = []byte("sparkplug")
	bdSeqKey    = []byte("bdSeq")
)

// store keeps the last bdSeq handed out in a small bbolt file of its own,
// so that an NDEATH after a restart never repeats the previous session's.
type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("sparkplug state %s: %w", path, err)
	}
	return &store{db: db}, nil
}

// next returns the bdSeq for the next connection (the last one plus one,
// 0–255) and commits it before it is used.
func (s *store) next() (uint64, error) {
	var bd uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(stateBucket)
		if err != nil {
			return err
		}
		if v := b.Get(bdSeqKey); len(v) == 8 {
			bd = (binary.BigEndian.Uint64(v) + 1) % 256
		}
		return b.Put(bdSeqKey, binary.BigEndian.AppendUint64(nil, bd))
	})
	return bd, err
}

func (s *store) close() error { return s.db.Close() }
