// Package command is the command gate: the only path from a message to
// Adapter.Write. A message on a topic is never enough to move hardware.
//
// Commands arrive on lintel/<gateway>/<device>/<point>/set from the cloud
// (the uplink subscribes) or from local clients the ACL allows. The checks,
// in order, each with its own reason on the result topic: the envelope is
// well formed and at most 4 KiB; it is addressed to this gateway; the device
// and point or command exist and are writable; the value is valid for it
// (type, range, enum, template parameters), checked without touching the
// device. For every point and command, unless its configuration says
// unsigned_writes (never for critical ones): an Ed25519 signature by a
// configured signer over Canonical(gateway, device, point, value, id,
// expires, nonce); expires in the future and at most MaxTTL ahead; a nonce
// never seen before, kept in a bbolt file so a replay after a restart fails
// too. Nonces are pruned a day after their command expired; the store keeps
// that horizon and refuses any command expiring before it, so a clock that
// jumps forwards (pruning) and back cannot reopen a used command. A clock
// gone back counts the per-point rate window from the new now. Last, a per-point rate limit. Only then is Write called. An envelope
// over 4 KiB is still answered on its result topic. Once Stop is called (or
// the ctx of Handle has ended) every command is refused with "gateway
// stopping" and nothing more is written; Stop returns when writes in
// progress have ended. Refuse answers and audits a command refused before
// any check (no free command slot).
//
// An accepted command is answered on …/set/result, logged, appended to the
// local audit log (commands.log, rotated at 1 MiB, 3 kept) and published as
// an event on lintel/<gateway>/$commands. Refusals cannot erase it or flood
// anything: they go to their own rotated log (commands-refused.log), and per
// source and target (device/point) and 10 s window only the first 3 (20 in
// all) are reported one by one (a WARN line, a log line, the result: one
// published record each); the rest are counted into one summary per target
// and window (a WARN line, a log line, one $commands event), at most 32
// targets per window (the excess shares one). Every refusal is thus counted
// in the refusals log. Command values are not recorded.
package command
