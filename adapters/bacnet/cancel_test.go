package bacnet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
)

// A request with a context already cancelled is not sent, and returns the
// context's error even when the device would have answered at once (it
// used to race the answer on loopback).
func TestCancelledRequestSendsNothing(t *testing.T) {
	dev, err := bacnettest.New(7002, "cancel")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	dev.Add(temp, "Temp", 62, float32(21))
	c := newClient(t, bacnet.ClientOptions{Timeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		if _, err := c.ReadProperty(ctx, dev.Addr, temp, bacnet.PropPresentValue, bacnet.NoIndex); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request: %v, want context.Canceled", err)
		}
	}
	if n := dev.Count(bacnet.ServiceReadProperty); n != 0 {
		t.Fatalf("the device received %d requests sent with a cancelled context", n)
	}
}
