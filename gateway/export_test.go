package gateway

import (
	"context"

	"github.com/lintel-gw/lintel/adapters"
)

// BeginStop runs the first step of Shutdown only (commands are no longer
// admitted) and leaves everything else running, so that a test can send a
// command into the window in which the adapters still run.
func BeginStop(g *Gateway) { g.stopCommands() }

// IgnoredCommands is how many commands arrived after shutdown began.
func IgnoredCommands(g *Gateway) uint64 { return g.cmdIgnored.Load() }

// Publish is the Publisher the gateway hands its adapters.
func Publish(g *Gateway, m adapters.Message) error { return g.publish(context.Background(), m) }
