package localbroker

import (
	"strconv"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/gateway/testwait"
)

// loginFrom connects with MQTT 5 from a loopback source address and returns
// the CONNACK reason code.
func loginFrom(t *testing.T, src, addr, user, pass string) byte {
	t.Helper()
	c := &rawV5{t: t, conn: dialFrom(t, src, addr)}
	c.r = newReader(c.conn)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass),
	}}, (*packets.Packet).ConnectEncode)
	ack := readPacket(t, c.conn, c.r)
	c.conn.Close()
	return ack.ReasonCode
}

// TestLoginBackoffNotResetByAnotherUser: one user's success from an address
// does not clear the failures another user name collected there.
func TestLoginBackoffNotResetByAnotherUser(t *testing.T) {
	b := startBroker(t, Config{Users: users(t, "alice", "alice-password", "bob", "bob-password"), GuardBase: time.Minute})
	for range 4 {
		if code := loginFrom(t, "127.0.0.1", b.addr, "alice", "guess"); code == 0 {
			t.Fatal("wrong password accepted")
		}
	}
	if code := loginFrom(t, "127.0.0.1", b.addr, "bob", "bob-password"); code != 0 {
		t.Fatalf("bob refused: 0x%02x", code)
	}
	loginFrom(t, "127.0.0.1", b.addr, "alice", "guess") // the fifth failure from this address
	if code := loginFrom(t, "127.0.0.1", b.addr, "alice", "alice-password"); code == 0 {
		t.Fatal("bob's login reset the address's failures: alice's guesses go on unchecked")
	}
}

// TestLoginBackoffPerUser: failures for one user name spread over many
// addresses back that user off everywhere, and no one else.
func TestLoginBackoffPerUser(t *testing.T) {
	b := startBroker(t, Config{Users: users(t, "alice", "alice-password", "bob", "bob-password"), GuardBase: time.Minute})
	srcs := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	for i := range guardUserFree {
		loginFrom(t, srcs[i%len(srcs)], b.addr, "alice", "guess")
	}
	if code := loginFrom(t, "127.0.0.9", b.addr, "alice", "alice-password"); code == 0 {
		t.Fatalf("%d failures for alice from %d addresses did not back alice off", guardUserFree, len(srcs))
	}
	if code := loginFrom(t, "127.0.0.9", b.addr, "bob", "bob-password"); code != 0 {
		t.Fatalf("bob was backed off with alice: 0x%02x", code)
	}
}

// fakeClock is an injectable clock for the guard.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestGuard(max int) (*guard, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := newGuard(time.Second)
	g.now = clk.now
	g.maxEntries = max
	return g, clk
}

func TestGuardBackoffAndReset(t *testing.T) {
	g, clk := newTestGuard(guardEntries)
	for range guardFree {
		g.fail("10.0.0.1", "alice")
	}
	if !g.blocked("10.0.0.1", "bob") {
		t.Fatal("source not backed off after guardFree failures")
	}
	clk.advance(time.Second)
	if g.blocked("10.0.0.1", "bob") {
		t.Fatal("still backed off after the first 1 s step")
	}
	g.fail("10.0.0.1", "alice")
	clk.advance(1500 * time.Millisecond)
	if !g.blocked("10.0.0.1", "alice") {
		t.Fatal("the back-off did not double")
	}
	// bob's success does not clear alice's failures from the source...
	g.succeed("10.0.0.1", "bob")
	if !g.blocked("10.0.0.1", "alice") {
		t.Fatal("another user's success cleared the source")
	}
	// ...alice's own does.
	g.succeed("10.0.0.1", "alice")
	if g.blocked("10.0.0.1", "alice") {
		t.Fatal("the user's own success did not clear a source where only she failed")
	}
	// Mixed failures are not cleared by one user's success.
	for i := range guardFree - 1 {
		g.fail("10.0.0.2", []string{"alice", "carol"}[i%2])
	}
	g.succeed("10.0.0.2", "alice")
	g.fail("10.0.0.2", "carol")
	if !g.blocked("10.0.0.2", "x") {
		t.Fatal("a success cleared failures of another user name")
	}
	// Counts are forgotten after the longest back-off without failures.
	g.fail("10.0.0.3", "dave")
	clk.advance(guardMax + time.Second)
	for range guardFree - 1 {
		g.fail("10.0.0.3", "dave")
	}
	if g.blocked("10.0.0.3", "x") {
		t.Fatal("a failure from long ago still counted")
	}
}

func TestGuardPerUser(t *testing.T) {
	g, clk := newTestGuard(guardEntries)
	for i := range guardUserFree {
		g.fail("10.0.1."+string(rune('0'+i)), "alice")
	}
	if !g.blocked("10.9.9.9", "alice") || g.blocked("10.9.9.9", "bob") {
		t.Fatal("want alice backed off everywhere and bob not")
	}
	for range 30 {
		g.fail("10.0.2.1", "alice")
		clk.advance(time.Second)
	}
	clk.advance(guardUserMax)
	if g.blocked("10.9.9.9", "alice") {
		t.Fatal("a user name's back-off exceeded guardUserMax")
	}
}

func TestSourceKeys(t *testing.T) {
	same := []string{"[2001:db8:1:2::1]:1883", "[2001:db8:1:2:ffff::9]:40000"}
	if addrSource(same[0]) != addrSource(same[1]) {
		t.Fatalf("one IPv6 /64 gave two keys: %s, %s", addrSource(same[0]), addrSource(same[1]))
	}
	if addrSource("[2001:db8:1:3::1]:1") == addrSource(same[0]) {
		t.Fatal("two /64s share a key")
	}
	if addrSource("10.0.0.1:5") == addrSource("10.0.0.2:5") || addrSource("[::ffff:10.0.0.1]:5") != addrSource("10.0.0.1:9") {
		t.Fatal("IPv4 keys wrong")
	}
	// Guessing from many addresses of one /64 backs off the whole /64.
	g, _ := newTestGuard(guardEntries)
	for i := range guardFree {
		g.fail(addrSource("[2001:db8:1:2::"+string(rune('a'+i))+"]:1"), "u"+string(rune('a'+i)))
	}
	if !g.blocked(addrSource("[2001:db8:1:2::99]:1"), "x") {
		t.Fatal("an IPv6 /64 was not backed off as one source")
	}
}

// TestGuardBounded: the table never grows past its cap, an attacker who is
// backing off is never evicted, and when every entry backs off newcomers
// share the overflow entry instead of going untracked.
func TestGuardBounded(t *testing.T) {
	g, clk := newTestGuard(50)
	for range guardFree {
		g.fail("10.6.6.6", "root")
	}
	for i := range 1000 {
		clk.advance(time.Millisecond)
		g.fail("10.1."+itoa(i/250)+"."+itoa(i%250), "user"+itoa(i))
		if len(g.m) > 51 {
			t.Fatalf("guard grew to %d entries", len(g.m))
		}
		if f := g.m[sourceKey("10.6.6.6")]; f == nil || f.n != guardFree {
			t.Fatalf("the attacker's count was forgotten after %d other sources", i)
		}
	}
	g.fail("10.6.6.6", "root") // straight back to a doubled back-off
	clk.advance(1500 * time.Millisecond)
	if !g.blocked("10.6.6.6", "x") {
		t.Fatal("the attacker's next failure did not back it off again")
	}
	// Fill the table with sources that back off; a new one lands in the
	// overflow entry and is backed off too.
	for i := range 50 {
		for range guardFree {
			g.fail("10.2.0."+itoa(i), "x")
		}
	}
	for range guardFree {
		g.fail("10.3.0.1", "y")
	}
	if len(g.m) > 51 || !g.blocked("10.3.0.1", "z") {
		t.Fatalf("with every entry backing off: %d entries, newcomer blocked=%v", len(g.m), g.blocked("10.3.0.1", "z"))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestPasswordChecksBounded: at most MaxPasswordChecks bcrypt comparisons
// run at once; a login that finds none free waits for one until its connect
// deadline, and is then refused as busy, neither counted as a failure nor
// backed off.
func TestPasswordChecksBounded(t *testing.T) {
	b := startBroker(t, Config{Users: users(t, "alice", "alice-password"),
		Limits: Limits{MaxPasswordChecks: 1, ConnectTimeout: 500 * time.Millisecond}})
	b.auth.checks <- struct{}{} // the only slot is taken
	if code := loginFrom(t, "127.0.0.1", b.addr, "alice", "alice-password"); code == 0 {
		t.Fatal("a password was checked although no slot was free")
	}
	if c := b.Counters(); c.AuthBusy != 1 || c.AuthFailures != 0 {
		t.Fatalf("counters %+v, want 1 busy and no failures", c)
	}
	done := make(chan byte, 1)
	go func() { done <- loginFrom(t, "127.0.0.1", b.addr, "alice", "alice-password") }()
	testwait.Until(t, "a login waiting for a slot", 5*time.Second, func() bool { return b.auth.waiting.Load() == 1 })
	<-b.auth.checks // a slot frees up in time
	if code := <-done; code != 0 {
		t.Fatalf("a login that waited for a free slot was refused: 0x%02x", code)
	}
}
