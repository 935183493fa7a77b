//! The SQLite schema and its migrations, tracked in `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::SqliteError;
use crate::webhook::validate::reserved_header_sql;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 4;

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`. `{reserved}` is the
/// condition that a header name `h.key` is reserved.
const MIGRATIONS: [&str; 4] = [
    r"
CREATE TABLE webhooks (
    id      TEXT PRIMARY KEY,
    org     TEXT NOT NULL,
    project TEXT,              -- NULL: every project of the organization
    active  INTEGER NOT NULL,
    record  TEXT NOT NULL      -- the Webhook as JSON
);
CREATE INDEX webhooks_by_org ON webhooks (org, id);

CREATE TABLE signing_keys (
    org    TEXT PRIMARY KEY,
    record TEXT NOT NULL
);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    org             TEXT NOT NULL,
    project         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         BLOB NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_by_key ON events (org, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE deliveries (
    id         TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL REFERENCES events (id),
    webhook_id TEXT NOT NULL,
    url        TEXT NOT NULL,
    status     TEXT NOT NULL,  -- pending | succeeded | dead
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER,        -- next attempt, or the end of the lease while claimed
    lease      INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE attempts (
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id),
    attempted_at INTEGER NOT NULL,
    status       INTEGER,
    duration_us  INTEGER NOT NULL,
    response     TEXT NOT NULL,
    error_kind   TEXT,
    error        TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);

CREATE TABLE endpoint_health (
    webhook_id    TEXT PRIMARY KEY,
    failing_since INTEGER NOT NULL
);
",
    r"
-- Custom headers are checked at the type from version 2 on: names in lower case, none of the
-- crate's own. Records written before keep what still passes; reserved names are dropped
-- (the request never carries them again).
UPDATE webhooks SET record = json_set(record, '$.headers', json((
    SELECT json_group_object(lower(h.key), h.value)
    FROM json_each(webhooks.record, '$.headers') AS h
    WHERE NOT ({reserved}))))
WHERE json_type(record, '$.headers') = 'object';
",
    r"
-- A claim reads the first due deliveries from the index alone (webhook and id included), so
-- its cost does not grow with the queue.
DROP INDEX IF EXISTS deliveries_pending_by_webhook;
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_due ON deliveries (due_at, webhook_id, id) WHERE status = 'pending';
-- Which webhooks have pending deliveries, and each one's earliest: for a claim that must
-- look past webhooks at their limit.
CREATE INDEX deliveries_pending_by_webhook ON deliveries (webhook_id, due_at)
    WHERE status = 'pending';
",
    r"
-- A counter that every change to the webhooks or the signing keys bumps, in the changing
-- transaction: a process keeps a copy of the configuration it reads and trusts it only
-- while the counter is what it was when the copy was read. (Written to run again on a file
-- that has it.)
CREATE TABLE IF NOT EXISTS config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO config_version (id, version) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS webhooks_inserted AFTER INSERT ON webhooks
    BEGIN UPDATE config_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS webhooks_updated AFTER UPDATE ON webhooks
    BEGIN UPDATE config_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS webhooks_deleted AFTER DELETE ON webhooks
    BEGIN UPDATE config_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS signing_keys_inserted AFTER INSERT ON signing_keys
    BEGIN UPDATE config_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS signing_keys_updated AFTER UPDATE ON signing_keys
    BEGIN UPDATE config_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS signing_keys_deleted AFTER DELETE ON signing_keys
    BEGIN UPDATE config_version SET version = version + 1; END;
",
];

/// Opens the file, sets it up and migrates it.
pub(super) fn open(path: &Path) -> Result<Connection, SqliteError> {
    let open_error = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    // 16 MB of page cache (SQLite's default is 2 MB): the writer's claims and settles keep
    // the due index and the recent rows hot.
    conn.pragma_update(None, "cache_size", -16_384)
        .map_err(open_error)?;
    migrate(&mut conn, path)?;
    // Room for every statement the store runs, so none is compiled twice.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection to a file [`open`] has set up; one that does not `wait`
/// answers `SQLITE_BUSY` at once where another would retry for up to 10 s.
pub(super) fn open_reader(path: &Path, wait: bool) -> Result<Connection, SqliteError> {
    let open_error = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_error)?;
    let timeout = if wait {
        Duration::from_secs(10)
    } else {
        Duration::ZERO
    };
    conn.busy_timeout(timeout).map_err(open_error)?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(open_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies the migrations the file lacks, each in its own immediate transaction (so two
/// processes opening one new file do not both apply it).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| SqliteError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|source| SqliteError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if found > SCHEMA_VERSION {
            return Err(SqliteError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let version = found + 1;
        let failed = |source| SqliteError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        let sql = usize::try_from(found)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .copied()
            .unwrap_or_default()
            .replace("{reserved}", &reserved_header_sql("h.key"));
        tx.execute_batch(&sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_has_a_migration() {
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
    }
}
