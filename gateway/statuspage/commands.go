package statuspage

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"slices"
	"time"
)

// commandLogTail is how much of each log file is read: the last commands
// are at its end, and a large log must not cost a page view much.
const commandLogTail = 64 << 10

// ReadCommandLogs returns the newest n entries of the command gate's
// JSON-lines logs (accepted and refused), newest first. The logs hold no
// command values; a missing file or a bad line is skipped.
func ReadCommandLogs(n int, paths ...string) []Command {
	var all []Command
	for _, p := range paths {
		all = append(all, readCommandLog(p)...)
	}
	slices.SortStableFunc(all, func(a, b Command) int { return b.Time.Compare(a.Time) })
	return all[:min(n, len(all))]
}

func readCommandLog(path string) []Command {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	partial := false
	if fi, err := f.Stat(); err == nil && fi.Size() > commandLogTail {
		f.Seek(-commandLogTail, io.SeekEnd)
		partial = true
	}
	var out []Command
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), commandLogTail)
	for sc.Scan() {
		if partial { // the first line read from the middle is cut
			partial = false
			continue
		}
		var e struct {
			TS     string `json:"ts"`
			Source string `json:"source"`
			ID     string `json:"id"`
			Device string `json:"device"`
			Point  string `json:"point"`
			OK     string `json:"ok"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		ts, _ := time.Parse(time.RFC3339Nano, e.TS)
		out = append(out, Command{Time: ts, Source: e.Source, ID: e.ID, Device: e.Device, Point: e.Point, OK: e.OK == "true", Error: e.Error})
	}
	return out
}
