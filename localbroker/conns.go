package localbroker

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// gate admits network connections to the broker. mochi gives a socket no
// deadline before CONNECT and does not count it against MaxClients, so the
// gate bounds how many connections may be waiting to authenticate (in total
// and per source), gives each one ConnectTimeout to finish the TLS handshake
// and send CONNECT, and tracks every connection so that Close can end them
// all at once.
type gate struct {
	timeout          time.Duration
	maxPending       int
	maxPendingSource int
	refused          atomic.Uint64

	mu        sync.Mutex
	closed    bool
	conns     map[*gatedConn]struct{}
	pending   int            // connections not yet authenticated
	perSource map[string]int // pending connections by source
	unread    int            // connections handed to mochi that it has not read yet
}

func newGate(l Limits) *gate {
	return &gate{timeout: l.ConnectTimeout, maxPending: l.MaxPending, maxPendingSource: l.MaxPendingPerSource,
		conns: map[*gatedConn]struct{}{}, perSource: map[string]int{}}
}

// gatedConn is a connection admitted by the gate.
type gatedConn struct {
	net.Conn
	g        *gate
	source   string    // back-off and cap key: IPv4 address, IPv6 /64, or unix peer uid
	deadline time.Time // for the handshake, CONNECT and the password check
	read     atomic.Bool
	once     sync.Once
	pending  bool // under g.mu
}

// Read marks the connection as taken over by mochi (see Broker.Close).
func (c *gatedConn) Read(p []byte) (int, error) {
	if !c.read.Load() && c.read.CompareAndSwap(false, true) {
		c.g.mu.Lock()
		c.g.unread--
		c.g.mu.Unlock()
	}
	return c.Conn.Read(p)
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.g.mu.Lock()
		defer c.g.mu.Unlock()
		delete(c.g.conns, c)
		c.g.release(c)
	})
	return err
}

// release frees c's pending slot; g.mu must be held.
func (g *gate) release(c *gatedConn) {
	if !c.pending {
		return
	}
	c.pending = false
	g.pending--
	if g.perSource[c.source]--; g.perSource[c.source] <= 0 {
		delete(g.perSource, c.source)
	}
}

// admit registers c, or closes it when the gate is closed or a cap is
// reached.
func (g *gate) admit(c net.Conn) *gatedConn {
	src := connSource(c)
	g.mu.Lock()
	if g.closed || g.pending >= g.maxPending || g.perSource[src] >= g.maxPendingSource {
		closed := g.closed
		g.mu.Unlock()
		if !closed {
			g.refused.Add(1) // before the close, which is what the client sees
		}
		c.Close()
		return nil
	}
	gc := &gatedConn{Conn: c, g: g, source: src, deadline: time.Now().Add(g.timeout), pending: true}
	g.pending++
	g.perSource[src]++
	g.unread++
	g.conns[gc] = struct{}{}
	g.mu.Unlock()
	// Covers the TLS handshake (it reads through this conn) and CONNECT;
	// mochi replaces it with the keepalive deadline once CONNECT is read.
	c.SetDeadline(gc.deadline)
	return gc
}

// authenticated frees c's pending slot.
func (g *gate) authenticated(c *gatedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release(c)
}

// close stops admitting and closes every connection.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*gatedConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// waitHandedOver waits (at most d) until mochi has read from every
// connection it was handed: it registers a connection with its WaitGroup
// before the first read, and that Add must not race with Close's Wait.
func (g *gate) waitHandedOver(d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		g.mu.Lock()
		n := g.unread
		g.mu.Unlock()
		if n <= 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedListener admits accepted connections through its gate.
type gatedListener struct {
	net.Listener
	g *gate
}

// Accept returns the next admitted connection. Refused connections are
// closed here; a temporary accept error (such as running out of file
// descriptors) is retried with a growing pause instead of ending mochi's
// accept loop for good.
func (l *gatedListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.Is(err, net.ErrClosed) || !errors.As(err, &ne) || !ne.Timeout() && !isTemporary(err) {
				return nil, err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			time.Sleep(pause)
			continue
		}
		pause = 0
		if gc := l.g.admit(c); gc != nil {
			return gc, nil
		}
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// gatedOf returns the gated connection under a client's connection, or nil
// (in-process clients are not gated).
func gatedOf(c net.Conn) *gatedConn {
	if w, ok := c.(*wsConn); ok {
		c = w.Conn
	}
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	gc, _ := c.(*gatedConn)
	return gc
}

// connSource is the key a connection is counted and backed off under: the
// peer's uid for a unix socket, the /64 prefix for IPv6, the address for
// IPv4.
func connSource(c net.Conn) string {
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, ok := peerUID(uc); ok {
			return "uid:" + strconv.FormatUint(uint64(uid), 10)
		}
		return "unix"
	}
	return addrSource(c.RemoteAddr().String())
}

// addrSource keys a host:port address by its IPv4 address or IPv6 /64.
func addrSource(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
