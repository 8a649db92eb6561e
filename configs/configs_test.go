package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lintel-gw/lintel/gateway/config"
)

// TestEveryConfigParses keeps the shipped examples honest: each YAML file in
// this folder must pass `lintel check`.
func TestEveryConfigParses(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if _, err := config.Load(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
}

func TestEveryProfileParses(t *testing.T) {
	files, _ := filepath.Glob("profiles/*.yaml")
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if _, ps := config.LoadProfile(f); len(ps) > 0 {
			t.Errorf("%s:\n%v", f, ps)
		}
	}
}

func TestDemoIsEmbedded(t *testing.T) {
	onDisk, err := os.ReadFile("demo.yaml")
	if err != nil || string(onDisk) != string(Demo) || !strings.Contains(string(Demo), "demo-gw") {
		t.Fatal("embedded demo.yaml differs from the file")
	}
}
