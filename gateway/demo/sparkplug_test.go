package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestDemoSparkplug: `lintel demo --format sparkplug-b` shows the NBIRTH
// (seq 0, bdSeq), DBIRTHs and DDATA of the simulated building arriving at
// the in-process cloud, and stops cleanly.
func TestDemoSparkplug(t *testing.T) {
	out := &testwait.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: t.TempDir(), Out: out, Format: "sparkplug-b", SummaryEvery: time.Hour})
	}()
	if !testwait.Within(20*time.Second, func() bool {
		s := out.String()
		return strings.Contains(s, "NBIRTH") && strings.Contains(s, "DBIRTH") && strings.Contains(s, "DDATA")
	}) {
		cancel()
		<-done
		t.Fatalf("no births and data within 20s:\n%s", out.String())
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
