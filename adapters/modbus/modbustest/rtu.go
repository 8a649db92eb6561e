package modbustest

import (
	"encoding/binary"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/creack/pty"
)

// Unit is one slave's data.
type Unit struct {
	Coils, Discrete map[uint16]bool
	Holding, Input  map[uint16]uint16
}

// Slave is an RTU bus with any number of units behind one serial line.
type Slave struct {
	// Path is the serial device the client opens.
	Path string

	master, slave *os.File
	baud          int
	link          string // stable name in front of the pty, if any

	mu        sync.Mutex
	units     map[uint8]*Unit
	silent    map[uint8]bool
	exception map[uint8]byte
	delay     time.Duration
	corrupt   int

	// Counters.
	Transactions atomic.Uint64 // requests answered
	BadFrames    atomic.Uint64 // requests with a wrong CRC or unknown function
	Pipelined    atomic.Uint64 // requests that arrived before the previous answer was sent
	PerUnit      sync.Map      // unit id → *atomic.Uint64 requests received

	done chan struct{}
}

// NewSlave opens a pty. baud > 0 makes every answer arrive when it would on
// a real line (8N1: 10 bits per character): after the request, a
// 3.5-character gap and the response.
func NewSlave(baud int) (*Slave, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, err
	}
	s := &Slave{
		Path: slave.Name(), master: master, slave: slave, baud: baud,
		units: map[uint8]*Unit{}, silent: map[uint8]bool{}, exception: map[uint8]byte{},
		done: make(chan struct{}),
	}
	go s.serve()
	return s, nil
}

// NewSlaveLinked is NewSlave behind a symlink (like a /dev/serial/by-id
// name), so Unplug and Replug can take the adapter away and bring it back.
func NewSlaveLinked(baud int, link string) (*Slave, error) {
	s, err := NewSlave(baud)
	if err != nil {
		return nil, err
	}
	s.link = link
	if err := os.Symlink(s.Path, link); err != nil {
		s.Close()
		return nil, err
	}
	s.Path = link
	return s, nil
}

// Unplug closes the pty and removes the link: the device file is gone.
func (s *Slave) Unplug() {
	os.Remove(s.link)
	s.Close()
}

// Replug attaches a new pty behind the link, keeping the units' data.
func (s *Slave) Replug() error {
	master, slave, err := pty.Open()
	if err != nil {
		return err
	}
	s.master, s.slave, s.done = master, slave, make(chan struct{})
	go s.serve()
	return os.Symlink(slave.Name(), s.link)
}

// Close stops the bus (the client sees the line go away).
func (s *Slave) Close() {
	s.master.Close()
	s.slave.Close()
	<-s.done
}

// Unit returns unit id's data, creating an empty unit.
func (s *Slave) Unit(id uint8) *Unit {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.units[id]
	if u == nil {
		u = &Unit{Coils: map[uint16]bool{}, Discrete: map[uint16]bool{}, Holding: map[uint16]uint16{}, Input: map[uint16]uint16{}}
		s.units[id] = u
	}
	return u
}

// SetHolding sets holding registers from addr on.
func (s *Slave) SetHolding(unit uint8, addr uint16, values ...uint16) {
	u := s.Unit(unit)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range values {
		u.Holding[addr+uint16(i)] = v
	}
}

// Holding reads a holding register.
func (s *Slave) Holding(unit uint8, addr uint16) uint16 {
	u := s.Unit(unit)
	s.mu.Lock()
	defer s.mu.Unlock()
	return u.Holding[addr]
}

// SetSilent makes a unit stop answering (a dead device).
func (s *Slave) SetSilent(unit uint8, silent bool) {
	s.mu.Lock()
	s.silent[unit] = silent
	s.mu.Unlock()
}

// SetException makes a unit answer every request with exception code (0: normal).
func (s *Slave) SetException(unit uint8, code byte) {
	s.mu.Lock()
	s.exception[unit] = code
	s.mu.Unlock()
}

// SetDelay delays every answer (a slow device).
func (s *Slave) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// CorruptNext spoils the CRC of the next n answers.
func (s *Slave) CorruptNext(n int) {
	s.mu.Lock()
	s.corrupt = n
	s.mu.Unlock()
}

func (s *Slave) serve() {
	defer close(s.done)
	var buf []byte
	chunk := make([]byte, 512)
	for {
		n, err := s.master.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
		for {
			size, ok := frameSize(buf)
			if !ok {
				s.BadFrames.Add(1)
				buf = buf[:0] // resync on the next request
				break
			}
			if size == 0 || len(buf) < size {
				break
			}
			frame := buf[:size]
			buf = buf[size:]
			if len(buf) > 0 {
				s.Pipelined.Add(1)
			}
			if binary.LittleEndian.Uint16(frame[size-2:]) != CRC(frame[:size-2]) {
				s.BadFrames.Add(1)
				continue
			}
			s.answer(frame[:size-2])
		}
	}
}

// frameSize returns a request's length from its header (0: need more bytes).
func frameSize(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, true
	}
	switch b[1] {
	case 1, 2, 3, 4, 5, 6:
		return 8, true
	case 15, 16:
		if len(b) < 7 {
			return 0, true
		}
		return 9 + int(b[6]), true
	}
	return 0, false
}

func (s *Slave) answer(req []byte) {
	unit, fc := req[0], req[1]
	counter, _ := s.PerUnit.LoadOrStore(unit, new(atomic.Uint64))
	counter.(*atomic.Uint64).Add(1)
	s.mu.Lock()
	u, known := s.units[unit]
	silent, exc, delay := s.silent[unit], s.exception[unit], s.delay
	corrupt := s.corrupt > 0
	if corrupt {
		s.corrupt--
	}
	var pdu []byte
	if known && !silent {
		if exc != 0 {
			pdu = []byte{fc | 0x80, exc}
		} else {
			pdu = u.handle(req[1:])
		}
	}
	s.mu.Unlock()
	if pdu == nil {
		return // silence: the client times out
	}
	resp := append([]byte{unit}, pdu...)
	crc := CRC(resp)
	if corrupt {
		crc ^= 0xFFFF
	}
	resp = binary.LittleEndian.AppendUint16(resp, crc)
	wait := delay
	if s.baud > 0 {
		// The answer ends after the request, a 3.5-character gap and the
		// response on the wire. The gap after it is the client's to keep
		// (simonvetter/modbus waits t3.5 before its next request).
		bits := (len(req)+2+len(resp))*10 + 35
		wait += time.Duration(bits) * time.Second / time.Duration(s.baud)
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	s.master.Write(resp)
	s.Transactions.Add(1)
}

// handle serves one PDU; callers hold the slave's lock.
func (u *Unit) handle(pdu []byte) []byte {
	fc := pdu[0]
	addr := binary.BigEndian.Uint16(pdu[1:3])
	qty := binary.BigEndian.Uint16(pdu[3:5])
	exception := func(code byte) []byte { return []byte{fc | 0x80, code} }
	switch fc {
	case 1, 2:
		if qty == 0 || qty > 2000 {
			return exception(3)
		}
		bits := u.Coils
		if fc == 2 {
			bits = u.Discrete
		}
		out := make([]byte, (qty+7)/8)
		for i := range qty {
			if bits[addr+i] {
				out[i/8] |= 1 << (i % 8)
			}
		}
		return append([]byte{fc, byte(len(out))}, out...)
	case 3, 4:
		if qty == 0 || qty > 125 {
			return exception(3)
		}
		regs := u.Holding
		if fc == 4 {
			regs = u.Input
		}
		out := []byte{fc, byte(2 * qty)}
		for i := range qty {
			out = binary.BigEndian.AppendUint16(out, regs[addr+i])
		}
		return out
	case 5:
		u.Coils[addr] = qty == 0xFF00
		return pdu[:5]
	case 6:
		u.Holding[addr] = qty
		return pdu[:5]
	case 15:
		for i := range qty {
			u.Coils[addr+i] = pdu[6+i/8]>>(i%8)&1 == 1
		}
		return pdu[:5]
	case 16:
		for i := range qty {
			u.Holding[addr+i] = binary.BigEndian.Uint16(pdu[6+2*i:])
		}
		return pdu[:5]
	}
	return exception(1)
}

// CRC is the Modbus RTU CRC-16 (polynomial 0xA001, initial 0xFFFF).
func CRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
