package demo

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemoSparkplug: `lintel demo --format sparkplug-b` shows the NBIRTH
// (seq 0, bdSeq), DBIRTHs and DDATA of the simulated building arriving at
// the in-process cloud, and stops cleanly.
func TestDemoSparkplug(t *testing.T) {
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: t.TempDir(), Out: out, Format: "sparkplug-b", SummaryEvery: time.Hour})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !(strings.Contains(out.String(), "NBIRTH") && strings.Contains(out.String(), "DBIRTH") && strings.Contains(out.String(), "DDATA")) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no births and data within 20s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.Contains(text, "#0      NBIRTH") || !strings.Contains(text, "bdSeq=0") {
		t.Fatalf("NBIRTH line missing seq 0 or bdSeq:\n%s", text)
	}
	if strings.Contains(text, "undecodable") {
		t.Fatalf("undecodable payload:\n%s", text)
	}
	t.Log("\n" + text[:min(len(text), 3000)])
}
