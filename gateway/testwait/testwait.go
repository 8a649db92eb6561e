package testwait

import (
	"bytes"
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
	deadline := time.NewTimer(timeout)
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
