package localbroker

import "time"

// Guard is the broker's login back-off (see guard) for other login doors of
// the same gateway, e.g. the status page, so that they slow guessing the
// same way: per source and per user name, doubling after a few failures.
type Guard struct{ g *guard }

// NewGuard returns a Guard whose first back-off is base (default 1s).
func NewGuard(base time.Duration) *Guard { return &Guard{g: newGuard(base)} }

// Blocked reports whether a login by user from source must be refused
// without checking the password.
func (g *Guard) Blocked(source, user string) bool { return g.g.blocked(source, user) }

// Fail counts a failed login by user from source.
func (g *Guard) Fail(source, user string) { g.g.fail(source, user) }

// Succeed records user's successful login from source.
func (g *Guard) Succeed(source, user string) { g.g.succeed(source, user) }
