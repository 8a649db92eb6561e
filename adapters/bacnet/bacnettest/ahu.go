package bacnettest

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
)

// The objects of the simulated air handling unit.
var (
	AHUSupplyTemp = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 1}
	AHUReturnTemp = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 2}
	AHUSupplyFlow = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 3}
	AHUCO2        = bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 4}
	AHUDamper     = bacnet.ObjectID{Type: bacnet.AnalogOutput, Instance: 1}
	AHUSetpoint   = bacnet.ObjectID{Type: bacnet.AnalogValue, Instance: 1}
	AHUFanStatus  = bacnet.ObjectID{Type: bacnet.BinaryInput, Instance: 1}
	AHUFanCommand = bacnet.ObjectID{Type: bacnet.BinaryOutput, Instance: 1}
	AHUMode       = bacnet.ObjectID{Type: bacnet.MultiStateValue, Instance: 1}
)

// AHU is a simulated air handling unit controller for demos: its supply
// temperature follows the setpoint, the flow follows the damper, the fan
// status follows the fan command.
type AHU struct {
	*Device
	stop chan struct{}
	wg   sync.WaitGroup
}

// StartAHU starts the controller as device instance on loopback; its
// values change every step.
func StartAHU(instance uint32, step time.Duration) (*AHU, error) {
	d, err := New(instance, "AHU-"+strconv.FormatUint(uint64(instance), 10))
	if err != nil {
		return nil, err
	}
	d.Add(AHUSupplyTemp, "Supply Air Temperature", 62, float32(18))
	d.Add(AHUReturnTemp, "Return Air Temperature", 62, float32(22.5))
	d.Add(AHUSupplyFlow, "Supply Air Flow", 135, float32(0))
	d.Add(AHUCO2, "Return Air CO2", 96, float32(650))
	d.Add(AHUDamper, "Outside Air Damper", 98, float32(30))
	d.Add(AHUSetpoint, "Supply Air Setpoint", 62, float32(19))
	d.Add(AHUFanStatus, "Supply Fan Status", 0, bacnet.Enumerated(0))
	d.Add(AHUFanCommand, "Supply Fan Command", 0, bacnet.Enumerated(1))
	d.Add(AHUMode, "Operating Mode", 0, uint64(2))
	a := &AHU{Device: d, stop: make(chan struct{})}
	a.wg.Add(1)
	go a.run(step)
	return a, nil
}

// Close stops the controller.
func (a *AHU) Close() {
	close(a.stop)
	a.wg.Wait()
	a.Device.Close()
}

func (a *AHU) run(step time.Duration) {
	defer a.wg.Done()
	t := time.NewTicker(step)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.step(n)
	}
}

// step moves the plant one step: first-order lag towards its targets, and
// a slow CO2 wave.
func (a *AHU) step(n int) {
	f32 := func(v any) float64 { f, _ := v.(float32); return float64(f) }
	fanOn := a.PresentValue(AHUFanCommand) == bacnet.Enumerated(1)
	if fanOn != (a.PresentValue(AHUFanStatus) == bacnet.Enumerated(1)) {
		status := bacnet.Enumerated(0)
		if fanOn {
			status = 1
		}
		a.Set(AHUFanStatus, status)
	}
	flowTarget := 0.0
	if fanOn {
		flowTarget = 800 + 40*f32(a.PresentValue(AHUDamper))
	}
	lag := func(id bacnet.ObjectID, target float64) {
		v := f32(a.PresentValue(id))
		next := math.Round((v+(target-v)*0.3)*10) / 10
		if next != v {
			a.Set(id, float32(next))
		}
	}
	lag(AHUSupplyFlow, flowTarget)
	lag(AHUSupplyTemp, f32(a.PresentValue(AHUSetpoint)))
	lag(AHUCO2, 650+150*math.Sin(float64(n)/30))
}

// Config is the bacnet device config of this controller, all points
// polled every poll, the setpoint by COV, damper and setpoint writable
// (signed), the fan command writable without a signature.
func (a *AHU) Config(name string, poll time.Duration) bacnet.Device {
	return bacnet.Device{Name: name, Address: a.Addr.String(), Instance: a.Instance, Poll: poll, Points: []bacnet.Point{
		{Name: "supply_temp", Object: AHUSupplyTemp, Deadband: 0.1},
		{Name: "return_temp", Object: AHUReturnTemp, Deadband: 0.1},
		{Name: "supply_flow", Object: AHUSupplyFlow, Deadband: 5},
		{Name: "co2", Object: AHUCO2, Deadband: 10},
		{Name: "damper", Object: AHUDamper, Writable: true, Priority: 8, Min: ptr(0.0), Max: ptr(100.0)},
		{Name: "setpoint", Object: AHUSetpoint, COV: true, Writable: true, Priority: 8, Min: ptr(12.0), Max: ptr(28.0)},
		{Name: "fan_status", Object: AHUFanStatus, COV: true},
		{Name: "fan_cmd", Object: AHUFanCommand, Writable: true, Priority: 8},
		{Name: "mode", Object: AHUMode},
	}}
}

func ptr(f float64) *float64 { return &f }
