package bacnettest_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// The demo controller's config runs end to end: its points arrive with
// units, and a write to the fan command shows in the fan status.
func TestAHURunsEndToEnd(t *testing.T) {
	ahu, err := bacnettest.StartAHU(3001, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ahu.Close()
	cfg := bacnet.Config{Name: "bms", Listen: "127.0.0.1:0", Timeout: testwait.Scale(500 * time.Millisecond),
		Devices: []bacnet.Device{ahu.Config("ahu1", 20*time.Millisecond)}}
	bus, err := bacnet.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[string]adapters.Reading{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bus.Run(ctx, adapters.PublisherFunc(func(_ context.Context, m adapters.Message) error {
			var r adapters.Reading
			if m.Point != adapters.StatusPoint && json.Unmarshal(m.Payload, &r) == nil {
				mu.Lock()
				last[m.Point] = r
				mu.Unlock()
			}
			return nil
		}))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	get := func(p string) (adapters.Reading, bool) {
		mu.Lock()
		defer mu.Unlock()
		r, ok := last[p]
		return r, ok
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		testwait.Until(t, what, 3*time.Second, cond)
	}
	wait("fan running with flow", func() bool {
		fan, ok1 := get("fan_status")
		flow, ok2 := get("supply_flow")
		return ok1 && ok2 && fan.V == true && flow.Unit == "m³/h" && flow.V.(float64) > 500
	})
	if r, _ := get("co2"); r.Unit != "ppm" {
		t.Fatalf("co2 %+v", r)
	}
	if err := bus.Write(ctx, adapters.WriteRequest{Device: "ahu1", Point: "fan_cmd", Value: json.RawMessage(`false`)}); err != nil {
		t.Fatal(err)
	}
	wait("fan stopped", func() bool { r, ok := get("fan_status"); return ok && r.V == false })
}
