package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"

	"github.com/lintel-gw/lintel/gateway/audit"
	"github.com/lintel-gw/lintel/gateway/config"
)

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	who := fs.String("user", "", "the service user the daemon runs as, by name or uid (default: the current user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	uid := os.Geteuid()
	if *who != "" {
		u, err := user.Lookup(*who)
		if err != nil {
			if u, err = user.LookupId(*who); err != nil {
				return fmt.Errorf("--user %s: %w", *who, err)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	cfg, problems, err := config.LoadForAudit(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(1)
	}
	findings := audit.Run(cfg, problems, audit.Options{ServiceUID: uid})
	if *asJSON {
		json.NewEncoder(stdout).Encode(findings)
	} else {
		printFindings(stdout, findings, false)
	}
	if len(audit.Failed(findings)) > 0 {
		return exitCode(1)
	}
	return nil
}

// printFindings writes one line per finding (and its fix), then a summary.
func printFindings(w io.Writer, findings []audit.Finding, onlyProblems bool) {
	count := map[audit.Status]int{}
	for _, f := range findings {
		count[f.Status]++
		if onlyProblems && f.Status == audit.Pass {
			continue
		}
		fmt.Fprintf(w, "%s  %-13s %s\n", f.Status, f.Check, f.Reason)
		if f.Fix != "" && f.Status != audit.Pass {
			fmt.Fprintf(w, "      %-13s fix: %s\n", "", f.Fix)
		}
	}
	fmt.Fprintf(w, "audit: %d FAIL, %d WARN, %d PASS\n", count[audit.Fail], count[audit.Warn], count[audit.Pass])
}
