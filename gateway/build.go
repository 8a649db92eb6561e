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
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/bacnet"
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
	bcfg.ForwardExclude = []string{g.commandFilter(), g.statusTopic()}
	if ha := cfg.LocalBroker.HomeAssistant; ha != nil {
		bcfg.ForwardExclude = append(bcfg.ForwardExclude, ha.Prefix+"/#")
	}
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
		onCommand := func(topic string, payload []byte) {
			if !g.admitCommand("cloud", topic) {
				return
			}
			defer g.cmdWG.Done()
			g.gate.Handle(g.cmdCtx, "cloud", topic, payload)
		}
		uc := uplink.Config{
			Broker:          u.Broker,
			TLS:             tlsCfg,
			GatewayID:       cfg.Gateway.ID,
			TopicPrefix:     u.TopicPrefix,
			MaxInflight:     u.MaxInflight,
			AckTimeout:      u.AckTimeout.D(),
			DeadLetterAfter: u.DeadLetterAfter,
			Version:         opts.Version,
			Buffered:        func() uint64 { return g.queue.Stats().Records },
			OnCommand:       onCommand,
		}
		if u.Format == config.FormatSparkplugB {
			if g.sparkplug, err = g.sparkplugNode(cfg, onCommand); err != nil {
				return fmt.Errorf("uplink.sparkplug: %w", err)
			}
			uc.Encoder, uc.Session = g.sparkplug, g.sparkplug
		}
		g.uplink, err = uplink.New(uc, g.queue, log)
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
		NonceFile: filepath.Join(cfg.Gateway.DataDir, "nonces.db"),
		AuditFile: filepath.Join(cfg.Gateway.DataDir, commandLog),
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			return g.broker.Publish(ctx, topic, payload, false, localbroker.High)
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
		Limits: localbroker.Limits{
			MaxPacket: uint32(lb.Limits.MaxPacket), MaxClients: int64(lb.Limits.MaxClients),
			ConnectTimeout: lb.Limits.ConnectTimeout.D(), MaxPending: lb.Limits.MaxPending,
			MaxPendingPerSource: lb.Limits.MaxPendingPerSource, MaxFiltersPerClient: lb.Limits.MaxFiltersPerClient,
			MaxFilters: lb.Limits.MaxFilters, MaxPasswordChecks: lb.Limits.MaxPasswordChecks,
		},
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

// busBuilder turns one configured bus into its adapter; nothing is opened
// or started until the adapter's Run.
type busBuilder func(cfg *config.Config, b config.Bus, env busEnv) (adapters.Adapter, error)

// busEnv is what the gateway lends the buses it builds.
type busEnv struct {
	log *slog.Logger
	// key is the site's privacy key, loaded (or created) the first time a
	// bus asks for it.
	key func() (*privacy.Key, error)
}

// busTypes is every bus type the gateway runs: adding a bus type is its
// adapter package, its section in gateway/config, and one line here. A
// type missing here is refused when the gateway is built, never run as
// another type.
func busTypes() map[string]busBuilder {
	modbusBus := fromSection((*config.Config).Modbus, modbus.New)
	return map[string]busBuilder{
		config.ModbusTCP:        modbusBus,
		config.ModbusRTU:        modbusBus,
		config.ModbusRTUOverTCP: modbusBus,
		config.SerialLine:       serialLineBus,
		config.BACnetIP:         fromSection((*config.Config).BACnet, bacnet.New),
	}
}

// fromSection is the builder of a bus type whose adapter needs nothing
// from the gateway but a logger: section reads the bus's section out of the
// config, newAdapter builds the adapter from it.
func fromSection[S any, A adapters.Adapter](section func(*config.Config, string) (S, error), newAdapter func(S, *slog.Logger) (A, error)) busBuilder {
	return func(cfg *config.Config, b config.Bus, env busEnv) (adapters.Adapter, error) {
		s, err := section(cfg, b.Name)
		if err != nil {
			return nil, err
		}
		return newAdapter(s, env.log)
	}
}

// serialLineBus builds a serial-line adapter, which pseudonymizes with the
// site key.
func serialLineBus(cfg *config.Config, b config.Bus, env busEnv) (adapters.Adapter, error) {
	key, err := env.key()
	if err != nil {
		return nil, err
	}
	s, err := cfg.SerialLine(b.Name, key)
	if err != nil {
		return nil, err
	}
	return serialline.New(s, env.log)
}

// buildBuses builds one adapter per bus of cfg with the builder of its type.
func buildBuses(cfg *config.Config, types map[string]busBuilder, env busEnv) (map[string]adapters.Adapter, error) {
	buses := map[string]adapters.Adapter{}
	for _, b := range cfg.Buses {
		build, ok := types[b.Type]
		if !ok {
			return nil, fmt.Errorf("bus %q: unknown bus type %q", b.Name, b.Type)
		}
		bus, err := build(cfg, b, env)
		if err != nil {
			return nil, fmt.Errorf("bus %q: %w", b.Name, err)
		}
		buses[b.Name] = bus
	}
	return buses, nil
}

// newBuses builds the adapters of cfg; the privacy key is loaded (or
// created) the first time a bus needs it, and kept for reloads.
func (g *Gateway) newBuses(cfg *config.Config) (map[string]adapters.Adapter, error) {
	return buildBuses(cfg, busTypes(), busEnv{log: g.log, key: func() (*privacy.Key, error) {
		if g.key == nil {
			key, err := privacy.LoadOrCreateKey(cfg.Privacy.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("privacy.key_file: %w", err)
			}
			g.key = key
		}
		return g.key, nil
	}})
}

// targets maps each device to its bus's adapter, for the command gate.
func targets(cfg *config.Config, buses map[string]adapters.Adapter) map[string]command.Target {
	t := map[string]command.Target{}
	for _, d := range cfg.Devices {
		if w, ok := buses[d.Bus].(command.Target); ok {
			t[d.Name] = w
		}
	}
	return t
}

// Plans returns the Modbus request plan of every Modbus bus in cfg, for
// `lintel check --plan`. Nothing is opened.
func Plans(cfg *config.Config) (map[string][]string, error) {
	plans := map[string][]string{}
	for _, b := range cfg.Buses {
		if _, _, err := config.ModbusTarget(b); err != nil {
			continue // not Modbus
		}
		s, err := cfg.Modbus(b.Name)
		if err != nil {
			return nil, fmt.Errorf("bus %q: %w", b.Name, err)
		}
		bus, err := modbus.New(s, slog.New(slog.DiscardHandler))
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
		url, serial, err := config.ModbusTarget(b)
		return url, serial, b.Timeout.D(), err
	}
	return "", modbus.Serial{}, 0, fmt.Errorf("no bus %q in %s", name, cfg.File)
}
