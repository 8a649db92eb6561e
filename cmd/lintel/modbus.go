package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/config"
)

func cmdModbus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("modbus"))
		return nil
	}
	if len(args) == 0 || !slices.Contains([]string{"read", "write", "scan"}, args[0]) {
		fmt.Fprint(stderr, commandHelp("modbus"))
		return exitCode(2)
	}
	action := args[0]
	fs := newFlags("modbus "+action, stderr)
	url := fs.String("url", "", "tcp://host:502, rtu:///dev/ttyUSB0 or rtuovertcp://host:port")
	cfgPath := fs.String("config", "", "take the bus from this config (with --bus)")
	busName := fs.String("bus", "", "bus name in the config")
	baud := fs.Int("baud", 9600, "RTU baud rate")
	parity := fs.String("parity", "none", "RTU parity: none, even, odd")
	stopBits := fs.Int("stop-bits", 1, "RTU stop bits")
	timeout := fs.Duration("timeout", time.Second, "request timeout")
	unit := fs.Int("unit", 1, "unit id")
	table := fs.String("table", "holding", "coil, discrete, input, holding")
	address := fs.Int("address", 0, "register or bit address (zero-based)")
	typ := fs.String("type", "uint16", "bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string")
	order := fs.String("order", "ABCD", "ABCD, DCBA, BADC, CDAB")
	length := fs.Int("length", 1, "registers of a string")
	value := fs.String("value", "", "value to write, as JSON (true, 42, 21.5)")
	from := fs.Int("from", 1, "scan: first unit id")
	to := fs.Int("to", 247, "scan: last unit id")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	serial := modbus.Serial{Baud: *baud, Parity: *parity, StopBits: *stopBits}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		if *url, serial, *timeout, err = gateway.ModbusTarget(cfg, *busName); err != nil {
			return err
		}
	}
	if *url == "" {
		return errors.New("modbus: give --url, or --config and --bus")
	}
	conn, err := modbus.Dial(*url, serial, *timeout)
	if err != nil {
		return fmt.Errorf("modbus: %w", err)
	}
	defer conn.Close()
	if action == "scan" {
		found := 0
		err := conn.Scan(ctx, uint8(*from), uint8(*to), func(r modbus.ScanResult) {
			found++
			fmt.Fprintf(stdout, "unit %3d answers (%s)\n", r.Unit, r.Answer)
		})
		fmt.Fprintf(stdout, "%d unit(s) found between %d and %d\n", found, *from, *to)
		return err
	}
	t, err1 := modbus.ParseTable(*table)
	y, err2 := modbus.ParseType(*typ)
	o, err3 := modbus.ParseOrder(*order)
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	p := modbus.Point{Name: "point", Table: t, Address: uint16(*address), Type: y, Order: o, Length: uint16(*length)}
	if action == "write" {
		if err := conn.Write(uint8(*unit), p, *value); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	v, err := conn.Read(uint8(*unit), p)
	if err != nil {
		return err
	}
	out, _ := json.Marshal(v)
	fmt.Fprintf(stdout, "unit %d %s %d (%s %s): %s\n", *unit, *table, *address, *typ, *order, out)
	return nil
}
