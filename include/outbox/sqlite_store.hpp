// The embedded store of the durable outbox: one SQLite file in WAL mode. See docs/outbox.md.
#pragma once

#include <outbox/outbox_store.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace outbox {

/// When opening a store runs PRAGMA quick_check, which reads the whole file (about a second
/// per GB here). SQLite's WAL survives a process crash by design; what damages a file is mostly
/// a disk or file system that loses or reorders writes, which shows most often after a power
/// loss or a crash of the machine: stops that also leave the WAL behind. Not always (a disk can
/// rot a page of a file closed cleanly): `always`, or `outbox inspect --check` now and then,
/// where that matters more than the time to start.
enum class IntegrityCheck {
    /// When the file's WAL (FILE-wal) is there at open: the last process to use the file did not
    /// close it (a crash, a kill, a power loss), or another process has it open now (then every
    /// open pays for the check). A clean close removes the WAL, so a relay restarted after a
    /// deploy does not read its whole backlog before its first delivery. An open that refuses
    /// the file leaves its WAL, so every later open checks it again.
    after_unclean_stop,
    /// At every open.
    always,
    /// Never (damage then shows as errors of the reads that meet it).
    never,
};

struct SqliteStoreOptions {
    /// true: PRAGMA synchronous = FULL for enqueues, whose commit reaches the disk before it is
    /// reported (an enqueue that completed survives a power loss); the relay's settlements
    /// commit with NORMAL (a power loss may undo the last ones: those events are delivered
    /// again). false: NORMAL for everything, faster, and a power loss (not a process crash) may
    /// lose the last enqueues before the WAL is synced.
    bool sync_every_commit = true;
    /// How long a write waits for another process's transaction (enqueuers and a relay may
    /// share one file) before it fails with StoreError::Kind::busy.
    std::chrono::milliseconds busy_timeout{10000};
    /// A damaged file is an error naming it, never reset.
    IntegrityCheck check_integrity = IntegrityCheck::after_unclean_stop;
    /// The file never grows past about this many bytes: a write that would fails with
    /// StoreError::Kind::full (the relay's deletions make room again). 0: the disk's limit.
    std::uint64_t max_file_bytes = 0;
    /// Enqueues fail with StoreError::Kind::full while the disk holding the file has less than
    /// this much free beyond what the transaction needs: the room is kept for the relay to
    /// record its deliveries (a delete needs room in the WAL too), which is what frees the
    /// disk again. 0: no reserve (a disk filled to the last byte may stop the relay).
    std::uint64_t min_free_disk_bytes = 64ull << 20;
    /// false: a file that does not exist is an error (tools that only look at a store).
    bool create_if_missing = true;
};

/// Opens the store in `path`, creating the file when it does not exist (unless told not to).
/// The relay lock is `path`-relay.lock beside it. Throws StoreError
/// naming the file and the cause: it cannot be opened or created (a missing or read-only
/// directory), it is not an outbox store, it fails its integrity check (see IntegrityCheck for
/// when that runs). Never resets or
/// repairs anything.
OutboxStorePtr open_sqlite_store(const std::string& path, SqliteStoreOptions options = {});

}  // namespace outbox
