import GRDB
import TimelineLink

/// The analyst's client's own tables in its home's `client.sqlite`, beside the outbox's (which an office replica
/// shares): the short IDs, the search index, the marks. Their own append-only migrations, run on the same file.
enum ClientTables {
    static func migrate(_ queue: DatabaseQueue) throws {
        var migrator = DatabaseMigrator()
        IDIndex.migrate(&migrator)
        SearchIndex.migrate(&migrator)
        migrator.registerMigration("v5-marks") { db in
            try db.execute(
                sql:
                    "CREATE TABLE marks (name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL CHECK (version >= 0))"
            )
        }
        try migrator.migrate(queue)
    }
}
