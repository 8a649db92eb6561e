//go:build linux && (amd64 || arm64)

package buffer

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// dropCache evicts the file from the page cache (posix_fadvise DONTNEED), so
// that Open pays for reading it from the disk: a cold start.
func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Sync()
	const fadvDontNeed = 4
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		b.Fatalf("fadvise: %v", errno)
	}
}

// BenchmarkOpen1M: Open with one million 200-byte records buffered (271 MB),
// cold, after a clean stop (clean-shutdown marker: meta pages and freelist
// only) and after a crash (no marker: every page validated). Reports the
// open time and the memory the process gained, as top would see it.
//
//	flock /tmp/lintel-bench.lock go test ./buffer -run '^$' -bench Open1M -benchtime 1x
func BenchmarkOpen1M(b *testing.B) {
	const total, batch = 1_000_000, 10_000
	for range b.N {
		path := filepath.Join(b.TempDir(), "buffer.db")
		q := openTest(b, path, Options{MaxBytes: 1 << 30})
		ctx := context.Background()
		recs := make([]Record, batch)
		for n := 0; n < total; n += batch {
			for i := range recs {
				recs[i] = bench200(n + i)
			}
			if err := q.Append(ctx, recs...); err != nil {
				b.Fatal(err)
			}
		}
		recs = nil
		// What kill -9 leaves: the file as of the last commit, with no
		// marker and no synced freelist (bbolt rebuilds it by walking).
		crashed := filepath.Join(b.TempDir(), "buffer.db")
		if err := copyFile(path, crashed, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := copyFile(path+".seq", crashed+".seq", 0o600); err != nil {
			b.Fatal(err)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(path)
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
		for _, clean := range []bool{true, false} {
			path := path
			if !clean {
				path = crashed
			}
			dropCache(b, path)
			anon, file := procStatus(b, "RssAnon"), procStatus(b, "RssFile")
			start := time.Now()
			q, err := Open(path, Options{MaxBytes: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			name := "crash"
			if clean {
				name = "clean"
			}
			b.ReportMetric(float64(elapsed.Milliseconds()), name+"-open-ms")
			b.ReportMetric(float64(procStatus(b, "RssAnon")-anon)/1024, name+"-RssAnon-MB")
			b.ReportMetric(float64(procStatus(b, "RssFile")-file)/1024, name+"-RssFile-MB")
			if s := q.Stats(); s.Records != total || s.Quarantined != "" {
				b.Fatalf("reopened with %+v", s)
			}
			if err := q.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
