package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
)

// BACnetBus holds the keys of a bacnet-ip bus (inline in Bus).
type BACnetBus struct {
	// Listen is the local UDP address (default 0.0.0.0:0: devices answer
	// to the port the requests came from; bind :47808 to hear broadcasts).
	Listen string `yaml:"listen"`
	// BBMD, when set, is host[:port] of a BACnet broadcast management
	// device the bus registers with as a foreign device, renewed before
	// TTL (default 5m) runs out.
	BBMD string   `yaml:"bbmd"`
	TTL  Duration `yaml:"ttl"`
}

// BACnetDevice holds the keys of a device on a bacnet-ip bus (inline in
// Device). Address is host[:port] (port 47808 by default); Network and MAC
// address a device behind a BACnet router, whose address Address then is.
type BACnetDevice struct {
	Instance      *int   `yaml:"instance"`
	Address       string `yaml:"address"`
	Network       int    `yaml:"network"`
	MAC           string `yaml:"mac"`
	MaxProperties int    `yaml:"max_properties"`
}

// BACnetPoint holds the keys of a point on a bacnet-ip bus (inline in
// Point). On such a point, Priority is the write priority 1-16 (default
// 16), not the delivery priority of a Modbus point.
type BACnetPoint struct {
	Object          string   `yaml:"object"`   // e.g. analog-input:1
	Property        string   `yaml:"property"` // present-value (the only one read)
	COV             bool     `yaml:"cov"`
	COVLifetime     Duration `yaml:"cov_lifetime"` // default 5m
	AllowLifeSafety bool     `yaml:"allow_life_safety"`
}

// BACnetIP is the bus type of a BACnet/IP network.
const BACnetIP = "bacnet-ip"

// DefaultBACnetTTL is the foreign-device registration's time to live.
const DefaultBACnetTTL = 5 * time.Minute

// BACnet returns the adapter config of the bacnet-ip bus named name and
// its devices. The config must have passed validation.
func (c *Config) BACnet(name string) (bacnet.Config, error) {
	for _, b := range c.Buses {
		if b.Name != name || b.Type != BACnetIP {
			continue
		}
		bc, _ := c.bacnetConfig(b)
		return bc, nil
	}
	return bacnet.Config{}, fmt.Errorf("no bacnet-ip bus %q in %s", name, c.File)
}

// bacnetConfig converts a bus and its devices; it also returns a problem
// for every value that does not convert, by key path.
func (c *Config) bacnetConfig(b Bus) (bacnet.Config, Problems) {
	var ps Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	bc := bacnet.Config{Name: b.Name, Listen: b.Listen, BBMD: b.BBMD, TTL: b.TTL.D(), Timeout: b.Timeout.D()}
	if b.Retries != nil {
		bc.Retries = *b.Retries
	}
	for i, d := range c.Devices {
		if d.Bus != b.Name {
			continue
		}
		p := fmt.Sprintf("devices[%d]", i)
		bd := bacnet.Device{Name: d.Name, Address: d.Address, MAC: d.MAC, Poll: d.Poll.D(), MaxProperties: d.MaxProperties}
		switch {
		case d.Instance == nil:
			add(p+".instance", "missing; the device object instance (from `lintel bacnet discover`) is required")
		case *d.Instance < 0 || *d.Instance > bacnet.MaxInstance:
			add(p+".instance", "%d; want 0 to %d", *d.Instance, bacnet.MaxInstance)
		default:
			bd.Instance = uint32(*d.Instance)
		}
		if d.Network < 0 || d.Network > 65534 {
			add(p+".network", "%d; want 1 to 65534 (the device's network behind a router)", d.Network)
		} else {
			bd.Network = uint16(d.Network)
		}
		for j, pt := range d.Points {
			pp := fmt.Sprintf("%s.points[%d]", p, j)
			bp := bacnet.Point{Name: pt.Name, Unit: pt.Unit, COV: pt.COV, COVLifetime: pt.COVLifetime.D(),
				Writable: pt.Writable, AllowLifeSafety: pt.AllowLifeSafety, UnsignedWrites: pt.UnsignedWrites,
				Min: pt.Min, Max: pt.Max, Deadband: pt.Report.Deadband, MaxInterval: pt.Report.MaxInterval.D()}
			if obj, err := bacnet.ParseObjectID(pt.Object); err != nil {
				add(pp+".object", "%v", err)
			} else {
				bp.Object = obj
			}
			if pt.Priority != "" {
				n, err := strconv.Atoi(pt.Priority)
				if err != nil || n < 1 || n > 16 {
					add(pp+".priority", "%q; want the write priority 1 to 16 (default 16)", pt.Priority)
				} else {
					bp.Priority = uint8(n)
				}
			}
			bd.Points = append(bd.Points, bp)
		}
		bc.Devices = append(bc.Devices, bd)
	}
	return bc, ps
}

// bacnetBus checks the keys of a bacnet-ip bus.
func (c *checker) bacnetBus(p string, b Bus) {
	if b.Address != "" || b.Port != "" {
		c.add(p+".address", "a bacnet-ip bus has no address or port; give listen (the local UDP address), and each device its address")
	}
	if b.Baud != 0 || b.Parity != "" || b.StopBits != 0 || b.Pause != 0 || b.Framing != "" || b.Delimiter != "" ||
		b.FrameLength != 0 || b.LengthBytes != 0 || b.MaxFrame != 0 {
		c.add(p, "baud, parity, stop_bits, pause, framing, delimiter, frame_length, length_bytes and max_frame are not keys of a bacnet-ip bus")
	}
	if b.Listen != "" {
		if _, err := net.ResolveUDPAddr("udp4", b.Listen); err != nil {
			c.add(p+".listen", "invalid address %q; want host:port, e.g. 0.0.0.0:47808", b.Listen)
		}
	}
	if b.BBMD != "" {
		if _, err := bacnet.ResolveAddress(b.BBMD); err != nil {
			c.add(p+".bbmd", "invalid address %q; want host[:port], e.g. 10.0.9.1:47808", b.BBMD)
		}
	}
	if b.Retries != nil && *b.Retries == 0 {
		c.add(p+".retries", "0: a bacnet-ip bus sends every request again at least once after a timeout; want 1 to 5")
	}
	if b.TTL != 0 && (b.BBMD == "" || b.TTL.D() < 30*time.Second || b.TTL.D() > 18*time.Hour) {
		c.add(p+".ttl", "%v; want 30s to 18h, with bbmd", b.TTL.D())
	}
}

// bacnetDevices checks the devices of a bacnet-ip bus, key by key, then
// lets the adapter check what is left (e.g. instances used twice).
func (c *checker) bacnetDevices(cfg *Config, p string, b Bus) {
	bc, ps := cfg.bacnetConfig(b)
	c.problems = append(c.problems, ps...)
	before := len(c.problems)
	for i, d := range cfg.Devices {
		if d.Bus != b.Name {
			continue
		}
		dp := fmt.Sprintf("devices[%d]", i)
		if d.Profile != "" {
			c.add(dp+".profile", "profiles hold Modbus points; a bacnet-ip device lists its points")
		}
		if len(d.Events)+len(d.Requests)+len(d.Commands) > 0 {
			c.add(dp, "events, requests and commands belong to serial-line devices; bus %q is %s", d.Bus, b.Type)
		}
		if _, given := cfg.lines[dp+".unit"]; given {
			c.add(dp+".unit", "unit is the Modbus unit id; a bacnet-ip device has instance (and unit: goes on a point)")
		}
		if d.MaxRegisters != 0 || d.MaxGap != 0 {
			c.add(dp+".max_registers", "max_registers and max_gap are Modbus keys; a bacnet-ip device has max_properties")
		}
		if d.Address == "" {
			c.add(dp+".address", "missing; the device's (or its router's) host[:port], e.g. 10.0.7.21:47808")
		} else if _, err := bacnet.ResolveAddress(d.Address); err != nil {
			c.add(dp+".address", "invalid address %q; want host[:port], e.g. 10.0.7.21:47808", d.Address)
		}
		switch {
		case d.Network != 0 && d.MAC == "":
			c.add(dp+".network", "network without mac: a device behind a router needs both")
		case d.Network == 0 && d.MAC != "":
			c.add(dp+".mac", "mac without network: a device behind a router needs both")
		}
		if d.MaxProperties < 0 || d.MaxProperties > 256 {
			c.add(dp+".max_properties", "%d; want 1 to 256", d.MaxProperties)
		}
		if d.Poll.D() < 100*time.Millisecond {
			c.add(dp+".poll", "%v is too short; want at least 100ms", d.Poll.D())
		}
		if len(d.Points) == 0 {
			c.add(dp+".points", "device has no points")
		}
		points := map[string]bool{}
		for j, pt := range d.Points {
			pp := fmt.Sprintf("%s.points[%d]", dp, j)
			c.name(pp+".name", pt.Name)
			if points[pt.Name] {
				c.add(pp+".name", "duplicate point name %q in device %q", pt.Name, d.Name)
			}
			points[pt.Name] = true
			c.bacnetPoint(pp, pt)
		}
	}
	if len(c.problems) > before || len(ps) > 0 {
		return // the adapter would repeat these without a line
	}
	if err := bc.Validate(); err != nil {
		c.add(p, "%v", err)
	}
}

func (c *checker) bacnetPoint(pp string, pt Point) {
	if pt.Object == "" {
		c.add(pp+".object", "missing; the object as type:instance, e.g. analog-input:1")
	}
	if pt.Table != "" || pt.Address != 0 || pt.Type != "" || pt.Order != "" || pt.Bit != nil || pt.Length != 0 ||
		len(pt.Labels) > 0 || pt.Scale != nil || pt.Offset != 0 || pt.Poll != 0 {
		c.add(pp, "table, address, type, order, bit, length, labels, scale, offset and poll are Modbus keys; a bacnet-ip point has object")
	}
	if pt.Property != "" && pt.Property != "present-value" {
		c.add(pp+".property", "%q; only present-value is read (status-flags and reliability make the reading's q)", pt.Property)
	}
	id, err := bacnet.ParseObjectID(pt.Object)
	if pt.Writable && err == nil && !id.Type.Commandable() {
		c.add(pp+".writable", "%s is an input: only outputs and values can be written", id.Type)
	}
	if n, err := strconv.Atoi(pt.Priority); err == nil && (n == 1 || n == 2) && !pt.AllowLifeSafety {
		c.add(pp+".priority", "%d is reserved for life safety; use 8 (manual operator) to 16, or set allow_life_safety: true", n)
	}
	if (pt.Priority != "" || pt.AllowLifeSafety || pt.Critical || pt.Min != nil || pt.Max != nil) && !pt.Writable {
		c.add(pp+".writable", "priority, allow_life_safety, critical, min and max apply to writable points; set writable: true or remove them")
	}
	if pt.UnsignedWrites && !pt.Writable {
		c.add(pp+".unsigned_writes", "unsigned_writes applies to writable points; set writable: true or remove it")
	}
	if pt.UnsignedWrites && pt.Critical {
		c.add(pp+".unsigned_writes", "critical and unsigned_writes contradict: a critical point always needs a signed command; remove one")
	}
	if pt.Min != nil && pt.Max != nil && *pt.Min > *pt.Max {
		c.add(pp+".min", "min %v is above max %v", *pt.Min, *pt.Max)
	}
	if lt := pt.COVLifetime.D(); lt != 0 && (!pt.COV || lt < 10*time.Second || lt > 24*time.Hour) {
		c.add(pp+".cov_lifetime", "%v; want 10s to 24h, with cov: true", lt)
	}
	if pt.Report.Deadband < 0 {
		c.add(pp+".report.deadband", "%v; want 0 or more", pt.Report.Deadband)
	}
}

// bacnetOnlyBus reports BACnet keys on a bus that is not bacnet-ip.
func (c *checker) bacnetOnlyBus(p string, b Bus) {
	if b.Listen != "" || b.BBMD != "" || b.TTL != 0 {
		c.add(p, "listen, bbmd and ttl are keys of bacnet-ip buses")
	}
}

// bacnetOnly reports BACnet keys on a device that is not on a bacnet-ip bus.
func (c *checker) bacnetOnly(p string, d Device) {
	if d.Instance != nil || d.Address != "" || d.Network != 0 || d.MAC != "" || d.MaxProperties != 0 {
		c.add(p, "instance, address, network, mac and max_properties are keys of bacnet-ip devices")
	}
	for j, pt := range d.Points {
		if pt.Object != "" || pt.Property != "" || pt.COV || pt.COVLifetime != 0 || pt.AllowLifeSafety {
			c.add(fmt.Sprintf("%s.points[%d]", p, j), "object, property, cov, cov_lifetime and allow_life_safety are keys of bacnet-ip points")
		}
	}
}
