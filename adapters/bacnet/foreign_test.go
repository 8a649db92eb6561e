package bacnet_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
)

// A bus with a BBMD registers with it as a foreign device when it starts,
// so that devices on other subnets reach it.
func TestBusRegistersWithBBMD(t *testing.T) {
	dev, err := bacnettest.New(7001, "bbmd")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	dev.Add(temp, "Temp", 62, float32(21))
	bus, err := bacnet.New(bacnet.Config{Name: "b", Listen: "127.0.0.1:0", BBMD: dev.Addr.String(), TTL: time.Minute,
		Timeout: 200 * time.Millisecond,
		Devices: []bacnet.Device{{Name: "d", Address: dev.Addr.String(), Instance: 7001, Poll: time.Second,
			Points: []bacnet.Point{{Name: "t", Object: temp}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = bus.Run(ctx, &recorder{}) }()
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 5*time.Second, "a foreign-device registration", func() bool {
		return dev.ForeignRegistrations() > 0 && bus.Stats().ForeignRegistrations > 0
	})
}

func TestConfigRefusesBadBBMD(t *testing.T) {
	err := bacnet.Config{Name: "b", BBMD: "not a host:x:y"}.Validate()
	if err == nil {
		t.Fatal("a bad bbmd address passed validation")
	}
}
