package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// bigConfig is a valid config with n Modbus points spread over devices of
// 100 points, each point with a duration (report.max_interval), so that
// every point exercises the Duration decoding path.
func bigConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("gateway: {id: gw1}\n")
	b.WriteString("buses:\n  - {name: plant, type: modbus-tcp, address: 10.0.5.20:502, timeout: 1s}\n")
	b.WriteString("devices:\n")
	for i := range n {
		if i%100 == 0 {
			fmt.Fprintf(&b, "  - name: dev-%d\n    bus: plant\n    unit: %d\n    poll: 5s\n    points:\n", i/100, 1+i/100%247)
		}
		fmt.Fprintf(&b, "      - {name: p%d, table: holding, address: %d, type: uint16, report: {deadband: 0.5, max_interval: 5m}}\n", i, i%100)
	}
	b.WriteString("buffer: {max_bytes: 64MiB, commit_interval: 200ms}\n")
	return []byte(b.String())
}

// BenchmarkLoad measures Parse at growing sizes: the time per op should grow
// linearly with the number of points (goccy/go-yaml's UnmarshalText path was
// quadratic).
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		data := bigConfig(n)
		b.Run(fmt.Sprintf("points=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse(data, "big.yaml"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// allocatedBytes is what one Parse of data allocates.
func allocatedBytes(t *testing.T, data []byte) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Parse(data, "big.yaml"); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLoadGrowsLinearly guards against a quadratic decode path coming back
// (goccy/go-yaml re-formats the whole file for every UnmarshalText value).
// It compares bytes allocated, not time, so it is deterministic: doubling
// the points must not much more than double them.
func TestLoadGrowsLinearly(t *testing.T) {
	small, large := allocatedBytes(t, bigConfig(300)), allocatedBytes(t, bigConfig(600))
	if ratio := float64(large) / float64(small); ratio > 2.6 {
		t.Fatalf("600 points allocate %.1f× what 300 do (%d vs %d bytes); want about 2×", ratio, large, small)
	}
}

func TestBadDurationDeepInBigFileHasLine(t *testing.T) {
	data := bigConfig(2000)
	lines := strings.Split(string(data), "\n")
	// Line 1500 (1-based) is a point line; break its duration.
	n := 1500
	if !strings.Contains(lines[n-1], "max_interval: 5m") {
		t.Fatalf("line %d is %q, not a point", n, lines[n-1])
	}
	lines[n-1] = strings.Replace(lines[n-1], "max_interval: 5m", "max_interval: 5 minutes", 1)
	_, err := Parse([]byte(strings.Join(lines, "\n")), "big.yaml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	// 4 header lines, then per device 5 lines and 100 point lines.
	dev := (n - 5) / 105
	pt := n - 5 - dev*105 - 5
	want := fmt.Sprintf(`big.yaml:%d: devices[%d].points[%d].report.max_interval: invalid duration "5 minutes"`, n, dev, pt)
	if !strings.HasPrefix(ps.Error(), want) {
		t.Fatalf("got  %s\nwant %s…", ps.Error(), want)
	}
}
