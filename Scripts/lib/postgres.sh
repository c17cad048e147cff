# A private PostgreSQL cluster for the tests and the chaos scenario: initdb into a temporary folder, a loopback
# port, stopped and removed at the end; no system service. Debian's postgresql package provides the binaries.
# shellcheck shell=bash

TIMELINE_PG_BIN=/usr/lib/postgresql/15/bin

# As the postgres user when run as root (initdb refuses root); as oneself otherwise.
_pg_as() {
    if [ "$(id -u)" -eq 0 ]; then /usr/sbin/runuser -u postgres -- "$@"; else "$@"; fi
}

# Starts the cluster and exports TIMELINE_TEST_POSTGRES (a URL for user timeline, trusted on loopback),
# TIMELINE_PG_DIR and TIMELINE_PG_CTL (pg_ctl with the cluster's folder, for tests that stop and start it).
start_private_postgres() {
    TIMELINE_PG_DIR=$(mktemp -d /tmp/timeline-pg.XXXXXX)
    chmod 755 "$TIMELINE_PG_DIR"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$TIMELINE_PG_DIR"
    _pg_as "$TIMELINE_PG_BIN/initdb" -D "$TIMELINE_PG_DIR/data" -U timeline --auth=trust -E UTF8 >/dev/null
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # In its configuration, so that a plain `pg_ctl start` (a test restarting it) finds the same place.
    cat >>"$TIMELINE_PG_DIR/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TIMELINE_PG_DIR'
max_connections = 400
fsync = on
synchronous_commit = on
shared_buffers = 128MB
CONF
    _pg_as "$TIMELINE_PG_BIN/pg_ctl" start -w -s -D "$TIMELINE_PG_DIR/data" -l "$TIMELINE_PG_DIR/postgres.log" >/dev/null
    export TIMELINE_PG_DIR
    export TIMELINE_TEST_POSTGRES="postgresql://timeline@127.0.0.1:$port/postgres?sslmode=disable"
    if [ "$(id -u)" -eq 0 ]; then
        export TIMELINE_PG_CTL="/usr/sbin/runuser -u postgres -- $TIMELINE_PG_BIN/pg_ctl -D $TIMELINE_PG_DIR/data"
    else
        export TIMELINE_PG_CTL="$TIMELINE_PG_BIN/pg_ctl -D $TIMELINE_PG_DIR/data"
    fi
    echo "private PostgreSQL on 127.0.0.1:$port ($TIMELINE_PG_DIR)" >&2
}

stop_private_postgres() {
    [ -n "${TIMELINE_PG_DIR:-}" ] || return 0
    _pg_as "$TIMELINE_PG_BIN/pg_ctl" stop -w -s -m fast -D "$TIMELINE_PG_DIR/data" >/dev/null 2>&1 || true
    rm -rf "$TIMELINE_PG_DIR"
    unset TIMELINE_PG_DIR
}
