package modbustest

import (
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"
)

// TCP is a Modbus TCP server on 127.0.0.1 serving units like Slave does.
type TCP struct {
	Addr string
	srv  *mb.ModbusServer

	mu    sync.Mutex
	units map[uint8]*Unit
}

// NewTCP starts a server on a free loopback port.
func NewTCP() (*TCP, error) {
	t := &TCP{units: map[uint8]*Unit{}}
	var err error
	for range 5 {
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return nil, lerr
		}
		addr := l.Addr().String()
		l.Close() // simonvetter/modbus does not expose its listener
		t.srv, err = mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 8, Logger: log.New(io.Discard, "", 0)}, t)
		if err != nil {
			return nil, err
		}
		if err = t.srv.Start(); err == nil {
			t.Addr = addr
			return t, nil
		}
	}
	return nil, fmt.Errorf("modbustest: %w", err)
}

// Close stops the server.
func (t *TCP) Close() { t.srv.Stop() }

// Unit returns unit id's data, creating an empty unit.
func (t *TCP) Unit(id uint8) *Unit {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.units[id]
	if u == nil {
		u = &Unit{Coils: map[uint16]bool{}, Discrete: map[uint16]bool{}, Holding: map[uint16]uint16{}, Input: map[uint16]uint16{}}
		t.units[id] = u
	}
	return u
}

// The mb.RequestHandler methods.

// HandleCoils implements mb.RequestHandler.

func (t *TCP) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	return t.bits(req.UnitId, 1, req.Addr, req.Quantity, req.IsWrite, req.Args)
}

// HandleDiscreteInputs implements mb.RequestHandler.
func (t *TCP) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	return t.bits(req.UnitId, 2, req.Addr, req.Quantity, false, nil)
}

// HandleHoldingRegisters implements mb.RequestHandler.
func (t *TCP) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	return t.regs(req.UnitId, 3, req.Addr, req.Quantity, req.IsWrite, req.Args)
}

// HandleInputRegisters implements mb.RequestHandler.
func (t *TCP) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	return t.regs(req.UnitId, 4, req.Addr, req.Quantity, false, nil)
}

func (t *TCP) bits(unit, fc uint8, addr, qty uint16, write bool, args []bool) ([]bool, error) {
	u := t.Unit(unit)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := u.Coils
	if fc == 2 {
		m = u.Discrete
	}
	if write {
		for i, v := range args {
			m[addr+uint16(i)] = v
		}
		return nil, nil
	}
	out := make([]bool, qty)
	for i := range out {
		out[i] = m[addr+uint16(i)]
	}
	return out, nil
}

func (t *TCP) regs(unit, fc uint8, addr, qty uint16, write bool, args []uint16) ([]uint16, error) {
	u := t.Unit(unit)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := u.Holding
	if fc == 4 {
		m = u.Input
	}
	if write {
		for i, v := range args {
			m[addr+uint16(i)] = v
		}
		return nil, nil
	}
	out := make([]uint16, qty)
	for i := range out {
		out[i] = m[addr+uint16(i)]
	}
	return out, nil
}

// SetHolding sets holding registers from addr on, safely while serving.
func (t *TCP) SetHolding(unit uint8, addr uint16, values ...uint16) {
	u := t.Unit(unit)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, v := range values {
		u.Holding[addr+uint16(i)] = v
	}
}
