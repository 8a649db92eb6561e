// Package localbroker is Lintel's embedded MQTT broker (mochi-mqtt/server v2):
// the bus between adapters, local clients such as a BMS or a dashboard, and
// the uplink.
//
// # Security defaults
//
//   - A listener without TLS must be on a loopback address; New refuses
//     anything else (ErrPlaintextNetwork), checking both the configured and
//     the bound address.
//   - Every network client must authenticate: users and bcrypt hashes come
//     from a users file (`name:<bcrypt>` lines, htpasswd -B format). Unknown
//     users cost the same bcrypt comparison as known ones.
//   - The ACL denies what no rule grants. Rules only grant, so their order
//     does not matter. In-process publishers (adapters, the command gate)
//     bypass it; network clients never do.
//   - A client ID belongs to the user whose session holds it: another user's
//     CONNECT with it is refused (Counters.TakeoverDenied) until that
//     session ends.
//
// # Limits (Limits; zero means the default)
//
// A source is an IPv4 address, an IPv6 /64, or, on a unix socket, the
// peer's uid (SO_PEERCRED).
//
//   - ConnectTimeout (5 s): a connection (TCP, websocket or unix) must
//     finish its TLS handshake (and websocket upgrade) and send CONNECT
//     within it, or it is closed.
//   - MaxPending (256) and MaxPendingPerSource (16): connections not yet
//     authenticated, in total and per source. A connection beyond either is
//     closed unread (Counters.PendingRefused); authenticated clients do not
//     count.
//   - MaxClients (64): authenticated clients. MaxPacket (64 KiB).
//   - MaxFiltersPerClient (100) and MaxFilters (2,000, every network
//     session's filters together, connected or not): a filter beyond either
//     is refused in SUBACK with 0x97 (MQTT 5) or 0x80 (MQTT 3.1.1) and
//     counted (Counters.SubscribeRefused). Re-subscribing a filter costs
//     nothing. A filter of more than 16 levels is refused as invalid (0x8F,
//     or 0x80) and counted too: each level can cost ~1 KB in mochi's topic
//     tree.
//   - MaxPasswordChecks (2): concurrent bcrypt comparisons. A login that
//     finds none free waits until its connect deadline, then is refused
//     (Counters.AuthBusy) without counting as a failure.
//   - Failed logins back off per source (after 5 failures: 1 s, doubling to
//     5 minutes) and per user name (after 10: 1 s, doubling to 1 minute),
//     refused unchecked meanwhile (Counters.AuthBlocked). A success clears
//     the user's count, and the source's only if every failure from it was
//     for that user. A count is forgotten after its longest back-off
//     without failures. The table holds 10,000 entries; one that is backing
//     off is never evicted.
//   - Keepalive is held between 5 s and 10 minutes; topics to 1,024 bytes
//     and 32 levels.
//
// Close closes the listeners and every connection at once, including ones
// that never sent CONNECT; it is safe to call more than once.
//
// # Forwarding
//
// Messages on the configured forward filters are copied into the Spool (the
// durable buffer). In-process publishes are enqueued without waiting for the
// group commit, so a poll cycle is not slowed down. A network client's QoS 1
// publish is acknowledged only once it is durable: it is handed to the buffer
// with a callback and the PUBACK is written (in order) when the commit lands,
// so one connection is not limited to one message per commit interval; the
// message reaches local subscribers at the same moment. If the buffer fails,
// an MQTT 5 client gets a failing PUBACK reason code and an MQTT 3.1.1
// client is disconnected (it keeps the message and re-sends it). /set
// (command) topics are never forwarded.
//
// Duplicates: the buffer gives every record a new seq, so the cloud cannot
// recognise a client's re-send by seq. A QoS 1 re-send (DUP set) in the same
// session, with the packet id, topic and payload of one of that session's
// last 256 QoS 1 publishes, is acknowledged once the first copy is durable
// and is neither buffered nor delivered again. A re-send in a new session
// (clean start, or after the session expired or the broker restarted) is
// buffered again under a new seq: local clients' publishes reach the cloud
// at least once.
package localbroker
