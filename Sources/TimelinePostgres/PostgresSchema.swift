/// The PostgreSQL store's schema, as named forward-only migrations: one shipped is never edited, only followed.
/// As in the SQLite store, the log's rules live in the schema (constraints and triggers), so that no node, and no
/// person with `psql`, breaks them without dropping a trigger first. Every text column compares by bytes
/// (`COLLATE "C"`), as SQLite does, so that both stores order events, tags and IDs alike whatever the
/// database's locale.
enum PostgresSchema {
    struct Migration {
        var name: String
        var statements: [String]
    }

    /// An event's revision, in a query over `events`: its newest log row's, one step down the index by event.
    static let revision = "(SELECT max(r.revision) FROM edits r WHERE r.event = events.id)"

    /// The advisory lock that is a writer's turn (`timeline_take_turn`, v6): its two keys, as SQL arguments.
    static let turn = "1953263204, 1"

    static let operations =
        "'event.create','event.update','event.delete','annotation.add','annotation.update','annotation.retract',"
        + "'timeline.meta'"

    /// A group's writes in one statement (v3); v5 replaces it with one whose NOTIFY names the head's hash too.
    static let appendV3 =
        """
        CREATE FUNCTION timeline_append(
            expected bigint, head_version bigint, head_hash bytea,
            ev bigint[], ee text[], er bigint[], eo text[], ea text[], eb text[], eh bytea[],
            xi text[], xd boolean[], xs text[], xe text[], xb text[],
            ti text[], tt text[], te text[], ts text[],
            ai text[], ae text[], ar boolean[], ab text[],
            mk text[], mv text[]
        ) RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE
            current bigint;
        BEGIN
            SELECT version INTO current FROM timeline_head FOR UPDATE;
            IF current <> expected THEN
                RETURN false;
            END IF;
            INSERT INTO edits (version, event, revision, op, annotation, body, hash)
            SELECT v, NULLIF(e, ''), r, o, NULLIF(a, ''), b, h
            FROM unnest(ev, ee, er, eo, ea, eb, eh) AS u(v, e, r, o, a, b, h);
            IF cardinality(xi) > 0 THEN
                INSERT INTO events (id, deleted, date_start, date_end, body)
                SELECT i, d, NULLIF(s, ''), NULLIF(e, ''), b
                FROM unnest(xi, xd, xs, xe, xb) AS u(i, d, s, e, b)
                ON CONFLICT (id) DO UPDATE SET deleted = excluded.deleted, date_start = excluded.date_start,
                    date_end = excluded.date_end, body = excluded.body;
            END IF;
            IF cardinality(ti) > 0 THEN
                DELETE FROM event_tags WHERE event = ANY(ti);
            END IF;
            IF cardinality(tt) > 0 THEN
                INSERT INTO event_tags (tag, event, date_start)
                SELECT t, e, NULLIF(s, '') FROM unnest(tt, te, ts) AS u(t, e, s);
            END IF;
            IF cardinality(ai) > 0 THEN
                INSERT INTO annotations (id, event, retracted, body)
                SELECT i, e, r, b FROM unnest(ai, ae, ar, ab) AS u(i, e, r, b)
                ON CONFLICT (id) DO UPDATE SET event = excluded.event, retracted = excluded.retracted,
                    body = excluded.body;
            END IF;
            FOR i IN 1 .. coalesce(cardinality(mk), 0) LOOP
                IF mv[i] = '' THEN
                    DELETE FROM timeline_meta WHERE key = mk[i];
                ELSE
                    INSERT INTO timeline_meta (key, value) VALUES (mk[i], mv[i])
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
                END IF;
            END LOOP;
            UPDATE timeline_head SET version = head_version, hash = head_hash;
            PERFORM pg_notify('timeline_edits', head_version::text);
            RETURN true;
        END $$
        """

    /// v3's function, announcing the head as `version hash` (`PostgresStore.channel`).
    static let appendV5: String = {
        let notify = "PERFORM pg_notify('timeline_edits', head_version::text);"
        let announce = "PERFORM pg_notify('timeline_edits', head_version::text || ' ' || encode(head_hash, 'hex'));"
        precondition(appendV3.contains(notify))
        return appendV3.replacing("CREATE FUNCTION", with: "CREATE OR REPLACE FUNCTION").replacing(
            notify, with: announce)
    }()

    /// v5's function, taking the writers' turn for its transaction and ending its session's (`timeline_take_turn`).
    static let appendV6: String = {
        let begin = "BEGIN\n    SELECT version INTO current FROM timeline_head FOR UPDATE;"
        let taking = """
            BEGIN
                PERFORM pg_advisory_xact_lock(\(turn));
                -- The turn taken by timeline_take_turn ends with this statement; the transaction's lock holds until
                -- it commits.
                PERFORM pg_advisory_unlock_all();
                SELECT version INTO current FROM timeline_head FOR UPDATE;
            """
        precondition(appendV5.contains(begin))
        return appendV5.replacing(begin, with: taking)
    }()

    static let migrations: [Migration] = [
        Migration(
            name: "v1-log-head-and-state",
            statements: [
                """
                CREATE TABLE timeline_store_info (
                    key text COLLATE "C" PRIMARY KEY,
                    value text NOT NULL
                )
                """,
                // The log: one row per edit; body is the edit's canonical JSON without its hash, the bytes it covers.
                """
                CREATE TABLE edits (
                    version bigint PRIMARY KEY CHECK (version >= 1),
                    event text COLLATE "C" CHECK (event IS NULL OR length(event) = 26),
                    revision bigint NOT NULL CHECK (revision >= 0),
                    op text COLLATE "C" NOT NULL CHECK (op IN (\(operations))),
                    annotation text COLLATE "C" CHECK (annotation IS NULL OR length(annotation) = 26),
                    body text NOT NULL,
                    hash bytea NOT NULL CHECK (length(hash) = 32),
                    CHECK ((op = 'timeline.meta') = (event IS NULL)),
                    CHECK ((op = 'timeline.meta') = (revision = 0)),
                    CHECK ((op LIKE 'annotation.%') = (annotation IS NOT NULL))
                )
                """,
                "CREATE UNIQUE INDEX edits_by_event ON edits (event, revision) WHERE event IS NOT NULL",
                "CREATE UNIQUE INDEX edits_adding ON edits (annotation) WHERE op = 'annotation.add'",
                """
                CREATE FUNCTION timeline_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'edits: the log is append-only' USING ERRCODE = 'restrict_violation';
                END $$
                """,
                """
                CREATE TRIGGER edits_append_only BEFORE UPDATE OR DELETE ON edits
                FOR EACH ROW EXECUTE FUNCTION timeline_log_is_append_only()
                """,
                """
                CREATE TRIGGER edits_not_truncated BEFORE TRUNCATE ON edits
                FOR EACH STATEMENT EXECUTE FUNCTION timeline_log_is_append_only()
                """,
                // Checked once per statement (a group's edits are one INSERT), over the rows it inserted: they are a
                // run without holes (the primary key makes them distinct) that follows the log's last edit.
                """
                CREATE FUNCTION timeline_versions_contiguous() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                    low bigint;
                    high bigint;
                    n bigint;
                BEGIN
                    SELECT min(version), max(version), count(*) INTO low, high, n FROM inserted;
                    IF n > 0 AND (high - low + 1 <> n
                        OR (low <> 1 AND NOT EXISTS (SELECT 1 FROM edits WHERE version = low - 1)))
                    THEN
                        RAISE EXCEPTION 'edits: versions must be contiguous' USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NULL;
                END $$
                """,
                """
                CREATE TRIGGER edits_contiguous AFTER INSERT ON edits REFERENCING NEW TABLE AS inserted
                FOR EACH STATEMENT EXECUTE FUNCTION timeline_versions_contiguous()
                """,
                // The head: the log's last version and hash in one row, which every append locks first (FOR
                // UPDATE). Writers on every node serialise on it, so versions stay gapless and in commit order, and
                // the chain has its previous hash; a watcher reads `version > cursor` and never guesses at gaps.
                """
                CREATE TABLE timeline_head (
                    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                    version bigint NOT NULL CHECK (version >= 0),
                    hash bytea NOT NULL CHECK (length(hash) = 32)
                )
                """,
                """
                CREATE FUNCTION timeline_head_follows_log() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'DELETE' THEN
                        RAISE EXCEPTION 'timeline_head: the head cannot be removed' USING ERRCODE = 'restrict_violation';
                    END IF;
                    IF NEW.version < OLD.version
                        OR (NEW.version > 0 AND NOT EXISTS (
                            SELECT 1 FROM edits WHERE version = NEW.version AND hash = NEW.hash))
                        OR EXISTS (SELECT 1 FROM edits WHERE version = NEW.version + 1)
                    THEN
                        RAISE EXCEPTION 'timeline_head: the head must be the log''s last edit'
                            USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END $$
                """,
                """
                CREATE TRIGGER timeline_head_checked BEFORE UPDATE OR DELETE ON timeline_head
                FOR EACH ROW EXECUTE FUNCTION timeline_head_follows_log()
                """,
                // The current state, written in the same transaction as the edits it comes from. An event's revision
                // is its newest log row's (`PostgresSchema.revision`), not a column: an annotation edit would otherwise
                // rewrite its event's whole row (PostgreSQL writes a new version of a row for any change), which was
                // most of a group's writes when annotations pour in.
                """
                CREATE TABLE events (
                    id text COLLATE "C" PRIMARY KEY CHECK (length(id) = 26),
                    deleted boolean NOT NULL,
                    date_start text COLLATE "C",
                    date_end text COLLATE "C",
                    body text NOT NULL
                )
                """,
                "CREATE INDEX events_by_date ON events (date_start, id)",
                """
                CREATE TABLE event_tags (
                    tag text COLLATE "C" NOT NULL,
                    event text COLLATE "C" NOT NULL REFERENCES events (id),
                    date_start text COLLATE "C",
                    PRIMARY KEY (tag, event)
                )
                """,
                "CREATE INDEX event_tags_by_event ON event_tags (event)",
                "CREATE INDEX event_tags_by_date ON event_tags (tag, (date_start IS NULL), date_start, event)",
                """
                CREATE TABLE annotations (
                    id text COLLATE "C" PRIMARY KEY CHECK (length(id) = 26),
                    event text COLLATE "C" NOT NULL REFERENCES events (id),
                    retracted boolean NOT NULL,
                    body text NOT NULL
                )
                """,
                "CREATE INDEX annotations_by_event ON annotations (event, id)",
                """
                CREATE TABLE timeline_meta (
                    key text COLLATE "C" PRIMARY KEY,
                    value text NOT NULL
                )
                """,
            ]),
        // Tokens live in the database, so that one added or revoked through any node holds on every node. Only
        // hashes are kept.
        Migration(
            name: "v2-tokens",
            statements: [
                """
                CREATE TABLE timeline_tokens (
                    id bigserial PRIMARY KEY,
                    name text COLLATE "C" NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
                    role text COLLATE "C" NOT NULL,
                    sha256 bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
                    created timestamptz NOT NULL,
                    revoked timestamptz
                )
                """,
                "CREATE UNIQUE INDEX timeline_tokens_live_name ON timeline_tokens (name) WHERE revoked IS NULL",
            ]),
        // A group's writes in one statement: each statement had been a round trip (nine per group), which bounded
        // a node's commits more than PostgreSQL's own work did. The function checks, under the head's lock, that
        // the head is still the one the group was admitted against: a writer that knows the head (its own last
        // commit) sends its group as this one statement, without BEGIN or a lock taken first, and takes the locking
        // path only when another node committed meanwhile (false) or a constraint refused the group.
        Migration(
            name: "v3-append-in-one-statement",
            statements: [
                appendV3,
                // The head locked and what edits after `known` changed, in one round trip. Two statements, in a
                // function so that the second takes its snapshot after the lock was granted: one statement that
                // waited for the lock would still read the log as it was before the holder committed.
                """
                CREATE FUNCTION timeline_lock_head(known bigint)
                RETURNS TABLE (version bigint, hash bytea, event text, op text, annotation text, revision bigint)
                LANGUAGE plpgsql AS $$
                DECLARE
                    v bigint;
                    h bytea;
                BEGIN
                    SELECT t.version, t.hash INTO v, h FROM timeline_head t FOR UPDATE;
                    RETURN QUERY SELECT v, h, NULL::text, NULL::text, NULL::text, NULL::bigint;
                    RETURN QUERY SELECT v, h, e.event, e.op, e.annotation, e.revision FROM edits e
                        WHERE e.version > known AND e.version <= v ORDER BY e.version;
                END $$
                """,
            ]),
        // Tokens may expire, and show when they were last used (written by the node that took the AUTH).
        Migration(
            name: "v4-token-expiry-and-use",
            statements: [
                """
                ALTER TABLE timeline_tokens
                    ADD COLUMN expires timestamptz CHECK (expires IS NULL OR expires > created),
                    ADD COLUMN last_used timestamptz
                """
            ]),
        // As the SQLite store's v6: an annotation's row was written with its add, a second heap row, two index
        // entries and a foreign-key check for each, repeating the add's body; most annotations are never changed.
        // A row is now kept only for an annotation that was updated or retracted, any other is read from its add's
        // log row (found through edits_adding), and an event's annotations through the log's index by event. The
        // NOTIFY names the head's hash too, so that a node that needs no other node's edits (no WATCH) learns its
        // head without a read.
        Migration(
            name: "v5-annotation-rows-only-once-changed",
            statements: [
                """
                DELETE FROM annotations a WHERE NOT EXISTS (
                    SELECT 1 FROM edits e
                    WHERE e.annotation = a.id AND e.op IN ('annotation.update', 'annotation.retract'))
                """,
                "DROP INDEX annotations_by_event",
                appendV5,
            ]),
        // A writer whose node is contended took the head's row lock in a transaction (BEGIN, lock, append, COMMIT):
        // four round trips, the lock held across the last two. Its turn is now an advisory lock held by its session
        // across two statements without a transaction: `timeline_take_turn` waits for the turn and reads the head
        // and what changed since the cache's version, the node admits its group, and `timeline_append` writes it and
        // ends the turn as it commits (the transaction's own advisory lock lasts until then). Every append takes
        // that lock first, so an append from a node that did not take the turn waits for one that did, then finds
        // the head moved. The head's row lock stays, for a transaction that appends several times (migrate).
        Migration(
            name: "v6-a-writers-turn-without-a-transaction",
            statements: [
                appendV6,
                // The turn, waited for at most `wait_ms`, then the head and the changes after `known`, each read in a
                // snapshot taken once the turn was granted (statements in a function take their own).
                """
                CREATE FUNCTION timeline_take_turn(known bigint, wait_ms bigint)
                RETURNS TABLE (version bigint, hash bytea, event text, op text, annotation text, revision bigint)
                LANGUAGE plpgsql AS $$
                DECLARE
                    v bigint;
                    h bytea;
                BEGIN
                    PERFORM set_config('lock_timeout', wait_ms::text, true);
                    PERFORM pg_advisory_lock(\(turn));
                    SELECT t.version, t.hash INTO v, h FROM timeline_head t;
                    RETURN QUERY SELECT v, h, NULL::text, NULL::text, NULL::text, NULL::bigint;
                    RETURN QUERY SELECT v, h, e.event, e.op, e.annotation, e.revision FROM edits e
                        WHERE e.version > known AND e.version <= v ORDER BY e.version;
                END $$
                """,
                // Taken by nobody since the turn replaced it (a node older than v6 refuses this database).
                "DROP FUNCTION timeline_lock_head(bigint)",
            ]),
    ]
}
