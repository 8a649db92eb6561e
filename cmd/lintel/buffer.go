package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
)

func cmdBuffer(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("buffer"))
		return nil
	}
	if len(args) == 0 || args[0] != "stats" {
		fmt.Fprint(stderr, commandHelp("buffer"))
		return exitCode(2)
	}
	fs := newFlags("buffer stats", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	s, at, live, err := gateway.BufferStats(cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			At      time.Time    `json:"at"`
			Running bool         `json:"daemon_running"`
			Buffer  buffer.Stats `json:"buffer"`
		}{at, live, s})
	}
	source := "from the file (no gateway running)"
	if live {
		source = fmt.Sprintf("from the running gateway, as of %s", at.Format(time.RFC3339))
	}
	age := "-"
	if !s.Oldest.IsZero() {
		age = time.Since(s.Oldest).Round(time.Second).String()
	}
	fmt.Fprintf(stdout, "buffer %s\n", source)
	fmt.Fprintf(stdout, "  records      %d (%d high priority)\n", s.Records, s.High)
	fmt.Fprintf(stdout, "  bytes        %d\n", s.Bytes)
	fmt.Fprintf(stdout, "  oldest       %s\n", age)
	fmt.Fprintf(stdout, "  next seq     %d\n", s.NextSeq)
	fmt.Fprintf(stdout, "  drops        full %d, disk full %d, rejected %d, expired %d (since the gateway started)\n", s.Drops.Full, s.Drops.DiskFull, s.Drops.Rejected, s.Drops.Expired)
	if s.Quarantined != "" {
		fmt.Fprintf(stdout, "  QUARANTINED  a bad buffer file was moved to %s\n", s.Quarantined)
	}
	fmt.Fprintf(stdout, "  dead letters %d (refused by the cloud, not retried; %d deleted when the bucket was full)\n", s.DeadLetters, s.Drops.DeadLetters)
	if s.Salvaged > 0 || s.SalvageLost > 0 {
		fmt.Fprintf(stdout, "  salvaged     %d records from the bad file (%d unreadable)\n", s.Salvaged, s.SalvageLost)
	}
	if s.Problem != "" {
		fmt.Fprintf(stdout, "  PROBLEM      %s\n", s.Problem)
	}
	return nil
}
