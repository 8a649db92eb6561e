package adapters

import (
	"cmp"
	"math"
	"time"
)

// DefaultMaxInterval is how long a point that does not change goes without
// a reading when its Report sets no MaxInterval.
const DefaultMaxInterval = 5 * time.Minute

// Report is a point's change-of-value rule: a reading is published when it
// moved more than Deadband (any change when Deadband is 0), when its quality
// changed, or MaxInterval after the last published one. Every polling
// adapter applies it the same way, so `report:` means one thing in the
// config whatever the bus.
type Report struct {
	Deadband    float64
	MaxInterval time.Duration
}

// Published is what was last published for one point.
type Published struct {
	Value   any
	Quality string
	At      time.Time
}

// Due reports whether a reading of v with quality q taken at at must be
// published, given the last published one (nil: none yet).
func (r Report) Due(last *Published, v any, q string, at time.Time) bool {
	if last == nil || last.Quality != q || at.Sub(last.At) >= cmp.Or(r.MaxInterval, DefaultMaxInterval) {
		return true
	}
	n, isNum := number(v)
	old, wasNum := number(last.Value)
	if isNum && wasNum {
		diff := math.Abs(n - old)
		if r.Deadband > 0 {
			return diff > r.Deadband
		}
		return diff != 0
	}
	return v != last.Value
}

// number is v as a float64 for deadband comparisons, when v is numeric.
func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}
