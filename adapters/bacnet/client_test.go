package bacnet_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
)

func newClient(t *testing.T, opt bacnet.ClientOptions) *bacnet.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := bacnet.NewClient(conn, opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWhoIsFindsDevicesInRange(t *testing.T) {
	a, b := newAHU(t), newAHU2(t)
	// Loopback has no broadcast: "broadcast" to one simulator at a time.
	for _, c := range []struct {
		dev       *bacnettest.Device
		low, high int64
		want      int
	}{{a, -1, -1, 1}, {a, 1000, 1001, 1}, {a, 1002, 2000, 0}, {b, 2000, 2000, 1}} {
		cl := newClient(t, bacnet.ClientOptions{Broadcast: c.dev.Addr})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		found, err := cl.WhoIs(ctx, c.low, c.high)
		cancel()
		if err != nil || len(found) != c.want {
			t.Fatalf("who-is %d..%d: %+v, %v; want %d", c.low, c.high, found, err, c.want)
		}
		if c.want == 1 && (found[0].Device.Instance != c.dev.Instance || found[0].Addr.String() != c.dev.Addr.String() || found[0].Segmentation != bacnet.NoSegmentation) {
			t.Fatalf("found %+v", found[0])
		}
	}
}

func newAHU2(t *testing.T) *bacnettest.Device {
	d, err := bacnettest.New(2000, "VAV-2000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func TestClientReadPropertyAndErrors(t *testing.T) {
	dev := newAHU(t)
	c := newClient(t, bacnet.ClientOptions{Timeout: 200 * time.Millisecond, Retries: 2})
	ctx := context.Background()
	vals, err := c.ReadProperty(ctx, dev.Addr, temp, bacnet.PropPresentValue, bacnet.NoIndex)
	if err != nil || len(vals) != 1 || vals[0] != float32(21.5) {
		t.Fatalf("read: %v, %v", vals, err)
	}
	_, err = c.ReadProperty(ctx, dev.Addr, bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: 77}, bacnet.PropPresentValue, bacnet.NoIndex)
	var be *bacnet.Error
	if !errors.As(err, &be) || be.Class != bacnet.ErrorClassObject || be.Code != bacnet.ErrorCodeUnknownObject {
		t.Fatalf("unknown object: %v", err)
	}
	dev.SetSilent(true)
	before := dev.Count(bacnet.ServiceReadProperty)
	_, err = c.ReadProperty(ctx, dev.Addr, temp, bacnet.PropPresentValue, bacnet.NoIndex)
	if !errors.Is(err, bacnet.ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	if n := dev.Count(bacnet.ServiceReadProperty) - before; n != 0 {
		t.Fatalf("a silent device counted %d requests", n) // it ignores datagrams entirely
	}
	dev.SetSilent(false)
	devObj := bacnet.ObjectID{Type: bacnet.DeviceObject, Instance: dev.Instance}
	refusing := newClient(t, bacnet.ClientOptions{Timeout: 500 * time.Millisecond, NoSegmentation: true})
	dev.SetMaxAPDU(20, bacnettest.SegmentAlways)
	_, err = refusing.ReadProperty(ctx, dev.Addr, devObj, bacnet.PropObjectList, bacnet.NoIndex)
	if !errors.Is(err, bacnet.ErrSegmented) || !bacnet.IsSegmentation(err) {
		t.Fatalf("segmented answer to a client that refuses them: %v", err)
	}
	dev.SetMaxAPDU(20, bacnettest.SegmentWhenAccepted)
	_, err = refusing.ReadProperty(ctx, dev.Addr, devObj, bacnet.PropObjectList, bacnet.NoIndex)
	var ab *bacnet.AbortError
	if !errors.As(err, &ab) || !ab.Server || ab.Reason != bacnet.AbortSegmentationNotSupported || !bacnet.IsSegmentation(err) {
		t.Fatalf("answer too long for an unsegmented reply: %v", err)
	}
	dev.DropSegment(2)
	list, err := c.ReadProperty(ctx, dev.Addr, devObj, bacnet.PropObjectList, bacnet.NoIndex)
	if err != nil || len(list) != 10 || list[0] != devObj || list[9] != setpoint {
		t.Fatalf("object list reassembled from 20-octet segments: %v, %v", list, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.ReadProperty(ctx, dev.Addr, temp, bacnet.PropPresentValue, bacnet.NoIndex); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// A device that answers only the third try is still read: retries reuse the
// invoke id and the answer is matched.
func TestClientRetriesAfterTimeout(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tries := make(chan int, 1)
	go func() {
		buf := make([]byte, 1500)
		var ids []byte
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			f, _ := bacnet.DecodeFrame(buf[:n])
			a, _ := bacnet.DecodeAPDU(f.APDU)
			ids = append(ids, a.InvokeID)
			if len(ids) < 3 {
				continue
			}
			for _, id := range ids {
				if id != ids[0] {
					tries <- -1
					return
				}
			}
			tries <- len(ids)
			data, _ := bacnet.ReadPropertyACK{Object: temp, PropertyRef: bacnet.PropertyRef{Property: bacnet.PropPresentValue, Index: bacnet.NoIndex}, Values: []any{float32(1)}}.Encode()
			ack := bacnet.APDU{Type: bacnet.ComplexACK, InvokeID: a.InvokeID, Service: bacnet.ServiceReadProperty, Data: data}
			conn.WriteTo(bacnet.EncodeBVLC(bacnet.BVLCOriginalUnicastNPDU, bacnet.EncodeNPDU(ack.Encode(), false)), from)
			return
		}
	}()
	c := newClient(t, bacnet.ClientOptions{Timeout: 200 * time.Millisecond, Retries: 2})
	vals, err := c.ReadProperty(context.Background(), conn.LocalAddr(), temp, bacnet.PropPresentValue, bacnet.NoIndex)
	if err != nil || vals[0] != float32(1) {
		t.Fatalf("read on the third try: %v, %v", vals, err)
	}
	if n := <-tries; n != 3 {
		t.Fatalf("tries %d with one invoke id, want 3", n)
	}
}

func TestDiscoverThroughBBMDAndObjects(t *testing.T) {
	dev := newAHU(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	found, err := bacnet.Discover(context.Background(), conn, 500*time.Millisecond, bacnet.DiscoverOptions{BBMD: dev.Addr, TTL: 30})
	if err != nil || len(found) != 1 || found[0].Device.Instance != 1001 {
		t.Fatalf("discover: %+v, %v", found, err)
	}
	if dev.ForeignRegistrations() != 1 {
		t.Fatalf("%d foreign device registrations, want 1", dev.ForeignRegistrations())
	}
	for _, segmented := range []bool{false, true} {
		dev.SetMaxAPDU(1476, bacnettest.SegmentNever)
		if segmented {
			dev.SetMaxAPDU(30, bacnettest.SegmentNever) // the whole object list no longer fits
		}
		c := newClient(t, bacnet.ClientOptions{Timeout: 500 * time.Millisecond})
		objs, err := bacnet.Objects(context.Background(), c, found[0])
		if err != nil || len(objs) != 9 {
			t.Fatalf("objects (segmented %v): %d, %v", segmented, len(objs), err)
		}
		if segmented {
			continue // answers for names no longer fit either
		}
		if o := objs[0]; o.Object != temp || o.Name != "Supply Air Temp" || o.Unit != "°C" || o.Value != 21.5 {
			t.Fatalf("first object %+v", o)
		}
		snippet := bacnet.Snippet("ahu1", found[0], objs)
		for _, want := range []string{"- name: ahu1\n", "instance: 1001", "- name: supply_air_temp\n      object: analog-input:1   # Supply Air Temp = 21.5 °C", "object: multi-state-value:4"} {
			if !strings.Contains(snippet, want) {
				t.Fatalf("snippet lacks %q:\n%s", want, snippet)
			}
		}
		for _, line := range strings.Split(snippet, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "object: ") {
				id := strings.Fields(strings.TrimSpace(line))[1]
				if _, err := bacnet.ParseObjectID(id); err != nil {
					t.Fatalf("snippet object %q does not parse: %v", id, err)
				}
			}
		}
	}
}

func TestParseObjectID(t *testing.T) {
	if id, err := bacnet.ParseObjectID("binary-output:12"); err != nil || id != (bacnet.ObjectID{Type: bacnet.BinaryOutput, Instance: 12}) {
		t.Fatalf("%v %v", id, err)
	}
	for _, bad := range []string{"analog-input", "analog-inputs:1", "analog-input:x", "analog-input:4194304"} {
		if _, err := bacnet.ParseObjectID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWhoIsFindsRoutedDevice(t *testing.T) {
	dev := newAHU(t)
	dev.BehindRouter(2001, []byte{0x0A})
	cl := newClient(t, bacnet.ClientOptions{Broadcast: dev.Addr})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	found, err := cl.WhoIs(ctx, -1, -1)
	if err != nil || len(found) != 1 {
		t.Fatalf("who-is: %+v, %v", found, err)
	}
	r, ok := found[0].Addr.(*bacnet.RoutedAddr)
	if !ok || r.Net != 2001 || len(r.MAC) != 1 || r.MAC[0] != 0x0A || r.Router.String() != dev.Addr.String() {
		t.Fatalf("address %v, want network 2001 MAC 0A via %s", found[0].Addr, dev.Addr)
	}
	objs, err := bacnet.Objects(context.Background(), cl, found[0])
	if err != nil || len(objs) != 9 || objs[0].Name != "Supply Air Temp" {
		t.Fatalf("objects through the router: %d, %v", len(objs), err)
	}
	snippet := bacnet.Snippet("ahu1", found[0], objs)
	if want := "  address: \"" + dev.Addr.String() + "\"\n  network: 2001\n  mac: \"0A\"\n  instance: 1001\n"; !strings.Contains(snippet, want) {
		t.Fatalf("snippet lacks %q:\n%s", want, snippet)
	}
}
