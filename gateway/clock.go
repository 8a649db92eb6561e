package gateway

import (
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

// releaseFloor is a time the clock cannot be earlier than: the build's VCS
// time when known, else this date. A Raspberry Pi has no real-time clock
// and boots at its last saved time (or 1970) until NTP sets it.
var releaseFloor = func() time.Time {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
}()

// ClockProblem says why the wall clock cannot be trusted, or "" if it can:
// it is earlier than this build, or the kernel reports it unsynchronised.
func ClockProblem() string {
	if now := time.Now(); now.Before(releaseFloor) {
		return "clock reads " + now.UTC().Format(time.RFC3339) + ", earlier than this build: not set yet (no RTC, no NTP)"
	}
	var tx unix.Timex
	if state, err := unix.Adjtimex(&tx); err == nil && state == unix.TIME_ERROR {
		return "the kernel reports the clock unsynchronised (is NTP running?)"
	}
	return ""
}
