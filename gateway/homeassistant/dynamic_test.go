package homeassistant_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lintel-gw/lintel/gateway/homeassistant"
)

// doorSite is a door controller listing door 1 and naming the others from
// frames (door_{door}_open with door \d+).
func doorSite(templates ...homeassistant.Template) homeassistant.Site {
	if templates == nil {
		templates = []homeassistant.Template{{Event: "door", Shape: regexp.MustCompile(`^(?:door_(?:\d+)_open)$`), Kind: homeassistant.Bool}}
	}
	return homeassistant.Site{Prefix: "homeassistant", GatewayID: "gw1", Devices: []homeassistant.Device{
		{Name: "ahu-1", Points: []homeassistant.Point{{Name: "supply_temp", Unit: "°C"}}},
		{Name: "front-door", Model: "serial-line",
			Points:    []homeassistant.Point{{Name: "door_1_open", Kind: homeassistant.Bool}},
			Events:    []homeassistant.Event{{Name: "access", Fields: []string{"door"}}},
			Templates: templates},
	}}
}

// recorder is a PublishFunc keeping every publish in order.
type recorder struct {
	mu   sync.Mutex
	pubs []string // "topic payload"
}

func (r *recorder) publish(_ context.Context, topic string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, topic+" "+string(payload))
	return nil
}

// count returns how many publishes went to topics starting with prefix,
// and how many of them were removals (empty payloads).
func (r *recorder) count(prefix string) (configs, removals int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pubs {
		topic, payload, _ := strings.Cut(p, " ")
		if strings.HasPrefix(topic, prefix) {
			if payload == "" {
				removals++
			} else {
				configs++
			}
		}
	}
	return configs, removals
}

// countingHandler counts warnings.
type countingHandler struct{ warns atomic.Int64 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

const door3 = "homeassistant/binary_sensor/gw1/front-door_door_3_open/config"

func TestObserveAnnouncesAFrameNamedPointOnceWithTheSchema(t *testing.T) {
	b, addr := haBroker(t)
	col := subscribe(t, addr)
	ctx := context.Background()
	d := homeassistant.New(retainedPublish(b), nil)
	d.Observe(ctx, "front-door", "door_3_open") // before any Sync: no site, nothing announced
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	const statics = "homeassistant/binary_sensor/gw1/front-door_door_1_open/config"
	waitFor(t, "the listed door", func() bool { _, ok := col.snapshot()[statics]; return ok })
	if _, ok := col.snapshot()[door3]; ok {
		t.Fatal("door 3 announced before a reading named it")
	}
	for range 5 {
		d.Observe(ctx, "front-door", "door_3_open")
	}
	waitFor(t, "door 3", func() bool { _, ok := col.snapshot()[door3]; return ok })
	cfg := checkConfig(t, door3, col.snapshot()[door3])
	listed := checkConfig(t, statics, col.snapshot()[statics])
	if cfg["state_topic"] != "lintel/gw1/front-door/door_3_open" || cfg["name"] != "door_3_open" {
		t.Errorf("door 3 config = %v", cfg)
	}
	for _, k := range []string{"availability", "availability_mode", "device", "value_template", "payload_on"} {
		if fmt.Sprint(cfg[k]) != fmt.Sprint(listed[k]) {
			t.Errorf("door 3 %s = %v; the listed door has %v", k, cfg[k], listed[k])
		}
	}
	// A later Sync is the marker: the broker delivers in order.
	d.Observe(ctx, "front-door", "door_4_open")
	waitFor(t, "door 4", func() bool {
		_, ok := col.snapshot()["homeassistant/binary_sensor/gw1/front-door_door_4_open/config"]
		return ok
	})
	col.mu.Lock()
	n := 0
	for _, topic := range col.seen {
		if topic == door3 {
			n++
		}
	}
	col.mu.Unlock()
	if n != 1 {
		t.Errorf("door 3 announced %d times; want once", n)
	}
}

// TestObserveAnnouncesOnlyTheTemplateShape: names a template cannot give,
// names that are no valid topic level or Home Assistant object id, points
// the site lists and other devices' names are not announced; a template of
// kind Number or Text gives a sensor, never a switch.
func TestObserveAnnouncesOnlyTheTemplateShape(t *testing.T) {
	r := &recorder{}
	ctx := context.Background()
	d := homeassistant.New(r.publish, nil)
	site := doorSite(
		homeassistant.Template{Event: "door", Shape: regexp.MustCompile(`^(?:door_(?:.+))$`), Kind: homeassistant.Bool},
		homeassistant.Template{Event: "level", Shape: regexp.MustCompile(`^(?:level_(?:\d+))$`), Kind: homeassistant.Number, Unit: "°C"},
		homeassistant.Template{Event: "mode", Shape: regexp.MustCompile(`^(?:mode_(?:\d+))$`), Kind: homeassistant.Text})
	if err := d.Sync(ctx, site); err != nil {
		t.Fatal(err)
	}
	before := len(r.pubs)
	for _, name := range []string{"door_a+b", "door_a/b", "door_$x", "door_a\x00", "door_é", "door_a:b", "door_", "window_3",
		"door_1_open", "access", strings.Repeat("door_", 60)} {
		d.Observe(ctx, "front-door", name)
	}
	d.Observe(ctx, "ahu-1", "door_3")
	d.Observe(ctx, "nobody", "door_3")
	if got := r.pubs[before:]; len(got) != 0 {
		t.Fatalf("announced names outside the shape: %q", got)
	}
	d.Observe(ctx, "front-door", "level_2")
	d.Observe(ctx, "front-door", "mode_2")
	d.Observe(ctx, "front-door", "door_x-y")
	got := slices.Collect(maps.Keys(topicsOf(r.pubs[before:])))
	slices.Sort(got)
	want := []string{
		"homeassistant/binary_sensor/gw1/front-door_door_x-y/config",
		"homeassistant/sensor/gw1/front-door_level_2/config",
		"homeassistant/sensor/gw1/front-door_mode_2/config",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("announced %q; want %q", got, want)
	}
	for _, p := range r.pubs[before:] {
		if strings.Contains(p, "command_topic") {
			t.Errorf("a frame-named point is writable: %s", p)
		}
		if strings.HasPrefix(p, want[1]) && !strings.Contains(p, `"unit_of_measurement":"°C"`) {
			t.Errorf("the level's unit is lost: %s", p)
		}
	}
}

func topicsOf(pubs []string) map[string]bool {
	out := map[string]bool{}
	for _, p := range pubs {
		topic, _, _ := strings.Cut(p, " ")
		out[topic] = true
	}
	return out
}

// TestObserveFloodStopsAtTheCap: 10,000 distinct doors give MaxDynamic
// entities; the others are counted and logged once.
func TestObserveFloodStopsAtTheCap(t *testing.T) {
	r := &recorder{}
	h := &countingHandler{}
	ctx := context.Background()
	d := homeassistant.New(r.publish, slog.New(h))
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	r.pubs = nil // the site's own configs
	const flood = 10000
	for i := range flood {
		d.Observe(ctx, "front-door", fmt.Sprintf("door_%d_open", 1000+i))
	}
	for i := range flood { // again: the announced ones are known, the others counted again
		d.Observe(ctx, "front-door", fmt.Sprintf("door_%d_open", 1000+i))
	}
	prefix := "homeassistant/binary_sensor/gw1/front-door_door_1"
	if configs, _ := r.count(prefix); configs != homeassistant.MaxDynamic {
		t.Errorf("%d doors announced; want the cap %d", configs, homeassistant.MaxDynamic)
	}
	if got, want := d.Overflow(), uint64(2*flood-2*homeassistant.MaxDynamic); got != want {
		t.Errorf("overflow = %d; want %d", got, want)
	}
	if n := h.warns.Load(); n != 1 {
		t.Errorf("%d warnings; want one", n)
	}
	// A reload keeps the cap: no new door gets in.
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	before := len(r.pubs)
	d.Observe(ctx, "front-door", "door_99999_open")
	for _, p := range r.pubs[before:] {
		t.Errorf("announced past the cap after a Sync: %s", p)
	}
	if n := h.warns.Load(); n != 1 {
		t.Errorf("%d warnings after the Sync; want still one", n)
	}
}

// TestSyncKeepsFrameNamedPointsWhileTheirTemplateStays: a Sync with the
// same template republishes door 3 (never empties it); one without the
// template, or where the site lists door 3 itself, removes the frame-named
// entity; Clear removes it and Observe then announces nothing.
func TestSyncKeepsFrameNamedPointsWhileTheirTemplateStays(t *testing.T) {
	r := &recorder{}
	ctx := context.Background()
	d := homeassistant.New(r.publish, nil)
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	d.Observe(ctx, "front-door", "door_3_open")
	d.Observe(ctx, "front-door", "door_4_open")
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	if configs, removals := r.count(door3); configs != 2 || removals != 0 {
		t.Fatalf("door 3 after a Sync keeping its template: %d configs, %d removals; want 2, 0", configs, removals)
	}

	// Door 3 listed as a text point: the binary_sensor goes, a sensor comes.
	listed := doorSite()
	listed.Devices[1].Points = append(listed.Devices[1].Points, homeassistant.Point{Name: "door_3_open", Kind: homeassistant.Text})
	if err := d.Sync(ctx, listed); err != nil {
		t.Fatal(err)
	}
	if _, removals := r.count(door3); removals != 1 {
		t.Fatalf("door 3 listed by the site: its frame-named entity was removed %d times; want once", removals)
	}
	door4 := "homeassistant/binary_sensor/gw1/front-door_door_4_open/config"
	if configs, removals := r.count(door4); configs != 3 || removals != 0 {
		t.Fatalf("door 4: %d configs, %d removals; want 3, 0", configs, removals)
	}

	// The template gone: door 4 goes, and is not announced again.
	gone := doorSite()
	gone.Devices[1].Templates = nil
	if err := d.Sync(ctx, gone); err != nil {
		t.Fatal(err)
	}
	d.Observe(ctx, "front-door", "door_4_open")
	if configs, removals := r.count(door4); configs != 3 || removals != 1 {
		t.Fatalf("door 4 after its template went: %d configs, %d removals; want 3, 1", configs, removals)
	}

	// Back, then home_assistant off.
	if err := d.Sync(ctx, doorSite()); err != nil {
		t.Fatal(err)
	}
	d.Observe(ctx, "front-door", "door_4_open")
	if err := d.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	d.Observe(ctx, "front-door", "door_5_open")
	if configs, removals := r.count(door4); configs != 4 || removals != 2 {
		t.Fatalf("door 4 after Clear: %d configs, %d removals; want 4, 2", configs, removals)
	}
	if configs, _ := r.count("homeassistant/binary_sensor/gw1/front-door_door_5_open/config"); configs != 0 {
		t.Fatal("announced after Clear")
	}
}

// BenchmarkObserve is the cost Observe adds to every reading: a point of
// a device without templates, and a frame-named point already announced.
func BenchmarkObserve(b *testing.B) {
	ctx := context.Background()
	d := homeassistant.New((&recorder{}).publish, nil)
	if err := d.Sync(ctx, doorSite()); err != nil {
		b.Fatal(err)
	}
	d.Observe(ctx, "front-door", "door_3_open")
	b.Run("no-templates", func(b *testing.B) {
		for b.Loop() {
			d.Observe(ctx, "ahu-1", "supply_temp")
		}
	})
	b.Run("announced", func(b *testing.B) {
		for b.Loop() {
			d.Observe(ctx, "front-door", "door_3_open")
		}
	})
	b.Run("over-the-cap", func(b *testing.B) {
		for i := range homeassistant.MaxDynamic {
			d.Observe(ctx, "front-door", fmt.Sprintf("door_%d_open", 1000+i))
		}
		for b.Loop() {
			d.Observe(ctx, "front-door", "door_99999_open")
		}
	})
}
