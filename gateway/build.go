package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/privacy"
	"github.com/lintel-gw/lintel/gateway/uplink"
	"github.com/lintel-gw/lintel/localbroker"
)

// open builds the parts in order; New closes the ones built if it fails.
func (g *Gateway) open(cfg *config.Config, opts Options) (err error) {
	log := g.log
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o700); err != nil {
		return fmt.Errorf("gateway.data_dir: %w", err)
	}
	g.queue, err = buffer.Open(filepath.Join(cfg.Gateway.DataDir, "buffer.db"), buffer.Options{
		CommitInterval: cfg.Buffer.CommitInterval.D(),
		MaxBytes:       int64(cfg.Buffer.MaxBytes),
		FullPolicy:     buffer.FullPolicy(cfg.Buffer.FullPolicy),
		TTL:            cfg.Buffer.TTL.D(),
		Logger:         log,
	})
	if err != nil {
		return err
	}

	forward := []string{"lintel/" + cfg.Gateway.ID + "/#"}
	if cfg.Uplink != nil {
		forward = cfg.Uplink.Forward
	}
	bcfg, err := brokerConfig(cfg)
	if err != nil {
		return err
	}
	bcfg.Forward, bcfg.Spool = forward, g.queue
	bcfg.ForwardExclude = []string{g.commandFilter()}
	if g.broker, err = localbroker.New(bcfg, log); err != nil {
		return fmt.Errorf("local_broker: %w", err)
	}

	if g.buses, err = g.newBuses(cfg); err != nil {
		return err
	}

	if g.gate, err = g.openGate(); err != nil {
		return err
	}
	if a := cfg.Metrics.Address; a != "off" {
		if g.metrics, err = net.Listen("tcp", a); err != nil {
			return fmt.Errorf("metrics.address: %w", err)
		}
	}

	if err := g.openStatusPage(cfg, opts.Version); err != nil {
		return err
	}

	if u := cfg.Uplink; u != nil {
		tlsCfg, err := uplink.LoadTLS(u.TLS.CAFile, u.TLS.CertFile, u.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("uplink.tls: %w", err)
		}
		g.uplink, err = uplink.New(uplink.Config{
			Broker:          u.Broker,
			TLS:             tlsCfg,
			GatewayID:       cfg.Gateway.ID,
			TopicPrefix:     u.TopicPrefix,
			MaxInflight:     u.MaxInflight,
			AckTimeout:      u.AckTimeout.D(),
			DeadLetterAfter: u.DeadLetterAfter,
			Version:         opts.Version,
			Buffered:        func() uint64 { return g.queue.Stats().Records },
			OnCommand: func(topic string, payload []byte) {
				if !g.admitCommand("cloud", topic) {
					return
				}
				defer g.cmdWG.Done()
				g.gate.Handle(g.cmdCtx, "cloud", topic, payload)
			},
		}, g.queue, log)
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	return nil
}

// openGate builds the command gate over every device's adapter.
func (g *Gateway) openGate() (*command.Gate, error) {
	cfg := g.cfg
	cc := command.Config{
		GatewayID: cfg.Gateway.ID,
		Targets:   map[string]adapters.Writable{},
		NonceFile: filepath.Join(cfg.Gateway.DataDir, "nonces.db"),
		AuditFile: filepath.Join(cfg.Gateway.DataDir, commandLog),
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			return g.broker.Publish(ctx, topic, payload, false, buffer.High)
		},
	}
	cc.Targets = targets(cfg, g.buses)
	if u := cfg.Uplink; u != nil {
		cc.MaxTTL, cc.RatePerMinute = u.Commands.MaxTTL.D(), u.Commands.RatePerMinute
		for i, path := range u.Commands.Signers {
			s, err := command.LoadSigner(path)
			if err != nil {
				return nil, fmt.Errorf("uplink.commands.signers[%d]: %w", i, err)
			}
			cc.Signers = append(cc.Signers, s)
		}
	}
	gate, err := command.Open(cc, g.log)
	if err != nil {
		return nil, fmt.Errorf("command gate: %w", err)
	}
	return gate, nil
}

func brokerConfig(cfg *config.Config) (localbroker.Config, error) {
	lb := cfg.LocalBroker
	out := localbroker.Config{
		Limits: localbroker.Limits{MaxPacket: uint32(lb.Limits.MaxPacket), MaxClients: int64(lb.Limits.MaxClients)},
	}
	if lb.UsersFile != "" {
		users, err := localbroker.LoadUsers(lb.UsersFile)
		if err != nil {
			return out, fmt.Errorf("local_broker.users_file: %w", err)
		}
		out.Users = users
	}
	rules := make([]localbroker.Rule, len(lb.ACL))
	for i, r := range lb.ACL {
		rules[i] = localbroker.Rule{User: r.User, Read: r.Read, Write: r.Write, DenyRead: r.DenyRead, DenyWrite: r.DenyWrite}
	}
	out.ACL = localbroker.NewACL(rules)
	for i, l := range lb.Listeners {
		listener := localbroker.Listener{Name: l.Name, Kind: l.Type, Address: l.Address}
		if l.TLS != nil {
			t, err := serverTLS(l.TLS)
			if err != nil {
				return out, fmt.Errorf("local_broker.listeners[%d].tls: %w", i, err)
			}
			listener.TLS = t
			listener.CertUsers = l.TLS.ClientCAFile != ""
		}
		out.Listeners = append(out.Listeners, listener)
	}
	return out, nil
}

func serverTLS(c *config.ServerTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s: no PEM certificate", c.ClientCAFile)
		}
		t.ClientCAs, t.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return t, nil
}

// modbusTarget is the simonvetter/modbus URL and serial settings of a bus.
func modbusTarget(b config.Bus) (string, modbus.Serial, error) {
	switch b.Type {
	case "modbus-tcp":
		return "tcp://" + b.Address, modbus.Serial{}, nil
	case "modbus-rtu-over-tcp":
		return "rtuovertcp://" + b.Address, modbus.Serial{}, nil
	case "modbus-rtu":
		return "rtu://" + b.Port, modbus.Serial{Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits}, nil
	}
	return "", modbus.Serial{}, fmt.Errorf("bus %q is %s, not Modbus", b.Name, b.Type)
}

func newBus(b config.Bus, all []config.Device, log *slog.Logger) (*modbus.Bus, error) {
	url, serial, err := modbusTarget(b)
	if err != nil {
		return nil, err
	}
	var devices []modbus.Device
	for _, d := range all {
		if d.Bus != b.Name {
			continue
		}
		md := modbus.Device{Name: d.Name, Unit: d.UnitID(), Poll: d.Poll.D(), MaxRegisters: uint16(d.MaxRegisters), MaxGap: uint16(d.MaxGap)}
		for _, p := range d.Points {
			table, _ := modbus.ParseTable(p.Table) // validated by config
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
	return modbus.NewBus(modbus.BusConfig{
		Name: b.Name, URL: url, Timeout: b.Timeout.D(), Pause: b.Pause.D(), Retries: *b.Retries,
		Serial: serial,
	}, devices, log)
}

// newBuses builds one adapter per bus; the privacy key is loaded (or
// created) the first time a serial-line bus needs it.
func (g *Gateway) newBuses(cfg *config.Config) (map[string]adapters.Adapter, error) {
	buses := map[string]adapters.Adapter{}
	for _, b := range cfg.Buses {
		var bus adapters.Adapter
		var err error
		if b.Type == "serial-line" {
			if g.key == nil {
				if g.key, err = privacy.LoadOrCreateKey(cfg.Privacy.KeyFile); err != nil {
					return nil, fmt.Errorf("privacy.key_file: %w", err)
				}
			}
			bus, err = newSerialLine(b, cfg.Devices, g.key, g.log)
		} else {
			bus, err = newBus(b, cfg.Devices, g.log)
		}
		if err != nil {
			return nil, fmt.Errorf("bus %q: %w", b.Name, err)
		}
		buses[b.Name] = bus
	}
	return buses, nil
}

// targets maps each device to its bus's adapter, for the command gate.
func targets(cfg *config.Config, buses map[string]adapters.Adapter) map[string]adapters.Writable {
	t := map[string]adapters.Writable{}
	for _, d := range cfg.Devices {
		if w, ok := buses[d.Bus].(adapters.Writable); ok {
			t[d.Name] = w
		}
	}
	return t
}

// newSerialLine builds a serial-line adapter; patterns were checked by config.
func newSerialLine(b config.Bus, all []config.Device, key *privacy.Key, log *slog.Logger) (*serialline.Line, error) {
	compile := func(expr string) *regexp.Regexp {
		if expr == "" {
			return nil
		}
		return regexp.MustCompile(expr)
	}
	cfg := serialline.Config{
		Name: b.Name, Port: b.Port, Baud: b.Baud, Parity: b.Parity, StopBits: b.StopBits, Key: key,
		Framing: serialline.Framing{Kind: b.Framing, Delimiter: []byte(b.Delimiter), Length: b.FrameLength, LengthBytes: b.LengthBytes, MaxFrame: b.MaxFrame},
	}
	for _, d := range all {
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
		for _, c := range d.Commands {
			params := map[string]serialline.Param{}
			for name, p := range c.Params {
				params[name] = serialline.Param{Enum: p.Enum, Min: p.Min, Max: p.Max, Pattern: compile(p.Pattern)}
			}
			dev.Commands = append(dev.Commands, serialline.Command{
				Name: c.Name, Send: c.Send, Params: params, Critical: c.Critical, UnsignedWrites: c.UnsignedWrites,
				Expect: compile(c.Expect), Timeout: c.Timeout.D(),
			})
		}
		cfg.Devices = append(cfg.Devices, dev)
	}
	return serialline.New(cfg, log)
}

// Plans returns the Modbus request plan of every Modbus bus in cfg, for
// `lintel check --plan`. Nothing is opened.
func Plans(cfg *config.Config) (map[string][]string, error) {
	plans := map[string][]string{}
	for _, b := range cfg.Buses {
		if b.Type == "serial-line" {
			continue
		}
		bus, err := newBus(b, cfg.Devices, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, fmt.Errorf("bus %q: %w", b.Name, err)
		}
		plans[b.Name] = bus.PlanLines()
	}
	return plans, nil
}

// ModbusTarget returns the URL and serial settings of a Modbus bus in cfg,
// for `lintel modbus --bus`.
func ModbusTarget(cfg *config.Config, name string) (string, modbus.Serial, time.Duration, error) {
	for _, b := range cfg.Buses {
		if b.Name != name {
			continue
		}
		url, serial, err := modbusTarget(b)
		return url, serial, b.Timeout.D(), err
	}
	return "", modbus.Serial{}, 0, fmt.Errorf("no bus %q in %s", name, cfg.File)
}
