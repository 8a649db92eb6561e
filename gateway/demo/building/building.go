package building

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"
)

// Unit ids of the simulated devices.
const (
	UnitAHU    = 1
	UnitMeter  = 2
	UnitDoorIO = 3
)

// Building is a running simulated plant.
type Building struct {
	srv  *mb.ModbusServer
	addr string
	log  *slog.Logger

	mu       sync.Mutex
	coils    map[uint8]map[uint16]bool
	discrete map[uint8]map[uint16]bool
	holding  map[uint8]map[uint16]uint16
	input    map[uint8]map[uint16]uint16
	silent   map[uint8]bool
	energy   float64

	stop chan struct{}
	done chan struct{}
}

// Start starts the plant and its Modbus TCP server on 127.0.0.1 at a free port.
func Start(logger *slog.Logger) (*Building, error) {
	b := &Building{
		log:      logger.With("component", "simulator"),
		coils:    map[uint8]map[uint16]bool{UnitAHU: {10: true}, UnitDoorIO: {0: false}},
		discrete: map[uint8]map[uint16]bool{UnitDoorIO: {0: false, 1: false, 8: false}},
		holding:  map[uint8]map[uint16]uint16{UnitAHU: {}},
		input:    map[uint8]map[uint16]uint16{UnitAHU: {}, UnitMeter: {}},
		silent:   map[uint8]bool{},
		energy:   123456,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	b.update(time.Now(), rand.New(rand.NewPCG(1, 2)))
	// simonvetter/modbus does not expose its listener, so a free port is
	// reserved and released first; a lost race is retried.
	var err error
	for range 5 {
		var addr string
		if addr, err = freeLoopbackAddr(); err != nil {
			break
		}
		b.srv, err = mb.NewServer(&mb.ServerConfiguration{
			URL:        "tcp://" + addr,
			Timeout:    time.Minute,
			MaxClients: 16,
			Logger:     slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		}, b)
		if err != nil {
			return nil, err
		}
		if err = b.srv.Start(); err == nil {
			b.addr = addr
			go b.run()
			return b, nil
		}
	}
	return nil, fmt.Errorf("simulator: listen: %w", err)
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Addr is the server's host:port.
func (b *Building) Addr() string { return b.addr }

// URL is the server's address as a Modbus client URL.
func (b *Building) URL() string { return "tcp://" + b.addr }

// Close stops the plant and its server.
func (b *Building) Close() error {
	close(b.stop)
	<-b.done
	return b.srv.Stop()
}

// SetSilent makes a unit stop answering (a dead device), or answer again.
func (b *Building) SetSilent(unit uint8, silent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.silent[unit] = silent
}

// Coil returns a coil's current state.
func (b *Building) Coil(unit uint8, addr uint16) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.coils[unit][addr]
}

// Holding returns a holding register's current value.
func (b *Building) Holding(unit uint8, addr uint16) uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holding[unit][addr]
}

func (b *Building) run() {
	defer close(b.done)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.update(now, rng)
		}
	}
}

// update moves the plant one step: slow sine drifts with noise for
// temperatures, a fan that follows its enable coil, doors that open now and
// then, and a rare alarm.
func (b *Building) update(now time.Time, rng *rand.Rand) {
	b.mu.Lock()
	defer b.mu.Unlock()
	phase := float64(now.UnixMilli()%600_000) / 600_000 * 2 * math.Pi
	noise := func(a float64) float64 { return (rng.Float64() - 0.5) * a }

	fanOn := b.coils[UnitAHU][10]
	supply := 18 + 1.5*math.Sin(phase) + noise(0.1)
	if !fanOn {
		supply = 21 + noise(0.05)
	}
	putFloat32(b.holding[UnitAHU], 100, supply)
	putFloat32(b.holding[UnitAHU], 102, 22+0.8*math.Sin(phase+1)+noise(0.1))
	fan := uint16(0)
	if fanOn {
		fan = uint16(70 + 8*math.Sin(phase*3))
	}
	b.holding[UnitAHU][110] = fan
	b.input[UnitAHU][200] = uint16(int16(45 + 30*math.Sin(phase/2) + noise(2)))

	power := 12 + 4*math.Sin(phase*2) + noise(0.5)
	if fanOn {
		power += 3
	}
	putFloat32(b.input[UnitMeter], 0, power)
	b.energy += power * 0.5 / 3600
	kwh := uint32(b.energy)
	b.input[UnitMeter][2], b.input[UnitMeter][3] = uint16(kwh>>16), uint16(kwh)
	b.input[UnitMeter][4] = uint16(2300 + noise(40))

	doors := b.discrete[UnitDoorIO]
	for _, d := range []uint16{0, 1} {
		if doors[d] {
			doors[d] = rng.Float64() > 0.2 // stays open ~2.5 s
		} else {
			doors[d] = rng.Float64() < 0.03 || (d == 0 && b.coils[UnitDoorIO][0])
		}
	}
	if doors[8] {
		doors[8] = rng.Float64() > 0.1
	} else {
		doors[8] = rng.Float64() < 0.005
	}
}

func putFloat32(m map[uint16]uint16, addr uint16, v float64) {
	bits := math.Float32bits(float32(v))
	m[addr], m[addr+1] = uint16(bits>>16), uint16(bits)
}

// The mb.RequestHandler methods. They run on the server's goroutines.

// HandleCoils implements mb.RequestHandler.
func (b *Building) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := table(b, b.coils, req.UnitId)
	if err != nil {
		return nil, err
	}
	if req.IsWrite {
		for i, v := range req.Args {
			if _, ok := m[req.Addr+uint16(i)]; !ok {
				return nil, mb.ErrIllegalDataAddress
			}
			m[req.Addr+uint16(i)] = v
		}
		return nil, nil
	}
	return readBits(m, req.Addr, req.Quantity)
}

// HandleDiscreteInputs implements mb.RequestHandler.
func (b *Building) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := table(b, b.discrete, req.UnitId)
	if err != nil {
		return nil, err
	}
	return readBits(m, req.Addr, req.Quantity)
}

// HandleHoldingRegisters implements mb.RequestHandler.
func (b *Building) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := table(b, b.holding, req.UnitId)
	if err != nil {
		return nil, err
	}
	if req.IsWrite {
		for i, v := range req.Args {
			m[req.Addr+uint16(i)] = v
		}
		return nil, nil
	}
	return readRegs(m, req.Addr, req.Quantity)
}

// HandleInputRegisters implements mb.RequestHandler.
func (b *Building) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := table(b, b.input, req.UnitId)
	if err != nil {
		return nil, err
	}
	return readRegs(m, req.Addr, req.Quantity)
}

// table returns one unit's map of a table. A silent or absent unit answers
// like a TCP gateway whose RTU device did not respond; a unit that lacks the
// table answers illegal data address.
func table[T any](b *Building, tables map[uint8]map[uint16]T, unit uint8) (map[uint16]T, error) {
	if b.silent[unit] || unit < UnitAHU || unit > UnitDoorIO {
		return nil, mb.ErrGWTargetFailedToRespond
	}
	m, ok := tables[unit]
	if !ok {
		return nil, mb.ErrIllegalDataAddress
	}
	return m, nil
}

func readBits(m map[uint16]bool, addr, n uint16) ([]bool, error) {
	out := make([]bool, n)
	for i := range out {
		out[i] = m[addr+uint16(i)]
	}
	return out, nil
}

func readRegs(m map[uint16]uint16, addr, n uint16) ([]uint16, error) {
	out := make([]uint16, n)
	for i := range out {
		out[i] = m[addr+uint16(i)]
	}
	return out, nil
}
