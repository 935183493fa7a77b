//! [`PostgresStore`] (feature `postgres`): webhooks, secrets, events, deliveries and attempts
//! in one PostgreSQL schema that any number of processes, on any number of machines, share.
//!
//! - **The queue**: each pending delivery has a narrow row of its own in the `queue` table
//!   (its webhook, due time and lease), removed once the delivery is settled for good. Claims
//!   take due rows there with `FOR UPDATE SKIP LOCKED` and move their due time to the end of
//!   a lease: two workers never hold one delivery at once, and a crashed worker's deliveries
//!   become claimable again when its lease ends. A claim only reads the delivery and its
//!   event, and a settle's update of the delivery changes no indexed column.
//! - **Settles** that arrive while another is running share the next statement and commit,
//!   so a busy worker pays one round trip for many attempts; one the database refuses is
//!   retried on its own and holds back none of the others.
//! - **Wake-ups**: each group of emits raises one `NOTIFY` (delivered when it commits; emits
//!   that arrive together share one statement, or one transaction when they carry idempotency
//!   keys); each process listens on one dedicated connection and wakes its idle workers, so a
//!   delivery emitted on one machine is attempted at once on another.
//! - **Cached configuration**: while that connection listens, each process keeps the
//!   webhooks (with their keys) and the subscriber lists that emits and attempts read; a
//!   trigger notifies every process of each committed change to them, and the copy is dropped.
//! - **Migrations** ship with the crate and live in their own schema (default
//!   `dataops_webhooks`); [`PostgresStore::migrate`] runs them under an advisory lock, so
//!   every process may call it at start-up.
//! - **Transactional emit**: [`PostgresStore::emit_in`] records an event inside the host's
//!   own transaction: it exists if and only if that transaction commits.
//!
//! ```no_run
//! use std::sync::Arc;
//! use dataops_webhooks::postgres::{PostgresOptions, PostgresStore};
//! use dataops_webhooks::{WebhookDispatcher, WorkerOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = PostgresOptions::new("postgres://app@db.internal/app")?.schema("webhooks");
//! let store = Arc::new(PostgresStore::connect(options).await?);
//! store.migrate().await?;
//! let dispatcher = WebhookDispatcher::builder()
//!     .store(store.clone())
//!     .queue(store)
//!     .build()?;
//! let worker = dispatcher.start_worker(WorkerOptions::default());
//! # worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Workers on different machines compare lease ends with their own clocks: keep the clocks
//! in sync (NTP). The default lease is the request timeout plus 30 s, which is the most
//! clock skew it tolerates.

mod cache;
mod config;
mod enqueue;
mod error;
mod group;
mod listen;
#[cfg(test)]
mod plans;
mod queue;
mod schema;
mod settle;
mod transaction;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio_postgres::NoTls;

pub use error::PostgresError;
pub use schema::SCHEMA_VERSION;
pub use transaction::EmittedInTransaction;

use error::Failure;

/// The schema the crate's tables live in unless [`PostgresOptions::schema`] says otherwise.
pub const DEFAULT_SCHEMA: &str = "dataops_webhooks";

/// How to reach the database and where the tables live.
///
/// ```
/// use std::time::Duration;
/// use dataops_webhooks::postgres::PostgresOptions;
///
/// let options = PostgresOptions::new("postgres://app:s3cret@db.internal:5432/app")?
///     .schema("webhooks")
///     .pool_size(32)
///     .connect_timeout(Duration::from_secs(3));
/// assert!(!format!("{options:?}").contains("s3cret"));
/// # Ok::<(), dataops_webhooks::postgres::PostgresError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connection settings (host, port, user, password, database).
    pub config: tokio_postgres::Config,
    /// The schema of the crate's tables: lower-case letters, digits and `_`, starting with a
    /// letter or `_`, at most 48 characters (default [`DEFAULT_SCHEMA`]).
    pub schema: String,
    /// Pooled connections per store, at most (default 16). The connection used last is
    /// handed out first, so a steady load keeps to a few and the rest serve bursts. Each
    /// process also holds one more, for `LISTEN`, once a worker starts.
    pub pool_size: usize,
    /// How long to wait for a connection, from the server or the pool (default 5 s).
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    /// Options for the database at `url` (`postgres://user:password@host:port/database`, or
    /// a `key=value` connection string).
    ///
    /// # Errors
    /// [`PostgresError::Config`] when the URL cannot be parsed; the error does not repeat it.
    pub fn new(url: &str) -> Result<Self, PostgresError> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| PostgresError::Config {
            message: format!("the connection URL is not valid: {e}"),
        })?;
        Ok(Self::from_config(config))
    }

    /// Options over connection settings built in code.
    pub fn from_config(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Puts the tables in `schema` (checked by [`PostgresStore::connect`]).
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`pool_size`](Self::pool_size) (at least 1).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Where the server is, for messages: hosts, ports and database, never the password.
    fn target(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        format!(
            "{} port {} database {}",
            if hosts.is_empty() {
                "localhost".to_owned()
            } else {
                hosts.join(",")
            },
            if ports.is_empty() {
                "5432".to_owned()
            } else {
                ports.join(",")
            },
            self.config.get_dbname().unwrap_or("(default)")
        )
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("target", &self.target())
            .field("user", &self.config.get_user())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Webhook configuration and the delivery queue in a PostgreSQL schema. Implements
/// [`ConfigStore`](crate::ConfigStore) and [`DeliveryQueue`](crate::DeliveryQueue); cheap to
/// clone, clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

/// Connections [`PostgresStore::migrate`] and [`PostgresStore::check_schema`] open and
/// prepare ahead (at most the pool's size): about as many as a busy process uses at a time
/// (a group of emits, a claim, a group of settles, a lookup).
const WARM_CONNECTIONS: usize = 4;

/// How long the first lookups of configuration wait for the `LISTEN` connection (it takes a
/// few milliseconds on a healthy server) before reading without the cache: short, so that a
/// server that does not answer delays a call by little more than the connect timeout.
const FIRST_LISTEN_WAIT: Duration = Duration::from_secs(1);

struct Inner {
    pool: Pool,
    options: PostgresOptions,
    sql: schema::Statements,
    /// Raised by the `LISTEN` connection; started by the first worker.
    arrivals: OnceLock<listen::Listener>,
    /// Settles waiting to share the next statement.
    settles: settle::SettleGroup,
    /// Emits waiting to share the next transaction.
    emits: enqueue::EnqueueGroup,
    /// The configuration every emit and attempt reads, while the listener hears changes.
    cache: Arc<cache::ConfigCache>,
}

impl PostgresStore {
    /// Builds the pool and makes sure the server answers. Does not touch the schema: call
    /// [`migrate`](Self::migrate) (or [`check_schema`](Self::check_schema) in processes that
    /// leave migrations to a deploy step).
    ///
    /// # Errors
    /// [`PostgresError::Config`] for a bad schema name; [`PostgresError::Unreachable`] when no
    /// connection can be made in time.
    pub async fn connect(mut options: PostgresOptions) -> Result<Self, PostgresError> {
        schema::check_name(&options.schema)?;
        if options.config.get_connect_timeout().is_none() {
            options.config.connect_timeout(options.connect_timeout);
        }
        let manager = Manager::from_config(
            options.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // The connection used last is handed out first: a few connections carry the steady
        // load with their server processes' caches warm, and the rest serve bursts (handed
        // out in turn, the load spread over every server process, and each kept its
        // buffers grown to the largest statement it had carried).
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| PostgresError::Config {
                message: format!("the connection pool cannot be built: {e}"),
            })?;
        let store = Self {
            inner: Arc::new(Inner {
                sql: schema::Statements::new(&options.schema),
                pool,
                options,
                arrivals: OnceLock::new(),
                settles: settle::SettleGroup::default(),
                emits: enqueue::EnqueueGroup::default(),
                cache: Arc::default(),
            }),
        };
        drop(store.client().await.map_err(|f| store.unreachable(f))?);
        Ok(store)
    }

    /// Creates the schema and brings it up to [`SCHEMA_VERSION`]: the one call a deployment
    /// makes. Safe to run from many processes at once (they take turns on an advisory lock);
    /// returns the version found before.
    ///
    /// # Errors
    /// [`PostgresError::SchemaTooNew`] when a newer crate migrated the schema;
    /// [`PostgresError::Migration`] when a step fails (it is rolled back);
    /// [`PostgresError::Unreachable`].
    pub async fn migrate(&self) -> Result<i32, PostgresError> {
        let mut client = self.client().await.map_err(|f| self.unreachable(f))?;
        let found = schema::migrate(&mut client, &self.inner.options.schema).await?;
        drop(client);
        self.warm().await;
        Ok(found)
    }

    /// Opens up to [`WARM_CONNECTIONS`] connections and prepares on each the statements that
    /// emits, claims, settles and lookups run, so that the first of them after a start do not
    /// pay for it: PostgreSQL parses and plans a statement once per connection, and a new
    /// server process loads its catalog caches. (The claim and the group settle call schema
    /// functions, whose own statements are planned at their first calls on each connection
    /// instead.) Runs once the schema is known to be current. Best effort: what fails here
    /// fails again, with its cause, at the call that needs it.
    async fn warm(&self) {
        use std::future::Future as _;
        let sql = &self.inner.sql;
        let hot = [
            &sql.enqueue_flat,
            &sql.claim,
            &sql.finish_set,
            &sql.subscribers,
            &sql.webhook_with_keys,
        ];
        let mut clients = Vec::new();
        for _ in 0..WARM_CONNECTIONS.min(self.inner.options.pool_size) {
            match self.client().await {
                Ok(client) => clients.push(client),
                Err(_) => break,
            }
        }
        async fn prepare(client: &deadpool_postgres::ClientWrapper, hot: &[&String]) {
            for statement in hot {
                if client.prepare_cached(statement).await.is_err() {
                    return;
                }
            }
        }
        let mut warming: Vec<_> = clients.iter().map(|c| Box::pin(prepare(c, &hot))).collect();
        // Every connection prepares at once (each on its own server process).
        std::future::poll_fn(|cx| {
            warming.retain_mut(|w| w.as_mut().poll(cx).is_pending());
            if warming.is_empty() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    /// Checks that the schema exists at this crate's version, without changing anything.
    ///
    /// # Errors
    /// [`PostgresError::SchemaMissing`], [`PostgresError::SchemaOutdated`],
    /// [`PostgresError::SchemaTooNew`], [`PostgresError::Unreachable`].
    pub async fn check_schema(&self) -> Result<(), PostgresError> {
        let client = self.client().await.map_err(|f| self.unreachable(f))?;
        let schema = &self.inner.options.schema;
        let plain: &tokio_postgres::Client = &client;
        let found = schema::version(plain, schema).await?;
        drop(client);
        match found {
            None => Err(PostgresError::SchemaMissing {
                schema: schema.clone(),
            }),
            Some(found) if found < SCHEMA_VERSION => Err(PostgresError::SchemaOutdated {
                schema: schema.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(found) if found > SCHEMA_VERSION => Err(PostgresError::SchemaTooNew {
                schema: schema.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(_) => {
                self.warm().await;
                Ok(())
            }
        }
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.options.schema
    }

    /// The connection pool, for hosts that run their own queries (and transactions for
    /// [`emit_in`](Self::emit_in)) on the same connections.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Failure> {
        self.inner.pool.get().await.map_err(Failure::Pool)
    }

    fn unreachable(&self, failure: Failure) -> PostgresError {
        PostgresError::Unreachable {
            target: self.inner.options.target(),
            source: Box::new(failure),
        }
    }

    /// The `LISTEN` connection, started on first use (by a worker, or by the first read of
    /// cached configuration; inside the runtime).
    fn listener(&self) -> &listen::Listener {
        self.inner.arrivals.get_or_init(|| {
            listen::Listener::start(
                self.inner.options.config.clone(),
                schema::channel(&self.inner.options.schema),
                self.inner.cache.clone(),
            )
        })
    }

    /// The cached configuration, with the listener that keeps it current started; the
    /// first calls wait for the listener's first try (at most [`FIRST_LISTEN_WAIT`]).
    async fn config_cache(&self) -> &cache::ConfigCache {
        self.listener().first_try(FIRST_LISTEN_WAIT).await;
        &self.inner.cache
    }

    fn arrivals_signal(&self) -> Arc<Notify> {
        self.listener().signal()
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}
