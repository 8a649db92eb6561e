package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/privacy"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/uplink"
	"github.com/lintel-gw/lintel/localbroker"
)

// Options are what the caller adds to a config.
type Options struct {
	Version string
	Logger  *slog.Logger
}

// Gateway is one running Lintel: buffer, local broker, adapters and uplink.
type Gateway struct {
	cfg     *config.Config
	id      string // gateway.id and data_dir, fixed for the process's life
	dataDir string
	log     *slog.Logger
	queue   *buffer.Queue
	broker  *localbroker.Broker
	buses   map[string]adapters.Adapter
	uplink  *uplink.Uplink // nil: buffer only
	gate    *command.Gate
	pubErrs atomic.Uint64

	brokerOnce sync.Once // the broker is closed once: in Run's stop order, or by close

	metrics net.Listener // nil when metrics are off
	key     *privacy.Key // loaded with the first serial-line bus

	mu        sync.Mutex // guards state, runCtx, cancelRun, and the adapters' start and stop (Run, Reload, Shutdown)
	state     state
	runCtx    context.Context
	cancelRun context.CancelFunc
	stopped   chan struct{} // closed when everything New opened is released
	adCancel  context.CancelFunc
	adWG      sync.WaitGroup
	busMu     sync.RWMutex    // guards buses and cfg against readers (metrics, health)
	cmdCtx    context.Context // set by Run before commands can arrive
	cmdSlots  chan struct{}   // bounds local commands in progress

	// cmdMu makes "admit a command" and "stop admitting" atomic, so that
	// once stopCommands returns no new command reaches the gate and cmdWG
	// counts every one that did.
	cmdMu       sync.Mutex
	cmdStopping bool
	cmdWG       sync.WaitGroup
	cmdIgnored  atomic.Uint64 // commands that arrived after shutdown began

	commitFails failWindow // when the buffer's commit failures last rose, for Health

	badTopics atomic.Uint64 // readings refused for a device or point that is not a valid topic level
}

// state is where a Gateway is in its life: New → starting (Run called) →
// running (adapters started) → stopping → stopped.
type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopping
	stateStopped
)

// ErrClosed is returned by Run on a gateway that already ran or was shut
// down: a Gateway runs once.
var ErrClosed = errors.New("gateway closed")

// Stats is a snapshot for status displays.
type Stats struct {
	Buffer        buffer.Stats
	Uplink        uplink.Stats
	PublishErrors uint64
	// InvalidTopics counts adapter messages refused because their device
	// or point is not a valid topic level.
	InvalidTopics uint64
}

// New builds every part from cfg: it opens the buffer, binds the broker's
// listeners and loads keys and certificates, so that a missing file or a
// taken port fails here, before anything runs. On error, whatever was
// opened is closed again (the buffer can be reopened at once) and the
// error names the part that failed.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, id: cfg.Gateway.ID, dataDir: cfg.Gateway.DataDir, log: log, buses: map[string]adapters.Adapter{}, stopped: make(chan struct{})}
	if err := g.open(cfg, opts); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

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

// commandFilter is where commands arrive: lintel/<gateway>/<device>/<point>/set.
func (g *Gateway) commandFilter() string { return "lintel/" + g.id + "/+/+/set" }

// openGate builds the command gate over every device's adapter.
func (g *Gateway) openGate() (*command.Gate, error) {
	cfg := g.cfg
	cc := command.Config{
		GatewayID: cfg.Gateway.ID,
		Targets:   map[string]adapters.Writable{},
		NonceFile: filepath.Join(cfg.Gateway.DataDir, "nonces.db"),
		AuditFile: filepath.Join(cfg.Gateway.DataDir, "commands.log"),
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

// localCommand hands a local client's command to the gate without blocking
// the publisher; at most 8 run at once, beyond that the command is refused
// with a result and an audit entry (rate-limited like every refusal).
func (g *Gateway) localCommand(topic string, payload []byte) {
	payload = bytes.Clone(payload)
	select {
	case g.cmdSlots <- struct{}{}:
	default:
		g.gate.Refuse(g.cmdCtx, "local", topic, payload, command.ReasonBusy)
		return
	}
	g.cmdWG.Go(func() {
		defer func() { <-g.cmdSlots }()
		g.gate.Handle(g.cmdCtx, "local", topic, payload)
	})
}

// admitCommand counts a command in (cmdWG) unless shutdown has begun; then
// the command is dropped unanswered and logged: its result could not leave
// a stopping gateway anyway, and no write may start while the adapters stop.
func (g *Gateway) admitCommand(source, topic string) bool {
	g.cmdMu.Lock()
	defer g.cmdMu.Unlock()
	if g.cmdStopping {
		g.cmdIgnored.Add(1)
		g.log.Warn("command ignored: the gateway is stopping", "source", source, "topic", topic)
		return false
	}
	g.cmdWG.Add(1)
	return true
}

// stopCommands stops admitting commands; those admitted before may finish.
// The gate is stopped too, so a Handle that got past the flag is refused.
func (g *Gateway) stopCommands() {
	g.cmdMu.Lock()
	g.cmdStopping = true
	g.cmdMu.Unlock()
	if g.gate != nil {
		g.gate.Stop()
	}
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

// startAdapters runs every bus under ctx; stopAdapters stops them and waits.
func (g *Gateway) startAdapters(ctx context.Context) {
	actx, cancel := context.WithCancel(ctx)
	g.adCancel = cancel
	pub := adapters.PublisherFunc(g.publish)
	for name, a := range g.currentBuses() {
		g.adWG.Go(func() {
			if err := a.Run(actx, pub); err != nil && !errors.Is(err, context.Canceled) {
				g.log.Error("bus stopped", "bus", name, "err", err)
			}
		})
	}
}

func (g *Gateway) stopAdapters() {
	if g.adCancel != nil {
		g.adCancel()
	}
	g.adWG.Wait()
}

func (g *Gateway) currentBuses() map[string]adapters.Adapter {
	g.busMu.RLock()
	defer g.busMu.RUnlock()
	return g.buses
}

// Reload applies a new configuration's devices, points, users and ACL
// without touching the buffer, the local broker's listeners or the uplink
// session: the adapters are rebuilt and restarted, users and ACL swapped.
// A configuration that changes anything else is refused (that needs a
// restart) and the running one stays as it was; so is one whose adapters or
// users file cannot be built, and any reload while the gateway is not
// running (before Run has started the adapters, or once it stops).
func (g *Gateway) Reload(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != stateRunning {
		return errors.New("reload refused: the gateway is not running")
	}
	old := g.cfg
	var changed []string // in the order of the file's sections
	for _, c := range []struct {
		what string
		same bool
	}{
		{"gateway", reflect.DeepEqual(old.Gateway, cfg.Gateway)},
		{"local_broker.listeners", reflect.DeepEqual(old.LocalBroker.Listeners, cfg.LocalBroker.Listeners)},
		{"local_broker.limits", reflect.DeepEqual(old.LocalBroker.Limits, cfg.LocalBroker.Limits)},
		{"local_broker.users_file (path)", old.LocalBroker.UsersFile == cfg.LocalBroker.UsersFile},
		{"uplink", reflect.DeepEqual(old.Uplink, cfg.Uplink)},
		{"buffer", reflect.DeepEqual(old.Buffer, cfg.Buffer)},
		{"metrics", reflect.DeepEqual(old.Metrics, cfg.Metrics)},
		{"privacy", reflect.DeepEqual(old.Privacy, cfg.Privacy)},
		{"log", reflect.DeepEqual(old.Log, cfg.Log)},
	} {
		if !c.same {
			changed = append(changed, c.what)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("reload refused: %s changed, which needs a restart; the running configuration is unchanged", strings.Join(changed, ", "))
	}
	bcfg, err := brokerConfig(cfg)
	if err != nil {
		return fmt.Errorf("reload refused: %w", err)
	}
	buses, err := g.newBuses(cfg)
	if err != nil {
		return fmt.Errorf("reload refused: %w", err)
	}
	g.broker.SetAuth(bcfg.Users, bcfg.ACL)
	g.stopAdapters()
	g.busMu.Lock()
	g.buses, g.cfg = buses, cfg
	g.busMu.Unlock()
	g.gate.SetTargets(targets(cfg, buses))
	g.startAdapters(g.runCtx)
	g.log.Info("configuration reloaded", "buses", len(buses), "devices", len(cfg.Devices))
	return nil
}

// serialParam converts a command parameter; its pattern was checked by config.
func serialParam(p config.Param) serialline.Param {
	out := serialline.Param{Enum: p.Enum, Min: p.Min, Max: p.Max, Unicode: p.Unicode}
	if p.Pattern != "" {
		out.Pattern = regexp.MustCompile(p.Pattern)
	}
	return out
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
				params[name] = serialParam(p)
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

// MetricsAddr is where /metrics and /healthz are served ("" when off).
func (g *Gateway) MetricsAddr() string {
	if g.metrics == nil {
		return ""
	}
	return g.metrics.Addr().String()
}

// LocalAddr returns the bound address of a local broker listener.
func (g *Gateway) LocalAddr(listener string) string { return g.broker.Addr(listener) }

// Broker returns the local broker, for in-process subscribers.
func (g *Gateway) Broker() *localbroker.Broker { return g.broker }

// Stats returns a snapshot of the gateway's counters.
func (g *Gateway) Stats() Stats {
	s := Stats{Buffer: g.queue.Stats(), PublishErrors: g.pubErrs.Load(), InvalidTopics: g.badTopics.Load()}
	if g.uplink != nil {
		s.Uplink = g.uplink.Stats()
	}
	return s
}

// Run runs until ctx ends or Shutdown is called, then stops in order:
// commands (no new one is admitted; those in progress finish), adapters
// (they finish their transaction), local broker, uplink (bounded drain of
// in-flight PUBACKs), buffer. It returns once everything is released. An
// adapter that fails is logged; the others keep running. Run returns
// ErrClosed on a gateway that already ran or was shut down.
func (g *Gateway) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.state != stateNew {
		g.mu.Unlock()
		return ErrClosed
	}
	g.state = stateStarting
	ctx, g.cancelRun = context.WithCancel(ctx)
	g.runCtx = ctx
	g.mu.Unlock()
	defer func() {
		g.cancelRun()
		g.close()
		g.mu.Lock()
		g.state = stateStopped
		g.mu.Unlock()
		close(g.stopped)
	}()

	g.cmdCtx, g.cmdSlots = ctx, make(chan struct{}, 8)
	if err := g.broker.Start(); err != nil {
		return fmt.Errorf("local broker: %w", err)
	}
	unsubscribe, err := g.broker.Subscribe(g.commandFilter(), func(topic string, payload []byte) {
		if !g.admitCommand("local", topic) {
			return
		}
		defer g.cmdWG.Done()
		g.localCommand(topic, payload)
	})
	if err != nil {
		return fmt.Errorf("local broker: %w", err)
	}
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	var metricsDone sync.WaitGroup
	if g.metrics != nil {
		metricsDone.Go(func() { g.serveMetrics(metricsCtx, g.metrics) })
	}
	defer func() { stopMetrics(); metricsDone.Wait() }()
	if p := ClockProblem(); p != "" {
		g.log.Warn("time stamps cannot be trusted until the clock is set: "+p, "ts_example", time.Now().UTC().Format(time.RFC3339))
	}

	upCtx, stopUplink := context.WithCancel(context.Background())
	var upDone sync.WaitGroup
	if g.uplink != nil {
		upDone.Go(func() {
			if err := g.uplink.Run(upCtx); err != nil {
				g.log.Error("uplink stopped", "err", err)
			}
		})
	}

	g.mu.Lock()
	if ctx.Err() == nil {
		g.state = stateRunning
		g.startAdapters(ctx)
		g.log.Info("gateway running", "id", g.id, "buses", len(g.buses), "uplink", g.uplink != nil) // Reload is accepted from here
	}
	g.mu.Unlock()

	g.writeStats()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			g.writeStats()
			g.commitFails.observe(g.queue.Stats().CommitFails, time.Now(), commitFailWindow) // so a failure between scrapes is dated
		case <-ctx.Done():
			running = false
		}
	}
	g.log.Info("gateway stopping")
	g.mu.Lock()
	g.state = stateStopping // no reload from here
	g.mu.Unlock()
	g.stopCommands()
	unsubscribe()
	g.cmdWG.Wait() // commands in progress finish (their writes see ctx end)
	g.mu.Lock()
	g.stopAdapters()
	g.mu.Unlock()
	g.closeBroker()
	stopUplink()
	upDone.Wait()
	// The buffer file itself is readable again once closed.
	if err := os.Remove(filepath.Join(g.dataDir, statsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		g.log.Warn("cannot remove buffer stats snapshot", "err", err)
	}
	return nil
}

// Running reports whether Run has started the adapters and not yet begun
// to stop: the state in which Reload is accepted.
func (g *Gateway) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == stateRunning
}

// Shutdown stops the gateway like net/http's Server.Shutdown: commands are
// refused at once, then Run's stop order runs, and Shutdown waits for it
// until ctx ends. It returns ctx.Err() if ctx ends first (the stop goes on
// in the background; Run returns when it is done). A gateway that was never
// run is closed here. Calling it again, or after Run returned, is harmless.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopCommands()
	g.mu.Lock()
	switch g.state {
	case stateNew:
		g.state = stateStopped
		g.mu.Unlock()
		g.close()
		close(g.stopped)
		return nil
	case stateStarting, stateRunning:
		g.cancelRun()
	}
	g.mu.Unlock()
	if ctx.Err() != nil { // an expired bound must not race a stop that happens to be quick
		return ctx.Err()
	}
	select {
	case <-g.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish is the Publisher handed to adapters. A buffer failure is logged
// and counted, not returned: local delivery happened and the adapter must
// keep polling.
//
// A message whose device or point is not one valid topic level is refused
// here whatever the adapter checked: it could forge another device's topic
// or carry a wildcard the cloud broker answers by dropping the session.
func (g *Gateway) publish(ctx context.Context, m adapters.Message) error {
	if err := adapters.ValidMessageTopic(m); err != nil {
		if g.badTopics.Add(1) == 1 { // once: a device can repeat it every frame
			g.log.Error("reading refused: invalid topic level (logged once; see lintel_publish_invalid_topics_total)",
				"device", strconv.Quote(m.Device), "point", strconv.Quote(m.Point), "err", err)
		}
		return nil
	}
	topic := "lintel/" + g.id + "/" + m.Device + "/" + m.Point
	prio := buffer.Normal
	if m.High {
		prio = buffer.High
	}
	err := g.broker.Publish(ctx, topic, m.Payload, m.Retain, prio)
	if err != nil && ctx.Err() == nil {
		if g.pubErrs.Add(1)%1000 == 1 { // the first, then every 1000th
			g.log.Warn("reading not buffered", "topic", topic, "err", err, "total", g.pubErrs.Load())
		}
		return nil
	}
	return ctx.Err()
}

// closeBroker disconnects every local client and closes the listeners, once.
func (g *Gateway) closeBroker() {
	g.brokerOnce.Do(func() {
		if err := g.broker.Close(); err != nil {
			g.log.Warn("closing local broker", "err", err)
		}
	})
}

// close releases what New opened (Run's stop order closed the broker
// already, unless Run failed to start).
func (g *Gateway) close() {
	if g.gate != nil {
		if err := g.gate.Close(); err != nil {
			g.log.Error("closing command gate", "err", err)
		}
	}
	if g.metrics != nil {
		g.metrics.Close()
	}
	if g.broker != nil {
		g.closeBroker()
	}
	if g.queue != nil {
		if err := g.queue.Close(); err != nil {
			g.log.Error("closing buffer", "err", err)
		}
	}
}

// statsFile is where a running gateway leaves a snapshot of the buffer's
// counters for `lintel buffer stats` (the bbolt file is locked while open).
const statsFile = "buffer-stats.json"

// BufferStats returns the buffer counters of the gateway configured by cfg:
// read from the file when no daemon runs, else from the snapshot the daemon
// writes every few seconds. live says which.
func BufferStats(cfg *config.Config) (s buffer.Stats, asOf time.Time, live bool, err error) {
	s, err = buffer.ReadStats(filepath.Join(cfg.Gateway.DataDir, "buffer.db"))
	if !errors.Is(err, buffer.ErrLocked) {
		return s, time.Now(), false, err
	}
	path := filepath.Join(cfg.Gateway.DataDir, statsFile)
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return s, time.Time{}, true, fmt.Errorf("the buffer is in use by a running gateway and its snapshot is unreadable: %w", rerr)
	}
	var snap struct {
		At    time.Time    `json:"at"`
		Stats buffer.Stats `json:"buffer"`
	}
	if err := json.Unmarshal(data, &snap); err != nil {
		return s, time.Time{}, true, fmt.Errorf("%s: %w", path, err)
	}
	return snap.Stats, snap.At, true, nil
}

// writeStats writes the snapshot atomically (mode 0600).
func (g *Gateway) writeStats() {
	data, _ := json.Marshal(struct {
		At    time.Time    `json:"at"`
		Stats buffer.Stats `json:"buffer"`
	}{time.Now(), g.queue.Stats()})
	path := filepath.Join(g.dataDir, statsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		g.log.Warn("cannot write buffer stats snapshot", "err", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		g.log.Warn("cannot write buffer stats snapshot", "err", err)
	}
}
