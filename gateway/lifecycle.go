package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/config"
)

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
		{"status_page", reflect.DeepEqual(old.StatusPage, cfg.StatusPage)},
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
	g.syncDiscovery(g.runCtx, cfg)
	g.log.Info("configuration reloaded", "buses", len(buses), "devices", len(cfg.Devices))
	return nil
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
	g.publishStatus(ctx, true)
	g.mu.Lock()
	g.syncDiscovery(ctx, g.cfg)
	g.mu.Unlock()
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	var metricsDone sync.WaitGroup
	if g.metrics != nil {
		metricsDone.Go(func() { g.serveMetrics(metricsCtx, g.metrics) })
	}
	if g.status != nil {
		metricsDone.Go(func() {
			if err := g.status.Serve(metricsCtx, g.statusL); err != nil {
				g.log.Error("status page", "err", err)
			}
		})
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
	g.publishStatus(context.Background(), false) // Home Assistant shows every entity unavailable
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
	if g.statusL != nil {
		g.statusL.Close() // Serve closes it too; this covers a gateway never run
	}
	if g.broker != nil {
		g.closeBroker()
	}
	if g.sparkplug != nil {
		if err := g.sparkplug.Close(); err != nil {
			g.log.Error("closing sparkplug state", "err", err)
		}
	}
	if g.queue != nil {
		if err := g.queue.Close(); err != nil {
			g.log.Error("closing buffer", "err", err)
		}
	}
}
