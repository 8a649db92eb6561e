package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// BenchmarkDrain delivers a backlog of one million 200-byte records over
// mutual TLS with QoS 1 to the loopback mochi cloud broker, while live
// readings arrive at 50/s, and reports the drain rate and the live readings'
// latency (enqueue → received by the cloud). Run:
//
//	go test ./gateway/uplink -run '^$' -bench Drain -benchtime 1x
func BenchmarkDrain(b *testing.B) {
	for range b.N {
		e := newEnvWith(b, buffer.Options{MaxBytes: 1 << 30}) // default 200ms commit interval
		e.cloud.Discard()
		drain(b, e, e.cloud.URL(), nil)
	}
}

// drain runs the drain benchmark against any broker. The drain is complete
// when the broker has acknowledged (PUBACK) every backlog record; watchLive
// must report the live readings the broker delivers (the in-process cloud
// reports them itself) for their latency.
func drain(b *testing.B, e *env, broker string, watchLive func(onLive func(payload []byte))) {
	const backlog, batch = 1_000_000, 1000
	ctx := context.Background()
	payload := []byte(`{"v":21.53,"unit":"°C","ts":"2026-11-28T04:41:10.123Z","q":"good","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	recs := make([]buffer.Record, batch)
	for n := 0; n < backlog; n += batch {
		for i := range recs {
			recs[i] = buffer.Record{Topic: "lintel/gw1/backlog/p", Payload: payload}
		}
		if err := e.queue.Enqueue(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.queue.Append(ctx, buffer.Record{Topic: "lintel/gw1/backlog/p", Payload: payload}); err != nil {
		b.Fatal(err)
	}

	var mu sync.Mutex
	var latencies []time.Duration
	onLive := func(p []byte) {
		var v struct{ T int64 }
		json.Unmarshal(p, &v)
		mu.Lock()
		latencies = append(latencies, time.Since(time.Unix(0, v.T)))
		mu.Unlock()
	}
	if watchLive == nil {
		e.cloud.Watch(func(m cloudtest.Message) {
			if m.Topic == "lintel/gw1/live/p" {
				onLive(m.Payload)
			}
		})
	} else {
		watchLive(onLive)
	}

	runCtx, stop := context.WithCancel(ctx)
	var live sync.WaitGroup
	live.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				e.queue.Enqueue(ctx, buffer.Record{Topic: "lintel/gw1/live/p", Payload: fmt.Appendf(nil, `{"t":%d}`, time.Now().UnixNano())})
			}
		}
	})
	u, err := New(Config{Broker: broker, TLS: e.clientTLS(b, e.ca), GatewayID: "gw1"}, e.queue, quiet())
	if err != nil {
		b.Fatal(err)
	}
	start, commitsBefore := time.Now(), e.queue.Stats().Commits
	var run sync.WaitGroup
	run.Go(func() { u.Run(runCtx) })
	deadline := time.Now().Add(5 * time.Minute)
	for u.Stats().Acked < backlog+1 {
		if time.Now().After(deadline) {
			b.Fatalf("drain incomplete after 5 minutes: %d of %d acknowledged", u.Stats().Acked, backlog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stop()
	live.Wait()
	run.Wait()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))].Milliseconds())
	}
	b.ReportMetric(float64(backlog)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(e.queue.Stats().Commits-commitsBefore)/elapsed.Seconds(), "commits/s")
	b.ReportMetric(pct(0.5), "live-p50-ms")
	b.ReportMetric(pct(0.99), "live-p99-ms")
	b.ReportMetric(float64(len(latencies)), "live-msgs")
}
