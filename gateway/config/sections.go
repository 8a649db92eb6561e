package config

import (
	"fmt"
	"regexp"

	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/gateway/privacy"
)

// Bus types: the values of buses[].type.
const (
	ModbusTCP        = "modbus-tcp"
	ModbusRTU        = "modbus-rtu"
	ModbusRTUOverTCP = "modbus-rtu-over-tcp"
	SerialLine       = "serial-line"
)

// BusTypes lists every bus type the configuration accepts, in the order
// messages name them. The gateway has one adapter builder for each.
func BusTypes() []string {
	return []string{ModbusTCP, ModbusRTU, ModbusRTUOverTCP, SerialLine}
}

// The methods below turn a bus of the file into its adapter's own config
// section: config owns the YAML, each adapter owns its section type and
// builds itself from it. The config must have passed validation (patterns
// compile, names parse).

// ModbusTarget returns the simonvetter/modbus URL and serial settings of a
// Modbus bus.
func ModbusTarget(b Bus) (string, modbus.Serial, error) {
	switch b.Type {
	case ModbusTCP:
		return "tcp://" + b.Address, modbus.Serial{}, nil
	case ModbusRTUOverTCP:
		return "rtuovertcp://" + b.Address, modbus.Serial{}, nil
	case ModbusRTU:
		return "rtu://" + b.Port, modbus.Serial{Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits}, nil
	}
	return "", modbus.Serial{}, fmt.Errorf("bus %q is %s, not Modbus", b.Name, b.Type)
}

// Modbus returns the adapter config of the Modbus bus named name and its
// devices.
func (c *Config) Modbus(name string) (modbus.Config, error) {
	b, err := c.bus(name)
	if err != nil {
		return modbus.Config{}, err
	}
	url, serial, err := ModbusTarget(b)
	if err != nil {
		return modbus.Config{}, err
	}
	var devices []modbus.Device
	for _, d := range c.Devices {
		if d.Bus != b.Name {
			continue
		}
		md := modbus.Device{Name: d.Name, Unit: d.UnitID(), Poll: d.Poll.D(), MaxRegisters: uint16(d.MaxRegisters), MaxGap: uint16(d.MaxGap)}
		for _, p := range d.Points {
			table, _ := modbus.ParseTable(p.Table) // validated
			typ, _ := modbus.ParseType(p.Type)
			order, _ := modbus.ParseOrder(p.Order)
			scale := 1.0
			if p.Scale != nil {
				scale = *p.Scale
			}
			var bit *uint8
			if p.Bit != nil {
				b := uint8(*p.Bit)
				bit = &b
			}
			md.Points = append(md.Points, modbus.Point{
				Bit: bit, Length: uint16(p.Length), Labels: p.Labels,
				Name: p.Name, Table: table, Address: uint16(p.Address), Type: typ, Order: order,
				Scale: scale, Offset: p.Offset, Unit: p.Unit, Writable: p.Writable, High: p.Priority == "high",
				Critical: p.Critical, UnsignedWrites: p.UnsignedWrites, Min: p.Min, Max: p.Max, Poll: p.Poll.D(),
				Deadband: p.Report.Deadband, MaxInterval: p.Report.MaxInterval.D(),
			})
		}
		devices = append(devices, md)
	}
	return modbus.Config{
		Bus: modbus.BusConfig{
			Name: b.Name, URL: url, Timeout: b.Timeout.D(), Pause: b.Pause.D(), Retries: *b.Retries,
			Serial: serial,
		},
		Devices: devices,
	}, nil
}

// SerialLine returns the adapter config of the serial-line bus named name
// and its devices, pseudonymizing with key.
func (c *Config) SerialLine(name string, key *privacy.Key) (serialline.Config, error) {
	b, err := c.bus(name)
	if err != nil {
		return serialline.Config{}, err
	}
	if b.Type != SerialLine {
		return serialline.Config{}, fmt.Errorf("bus %q is %s, not %s", b.Name, b.Type, SerialLine)
	}
	compile := func(expr string) *regexp.Regexp {
		if expr == "" {
			return nil
		}
		return regexp.MustCompile(expr)
	}
	cfg := serialline.Config{
		Name: b.Name, Port: b.Port, Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits,
		Framing: serialline.Framing{Kind: b.Framing, Delimiter: []byte(b.Delimiter), Length: b.FrameLength, LengthBytes: b.LengthBytes, MaxFrame: b.MaxFrame},
	}
	if key != nil { // a nil *Key in the interface would pass the adapter's nil check
		cfg.Key = key
	}
	for _, d := range c.Devices {
		if d.Bus != b.Name {
			continue
		}
		dev := serialline.Device{Name: d.Name}
		for _, e := range d.Events {
			rules := map[string]privacy.Rule{}
			for field, r := range e.Privacy {
				rules[field] = privacy.Rule(r)
			}
			dev.Events = append(dev.Events, serialline.Event{
				Name: e.Name, Match: compile(e.Match), Privacy: rules,
				Point: e.Point, Value: e.Value, Values: e.Values, Normal: e.Priority == "normal",
			})
		}
		for _, r := range d.Requests {
			dev.Requests = append(dev.Requests, serialline.Request{Send: []byte(r.Send), Every: r.Every.D(), Expect: compile(r.Expect), Timeout: r.Timeout.D()})
		}
		for _, cmd := range d.Commands {
			params := map[string]serialline.Param{}
			for name, p := range cmd.Params {
				params[name] = serialline.Param{Enum: p.Enum, Min: p.Min, Max: p.Max, Pattern: compile(p.Pattern)}
			}
			dev.Commands = append(dev.Commands, serialline.Command{
				Name: cmd.Name, Send: cmd.Send, Params: params, Critical: cmd.Critical, UnsignedWrites: cmd.UnsignedWrites,
				Expect: compile(cmd.Expect), Timeout: cmd.Timeout.D(),
			})
		}
		cfg.Devices = append(cfg.Devices, dev)
	}
	return cfg, nil
}

// bus finds a bus by name.
func (c *Config) bus(name string) (Bus, error) {
	for _, b := range c.Buses {
		if b.Name == name {
			return b, nil
		}
	}
	return Bus{}, fmt.Errorf("no bus %q in %s", name, c.File)
}
