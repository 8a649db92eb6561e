package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
	"github.com/lintel-gw/lintel/gateway/config"
)

func startAHU(t *testing.T, instance uint32) *bacnettest.AHU {
	t.Helper()
	ahu, err := bacnettest.StartAHU(instance, time.Hour) // values stay put during the test
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ahu.Close)
	return ahu
}

func TestBACnetDiscoverFindsTheSimulator(t *testing.T) {
	ahu := startAHU(t, 2101)
	addr := ahu.Addr.String()
	out, _, err := run(t, "", "bacnet", "discover", "--listen", "127.0.0.1:0", "--broadcast", addr, "--timeout", "500ms")
	if err != nil || !strings.Contains(out, "2101") || !strings.Contains(out, addr) || !strings.Contains(out, "1 device(s) found") {
		t.Fatalf("discover: %v\n%s", err, out)
	}
	// Through a BBMD (the simulator is one too): registered as a foreign
	// device first, then the Who-Is is distributed by the BBMD.
	out, _, err = run(t, "", "bacnet", "discover", "--listen", "127.0.0.1:0", "--bbmd", addr, "--timeout", "500ms")
	if err != nil || !strings.Contains(out, "2101") || ahu.ForeignRegistrations() == 0 {
		t.Fatalf("discover via BBMD: %v (registrations %d)\n%s", err, ahu.ForeignRegistrations(), out)
	}
	// Outside the instance range asked, the device stays quiet.
	out, _, err = run(t, "", "bacnet", "discover", "--listen", "127.0.0.1:0", "--broadcast", addr, "--timeout", "300ms", "--low", "1", "--high", "2000")
	if err != nil || !strings.Contains(out, "0 device(s) found") {
		t.Fatalf("discover out of range: %v\n%s", err, out)
	}
}

func TestBACnetObjectsPrintsTableAndAPasteableSnippet(t *testing.T) {
	ahu := startAHU(t, 2102)
	out, _, err := run(t, "", "bacnet", "objects", "--listen", "127.0.0.1:0", "--address", ahu.Addr.String(), "--instance", "2102", "--name", "ahu-1", "--bus", "bms")
	if err != nil {
		t.Fatalf("objects: %v\n%s", err, out)
	}
	for _, want := range []string{"analog-input:1", "Supply Air Temperature", "18", "°C", "binary-output:1", "multi-state-value:1", "9 object(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, snippet, ok := strings.Cut(out, "# paste under devices:")
	if !ok {
		t.Fatalf("no snippet:\n%s", out)
	}
	_, snippet, _ = strings.Cut(snippet, "\n")
	// The snippet, pasted under devices of a config with the bus, is valid.
	indented := "  " + strings.ReplaceAll(strings.TrimRight(snippet, "\n"), "\n", "\n  ")
	doc := fmt.Sprintf("gateway: {id: gw}\nbuses:\n  - {name: bms, type: bacnet-ip}\ndevices:\n%s\n", indented)
	cfg, err := config.Parse([]byte(doc), "pasted.yaml")
	if err != nil {
		t.Fatalf("pasted snippet does not load: %v\n%s", err, doc)
	}
	bc, err := cfg.BACnet("bms")
	if err != nil || len(bc.Devices) != 1 || bc.Devices[0].Instance != 2102 || len(bc.Devices[0].Points) != 9 || bc.Devices[0].Address != ahu.Addr.String() {
		t.Fatalf("pasted config = %+v, %v", bc, err)
	}
}

func TestBACnetUsageMistakesExit2(t *testing.T) {
	for _, args := range [][]string{
		{"bacnet"},
		{"bacnet", "walk"},
		{"bacnet", "objects", "--instance", "5"},
		{"bacnet", "objects", "--address", "127.0.0.1:1", "--instance", "5", "--network", "3"},
		{"bacnet", "discover", "--low", "9", "--high", "3"},
	} {
		_, _, err := run(t, "", args...)
		var code exitCode
		if !errors.As(err, &code) || code != 2 {
			t.Errorf("%v: err %v, want exit 2", args, err)
		}
	}
	out, _, err := run(t, "", "bacnet", "--help")
	if err != nil || !strings.Contains(out, "usage: lintel bacnet discover") || !strings.Contains(out, "usage: lintel bacnet objects") {
		t.Errorf("help: %v\n%s", err, out)
	}
}
