package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Priority is a record's delivery class.
type Priority uint8

const (
	// Normal is ordinary telemetry: delivered after High, evicted first.
	Normal Priority = iota
	// High is for status, access and alarm events: delivered first and
	// evicted only when no Normal record is left.
	High
)

// index is the class's slot: unknown values count as Normal.
func (p Priority) index() int {
	if p == High {
		return 1
	}
	return 0
}

func (p Priority) String() string {
	if p == High {
		return "high"
	}
	return "normal"
}

// Record is one message waiting for delivery.
type Record struct {
	// Seq is assigned by the queue when the record is committed.
	Seq uint64
	// Time is when the record was handed to the queue, on the queue clock
	// (see the package doc); a caller may set it beforehand.
	Time     time.Time
	Topic    string
	Payload  []byte
	Retain   bool
	Priority Priority // not stored in the value: each class has its own bucket
}

const (
	recordVersion = 1
	flagRetain    = 1 << 0
	// headerSize is version, flags and the time stamp.
	headerSize = 1 + 1 + 8
)

var errBadRecord = errors.New("malformed record")

// encode lays a record out as
// version(1) flags(1) unixnano(8) uvarint(len(topic)) topic payload.
func (r *Record) encode() []byte {
	buf := make([]byte, 0, headerSize+binary.MaxVarintLen16+len(r.Topic)+len(r.Payload))
	var flags byte
	if r.Retain {
		flags |= flagRetain
	}
	buf = append(buf, recordVersion, flags)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Time.UnixNano()))
	buf = binary.AppendUvarint(buf, uint64(len(r.Topic)))
	buf = append(buf, r.Topic...)
	return append(buf, r.Payload...)
}

// recordTime reads only the time stamp of an encoded record.
func recordTime(b []byte) (time.Time, bool) {
	if len(b) < headerSize || b[0] != recordVersion {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10]))), true
}

// recordLayout checks an encoded record's bounds and returns where its topic
// starts and ends (the payload follows).
func recordLayout(b []byte) (start, end int, ok bool) {
	if len(b) < headerSize+1 || b[0] != recordVersion {
		return 0, 0, false
	}
	n, w := binary.Uvarint(b[headerSize:])
	if w <= 0 || uint64(len(b)-headerSize-w) < n {
		return 0, 0, false
	}
	return headerSize + w, headerSize + w + int(n), true
}

// decodeRecord copies what it needs out of b: bbolt memory is only valid
// inside the transaction.
func decodeRecord(seq uint64, b []byte, prio Priority) (Record, error) {
	start, end, ok := recordLayout(b)
	if !ok {
		return Record{}, fmt.Errorf("record %d: %w", seq, errBadRecord)
	}
	return Record{
		Seq:      seq,
		Priority: prio,
		Retain:   b[1]&flagRetain != 0,
		Time:     time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10]))),
		Topic:    string(b[start:end]),
		Payload:  append([]byte(nil), b[end:]...),
	}, nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}
