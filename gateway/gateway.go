package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/homeassistant"
	"github.com/lintel-gw/lintel/gateway/privacy"
	"github.com/lintel-gw/lintel/gateway/statuspage"
	"github.com/lintel-gw/lintel/gateway/uplink"
	"github.com/lintel-gw/lintel/gateway/uplink/sparkplug"
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
	// sparkplug is the uplink's edge node with format sparkplug-b, else nil.
	sparkplug *sparkplug.Node
	gate      *command.Gate
	pubErrs   atomic.Uint64

	brokerOnce sync.Once // the broker is closed once: in Run's stop order, or by close

	metrics net.Listener // nil when metrics are off
	status  *statuspage.Server
	statusL net.Listener // nil when the status page is off
	key     *privacy.Key // loaded the first time a bus asks for it (busEnv.key), kept for reloads

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

	badTopics atomic.Uint64 // readings refused for a device or point that is not a valid topic level

	version string                                  // Options.Version
	ha      *homeassistant.Discovery                // nil until home_assistant is first on; used under mu
	haLive  atomic.Pointer[homeassistant.Discovery] // ha, for the adapters' publish path (observeReading)
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
	g := &Gateway{cfg: cfg, id: cfg.Gateway.ID, dataDir: cfg.Gateway.DataDir, log: log, buses: map[string]adapters.Adapter{}, stopped: make(chan struct{}), version: opts.Version}
	if err := g.open(cfg, opts); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// commandFilter is where commands arrive: lintel/<gateway>/<device>/<point>/set.
func (g *Gateway) commandFilter() string { return "lintel/" + g.id + "/+/+/set" }

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

// LocalAddr returns the bound address of a local broker listener.
func (g *Gateway) LocalAddr(listener string) string { return g.broker.Addr(listener) }

// Broker returns the local broker, for in-process subscribers.
func (g *Gateway) Broker() *localbroker.Broker { return g.broker }

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
	prio := localbroker.Normal
	if m.High {
		prio = localbroker.High
	}
	err := g.broker.Publish(ctx, topic, m.Payload, m.Retain, prio)
	if err != nil && ctx.Err() == nil {
		if g.pubErrs.Add(1)%1000 == 1 { // the first, then every 1000th
			g.log.Warn("reading not buffered", "topic", topic, "err", err, "total", g.pubErrs.Load())
		}
		return nil
	}
	if err == nil {
		g.observeReading(ctx, m)
	}
	return ctx.Err()
}
