package modbus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
)

// Benchmarks for the README. Run:
//
//	go test ./adapters/modbus -run '^$' -bench . -benchtime 1x

// BenchmarkRTUBusEfficiency reads 10 holding registers back to back from an
// RTU slave on a pty. The wire is not real: the test slave sleeps for the wire
// time of 8N1 at the given baud rate (and, in the usb cases, for the 16 ms
// latency timer of a typical FTDI-style USB adapter) before it answers. So
// the figure measures Lintel's own overhead on top of a modelled wire:
// 100 %-of-limit means Lintel adds nothing. The limit per transaction is
// 8 + 25 characters plus two 3.5-character gaps, plus the adapter latency:
// 24.0 transactions/s at 9600 and 48.0/s at 19200 without it.
func BenchmarkRTUBusEfficiency(b *testing.B) {
	for _, c := range []struct {
		baud    int
		latency time.Duration
	}{{9600, 0}, {19200, 0}, {9600, 16 * time.Millisecond}, {19200, 16 * time.Millisecond}} {
		name := fmt.Sprintf("baud=%d", c.baud)
		if c.latency > 0 {
			name += fmt.Sprintf(",usb_latency=%v", c.latency)
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				s, err := startBenchSlave(b, c.baud)
				if err != nil {
					b.Skip(err)
				}
				s.SetDelay(c.latency)
				s.SetHolding(1, 0, make([]uint16, 10)...)
				bus, _ := NewBus(BusConfig{Name: "bench", URL: "rtu://" + s.Path, Timeout: time.Second,
					Serial: Serial{Baud: c.baud, Parity: "none", StopBits: 1}}, []Device{{Name: "d", Unit: 1, Poll: time.Nanosecond,
					Points: []Point{{Name: "r", Table: Holding, Address: 0, Type: String, Length: 10}}}}, quiet())
				tps := measure(b, bus, 3*time.Second, func() uint64 { return s.Transactions.Load() })
				wire := time.Duration((8+25+7)*10) * time.Second / time.Duration(c.baud)
				limit := float64(time.Second) / float64(wire+c.latency)
				b.ReportMetric(tps, "transactions/s")
				b.ReportMetric(100*tps/limit, "%-of-limit")
			}
		})
	}
}

// BenchmarkPlanner200Points reads a 200-point map laid out as devices often
// are, groups of 4 registers with 3 unused ones between groups, at 19200
// baud. The baseline is a naive coalescer that merges adjacent registers only
// (max_gap 0: one request per group); the planner spans the gaps (max_gap 3).
func BenchmarkPlanner200Points(b *testing.B) {
	for range b.N {
		var points []Point
		for i := range 200 {
			addr := uint16(i/4*7 + i%4)
			points = append(points, Point{Name: fmt.Sprintf("p%d", i), Table: Holding, Address: addr, Type: Uint16, MaxInterval: time.Nanosecond})
		}
		rate := func(maxGap uint16) float64 {
			s, err := startBenchSlave(b, 19200)
			if err != nil {
				b.Skip(err)
			}
			s.SetHolding(1, 0, make([]uint16, 350)...)
			bus, _ := NewBus(BusConfig{Name: "bench", URL: "rtu://" + s.Path, Timeout: time.Second,
				Serial: Serial{Baud: 19200, Parity: "none", StopBits: 1}}, []Device{{Name: "d", Unit: 1, Poll: time.Nanosecond, MaxGap: maxGap, Points: points}}, quiet())
			var readings uint64
			counter := adapters.PublisherFunc(func(context.Context, adapters.Message) error { readings++; return nil })
			return measureWith(b, bus, 3*time.Second, counter, func() uint64 { return readings })
		}
		planned, naive := rate(3), rate(0)
		b.ReportMetric(planned, "points/s-planned")
		b.ReportMetric(naive, "points/s-adjacent-only")
		b.ReportMetric(planned/naive, "ratio")
	}
}

func measure(b *testing.B, bus *Bus, d time.Duration, count func() uint64) float64 {
	return measureWith(b, bus, d, adapters.PublisherFunc(func(context.Context, adapters.Message) error { return nil }), count)
}

// measureWith runs the bus for a warm-up second, then counts for d.
func measureWith(b *testing.B, bus *Bus, d time.Duration, pub adapters.Publisher, count func() uint64) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { bus.Run(ctx, pub); close(done) }()
	time.Sleep(time.Second)
	start, n0 := time.Now(), count()
	time.Sleep(d)
	n := count() - n0
	elapsed := time.Since(start)
	cancel()
	<-done
	return float64(n) / elapsed.Seconds()
}

type benchSlave = modbustest.Slave

func startBenchSlave(b *testing.B, baud int) (*benchSlave, error) {
	s, err := modbustest.NewSlave(baud)
	if err != nil {
		return nil, err
	}
	b.Cleanup(s.Close)
	return s, nil
}
