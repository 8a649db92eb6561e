package gateway_test

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// startBACnetGateway runs the demo config with the BACnet controller polled
// only every 30 s: anything arriving sooner came by COV.
func startBACnetGateway(t *testing.T) (*demo.Env, *gateway.Gateway) {
	t.Helper()
	env, err := demo.Prepare(demo.Options{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	found := false
	for i := range env.Config.Devices {
		if d := &env.Config.Devices[i]; d.Name == "ahu-2" {
			d.Poll, found = config.Duration(30*time.Second), true
		}
	}
	if !found {
		t.Fatal("the demo config has no BACnet device ahu-2")
	}
	gw := runGateway(t, env.Config, gateway.Options{Version: "test", Logger: quiet()})
	return env, gw
}

type cloudReading struct {
	V    any    `json:"v"`
	Unit string `json:"unit"`
	Q    string `json:"q"`
	TS   string `json:"ts"`
	Seq  uint64 `json:"seq"`
}

// cloudReadings returns the readings of topic the cloud received, with the
// time each arrived.
func cloudReadings(env *demo.Env, topic string) ([]cloudReading, []time.Time) {
	var rs []cloudReading
	var at []time.Time
	for _, m := range env.Cloud.Received() {
		var r cloudReading
		if m.Topic == topic && json.Unmarshal(m.Payload, &r) == nil {
			rs = append(rs, r)
			at = append(at, m.At)
		}
	}
	return rs, at
}

// TestBACnetEndToEnd: the demo's BACnet controller through the gateway to
// the mTLS cloud: readings with unit and q, a change by COV within 1 s, a
// signed write into the priority array, an unsigned one refused, and a
// relinquish.
func TestBACnetEndToEnd(t *testing.T) {
	env, gw := startBACnetGateway(t)
	const prefix = "lintel/demo-gw/ahu-2/"

	testwait.Until(t, "BACnet readings in the cloud", 10*time.Second, func() bool {
		rs, _ := cloudReadings(env, prefix+"supply_temp")
		fs, _ := cloudReadings(env, prefix+"fan_cmd")
		return len(rs) > 0 && len(fs) > 0
	})
	rs, _ := cloudReadings(env, prefix+"supply_temp")
	if r := rs[0]; r.Unit != "°C" || r.Q != "good" || r.TS == "" || r.Seq == 0 {
		t.Errorf("supply_temp reading = %+v, want unit °C, q good, ts and seq", r)
	}
	if _, ok := rs[0].V.(float64); !ok {
		t.Errorf("supply_temp value %v is not a number", rs[0].V)
	}
	if fs, _ := cloudReadings(env, prefix+"fan_cmd"); fs[0].V != true {
		t.Errorf("fan_cmd = %v, want true (binary active)", fs[0].V)
	}
	if !gw.Stats().Uplink.Connected {
		t.Error("uplink not connected")
	}
	body := scrape(t, "http://"+gw.MetricsAddr()+"/metrics")
	if metric(body, `lintel_device_online{bus="bms",device="ahu-2"}`) != 1 || metric(body, `lintel_bus_requests_total{bus="bms"}`) < 1 {
		t.Errorf("BACnet bus metrics missing or wrong:\n%s", grepLines(body, "bms"))
	}

	// COV: the setpoint and fan status are subscribed once the device
	// answered; a change reaches the cloud within 1 s (polling is 30 s).
	testwait.Until(t, "COV subscriptions", 10*time.Second, func() bool { return env.AHU.Subscriptions() >= 2 })
	before, _ := cloudReadings(env, prefix+"setpoint")
	changed := time.Now()
	env.AHU.Set(bacnettest.AHUSetpoint, float32(21.5))
	testwait.Until(t, "the setpoint change in the cloud", 5*time.Second, func() bool {
		rs, _ := cloudReadings(env, prefix+"setpoint")
		return len(rs) > len(before) && rs[len(rs)-1].V == 21.5
	})
	_, at := cloudReadings(env, prefix+"setpoint")
	if lag := at[len(at)-1].Sub(changed); lag > time.Second {
		t.Errorf("COV change reached the cloud after %v, want within 1s", lag)
	} else {
		t.Logf("COV change reached the cloud %v after it happened", lag)
	}

	// Writes go through the command gate: unsigned refused, signed written
	// at priority 8, relinquish as its own (signed) command.
	send, _ := operator(t, env)
	key, err := command.LoadPrivateKey(env.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	if r := send("ahu-2/setpoint", command.Envelope{ID: "sp-unsigned", Value: json.RawMessage(`24`)}); !strings.Contains(r, "signature missing") {
		t.Fatalf("unsigned setpoint write: %s", r)
	}
	if p := env.AHU.Priority(bacnettest.AHUSetpoint); p[7] != nil {
		t.Fatalf("an unsigned command wrote priority 8: %v", p)
	}
	signed, _ := command.NewEnvelope(key, "demo-gw", "ahu-2", "setpoint", json.RawMessage(`23`), time.Minute)
	if r := send("ahu-2/setpoint", signed); !strings.Contains(r, `"ok":true`) {
		t.Fatalf("signed setpoint write: %s", r)
	}
	if p := env.AHU.Priority(bacnettest.AHUSetpoint); p[7] != float32(23) {
		t.Fatalf("priority array after the signed write = %v, want 23 at priority 8", p)
	}
	if r := send("ahu-2/setpoint", mustSign(t, key, "setpoint", `99`)); !strings.Contains(r, "outside the allowed range") {
		t.Fatalf("setpoint 99 (max 28): %s", r)
	}
	if r := send("ahu-2/setpoint.relinquish", command.Envelope{ID: "rel-unsigned", Value: json.RawMessage(`true`)}); !strings.Contains(r, "signature missing") {
		t.Fatalf("unsigned relinquish: %s", r)
	}
	if r := send("ahu-2/setpoint.relinquish", mustSign(t, key, "setpoint.relinquish", `true`)); !strings.Contains(r, `"ok":true`) {
		t.Fatalf("signed relinquish: %s", r)
	}
	if p := env.AHU.Priority(bacnettest.AHUSetpoint); p[7] != nil {
		t.Fatalf("priority 8 still set after relinquish: %v", p)
	}
	if r := send("ahu-2/supply_temp", mustSign(t, key, "supply_temp", `20`)); !strings.Contains(r, `"ok":false`) {
		t.Fatalf("write to an input: %s", r)
	}
}

func mustSign(t *testing.T, key ed25519.PrivateKey, point, value string) command.Envelope {
	t.Helper()
	e, err := command.NewEnvelope(key, "demo-gw", "ahu-2", point, json.RawMessage(value), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func grepLines(body, word string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
