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

#endif
