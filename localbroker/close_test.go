package localbroker

import (
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestCloseNeverWalksMochisClientTable holds mochi's client table locked
// while the broker closes. mochi's own way of closing a listener's clients
// reads that table with a read lock taken twice, which deadlocks for good
// when a disconnecting client queues for the write lock in between (it hung
// a CI run for 20 minutes). The gate closes every connection itself, so
// Close must finish without touching the table.
func TestCloseNeverWalksMochisClientTable(t *testing.T) {
	b := startBroker(t, Config{Listeners: []Listener{
		{Name: "local", Address: "127.0.0.1:0"},
		{Name: "ws", Address: "127.0.0.1:0", Kind: Websocket},
	}})
	b.srv.Clients.Lock()
	defer b.srv.Clients.Unlock()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if !testwait.Within(10*time.Second, func() bool { return len(closed) == 1 }) {
		t.Fatal("Close waited on mochi's client table")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
