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
package localbroker
