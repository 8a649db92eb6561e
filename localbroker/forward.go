package localbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/lintel-gw/lintel/buffer"
)

// dedupeWindow is how many of a session's latest QoS 1 publishes are
// remembered for recognising re-sends. mochi lets a client have at most
// ReceiveMaximum (256) QoS 1 publishes unacknowledged, and only those can be
// re-sent.
const dedupeWindow = 256

// forwardHook copies network clients' publishes on forwarded topics into the
// spool, and acknowledges a QoS 1 publish only once it is durable.
//
// mochi reads one client's packets in order on one goroutine, so waiting for
// the group commit inside OnPublish would limit a client to one message per
// commit interval. Instead a QoS 1 publish is handed to the spool with a
// completion callback and mochi sends nothing; when the commit lands, the
// completer writes the PUBACK (in the order the publishes came) and delivers
// the message to local subscribers. QoS 2 keeps the blocking path.
//
// A client whose PUBACK was lost re-sends the publish with DUP set and the
// same packet id; the buffer would give the copy a new seq, so the cloud
// could not tell it from a new reading. Such a re-send, within the same
// session and with the same topic and payload as one of the session's last
// dedupeWindow QoS 1 publishes, is acknowledged once that publish is durable
// and is neither buffered nor delivered again.
type forwardHook struct {
	mqtt.HookBase
	forwarded func(topic string) bool
	spool     Spool
	timeout   time.Duration
	log       *slog.Logger
	// deliver publishes an acknowledged message to local subscribers.
	deliver func(topic string, payload []byte, retain bool, qos byte) error
	// completions carries finished appends to the completer goroutine;
	// stop ends it. Appends the buffer finishes after that get no PUBACK:
	// their clients re-send them in a new session, where they are buffered
	// again under a new seq (at-least-once).
	completions chan completion
	stop        chan struct{}
	stopped     chan struct{}

	mu       sync.Mutex
	sessions map[string]*sentWindow // by client ID
}

// sent is one QoS 1 publish handed to the spool.
type sent struct {
	id      uint16
	digest  uint64 // of topic and payload
	done    bool   // the append finished (err says how)
	err     error
	waiters []waiter // re-sends to acknowledge once this append finishes
}

// waiter is a DUP re-send acknowledged once orig's append and every append
// handed over before it have finished (the buffer finishes them in order).
type waiter struct {
	cl   *mqtt.Client
	pk   packets.Packet
	orig *sent
}

// sentWindow is a session's latest QoS 1 publishes.
type sentWindow struct {
	byID map[uint16]*sent
	ring [dedupeWindow]*sent
	next int
	tail *sent // the latest one handed to the spool
}

func (w *sentWindow) add(s *sent) {
	if old := w.ring[w.next]; old != nil && w.byID[old.id] == old {
		delete(w.byID, old.id)
	}
	w.ring[w.next] = s
	w.next = (w.next + 1) % dedupeWindow
	w.byID[s.id] = s
	w.tail = s
}

func (h *forwardHook) done(c completion) {
	select {
	case h.completions <- c:
	case <-h.stop:
	}
}

type completion struct {
	cl   *mqtt.Client
	pk   packets.Packet
	err  error
	sent *sent
}

func (h *forwardHook) ID() string { return "lintel-forward" }

func (h *forwardHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect || b == mqtt.OnClientExpired
}

// OnSessionEstablished forgets what an earlier session sent when the client
// starts a new one: re-sends belong to the session they were sent in.
func (h *forwardHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		h.forget(cl.ID)
	}
}

// OnDisconnect forgets a session that ends with its connection.
func (h *forwardHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.forget(cl.ID)
	}
}

// OnClientExpired forgets an expired session.
func (h *forwardHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl.ID) }

func (h *forwardHook) forget(clientID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, clientID)
}

func digest(topic string, payload []byte) uint64 {
	d := fnv.New64a()
	d.Write([]byte(topic))
	d.Write([]byte{0})
	d.Write(payload)
	return d.Sum64()
}

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
		s := &sent{id: pk.PacketID, digest: digest(pk.TopicName, pk.Payload)}
		if h.resent(cl, pk, s.digest) {
			return pk, packets.ErrRejectPacket // acknowledged with the original
		}
		err = h.spool.AppendAsync(ctx, func(err error) { h.done(completion{cl, pk, err, s}) }, rec)
		if err == nil {
			// The completion may already have finished s; then a re-send
			// is acknowledged at once.
			h.remember(cl.ID, s)
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

func (h *forwardHook) remember(clientID string, s *sent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions == nil {
		h.sessions = map[string]*sentWindow{}
	}
	w := h.sessions[clientID]
	if w == nil {
		w = &sentWindow{byID: map[uint16]*sent{}}
		h.sessions[clientID] = w
	}
	w.add(s)
}

// resent handles a DUP re-send of a publish this session already handed to
// the spool; it reports false for anything else. The PUBACK keeps its place
// in order: it waits behind the session's latest append when that is still
// pending.
func (h *forwardHook) resent(cl *mqtt.Client, pk packets.Packet, d uint64) bool {
	if !pk.FixedHeader.Dup {
		return false
	}
	h.mu.Lock()
	w := h.sessions[cl.ID]
	if w == nil {
		h.mu.Unlock()
		return false
	}
	orig := w.byID[pk.PacketID]
	if orig == nil || orig.digest != d {
		h.mu.Unlock()
		return false
	}
	if !w.tail.done {
		w.tail.waiters = append(w.tail.waiters, waiter{cl, pk, orig})
		h.mu.Unlock()
		return true
	}
	err := orig.err
	h.mu.Unlock()
	h.acknowledge(cl, pk, err, false)
	return true
}

// finish records how s's append ended and returns the re-sends waiting on it.
func (h *forwardHook) finish(s *sent, err error) []waiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.done, s.err = true, err
	ws := s.waiters
	s.waiters = nil
	return ws
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

// acknowledge writes the PUBACK for a QoS 1 publish whose append ended with
// err, and delivers it locally when it is durable and deliver is set.
func (h *forwardHook) acknowledge(cl *mqtt.Client, pk packets.Packet, err error, deliver bool) {
	if err != nil {
		if code, ok := h.refuse(cl, pk, err).(packets.Code); ok {
			cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ReasonCode: code.Code})
		}
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
	if err := cl.WritePacket(ack); err != nil {
		// The client is gone; it re-sends in its session (recognised as a
		// re-send above) or, in a new session, as a new message.
		h.log.Debug("PUBACK not sent", "client", cl.ID, "err", err)
	}
	if !deliver {
		return
	}
	if err := h.deliver(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos); err != nil {
		h.log.Warn("local delivery after buffering failed", "topic", pk.TopicName, "err", err)
	}
}

// complete runs until stop: for each finished append it sends the PUBACK,
// delivers the message locally when it is durable, then acknowledges the
// re-sends that waited behind it.
func (h *forwardHook) complete() {
	defer close(h.stopped)
	for {
		var c completion
		select {
		case c = <-h.completions:
		case <-h.stop:
			return
		}
		waiters := h.finish(c.sent, c.err)
		h.acknowledge(c.cl, c.pk, c.err, true)
		for _, w := range waiters {
			h.mu.Lock()
			err := w.orig.err
			if !w.orig.done { // cannot happen: appends finish in order
				err = errors.New("original publish still pending")
			}
			h.mu.Unlock()
			h.acknowledge(w.cl, w.pk, err, false)
		}
	}
}
