// Package bacnet is the BACnet/IP adapter: it reads analog, binary and
// multi-state inputs, outputs and values of BACnet devices, subscribes to
// their changes of value, writes commandable objects at a priority, and
// helps commission them (Who-Is discovery, object walk, config snippet).
//
// # Why no library
//
// The protocol subset is implemented here, over UDP, with no dependency.
// The Go BACnet libraries we know of (alexbeltran/gobacnet, NubeDev/bacnet,
// ulbios/bacnet) are not served by the module proxy this project builds
// from, and the first two are unmaintained forks of a 2018 code base with no
// foreign-device registration and no COV client. The subset Lintel needs is
// small and fully specified by ANSI/ASHRAE 135 (clauses 20 and 21, Annex J),
// so owning it costs less than vendoring: about 2,000 lines, tested against
// the standard's Annex F example encodings, round trips and a fuzzed decoder.
//
// # What is implemented
//
//   - BVLC (Annex J): Original-Unicast-NPDU, Original-Broadcast-NPDU,
//     Forwarded-NPDU (decoded), Register-Foreign-Device,
//     Distribute-Broadcast-To-Network, BVLC-Result.
//   - NPDU: version 1, with destination and source networks, so devices
//     behind a BACnet router (an MS/TP trunk) are read through it
//     (Device.Network and MAC); Who-Is is a global broadcast so routers pass
//     it on. Network-layer messages are ignored (no router discovery: the
//     router's address is configured).
//   - APDU: every PDU type (Confirmed-Request, Unconfirmed-Request,
//     Simple-ACK, Complex-ACK, Segment-ACK, Error, Reject, Abort).
//     Segmentation: the client accepts segmented Complex-ACKs (up to 32
//     segments, 64 KiB), acknowledges each segment (window size 1) and sends
//     a negative Segment-ACK for a segment out of order; it never sends a
//     segmented request. With ClientOptions.NoSegmentation it aborts
//     segmented answers instead. For a device that cannot segment (it aborts
//     with segmentation-not-supported) the bus halves its
//     ReadPropertyMultiple batches, and the object walk reads the object
//     list one index at a time.
//   - Application tags Null, Boolean, Unsigned, Signed, Real, Double, Octet
//     String, Character String (UTF-8, ISO 8859-1), Bit String, Enumerated,
//     Object Identifier; Date and Time are kept raw; context tags and
//     opening/closing tags, nested.
//   - Services: Who-Is/I-Am, ReadProperty, ReadPropertyMultiple,
//     WriteProperty (priority; NULL relinquishes), SubscribeCOV (unconfirmed
//     notifications) and UnconfirmedCOVNotification. A confirmed request sent
//     to the client is rejected (unrecognized-service).
//
// # Reading
//
// A Bus owns one UDP socket for all its devices. With Config.BBMD it
// registers that socket with the BBMD as a foreign device while it runs,
// again at half the TTL (every 10 s after a failure), so that devices on
// other subnets reach it. Each device is polled on
// its own period with ReadPropertyMultiple (present-value, status-flags,
// reliability, and units once for analog objects), batched up to
// MaxProperties per request. A device that refuses ReadPropertyMultiple is
// read with ReadProperty. Values: analog as numbers (a REAL keeps its
// shortest decimal form), binary as true (active) / false, multi-state as
// the state number. q is bad on the fault flag or any reliability other
// than no-fault-detected, stale when out of service, good otherwise; a
// present-value the device cannot give is published as null with q bad.
//
// Points with COV are subscribed after the device first answers, with
// their lifetime, renewed at half of it. While a subscription lives the
// point is still read every 5 poll periods (at least a minute) so that a
// lost notification is corrected; a refused subscription leaves the point
// polled. Notifications are published as they arrive, by a goroutine of
// their own, so that a device timing out on the polling loop does not delay
// them.
//
// # Faults
//
// Timeouts are retried (same invoke id). After OfflineAfter failed polls in
// a row the device's retained $status says offline and it is polled with
// exponential backoff (at most 5 minutes); its subscriptions are renewed
// when it answers again. Report gives each device's state
// (adapters.DeviceState): the kind of the last failed poll ("timeout",
// "error object/unknown-object", "reject reason 9"; never addresses or
// values), its time, the failures in a row and, while backing off, the next
// try.
//
// # Writes
//
// Through the command gate only: CheckWrite validates without sending and
// reports every write critical (signed) unless the point sets
// UnsignedWrites. Write sends WriteProperty of present-value at the point's
// priority (default 16; 1 and 2 only with AllowLifeSafety). The command on
// "<point>.relinquish" writes NULL at that priority.
package bacnet
