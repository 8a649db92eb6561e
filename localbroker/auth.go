package localbroker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Counters are what the broker refused, for metrics and the audit log.
type Counters struct {
	PendingRefused uint64 // connections closed unread: too many not yet authenticated
	AuthFailures   uint64 // wrong or missing credentials
	AuthBlocked    uint64 // attempts refused unchecked while a source was backing off
	AuthBusy       uint64 // attempts refused unchecked: no password check slot in time
	WillDenied     uint64 // CONNECTs refused for a Will on a topic the user may not write
	WriteDenied    uint64 // PUBLISHes dropped by the ACL
	ReadDenied     uint64 // SUBSCRIBE filters refused by the ACL
	Abusive        uint64 // clients disconnected for oversized packets or topics
	// SubscribeRefused counts filters refused for a subscription cap.
	SubscribeRefused uint64
	// TakeoverDenied counts CONNECTs refused for a client ID whose session
	// belongs to another user.
	TakeoverDenied uint64
}

// Protocol bounds a client cannot negotiate away.
const (
	maxTopicBytes  = 1024
	maxTopicLevels = 32
	minKeepalive   = 5   // seconds
	maxKeepalive   = 600 // seconds; 0 ("never") is raised to this
)

// authHook authenticates (bcrypt passwords or client certificates),
// slows down guessing per source address, and authorises with the ACL.
type authHook struct {
	mqtt.HookBase
	users     atomic.Pointer[Users]
	acl       atomic.Pointer[ACL]
	certUsers map[string]bool // listener IDs where the certificate CN is the user
	guard     *guard
	gate      *gate
	// checks holds a token per bcrypt comparison running; waiting counts
	// logins waiting for one.
	checks         chan struct{}
	waiting        atomic.Int32
	connectTimeout time.Duration
	log            *slog.Logger

	authFailures, authBlocked, authBusy, willDenied, writeDenied, readDenied, abusive, takeoverDenied atomic.Uint64

	sessMu   sync.Mutex
	sessions map[string]sessionOwner // client ID → the user whose session holds it
}

// sessionOwner binds a client ID to a user; cl is the connection that last
// claimed it, so that an older connection ending does not free the ID.
type sessionOwner struct {
	user string
	cl   *mqtt.Client
}

// bindSession claims id for user, or reports that another user's session
// holds it. mochi's takeover does not compare user names.
func (h *authHook) bindSession(id, user string, cl *mqtt.Client) bool {
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	if o, ok := h.sessions[id]; ok && o.user != user {
		return false
	}
	if h.sessions == nil {
		h.sessions = map[string]sessionOwner{}
	}
	h.sessions[id] = sessionOwner{user: user, cl: cl}
	return true
}

// unbindSession frees cl's client ID when cl still holds it.
func (h *authHook) unbindSession(cl *mqtt.Client) {
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	if o, ok := h.sessions[cl.ID]; ok && o.cl == cl {
		delete(h.sessions, cl.ID)
	}
}

// OnClientExpired frees the client ID of an expired session.
func (h *authHook) OnClientExpired(cl *mqtt.Client) { h.unbindSession(cl) }

func (h *authHook) ID() string { return "lintel-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnDisconnect, mqtt.OnClientExpired}, []byte{b})
}

func (h *authHook) counters() Counters {
	return Counters{
		PendingRefused: h.gate.refused.Load(),
		AuthFailures:   h.authFailures.Load(), AuthBlocked: h.authBlocked.Load(), AuthBusy: h.authBusy.Load(), WillDenied: h.willDenied.Load(),
		WriteDenied: h.writeDenied.Load(), ReadDenied: h.readDenied.Load(), Abusive: h.abusive.Load(),
		TakeoverDenied: h.takeoverDenied.Load(),
	}
}

// OnConnect bounds the keepalive: a client asking for none (0) or for hours
// would otherwise hold a slot forever after vanishing.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	ka := cl.State.Keepalive
	if ka == 0 || ka > maxKeepalive {
		ka = maxKeepalive
	}
	ka = max(ka, minKeepalive)
	if ka != cl.State.Keepalive {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true // MQTT 5 clients are told
	}
	return nil
}

// OnConnectAuthenticate refuses anonymous clients, wrong passwords, sources
// that are backing off after failures, and Wills on topics the user may not
// write (mochi publishes Wills without an ACL check).
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	source, name := sourceOf(cl), string(pk.Connect.Username)
	if h.certUsers[cl.Net.Listener] {
		name = peerCommonName(cl)
	}
	if h.guard.blocked(source, name) {
		h.authBlocked.Add(1)
		h.log.Warn("client refused: too many failed logins from this source or for this user", "user", name, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		return false
	}
	user, ok, busy := h.authenticate(cl, pk)
	if busy {
		h.authBusy.Add(1)
		h.log.Warn("client refused: no password check free in time", "user", name, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		return false
	}
	if !ok {
		h.authFailures.Add(1)
		h.guard.fail(source, name)
		h.log.Warn("client refused: bad credentials", "user", user, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		return false
	}
	h.guard.succeed(source, name)
	if pk.Connect.WillFlag && !h.acl.Load().CanWrite(user, pk.Connect.WillTopic) {
		h.willDenied.Add(1)
		h.log.Warn("client refused: Will on a topic the user may not write", "user", user, "topic", pk.Connect.WillTopic)
		return false
	}
	if !h.bindSession(cl.ID, user, cl) {
		h.takeoverDenied.Add(1)
		h.log.Warn("client refused: client ID in use by another user's session", "user", user, "client", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	if gc := gatedOf(cl.Net.Conn); gc != nil {
		h.gate.authenticated(gc)
	}
	return true
}

func (h *authHook) authenticate(cl *mqtt.Client, pk packets.Packet) (user string, ok, busy bool) {
	user = string(pk.Connect.Username)
	if h.certUsers[cl.Net.Listener] {
		cn := peerCommonName(cl)
		if cn == "" || (user != "" && user != cn) {
			return user, false, false
		}
		cl.Properties.Username = []byte(cn) // the ACL applies to the certificate's name
		return cn, true, false
	}
	if user == "" {
		return user, false, false
	}
	if !h.acquireCheck(cl) {
		return user, false, true
	}
	defer func() { <-h.checks }()
	return user, h.users.Load().Check(user, pk.Connect.Password), false
}

// acquireCheck takes a password check slot, waiting at most until the
// connection's connect deadline.
func (h *authHook) acquireCheck(cl *mqtt.Client) bool {
	select {
	case h.checks <- struct{}{}:
		return true
	default:
	}
	wait := h.connectTimeout
	if gc := gatedOf(cl.Net.Conn); gc != nil {
		wait = time.Until(gc.deadline)
	}
	if wait <= 0 {
		return false
	}
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case h.checks <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func peerCommonName(cl *mqtt.Client) string {
	conn := cl.Net.Conn
	if w, ok := conn.(*wsConn); ok {
		conn = w.Conn
	}
	if c, ok := conn.(*tls.Conn); ok {
		if st := c.ConnectionState(); len(st.PeerCertificates) > 0 {
			return st.PeerCertificates[0].Subject.CommonName
		}
	}
	return ""
}

// OnDisconnect frees the client ID when the session ends with the
// connection, and counts clients mochi dropped for oversized packets.
func (h *authHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if expire {
		h.unbindSession(cl)
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		h.abusive.Add(1)
		h.log.Warn("client disconnected: packet too large", "client", cl.ID, "remote", cl.Net.Remote)
	}
}

// OnACLCheck authorises subscriptions and deliveries. Writes are decided in
// OnPublish, where the reply to a denied publish can be chosen.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	if h.canRead(cl, topic) {
		return true
	}
	h.readDenied.Add(1)
	return false
}

// canRead reports whether cl may receive from topic (a topic name or a
// subscription filter).
func (h *authHook) canRead(cl *mqtt.Client, topic string) bool {
	return topicWithinLimits(topic) && h.acl.Load().CanRead(string(cl.Properties.Username), topic)
}

// OnPublish drops denied publishes without disconnecting the client: a
// disconnected MQTT 3.1.1 client would re-send the message after
// reconnecting, forever. MQTT 5 clients get PUBACK 0x87 (not authorized);
// MQTT 3.1.1 clients, which have no negative PUBACK, get an ordinary PUBACK
// and the message goes nowhere (what Mosquitto does). Oversized topics get
// the client disconnected.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if !topicWithinLimits(pk.TopicName) {
		h.abusive.Add(1)
		h.log.Warn("client disconnected: topic too long or too deep", "client", cl.ID, "bytes", len(pk.TopicName))
		cl.Stop(packets.ErrTopicNameInvalid)
		return pk, packets.ErrRejectPacket
	}
	user := string(cl.Properties.Username)
	if h.acl.Load().CanWrite(user, pk.TopicName) {
		return pk, nil
	}
	h.writeDenied.Add(1)
	h.log.Warn("publish denied by ACL", "user", user, "topic", pk.TopicName)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrNotAuthorized
	}
	// mochi publishes anyway on any other error for QoS 0: ignore it explicitly.
	return pk, packets.CodeSuccessIgnore
}

func topicWithinLimits(topic string) bool {
	return len(topic) <= maxTopicBytes && strings.Count(topic, "/") < maxTopicLevels
}

// sourceOf is the key a client's failed logins are counted under: see
// connSource.
func sourceOf(cl *mqtt.Client) string {
	if gc := gatedOf(cl.Net.Conn); gc != nil {
		return gc.source
	}
	return addrSource(cl.Net.Remote)
}
