package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestClockEarlierThanBuildIsReported moves the build floor into the future,
// which is what a Pi without RTC and NTP looks like to the check.
func TestClockEarlierThanBuildIsReported(t *testing.T) {
	saved := releaseFloor
	defer func() { releaseFloor = saved }()
	releaseFloor = time.Now().Add(24 * time.Hour)
	if p := ClockProblem(); !strings.Contains(p, "earlier than this build") {
		t.Fatalf("clock before the build not reported: %q", p)
	}
}
