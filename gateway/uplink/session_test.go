package uplink

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// qos0Session is a toy Session: records go at QoS 0, behind QoS 1 fences.
type qos0Session struct {
	closings atomic.Int32
	fences   atomic.Int32
}

func (s *qos0Session) Will() (string, []byte, byte, bool) {
	return "toy/will", []byte("dead"), 1, false
}

func (s *qos0Session) Connected(ctx context.Context, c paho.Client) error {
	return waitToken(ctx, c.Publish("toy/birth", 1, false, []byte("born")))
}

func (s *qos0Session) Hold(context.Context) error { return nil }

func (s *qos0Session) Publish(c paho.Client, topic string, retain bool, payload []byte) (paho.Token, bool) {
	return c.Publish(topic, 0, retain, payload), true
}

func (s *qos0Session) Fence(c paho.Client) paho.Token {
	s.fences.Add(1)
	return c.Publish("toy/fence", 1, false, []byte{})
}

func (s *qos0Session) Closing(c paho.Client) paho.Token {
	s.closings.Add(1)
	return c.Publish("toy/bye", 1, false, []byte("bye"))
}

// TestSessionQoS0AckedOnlyBehindFence: records a Session publishes at QoS 0
// stay in the buffer although paho wrote them, until the PUBACK of the
// fence after them arrives; the cloud then has them, fences after them.
func TestSessionQoS0AckedOnlyBehindFence(t *testing.T) {
	e := newEnv(t)
	proxy := newStaller(t, e.cloud.Addr())
	sess := &qos0Session{}
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(), Session: sess,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, AckTimeout: 10 * time.Second}, nil)
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.stall()
	e.appendN(t, 0, 50)
	testwait.Until(t, "records written", 10*time.Second, func() bool { return u.Stats().Published == 50 && sess.fences.Load() > 0 })
	// A record acked on its QoS 0 write would be gone at once.
	if testwait.Within(300*time.Millisecond, func() bool { return e.queue.Stats().Records != 50 }) {
		t.Fatalf("%d records acked while the fence's PUBACK could not arrive", 50-e.queue.Stats().Records)
	}
	proxy.resume()
	testwait.Until(t, "acked behind the fence", 10*time.Second, func() bool { return e.queue.Stats().Records == 0 })
	got := seqsReceived(e.cloud)
	for seq := uint64(1); seq <= 50; seq++ {
		if got[seq] != 1 {
			t.Fatalf("seq %d reached the cloud %d times", seq, got[seq])
		}
	}
	last := -1
	for i, m := range e.cloud.Received() {
		switch m.Topic {
		case "toy/fence":
			last = i
		case "lintel/gw1/$status":
			t.Fatalf("a Session replaces the $status messages, got %s", m.Payload)
		}
	}
	if rec := e.cloud.Received(); last < 0 || rec[len(rec)-1].Topic != "toy/fence" {
		t.Fatalf("the last message is not a fence")
	}
}

// TestSessionEndedByUplinkSaysGoodbye: a session the uplink ends itself
// (here: no PUBACK for the fence within AckTimeout) calls Closing before its
// DISCONNECT, since a DISCONNECT discards the Will.
func TestSessionEndedByUplinkSaysGoodbye(t *testing.T) {
	e := newEnv(t)
	proxy := newStaller(t, e.cloud.Addr())
	sess := &qos0Session{}
	u := e.runUplink(t, Config{Broker: "mqtts://" + proxy.l.Addr().String(), Session: sess,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond, AckTimeout: 200 * time.Millisecond, DrainTimeout: 100 * time.Millisecond}, nil)
	testwait.Until(t, "connected", 10*time.Second, func() bool { return u.Stats().Connected })
	proxy.stall()
	e.appendN(t, 0, 5)
	testwait.Until(t, "an ack timeout", 10*time.Second, func() bool { return u.Stats().Reconnects >= 1 })
	if sess.closings.Load() == 0 {
		t.Fatal("the session ended by an ack timeout without Closing")
	}
	proxy.resume()
	testwait.Until(t, "delivered", 20*time.Second, func() bool { return e.queue.Stats().Records == 0 })
}
