package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/privacy"
)

// toyConfig is the section of a test-only bus type: what its "package"
// owns, like modbus.Config or serialline.Config.
type toyConfig struct {
	name    string
	devices []string
}

// toySection is the toy's part of gateway/config: it reads its section.
func toySection(cfg *config.Config, name string) (toyConfig, error) {
	s := toyConfig{name: name}
	for _, d := range cfg.Devices {
		if d.Bus == name {
			s.devices = append(s.devices, d.Name)
		}
	}
	return s, nil
}

// toyBus publishes one reading per device and stops.
type toyBus struct{ cfg toyConfig }

func newToy(c toyConfig, _ *slog.Logger) (*toyBus, error) {
	if len(c.devices) == 0 {
		return nil, errors.New("no devices")
	}
	return &toyBus{cfg: c}, nil
}

func (t *toyBus) Run(ctx context.Context, pub adapters.Publisher) error {
	for _, d := range t.cfg.devices {
		if err := pub.Publish(ctx, adapters.Message{Device: d, Point: "toy", Payload: []byte(`{"v":1}`)}); err != nil {
			return err
		}
	}
	return nil
}

func (t *toyBus) Write(context.Context, adapters.WriteRequest) error { return adapters.ErrNotWritable }

// TestAddingABusType proves the seam adapters/doc.go describes: a new bus
// type is its own package (here the toy types above) plus one line in the
// table of builders, and buildBuses runs it without knowing it.
func TestAddingABusType(t *testing.T) {
	cfg := &config.Config{
		Buses:   []config.Bus{{Name: "b1", Type: "toy"}},
		Devices: []config.Device{{Name: "d1", Bus: "b1"}, {Name: "d2", Bus: "b1"}},
	}
	types := map[string]busBuilder{
		"toy": fromSection(toySection, newToy), // the one line
	}
	env := busEnv{log: slog.New(slog.DiscardHandler), key: func() (*privacy.Key, error) { return nil, errors.New("no key needed") }}
	buses, err := buildBuses(cfg, types, env)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	pub := adapters.PublisherFunc(func(_ context.Context, m adapters.Message) error {
		got = append(got, m.Device+"/"+m.Point)
		return nil
	})
	if err := buses["b1"].Run(t.Context(), pub); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "d1/toy,d2/toy" {
		t.Fatalf("toy bus published %v; want d1/toy, d2/toy", got)
	}

	// The adapter's own error comes back naming the bus.
	cfg.Devices = nil
	if _, err := buildBuses(cfg, types, env); err == nil || !strings.Contains(err.Error(), `bus "b1": no devices`) {
		t.Fatalf("err = %v; want the toy's own error for bus b1", err)
	}
}

// TestUnknownBusTypeIsRefused: a bus type without a builder is an error,
// never a Modbus bus by default.
func TestUnknownBusTypeIsRefused(t *testing.T) {
	cfg := &config.Config{Buses: []config.Bus{{Name: "b1", Type: "profibus"}}}
	env := busEnv{log: slog.New(slog.DiscardHandler)}
	_, err := buildBuses(cfg, busTypes(), env)
	if err == nil || !strings.Contains(err.Error(), `unknown bus type "profibus"`) {
		t.Fatalf("err = %v; want unknown bus type", err)
	}
}

// TestEveryConfigBusTypeHasABuilder keeps the configuration's list of bus
// types and the gateway's table in step: a type config accepts but the
// gateway cannot build would pass `lintel check` and fail at start.
func TestEveryConfigBusTypeHasABuilder(t *testing.T) {
	types := busTypes()
	for _, typ := range config.BusTypes() {
		if types[typ] == nil {
			t.Errorf("config accepts bus type %q but busTypes has no builder for it", typ)
		}
	}
	if len(types) != len(config.BusTypes()) {
		t.Errorf("busTypes has %d rows, config.BusTypes() %d: %v", len(types), len(config.BusTypes()), fmt.Sprint(config.BusTypes()))
	}
}
