package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// BenchmarkExampleBuilding runs the gateway on a simulated building of 50
// Modbus devices with 20 points each (1000 points, 5 s polls, a tenth of the
// registers changing every second) delivering to the loopback mTLS cloud,
// and reports CPU (% of one core) and anonymous memory. The simulated
// devices and the cloud broker run in the same process, so both figures are
// upper bounds for the gateway alone. Run:
//
//	go test ./gateway -run '^$' -bench ExampleBuilding -benchtime 1x
func BenchmarkExampleBuilding(b *testing.B) {
	const buses, perBus, points = 5, 10, 20
	for range b.N {
		env, err := demo.Prepare(demo.Options{DataDir: b.TempDir(), Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		cfg := env.Config
		cfg.Buses, cfg.Devices = nil, nil
		var servers []*modbustest.TCP
		for bi := range buses {
			srv, err := modbustest.NewTCP()
			if err != nil {
				b.Fatal(err)
			}
			servers = append(servers, srv)
			name := fmt.Sprintf("plant-%d", bi)
			cfg.Buses = append(cfg.Buses, config.Bus{Name: name, Type: "modbus-tcp", Address: srv.Addr, Timeout: config.Duration(time.Second), Retries: new(int)})
			for d := range perBus {
				unit := uint8(d + 1)
				dev := config.Device{Name: fmt.Sprintf("dev-%d-%d", bi, d), Bus: name, Unit: new(int(unit)), Poll: config.Duration(5 * time.Second)}
				for p := range points {
					srv.SetHolding(unit, uint16(2*p), 0x41AC, uint16(p))
					dev.Points = append(dev.Points, config.Point{Name: fmt.Sprintf("p%d", p), Table: "holding", Address: 2 * p, Type: "float32", Unit: "°C",
						Report: config.Report{Deadband: 0.0001, MaxInterval: config.Duration(5 * time.Minute)}})
				}
				cfg.Devices = append(cfg.Devices, dev)
			}
		}
		gw, err := gateway.New(cfg, gateway.Options{Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- gw.Run(ctx) }()
		stopChanges := make(chan struct{})
		var changes sync.WaitGroup
		changes.Go(func() { // a tenth of the registers move every second
			rng := rand.New(rand.NewPCG(1, 2))
			for {
				select {
				case <-stopChanges:
					return
				case <-time.After(time.Second):
				}
				for _, srv := range servers {
					for range perBus * points / 10 {
						srv.SetHolding(uint8(1+rng.IntN(perBus)), uint16(2*rng.IntN(points)+1), uint16(rng.IntN(65536)))
					}
				}
			}
		})

		// Warm up: every point read and acknowledged by the cloud once.
		testwait.Until(b, "first reading of every point acknowledged", time.Minute, func() bool {
			return gw.Stats().Uplink.Acked >= buses*perBus*points
		})
		cpu0, wall0, acked0 := cpuTime(), time.Now(), gw.Stats().Uplink.Acked
		<-time.After(time.Minute) // the measurement window (not synchronisation)
		cpu, wall, acked := cpuTime()-cpu0, time.Since(wall0), gw.Stats().Uplink.Acked-acked0
		rss := statusKB("RssAnon")
		close(stopChanges)
		changes.Wait()
		cancel()
		<-done
		env.Close()
		for _, s := range servers {
			s.Close()
		}
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%CPU")
		b.ReportMetric(float64(rss)/1024, "RssAnon-MB")
		b.ReportMetric(float64(acked)/wall.Seconds(), "delivered-msgs/s")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func statusKB(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return -1
}
