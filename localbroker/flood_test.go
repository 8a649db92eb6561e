package localbroker

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
)

// unitMemoryMax reads MemoryMax from the shipped systemd unit.
func unitMemoryMax(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("../configs/lintel.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "MemoryMax="); ok {
			mult := int64(1)
			switch {
			case strings.HasSuffix(v, "M"):
				mult, v = 1<<20, strings.TrimSuffix(v, "M")
			case strings.HasSuffix(v, "G"):
				mult, v = 1<<30, strings.TrimSuffix(v, "G")
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("MemoryMax=%s: %v", v, err)
			}
			return n * mult
		}
	}
	t.Fatal("the unit sets no MemoryMax")
	return 0
}

// procStatus returns a field of /proc/self/status in bytes.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// clientHello captures a TLS ClientHello record, for sockets that start a
// handshake and then stall.
func clientHello(t *testing.T) []byte {
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		tls.Client(a, &tls.Config{InsecureSkipVerify: true, ServerName: "gw"}).Handshake()
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8192)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestFloodAtCapsStaysUnderMemoryMax floods the broker at every default cap
// at once — the pending-connection cap held by stalled TLS handshakes and
// silent sockets, the total filter cap filled with the longest, deepest
// filters allowed, and a stream of failed logins saturating the password
// checks — while readings are published in process and by a network client
// into a real buffer and read out as the uplink would. Every reading must
// arrive, and the process RSS (read without forcing a GC) must stay under
// the systemd unit's MemoryMax. Run alone:
//
//	flock /tmp/lintel-bench.lock go test ./localbroker -run FloodAtCaps -v -count=1
func TestFloodAtCapsStaysUnderMemoryMax(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("flood test: not with -short or -race (which multiplies memory use)")
	}
	memoryMax := unitMemoryMax(t)
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	fast, _ := bcrypt.GenerateFromPassword([]byte("viewer-password"), bcrypt.MinCost)
	bms, _ := bcrypt.GenerateFromPassword([]byte("bms-password"), bcrypt.MinCost)
	us, err := ParseUsers(strings.NewReader("viewer:" + string(fast) + "\nbms:" + string(bms) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.NewCA("lan-ca", time.Hour)
	server, _ := ca.Server("gw", []string{"127.0.0.1"}, time.Hour)
	cert, _ := server.TLS()
	b := startBroker(t, Config{
		Listeners: []Listener{
			{Name: "local", Address: "127.0.0.1:0"},
			{Name: "lan", Address: "127.0.0.1:0", CertUsers: true, TLS: &tls.Config{
				Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}},
		},
		Users:   us,
		ACL:     NewACL([]Rule{{User: "viewer", Read: []string{"lintel/#"}}, {User: "bms", Write: []string{"lintel/gw1/bms/#"}}}),
		Forward: []string{"lintel/gw1/#"},
		Spool:   q,
	})
	lim := b.cfg.Limits
	rssBefore := procStatus(t, "VmRSS")

	// The uplink's side: read and ack everything forwarded.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var forwarded atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for ctx.Err() == nil {
			recs, err := q.Read(ctx, 256)
			if err != nil {
				return
			}
			seqs := make([]uint64, len(recs))
			for i, r := range recs {
				seqs[i] = r.Seq
			}
			q.Ack(seqs...)
			forwarded.Add(int64(len(recs)))
		}
	})

	// A network client publishing QoS 1 readings, connected before the flood.
	pub := mustConnect(t, b.addr, "bms", "bms-password")

	// 1. Filters: persistent sessions fill the total cap with the deepest
	// filters allowed, every level unique, padded towards 1 KiB.
	filter := func(s, f int) string {
		levels := []string{"lintel"}
		for l := 1; l < maxFilterLevels; l++ {
			levels = append(levels, fmt.Sprintf("s%d-f%d-l%d-%s", s, f, l, strings.Repeat("x", 48)))
		}
		flt := strings.Join(levels, "/")
		return flt[:min(len(flt), maxTopicBytes)]
	}
	sessions := lim.MaxFilters/lim.MaxFiltersPerClient + 2
	for s := range sessions {
		c, ack := dialV5With(t, b.addr, packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "viewer-" + strconv.Itoa(s), Keepalive: 30,
			UsernameFlag: true, Username: []byte("viewer"), PasswordFlag: true, Password: []byte("viewer-password")},
			packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true})
		if ack.ReasonCode != 0 {
			t.Fatalf("viewer session %d: connack 0x%02x", s, ack.ReasonCode)
		}
		for part := range 3 { // one SUBSCRIBE would exceed MaxPacket
			var fs []string
			for f := part * (lim.MaxFiltersPerClient/2 + 1); f < min((part+1)*(lim.MaxFiltersPerClient/2+1), lim.MaxFiltersPerClient+1); f++ {
				fs = append(fs, filter(s, f))
			}
			if len(fs) > 0 {
				c.subscribe(uint16(part+1), fs...)
			}
		}
		c.conn.Close() // the session and its filters stay
	}
	if n := b.srv.Info.Subscriptions; n != int64(lim.MaxFilters) {
		t.Fatalf("%d filters subscribed, want the cap %d", n, lim.MaxFilters)
	}

	// Readings flow during the flood: in process every 20 ms, and QoS 1
	// from the network client every 100 ms.
	var published int64
	var toks []paho.Token
	peak := int64(0)
	readings := func(d time.Duration) {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); {
			<-tick.C
			if err := b.Publish(ctx, "lintel/gw1/ahu-1/supply_temp", []byte(strconv.FormatInt(published, 10)), false, Normal); err != nil {
				t.Fatalf("in-process publish during the flood: %v", err)
			}
			if published%5 == 0 {
				toks = append(toks, pub.Publish("lintel/gw1/bms/occupancy", 1, false, strconv.FormatInt(published, 10)))
			}
			published++
			peak = max(peak, procStatus(t, "VmRSS"))
		}
	}

	// 2. Failed logins: unknown users and wrong passwords from 200 sources,
	// saturating the password checks.
	var attempts atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				src := fmt.Sprintf("127.0.2.%d", (w*31+i)%200+1)
				user := fmt.Sprintf("guess-%d", i%50)
				if i%3 == 0 {
					user = "bms"
				}
				c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}).DialContext(ctx, "tcp", b.addr)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(3 * time.Second))
				c.Write(connectBytes(user, "wrong-password"))
				c.Read(make([]byte, 1)) // CONNACK or close
				c.Close()
				attempts.Add(1)
			}
		})
	}
	readings(3 * time.Second)

	// 3. Pending connections on top: every source at its cap until the
	// global cap, half of them stalled in a TLS handshake, kept full.
	hello := clientHello(t)
	flood := func(src string, tlsHello bool) {
		addr := b.addr
		if tlsHello {
			addr = b.Addr("lan")
		}
		for ctx.Err() == nil {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				continue
			}
			if tlsHello {
				c.Write(hello)
			}
			closed := make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
				case <-closed:
				}
				c.Close()
			}()
			for one := make([]byte, 1); ; { // until the server closes it
				if _, err := c.Read(one); err != nil {
					break
				}
			}
			close(closed)
		}
	}
	for s := range lim.MaxPending/lim.MaxPendingPerSource + 2 {
		src := fmt.Sprintf("127.0.1.%d", s+1)
		for i := range lim.MaxPendingPerSource + 2 {
			wg.Go(func() { flood(src, i%2 == 0) })
		}
	}
	testwait.Until(t, "the pending cap full", 5*time.Second, func() bool { return b.pendingCount() >= lim.MaxPending-8 })
	readings(3 * time.Second)

	for i, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("network client's reading %d not acknowledged during the flood: %v", i, tok.Error())
		}
	}
	want := published + int64(len(toks))
	testwait.Until(t, "every reading forwarded", 5*time.Second, func() bool { return forwarded.Load() >= want })
	anon := procStatus(t, "RssAnon")
	c := b.Counters()
	t.Logf("flood: %d filters in %d sessions, pending %d (refused %d), %d login attempts (failures %d, blocked %d, busy %d), subscribe refused %d",
		b.srv.Info.Subscriptions, sessions, b.pendingCount(), c.PendingRefused, attempts.Load(), c.AuthFailures, c.AuthBlocked, c.AuthBusy, c.SubscribeRefused)
	t.Logf("readings: %d in process + %d QoS 1 published, %d forwarded; VmRSS %d MiB before, peak %d MiB, RssAnon %d MiB at the end; MemoryMax %d MiB",
		published, len(toks), forwarded.Load(), rssBefore>>20, peak>>20, anon>>20, memoryMax>>20)
	if c.PendingRefused == 0 || c.SubscribeRefused == 0 || c.AuthFailures < 20 || c.AuthBlocked == 0 {
		t.Fatalf("the flood did not reach every cap: %+v", c)
	}
	if peak >= memoryMax {
		t.Fatalf("peak RSS %d MiB is over the unit's MemoryMax %d MiB", peak>>20, memoryMax>>20)
	}
}

func connectBytes(user, pass string) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass),
	}}
	var buf bytesBuffer
	pk.ConnectEncode(&buf.Buffer)
	return buf.Bytes()
}

type bytesBuffer struct{ bytes.Buffer }
