package bacnet_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
	"github.com/lintel-gw/lintel/adapters/bacnet/bacnettest"
)

// BenchmarkReadPropertyMultiple100 reads present-value, status-flags and
// reliability of 100 analog inputs in one request over loopback; the answer
// (about 2.9 KB) comes back in two segments.
func BenchmarkReadPropertyMultiple100(b *testing.B) {
	dev, err := bacnettest.New(1, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	dev.SetMaxAPDU(1476, bacnettest.SegmentWhenAccepted)
	var specs []bacnet.ReadAccessSpec
	for i := range 100 {
		id := bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: uint32(i)}
		dev.Add(id, "t", 62, float32(i))
		specs = append(specs, bacnet.ReadAccessSpec{Object: id, Properties: []bacnet.PropertyRef{
			{Property: bacnet.PropPresentValue, Index: bacnet.NoIndex},
			{Property: bacnet.PropStatusFlags, Index: bacnet.NoIndex},
			{Property: bacnet.PropReliability, Index: bacnet.NoIndex}}})
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c := bacnet.NewClient(conn, bacnet.ClientOptions{Timeout: time.Second})
	defer c.Close()
	b.ResetTimer()
	for b.Loop() {
		res, err := c.ReadPropertyMultiple(context.Background(), dev.Addr, specs)
		if err != nil || len(res) != 100 {
			b.Fatalf("%d results, %v", len(res), err)
		}
	}
}

func BenchmarkDecodeReadPropertyMultipleACK(b *testing.B) {
	var res []bacnet.ReadAccessResult
	for i := range 100 {
		res = append(res, bacnet.ReadAccessResult{Object: bacnet.ObjectID{Type: bacnet.AnalogInput, Instance: uint32(i)},
			Results: []bacnet.PropertyResult{
				{PropertyRef: bacnet.PropertyRef{Property: bacnet.PropPresentValue, Index: bacnet.NoIndex}, Values: []any{float32(i)}},
				{PropertyRef: bacnet.PropertyRef{Property: bacnet.PropStatusFlags, Index: bacnet.NoIndex}, Values: []any{bacnet.BitString{false, false, false, false}}},
				{PropertyRef: bacnet.PropertyRef{Property: bacnet.PropReliability, Index: bacnet.NoIndex}, Values: []any{bacnet.Enumerated(0)}},
			}})
	}
	data, err := bacnet.EncodeReadPropertyMultipleACK(res)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := bacnet.DecodeReadPropertyMultipleACK(data); err != nil {
			b.Fatal(err)
		}
	}
}
