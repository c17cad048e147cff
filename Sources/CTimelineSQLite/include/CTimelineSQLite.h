#ifndef TIMELINE_SQLITE_H
#define TIMELINE_SQLITE_H

#include <stdint.h>

/// Turns SQLite's memory statistics off. With them on (the default), every allocation SQLite makes takes a
/// process-wide mutex to count itself: about a tenth of the writer's time per edit, measured with the store's
/// own schema. Takes effect only before SQLite is initialized, that is before the process opens its first
/// connection. Returns SQLITE_OK, or SQLITE_MISUSE when it came too late.
int timeline_sqlite_disable_memory_statistics(void);

/// Bytes SQLite counts as allocated now: always 0 while the statistics are off.
int64_t timeline_sqlite_memory_used(void);

/// Replaces SQLite's automatic checkpoint on `db` (an `sqlite3 *`) with a WAL hook that does the same at
/// `autocheckpoint` frames, and also records, for the thread that committed, how many frames the log holds after
/// each commit (`timeline_sqlite_wal_frames`). SQLite's own hook keeps no such count. Returns SQLITE_OK.
int timeline_sqlite_watch_wal(void *db, int autocheckpoint);

/// The number of frames the WAL held after the last commit on this thread through a watched connection, or -1
/// when none happened since `timeline_sqlite_reset_wal_frames`.
int timeline_sqlite_wal_frames(void);

/// Forgets the count, so that a transaction that commits nothing is not taken for one that did.
void timeline_sqlite_reset_wal_frames(void);

#endif
