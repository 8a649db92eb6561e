package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// seqBlock is how many seqs one write of the high-water file reserves. The
// file records the highest seq the queue may hand out, written and fsynced
// before a commit uses a seq above it. Reserving a block instead of writing
// each commit's highest seq costs one small fsync per seqBlock records rather
// than a second fsync per commit (SD wear, commit latency); the price is
// that a restart after a crash may skip up to seqBlock seqs. Close writes the
// exact value, so a clean restart skips none.
const seqBlock = 1 << 14

// highWater is the seq high-water file beside the buffer (<buffer>.seq,
// 0600). It survives the loss or quarantine of the buffer file, so a new
// buffer file continues above every seq ever issued. Layout: two 24-byte
// slots, each a big-endian generation, seq, and FNV-64a checksum of slot
// index, generation and seq; the valid slot with the higher generation
// counts. Writes alternate between the slots, so a torn write damages only
// the slot being written, and the other still holds the previous value,
// which is at least as high as any seq issued so far (a new value is
// written before any seq above the old one is used, and Close lowers it
// only to the exact last seq).
type highWater struct {
	f        *os.File
	path     string
	reserved uint64 // highest seq the file allows
	gen      uint64 // generation of the last write
	slot     int    // the slot the next write goes to
}

const hwSlotSize = 24

func hwSum(slot int, gen, v uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte{byte(slot)})
	h.Write(binary.BigEndian.AppendUint64(nil, gen))
	h.Write(binary.BigEndian.AppendUint64(nil, v))
	return h.Sum64()
}

func hwSlot(slot int, gen, v uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, hwSlotSize), gen)
	b = binary.BigEndian.AppendUint64(b, v)
	return binary.BigEndian.AppendUint64(b, hwSum(slot, gen, v))
}

// parseHighWater returns the value of the valid slot with the highest
// generation; ok is false when neither slot is valid.
func parseHighWater(b []byte) (v, gen uint64, slot int, ok bool) {
	for i := range 2 {
		if len(b) < (i+1)*hwSlotSize {
			break
		}
		s := b[i*hwSlotSize:]
		g, x := binary.BigEndian.Uint64(s), binary.BigEndian.Uint64(s[8:])
		if binary.BigEndian.Uint64(s[16:]) == hwSum(i, g, x) && (!ok || g > gen) {
			v, gen, slot, ok = x, g, i, true
		}
	}
	return v, gen, slot, ok
}

// openHighWater opens or creates the file. damaged reports a file whose
// slots are both unreadable (it is rewritten from what the buffer says).
func openHighWater(path string, openFile openFileFunc) (hw *highWater, damaged bool, err error) {
	f, err := openFile(path, os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createAtomically(path, hwSlot(0, 0, 0), openFile); err != nil {
			return nil, false, err
		}
		f, err = openFile(path, os.O_RDWR, 0o600)
	}
	if err != nil {
		return nil, false, err
	}
	hw = &highWater{f: f, path: path}
	buf := make([]byte, 2*hwSlotSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	v, gen, slot, ok := parseHighWater(buf[:n])
	if ok {
		hw.reserved, hw.gen, hw.slot = v, gen, 1-slot
	}
	return hw, !ok, nil
}

// reserve makes the file allow seqs up to at least upTo, writing a block
// ahead when it must. It is called by the writer only.
func (hw *highWater) reserve(upTo uint64) error {
	if upTo <= hw.reserved {
		return nil
	}
	return hw.set(upTo + seqBlock)
}

// set writes v as the high-water mark and fsyncs it.
func (hw *highWater) set(v uint64) error {
	if _, err := hw.f.WriteAt(hwSlot(hw.slot, hw.gen+1, v), int64(hw.slot*hwSlotSize)); err != nil {
		return fmt.Errorf("seq high-water %s: %w", hw.path, err)
	}
	if err := hw.f.Sync(); err != nil {
		return fmt.Errorf("seq high-water %s: %w", hw.path, err)
	}
	hw.reserved, hw.gen, hw.slot = v, hw.gen+1, 1-hw.slot
	return nil
}

func (hw *highWater) close() error { return hw.f.Close() }

// createAtomically writes data to a temporary file, fsyncs it, renames it to
// path and fsyncs the directory, so path either does not exist or is whole.
func createAtomically(path string, data []byte, openFile openFileFunc) error {
	tmp := path + ".tmp"
	f, err := openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
