package adapters

import (
	"testing"
	"time"
)

func TestReportDue(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	last := &Published{Value: 21.0, Quality: QualityGood, At: t0}
	band := Report{Deadband: 0.5, MaxInterval: time.Minute}
	for _, c := range []struct {
		name string
		r    Report
		last *Published
		v    any
		q    string
		at   time.Duration
		want bool
	}{
		{"first reading", band, nil, 21.0, QualityGood, 0, true},
		{"inside the deadband", band, last, 21.4, QualityGood, time.Second, false},
		{"at the deadband edge", band, last, 21.5, QualityGood, time.Second, false},
		{"beyond the deadband", band, last, 21.6, QualityGood, time.Second, true},
		{"quality changed", band, last, 21.0, QualityBad, time.Second, true},
		{"max interval reached", band, last, 21.0, QualityGood, time.Minute, true},
		{"no deadband: any change", Report{}, last, 21.01, QualityGood, time.Second, true},
		{"no deadband: no change", Report{}, last, 21.0, QualityGood, time.Second, false},
		{"default max interval", Report{}, last, 21.0, QualityGood, DefaultMaxInterval, true},
		{"integers compare as numbers", band, &Published{Value: int64(7), Quality: QualityGood, At: t0}, int64(8), QualityGood, time.Second, true},
		{"strings: equal", band, &Published{Value: "open", Quality: QualityGood, At: t0}, "open", QualityGood, time.Second, false},
		{"strings: changed", band, &Published{Value: "open", Quality: QualityGood, At: t0}, "closed", QualityGood, time.Second, true},
	} {
		if got := c.r.Due(c.last, c.v, c.q, t0.Add(c.at)); got != c.want {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.want)
		}
	}
}
