package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrFileGone is returned by Append and AppendAsync while the buffer file (or
// its directory) has vanished from its path: a record stored now would live
// only in a deleted file, so it must not be acknowledged.
var ErrFileGone = errors.New("buffer file gone from its path")

func (q *Queue) view(fn func(*bolt.Tx) error) error {
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	return q.db.View(fn)
}

// update is the writer's commit: it reserves the seqs the batch may use in
// the high-water file first, then runs fn in one transaction.
func (q *Queue) update(next uint64, batch []op, fn func(*bolt.Tx) error) error {
	n := 0
	for _, o := range batch {
		n += len(o.recs)
	}
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	if n > 0 {
		if err := q.hw.reserve(next + uint64(n) - 1); err != nil {
			return err
		}
	}
	return q.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return stampTx(tx)
	})
}

func (q *Queue) fileGone() error {
	q.mu.Lock()
	p := q.problem
	q.mu.Unlock()
	if p != "" {
		return fmt.Errorf("%w: %s", ErrFileGone, p)
	}
	return nil
}

func (q *Queue) setProblem(p string) {
	q.mu.Lock()
	q.problem = p
	q.mu.Unlock()
}

// markSuspect notes that the file gave back something that cannot be
// right, so that the next Open checks it in full.
func (q *Queue) markSuspect(err error) {
	if errors.Is(err, errBadRecord) && !q.suspect.Swap(true) {
		q.log.Error("buffer file holds a malformed record; the next start checks the whole file and quarantines it", "file", q.path, "err", err)
	}
}

// closeFiles runs once the writer has stopped: it writes the exact seq
// high-water mark, closes the file and leaves the clean-shutdown marker.
func (q *Queue) closeFiles() error {
	var err error
	q.filesOnce.Do(func() {
		close(q.unwatch)
		<-q.watched
		q.dbMu.Lock()
		defer q.dbMu.Unlock()
		st := q.Stats()
		healthy := st.Problem == "" && st.CommitFails == 0 && !q.suspect.Load()
		if healthy {
			// Exact, so that a clean restart skips no seq.
			if herr := q.hw.set(st.NextSeq - 1); herr != nil {
				q.log.Warn("cannot record the seq high-water mark", "err", herr)
			}
			// Write the freelist once, so the next Open reads one page
			// instead of walking every page to rebuild it. The next
			// commit drops it again (NoFreelistSync).
			q.db.NoFreelistSync = false
			if ferr := q.db.Update(stampTx); ferr != nil {
				healthy = false
				q.log.Warn("cannot write the freelist at close; the next start checks the whole file", "err", ferr)
			}
		}
		err = q.db.Close()
		q.hw.close()
		// A marker only after a close with nothing to doubt: after a
		// failed commit the next start checks the whole file.
		if err == nil && healthy {
			if merr := writeCleanMarker(q.path); merr != nil {
				q.log.Warn("cannot write the clean-shutdown marker; the next start checks the whole file", "err", merr)
			}
		}
	})
	return err
}

// watch checks every CheckInterval that the path still names the open file.
func (q *Queue) watch() {
	defer close(q.watched)
	t := time.NewTicker(q.opts.CheckInterval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-q.unwatch:
			return
		case <-t.C:
		}
		fi, err := os.Stat(q.path)
		if err == nil && fileIdentity(fi) == q.ident {
			continue
		}
		if err == nil {
			// Someone put another file there: never overwrite it.
			if q.fileGone() == nil {
				p := "buffer file was replaced by another file while open; restart the gateway"
				q.log.Error(p, "file", q.path)
				q.setProblem(p)
			}
			continue
		}
		if q.fileGone() == nil {
			p := fmt.Sprintf("buffer file %s vanished while open (%v); new records are refused until it is recreated", q.path, err)
			q.log.Error(p)
			q.setProblem(p)
		}
		if err := q.recreate(); err != nil {
			if err.Error() != lastErr {
				q.log.Error("cannot recreate the buffer file; will retry", "file", q.path, "err", err)
				lastErr = err.Error()
			}
			continue
		}
		lastErr = ""
		q.setProblem("")
		q.log.Warn("buffer file recreated; stored records moved into it", "file", q.path, "records", q.Stats().Records)
	}
}

// recreate builds a new file at the path from the open one (its descriptor
// still reads the deleted file) and switches to it. Commits and reads wait
// meanwhile.
func (q *Queue) recreate() error {
	dir := filepath.Dir(q.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	tmp := q.path + ".recover"
	os.Remove(tmp)
	f, err := q.opts.openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = q.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f) // reads through the open descriptor
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, q.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	hw, _, err := openHighWater(q.path+".seq", q.opts.openFile)
	if err == nil {
		if err = hw.set(max(hw.reserved, q.hw.reserved)); err != nil {
			hw.close()
		}
	}
	if err != nil {
		return err
	}
	nf, err := q.opts.openFile(q.path, os.O_RDWR, 0o600)
	if err == nil {
		if err = lockFile(nf, true, time.Second); err != nil {
			nf.Close()
		}
	}
	var db *bolt.DB
	if err == nil {
		db, err = boltOpen(q.path, nf)
	}
	var fi os.FileInfo
	if err == nil {
		if fi, err = os.Stat(q.path); err != nil {
			db.Close()
		}
	}
	if err != nil {
		hw.close()
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("recreated file vanished again: %w", err)
		}
		return err
	}
	q.db.Close()
	q.hw.close()
	q.db, q.hw, q.ident = db, hw, fileIdentity(fi)
	return nil
}
