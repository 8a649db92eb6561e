package serialline

import (
	"os"
	"path/filepath"
	"sort"

	"go.bug.st/serial/enumerator"
)

// PortInfo describes a serial port for commissioning (`lintel ports`).
type PortInfo struct {
	Name         string // e.g. /dev/ttyUSB0
	ByID         string // its stable /dev/serial/by-id name, if any
	USB          bool
	VID, PID     string
	SerialNumber string
	Product      string
}

// Ports lists the serial ports with their USB details and stable names from
// byIDDir (normally /dev/serial/by-id).
func Ports(byIDDir string) ([]PortInfo, error) {
	details, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, err
	}
	byID := StableNames(byIDDir)
	var out []PortInfo
	for _, d := range details {
		out = append(out, PortInfo{
			Name: d.Name, ByID: byID[d.Name], USB: d.IsUSB,
			VID: d.VID, PID: d.PID, SerialNumber: d.SerialNumber, Product: d.Product,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// StableNames maps device paths to the links in dir that point at them.
func StableNames(dir string) map[string]string {
	names := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		link := filepath.Join(dir, e.Name())
		if target, err := filepath.EvalSymlinks(link); err == nil {
			names[target] = link
		}
	}
	return names
}
