package localbroker

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
)

// BenchmarkLocalQoS1InFlight is issue 13 item 3: a local client that keeps
// 1 or 20 QoS 1 publishes in flight on a forwarded topic, each acknowledged
// only after its record is fsynced, with the buffer at its default commit
// interval (which paces adapter readings, not waiting clients). Each of the
// k goroutines publishes and waits for its PUBACK in a loop for 2 s. Run:
//
//	go test ./localbroker -run '^$' -bench LocalQoS1InFlight -benchtime 1x
func BenchmarkLocalQoS1InFlight(b *testing.B) {
	for _, inflight := range []int{1, 20} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			for range b.N {
				q, err := buffer.Open(filepath.Join(b.TempDir(), "buffer.db"), buffer.Options{})
				if err != nil {
					b.Fatal(err)
				}
				br := startBroker(b, Config{Users: users(b, "bms", "bms-password"), ACL: NewACL([]Rule{{User: "bms", Write: []string{"#"}}}), Forward: []string{"#"}, Spool: q})
				c, err := connect(br.addr, "bms", "bms-password")
				if err != nil {
					b.Fatal(err)
				}
				var acked atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				deadline := start.Add(2 * time.Second)
				for range inflight {
					wg.Go(func() {
						for time.Now().Before(deadline) {
							tok := c.Publish("lintel/gw1/bms/x", 1, false, "21.5")
							if tok.Wait(); tok.Error() != nil {
								b.Error(tok.Error())
								return
							}
							acked.Add(1)
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				commits := q.Stats().Commits
				b.ReportMetric(float64(acked.Load())/elapsed.Seconds(), "acked-msgs/s")
				b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
				c.Disconnect(0)
				br.Close()
				q.Close()
			}
		})
	}
}
