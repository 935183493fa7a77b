//! The PostgreSQL schema, its migrations, and every statement the store runs, with the
//! configured schema name written in.

use super::PostgresError;
use crate::webhook::validate::reserved_header_sql;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i32 = 6;

/// The payload of the notice a configuration change sends (see `cache`).
pub(super) const CONFIG_CHANGED: &str = "config";

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`. `{s}` is the
/// schema, `{channel}` the `NOTIFY` channel, `{reserved}` the condition that a header name
/// `h.key` is reserved.
const MIGRATIONS: [&str; 6] = [
    r#"
CREATE TABLE {s}.webhooks (
    id      text PRIMARY KEY,
    org     text NOT NULL,
    project text,                  -- NULL: every project of the organization
    active  boolean NOT NULL,
    record  jsonb NOT NULL         -- the Webhook, secrets included: restrict access
);
CREATE INDEX webhooks_by_org ON {s}.webhooks (org, id);

CREATE TABLE {s}.signing_keys (
    org    text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE {s}.events (
    id              text PRIMARY KEY,
    org             text NOT NULL,
    project         text NOT NULL,
    event_type      text NOT NULL,
    payload         bytea NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX events_by_key ON {s}.events (org, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE {s}.deliveries (
    id         text PRIMARY KEY,
    event_id   text NOT NULL REFERENCES {s}.events (id),
    webhook_id text NOT NULL,
    url        text NOT NULL,
    status     text NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts   integer NOT NULL DEFAULT 0,
    due_at     timestamptz,        -- next attempt, or the end of the lease while claimed
    lease      bigint,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX deliveries_due ON {s}.deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_webhook ON {s}.deliveries (webhook_id, id);
CREATE INDEX deliveries_by_event ON {s}.deliveries (event_id);

CREATE TABLE {s}.attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  text NOT NULL REFERENCES {s}.deliveries (id),
    attempted_at timestamptz NOT NULL,
    status       integer,
    duration_us  bigint NOT NULL,
    response     text NOT NULL,
    error_kind   text,
    error        text
);
CREATE INDEX attempts_by_delivery ON {s}.attempts (delivery_id, id);

CREATE TABLE {s}.endpoint_health (
    webhook_id    text PRIMARY KEY,
    failing_since timestamptz NOT NULL
);

-- New deliveries wake idle workers in every process, when their transaction commits.
CREATE FUNCTION {s}.wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_wake AFTER INSERT ON {s}.deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.wake();

-- Settles a claim in one round trip: records the attempt and the endpoint's health, and
-- moves the delivery on if the lease still holds.
CREATE FUNCTION {s}.finish(
    p_id text, p_lease bigint, p_now timestamptz, p_attempted boolean,
    p_attempted_at timestamptz, p_status integer, p_duration_us bigint, p_response text,
    p_error_kind text, p_error text,
    p_next_status text, p_due timestamptz, p_next_error text,
    OUT o_found boolean, OUT o_held boolean, OUT o_failing_since timestamptz,
    OUT o_recovered boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_webhook text;
    v_status text;
    v_lease bigint;
BEGIN
    o_recovered := false;
    SELECT d.webhook_id, d.status, d.lease INTO v_webhook, v_status, v_lease
        FROM {s}.deliveries d WHERE d.id = p_id FOR UPDATE;
    o_found := FOUND;
    IF NOT o_found THEN
        o_held := false;
        RETURN;
    END IF;
    o_held := v_lease IS NOT DISTINCT FROM p_lease AND v_status = 'pending';
    IF p_attempted THEN
        INSERT INTO {s}.attempts
            (delivery_id, attempted_at, status, duration_us, response, error_kind, error)
            VALUES (p_id, p_attempted_at, p_status, p_duration_us, p_response, p_error_kind,
                    p_error);
        IF p_error_kind IS NULL THEN
            DELETE FROM {s}.endpoint_health h WHERE h.webhook_id = v_webhook;
            o_recovered := FOUND;
        ELSE
            INSERT INTO {s}.endpoint_health AS h (webhook_id, failing_since)
                VALUES (v_webhook, p_now) ON CONFLICT (webhook_id) DO NOTHING;
            SELECT h.failing_since INTO o_failing_since
                FROM {s}.endpoint_health h WHERE h.webhook_id = v_webhook;
        END IF;
    END IF;
    IF o_held THEN
        UPDATE {s}.deliveries SET status = p_next_status, due_at = p_due, lease = NULL,
            attempts = attempts + p_attempted::integer,
            last_error = CASE WHEN p_next_error IS NOT NULL OR p_next_status = 'succeeded'
                              THEN p_next_error
                              WHEN p_attempted THEN p_error
                              ELSE last_error END,
            updated_at = p_now
        WHERE id = p_id;
    ELSIF p_attempted THEN
        -- Someone else holds it now: count the attempt, leave the state to them.
        UPDATE {s}.deliveries SET attempts = attempts + 1, last_error = p_error,
            updated_at = p_now
        WHERE id = p_id;
    END IF;
END $$;
"#,
    r#"
-- Custom headers are checked at the type from version 2 on: names in lower case, none of the
-- crate's own. Records written before keep what still passes; reserved names are dropped
-- (the request never carries them again).
UPDATE {s}.webhooks w SET record = jsonb_set(w.record, '{headers}', coalesce((
    SELECT jsonb_object_agg(lower(h.key), h.value)
    FROM jsonb_each(w.record->'headers') AS h
    WHERE NOT ({reserved})), '{}'::jsonb))
WHERE jsonb_typeof(w.record->'headers') = 'object';
"#,
    r#"
-- Wake-ups move out of the insert: a NOTIFY in every emit's transaction serialized all
-- commits on one lock. Emits now notify once per group commit, from the store.
DROP TRIGGER IF EXISTS deliveries_wake ON {s}.deliveries;
DROP FUNCTION IF EXISTS {s}.wake();
"#,
    r#"
-- Each process caches webhooks and signing keys while it listens on the channel; a change
-- to either table notifies it when the change commits, and it drops its copy.
CREATE OR REPLACE FUNCTION {s}.config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', 'config');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS webhooks_changed ON {s}.webhooks;
CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {s}.webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.config_changed();
DROP TRIGGER IF EXISTS signing_keys_changed ON {s}.signing_keys;
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON {s}.signing_keys FOR EACH STATEMENT EXECUTE FUNCTION {s}.config_changed();
"#,
    r#"
-- Pending deliveries get a narrow table of their own, the queue: a row per pending delivery
-- (none once it is settled for good). A claim rewrites that short row and its two index
-- entries, not the delivery with its four; a settle's update of the delivery changes no
-- indexed column, so it can stay on its page (a HOT update) when the page has room: new
-- pages of deliveries are filled half, leaving room for each row's settle. From here on the
-- delivery's own `due_at` holds the next attempt as of its last settle, and its `lease` is
-- not written. Processes of an earlier version claim from the deliveries table and emit
-- without queue rows: stop them before this runs. Written so that it can run again on a schema that has it.
CREATE TABLE IF NOT EXISTS {s}.queue (
    delivery_id text PRIMARY KEY,
    webhook_id  text NOT NULL,
    due_at      timestamptz NOT NULL,  -- next attempt, or the end of the lease while claimed
    lease       bigint
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
CREATE INDEX IF NOT EXISTS queue_due ON {s}.queue (due_at);
INSERT INTO {s}.queue (delivery_id, webhook_id, due_at, lease)
    SELECT id, webhook_id, coalesce(due_at, updated_at), lease FROM {s}.deliveries
    WHERE status = 'pending'
    ON CONFLICT (delivery_id) DO NOTHING;
DROP INDEX IF EXISTS {s}.deliveries_due;
ALTER TABLE {s}.deliveries SET (fillfactor = 50);
-- Every statement that writes an attempt or a delivery holds the row it refers to (the
-- delivery locked, the event written in the same statement); the foreign keys only checked
-- that again, one query per row.
ALTER TABLE {s}.attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
ALTER TABLE {s}.deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;

CREATE OR REPLACE FUNCTION {s}.finish(
    p_id text, p_lease bigint, p_now timestamptz, p_attempted boolean,
    p_attempted_at timestamptz, p_status integer, p_duration_us bigint, p_response text,
    p_error_kind text, p_error text,
    p_next_status text, p_due timestamptz, p_next_error text,
    OUT o_found boolean, OUT o_held boolean, OUT o_failing_since timestamptz,
    OUT o_recovered boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_webhook text;
    v_status text;
    v_lease bigint;
BEGIN
    o_recovered := false;
    SELECT d.webhook_id, d.status INTO v_webhook, v_status
        FROM {s}.deliveries d WHERE d.id = p_id FOR UPDATE;
    o_found := FOUND;
    IF NOT o_found THEN
        o_held := false;
        RETURN;
    END IF;
    SELECT q.lease INTO v_lease FROM {s}.queue q WHERE q.delivery_id = p_id FOR UPDATE;
    o_held := FOUND AND v_lease IS NOT DISTINCT FROM p_lease AND v_status = 'pending';
    IF p_attempted THEN
        INSERT INTO {s}.attempts
            (delivery_id, attempted_at, status, duration_us, response, error_kind, error)
            VALUES (p_id, p_attempted_at, p_status, p_duration_us, p_response, p_error_kind,
                    p_error);
        IF p_error_kind IS NULL THEN
            DELETE FROM {s}.endpoint_health h WHERE h.webhook_id = v_webhook;
            o_recovered := FOUND;
        ELSE
            INSERT INTO {s}.endpoint_health AS h (webhook_id, failing_since)
                VALUES (v_webhook, p_now) ON CONFLICT (webhook_id) DO NOTHING;
            SELECT h.failing_since INTO o_failing_since
                FROM {s}.endpoint_health h WHERE h.webhook_id = v_webhook;
        END IF;
    END IF;
    IF o_held THEN
        IF p_next_status = 'pending' THEN
            UPDATE {s}.queue SET due_at = p_due, lease = NULL WHERE delivery_id = p_id;
        ELSE
            DELETE FROM {s}.queue WHERE delivery_id = p_id;
        END IF;
        UPDATE {s}.deliveries SET status = p_next_status, due_at = p_due, lease = NULL,
            attempts = attempts + p_attempted::integer,
            last_error = CASE WHEN p_next_error IS NOT NULL OR p_next_status = 'succeeded'
                              THEN p_next_error
                              WHEN p_attempted THEN p_error
                              ELSE last_error END,
            updated_at = p_now
        WHERE id = p_id;
    ELSIF p_attempted THEN
        -- Someone else holds it now: count the attempt, leave the state to them.
        UPDATE {s}.deliveries SET attempts = attempts + 1, last_error = p_error,
            updated_at = p_now
        WHERE id = p_id;
    END IF;
END $$;
"#,
    r#"
-- A group's settles as set operations (the statement `finish_set`; `finish` settle by
-- settle), in a function so that PostgreSQL keeps a plan that reads every table through
-- its keys. A prepared statement's plan is made once per connection and kept: made while
-- the tables were small, it read them whole for every group, long after they had grown.
-- Distinct deliveries only: one lock pass over the deliveries (webhook then delivery order,
-- as `finish_many`), one insert of the attempts, one update of the deliveries, and per
-- webhook one change of its health, which the group's latest attempt decides (a failure
-- leaves it failing since its first failure, a success clears it and reports the recovery
-- on that webhook's first successful settle of the group).
CREATE OR REPLACE FUNCTION {s}.finish_set(
    text[], bigint[], timestamptz[], boolean[], timestamptz[], integer[], bigint[], text[],
    text[], text[], text[], timestamptz[], text[])
RETURNS TABLE (o_ordinal bigint, o_found boolean, o_held boolean,
               o_failing_since timestamptz, o_recovered boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY
    WITH t AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[],
                             $4::boolean[], $5::timestamptz[], $6::integer[],
                             $7::bigint[], $8::text[], $9::text[], $10::text[],
                             $11::text[], $12::timestamptz[], $13::text[])
            WITH ORDINALITY AS t(id, lease, at_now, attempted, attempted_at, status,
                                 duration_us, response, error_kind, error,
                                 next_status, due, next_error, ordinal)),
    cur AS MATERIALIZED (
        SELECT d.id, d.webhook_id, d.status
        FROM t JOIN {s}.deliveries d ON d.id = t.id
        ORDER BY d.webhook_id, d.id
        FOR UPDATE OF d),
    leases AS MATERIALIZED (
        SELECT q.delivery_id, q.lease
        FROM cur c JOIN {s}.queue q ON q.delivery_id = c.id
        ORDER BY c.webhook_id, c.id
        FOR UPDATE OF q),
    j AS MATERIALIZED (
        SELECT t.*, c.webhook_id, c.id IS NOT NULL AS known,
               coalesce(l.delivery_id IS NOT NULL
                        AND l.lease IS NOT DISTINCT FROM t.lease
                        AND c.status = 'pending', false) AS held
        FROM t LEFT JOIN cur c ON c.id = t.id
        LEFT JOIN leases l ON l.delivery_id = t.id),
    requeued AS (
        UPDATE {s}.queue q SET due_at = j.due, lease = NULL
        FROM j WHERE q.delivery_id = j.id AND j.held AND j.next_status = 'pending'),
    dequeued AS (
        DELETE FROM {s}.queue q USING j
        WHERE q.delivery_id = j.id AND j.held AND j.next_status <> 'pending'),
    att AS (
        INSERT INTO {s}.attempts
            (delivery_id, attempted_at, status, duration_us, response, error_kind, error)
        SELECT id, attempted_at, status, duration_us, response, error_kind, error
        FROM j WHERE known AND attempted ORDER BY ordinal
        RETURNING 1),
    latest AS (
        SELECT DISTINCT ON (webhook_id) webhook_id, error_kind IS NULL AS ok, at_now
        FROM j WHERE known AND attempted
        ORDER BY webhook_id, attempted_at DESC, ordinal DESC),
    healed AS (
        DELETE FROM {s}.endpoint_health h USING latest l
        WHERE l.ok AND h.webhook_id = l.webhook_id
        RETURNING h.webhook_id),
    failing AS (
        INSERT INTO {s}.endpoint_health AS h (webhook_id, failing_since)
        SELECT webhook_id, at_now FROM latest WHERE NOT ok ORDER BY webhook_id
        ON CONFLICT (webhook_id) DO NOTHING
        RETURNING h.webhook_id, h.failing_since),
    moved AS (
        UPDATE {s}.deliveries d SET
            status = CASE WHEN j.held THEN j.next_status ELSE d.status END,
            due_at = CASE WHEN j.held THEN j.due ELSE d.due_at END,
            lease = CASE WHEN j.held THEN NULL ELSE d.lease END,
            attempts = d.attempts + j.attempted::integer,
            last_error = CASE WHEN NOT j.held THEN j.error
                              WHEN j.next_error IS NOT NULL
                                   OR j.next_status = 'succeeded' THEN j.next_error
                              WHEN j.attempted THEN j.error
                              ELSE d.last_error END,
            updated_at = j.at_now
        FROM j WHERE d.id = j.id AND j.known AND (j.held OR j.attempted)
        RETURNING 1)
    SELECT j.ordinal, j.known, j.held,
        CASE WHEN j.attempted AND j.error_kind IS NOT NULL AND NOT l.ok
             THEN coalesce(f.failing_since, h.failing_since) END,
        coalesce(j.attempted AND j.error_kind IS NULL AND hd.webhook_id IS NOT NULL
            AND j.ordinal = min(j.ordinal) FILTER (
                WHERE j.attempted AND j.error_kind IS NULL)
                OVER (PARTITION BY j.webhook_id), false)
    FROM j
    LEFT JOIN latest l ON l.webhook_id = j.webhook_id
    LEFT JOIN failing f ON f.webhook_id = j.webhook_id
    LEFT JOIN {s}.endpoint_health h ON h.webhook_id = j.webhook_id
    LEFT JOIN healed hd ON hd.webhook_id = j.webhook_id
    ORDER BY j.ordinal;
END $$;
-- The claim, in a function for the same reason. The first `$6` due deliveries of the
-- webhooks not skipped (`$2`; the request's window), of which each webhook gives at most its
-- room: `$9` minus what the caller has busy (`$7`/`$8`); at most `$3` in all. Only the
-- chosen queue rows are locked, each read by its key, skipping any another worker is claiming
-- right now; a row claimed since the window was read is checked again when locked and is no
-- longer due. The delivery and its event are only read. A claim that took nothing returns one
-- row of NULLs with the ids it had chosen: when there are any, another worker's claim in
-- flight had locked them all, and a claim made again leaving them out (`$10`) takes the next
-- ones in line; made again (`$11`), its window is the first due rows nobody holds, each
-- locked as it is read, the ones held skipped.
CREATE OR REPLACE FUNCTION {s}.claim(
    timestamptz, text[], bigint, timestamptz, bigint, bigint, text[], bigint[], bigint,
    text[], boolean)
RETURNS TABLE (o_id text, o_event_id text, o_org text, o_event_type text, o_webhook_id text,
               o_url text, o_status text, o_attempts integer, o_due_at timestamptz,
               o_last_error text, o_created_at timestamptz, o_updated_at timestamptz,
               o_payload bytea, o_chosen text[])
LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off AS $$
BEGIN
    IF NOT $11 THEN
        RETURN QUERY
        WITH candidates AS (
                SELECT delivery_id AS id, webhook_id, due_at FROM {s}.queue
                WHERE due_at <= $1 AND webhook_id <> ALL($2) AND delivery_id <> ALL($10)
                ORDER BY due_at LIMIT $6),
            ranked AS (
                SELECT c.*, row_number() OVER (PARTITION BY c.webhook_id
                                               ORDER BY c.due_at, c.id) AS n
                FROM candidates c),
            chosen AS (
                SELECT r.id FROM ranked r
                LEFT JOIN unnest($7::text[], $8::bigint[]) AS b(webhook_id, busy)
                    ON b.webhook_id = r.webhook_id
                WHERE $9::bigint IS NULL OR r.n + coalesce(b.busy, 0) <= $9
                ORDER BY r.due_at, r.id LIMIT $3),
            due AS (
                SELECT l.delivery_id AS id, l.due_at AS was_due
                FROM chosen c CROSS JOIN LATERAL (
                    SELECT l.delivery_id, l.due_at FROM {s}.queue l
                    WHERE l.delivery_id = c.id AND l.due_at <= $1
                    FOR UPDATE SKIP LOCKED) l),
            q AS (
                UPDATE {s}.queue u SET due_at = $4, lease = $5
                FROM due WHERE u.delivery_id = due.id
                RETURNING u.delivery_id, u.due_at, due.was_due)
            SELECT d.id, d.event_id, e.org, e.event_type, d.webhook_id, d.url, d.status,
                d.attempts, coalesce(q.due_at, d.due_at), d.last_error, d.created_at,
                d.updated_at, e.payload, CASE WHEN q.delivery_id IS NULL THEN w.ids END
            FROM (SELECT array_agg(id) AS ids FROM chosen) w
            LEFT JOIN (q JOIN {s}.deliveries d ON d.id = q.delivery_id
                       JOIN {s}.events e ON e.id = d.event_id)
                ON true
            ORDER BY q.was_due, d.id;
    ELSE
        RETURN QUERY
        WITH candidates AS (
                SELECT delivery_id AS id, webhook_id, due_at FROM {s}.queue
                WHERE due_at <= $1 AND webhook_id <> ALL($2) AND delivery_id <> ALL($10)
                ORDER BY due_at LIMIT $6 FOR UPDATE SKIP LOCKED),
            ranked AS (
                SELECT c.*, row_number() OVER (PARTITION BY c.webhook_id
                                               ORDER BY c.due_at, c.id) AS n
                FROM candidates c),
            chosen AS (
                SELECT r.id FROM ranked r
                LEFT JOIN unnest($7::text[], $8::bigint[]) AS b(webhook_id, busy)
                    ON b.webhook_id = r.webhook_id
                WHERE $9::bigint IS NULL OR r.n + coalesce(b.busy, 0) <= $9
                ORDER BY r.due_at, r.id LIMIT $3),
            due AS (
                SELECT l.delivery_id AS id, l.due_at AS was_due
                FROM chosen c CROSS JOIN LATERAL (
                    SELECT l.delivery_id, l.due_at FROM {s}.queue l
                    WHERE l.delivery_id = c.id AND l.due_at <= $1
                    FOR UPDATE SKIP LOCKED) l),
            q AS (
                UPDATE {s}.queue u SET due_at = $4, lease = $5
                FROM due WHERE u.delivery_id = due.id
                RETURNING u.delivery_id, u.due_at, due.was_due)
            SELECT d.id, d.event_id, e.org, e.event_type, d.webhook_id, d.url, d.status,
                d.attempts, coalesce(q.due_at, d.due_at), d.last_error, d.created_at,
                d.updated_at, e.payload, CASE WHEN q.delivery_id IS NULL THEN w.ids END
            FROM (SELECT array_agg(id) AS ids FROM chosen) w
            LEFT JOIN (q JOIN {s}.deliveries d ON d.id = q.delivery_id
                       JOIN {s}.events e ON e.id = d.event_id)
                ON true
            ORDER BY q.was_due, d.id;
    END IF;
END $$;
ALTER FUNCTION {s}.finish(text, bigint, timestamptz, boolean, timestamptz, integer, bigint,
    text, text, text, text, timestamptz, text) SET enable_seqscan = off;
"#,
];

/// Refuses schema names that would need quoting (or could inject SQL).
pub(super) fn check_name(schema: &str) -> Result<(), PostgresError> {
    let mut chars = schema.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_well && rest_ok && schema.len() <= 48 && !schema.starts_with("pg_") {
        return Ok(());
    }
    Err(PostgresError::Config {
        message: format!(
            "the schema name `{schema}` is not usable: use 1 to 48 lower-case letters, digits \
             and `_`, starting with a letter or `_` (and not `pg_`)"
        ),
    })
}

/// The `NOTIFY` channel of a schema.
pub(super) fn channel(schema: &str) -> String {
    format!("{schema}_deliveries")
}

fn render(sql: &str, schema: &str) -> String {
    sql.replace("{s}", schema)
        .replace("{channel}", &channel(schema))
        .replace("{reserved}", &reserved_header_sql("h.key"))
}

/// The schema's version, `None` when it has no migrations table.
pub(super) async fn version(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<Option<i32>, PostgresError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}.migrations")],
        )
        .await
        .map_err(PostgresError::Database)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT coalesce(max(version), 0) FROM {schema}.migrations");
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(PostgresError::Database)?;
    Ok(Some(row.get(0)))
}

/// Creates the schema and applies what it lacks, in one transaction under an advisory lock:
/// a second process waits, then finds nothing to do. Returns the version found.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<i32, PostgresError> {
    let tx = client
        .transaction()
        .await
        .map_err(PostgresError::Database)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("dataops-webhooks migrate {schema}")],
    )
    .await
    .map_err(PostgresError::Database)?;
    tx.batch_execute(&render(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema,
    ))
    .await
    .map_err(PostgresError::Database)?;
    let found = version(&tx, schema).await?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i32 + 1;
        let failed = |source| PostgresError::Migration {
            schema: schema.to_owned(),
            version,
            source,
        };
        tx.batch_execute(&render(sql, schema))
            .await
            .map_err(failed)?;
        tx.execute(
            &render("INSERT INTO {s}.migrations (version) VALUES ($1)", schema),
            &[&version],
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(PostgresError::Database)?;
    Ok(found)
}

/// Every statement, rendered once for the store's schema.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) enqueue: String,
    pub(super) enqueue_flat: String,
    pub(super) notify: String,
    pub(super) duplicate_event: String,
    pub(super) existing_delivery: String,
    pub(super) deliveries_of_event: String,
    pub(super) claim: String,
    pub(super) claim_contended: String,
    pub(super) finish_many: String,
    pub(super) finish_set: String,
    pub(super) get_delivery: String,
    pub(super) list_deliveries: String,
    pub(super) attempts: String,
    pub(super) redeliver: String,
    pub(super) statistics: String,
    pub(super) depth: String,
    pub(super) record_test: String,
    pub(super) purge: String,
    pub(super) insert_webhook: String,
    pub(super) get_webhook: String,
    pub(super) webhook_with_keys: String,
    pub(super) update_webhook: String,
    pub(super) delete_webhook: String,
    pub(super) list_webhooks: String,
    pub(super) signing_keys: String,
    pub(super) put_signing_keys: String,
    pub(super) subscribers: String,
}

/// The columns of a `DeliveryRecord`, in the order `queue::record` reads them, from `d` (the
/// delivery), `e` (its event) and `q` (its queue row, if it is pending: the due time there
/// is the current one, the end of the lease while claimed).
const RECORD: &str = "d.id, d.event_id, e.org, e.event_type, d.webhook_id, d.url, d.status, \
     d.attempts, coalesce(q.due_at, d.due_at), d.last_error, d.created_at, d.updated_at";

/// The tables a `RECORD` reads, by their letters.
const RECORD_FROM: &str = "{s}.deliveries d JOIN {s}.events e ON e.id = d.event_id
                LEFT JOIN {s}.queue q ON q.delivery_id = d.id";

impl Statements {
    pub(super) fn new(schema: &str) -> Self {
        let r = |sql: &str| {
            let sql = sql
                .replace("{RECORD}", RECORD)
                .replace("{RECORD_FROM}", RECORD_FROM);
            render(&sql, schema)
        };
        Self {
            enqueue: r("WITH ev AS (
                    INSERT INTO {s}.events
                        (id, org, project, event_type, payload, idempotency_key, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (org, idempotency_key) WHERE idempotency_key IS NOT NULL
                    DO NOTHING
                    RETURNING id),
                ins AS (
                    INSERT INTO {s}.deliveries
                        (id, event_id, webhook_id, url, status, due_at, created_at, updated_at)
                    SELECT d.id, ev.id, d.webhook_id, d.url, 'pending', $7, $7, $7
                    FROM ev, unnest($8::text[], $9::text[], $10::text[]) AS d(id, webhook_id, url)
                    RETURNING id, webhook_id, due_at),
                queued AS (
                    INSERT INTO {s}.queue (delivery_id, webhook_id, due_at)
                    SELECT id, webhook_id, due_at FROM ins)
                SELECT (SELECT count(*) FROM ev) AS recorded"),
            // A group of events without idempotency keys, their deliveries (`$8` names each
            // one's event) and the wake-up, in one statement.
            enqueue_flat: r("WITH ev AS (
                    INSERT INTO {s}.events
                        (id, org, project, event_type, payload, idempotency_key, created_at)
                    SELECT e.id, e.org, e.project, e.event_type, e.payload, NULL, e.created_at
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                                $6::timestamptz[])
                        AS e(id, org, project, event_type, payload, created_at)
                    RETURNING id, created_at),
                ins AS (
                    INSERT INTO {s}.deliveries
                        (id, event_id, webhook_id, url, status, due_at, created_at, updated_at)
                    SELECT d.id, ev.id, d.webhook_id, d.url, 'pending', ev.created_at,
                           ev.created_at, ev.created_at
                    FROM unnest($7::text[], $8::text[], $9::text[], $10::text[])
                        AS d(id, event_id, webhook_id, url)
                    JOIN ev ON ev.id = d.event_id
                    RETURNING id, webhook_id, due_at),
                queued AS (
                    INSERT INTO {s}.queue (delivery_id, webhook_id, due_at)
                    SELECT id, webhook_id, due_at FROM ins)
                SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM ins),
                       pg_notify('{channel}', '')"),
            notify: r("SELECT pg_notify('{channel}', '')"),
            duplicate_event: r("SELECT id FROM {s}.events WHERE org = $1 AND idempotency_key = $2"),
            existing_delivery: r("SELECT id FROM {s}.deliveries WHERE id = ANY($1) LIMIT 1"),
            deliveries_of_event: r("SELECT {RECORD} FROM {RECORD_FROM}
                WHERE d.event_id = $1 ORDER BY d.id"),
            // The claim (the schema's `claim` function), and the claim made again after
            // another worker's claim held all it chose.
            claim: r("SELECT * FROM {s}.claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false)"),
            claim_contended: r(
                "SELECT * FROM {s}.claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true)",
            ),
            // Settles, one transaction: in webhook then delivery order, so that concurrent
            // groups lock health and delivery rows in the same order. Each webhook is read
            // in a subquery of its own, by the delivery's key whatever the table's size
            // when the plan was made (a join could be planned as a read of the whole table).
            finish_many: r("WITH t AS MATERIALIZED (
                    SELECT t.*, (SELECT d.webhook_id FROM {s}.deliveries d
                                 WHERE d.id = t.id) AS webhook_id
                    FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::boolean[],
                                $5::timestamptz[], $6::integer[], $7::bigint[], $8::text[],
                                $9::text[], $10::text[], $11::text[], $12::timestamptz[],
                                $13::text[])
                        WITH ORDINALITY AS t(id, lease, at_now, attempted, attempted_at, status,
                                             duration_us, response, error_kind, error,
                                             next_status, due, next_error, ordinal)
                    ORDER BY webhook_id, t.id)
                SELECT t.ordinal, f.o_found, f.o_held, f.o_failing_since, f.o_recovered
                FROM t CROSS JOIN LATERAL {s}.finish(t.id, t.lease, t.at_now, t.attempted,
                    t.attempted_at, t.status, t.duration_us, t.response, t.error_kind, t.error,
                    t.next_status, t.due, t.next_error) f
                ORDER BY t.ordinal"),
// The same settles as set operations, for a group whose deliveries are distinct
            // (the schema's `finish_set` function).
            finish_set: r("SELECT * FROM {s}.finish_set($1, $2, $3, $4, $5, $6, $7, $8, $9,
                $10, $11, $12, $13)"),
            get_delivery: r("SELECT {RECORD} FROM {RECORD_FROM} WHERE d.id = $1"),
            list_deliveries: r("SELECT {RECORD} FROM {RECORD_FROM}
                WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.id < $2)
                  AND ($3::text IS NULL OR d.status = $3)
                  AND ($4::timestamptz IS NULL OR d.created_at >= $4)
                  AND ($6::timestamptz IS NULL OR d.created_at < $6)
                ORDER BY d.id DESC LIMIT $5"),
            attempts: r(
                "SELECT attempted_at, status, duration_us, response, error_kind, error
                FROM {s}.attempts WHERE delivery_id = $1 ORDER BY id",
            ),
            // The delivery's row is locked before its queue row, as a settle locks them.
            redeliver: r("WITH u AS (
                    UPDATE {s}.deliveries SET status = 'pending', due_at = $2, lease = NULL,
                        updated_at = $2
                    WHERE id = $1 RETURNING id, webhook_id),
                queued AS (
                    INSERT INTO {s}.queue (delivery_id, webhook_id, due_at)
                    SELECT id, webhook_id, $2 FROM u
                    ON CONFLICT (delivery_id) DO UPDATE SET due_at = $2, lease = NULL)
                SELECT count(*), pg_notify('{channel}', '') FROM u"),
            // Per webhook: counts by status and the oldest pending delivery, and the window's
            // attempts with nearest-rank percentiles; then one row (webhook NULL) with the
            // percentiles over all the attempts.
            statistics: r("WITH ids AS (SELECT DISTINCT unnest($1::text[]) AS w),
                counts AS (
                    SELECT webhook_id AS w,
                        count(*) FILTER (WHERE status = 'pending') AS p,
                        count(*) FILTER (WHERE status = 'succeeded') AS s,
                        count(*) FILTER (WHERE status = 'dead') AS dd,
                        min(created_at) FILTER (WHERE status = 'pending') AS oldest
                    FROM {s}.deliveries WHERE webhook_id = ANY($1) GROUP BY webhook_id),
                a AS (
                    SELECT d.webhook_id AS w, t.duration_us AS us, t.error_kind IS NULL AS ok
                    FROM {s}.deliveries d JOIN {s}.attempts t ON t.delivery_id = d.id
                    WHERE d.webhook_id = ANY($1) AND t.attempted_at BETWEEN $2 AND $3),
                ranked AS (
                    SELECT w, us, ok, row_number() OVER (PARTITION BY w ORDER BY us) AS r,
                        count(*) OVER (PARTITION BY w) AS n FROM a
                    UNION ALL
                    SELECT NULL, us, ok, row_number() OVER (ORDER BY us), count(*) OVER ()
                    FROM a),
                durations AS (
                    SELECT w, max(n) AS n, count(*) FILTER (WHERE ok) AS ok,
                        max(us) FILTER (WHERE r = (n * 50 + 99) / 100) AS p50,
                        max(us) FILTER (WHERE r = (n * 95 + 99) / 100) AS p95
                    FROM ranked GROUP BY w)
                SELECT ids.w, c.p, c.s, c.dd, c.oldest, d.n, d.ok, d.p50, d.p95
                FROM ids LEFT JOIN counts c ON c.w = ids.w LEFT JOIN durations d ON d.w = ids.w
                UNION ALL
                SELECT NULL, NULL, NULL, NULL, NULL, n, ok, p50, p95
                FROM durations WHERE w IS NULL"),
            depth: r("SELECT count(*) FILTER (WHERE due_at <= $1),
                    count(*) FILTER (WHERE due_at > $1 AND lease IS NULL),
                    count(*) FILTER (WHERE due_at > $1 AND lease IS NOT NULL),
                    min(due_at) FILTER (WHERE due_at <= $1)
                FROM {s}.queue"),
            // A test send: its event, its deliveries settled with one attempt each.
            record_test: r("WITH ev AS (
                    INSERT INTO {s}.events
                        (id, org, project, event_type, payload, idempotency_key, created_at)
                    VALUES ($1, $2, $3, $4, $5, NULL, $6)
                    RETURNING id),
                d AS (
                    INSERT INTO {s}.deliveries (id, event_id, webhook_id, url, status, attempts,
                        due_at, last_error, created_at, updated_at)
                    SELECT x.id, ev.id, x.webhook_id, x.url, $10, 1, NULL, $16, $6, $11
                    FROM ev, unnest($7::text[], $8::text[], $9::text[]) AS x(id, webhook_id, url)
                    RETURNING id),
                t AS (
                    INSERT INTO {s}.attempts
                        (delivery_id, attempted_at, status, duration_us, response, error_kind, error)
                    SELECT d.id, $11, $12, $13, $14, $15, $16 FROM d
                    RETURNING 1)
                SELECT count(*) FROM t"),
            // Up to `$3` settled deliveries past their retention, locked (skipping any another
            // purge or a redelivery holds) and rechecked; their attempts; and the events none
            // of whose deliveries is left. The statement's snapshot still sees the deliveries
            // it deletes, hence the exclusion in the last step.
            purge: r("WITH candidates AS (
                    SELECT id FROM {s}.deliveries
                    WHERE (status = 'succeeded' AND updated_at < $1)
                       OR (status = 'dead' AND updated_at < $2)
                    LIMIT $3::bigint + 1),
                chosen AS (
                    SELECT d.id, d.event_id FROM {s}.deliveries d
                    WHERE d.id IN (SELECT id FROM candidates ORDER BY id LIMIT $3::bigint)
                      AND ((d.status = 'succeeded' AND d.updated_at < $1)
                        OR (d.status = 'dead' AND d.updated_at < $2))
                    FOR UPDATE SKIP LOCKED),
                a AS (
                    DELETE FROM {s}.attempts t USING chosen c WHERE t.delivery_id = c.id
                    RETURNING 1),
                d AS (
                    DELETE FROM {s}.deliveries x USING chosen c WHERE x.id = c.id
                    RETURNING x.event_id),
                e AS (
                    DELETE FROM {s}.events ev
                    WHERE ev.id IN (SELECT event_id FROM d)
                      AND NOT EXISTS (SELECT 1 FROM {s}.deliveries y
                                      WHERE y.event_id = ev.id
                                        AND y.id NOT IN (SELECT id FROM chosen))
                    RETURNING 1)
                SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM a), (SELECT count(*) FROM e),
                    (SELECT count(*) FROM candidates) > $3::bigint"),
            insert_webhook: r("WITH w AS (
                    INSERT INTO {s}.webhooks (id, org, project, active, record)
                    VALUES ($1, $2, $3, $4, $5::text::jsonb) ON CONFLICT (id) DO NOTHING
                    RETURNING 1)
                SELECT count(*) FROM w"),
            get_webhook: r("SELECT record::text FROM {s}.webhooks WHERE id = $1"),
            webhook_with_keys: r("SELECT w.record::text, k.record::text
                FROM {s}.webhooks w LEFT JOIN {s}.signing_keys k ON k.org = w.org
                WHERE w.id = $1"),
            // A compare-and-set on the record's revision. Under concurrent updates PostgreSQL
            // re-checks the condition against the row the winner committed, so one wins.
            update_webhook: r("WITH w AS (
                    UPDATE {s}.webhooks
                    SET org = $2, project = $3, active = $4, record = $5::text::jsonb
                    WHERE id = $1 AND coalesce((record->>'revision')::bigint, 0) = $6
                    RETURNING 1)
                SELECT (SELECT count(*) FROM w),
                       (SELECT count(*) FROM {s}.webhooks WHERE id = $1)"),
            delete_webhook: r(
                "WITH w AS (DELETE FROM {s}.webhooks WHERE id = $1 RETURNING 1)
                SELECT count(*) FROM w",
            ),
            list_webhooks: r("SELECT record::text FROM {s}.webhooks
                WHERE org = $1 AND ($2::text IS NULL OR id > $2)
                  AND ($3 = 0 OR ($3 = 1 AND project = $4) OR ($3 = 2 AND project IS NULL))
                ORDER BY id LIMIT $5"),
            signing_keys: r("SELECT record::text FROM {s}.signing_keys WHERE org = $1"),
            put_signing_keys: r("INSERT INTO {s}.signing_keys (org, record)
                VALUES ($1, $2::text::jsonb)
                ON CONFLICT (org) DO UPDATE SET record = excluded.record"),
            subscribers: r("SELECT record::text FROM {s}.webhooks
                WHERE org = $1 AND active AND (project = $2 OR project IS NULL)
                ORDER BY id"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim made again after another worker's claim held all it chose differs from
    /// the first only in that its window is the first due rows nobody holds (each locked as
    /// it is read, the ones held skipped), at the cost of locking the whole window.
    #[test]
    fn the_contended_claim_locks_its_window_as_it_reads_it() {
        const WINDOW_END: &str = "ORDER BY due_at LIMIT $6";
        let claim = &MIGRATIONS[5][MIGRATIONS[5].find("FUNCTION {s}.claim(").expect("claim")..];
        let queries: Vec<&str> = claim.split("RETURN QUERY").skip(1).take(2).collect();
        let (first, again) = (queries[0].split(';').next(), queries[1].split(';').next());
        let (first, again) = (first.expect("first"), again.expect("again"));
        assert_eq!(first.matches(WINDOW_END).count(), 1);
        assert_eq!(
            again,
            first.replace(
                WINDOW_END,
                "ORDER BY due_at LIMIT $6 FOR UPDATE SKIP LOCKED"
            )
        );
        let sql = Statements::new("s");
        assert!(sql.claim.ends_with("false)") && sql.claim_contended.ends_with("true)"));
    }

    #[test]
    fn every_version_has_a_migration() {
        assert_eq!(MIGRATIONS.len() as i32, SCHEMA_VERSION);
        assert!(MIGRATIONS[3].contains(&format!("'{{channel}}', '{CONFIG_CHANGED}'")));
    }

    #[test]
    fn schema_names_that_need_quoting_are_refused() {
        for good in ["dataops_webhooks", "_w", "tenant_42"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(49);
        for bad in [
            "",
            "Webhooks",
            "9lives",
            "a-b",
            "a;drop table x",
            "pg_temp",
            "x\"y",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statements_name_the_schema_everywhere() {
        let sql = Statements::new("tenant_7");
        for statement in [
            &sql.claim,
            &sql.enqueue,
            &sql.finish_many,
            &sql.finish_set,
            &sql.redeliver,
        ] {
            assert!(!statement.contains("{s}"), "{statement}");
            assert!(statement.contains("tenant_7."), "{statement}");
        }
        assert!(sql.redeliver.contains("'tenant_7_deliveries'"));
    }
}
