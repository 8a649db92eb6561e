package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

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
		if f == "nfpm.yaml" { // packaging, checked by TestPackagingFiles
			continue
		}
		if _, err := config.Load(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
}

// TestNoUnsignedDoorWrites: no shipped config or profile lets a door, lock,
// alarm or relay be written without a signature.
func TestNoUnsignedDoorWrites(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f == "nfpm.yaml" {
			continue
		}
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, u := range cfg.UnsignedTargets() {
			if u.DoorLike != "" {
				t.Errorf("%s: %s %s/%s is unsigned and %s", f, u.Kind, u.Device, u.Name, u.DoorLike)
			}
		}
	}
	profiles, _ := filepath.Glob("profiles/*.yaml")
	for _, f := range profiles {
		p, ps := config.LoadProfile(f)
		if len(ps) > 0 {
			t.Fatalf("%s: %v", f, ps)
		}
		cfg := config.Config{Devices: []config.Device{{Name: "device", Points: p.Points}}}
		for _, u := range cfg.UnsignedTargets() {
			if u.DoorLike != "" {
				t.Errorf("%s: point %s is unsigned and %s", f, u.Name, u.DoorLike)
			}
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

// TestSystemdUnitIsHardened parses lintel.service and checks the settings
// the operations guide promises (systemd-analyze verify runs in CI).
func TestSystemdUnitIsHardened(t *testing.T) {
	data, err := os.ReadFile("lintel.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("lintel.service:%d: not key=value in a section: %q", n+1, line)
			}
			settings[k] = append(settings[k], v)
		}
	}
	for k, want := range map[string]string{
		"User": "lintel", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "SupplementaryGroups": "dialout",
		"StateDirectory": "lintel", "Restart": "on-failure", "CapabilityBoundingSet": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RuntimeDirectory":        "lintel", "ProcSubset": "pid",
	} {
		if got := settings[k]; len(got) == 0 || got[len(got)-1] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestPackagingFiles parses the nfpm config and syntax-checks the Debian
// maintainer scripts; every file it installs must exist.
func TestPackagingFiles(t *testing.T) {
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contents []struct {
			Src string `yaml:"src"`
			Dst string `yaml:"dst"`
		} `yaml:"contents"`
		Scripts map[string]string `yaml:"scripts"`
	}
	if err := yaml.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, c := range pkg.Contents {
		if c.Src != "" && c.Src != "./dist/lintel" {
			if _, err := os.Stat(filepath.Join("..", c.Src)); err != nil {
				t.Errorf("packaged file %s: %v", c.Src, err)
			}
		}
	}
	if len(pkg.Scripts) != 3 {
		t.Fatalf("scripts %v", pkg.Scripts)
	}
	for _, script := range pkg.Scripts {
		if out, err := exec.Command("sh", "-n", filepath.Join("..", script)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v %s", script, err, out)
		}
	}
}

func TestDemoIsEmbedded(t *testing.T) {
	onDisk, err := os.ReadFile("demo.yaml")
	if err != nil || string(onDisk) != string(Demo) || !strings.Contains(string(Demo), "demo-gw") {
		t.Fatal("embedded demo.yaml differs from the file")
	}
}
