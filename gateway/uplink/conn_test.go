package uplink

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// countingConn counts the writes that reach the network; the first blocks
// until release is closed.
type countingConn struct {
	net.Conn
	mu      sync.Mutex
	writes  [][]byte
	release chan struct{}
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	first := len(c.writes) == 0
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	if first {
		<-c.release
	}
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

// TestBatchConnCoalescesInOrder: packets written while a flush is under way
// leave in one write, in order, intact.
func TestBatchConnCoalescesInOrder(t *testing.T) {
	a, peer := net.Pipe()
	defer peer.Close()
	cc := &countingConn{Conn: a, release: make(chan struct{})}
	b := newBatchConn(cc, 5*time.Second)
	got := make(chan []byte)
	go func() { all, _ := io.ReadAll(peer); got <- all }()

	b.Write([]byte("a"))
	testwait.Until(t, "the first flush to start", 5*time.Second, func() bool { return cc.count() == 1 })
	for _, p := range []string{"b", "c", "d"} {
		if _, err := b.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	close(cc.release)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if all := <-got; string(all) != "abcd" {
		t.Fatalf("peer read %q, want abcd", all)
	}
	if cc.count() != 2 || string(cc.writes[1]) != "bcd" {
		t.Fatalf("network writes %q, want [a bcd]", cc.writes)
	}
}

// TestBatchConnFailsOnStuckPeer: a peer that stops reading fails the flush
// within the timeout; later writes return the error and Close is bounded.
func TestBatchConnFailsOnStuckPeer(t *testing.T) {
	a, peer := net.Pipe() // nobody reads peer
	defer peer.Close()
	b := newBatchConn(a, 100*time.Millisecond)
	if _, err := b.Write([]byte("stuck")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	testwait.Until(t, "the flush to fail", 5*time.Second, func() bool {
		_, err := b.Write([]byte("x"))
		return err != nil
	})
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > 2*closeFlush {
		t.Fatalf("Close took %v", d)
	}
}
