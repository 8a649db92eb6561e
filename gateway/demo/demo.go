package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
	"github.com/lintel-gw/lintel/configs"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo/building"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
	"github.com/lintel-gw/lintel/gateway/uplink/sparkplug"
	"github.com/lintel-gw/lintel/localbroker"
)

// Options tune the demo.
type Options struct {
	// DataDir keeps the buffer and generated files; "" uses a temporary
	// directory that is removed at exit.
	DataDir string
	// Listen is the local broker's address (default 127.0.0.1:0, a free port).
	Listen  string
	Out     io.Writer
	Logger  *slog.Logger
	Version string
	// SummaryEvery is the period of the status line (default 5s).
	SummaryEvery time.Duration
	// Format is the uplink's cloud format: json (default) or sparkplug-b.
	Format string
}

// Env is the loopback world the demo (and the end-to-end tests) run in.
type Env struct {
	Config   *config.Config
	Sim      *building.Building
	Doors    *building.DoorController // nil where pseudo-terminals are unavailable
	AHU      *bacnettest.AHU          // the BACnet/IP controller (device ahu-2)
	Cloud    *cloudtest.Broker
	User     string // read-only local broker user
	Password string
	DataDir  string
	// SigningKey signs critical commands (its .pub is the gateway's signer);
	// Operator is a cloud client certificate for sending them.
	SigningKey string
	Operator   pki.Files
	temp       bool
}

// Prepare starts the simulator and the cloud broker, writes certificates
// and a users file into the data dir, and returns configs/demo.yaml with the
// generated addresses and paths filled in.
func Prepare(opts Options) (env *Env, err error) {
	env = &Env{DataDir: opts.DataDir, User: "viewer"}
	if env.DataDir == "" {
		if env.DataDir, err = os.MkdirTemp("", "lintel-demo-"); err != nil {
			return nil, err
		}
		env.temp = true
	}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	certDir := filepath.Join(env.DataDir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if env.Sim, err = building.Start(logger); err != nil {
		return nil, err
	}
	if env.AHU, err = bacnettest.StartAHU(AHUInstance, 2*time.Second); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA("Lintel demo CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if env.Cloud, err = cloudtest.Start(ca, logger); err != nil {
		return nil, err
	}

	cfg, err := config.Parse(configs.Demo, "configs/demo.yaml")
	if err != nil {
		return nil, err
	}
	client, err := ca.Client(cfg.Gateway.ID, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	files, err := pki.WriteFiles(certDir, "uplink", ca, client)
	if err != nil {
		return nil, err
	}
	operator, err := ca.Client("operator", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if env.Operator, err = pki.WriteFiles(certDir, "operator", ca, operator); err != nil {
		return nil, err
	}
	env.SigningKey = filepath.Join(env.DataDir, "ops.key")
	if _, err := os.Stat(env.SigningKey); err != nil {
		if _, err := command.GenerateKey(strings.TrimSuffix(env.SigningKey, ".key")); err != nil {
			return nil, err
		}
	}
	env.Password = randomPassword()
	users := localbroker.NewUsers()
	if err := users.Set(env.User, []byte(env.Password)); err != nil {
		return nil, err
	}
	usersFile := filepath.Join(env.DataDir, "users")
	if err := users.WriteFile(usersFile); err != nil {
		return nil, err
	}

	cfg.Gateway.DataDir = env.DataDir
	cfg.LocalBroker.UsersFile = usersFile
	if opts.Listen != "" {
		cfg.LocalBroker.Listeners[0].Address = opts.Listen
	}
	cfg.Buses[0].Address = env.Sim.Addr()
	for i := range cfg.Devices {
		if cfg.Devices[i].Bus == "bms" {
			cfg.Devices[i].Address = env.AHU.Addr.String()
		}
	}
	cfg.Privacy.KeyFile = filepath.Join(env.DataDir, "privacy.key")
	if env.Doors, err = building.StartDoorController(env.DataDir); err == nil {
		cfg.Buses[1].Port = env.Doors.Path
	} else {
		logger.Warn("no pseudo-terminal for the simulated door controller; running without it", "err", err)
		cfg.Buses = slices.DeleteFunc(cfg.Buses, func(b config.Bus) bool { return b.Name == "doors" })
		cfg.Devices = slices.DeleteFunc(cfg.Devices, func(d config.Device) bool { return d.Bus == "doors" })
	}
	cfg.Uplink.Broker = env.Cloud.URL()
	cfg.Uplink.TLS = config.ClientTLS{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key}
	cfg.Uplink.Commands.Signers = []string{strings.TrimSuffix(env.SigningKey, ".key") + ".pub"}
	switch opts.Format {
	case "", config.FormatJSON:
	case config.FormatSparkplugB:
		cfg.Uplink.Format = config.FormatSparkplugB
		cfg.Uplink.Sparkplug = &config.Sparkplug{GroupID: "demo", EdgeNodeID: cfg.Gateway.ID}
	default:
		return nil, fmt.Errorf("format %q: want json or sparkplug-b", opts.Format)
	}
	env.Config = cfg
	return env, nil
}

// AHUInstance is the device instance of the demo's BACnet controller
// (ahu-2 in configs/demo.yaml).
const AHUInstance = 2001

// Close stops the simulator and the cloud and removes a temporary data dir.
func (e *Env) Close() {
	if e.Doors != nil {
		e.Doors.Close()
	}
	if e.Cloud != nil {
		e.Cloud.Stop()
	}
	if e.Sim != nil {
		e.Sim.Close()
	}
	if e.AHU != nil {
		e.AHU.Close()
	}
	if e.temp {
		os.RemoveAll(e.DataDir)
	}
}

func cloudPort(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return port
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// stopTimeout bounds the gateway's stop when the demo ends.
const stopTimeout = 10 * time.Second

// Run runs the demo until ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.SummaryEvery <= 0 {
		opts.SummaryEvery = 5 * time.Second
	}
	env, err := Prepare(opts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer env.Close()
	gw, err := gateway.New(env.Config, gateway.Options{Version: opts.Version, Logger: opts.Logger})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	view := newLiveView(opts.Out, "lintel/"+env.Config.Gateway.ID+"/")
	env.Cloud.Watch(view.add)

	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	if env.Doors != nil {
		stopDoors := make(chan struct{})
		var doors sync.WaitGroup
		doors.Go(func() { env.Doors.Activity(stopDoors) })
		defer func() { close(stopDoors); doors.Wait() }()
	}
	local := gw.LocalAddr(env.Config.LocalBroker.Listeners[0].Name)
	host, port, _ := strings.Cut(local, ":")
	where := "a temporary directory, removed on exit"
	if !env.temp {
		where = "kept"
	}
	fmt.Fprintf(opts.Out, `Lintel demo: simulated building ─▶ local broker ─▶ buffer ─▶ mutual-TLS cloud broker
  local broker  %s   user %q, password %q (read-only)
  watch it      mosquitto_sub -h %s -p %s -u %s -P %s -t 'lintel/#' -v
  cloud broker  %s   (requires a client certificate from the demo CA)
  data dir      %s (%s)
  metrics       http://%s/metrics and /healthz
  status page   http://%s/   log in as %q with the password above
  BACnet AHU    device %d at %s (ahu-2); list its objects:
    go run ./cmd/lintel bacnet objects --address %s --instance %d
  unlock door 2 with a signed command through the cloud (in another terminal, while this runs):
    go run ./cmd/lintel sign --key %s --gateway %s --device front-door --point unlock --value '{"door":"2"}' \
      | mosquitto_pub -h 127.0.0.1 -p %s --cafile %s --cert %s --key %s -t lintel/%s/front-door/unlock/set -s
Readings as the cloud receives them (Ctrl-C stops):

`, local, env.User, env.Password, host, port, env.User, env.Password, env.Cloud.URL(), env.DataDir, where, gw.MetricsAddr(), gw.StatusPageAddr(), env.User,
		AHUInstance, env.AHU.Addr, env.AHU.Addr, AHUInstance,
		env.SigningKey, env.Config.Gateway.ID, cloudPort(env.Cloud.Addr()), env.Operator.CA, env.Operator.Cert, env.Operator.Key, env.Config.Gateway.ID)

	tick := time.NewTicker(opts.SummaryEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			view.summary(gw.Stats())
		case err := <-done:
			return err
		case <-ctx.Done():
			bound, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			if err := gw.Shutdown(bound); err != nil {
				return fmt.Errorf("demo: gateway did not stop within %v: %w", stopTimeout, err)
			}
			fmt.Fprintln(opts.Out, "\nstopped cleanly")
			return <-done
		}
	}
}

// liveView prints one line per message the cloud receives.
type liveView struct {
	out    io.Writer
	prefix string

	mu       sync.Mutex
	received int
	seqs     map[uint64]int
	maxSeq   uint64
}

func newLiveView(out io.Writer, prefix string) *liveView {
	return &liveView{out: out, prefix: prefix, seqs: map[uint64]int{}}
}

func (v *liveView) add(m cloudtest.Message) {
	if strings.HasPrefix(m.Topic, sparkplug.Namespace+"/") || strings.HasSuffix(m.Topic, "/$fence") {
		v.addSparkplug(m)
		return
	}
	var p struct {
		Fields map[string]string `json:"fields"`
		V      any               `json:"v"`
		Unit   string            `json:"unit"`
		Seq    uint64            `json:"seq"`
		Online *bool             `json:"online"`
		Error  string            `json:"error"`
		Q      string            `json:"q"`
		Buffd  *float64          `json:"buffered"`
	}
	json.Unmarshal(m.Payload, &p)
	name := strings.TrimPrefix(m.Topic, v.prefix)
	var value string
	switch {
	case p.Online != nil && name == "$status":
		name, value = "gateway", map[bool]string{true: "online", false: "offline"}[*p.Online]
		if p.Buffd != nil {
			value += fmt.Sprintf(" (%v buffered)", *p.Buffd)
		}
	case p.Online != nil:
		value = map[bool]string{true: "online", false: "OFFLINE " + p.Error}[*p.Online]
	case p.Fields != nil:
		for _, k := range slices.Sorted(maps.Keys(p.Fields)) {
			f := p.Fields[k]
			if strings.HasPrefix(f, "p:") && len(f) > 10 {
				f = f[:10] + "…" // a pseudonym: the raw value never left the adapter
			}
			value += k + "=" + f + " "
		}
	case p.V != nil:
		switch x := p.V.(type) {
		case float64:
			digits := 2
			if x == math.Trunc(x) {
				digits = 0
			}
			value = strings.TrimSpace(strconv.FormatFloat(x, 'f', digits, 64) + " " + p.Unit)
		default:
			value = fmt.Sprint(x)
		}
	default:
		value = string(m.Payload)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.received++
	seq := "      "
	if p.Seq > 0 {
		v.seqs[p.Seq]++
		v.maxSeq = max(v.maxSeq, p.Seq)
		seq = fmt.Sprintf("#%-5d", p.Seq)
	}
	fmt.Fprintf(v.out, "%s  %s  %-28s %s\n", m.At.Format("15:04:05.000"), seq, name, value)
}

// addSparkplug prints a Sparkplug B message: its type, seq, device and
// metrics (a birth's metrics with their datatypes). Fences are not shown.
func (v *liveView) addSparkplug(m cloudtest.Message) {
	levels := strings.Split(m.Topic, "/")
	if len(levels) < 4 {
		return // the QoS 1 fence: proof of delivery, nothing to read
	}
	kind, device := levels[2], ""
	if len(levels) > 4 {
		device = levels[4]
	}
	p, err := sparkplug.Unmarshal(m.Payload)
	seq := "      "
	var parts []string
	if err != nil {
		parts = append(parts, "undecodable: "+err.Error())
	} else {
		if p.Seq != nil {
			seq = fmt.Sprintf("#%-5d", *p.Seq)
		}
		birth := strings.HasSuffix(kind, "BIRTH")
		for _, mt := range p.Metrics {
			val := "null"
			if !mt.IsNull {
				val = fmt.Sprint(mt.Value)
			}
			if u, ok := mt.Properties.Get("unit").(string); ok {
				val += " " + u
			}
			if mt.IsHistorical {
				val += " (historical)"
			}
			if birth {
				val += fmt.Sprintf(" [type %d]", mt.Datatype)
			}
			parts = append(parts, mt.Name+"="+val)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.received++
	fmt.Fprintf(v.out, "%s  %s  %-7s %-20s %s\n", m.At.Format("15:04:05.000"), seq, kind, device, strings.Join(parts, ", "))
}

func (v *liveView) summary(s gateway.Stats) {
	v.mu.Lock()
	defer v.mu.Unlock()
	dups := 0
	for _, n := range v.seqs {
		dups += n - 1
	}
	state := "connected"
	if !s.Uplink.Connected {
		state = "DOWN (buffering)"
	}
	fmt.Fprintf(v.out, "── %s  cloud received %d (seq up to %d, %d distinct, %d duplicates) · buffer %d waiting · uplink %s\n",
		time.Now().Format("15:04:05"), v.received, v.maxSeq, len(v.seqs), dups, s.Buffer.Records, state)
}
