//! What can go wrong: [`PostgresError`] for connecting and migrating, and the internal
//! [`Failure`] that the store and queue traits' errors are made from.

use tokio_postgres::error::SqlState;

use crate::error::chain;

use crate::queue::QueueError;
use crate::store::StoreError;
use crate::webhook::DeliveryId;

/// Why the PostgreSQL store could not be set up. Messages name the server (host, port,
/// database) but never the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The options are not usable (an unparseable URL, a bad schema name).
    #[error("{message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No connection could be made: is the server running, and do host, port, user and
    /// database match?
    #[error("cannot reach PostgreSQL at {target}: check that the server runs and the connection settings: {source}")]
    Unreachable {
        /// Host, port and database tried.
        target: String,
        /// The connection error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The schema has no tables of this crate yet.
    #[error("the schema `{schema}` has no dataops-webhooks tables: run PostgresStore::migrate")]
    SchemaMissing {
        /// The schema.
        schema: String,
    },
    /// The schema is at an older version than this crate needs.
    #[error("the schema `{schema}` is at version {found}; this crate needs {supported}: run PostgresStore::migrate")]
    SchemaOutdated {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// The version this crate writes.
        supported: i32,
    },
    /// A newer version of the crate migrated the schema; upgrade this process too.
    #[error("the schema `{schema}` is at version {found}; this version of dataops-webhooks knows up to {supported}: upgrade the crate")]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// The newest this crate knows.
        supported: i32,
    },
    /// A migration step failed and was rolled back; the schema stays at the version before.
    #[error("migrating the schema `{schema}` to version {version} failed: {source}")]
    Migration {
        /// The schema.
        schema: String,
        /// The version it failed to reach.
        version: i32,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Any other database error.
    #[error("PostgreSQL failed: {0}")]
    Database(#[source] tokio_postgres::Error),
}

/// What went wrong inside a call; turned into the trait's own error type at the boundary.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(deadpool_postgres::PoolError),
    #[error("a stored record cannot be read: {0}")]
    Corrupt(String),
    #[error("delivery {0} is already queued")]
    DuplicateDelivery(DeliveryId),
    /// The group a write joined ended without running it; nothing was written for it.
    #[error("the write was dropped before it ran")]
    Cancelled,
    /// No pooled connection for a group of writes: nothing was written.
    #[error("no connection to write with: {0}")]
    NoConnection(String),
    /// The connection failed while a group of writes ran: they may or may not be recorded.
    #[error("the connection failed mid-write; it may or may not be recorded: {0}")]
    Interrupted(String),
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl Failure {
    /// The message for the operator: what to do about the common failures.
    pub(super) fn describe(&self, schema: &str) -> String {
        let code = match self {
            Self::Db(e) => e.code(),
            Self::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        };
        if let Some(code) = code {
            if [
                SqlState::UNDEFINED_TABLE,
                SqlState::INVALID_SCHEMA_NAME,
                SqlState::UNDEFINED_FUNCTION,
            ]
            .contains(code)
            {
                return format!(
                    "PostgreSQL: the schema `{schema}` is missing or not migrated: run PostgresStore::migrate"
                );
            }
        }
        let cause = chain(self);
        match self {
            Self::Pool(_) | Self::NoConnection(_) => {
                format!("PostgreSQL is unreachable (no pooled connection): {cause}")
            }
            Self::Db(e) if e.is_closed() || e.code().is_none() => {
                format!("PostgreSQL connection failed: {cause}")
            }
            Self::Interrupted(_) => format!("PostgreSQL connection failed: {cause}"),
            _ => format!("PostgreSQL: {cause}"),
        }
    }

    pub(super) fn into_queue_error(self, schema: &str) -> QueueError {
        match self {
            Self::DuplicateDelivery(id) => QueueError::Conflict(id),
            other => QueueError::backend(other.describe(schema), other),
        }
    }

    pub(super) fn into_store_error(self, schema: &str) -> StoreError {
        StoreError::backend(self.describe(schema), self)
    }
}

/// Whether `error` is a unique violation of `constraint`.
pub(super) fn violates(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && error
            .as_db_error()
            .and_then(|db| db.constraint())
            .is_some_and(|c| c == constraint)
}
