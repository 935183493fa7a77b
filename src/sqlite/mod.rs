//! [`SqliteStore`] (feature `sqlite`): the whole state — webhooks, secrets, events,
//! deliveries, attempts — in one SQLite file. The embedded durable default.
//!
//! The file runs in WAL mode with `synchronous = NORMAL`: a committed emit survives the
//! process being killed at any point (it is in the write-ahead log before `emit` returns);
//! only a power loss or OS crash can lose the last few commits. Writes go through one
//! connection on a thread of its own, which commits the writes that arrive together in one
//! transaction (group commit: each write still atomic on its own, and answered only once
//! committed); reads go through a few more connections on tokio's blocking pool (WAL lets
//! them run beside the writer). The lookups every emit and attempt make (the subscribers of
//! an event, the webhook and keys of an attempt) run on the calling thread instead, on a
//! connection that never waits for a lock: a few B-tree probes on cached pages cost less
//! than the hop to the pool, and a lookup that would wait takes the pool after all. What
//! they read is kept in the process for as long as the file's configuration counter, which
//! triggers bump with every change to a webhook or signing keys, stays the same: a change
//! made anywhere is seen by the next lookup.
//!
//! ```no_run
//! use std::sync::Arc;
//! use dataops_webhooks::sqlite::SqliteStore;
//! use dataops_webhooks::{WebhookDispatcher, WorkerOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteStore::open("webhooks.db").await?); // creates and migrates
//! let dispatcher = WebhookDispatcher::builder()
//!     .store(store.clone())
//!     .queue(store)
//!     .build()?;
//! let worker = dispatcher.start_worker(WorkerOptions::default());
//! # worker.shutdown().await;
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod queue;
mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::Connection;

pub use schema::SCHEMA_VERSION;

/// Webhook configuration and the delivery queue in one SQLite file. Implements
/// [`ConfigStore`](crate::ConfigStore) and [`DeliveryQueue`](crate::DeliveryQueue); cheap to
/// share behind an `Arc`.
#[derive(Clone)]
pub struct SqliteStore {
    /// The one connection that writes, on a thread of its own that commits writes in groups.
    writer: Arc<writer::Writer>,
    /// Read-only connections: a lookup never waits behind a write.
    readers: Arc<[Mutex<Connection>]>,
    /// Spreads reads over `readers` when all are busy.
    next_reader: Arc<AtomicUsize>,
    /// Read-only connections that never wait, for the lookups every emit and attempt makes
    /// (see [`SqliteStore::lookup`]).
    lookups: Arc<[Mutex<Connection>]>,
    /// The configuration lookups read, while the file's configuration counter holds.
    config: Arc<cache::ConfigCache>,
    path: PathBuf,
}

/// Read connections per store: enough to keep lookups off the writer on a small machine.
const READERS: usize = 2;

/// Connections for lookups made on the calling thread: one per runtime thread that may be
/// making one at the same moment, on a small machine.
const LOOKUPS: usize = 2;

/// Why a SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file cannot be opened or set up (missing directory, no permission, not a
    /// database).
    #[error("cannot open the SQLite database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer version of this crate; upgrade the crate (or use a
    /// copy of the file made before the upgrade).
    #[error("the database {path} has schema version {found}; this version of dataops-webhooks knows up to {supported}: upgrade the crate")]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: i64,
        /// The newest this code knows.
        supported: i64,
    },
    /// A migration failed; the file is left at its previous version.
    #[error("migrating {path} to schema version {version} failed: {source}")]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version it failed to reach.
        version: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The blocking task running SQLite was cancelled (the runtime is shutting down).
    #[error("the SQLite task did not finish: {0}")]
    Task(String),
    /// `VACUUM` failed (another connection held the file for longer than the busy timeout,
    /// or the disk has no room for the copy it makes); nothing was lost, try again later.
    #[error("vacuuming the SQLite database {path} failed: {source}; nothing was lost, try again when the file is less busy")]
    Vacuum {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date:
    /// the one call a host makes.
    ///
    /// # Errors
    /// [`SqliteError::Open`], [`SqliteError::SchemaTooNew`], [`SqliteError::Migration`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_path_buf();
        // The writer creates and migrates the file before the readers open it.
        let writer = writer::Writer::start(path.clone()).await?;
        let owned = path.clone();
        let (readers, lookups) = tokio::task::spawn_blocking(move || {
            let open = |n, wait| {
                (0..n)
                    .map(|_| schema::open_reader(&owned, wait).map(Mutex::new))
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok::<_, SqliteError>((open(READERS, true)?, open(LOOKUPS, false)?))
        })
        .await
        .map_err(|e| SqliteError::Task(e.to_string()))??;
        Ok(Self {
            writer: Arc::new(writer),
            readers: readers.into(),
            next_reader: Arc::default(),
            lookups: lookups.into(),
            config: Arc::default(),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the space of purged rows back to the file system: `VACUUM`, then a checkpoint
    /// that truncates the write-ahead log. Purges (see
    /// [`RetentionPolicy`](crate::queue::RetentionPolicy)) free pages for reuse but do not
    /// shrink the file; call this off-peak (weekly, say) when the file should shrink. It
    /// rewrites the whole file, needs as much free disk again, and holds the write lock while
    /// it runs: emits wait (up to the 10 s busy timeout each).
    ///
    /// # Errors
    /// [`SqliteError::Vacuum`]; [`SqliteError::Task`].
    pub async fn vacuum(&self) -> Result<(), SqliteError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let failed = |source| SqliteError::Vacuum {
                path: path.clone(),
                source,
            };
            let conn = rusqlite::Connection::open(&path).map_err(failed)?;
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .map_err(failed)?;
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(failed)
        })
        .await
        .map_err(|e| SqliteError::Task(e.to_string()))?
    }

    /// Runs the write `f` atomically, committed with whatever other writes are waiting
    /// (see `writer`).
    async fn call<T, F>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        self.writer.call(f).await
    }

    /// Runs the read-only `f` on a reader connection, on the blocking pool: a free one if
    /// there is one, else the next in turn.
    async fn read<T, F>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let readers = self.readers.clone();
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let n = readers.len();
            let free = (0..n).find_map(|i| readers[(turn + i) % n].try_lock().ok());
            let conn = match free {
                Some(conn) => conn,
                None => readers[turn % n]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            f(&conn)
        })
        .await
        .map_err(|e| Failure::Task(e.to_string()))?
    }

    /// Runs the read-only `f` — a lookup of a few rows by key — on this thread, when a lookup
    /// connection is free and SQLite can answer without waiting; otherwise as
    /// [`read`](Self::read). The webhook an attempt sends to and the subscribers of an emit
    /// are read so: a hop to the blocking pool cost more than the read itself (two thread
    /// wake-ups against a few microseconds of B-tree lookups on cached pages), and a WAL
    /// reader waits on nobody except in rare moments (recovering the log after a crash),
    /// which the fallback covers.
    async fn lookup<T, F>(&self, f: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        for conn in self.lookups.iter() {
            let Ok(conn) = conn.try_lock() else { continue };
            match f(&conn) {
                Err(Failure::Sql(e)) if is_busy(&e) => break,
                done => return done,
            }
        }
        self.read(f).await
    }
}

/// Whether SQLite refused to wait for a lock (`SQLITE_BUSY` with no busy timeout).
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What went wrong inside a call; turned into the trait's own error type at the boundary.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("a stored record cannot be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the SQLite task did not finish: {0}")]
    Task(String),
    #[error("{0}")]
    Write(String),
    #[error("delivery {0} is already queued")]
    DuplicateDelivery(crate::webhook::DeliveryId),
    #[error("webhook {0} already exists")]
    DuplicateWebhook(crate::webhook::WebhookId),
    #[error("webhook {0} does not exist")]
    MissingWebhook(crate::webhook::WebhookId),
    #[error("webhook {0} was changed since it was read")]
    StaleWebhook(crate::webhook::WebhookId),
}

/// A time as stored: microseconds since the Unix epoch.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A text column, borrowed from the row (no copy).
fn text<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(index)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.into()))
}

/// Reads a column through `FromStr` (ids, event types, statuses).
fn parsed<T>(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    text(row, index)?.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.to_string().into())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A lookup that SQLite refuses for a lock (on a connection that does not wait) runs again
    /// on a reader that waits; any other answer, error or not, is the lookup's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_refused_for_a_lock_runs_again_on_a_waiting_reader() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("lookup.db"))
            .await
            .expect("open");
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let answer = store
            .lookup(move |conn| {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
                    return Err(Failure::Sql(rusqlite::Error::SqliteFailure(busy, None)));
                }
                Ok(conn.query_row("SELECT count(*) FROM webhooks", [], |r| r.get::<_, i64>(0))?)
            })
            .await;
        assert!(matches!(answer, Ok(0)), "{answer:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        let refused = store
            .lookup(|_| Err::<(), _>(Failure::Task("not a lock".into())))
            .await;
        assert!(matches!(refused, Err(Failure::Task(_))), "{refused:?}");
    }
}
