// Package buffer is Lintel's durable store-and-forward queue: a FIFO of
// records in a bbolt file that survives uplink outages, kill -9 and power cuts.
//
// # Model
//
// A Queue has exactly one writer goroutine. Appends and acks are sent to it and
// applied in group commits: one bbolt read-write transaction (one fsync) for
// everything queued. When a commit happens depends on who waits:
//
//   - Enqueued records and acks (nobody waits) are committed within the
//     commit interval (default 2s) of the first one, or once MaxBatch records
//     are queued: at 50 readings/s that is one commit every 2 seconds.
//   - Append and AppendAsync (a local QoS1 client waits for its PUBACK) are
//     committed at once, or as soon as the running commit ends, together
//     with everything queued by then. A waiter waits about one fsync; the
//     commit rate follows the waiters only as far as the disk allows.
//
// A few commits per second instead of one per record is what keeps an SD
// card alive and makes 100k records/s possible.
//
// # Guarantees
//
//   - Append returns nil only after its records are fsynced. A record whose
//     Append returned survives kill -9 and power loss.
//   - Enqueue hands records to the writer without waiting for the commit; a
//     crash within one commit interval may lose them. It is for in-process
//     publishers (adapters) that would otherwise stall a poll cycle; it brings
//     a commit forward only by filling MaxBatch.
//   - Every record gets a sequence number when it is committed. Sequence
//     numbers are persisted in the same transaction as the records, so they
//     only grow, never repeat after a crash, and have no gaps among committed
//     records (drops are counted separately).
//   - Read hands out each committed record once until Rewind; a record is
//     deleted only by Ack. After a restart (or Rewind) unacked records are
//     handed out again: delivery is at-least-once.
//   - Order: High records (status, alarms, access events) first; then
//     Normal records, interleaving those committed since the last Rewind
//     ("live") with the older backlog. Within each of these streams records
//     come in seq order, so a consumer sees seq gaps only while a backlog is
//     still draining.
//   - When MaxBytes is reached, drop-oldest evicts Normal records before
//     High ones; reject-new refuses the new records. Every drop is counted
//     by reason.
//   - When the file system is full (ENOSPC, EDQUOT) the same policy applies:
//     drop-oldest evicts the oldest records in a transaction of its own,
//     retries the commit, and for CommitFailureWindow keeps the stored
//     bytes at least 256 KiB (or twice the batch) below where the disk
//     filled, so that commits reuse the pages they free; reject-new refuses
//     the new records with ErrFull. Both count Drops.DiskFull. Every failed
//     transaction counts in CommitFails (lifetime) and in
//     CommitFailuresRecent, which returns to 0 one CommitFailureWindow
//     after the last failure: the health signal.
//   - A TTL drops records older than TTL by the queue clock, checked at
//     every commit. The queue clock follows Options.Now but never runs
//     backwards, and with time.Now it advances by monotonic time, so within
//     a process a wall-clock step neither expires records early nor keeps
//     them longer.
//     At open it starts at the newest stored stamp if the wall clock is
//     behind it. Record.Time is on this clock; Stats.Oldest is converted
//     back to the wall clock.
//   - A file that cannot be opened or fails bbolt's consistency check is moved
//     aside as <name>.bad-<time> and the queue starts empty; Quarantined
//     reports it. The gateway never crash-loops on a bad file.
//
// # Caveats
//
// The bbolt file never shrinks; freed pages are reused. The queue holds the
// file lock while open, so a second process cannot open the same file.
package buffer
