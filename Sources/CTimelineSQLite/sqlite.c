#include "CTimelineSQLite.h"

#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call.
int timeline_sqlite_disable_memory_statistics(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

int64_t timeline_sqlite_memory_used(void) { return (int64_t)sqlite3_memory_used(); }

// Set on the committing thread, read by the same thread right after its COMMIT returns.
static _Thread_local int wal_frames = -1;

static int watch_wal(void *arg, sqlite3 *db, const char *name, int frames) {
    wal_frames = frames;
    // As SQLite's default hook (sqlite3WalDefaultHook): a checkpoint once the log reaches the limit.
    if (frames >= (int)(intptr_t)arg) sqlite3_wal_checkpoint(db, name);
    return SQLITE_OK;
}

int timeline_sqlite_watch_wal(void *db, int autocheckpoint) {
    sqlite3_wal_hook((sqlite3 *)db, watch_wal, (void *)(intptr_t)autocheckpoint);
    return SQLITE_OK;
}

int timeline_sqlite_wal_frames(void) { return wal_frames; }

void timeline_sqlite_reset_wal_frames(void) { wal_frames = -1; }
