package config

import (
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
)

func TestGoodBACnetConfigConverts(t *testing.T) {
	cfg, err := Load("testdata/good-bacnet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := cfg.BACnet("bms")
	if err != nil {
		t.Fatal(err)
	}
	if bc.Listen != "0.0.0.0:47808" || bc.BBMD != "10.0.9.1:47808" || bc.TTL != 10*time.Minute || bc.Timeout != 2*time.Second || bc.Retries != 2 {
		t.Errorf("bus = %+v", bc)
	}
	if len(bc.Devices) != 2 {
		t.Fatalf("devices = %+v", bc.Devices)
	}
	d := bc.Devices[0]
	if d.Name != "ahu-1" || d.Instance != 1001 || d.Address != "10.0.7.21" || d.Poll != 10*time.Second || d.MaxProperties != 16 {
		t.Errorf("device = %+v", d)
	}
	temp, damper, fan := d.Points[0], d.Points[1], d.Points[2]
	if temp.Object != (bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 1}) || !temp.COV || temp.COVLifetime != 10*time.Minute ||
		temp.Deadband != 0.2 || temp.MaxInterval != 5*time.Minute || temp.Writable {
		t.Errorf("supply_temp = %+v", temp)
	}
	if damper.Object.Type != bacnet.AnalogOutput || !damper.Writable || damper.Priority != 8 || *damper.Min != 0 || *damper.Max != 100 ||
		damper.Unit != "%" || damper.UnsignedWrites {
		t.Errorf("damper = %+v", damper)
	}
	if !fan.UnsignedWrites || fan.Priority != 0 {
		t.Errorf("fan_cmd = %+v", fan)
	}
	if v := bc.Devices[1]; v.Network != 5 || v.MAC != "0A" || v.Address != "10.0.7.1:47808" {
		t.Errorf("routed device = %+v", v)
	}
	if err := bc.Validate(); err != nil {
		t.Errorf("the adapter refuses what config accepted: %v", err)
	}
	if _, err := bacnet.New(bc, nil); err != nil {
		t.Errorf("bacnet.New: %v", err)
	}
	// The unsigned BACnet point is listed for `lintel audit` like a Modbus one.
	if ut := cfg.UnsignedTargets(); len(ut) != 1 || ut[0].Name != "fan_cmd" || !strings.Contains(ut[0].Where, "good-bacnet.yaml:20") {
		t.Errorf("unsigned targets = %+v", ut)
	}
}

func TestBACnetMistakesAllReportedWithLines(t *testing.T) {
	ps := problems(t, "bacnet-mistakes.yaml")
	wantProblems(t, ps,
		`3|buses[0].listen|invalid address "nonsense"`,
		`3|buses[0].ttl|1s; want 30s to 18h, with bbmd`,
		`3|buses[0].retries|0: a bacnet-ip bus sends every request again`,
		`4|buses[1]|listen, bbmd and ttl are keys of bacnet-ip buses`,
		`5|buses[2]|baud, parity, stop_bits`,
		`23|devices[1].unit|unit is the Modbus unit id`,
		`9|devices[0].instance|4194304; want 0 to 4194303`,
		`11|devices[0].network|network without mac`,
		`13|devices[0].points[0].object|unknown object type`,
		`14|devices[0].points[1].writable|analog-input is an input`,
		`15|devices[0].points[2].priority|1 is reserved for life safety`,
		`16|devices[0].points[3].priority|"17"; want the write priority 1 to 16`,
		`17|devices[0].points[4].property|"status-flags"; only present-value is read`,
		`18|devices[0].points[5].cov_lifetime|5m0s; want 10s to 24h, with cov: true`,
		`19|devices[0].points[6]|table, address, type`,
		`21|devices[1].instance|missing`,
		`21|devices[1].address|missing`,
		`29|devices[2].points[0]|object, property, cov`,
	)
}

func TestBACnetAdapterCheckIsReportedAtTheBus(t *testing.T) {
	// Two devices with one instance pass every key check; the adapter's own
	// validation catches it, reported at the bus's line.
	_, err := Parse([]byte(`gateway: {id: gw}
buses:
  - {name: bms, type: bacnet-ip}
devices:
  - {name: a, bus: bms, instance: 5, address: 10.0.0.1, points: [{name: p, object: analog-input:1}]}
  - {name: b, bus: bms, instance: 5, address: 10.0.0.2, points: [{name: p, object: analog-input:1}]}
`), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), "x.yaml:3: buses[0]: ") || !strings.Contains(err.Error(), "instance 5 already used") {
		t.Fatalf("err = %v", err)
	}
}

func TestBACnetUnknownKeyRefused(t *testing.T) {
	ps := problems(t, "bacnet-unknown-key.yaml")
	wantProblems(t, ps, `10|devices[0].points[0].covv|unknown key "covv"`)
	if !strings.Contains(ps[0].Msg, "cov_lifetime") || !strings.Contains(ps[0].Msg, "allow_life_safety") {
		t.Errorf("the known keys listed do not include the BACnet ones: %s", ps[0].Msg)
	}
}
