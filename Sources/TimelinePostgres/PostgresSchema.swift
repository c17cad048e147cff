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

    static let operations =
        "'event.create','event.update','event.delete','annotation.add','annotation.update','annotation.retract',"
        + "'timeline.meta'"

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
                // A row-level trigger sees the rows its statement inserted before (PostgreSQL's "Visibility of Data
                // Changes"), so a multi-row INSERT is checked row by row too.
                """
                CREATE FUNCTION timeline_versions_contiguous() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.version <> 1 AND NOT EXISTS (SELECT 1 FROM edits WHERE version = NEW.version - 1) THEN
                        RAISE EXCEPTION 'edits: versions must be contiguous' USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END $$
                """,
                """
                CREATE TRIGGER edits_contiguous BEFORE INSERT ON edits
                FOR EACH ROW EXECUTE FUNCTION timeline_versions_contiguous()
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
                // The current state, written in the same transaction as the edits it comes from.
                """
                CREATE TABLE events (
                    id text COLLATE "C" PRIMARY KEY CHECK (length(id) = 26),
                    revision bigint NOT NULL CHECK (revision >= 1),
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
    ]
}
