package cloudtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Cutter is a TCP proxy whose connections can be cut, to drop a client's
// connection with messages in flight while the broker keeps running (the
// broker sees the client vanish, as on a lost link).
type Cutter struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// NewCutter listens on 127.0.0.1:0 and forwards every connection to to,
// until the test ends.
func NewCutter(t testing.TB, to string) *Cutter {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cutter{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); c.Cut(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			wg.Go(func() { io.Copy(out, in); out.Close() })
			wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
	return c
}

// Addr is the proxy's host:port.
func (c *Cutter) Addr() string { return c.l.Addr().String() }

// Close stops accepting and cuts what is open: the link is gone for good.
func (c *Cutter) Close() {
	c.l.Close()
	c.Cut()
}

// Cut closes every connection open now; new ones are forwarded again.
func (c *Cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}
