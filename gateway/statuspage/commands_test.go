package statuspage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCommandLogsNewestFirstWithoutValues(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "commands.log")
	refused := filepath.Join(dir, "commands-refused.log")
	os.WriteFile(ok, []byte(`{"ts":"2026-12-01T04:00:00Z","source":"cloud","id":"a","device":"ahu-1","point":"setpoint","ok":"true","error":"","signer":"ops"}
not json
{"ts":"2026-12-01T04:02:00Z","source":"local","id":"c","device":"ahu-1","point":"fan","ok":"true","error":"","signer":"ops"}
`), 0o600)
	os.WriteFile(refused, []byte(`{"ts":"2026-12-01T04:01:00Z","source":"cloud","id":"b","device":"door","point":"unlock","ok":"false","error":"bad signature"}
`), 0o600)
	got := ReadCommandLogs(2, ok, refused, filepath.Join(dir, "missing.log"))
	if len(got) != 2 || got[0].ID != "c" || got[1].ID != "b" || got[1].OK || got[1].Error != "bad signature" || !got[0].OK {
		t.Fatalf("got %+v, want c (ok) then b (refused)", got)
	}
	// A big log is read from its tail only, skipping the cut first line.
	var b strings.Builder
	for b.Len() < 3*commandLogTail {
		b.WriteString(`{"ts":"2026-12-01T03:00:00Z","source":"cloud","id":"old","device":"d","point":"p","ok":"true"}` + "\n")
	}
	b.WriteString(`{"ts":"2026-12-01T05:00:00Z","source":"cloud","id":"newest","device":"d","point":"p","ok":"true"}` + "\n")
	os.WriteFile(ok, []byte(b.String()), 0o600)
	got = ReadCommandLogs(1, ok)
	if len(got) != 1 || got[0].ID != "newest" {
		t.Fatalf("big log: %+v", got)
	}
}
