import GRDB

/// The schema, as append-only named migrations: a migration once shipped is never edited, only followed.
/// The log's rules live in the schema itself, so that no code path (or person with `sqlite3`) can break them
/// without dropping a trigger first.
enum Schema {
    static let operations =
        "'event.create','event.update','event.delete','annotation.add','annotation.update','annotation.retract','timeline.meta'"

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-log-and-state") { db in
            try db.execute(
                sql: """
                    CREATE TABLE store_info (
                        key TEXT PRIMARY KEY NOT NULL,
                        value TEXT NOT NULL
                    ) WITHOUT ROWID;

                    -- The log: one row per edit. body is the edit's canonical JSON without its hash, exactly the
                    -- bytes the hash covers; the other columns repeat what queries need.
                    CREATE TABLE edits (
                        version INTEGER PRIMARY KEY CHECK (version >= 1),
                        event TEXT CHECK (event IS NULL OR length(event) = 26),
                        revision INTEGER NOT NULL CHECK (revision >= 0),
                        op TEXT NOT NULL CHECK (op IN (\(operations))),
                        body TEXT NOT NULL,
                        hash BLOB NOT NULL CHECK (length(hash) = 32),
                        CHECK ((op = 'timeline.meta') = (event IS NULL)),
                        CHECK ((op = 'timeline.meta') = (revision = 0))
                    );
                    CREATE UNIQUE INDEX edits_by_event ON edits(event, revision) WHERE event IS NOT NULL;

                    CREATE TRIGGER edits_contiguous BEFORE INSERT ON edits
                    WHEN NEW.version != (SELECT coalesce(max(version), 0) + 1 FROM edits)
                    BEGIN SELECT RAISE(ABORT, 'edits: versions must be contiguous'); END;
                    CREATE TRIGGER edits_append_only_update BEFORE UPDATE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;
                    CREATE TRIGGER edits_append_only_delete BEFORE DELETE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;

                    -- The current state, materialized from the log in the same transaction as the edits.
                    CREATE TABLE events (
                        id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
                        revision INTEGER NOT NULL CHECK (revision >= 1),
                        version INTEGER NOT NULL REFERENCES edits(version),
                        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
                        date_start TEXT,
                        date_end TEXT,
                        body TEXT NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX events_by_date ON events(date_start, id);

                    CREATE TABLE event_tags (
                        tag TEXT NOT NULL,
                        event TEXT NOT NULL REFERENCES events(id),
                        PRIMARY KEY (tag, event)
                    ) WITHOUT ROWID;

                    CREATE TABLE annotations (
                        id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
                        event TEXT NOT NULL REFERENCES events(id),
                        retracted INTEGER NOT NULL CHECK (retracted IN (0, 1)),
                        body TEXT NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX annotations_by_event ON annotations(event, id);

                    CREATE TABLE timeline_meta (
                        key TEXT PRIMARY KEY NOT NULL,
                        value TEXT NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        // LOG by tag walked every event with the tag and sorted them to return the first page, and verify
        // looked up each event's tags with a scan of the whole table. The tag rows now carry their event's date
        // (kept in step by the writer) in the order LOG pages by, and an index by event.
        migrator.registerMigration("v2-event-tags-by-date") { db in
            try db.execute(
                sql: """
                    ALTER TABLE event_tags ADD COLUMN date_start TEXT;
                    UPDATE event_tags SET date_start = (SELECT date_start FROM events WHERE events.id = event_tags.event);
                    CREATE INDEX event_tags_by_event ON event_tags(event, tag);
                    CREATE INDEX event_tags_by_date ON event_tags(tag, date_start IS NULL, date_start, event);
                    """)
        }
        // The log's CHECK on op was an IN list, for which SQLite builds a temporary B-tree on every insert: a third
        // of the cost of a log row (EXPLAIN shows OpenEphemeral). The same rule as a chain of comparisons costs
        // nothing. SQLite cannot change a CHECK in place, so the table is rebuilt as its documentation describes
        // (lang_altertable.html, "making other kinds of table schema changes"); GRDB runs a migration with foreign
        // keys off and checks them all before it commits.
        migrator.registerMigration("v3-edits-op-check-without-in-list") { db in
            try db.execute(
                sql: """
                    DROP TRIGGER edits_contiguous;
                    DROP TRIGGER edits_append_only_update;
                    DROP TRIGGER edits_append_only_delete;
                    CREATE TABLE edits_v3 (
                        version INTEGER PRIMARY KEY CHECK (version >= 1),
                        event TEXT CHECK (event IS NULL OR length(event) = 26),
                        revision INTEGER NOT NULL CHECK (revision >= 0),
                        op TEXT NOT NULL CHECK (
                            op = 'event.create' OR op = 'event.update' OR op = 'event.delete' OR op = 'annotation.add'
                            OR op = 'annotation.update' OR op = 'annotation.retract' OR op = 'timeline.meta'),
                        body TEXT NOT NULL,
                        hash BLOB NOT NULL CHECK (length(hash) = 32),
                        CHECK ((op = 'timeline.meta') = (event IS NULL)),
                        CHECK ((op = 'timeline.meta') = (revision = 0))
                    );
                    INSERT INTO edits_v3(version, event, revision, op, body, hash)
                        SELECT version, event, revision, op, body, hash FROM edits ORDER BY version;
                    DROP TABLE edits;
                    ALTER TABLE edits_v3 RENAME TO edits;
                    CREATE UNIQUE INDEX edits_by_event ON edits(event, revision) WHERE event IS NOT NULL;

                    CREATE TRIGGER edits_contiguous BEFORE INSERT ON edits
                    WHEN NEW.version != (SELECT coalesce(max(version), 0) + 1 FROM edits)
                    BEGIN SELECT RAISE(ABORT, 'edits: versions must be contiguous'); END;
                    CREATE TRIGGER edits_append_only_update BEFORE UPDATE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;
                    CREATE TRIGGER edits_append_only_delete BEFORE DELETE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;
                    """)
        }
        // Two costs of every append, measured with callgrind and the C API on the schema's own SQL (2026-11-30):
        //
        // A statement journal under every log row. An INSERT that fires a trigger is a "multi-write" to SQLite,
        // and one that may abort half way (a constraint or RAISE with ABORT, or any function call, such as the
        // length() checks) copies each page it first touches into a journal of its own, to undo the statement
        // alone: a tenth of the instructions of an annotation's rows. The contiguity trigger now raises FAIL (a
        // single-row INSERT fails before it writes anything) and tests the previous version instead of taking
        // max(); the writer inserts with OR FAIL; the two length checks go, since a function call alone brings
        // the journal back (`verify` recomputes every hash and reads every event ID, where a wrong length shows).
        //
        // Two indexes by event. A commit rewrote a leaf of annotations_by_event and one of edits_by_event for
        // every event it touched: of 86 WAL pages a commit of 32 annotations on 28 events wrote, 38 were the
        // first index's (48 without it; 40 -> 27 µs an edit with the commit's fsync). The log row now names the
        // annotation an annotation edit is about, and an event's annotations are found through its log rows
        // (edits_by_event), so annotations_by_event goes.
        migrator.registerMigration("v4-edits-name-annotations-without-statement-journal") { db in
            try db.execute(
                sql: """
                    DROP TRIGGER edits_contiguous;
                    DROP TRIGGER edits_append_only_update;
                    DROP TRIGGER edits_append_only_delete;
                    CREATE TABLE edits_v4 (
                        version INTEGER PRIMARY KEY CHECK (version >= 1),
                        event TEXT,
                        revision INTEGER NOT NULL CHECK (revision >= 0),
                        op TEXT NOT NULL CHECK (
                            op = 'event.create' OR op = 'event.update' OR op = 'event.delete' OR op = 'annotation.add'
                            OR op = 'annotation.update' OR op = 'annotation.retract' OR op = 'timeline.meta'),
                        body TEXT NOT NULL,
                        hash BLOB NOT NULL,
                        annotation TEXT,
                        CHECK ((op = 'timeline.meta') = (event IS NULL)),
                        CHECK ((op = 'timeline.meta') = (revision = 0)),
                        CHECK ((op = 'annotation.add' OR op = 'annotation.update' OR op = 'annotation.retract')
                            = (annotation IS NOT NULL))
                    );
                    INSERT INTO edits_v4(version, event, revision, op, body, hash, annotation)
                        SELECT version, event, revision, op, body, hash,
                            CASE WHEN op LIKE 'annotation.%' THEN json_extract(body, '$.annotation') END
                        FROM edits ORDER BY version;
                    DROP TABLE edits;
                    ALTER TABLE edits_v4 RENAME TO edits;
                    CREATE UNIQUE INDEX edits_by_event ON edits(event, revision) WHERE event IS NOT NULL;
                    DROP INDEX annotations_by_event;

                    CREATE TRIGGER edits_contiguous BEFORE INSERT ON edits
                    WHEN NEW.version != 1 AND NOT EXISTS (SELECT 1 FROM edits WHERE version = NEW.version - 1)
                    BEGIN SELECT RAISE(FAIL, 'edits: versions must be contiguous'); END;
                    CREATE TRIGGER edits_append_only_update BEFORE UPDATE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;
                    CREATE TRIGGER edits_append_only_delete BEFORE DELETE ON edits
                    BEGIN SELECT RAISE(ABORT, 'edits: the log is append-only'); END;
                    """)
        }
        // An event's revision and the version of its last edit were columns of its row, which every annotation edit
        // rewrote (body and all) once per commit: in B2 (64 connections adding annotations to 28 events) 5.5 of a
        // commit's 33 WAL pages and an eighth of the writer's time. Both are the newest of the event's log rows,
        // which edits_by_event finds with one seek (a covering index; max() reads its last entry), so the row now
        // holds the event's content only and changes only with the event itself.
        migrator.registerMigration("v5-event-revision-read-from-the-log") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events_v5 (
                        id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 26),
                        deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
                        date_start TEXT,
                        date_end TEXT,
                        body TEXT NOT NULL
                    ) WITHOUT ROWID;
                    INSERT INTO events_v5(id, deleted, date_start, date_end, body)
                        SELECT id, deleted, date_start, date_end, body FROM events;
                    DROP TABLE events;
                    ALTER TABLE events_v5 RENAME TO events;
                    CREATE INDEX events_by_date ON events(date_start, id);
                    """)
        }
        // An annotation's state row had been written with its add: 10,500 of the 29,300 SQLite instructions of an
        // annotation.add (callgrind, a C program running the store's SQL, 2026-11-30), for a row that repeats the
        // add's body. Most annotations are never changed. A row is now kept only for an annotation that was updated
        // or retracted; any other annotation is read from its add's log row. The log keeps added IDs unique with a
        // partial index, which is also how a read finds an annotation's add.
        migrator.registerMigration("v6-annotation-rows-only-once-changed") { db in
            try db.execute(
                sql: """
                    CREATE UNIQUE INDEX edits_adding ON edits(annotation) WHERE op = 'annotation.add';
                    DELETE FROM annotations WHERE id NOT IN (
                        SELECT annotation FROM edits
                        WHERE op = 'annotation.update' OR op = 'annotation.retract');
                    """)
        }
        return migrator
    }
}
