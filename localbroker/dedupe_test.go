package localbroker

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

func dialSession(t *testing.T, addr, id string) *rawV5 {
	t.Helper()
	c, ack := dialV5With(t, addr, packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30,
		UsernameFlag: true, Username: []byte("bms"), PasswordFlag: true, Password: []byte("bms-password")},
		packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true})
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connack %+v", ack)
	}
	return c
}

func (c *rawV5) publish(id uint16, dup bool, topic, payload string) {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: dup}, ProtocolVersion: 5,
		PacketID: id, TopicName: topic, Payload: []byte(payload)}, (*packets.Packet).PublishEncode)
}

func (c *rawV5) puback(id uint16) {
	c.t.Helper()
	ack := readPacket(c.t, c.conn, c.r)
	if ack.FixedHeader.Type != packets.Puback || ack.PacketID != id || ack.ReasonCode != 0 {
		c.t.Fatalf("want a successful PUBACK %d, got %+v", id, ack)
	}
}

// TestDupResendIsNotBufferedTwice: a client whose PUBACK was lost re-sends
// the publish with DUP set and the same packet id in the same session; it is
// acknowledged without a second record, whether the first copy was already
// durable or still waiting for its commit. A re-send with other content, or
// a new publish reusing the packet id, is a new message.
func TestDupResendIsNotBufferedTwice(t *testing.T) {
	spool := &fakeSpool{}
	b := startBroker(t, Config{
		Users:   users(t, "bms", "bms-password"),
		ACL:     NewACL([]Rule{{User: "bms", Write: []string{"lintel/#"}}}),
		Forward: []string{"lintel/#"},
		Spool:   spool,
	})
	delivered := make(chan string, 16)
	unsub, _ := b.Subscribe("lintel/#", func(_ string, p []byte) { delivered <- string(p) })
	defer unsub()

	// Durable before the connection broke.
	c := dialSession(t, b.addr, "bms-1")
	c.publish(7, false, "lintel/gw1/bms/x", "a")
	c.puback(7) // the client "loses" this PUBACK: the connection drops
	c.conn.Close()
	c = dialSession(t, b.addr, "bms-1")
	c.publish(7, true, "lintel/gw1/bms/x", "a")
	c.puback(7)
	if n, _ := spool.counts(); n != 1 {
		t.Fatalf("a DUP re-send of a durable publish was buffered again: %d records", n)
	}

	// Still waiting for its commit when the connection broke.
	spool.mu.Lock()
	spool.release = make(chan struct{})
	calls := spool.async
	spool.mu.Unlock()
	c.publish(8, false, "lintel/gw1/bms/x", "b")
	testwait.Until(t, "append started", 5*time.Second, func() bool { spool.mu.Lock(); defer spool.mu.Unlock(); return spool.async == calls+1 })
	c.conn.Close()
	c = dialSession(t, b.addr, "bms-1")
	c.publish(8, true, "lintel/gw1/bms/x", "b")
	c.publish(9, false, "lintel/gw1/bms/x", "c")
	close(spool.release)
	c.puback(8) // in order, after the first copy became durable
	c.puback(9)
	if n, _ := spool.counts(); n != 3 {
		t.Fatalf("%d records, want 3 (a, b, c)", n)
	}

	// Same packet id, other content: a new message.
	c.publish(9, true, "lintel/gw1/bms/x", "d")
	c.puback(9)
	// A new publish reusing an id.
	c.publish(7, false, "lintel/gw1/bms/x", "a")
	c.puback(7)
	if n, _ := spool.counts(); n != 5 {
		t.Fatalf("%d records, want 5", n)
	}
	for _, want := range []string{"a", "b", "c", "d", "a"} {
		select {
		case got := <-delivered:
			if got != want {
				t.Fatalf("local delivery %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("local delivery missing")
		}
	}
	select {
	case got := <-delivered:
		t.Fatalf("extra local delivery %q: a re-send was delivered twice", got)
	case <-time.After(100 * time.Millisecond):
	}
}
