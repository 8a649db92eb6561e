package buffer

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks for the figures in the README. Run:
//
//	go test ./buffer -run '^$' -bench . -benchtime 1x
//
// (-benchtime 1x: each benchmark sizes its own work; b.N only repeats it.)

// payload200 is a 200-byte record: a typical reading with its topic.
var payload200 = []byte(`{"v":21.53,"unit":"°C","ts":"2026-11-28T04:41:10.123Z","q":"good","extra":"` + strings.Repeat("x", 105) + `"}`)

func bench200(i int) Record {
	return Record{Topic: "lintel/bldg-a-gw1/ahu-1/supply_temp", Payload: payload200[:200-len("lintel/bldg-a-gw1/ahu-1/supply_temp")]}
}

// BenchmarkAppendDurable: 64 producers each Append (wait for fsync) a poll
// cycle of 100 records at a time; group commit does the rest.
func BenchmarkAppendDurable(b *testing.B) {
	const producers, cycle, total = 64, 100, 200_000
	for range b.N {
		q := openTest(b, filepath.Join(b.TempDir(), "buffer.db"), Options{CommitInterval: 200 * time.Millisecond, MaxBytes: 1 << 30})
		start := time.Now()
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				recs := make([]Record, cycle)
				for n := p * cycle; n < total; n += producers * cycle {
					for i := range recs {
						recs[i] = bench200(n + i)
					}
					if err := q.Append(context.Background(), recs...); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		commits := q.Stats().Commits
		q.Close()
		b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(total)/float64(commits), "records/commit")
	}
}

// BenchmarkEnqueue: one producer enqueues records one at a time, as an
// adapter does, then waits for the last commit.
func BenchmarkEnqueue(b *testing.B) {
	const total = 200_000
	for range b.N {
		q := openTest(b, filepath.Join(b.TempDir(), "buffer.db"), Options{CommitInterval: 200 * time.Millisecond, MaxBytes: 1 << 30})
		ctx := context.Background()
		start := time.Now()
		for i := range total - 1 {
			if err := q.Enqueue(ctx, bench200(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Append(ctx, bench200(total)); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		q.Close()
		b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
	}
}

// BenchmarkSteady50PerSecond: a building's normal load, 50 readings/s
// enqueued for about 10 s, each read and acked shortly after, at 200ms, 1s
// and the default commit interval. Reports commits per second and bytes written to
// the disk per record (/proc/self/io write_bytes, which includes what the
// file system adds).
func BenchmarkSteady50PerSecond(b *testing.B) {
	for _, interval := range []time.Duration{200 * time.Millisecond, time.Second, DefaultCommitInterval} {
		name := "commit_interval=" + interval.String()
		if interval == DefaultCommitInterval {
			name += "(default)"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				steady(b, interval, 50, 10)
			}
		})
	}
}

func steady(b *testing.B, interval time.Duration, rate, seconds int) {
	q := openTest(b, filepath.Join(b.TempDir(), "buffer.db"), Options{CommitInterval: interval})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // the uplink: read and ack
		for {
			recs, err := q.Read(ctx, 64)
			if err != nil {
				return
			}
			for _, r := range recs {
				q.Ack(r.Seq)
			}
		}
	})
	wg.Go(func() { // the adapters
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				q.Enqueue(ctx, bench200(0))
			case <-ctx.Done():
				return
			}
		}
	})
	// Measure from just after one commit to just after another, so that
	// every record counted is on disk and every byte counted belongs to a
	// counted record.
	afterCommit := func() (Stats, int64, time.Time) {
		c := q.Stats().Commits
		for q.Stats().Commits == c {
			time.Sleep(time.Millisecond)
		}
		return q.Stats(), procIO(b, "write_bytes"), time.Now()
	}
	afterCommit() // warm up: the file has grown
	s0, w0, t0 := afterCommit()
	for time.Since(t0) < time.Duration(seconds)*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	s1, w1, t1 := afterCommit()
	cancel()
	wg.Wait()
	q.Close()
	records := s1.NextSeq - s0.NextSeq
	b.ReportMetric(float64(s1.Commits-s0.Commits)/t1.Sub(t0).Seconds(), "commits/s")
	b.ReportMetric(float64(w1-w0)/float64(records), "disk-bytes/record")
}

// BenchmarkBacklog1M fills the buffer with one million 200-byte records (an
// outage) and reports the resident memory of the process holding them as top
// shows it, without forcing a garbage collection first: RssAnon (heap, stacks)
// and RssFile (the pages of the memory-mapped buffer file and of the binary
// that are resident; the kernel can drop them under memory pressure).
func BenchmarkBacklog1M(b *testing.B) {
	const total, batch = 1_000_000, 1000
	for range b.N {
		q := openTest(b, filepath.Join(b.TempDir(), "buffer.db"), Options{MaxBytes: 1 << 30})
		ctx := context.Background()
		recs := make([]Record, batch)
		start := time.Now()
		for n := 0; n < total; n += batch {
			for i := range recs {
				recs[i] = bench200(n + i)
			}
			if err := q.Enqueue(ctx, recs...); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Append(ctx, bench200(0)); err != nil {
			b.Fatal(err)
		}
		fill := time.Since(start)
		b.ReportMetric(float64(total)/fill.Seconds(), "records/s")
		b.ReportMetric(float64(procStatus(b, "RssAnon"))/1024, "RssAnon-MB")
		b.ReportMetric(float64(procStatus(b, "RssFile"))/1024, "RssFile-MB")
		if s := q.Stats(); s.Records != total+1 {
			b.Fatalf("buffered %d records, want %d", s.Records, total+1)
		}
		q.Close()
	}
}

// procIO reads one counter of /proc/self/io in bytes.
func procIO(b *testing.B, key string) int64 {
	return procField(b, "/proc/self/io", key)
}

// procStatus reads one field of /proc/self/status in kB.
func procStatus(b *testing.B, key string) int64 {
	return procField(b, "/proc/self/status", key)
}

func procField(b *testing.B, file, key string) int64 {
	f, err := os.Open(file)
	if err != nil {
		b.Skipf("%s: %v", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Skipf("%s has no %s", file, key)
	return 0
}

// BenchmarkWaiters: 1 and 20 publishers that each keep one record in flight
// and wait for it to be durable, as a local QoS1 client with 1 or 20
// unacknowledged publishes does through the broker's forward hook. Each run
// lasts 2 s at the package's default commit interval. Reports acknowledged
// records per second and commits per second.
func BenchmarkWaiters(b *testing.B) {
	for _, waiters := range []int{1, 20} {
		b.Run("in_flight="+strconv.Itoa(waiters), func(b *testing.B) {
			for range b.N {
				q, err := Open(filepath.Join(b.TempDir(), "buffer.db"), Options{})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var acked atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range waiters {
					wg.Go(func() {
						for ctx.Err() == nil {
							if err := q.Append(ctx, bench200(0)); err == nil {
								acked.Add(1)
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				cancel()
				commits := q.Stats().Commits
				q.Close()
				b.ReportMetric(float64(acked.Load())/elapsed.Seconds(), "msgs/s")
				b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
			}
		})
	}
}
