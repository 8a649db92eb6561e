package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// maxPending bounds what batchConn holds before a Write blocks: a few TLS
// records' worth.
const maxPending = 64 << 10

// batchConn coalesces the packets paho writes one at a time: Write copies
// into a buffer and returns, and one flusher goroutine writes everything
// that accumulated meanwhile in a single Write of the TLS connection — one
// TLS record and one system call for many PUBLISHes instead of one each.
// Nothing waits for a timer: while the flusher writes, new packets gather.
//
// A PUBLISH that sits in the buffer is not yet sent, and that is all: the
// uplink acks a record only on its PUBACK, which cannot come before the
// packet was written.
type batchConn struct {
	net.Conn
	timeout time.Duration // bounds each flush: a peer that stopped reading fails it

	mu      sync.Mutex
	cond    sync.Cond
	pending []byte
	spare   []byte
	err     error // the first write error; every later Write returns it
	closing bool
	done    chan struct{} // closed when the flusher returned
}

func newBatchConn(c net.Conn, timeout time.Duration) *batchConn {
	b := &batchConn{Conn: c, timeout: timeout, done: make(chan struct{})}
	b.cond.L = &b.mu
	go b.flusher()
	return b
}

// errConnClosed is returned by Write after Close. paho treats errors that
// contain "use of closed network connection" as a local close.
var errConnClosed = errors.New("write: use of closed network connection")

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) >= maxPending && b.err == nil && !b.closing {
		b.cond.Wait() // a flush ends within timeout, with success or an error
	}
	switch {
	case b.err != nil:
		return 0, b.err
	case b.closing:
		return 0, errConnClosed
	}
	b.pending = append(b.pending, p...)
	b.cond.Broadcast()
	return len(p), nil
}

func (b *batchConn) flusher() {
	defer close(b.done)
	for {
		b.mu.Lock()
		for len(b.pending) == 0 && !b.closing && b.err == nil {
			b.cond.Wait()
		}
		if len(b.pending) == 0 || b.err != nil {
			b.mu.Unlock()
			return // closing with nothing left, or failed
		}
		out := b.pending
		b.pending = b.spare[:0]
		b.mu.Unlock()

		err := b.Conn.SetWriteDeadline(time.Now().Add(b.timeout))
		if err == nil {
			_, err = b.Conn.Write(out)
		}

		b.mu.Lock()
		b.spare = out
		if err != nil && b.err == nil {
			b.err = err
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		if err != nil {
			b.Conn.Close() // paho's reader sees it: the connection is lost
			return
		}
	}
}

// closeFlush bounds how long Close tries to write what is pending (a
// DISCONNECT, the offline status) before it closes the connection.
const closeFlush = time.Second

// Close writes what is pending, for at most closeFlush, then closes.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closing = true
	b.cond.Broadcast()
	b.mu.Unlock()
	t := time.NewTimer(closeFlush)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	}
	err := b.Conn.Close() // ends a flush stuck on a peer that stopped reading
	<-b.done
	return err
}

// SetWriteDeadline is ignored: Write does not touch the network, and each
// flush has its own deadline.
func (b *batchConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline applies to reads only, for the same reason.
func (b *batchConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// dialer opens the TLS connection for paho (as paho would: TCP, then the
// TLS handshake within ConnectTimeout) and wraps it in a batchConn.
func (u *Uplink) dialer() paho.OpenConnectionFunc {
	return func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), u.cfg.ConnectTimeout)
		defer cancel()
		cfg := u.cfg.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = uri.Hostname()
		}
		d := tls.Dialer{Config: cfg}
		c, err := d.DialContext(ctx, "tcp", uri.Host)
		if err != nil {
			return nil, err
		}
		return newBatchConn(c, u.cfg.AckTimeout), nil
	}
}

// nopStore is paho's message store doing nothing. paho keeps every QoS 1
// message in its store to re-send after a reconnect; the uplink never
// reconnects a paho client (AutoReconnect off, clean session, a new client
// per session) and re-sends from the buffer instead, so the store would only
// cost a formatted key and two map operations per message.
type nopStore struct{}

func (nopStore) Open()                             {}
func (nopStore) Put(string, packets.ControlPacket) {}
func (nopStore) Get(string) packets.ControlPacket  { return nil }
func (nopStore) All() []string                     { return nil }
func (nopStore) Del(string)                        {}
func (nopStore) Close()                            {}
func (nopStore) Reset()                            {}
