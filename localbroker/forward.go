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
// spool, and acknowledges a QoS 1 publish only once it is durable.
//
// mochi reads one client's packets in order on one goroutine, so waiting for
// the group commit inside OnPublish would limit a client to one message per
// commit interval. Instead a QoS 1 publish is handed to the spool with a
// completion callback and mochi sends nothing; when the commit lands, the
// completer writes the PUBACK (in the order the publishes came) and delivers
// the message to local subscribers. QoS 2 keeps the blocking path.
type forwardHook struct {
	mqtt.HookBase
	forwarded func(topic string) bool
	spool     Spool
	timeout   time.Duration
	log       *slog.Logger
	// deliver publishes an acknowledged message to local subscribers.
	deliver func(topic string, payload []byte, retain bool, qos byte) error
	// completions carries finished appends to the completer goroutine;
	// stop ends it (the buffer may still finish appends after that: those
	// clients get no PUBACK and re-send, a duplicate the cloud drops by seq).
	completions chan completion
	stop        chan struct{}
	stopped     chan struct{}
}

func (h *forwardHook) done(c completion) {
	select {
	case h.completions <- c:
	case <-h.stop:
	}
}

type completion struct {
	cl  *mqtt.Client
	pk  packets.Packet
	err error
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
	switch pk.FixedHeader.Qos {
	case 0:
		err = h.spool.Enqueue(ctx, rec)
	case 1:
		pk := pk // the callback outlives this call
		pk.Payload = rec.Payload
		err = h.spool.AppendAsync(ctx, func(err error) { h.done(completion{cl, pk, err}) }, rec)
		if err == nil {
			return pk, packets.ErrRejectPacket // acknowledged by the completer
		}
	default:
		err = h.spool.Append(ctx, rec)
	}
	if err == nil {
		return pk, nil
	}
	return pk, h.refuse(cl, pk, err)
}

// refuse answers a publish the buffer did not take.
func (h *forwardHook) refuse(cl *mqtt.Client, pk packets.Packet, err error) error {
	h.log.Error("cannot buffer a client's message; not acknowledged", "client", cl.ID, "topic", pk.TopicName, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		code := packets.ErrImplementationSpecificError
		if errors.Is(err, buffer.ErrFull) {
			code = packets.ErrQuotaExceeded
		}
		return code // mochi answers with a failing PUBACK reason code
	}
	// MQTT 3.1.1 has no failing PUBACK: drop the connection so the client
	// keeps the message and sends it again after reconnecting.
	cl.Stop(fmt.Errorf("buffer: %w", err))
	return packets.ErrRejectPacket
}

// complete runs until stop: for each durable message it sends the PUBACK,
// then delivers the message locally.
func (h *forwardHook) complete() {
	defer close(h.stopped)
	for {
		var c completion
		select {
		case c = <-h.completions:
		case <-h.stop:
			return
		}
		if c.err != nil {
			if code, ok := h.refuse(c.cl, c.pk, c.err).(packets.Code); ok {
				c.cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: c.pk.PacketID, ReasonCode: code.Code})
			}
			continue
		}
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: c.pk.PacketID}
		if err := c.cl.WritePacket(ack); err != nil {
			// The client is gone; it re-sends after reconnecting and the
			// cloud side drops the duplicate by seq.
			h.log.Debug("PUBACK not sent", "client", c.cl.ID, "err", err)
		}
		if err := h.deliver(c.pk.TopicName, c.pk.Payload, c.pk.FixedHeader.Retain, c.pk.FixedHeader.Qos); err != nil {
			h.log.Warn("local delivery after buffering failed", "topic", c.pk.TopicName, "err", err)
		}
	}
}
