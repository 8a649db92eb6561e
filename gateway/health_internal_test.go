package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestHealthProblems drives the /healthz judgement with each signal alone.
func TestHealthProblems(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	healthy := healthInput{Uplink: true, Connected: true, CertNotAfter: now.Add(365 * 24 * time.Hour)}
	cases := []struct {
		name string
		set  func(*healthInput)
		want string // "" = healthy
	}{
		{"all well", func(*healthInput) {}, ""},
		{"PUBACK within bound", func(in *healthInput) { in.OldestInflight = pubackOverdue }, ""},
		{"PUBACK overdue", func(in *healthInput) { in.OldestInflight = 7 * time.Second }, "PUBACK overdue: the oldest message in flight has waited 7s"},
		{"uplink down", func(in *healthInput) { in.Connected, in.LastError = false, "connect: refused" }, "uplink not connected: connect: refused"},
		{"dead letters", func(in *healthInput) { in.DeadLetters = 3 }, "3 records in the buffer's dead-letter bucket"},
		{"buffer problem", func(in *healthInput) { in.BufferProblem = "data dir deleted" }, "buffer: data dir deleted"},
		{"commits failing", func(in *healthInput) { in.CommitsFailing, in.CommitFails = true, 4 }, "buffer commits failing (disk full?): the last within 1m0s, 4 since start"},
		{"failed long ago", func(in *healthInput) { in.CommitFails = 4 }, ""},
		{"quarantined", func(in *healthInput) { in.Quarantined = "buffer.db.bad-1" }, "moved to buffer.db.bad-1"},
		{"device offline", func(in *healthInput) { in.Offline = []string{"device m on bus b"} }, "device m on bus b offline"},
		{"certificate", func(in *healthInput) { in.CertNotAfter = now.Add(10 * 24 * time.Hour) }, "uplink certificate expires in 10 days"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := healthy
			tc.set(&in)
			got := healthProblems(in, now)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Fatalf("problems %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Fatalf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}
