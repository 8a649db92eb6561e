// Package sparkplug makes the uplink a Sparkplug B edge node (uplink format
// sparkplug-b): a Node is both the uplink's Encoder and its Session.
//
// # Topics and payloads
//
// Messages go to spBv1.0/<group>/<NBIRTH|NDEATH|NDATA|DBIRTH|DDEATH|DDATA>/<edge node>[/<device>]
// with payloads of the published sparkplug_b.proto, encoded and decoded by
// hand with protowire (payload.go; field numbers as in the schema, golden
// bytes in payload_test.go). A Lintel device is a Sparkplug device, a point
// a metric of the same name; aliases are not used.
//
//   - NDEATH is the MQTT Will (QoS 1) of every connection, with the metric
//     bdSeq. bdSeq goes up by one (mod 256) before every CONNECT attempt and
//     is committed to StateFile (sparkplug.db, bbolt) first, so a restart
//     never repeats it. A clean shutdown, or a session the uplink ends
//     itself, publishes the NDEATH explicitly (DISCONNECT discards the Will).
//   - NBIRTH (seq 0) declares bdSeq, Node Control/Rebirth, lintel/command_result
//     and lintel/event; then one DBIRTH per device declares each configured
//     point with its datatype and the properties unit and scale, and carries
//     the last value sent (or is_null).
//   - Readings become DDATA; a device's $status record becomes DBIRTH
//     (online) or DDEATH (offline); command results and every other record
//     become NDATA (lintel/command_result, lintel/event: JSON strings).
//   - seq runs 0–255 and wraps, per connection, on every message but NDEATH;
//     it is stamped under one lock as the message is handed to paho, so
//     births from a Rebirth and data cannot interleave out of order.
//   - NCMD Node Control/Rebirth=true republishes NBIRTH and the DBIRTHs.
//
// # Primary host
//
// With PrimaryHostID, the node watches that host's STATE (retained, QoS 1)
// in the form PrimaryHostState names:
//
//   - 3.0: spBv1.0/STATE/<host>, JSON {"online":bool,"timestamp":ms}, both
//     members required. A STATE with an older timestamp than the last one
//     taken (a late Will of an earlier host session) counts as that last
//     one; the last timestamp is kept across the node's reconnects (not
//     across a restart), so a stale STATE left retained on the broker does
//     not decide after a reconnect either.
//   - 2.2: STATE/<host>, the UTF-8 payload ONLINE or OFFLINE exactly. It
//     has no timestamp: the last one received decides.
//   - auto (default): both topics. Until a 3.0 STATE is taken, 2.2 STATE
//     decides; from then on, for the process's life, 2.2 STATE is ignored
//     (logged once): a host that publishes 3.0 is a 3.0 host, and a 2.2
//     STATE still retained from before it was upgraded must not decide.
//     A host moved back to 2.2 needs the setting 2.2.
//
// A payload of neither form is ignored; it is logged unless it equals the
// last malformed payload logged for that topic (a retained one comes back
// on every reconnect). Nothing is born
// or sent until the host is online; on each connection the node waits for
// a STATE again. While the host is offline the uplink holds delivery and
// records stay in the buffer; when it is online again the node births anew
// and the backlog follows. A record is is_historical when it entered the
// buffer before the current NBIRTH: the backlog after a host or cloud
// outage or a restart. Unlike the specification, the node stays connected while the host is
// offline (there is one cloud server to go to).
//
// # Durability
//
// Sparkplug sends DATA, DBIRTH and DDEATH at QoS 0. The buffer still owns
// delivery: a record sent at QoS 0 is acked (deleted) only when a later
// QoS 1 message on the same connection, the fence (an empty PUBLISH on
// lintel/<gateway>/$fence), was PUBACKed: the broker handles one
// connection's PUBLISHes in order, so it had the record. A fence follows
// each run of records the buffer had ready, at most one window apart.
// What this proves is that the broker took the record, not that a host got
// it: QoS 0 is not queued for a disconnected subscriber, which is why the
// node holds data while the primary host's STATE is offline. The window in
// which a host can still miss data is between its connection dropping and
// the broker publishing its STATE Will (the host's keepalive). QoS1Data
// sends at QoS 1 instead (outside the specification; a host with a
// persistent session then gets the data queued).
//
// A connection lost (or the process killed) before a fence's PUBACK leaves
// its records unacked: they are sent again, as historical, after the next
// NBIRTH, so a host may see a value twice (same metric timestamp), never
// lose one the buffer held. After kill -9, records whose ack the buffer had
// not committed yet (acks are group-committed) are sent again too.
//
// # Commands
//
// DCMD spBv1.0/<group>/DCMD/<edge node>/<device>: each metric names a
// point. A String property lintel_envelope holds a signed Lintel command
// envelope (the JSON of lintel/<gw>/<device>/<point>/set, signed as for
// JSON commands), which is passed to the command gate as is; without it the
// metric's value becomes an unsigned envelope with id spb-<timestamp>-<i>,
// which the gate accepts only for points configured unsigned_writes. The
// gate rate-limits, audits and answers as for JSON commands; its answers
// reach the host as NDATA lintel/command_result.
package sparkplug
