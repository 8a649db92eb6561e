package buffer

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const crashChildEnv = "LINTEL_BUFFER_CRASH_CHILD"

// TestCrashChild is the process that gets killed: it appends numbered records
// from several goroutines and prints each number once its Append returned.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("helper process for TestKillDuringAppend")
	}
	q, err := Open(path, Options{CommitInterval: 2 * time.Millisecond})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	start, _ := strconv.Atoi(os.Getenv(crashChildEnv + "_START"))
	out := make(chan [2]uint64, 1024)
	const writers = 4
	for w := range writers {
		go func() {
			for i := start + w; ; i += writers {
				recs := []Record{{Topic: "t", Payload: []byte(strconv.Itoa(i))}}
				if err := q.Append(context.Background(), recs...); err != nil {
					fmt.Println("append:", err)
					os.Exit(2)
				}
				out <- [2]uint64{uint64(i), recs[0].Seq}
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for r := range out {
		fmt.Fprintln(w, r[0], r[1])
		if len(out) == 0 {
			w.Flush()
		}
	}
}

// TestKillDuringAppend SIGKILLs an appending process 20 times at random moments
// and checks after each restart that every record whose Append had returned
// is present, in seq order, that the file passes bbolt's check, and that the
// reopened queue never hands out a seq that was already acknowledged.
func TestKillDuringAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 20 processes")
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	acked := map[int]bool{}
	var maxSeq uint64
	next := 0
	for round := range 20 {
		cmd := childCommand(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("%s_START=%d", crashChildEnv, next))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		window := 250 * time.Millisecond
		if os.Getenv("LINTEL_QEMU") != "" {
			window *= 6 // emulated start-up is slow; let rounds append
		}
		kill := time.After(50*time.Millisecond + time.Duration(rand.Int64N(int64(window))))
		roundAcked := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				var n int
				var seq uint64
				if _, err := fmt.Sscan(l, &n, &seq); err != nil {
					t.Fatalf("round %d: child said %q", round, l)
				}
				acked[n] = true
				maxSeq = max(maxSeq, seq)
				roundAcked++
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		cmd.Wait()
		next += 1_000_000

		seen, err := verifyFile(path)
		if err != nil && len(acked) == 0 {
			// Killed while the file was first initialised, before any Append
			// returned: Open quarantines such a file; nothing was promised.
			t.Logf("round %d: unreadable file before the first acknowledged append (%v): removed", round, err)
			os.Remove(path)
			continue
		}
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for n := range acked {
			if !seen[n] {
				t.Fatalf("round %d: record %d was acknowledged by Append but is missing after kill -9", round, n)
			}
		}
		if maxSeq > 0 { // once a seq was acknowledged, the file must never hand it out again
			stats, err := ReadStats(path)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if stats.NextSeq <= maxSeq {
				t.Fatalf("round %d: next seq %d after restart, but seq %d was already acknowledged", round, stats.NextSeq, maxSeq)
			}
		}
		t.Logf("round %d: %d appends acknowledged before kill, %d records on disk", round, roundAcked, len(seen))
	}
}

// verifyFile checks the file and returns the payload numbers it holds.
func verifyFile(path string) (map[int]bool, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open after kill: %w", err)
	}
	defer db.Close()
	seen := map[int]bool{}
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("consistency check: %w", err)
		}
		var last uint64
		b := tx.Bucket(bucketNormal)
		if b == nil {
			// Killed before the first commit created the buckets: legitimate
			// as long as no Append had returned (checked by the caller).
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			seq := uint64(0)
			for _, b := range k {
				seq = seq<<8 | uint64(b)
			}
			if seq <= last {
				return fmt.Errorf("seq %d after %d: out of order", seq, last)
			}
			last = seq
			r, err := decodeRecord(seq, v, Normal)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(r.Payload)))
			if err != nil {
				return fmt.Errorf("record %d: payload %q", seq, r.Payload)
			}
			seen[n] = true
			return nil
		})
	})
	return seen, err
}

// childCommand runs a copy of the test binary. Cross-architecture runs in
// CI (go test -exec qemu-arm-static) name the emulator in LINTEL_QEMU: the
// kernel cannot run the binary itself.
func childCommand(bin string, args ...string) *exec.Cmd {
	if qemu := os.Getenv("LINTEL_QEMU"); qemu != "" {
		return exec.Command(qemu, append([]string{bin}, args...)...)
	}
	return exec.Command(bin, args...)
}
