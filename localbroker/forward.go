package localbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/buffer"
)

// forwardHook copies network clients' publishes on forwarded topics into the
// spool. mochi calls OnPublish before it sends the PUBACK, so a QoS1 client's
// PUBACK means the message is durable.
type forwardHook struct {
	mqtt.HookBase
	forwarded func(topic string) bool
	spool     Spool
	timeout   time.Duration
	log       *slog.Logger
}

func (h *forwardHook) ID() string { return "lintel-forward" }

func (h *forwardHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *forwardHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline { // Broker.Publish already spooled it
		return pk, nil
	}
	if !h.forwarded(pk.TopicName) {
		return pk, nil
	}
	rec := buffer.Record{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), Retain: pk.FixedHeader.Retain}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	var err error
	if pk.FixedHeader.Qos == 0 {
		err = h.spool.Enqueue(ctx, rec)
	} else {
		err = h.spool.Append(ctx, rec)
	}
	if err == nil {
		return pk, nil
	}
	h.log.Error("cannot buffer a client's message; not acknowledged", "client", cl.ID, "topic", pk.TopicName, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		code := packets.ErrImplementationSpecificError
		if errors.Is(err, buffer.ErrFull) {
			code = packets.ErrQuotaExceeded
		}
		return pk, code // mochi answers with a failing PUBACK reason code
	}
	// MQTT 3.1.1 has no failing PUBACK: drop the connection so the client
	// keeps the message and sends it again after reconnecting.
	cl.Stop(fmt.Errorf("buffer: %w", err))
	return pk, packets.ErrRejectPacket
}
