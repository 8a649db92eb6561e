package localbroker

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

func connectID(addr, id, user, pass string, clean bool) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetCleanSession(clean).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, paho.ErrNotConnected
	}
	return c, tok.Error()
}

// TestSessionTakeoverByAnotherUserRefused: a client ID belongs to the user
// whose session holds it; another user's CONNECT with it is refused and
// counted, while connected or persistent, and the owner keeps its session.
// Once the session ends, the ID is free again.
func TestSessionTakeoverByAnotherUserRefused(t *testing.T) {
	b := startBroker(t, Config{
		Users: users(t, "bms", "bms-password", "mallory", "mallory-pw"),
		ACL:   NewACL([]Rule{{User: "*", Read: []string{"lintel/#"}}}),
	})
	owner, err := connectID(b.addr, "bms-1", "bms", "bms-password", false)
	if err != nil {
		t.Fatal(err)
	}
	if tok := owner.Subscribe("lintel/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if c, err := connectID(b.addr, "bms-1", "mallory", "mallory-pw", false); err == nil {
		c.Disconnect(0)
		t.Fatal("another user took over a connected session")
	}
	if !owner.IsConnectionOpen() {
		t.Fatal("the owner was disconnected by another user's CONNECT")
	}
	owner.Disconnect(100) // the persistent session stays
	testwait.Until(t, "owner gone", 5*time.Second, func() bool { return b.Clients() == 0 })
	if c, err := connectID(b.addr, "bms-1", "mallory", "mallory-pw", true); err == nil {
		c.Disconnect(0)
		t.Fatal("another user took over a persistent session")
	}
	if got := b.Counters().TakeoverDenied; got != 2 {
		t.Fatalf("TakeoverDenied = %d, want 2", got)
	}
	cl, ok := b.srv.Clients.Get("bms-1")
	if !ok || cl.State.Subscriptions.Len() != 1 || string(cl.Properties.Username) != "bms" {
		t.Fatal("the owner's session was changed by the refused takeover")
	}
	// The owner may come back, and ending its session with a clean
	// connection frees the ID.
	again, err := connectID(b.addr, "bms-1", "bms", "bms-password", true)
	if err != nil {
		t.Fatalf("owner reconnecting: %v", err)
	}
	again.Disconnect(100)
	testwait.Until(t, "owner's clean session ended", 5*time.Second, func() bool { _, ok := b.srv.Clients.Get("bms-1"); return !ok })
	c, err := connectID(b.addr, "bms-1", "mallory", "mallory-pw", true)
	if err != nil {
		t.Fatalf("client ID still bound after its session ended: %v", err)
	}
	c.Disconnect(0)
}
