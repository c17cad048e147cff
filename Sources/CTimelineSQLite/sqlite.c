#include "CTimelineSQLite.h"

#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call.
int timeline_sqlite_disable_memory_statistics(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

int64_t timeline_sqlite_memory_used(void) { return (int64_t)sqlite3_memory_used(); }
