package bacnet

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Config is one BACnet/IP network as the gateway config describes it.
type Config struct {
	Name string
	// Listen is the local UDP address (default 0.0.0.0:0: devices answer
	// and send COV notifications to the port the requests came from).
	Listen string
	// BBMD, when set, is host[:port] of a BBMD the bus registers with as a
	// foreign device for TTL (default 5 min), renewed at half of it, so
	// that devices on other subnets can send it their COV notifications.
	BBMD string
	TTL  time.Duration
	// Timeout is how long one try waits (default 2 s); Retries how often a
	// request is repeated after a timeout (default 1).
	Timeout time.Duration
	Retries int
	// OfflineAfter is the number of failed polls in a row after which a
	// device is reported offline (default 3).
	OfflineAfter int
	Devices      []Device
}

// Device is one BACnet device.
type Device struct {
	Name string
	// Address is host[:port] of the device (port 47808 by default).
	Address string
	// Network and MAC address a device behind a BACnet router (an MS/TP
	// trunk): Address is then the router's, Network the device's network
	// number and MAC its address there in hex ("0A" for MS/TP station 10).
	Network uint16
	MAC     string
	// Instance is the device object instance (as in I-Am).
	Instance uint32
	Poll     time.Duration // default 10 s
	// MaxProperties caps the properties of one ReadPropertyMultiple
	// (default 32); the bus halves it when a device cannot answer without
	// segmentation.
	MaxProperties int
	Points        []Point
}

// Point is one object's present-value.
type Point struct {
	Name   string
	Object ObjectID
	// Unit overrides the object's units property (analog objects only
	// have one).
	Unit string
	// COV subscribes to change-of-value notifications; refused
	// subscriptions fall back to polling. COVLifetime is the subscription
	// lifetime (default 5 min), renewed at half of it.
	COV         bool
	COVLifetime time.Duration
	// Writable allows commands; they are WriteProperty of present-value at
	// Priority (default 16). Priorities 1 and 2 (manual and automatic life
	// safety) need AllowLifeSafety.
	Writable        bool
	Priority        uint8
	AllowLifeSafety bool
	// UnsignedWrites lets unsigned commands write this point; by default
	// every write needs a signed command.
	UnsignedWrites bool
	Min, Max       *float64 // bounds of a written analog or multi-state value
	High           bool     // alarms and the like: delivered first, evicted last
	// Deadband: a new value is published when it differs from the last
	// published one by more than this (0: any change).
	Deadband float64
	// MaxInterval: publish at least this often even without change (0: 5m).
	MaxInterval time.Duration
}

// RelinquishSuffix turns a point name into its relinquish command: a
// command to "<point>.relinquish" writes NULL at the point's priority, so
// the device falls back to lower priorities or its relinquish default.
const RelinquishSuffix = ".relinquish"

const (
	defaultPoll          = 10 * time.Second
	defaultMaxProperties = 32
	defaultCOVLifetime   = 5 * time.Minute
	defaultPriority      = 16
)

// Validate checks the config; every error names the device and point.
func (c Config) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	bus := fmt.Sprintf("bacnet bus %q", c.Name)
	if c.Timeout < 0 || c.Retries < 0 || c.OfflineAfter < 0 {
		fail("%s: timeout, retries and offline_after must not be negative", bus)
	}
	if c.BBMD != "" {
		if _, err := ResolveAddress(c.BBMD); err != nil {
			fail("%s: bbmd: %v", bus, err)
		}
	}
	if c.TTL < 0 || c.TTL > time.Duration(math.MaxUint16)*time.Second {
		fail("%s: ttl %v out of range", bus, c.TTL)
	}
	devices := map[string]bool{}
	instances := map[uint32]string{}
	for _, d := range c.Devices {
		dev := fmt.Sprintf("%s: device %q", bus, d.Name)
		switch {
		case d.Name == "":
			fail("%s: device without a name", bus)
		case devices[d.Name]:
			fail("%s: device name used twice", dev)
		}
		devices[d.Name] = true
		if d.Address == "" {
			fail("%s: address missing", dev)
		} else if _, err := ResolveAddress(d.Address); err != nil {
			fail("%s: %v", dev, err)
		}
		if d.Network != 0 || d.MAC != "" {
			if _, err := d.route(); err != nil {
				fail("%s: %v", dev, err)
			}
		}
		if d.Instance > MaxInstance {
			fail("%s: instance %d above %d", dev, d.Instance, MaxInstance)
		}
		if other, ok := instances[d.Instance]; ok {
			fail("%s: instance %d already used by device %q", dev, d.Instance, other)
		}
		instances[d.Instance] = d.Name
		if d.Poll < 0 || d.MaxProperties < 0 {
			fail("%s: poll and max_properties must not be negative", dev)
		}
		points := map[string]bool{}
		for _, p := range d.Points {
			pt := fmt.Sprintf("%s point %q", dev, p.Name)
			switch {
			case p.Name == "" || strings.ContainsAny(p.Name, "/+#"):
				fail("%s: point name must be non-empty without / + #", pt)
			case points[p.Name]:
				fail("%s: point name used twice", pt)
			case strings.HasSuffix(p.Name, RelinquishSuffix):
				fail("%s: point name must not end in %s (that is its relinquish command)", pt, RelinquishSuffix)
			}
			points[p.Name] = true
			t := p.Object.Type
			if !t.IsAnalog() && !t.IsBinary() && !t.IsMultiState() {
				fail("%s: object type %s is not an analog, binary or multi-state input, output or value", pt, t)
			}
			if p.Object.Instance > MaxInstance {
				fail("%s: object instance %d above %d", pt, p.Object.Instance, MaxInstance)
			}
			if p.Writable && !t.Commandable() {
				fail("%s: %s is an input: it cannot be writable", pt, t)
			}
			if p.Priority > 16 {
				fail("%s: priority %d outside 1..16", pt, p.Priority)
			}
			if (p.Priority == 1 || p.Priority == 2) && !p.AllowLifeSafety {
				fail("%s: priority %d is reserved for life safety; set allow_life_safety to use it", pt, p.Priority)
			}
			if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
				fail("%s: min %v above max %v", pt, *p.Min, *p.Max)
			}
			if p.COVLifetime < 0 || p.COVLifetime > time.Duration(math.MaxUint32)*time.Second {
				fail("%s: cov_lifetime %v out of range", pt, p.COVLifetime)
			}
			if p.Deadband < 0 || p.MaxInterval < 0 {
				fail("%s: deadband and max_interval must not be negative", pt)
			}
		}
	}
	return errors.Join(errs...)
}

// route is the device's network and MAC, nil for a device on this network.
func (d Device) route() (*Route, error) {
	if d.Network == 0 && d.MAC == "" {
		return nil, nil
	}
	mac, err := hex.DecodeString(d.MAC)
	switch {
	case d.Network == 0 || d.Network == GlobalBroadcast:
		return nil, fmt.Errorf("network %d: want 1..65534 for a routed device", d.Network)
	case err != nil || len(mac) == 0 || len(mac) > 7:
		return nil, fmt.Errorf("mac %q: want 1 to 7 octets in hex", d.MAC)
	}
	return &Route{Net: d.Network, MAC: mac}, nil
}
