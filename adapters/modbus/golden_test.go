package modbus

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/lintel-gw/lintel/adapters"
	"github.com/lintel-gw/lintel/adapters/modbus/modbustest"
)

// goldenCase is testdata/golden/<case>/config.yaml.
type goldenCase struct {
	Unit      uint8                          `yaml:"unit"`
	Registers map[string]map[string][]string `yaml:"registers"` // table → address → values
	Points    []struct {
		Name    string           `yaml:"name"`
		Table   string           `yaml:"table"`
		Address uint16           `yaml:"address"`
		Type    string           `yaml:"type"`
		Order   string           `yaml:"order"`
		Scale   float64          `yaml:"scale"`
		Offset  float64          `yaml:"offset"`
		Bit     *uint8           `yaml:"bit"`
		Length  uint16           `yaml:"length"`
		Labels  map[int64]string `yaml:"labels"`
	} `yaml:"points"`
}

func loadGolden(t *testing.T, dir string) (goldenCase, []Point, map[string]string) {
	t.Helper()
	var gc goldenCase
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalWithOptions(data, &gc, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	var points []Point
	for _, p := range gc.Points {
		table, err1 := ParseTable(p.Table)
		typ, err2 := ParseType(p.Type)
		order, err3 := ParseOrder(p.Order)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("point %s: %v %v %v", p.Name, err1, err2, err3)
		}
		points = append(points, Point{Name: p.Name, Table: table, Address: p.Address, Type: typ, Order: order,
			Scale: p.Scale, Offset: p.Offset, Bit: p.Bit, Length: p.Length, Labels: p.Labels})
	}
	want := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "expected.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Point string          `json:"point"`
			V     json.RawMessage `json:"v"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		want[line.Point] = string(line.V)
	}
	return gc, points, want
}

// preset writes the case's registers into a unit's maps.
func preset(t *testing.T, gc goldenCase, u *modbustest.Unit) {
	t.Helper()
	for table, byAddr := range gc.Registers {
		for a, values := range byAddr {
			addr, err := strconv.ParseUint(a, 0, 16)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range values {
				v, err := strconv.ParseUint(s, 0, 16)
				if err != nil {
					t.Fatal(err)
				}
				at := uint16(addr) + uint16(i)
				switch table {
				case "coils":
					u.Coils[at] = v != 0
				case "discrete":
					u.Discrete[at] = v != 0
				case "holding":
					u.Holding[at] = uint16(v)
				case "input":
					u.Input[at] = uint16(v)
				default:
					t.Fatalf("unknown table %q", table)
				}
			}
		}
	}
}

// TestGolden polls every testdata/golden case over Modbus TCP and over RTU
// and compares each published value with expected.jsonl.
func TestGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/golden/*")
	if len(dirs) == 0 {
		t.Fatal("no golden cases")
	}
	for _, dir := range dirs {
		gc, points, want := loadGolden(t, dir)
		t.Run(filepath.Base(dir)+"/tcp", func(t *testing.T) {
			srv, err := modbustest.NewTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			preset(t, gc, srv.Unit(gc.Unit))
			bus, _ := NewBus(BusConfig{Name: "tcp", URL: "tcp://" + srv.Addr, Timeout: time.Second}, []Device{{Name: "d", Unit: gc.Unit, Poll: time.Hour, Points: points}}, quiet())
			checkGolden(t, bus, want)
		})
		t.Run(filepath.Base(dir)+"/rtu", func(t *testing.T) {
			s := startSlave(t, 0)
			preset(t, gc, s.Unit(gc.Unit))
			bus := rtuBus(t, s, time.Second, Device{Name: "d", Unit: gc.Unit, Poll: time.Hour, Points: points})
			checkGolden(t, bus, want)
		})
	}
}

func checkGolden(t *testing.T, bus *Bus, want map[string]string) {
	t.Helper()
	c := runBus(t, bus)
	for point, v := range want {
		m := c.waitFor(t, func(m adapters.Message) bool { return m.Point == point })
		var got struct {
			V json.RawMessage `json:"v"`
		}
		json.Unmarshal(m.Payload, &got)
		if string(got.V) != v {
			t.Errorf("%s = %s, want %s", point, got.V, v)
		}
	}
}
