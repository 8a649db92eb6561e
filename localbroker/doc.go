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
// group commit, so a poll cycle is not slowed down. A network client's QoS1
// publish is appended and waits for the fsync: mochi runs OnPublish before it
// writes the PUBACK, so the client's PUBACK means the message is durable. If
// the buffer fails, an MQTT 5 client gets a failing PUBACK reason code and an
// MQTT 3.1.1 client is disconnected (it keeps the message and re-sends it).
//
// # Caveat
//
// mochi handles one client's packets in order on one goroutine, so a single
// local connection publishing QoS1 on forwarded topics waits up to one commit
// interval per message.
package localbroker
