package localbroker

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

// rawV5 is a minimal MQTT 5 client speaking raw packets (paho.mqtt.golang is
// 3.1.1 only).
type rawV5 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialV5(t *testing.T, addr, clientID, user, pass string, clean bool) (*rawV5, packets.Packet) {
	return dialV5With(t, addr, packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: clientID, Clean: clean, Keepalive: 30,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass)}, packets.Properties{})
}

func dialV5With(t *testing.T, addr string, params packets.ConnectParams, props packets.Properties) (*rawV5, packets.Packet) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawV5{t: t, conn: conn, r: newReader(conn)}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5, Connect: params, Properties: props},
		(*packets.Packet).ConnectEncode)
	return c, readPacket(t, conn, c.r)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func (c *rawV5) send(pk packets.Packet, encode func(*packets.Packet, *bytes.Buffer) error) {
	c.t.Helper()
	var buf bytes.Buffer
	if err := encode(&pk, &buf); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawV5) subscribe(id uint16, filters ...string) []byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f})
	}
	c.send(pk, (*packets.Packet).SubscribeEncode)
	ack := readPacket(c.t, c.conn, c.r)
	if ack.FixedHeader.Type != packets.Suback || ack.PacketID != id {
		c.t.Fatalf("want SUBACK %d, got %+v", id, ack)
	}
	return ack.ReasonCodes
}

// TestSubscriptionCaps: filters beyond the per-client cap or the total cap
// are refused in SUBACK (0x80 for MQTT 3.1.1, 0x97 for MQTT 5), counted, and
// not subscribed; re-subscribing an existing filter costs nothing, and an
// unsubscribe frees a slot.
func TestSubscriptionCaps(t *testing.T) {
	b := startBroker(t, Config{
		Users:  users(t, "viewer", "viewer-pw"),
		ACL:    NewACL([]Rule{{User: "viewer", Read: []string{"lintel/#"}}}),
		Limits: Limits{MaxFiltersPerClient: 3, MaxFilters: 5},
	})
	v3 := mustConnect(t, b.addr, "viewer", "viewer-pw")
	tok := v3.SubscribeMultiple(map[string]byte{"lintel/a": 0, "lintel/b": 0, "lintel/c": 0, "lintel/d": 0, "other/x": 0}, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	codes := tok.(*paho.SubscribeToken).Result()
	granted, refused := 0, 0
	for f, code := range codes {
		switch {
		case f == "other/x":
			if code != 0x80 {
				t.Errorf("ACL-denied filter got 0x%02x", code)
			}
		case code == 0:
			granted++
		case code == 0x80:
			refused++
		default:
			t.Errorf("filter %s: code 0x%02x", f, code)
		}
	}
	if granted != 3 || refused != 1 {
		t.Fatalf("MQTT 3.1.1 client: %d granted, %d refused (%v); want 3 and 1", granted, refused, codes)
	}
	var have string // a granted filter
	for f, code := range codes {
		if code == 0 && f != "other/x" {
			have = f
		}
	}
	again := v3.Subscribe(have, 1, nil)
	if !again.WaitTimeout(5*time.Second) || again.(*paho.SubscribeToken).Result()[have] != 1 {
		t.Fatalf("re-subscribing an existing filter was refused: %v", again.(*paho.SubscribeToken).Result())
	}

	v5, ack := dialV5(t, b.addr, "v5-viewer", "viewer", "viewer-pw", true)
	if ack.ReasonCode != 0 {
		t.Fatalf("connack %+v", ack)
	}
	if got := v5.subscribe(1, "lintel/x", "lintel/y", "lintel/z"); !bytes.Equal(got, []byte{0, 0, 0x97}) {
		t.Fatalf("MQTT 5 client beyond the total cap: SUBACK % x, want 00 00 97", got)
	}
	if got := b.Counters().SubscribeRefused; got != 2 {
		t.Fatalf("SubscribeRefused = %d, want 2", got)
	}
	if n := b.srv.Info.Subscriptions; n != 5 {
		t.Fatalf("%d filters subscribed, want 5", n)
	}
	if tok := v3.Unsubscribe(have); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if got := v5.subscribe(2, "lintel/z"); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("after an unsubscribe freed a slot: SUBACK % x, want 00", got)
	}
	// Depth is what a filter costs in the topic tree: beyond
	// maxFilterLevels levels it is refused as invalid, even with room.
	if tok := v3.Unsubscribe("lintel/a", "lintel/b", "lintel/c", "lintel/d"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	deep := "lintel" + strings.Repeat("/x", maxFilterLevels)
	ok := deep[:strings.LastIndex(deep, "/")]
	tok = v3.SubscribeMultiple(map[string]byte{deep: 0, ok: 0}, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if codes := tok.(*paho.SubscribeToken).Result(); codes[deep] != 0x80 || codes[ok] != 0 {
		t.Fatalf("filters of %d and %d levels: %v, want refused and granted", maxFilterLevels+1, maxFilterLevels, codes)
	}
}
