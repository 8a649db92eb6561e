package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// rtuSection parses a Modbus RTU bus on port with one device, unit 5, so
// that config's defaults apply as they would to a real file.
func rtuSection(t *testing.T, port string) (config.Bus, config.Device) {
	t.Helper()
	yaml := fmt.Sprintf(`gateway: {id: demo-gw, data_dir: %q}
local_broker:
  listeners: [{name: local, address: 127.0.0.1:0}]
buses:
  - {name: rtu, type: modbus-rtu, port: %q, baud: 38400, timeout: 150ms, retries: 0}
devices:
  - name: rtu-meter
    bus: rtu
    unit: 5
    poll: 100ms
    points:
      - {name: flow, table: holding, address: 0, type: uint16, report: {max_interval: 1ms}}
`, t.TempDir(), port)
	cfg, err := config.Parse([]byte(yaml), "rtu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Buses[0], cfg.Devices[0]
}

// cloudWatch follows what the cloud receives for the fault tests.
type cloudWatch struct {
	t     *testing.T
	cloud *cloudtest.Broker
}

// count is how many messages arrived on topic.
func (c cloudWatch) count(topic string) int {
	n := 0
	for _, m := range c.cloud.Received() {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

// status is the last $status of device in the cloud (nil if none).
func (c cloudWatch) status(device string) *struct {
	Online bool
	Error  string
} {
	var last *struct {
		Online bool
		Error  string
	}
	for _, m := range c.cloud.Received() {
		if m.Topic == "lintel/demo-gw/"+device+"/$status" {
			last = new(struct {
				Online bool
				Error  string
			})
			json.Unmarshal(m.Payload, last)
		}
	}
	return last
}

// waitStatus waits until the cloud's last $status of device says online
// (and, when offline, carries an error containing errPart).
func (c cloudWatch) waitStatus(device string, online bool, errPart string) {
	c.t.Helper()
	testwait.Until(c.t, fmt.Sprintf("%s online=%v in the cloud", device, online), 20*time.Second, func() bool {
		s := c.status(device)
		return s != nil && s.Online == online && strings.Contains(s.Error, errPart)
	})
}

// keepsFlowing waits for n more readings of the healthy AHU in the cloud:
// the fault elsewhere does not hold them up.
func (c cloudWatch) keepsFlowing(during string, n int) {
	c.t.Helper()
	const topic = "lintel/demo-gw/ahu-1/supply_temp"
	before := c.count(topic)
	testwait.Until(c.t, "AHU readings in the cloud during "+during, 20*time.Second, func() bool { return c.count(topic) >= before+n })
}

// TestDeviceFaultsEndToEnd breaks one device at a time — a Modbus RTU slave
// that times out, answers with exceptions, answers garbage, vanishes and
// comes back; a serial line that spews garbage and giant lines — and checks
// through the mTLS cloud that everything else keeps flowing, the broken
// device's $status is right in both directions, and memory stays bounded.
func TestDeviceFaultsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	env, err := demo.Prepare(demo.Options{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	if env.Doors == nil {
		t.Skip("no pseudo-terminals")
	}
	slave, err := modbustest.NewSlaveLinked(0, filepath.Join(dir, "ttyRTU"))
	if err != nil {
		t.Skipf("no pseudo-terminal for the RTU slave: %v", err)
	}
	plugged := true
	t.Cleanup(func() {
		if plugged {
			slave.Close()
		}
	})
	slave.SetHolding(5, 0, 42)
	bus, dev := rtuSection(t, slave.Path)
	cfg := cloneConfig(env.Config)
	cfg.Buses = append(cfg.Buses, bus)
	cfg.Devices = append(cfg.Devices, dev)
	for i := range cfg.Devices {
		if cfg.Devices[i].Name == "ahu-1" {
			d := &cfg.Devices[i]
			d.Poll = config.Duration(100 * time.Millisecond)
			d.Points = append([]config.Point(nil), d.Points...)
			for j := range d.Points {
				d.Points[j].Report = config.Report{MaxInterval: config.Duration(time.Millisecond)}
			}
		}
	}
	gw := runGateway(t, cfg, gateway.Options{Logger: quiet()})
	cw := cloudWatch{t: t, cloud: env.Cloud}
	const flow = "lintel/demo-gw/rtu-meter/flow"
	cw.waitStatus("rtu-meter", true, "")
	cw.waitStatus("front-door", true, "")
	testwait.Until(t, "RTU readings in the cloud", 10*time.Second, func() bool { return cw.count(flow) > 0 })
	cw.keepsFlowing("normal operation", 3)

	recovers := func(fault string) {
		t.Helper()
		cw.waitStatus("rtu-meter", true, "")
		n := cw.count(flow)
		testwait.Until(t, "RTU readings again after "+fault, 20*time.Second, func() bool { return cw.count(flow) > n })
	}

	t.Run("slave times out", func(t *testing.T) {
		slave.SetSilent(5, true)
		cw.waitStatus("rtu-meter", false, "timed out")
		cw.keepsFlowing("the timeouts", 5)
		slave.SetSilent(5, false)
		recovers("timeouts")
	})
	t.Run("slave answers exceptions", func(t *testing.T) {
		slave.SetException(5, 2) // illegal data address
		cw.waitStatus("rtu-meter", false, "")
		if s := cw.status("rtu-meter"); !strings.Contains(strings.ToLower(s.Error), "illegal") && !strings.Contains(strings.ToLower(s.Error), "exception") {
			t.Errorf("offline status does not name the exception: %q", s.Error)
		}
		cw.keepsFlowing("the exceptions", 5)
		slave.SetException(5, 0)
		recovers("exceptions")
	})
	t.Run("slave answers garbage", func(t *testing.T) {
		base := metric(scrape(t, "http://"+gw.MetricsAddr()+"/metrics"), `lintel_bus_link_errors_total{bus="rtu"}`)
		slave.CorruptNext(1 << 30) // every answer until told otherwise
		cw.waitStatus("rtu-meter", false, "")
		testwait.Until(t, "link errors counted", 10*time.Second, func() bool {
			return metric(scrape(t, "http://"+gw.MetricsAddr()+"/metrics"), `lintel_bus_link_errors_total{bus="rtu"}`) > base
		})
		cw.keepsFlowing("the garbage", 5)
		slave.CorruptNext(0)
		recovers("garbage")
	})
	t.Run("slave vanishes and comes back", func(t *testing.T) {
		slave.Unplug()
		plugged = false
		cw.waitStatus("rtu-meter", false, "")
		cw.keepsFlowing("the absence", 5)
		if err := slave.Replug(); err != nil {
			t.Fatal(err)
		}
		plugged = true
		recovers("the replug")
	})
	t.Run("serial line spews garbage and giant lines", func(t *testing.T) {
		base := metric(scrape(t, "http://"+gw.MetricsAddr()+"/metrics"), `lintel_serial_dropped_total{bus="doors"}`)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// 32 MiB without a delimiter (one giant line), then binary garbage
		// with delimiters in it, then lines just over max_frame.
		chunk := bytes.Repeat([]byte("G"), 1<<20)
		for range 32 {
			if err := env.Doors.Send(chunk); err != nil {
				t.Fatal(err)
			}
		}
		noise := make([]byte, 1<<20)
		for i := range noise {
			noise[i] = byte(i*131 + i>>7)
		}
		for range 4 {
			if err := env.Doors.Send(noise); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			if err := env.Doors.Emit("EVT 1 GRANTED CARD=1 NAME=" + strings.Repeat("x", 600)); err != nil {
				t.Fatal(err)
			}
		}
		env.Doors.Emit("") // end whatever partial frame the noise left
		testwait.Until(t, "garbage counted as dropped", 20*time.Second, func() bool {
			return metric(scrape(t, "http://"+gw.MetricsAddr()+"/metrics"), `lintel_serial_dropped_total{bus="doors"}`) > base
		})
		// The line still works: a badge after the garbage reaches the cloud.
		events := len(accessEvents(env.Cloud))
		testwait.Until(t, "a badge after the garbage in the cloud", 20*time.Second, func() bool {
			env.Doors.Badge(2, "GRANTED", "0012345", "Alice Example")
			return len(accessEvents(env.Cloud)) > events
		})
		cw.keepsFlowing("the serial garbage", 5)
		if s := cw.status("front-door"); s == nil || !s.Online {
			t.Errorf("front-door $status after the garbage: %+v, want online", s)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("heap %d → %d bytes (%+d) after 36 MiB of garbage", before.HeapAlloc, after.HeapAlloc, growth)
		if growth > 16<<20 {
			t.Errorf("heap grew by %d bytes while the serial line spewed 36 MiB of garbage: not bounded by max_frame", growth)
		}
	})
	if s := cw.status("rtu-meter"); s == nil || !s.Online {
		t.Errorf("rtu-meter $status at the end: %+v, want online", s)
	}
}
