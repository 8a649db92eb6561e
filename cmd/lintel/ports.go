package main

import (
	"fmt"
	"io"

	"github.com/lintel-gw/lintel/adapters/serialline"
)

func cmdPorts(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ports", stderr)
	byID := fs.String("by-id", "/dev/serial/by-id", "directory of stable port names")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ports, err := serialline.Ports(*byID)
	if err != nil {
		return err
	}
	if len(ports) == 0 {
		fmt.Fprintln(stdout, "no serial ports found")
	}
	for _, p := range ports {
		line := p.Name
		if p.USB {
			line += fmt.Sprintf("  USB %s:%s serial %q %s", p.VID, p.PID, p.SerialNumber, p.Product)
		}
		if p.ByID != "" {
			line += "\n    stable name: " + p.ByID + "  (use this in the config)"
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}
