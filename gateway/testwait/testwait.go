package testwait

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"
)

// Every is how often a condition is polled.
const Every = 5 * time.Millisecond

// Until polls ok until it holds; if timeout passes first it fails t,
// naming what it waited for.
func Until(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	if !Within(timeout, ok) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Within polls ok until it holds (true) or timeout passes (false), for
// callers that decide what a timeout means.
func Within(timeout time.Duration, ok func() bool) bool {
	deadline := time.NewTimer(Scale(timeout))
	defer deadline.Stop()
	tick := time.NewTicker(Every)
	defer tick.Stop()
	for !ok() {
		select {
		case <-deadline.C:
			return ok()
		case <-tick.C:
		}
	}
	return true
}

// Emulated is how much longer deadlines are when the tests run under a CPU
// emulator (CI's armv6 run sets LINTEL_QEMU): there a 1 s latency contract
// measures the emulator, not Lintel, so it is checked on native runs only.
const Emulated = 5

// Scale returns d, or Emulated×d under an emulator.
func Scale(d time.Duration) time.Duration {
	if os.Getenv("LINTEL_QEMU") != "" {
		return Emulated * d
	}
	return d
}

// Buffer is a bytes.Buffer that one goroutine may write (a logger, a child
// process's output) while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
