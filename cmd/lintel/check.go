package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	plan := fs.Bool("plan", false, "print each device's Modbus read requests")
	sample := fs.String("sample", "", "a captured serial log: warn on values of published fields that look like names or e-mail addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(stderr, "%s: %d problem(s)\n%v\n", *path, len(ps), ps)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return exitCode(1)
	}
	warnings := cfg.Warnings
	if *sample != "" {
		f, err := os.Open(*sample)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitCode(1)
		}
		ws, err := cfg.Sample(f, *sample)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitCode(1)
		}
		warnings = append(warnings, ws...)
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning:", w.Error())
	}
	if *plan {
		plans, err := gateway.Plans(cfg)
		if err != nil {
			return err
		}
		for _, bus := range slices.Sorted(maps.Keys(plans)) {
			fmt.Fprintf(stdout, "bus %s\n", bus)
			for _, l := range plans[bus] {
				fmt.Fprintln(stdout, "  "+l)
			}
		}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
