package uplink

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// csvEncoder is a toy cloud format: one topic per gateway, the record's
// topic, seq and payload as one CSV line. It proves that a new cloud format
// is a type with one method and one line in uplink.Config.
type csvEncoder struct{}

func (csvEncoder) Encode(r buffer.Record) (string, []byte, error) {
	if strings.Contains(string(r.Payload), ",") {
		return "", nil, errors.New("csv: a comma in the payload")
	}
	return "bulk/gw1", []byte(r.Topic + "," + strconv.FormatUint(r.Seq, 10) + "," + string(r.Payload)), nil
}

// TestEncoderSeam: records reach the cloud as the configured encoder makes
// them; one the encoder refuses is dead-lettered and the rest flow.
func TestEncoderSeam(t *testing.T) {
	e := newEnv(t)
	recs := []buffer.Record{
		{Topic: "lintel/gw1/ahu/t", Payload: []byte("21.5")},
		{Topic: "lintel/gw1/ahu/x", Payload: []byte("1,2")},
		{Topic: "lintel/gw1/ahu/h", Payload: []byte("40")},
	}
	if err := e.queue.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	u := e.runUplink(t, Config{Broker: e.cloud.URL(), Encoder: csvEncoder{},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}, nil)
	testwait.Until(t, "delivered", 10*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	var got []string
	for _, m := range e.cloud.Received() {
		if m.Topic == "bulk/gw1" {
			got = append(got, string(m.Payload))
		}
	}
	want := []string{"lintel/gw1/ahu/t,1,21.5", "lintel/gw1/ahu/h,3,40"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("cloud got %q, want %q", got, want)
	}
	dead, _ := e.queue.DeadLetters(0)
	if u.Stats().DeadLettered != 1 || len(dead) != 1 || dead[0].Seq != 2 || !strings.Contains(dead[0].Reason, "comma") {
		t.Fatalf("dead letters %+v: want seq 2 refused by the encoder", dead)
	}
}
