package localbroker

import (
	"sync"
	"time"
)

// guard slows down password guessing. Failures are counted per source (an
// IPv4 address, an IPv6 /64, or a unix-socket peer uid; see connSource) and
// per user name. After guardFree failures from a source, that source is
// refused without a check for the back-off base (default 1 s), doubling with
// each further failure up to 5 minutes. After guardUserFree failures for a
// user name, from wherever, that name is backed off the same way up to 1
// minute (short, because anyone can trigger it for a name they know).
//
// A user's success clears that user's count, and a source's count only when
// every failure from it was for that same user: one account's login cannot
// wipe the failures another name collected. A count is forgotten once its
// source or user has not failed for the longest back-off.
//
// The table is bounded: when it is full, an entry that is not backing off
// makes room, preferring one that never reached its back-off, then the least
// recently failing; an entry that is backing off is never evicted. Should every entry be backing off, newcomers share one
// overflow entry, which backs off like any other.
type guard struct {
	mu         sync.Mutex
	base       time.Duration
	now        func() time.Time
	maxEntries int
	m          map[string]*failures
}

type failures struct {
	n     int
	until time.Time // backing off until
	last  time.Time // last failure
	user  string    // source entries: the user name of every failure, unless mixed
	mixed bool
}

// backoff is how a kind of entry backs off.
type backoff struct {
	free int
	max  time.Duration
}

const (
	guardFree     = 5
	guardMax      = 5 * time.Minute
	guardUserFree = 10
	guardUserMax  = time.Minute
	guardEntries  = 10_000
	guardOverflow = "overflow"
)

func newGuard(base time.Duration) *guard {
	if base <= 0 {
		base = time.Second
	}
	return &guard{base: base, now: time.Now, maxEntries: guardEntries, m: map[string]*failures{}}
}

func sourceKey(source string) string { return "s:" + source }
func userKey(user string) string     { return "u:" + user }

// blocked reports whether a login by user from source must be refused
// unchecked.
func (g *guard) blocked(source, user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	return g.blockedKey(sourceKey(source), now) || g.blockedKey(userKey(user), now)
}

func (g *guard) blockedKey(key string, now time.Time) bool {
	f, ok := g.m[key]
	if !ok && len(g.m) >= g.maxEntries {
		f, ok = g.m[guardOverflow] // untracked while the table is full
	}
	return ok && now.Before(f.until)
}

// fail counts a failed login by user from source.
func (g *guard) fail(source, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if f := g.entry(sourceKey(source), now, backoff{free: guardFree, max: guardMax}); f != nil {
		if f.n == 0 {
			f.user = user
		} else if f.user != user {
			f.mixed = true
		}
		g.count(f, now, backoff{free: guardFree, max: guardMax})
	}
	if f := g.entry(userKey(user), now, backoff{free: guardUserFree, max: guardUserMax}); f != nil {
		g.count(f, now, backoff{free: guardUserFree, max: guardUserMax})
	}
}

func (g *guard) count(f *failures, now time.Time, b backoff) {
	f.n++
	f.last = now
	if f.n >= b.free {
		f.until = now.Add(min(g.base<<min(f.n-b.free, 20), b.max))
	}
}

// entry returns key's entry, forgetting a stale count, making room when the
// table is full.
func (g *guard) entry(key string, now time.Time, b backoff) *failures {
	if f, ok := g.m[key]; ok {
		if !now.Before(f.until) && now.Sub(f.last) > b.max {
			*f = failures{}
		}
		return f
	}
	if len(g.m) >= g.maxEntries && !g.evict(now) {
		key = guardOverflow
		if f, ok := g.m[key]; ok {
			return f
		}
	}
	f := &failures{}
	g.m[key] = f
	return f
}

// evict removes an entry that is not backing off: one that never reached
// its back-off first, then the least recently failing. It reports false
// when every entry is backing off.
func (g *guard) evict(now time.Time) bool {
	var victim string
	var vf *failures
	for k, f := range g.m {
		if k == guardOverflow || now.Before(f.until) {
			continue
		}
		if vf == nil || f.until.IsZero() && !vf.until.IsZero() ||
			f.until.IsZero() == vf.until.IsZero() && f.last.Before(vf.last) {
			victim, vf = k, f
		}
	}
	if vf == nil {
		return false
	}
	delete(g.m, victim)
	return true
}

// succeed records user's successful login from source.
func (g *guard) succeed(source, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, userKey(user))
	if f, ok := g.m[sourceKey(source)]; ok && !f.mixed && f.user == user {
		delete(g.m, sourceKey(source))
	}
}
