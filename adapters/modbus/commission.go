package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/lintel-gw/lintel/adapters"
)

// Conn is a direct connection for commissioning (`lintel modbus`): reads,
// writes and scans without a poll schedule. The daemon must not be running
// on the same serial port.
type Conn struct {
	bus *Bus
}

// Dial opens url (tcp://, rtu://, rtuovertcp://) with the serial settings
// for RTU.
func Dial(url string, serial Serial, timeout time.Duration) (*Conn, error) {
	b, err := NewBus(BusConfig{Name: "commissioning", URL: url, Timeout: timeout, Serial: serial}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.connect(1); err != nil {
		return nil, err
	}
	return &Conn{bus: b}, nil
}

// Close closes the connection.
func (c *Conn) Close() { c.bus.closeClient() }

// Read reads one point from unit.
func (c *Conn) Read(unit uint8, p Point) (any, error) {
	values, err := c.bus.read(unit, planRequests([]Point{p}, 0, 0)[0])
	if err != nil {
		return nil, err
	}
	return values(p), nil
}

// Write writes one point of unit: value is JSON, as for commands.
func (c *Conn) Write(unit uint8, p Point, value string) error {
	p.Writable = true
	c.bus.devices = []*deviceState{{Device: Device{Name: "device", Unit: unit, Points: []Point{p}}}}
	return c.bus.Write(context.Background(), adapters.WriteRequest{Device: "device", Point: p.Name, Value: json.RawMessage(value)})
}

// ScanResult is one unit id's answer to the scan.
type ScanResult struct {
	Unit    uint8
	Answer  string // "registers", or the Modbus exception it answered with
	Present bool
}

// Scan asks every unit id in [from, to] for holding register 0 and calls fn
// with those that answer: with data, or with a Modbus exception (the device
// is there but has no register 0). Silence and "gateway target failed to
// respond" mean absent.
func (c *Conn) Scan(ctx context.Context, from, to uint8, fn func(ScanResult)) error {
	probe := Point{Name: "probe", Table: Holding, Address: 0, Type: Uint16}
	for unit := int(from); unit <= int(to); unit++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := c.Read(uint8(unit), probe)
		var mbErr mb.Error
		switch {
		case err == nil:
			fn(ScanResult{Unit: uint8(unit), Answer: "registers", Present: true})
		case errors.As(err, &mbErr) && !errors.Is(err, mb.ErrRequestTimedOut) && !errors.Is(err, mb.ErrGWTargetFailedToRespond) && !errors.Is(err, mb.ErrGWPathUnavailable):
			fn(ScanResult{Unit: uint8(unit), Answer: "exception: " + err.Error(), Present: true})
		case errors.As(err, &mbErr):
			// absent
		default:
			return fmt.Errorf("unit %d: %w", unit, err) // the link itself failed
		}
	}
	return nil
}

// PlanLines describes each device's read requests, for `lintel check --plan`.
func (b *Bus) PlanLines() []string {
	var lines []string
	for _, d := range b.devices {
		lines = append(lines, fmt.Sprintf("%s (unit %d, every %v): %d request(s) for %d point(s)", d.Name, d.Unit, d.Poll, len(d.plan), len(d.Points)))
		for _, r := range d.plan {
			names := make([]string, len(r.points))
			for i, p := range r.points {
				names[i] = p.Name
			}
			lines = append(lines, fmt.Sprintf("  read %s %d+%d: %s", r.table, r.start, r.count, strings.Join(names, ", ")))
		}
	}
	return lines
}
