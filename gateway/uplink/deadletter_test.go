package uplink

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// TestRecordThatKillsTheSessionIsDeadLettered: the cloud drops the
// connection whenever one particular record arrives (as Mosquitto does for a
// topic it refuses). After DeadLetterAfter sessions lost with it in flight
// it moves to the dead-letter bucket, everything behind it is delivered, and
// it stays dead-lettered across a restart.
func TestRecordThatKillsTheSessionIsDeadLettered(t *testing.T) {
	base := newEnv(t)
	base.queue.Close()
	path := filepath.Join(t.TempDir(), "buffer.db")
	q, err := buffer.Open(path, buffer.Options{CommitInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: base.ca, cloud: base.cloud, queue: q}
	e.cloud.DropOn(func(topic string) bool { return strings.Contains(topic, "poison") })
	if err := q.Append(context.Background(), buffer.Record{Topic: "lintel/gw1/door_1/poison", Payload: []byte(`{"v":1}`), Priority: buffer.High}); err != nil {
		t.Fatal(err)
	}
	e.appendN(t, 0, 300)

	u := e.runUplinkStoppable(t, Config{Broker: e.cloud.URL(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: time.Second}, nil)
	testwait.Until(t, "the poison record dead-lettered and the rest delivered", 20*time.Second, func() bool {
		s := q.Stats()
		return s.Records == 0 && s.DeadLetters == 1
	})
	if n := e.cloud.Dropped(); n < 3 {
		t.Fatalf("dead-lettered after %d dropped sessions, want at least DeadLetterAfter (3)", n)
	}
	if s := u.Stats(); s.DeadLettered != 1 {
		t.Fatalf("Stats.DeadLettered = %d, want 1", s.DeadLettered)
	}
	dead, err := q.DeadLetters(0)
	if err != nil || len(dead) != 1 || dead[0].Topic != "lintel/gw1/door_1/poison" || dead[0].Reason == "" {
		t.Fatalf("dead letters %+v, %v; want the poison record with a reason", dead, err)
	}
	got := seqsReceived(e.cloud)
	for seq := uint64(2); seq <= 301; seq++ {
		if got[seq] == 0 {
			t.Fatalf("seq %d behind the poison record never reached the cloud", seq)
		}
	}

	// Restart: the dead letter stays out of the queue.
	u.stop()
	q.Close()
	q, err = buffer.Open(path, buffer.Options{CommitInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() }) // after the uplink below stopped
	if s := q.Stats(); s.DeadLetters != 1 || s.Records != 0 {
		t.Fatalf("after restart: %+v, want 1 dead letter, 0 records", s)
	}
	e.queue = q
	dropped := e.cloud.Dropped()
	e.appendN(t, 1000, 10)
	e.runUplinkStoppable(t, Config{Broker: e.cloud.URL(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, nil)
	testwait.Until(t, "delivery after restart", 10*time.Second, func() bool { return q.Stats().Records == 0 })
	if e.cloud.Dropped() != dropped {
		t.Fatal("the dead letter was sent again after a restart")
	}
}

// TestWildcardTopicDoesNotBlockTheQueue: a record whose topic holds MQTT
// wildcards can never be published; it is dead-lettered at once and the
// records behind it are delivered.
func TestWildcardTopicDoesNotBlockTheQueue(t *testing.T) {
	e := newEnv(t)
	e.cloud.DropOn(func(topic string) bool { return strings.ContainsAny(topic, "+#") })
	if err := e.queue.Append(context.Background(), buffer.Record{Topic: "lintel/gw1/door_1/+/#_open", Payload: []byte(`{}`), Priority: buffer.High}); err != nil {
		t.Fatal(err)
	}
	e.appendN(t, 0, 50)
	u := e.runUplink(t, Config{Broker: e.cloud.URL(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		ConnectTimeout: time.Second, AckTimeout: time.Second}, nil)
	testwait.Until(t, "the rest delivered", 10*time.Second, func() bool {
		s := e.queue.Stats()
		return s.Records == 0 && s.DeadLetters == 1
	})
	if s := u.Stats(); s.DeadLettered != 1 {
		t.Fatalf("Stats.DeadLettered = %d, want 1", s.DeadLettered)
	}
	dead, _ := e.queue.DeadLetters(0)
	if len(dead) != 1 || !strings.Contains(dead[0].Reason, "topic") {
		t.Fatalf("dead letters %+v: want the wildcard record with a reason naming the topic", dead)
	}
}

// TestHungCloudDeadLettersNothing: ack timeouts against a cloud that
// answers nothing are not the records' fault.
func TestHungCloudDeadLettersNothing(t *testing.T) {
	e := newEnv(t)
	proxy := newStaller(t, e.cloud.Addr())
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond, AckTimeout: 200 * time.Millisecond}, nil)
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.stall()
	e.appendN(t, 0, 100)
	testwait.Until(t, "several ack timeouts", 20*time.Second, func() bool { return u.Stats().Reconnects >= 5 })
	proxy.resume()
	testwait.Until(t, "everything delivered", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	if s := e.queue.Stats(); s.DeadLetters != 0 || u.Stats().DeadLettered != 0 {
		t.Fatalf("a hung cloud dead-lettered healthy records: %d", s.DeadLetters)
	}
}
