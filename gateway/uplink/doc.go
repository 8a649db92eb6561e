// Package uplink store-and-forwards the durable buffer to the cloud broker
// over mutual TLS (TLS 1.2 or later, the broker verified against the
// configured CA only; there is no switch to turn any of this off).
//
// # Delivery
//
// The buffer, not the MQTT library, is the source of truth. Records are read
// from the buffer and published with QoS 1, up to MaxInflight at a time. A
// record is acked in the buffer (deleted) only when its PUBACK arrived.
// paho runs with AutoReconnect off and CleanSession on: then a lost
// connection fails every in-flight token instead of completing it, and the
// uplink reconnects itself with exponential backoff and jitter (capped at
// 60 s), rewinds the buffer and re-sends every unacked record: status and
// alarms first, then live readings interleaved with the backlog, each stream
// in seq order (see buffer.Queue.Read). The oldest message in flight
// waiting AckTimeout for its PUBACK (counted from when it became the oldest)
// ends the session, so a half-open connection cannot stall delivery;
// Stats.OldestInflight reports the wait as it grows. A session that got any
// PUBACK starts the backoff over.
//
// One record never blocks the queue: a record the Encoder refuses or whose
// topic no broker accepts (empty, wildcards, NUL, not UTF-8) is moved to the
// buffer's dead-letter bucket instead of being sent. A record that was the
// oldest in flight when the connection was lost, or that got no PUBACK
// within AckTimeout while later records did, is suspect; after a loss the
// next sessions send one record at a time until the suspect is acknowledged.
// DeadLetterAfter such session endings with the same suspect, no other
// suspect in between, dead-letter it. Ack timeouts with nothing acknowledged
// (a hung cloud) suspect nobody. Stats.DeadLettered counts the moves.
//
// Delivery is at-least-once: with the default encoder (SeqJSON) each
// payload carries the gateway's "seq" so the cloud side can drop duplicates
// and detect gaps.
//
// # Adding a cloud format
//
// Implement Encoder (topic and payload from a buffer.Record) and set
// Config.Encoder; nothing else changes. encoder_test.go has a toy one.
//
// A format with session state also implements Session (Config.Session;
// package sparkplug is one): it gives each connection's Will, publishes
// after each connect and before a clean disconnect (instead of the $status
// messages), may hold delivery, and may publish records at QoS 0. A QoS 0
// record is acked only after the PUBACK of a later QoS 1 Fence on the same
// connection, so the buffer stays the source of truth.
//
// # Throughput
//
// One session is connect, deliver (reads a window ahead, publishes), one
// acker goroutine (waits for PUBACKs in send order, acks the buffer in
// batches) and drain. PUBLISHes written while the connection is busy leave
// together in one TLS record (batchConn); paho's own message store is
// replaced by a no-op, since a paho client is never reused. BenchmarkDrainVsBridge
// compares the shipped binary with a Mosquitto bridge.
//
// The retained lintel/<gateway>/$status says {"online":true,…} after every
// connect; the Last Will and a clean shutdown set it to {"online":false}.
package uplink
