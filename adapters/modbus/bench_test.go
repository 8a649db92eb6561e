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
// RTU slave that takes the wire time of 8N1 at the given baud rate. The
// limit: 8 + 25 characters and two 3.5-character gaps per transaction, 24.0
// transactions/s at 9600 and 48.0/s at 19200.
func BenchmarkRTUBusEfficiency(b *testing.B) {
	for _, baud := range []int{9600, 19200} {
		b.Run(fmt.Sprintf("baud=%d", baud), func(b *testing.B) {
			for range b.N {
				s, err := startBenchSlave(b, baud)
				if err != nil {
					b.Skip(err)
				}
				s.SetHolding(1, 0, make([]uint16, 10)...)
				bus, _ := NewBus(BusConfig{Name: "bench", URL: "rtu://" + s.Path, Timeout: time.Second,
					Serial: Serial{Baud: baud, Parity: "none", StopBits: 1}}, []Device{{Name: "d", Unit: 1, Poll: time.Nanosecond,
					Points: []Point{{Name: "r", Table: Holding, Address: 0, Type: String, Length: 10}}}}, quiet())
				tps := measure(b, bus, 3*time.Second, func() uint64 { return s.Transactions.Load() })
				limit := float64(baud) / 10 / (8 + 25 + 7)
				b.ReportMetric(tps, "transactions/s")
				b.ReportMetric(100*tps/limit, "%-of-limit")
			}
		})
	}
}

// BenchmarkPlanner200Points reads a 200-point map (consecutive uint16
// registers) at 19200 baud with the planner and with one request per point.
func BenchmarkPlanner200Points(b *testing.B) {
	for range b.N {
		var points []Point
		for i := range 200 {
			points = append(points, Point{Name: fmt.Sprintf("p%d", i), Table: Holding, Address: uint16(i), Type: Uint16, MaxInterval: time.Nanosecond})
		}
		rate := func(maxRegs uint16) float64 {
			s, err := startBenchSlave(b, 19200)
			if err != nil {
				b.Skip(err)
			}
			s.SetHolding(1, 0, make([]uint16, 200)...)
			bus, _ := NewBus(BusConfig{Name: "bench", URL: "rtu://" + s.Path, Timeout: time.Second,
				Serial: Serial{Baud: 19200, Parity: "none", StopBits: 1}}, []Device{{Name: "d", Unit: 1, Poll: time.Nanosecond, MaxRegisters: maxRegs, Points: points}}, quiet())
			var readings uint64
			counter := adapters.PublisherFunc(func(context.Context, adapters.Message) error { readings++; return nil })
			return measureWith(b, bus, 3*time.Second, counter, func() uint64 { return readings })
		}
		planned, single := rate(0), rate(1)
		b.ReportMetric(planned, "points/s-planned")
		b.ReportMetric(single, "points/s-one-per-request")
		b.ReportMetric(planned/single, "ratio")
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
