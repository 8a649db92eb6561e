package localbroker

import (
	"context"
	"testing"

	"github.com/lintel-gw/lintel/buffer"
)

// TestPublishPriorityReachesTheSpool: Publish's own delivery class becomes
// the buffer's, High to High and Normal to Normal.
func TestPublishPriorityReachesTheSpool(t *testing.T) {
	spool := &fakeSpool{}
	b := startBroker(t, Config{Forward: []string{"lintel/gw1/#"}, Spool: spool})
	ctx := context.Background()
	if err := b.Publish(ctx, "lintel/gw1/a/n", []byte("1"), false, Normal); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "lintel/gw1/a/h", []byte("2"), false, High); err != nil {
		t.Fatal(err)
	}
	spool.mu.Lock()
	defer spool.mu.Unlock()
	if len(spool.enqueued) != 2 || spool.enqueued[0].Priority != buffer.Normal || spool.enqueued[1].Priority != buffer.High {
		t.Fatalf("enqueued %+v; want a Normal then a High record", spool.enqueued)
	}
}
