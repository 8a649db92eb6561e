package configs

import (
	"os"
	"strings"
	"testing"

	"github.com/lintel-gw/lintel/gateway/config"
)

// uncomment turns each commented-out block that follows a comment saying
// "uncomment to use" into YAML, as a user would: the "# " after the block's
// indentation goes, everything else stays (so "#   # x" stays a comment).
func uncomment(text string) (string, int) {
	lines := strings.Split(text, "\n")
	blocks := 0
	for i := 0; i < len(lines); i++ {
		if !strings.Contains(lines[i], "uncomment to use") {
			continue
		}
		blocks++
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " "))]
		for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], indent+"# "); j++ {
			lines[j] = indent + strings.TrimPrefix(lines[j], indent+"# ")
		}
	}
	return strings.Join(lines, "\n"), blocks
}

// TestBACnetExampleParsesUncommented keeps the commented-out BACnet/IP
// example in lintel.example.yaml honest: uncommented, it is a valid config
// with the bus, device and points it describes.
func TestBACnetExampleParsesUncommented(t *testing.T) {
	data, err := os.ReadFile("lintel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text, blocks := uncomment(string(data))
	if blocks < 2 {
		t.Fatalf("found %d commented-out blocks, want the bus and the device", blocks)
	}
	cfg, err := config.Parse([]byte(text), "lintel.example.yaml (uncommented)")
	if err != nil {
		t.Fatalf("uncommented example does not load: %v", err)
	}
	bc, err := cfg.BACnet("bms")
	if err != nil {
		t.Fatal(err)
	}
	if bc.BBMD == "" || len(bc.Devices) != 1 || len(bc.Devices[0].Points) != 3 || bc.Devices[0].Points[2].Priority != 8 {
		t.Errorf("uncommented BACnet example = %+v", bc)
	}
}
