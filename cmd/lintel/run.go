package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/audit"
	"github.com/lintel-gw/lintel/gateway/config"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	var overrides listFlag
	fs.Var(&overrides, "override-audit", "start although this audit check fails (repeatable; logged loudly)")
	stopTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "on SIGTERM, exit after this long even if the stop (uplink drain, device transactions) has not finished")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	// From here on a SIGHUP is queued, not fatal (its default action); one
	// that arrives before the gateway runs is refused by Reload and logged.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	findings, refused := startAudit(cfg, overrides, log)
	if len(refused) > 0 {
		printFindings(stderr, findings, true)
		return fmt.Errorf("refusing to start: the security audit failed (%s); fix it, or pass --override-audit %s to start anyway",
			strings.Join(refused, ", "), strings.Join(refused, ","))
	}
	gw, err := gateway.New(cfg, gateway.Options{Version: version(), Logger: log})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()

	// SIGHUP reloads; the goroutine is stopped and waited for before the
	// gateway is shut down, so no reload runs during the stop.
	hupCtx, stopHUP := context.WithCancel(ctx)
	var hupDone sync.WaitGroup
	hupDone.Go(func() {
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				reload(gw, *path, overrides, log)
			}
		}
	})
	stopReloads := func() { stopHUP(); hupDone.Wait() }

	select {
	case err := <-done: // Run failed to start
		stopReloads()
		return err
	case <-ctx.Done():
	}
	stopReloads()
	bound, cancel := context.WithTimeout(context.Background(), *stopTimeout)
	defer cancel()
	if err := gw.Shutdown(bound); err != nil {
		return fmt.Errorf("gateway did not stop within --shutdown-timeout %v: %w", *stopTimeout, err)
	}
	if err := <-done; !errors.Is(err, gateway.ErrClosed) {
		return err
	}
	return nil // stopped before Run got going: a clean stop all the same
}

// startAudit audits cfg for the current user, as `lintel run` does at start
// and on reload. It logs every overridden failure loudly and returns the
// failing checks that were not overridden.
func startAudit(cfg *config.Config, overrides []string, log *slog.Logger) (findings []audit.Finding, refused []string) {
	findings = audit.Run(cfg, nil, audit.Options{ServiceUID: os.Geteuid()})
	for _, id := range audit.Failed(findings) {
		if !slices.Contains(overrides, id) {
			refused = append(refused, id)
			continue
		}
		for _, f := range findings {
			if f.Check == id && f.Status == audit.Fail {
				log.Error("SECURITY AUDIT FAILURE OVERRIDDEN by --override-audit; fix it", "check", id, "reason", f.Reason, "fix", f.Fix)
			}
		}
	}
	return findings, refused
}

// reload applies SIGHUP: the file is checked and audited like at start, and
// refused with the reason (the running configuration stays) if it fails.
func reload(gw *gateway.Gateway, path string, overrides []string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("reload refused: configuration invalid; still running the previous one", "err", err)
		return
	}
	if _, refused := startAudit(cfg, overrides, log); len(refused) > 0 {
		log.Error("reload refused: security audit failed; still running the previous configuration", "checks", strings.Join(refused, ","))
		return
	}
	if err := gw.Reload(cfg); err != nil {
		log.Error(err.Error())
	}
}
