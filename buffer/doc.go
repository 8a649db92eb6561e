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
// Beside the buffer file <name> live <name>.seq (the seq high-water mark),
// <name>.clean (present only while the queue is closed after a clean Close)
// and, after damage, <name>.bad-<time>.
//
// # Guarantees
//
//   - Append returns nil only after its records are fsynced. A record whose
//     Append returned survives kill -9 and power loss.
//   - Enqueue hands records to the writer without waiting for the commit; a
//     crash within one commit interval may lose them. It is for in-process
//     publishers (adapters) that would otherwise stall a poll cycle; it brings
//     a commit forward only by filling MaxBatch.
//   - Every record gets a sequence number when it is committed. Seqs only
//     grow and are never issued twice, also across a quarantine or a lost
//     buffer file: before a commit uses a seq above the mark in <name>.seq,
//     the writer reserves the next 16384 and fsyncs that file (one small
//     write per 16384 records, not one per commit). Within one run, and
//     across a clean Close (which writes the exact mark), committed records
//     have no seq gaps (drops are counted separately); a restart after a
//     crash, a quarantine or a lost file continues above the reserved mark,
//     skipping up to 16384 seqs.
//   - Read hands out each committed record once until Rewind; a record is
//     deleted only by Ack, DeadLetter or a counted drop. After a restart (or Rewind) unacked
//     records are handed out again: delivery is at-least-once.
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
//   - DeadLetter moves records out of the queue into a dead-letter bucket in
//     one fsynced commit; Read no longer hands them out, and they survive
//     restarts until ClearDeadLetters. The bucket keeps at most
//     MaxDeadLetters; older ones are deleted and counted.
//
// # Damage, permissions, a vanished file
//
//   - Open never hands an unchecked file to bbolt. Without a clean-shutdown
//     marker that matches the file (inode, size, mtime, hash of the meta and
//     freelist pages) it validates every page first, with bounds-checked
//     reads in the caller's goroutine (bbolt's own check panics in a
//     goroutine of its own, which no recover reaches, and a truncated file
//     faults through its mmap). This costs one read of the file, not its
//     size in memory. A file that fails is proven damaged: it is renamed
//     <name>.bad-<time> and kept unchanged, and every record that can still
//     be read (through the current and the previous transaction's tree, and
//     from any other intact leaf page) is copied into a new file with its
//     seq. Stats reports Quarantined, Salvaged and SalvageLost, and the
//     event is logged. Salvage may bring back records that were already
//     acked (duplicates, with their original seq); records found only on
//     loose leaf pages come back as Normal priority.
//   - One torn meta page (a power cut during a commit) is not damage: bbolt
//     uses the other one, which is the last completed commit.
//   - A meta page that reached the disk without its commit's data pages (a
//     device that reorders writes across a flush) can lead to an older
//     tree that is sound in itself, because bbolt reuses the pages of the
//     tree before the previous one. Every write transaction stamps its id
//     in the meta bucket, and the full check treats a tree whose stamp is
//     not its meta page's txid as damage: the salvage then reads the
//     previous commit's tree too, so records it stored are not lost. A file
//     written since by another bbolt program fails the same check and is
//     quarantined and salvaged.
//   - After a clean Close (the marker matches), Open checks only the meta
//     pages, the freelist and the root page, so a large buffer starts in
//     milliseconds. Damage in other pages that appeared while the gateway
//     was stopped is then found only when those pages are used: a bbolt
//     panic ends the process, and since Open removed the marker before
//     opening, the next start checks in full and quarantines; a record that
//     cannot be decoded makes Read fail and Close leave no marker, with the
//     same effect at the next start.
//   - Permission and read-only errors (EACCES, EPERM, EROFS) are refusals,
//     never damage: Open returns an error that says how to fix it and
//     leaves every file as it is. So are ErrLocked and other errors opening
//     the file. I/O errors (EIO) while reading pages count as damage.
//   - ReadStats reads the file with the same checker, under a shared lock,
//     without bbolt: a damaged file gives an error, never a panic.
//   - Every CheckInterval (default 5s) the queue compares the device and
//     inode at its path with the open file. When the path is gone (e.g. the
//     data directory was deleted), Stats.Problem says so and Append and
//     AppendAsync fail with ErrFileGone, so nothing new is acknowledged; the
//     queue then recreates the directory (0700) and the file from the open
//     descriptor, which still reads the deleted file, with every stored
//     record, switches to it and clears Problem. Records appended between
//     the deletion and its detection are in the deleted file and are moved
//     with the rest; a crash before the recreation loses them. Enqueue keeps
//     accepting records meanwhile (into the deleted file, moved the same
//     way). A different file at the path is never overwritten: Problem
//     stays set until a restart.
//
// # Caveats
//
// The bbolt file never shrinks; freed pages are reused. The queue holds the
// file lock while open, so a second process cannot open the same file.
package buffer
