//! The test database: its URL comes from `DATAOPS_WEBHOOKS_TEST_POSTGRES`; every test works
//! in a schema of its own and drops it at the end, pass or fail.
#![allow(dead_code)] // each test crate uses its own subset

use std::sync::atomic::{AtomicUsize, Ordering};

use dataops_webhooks::postgres::{PostgresOptions, PostgresStore};

/// The variable that holds the test database's URL.
pub(crate) const URL_VAR: &str = "DATAOPS_WEBHOOKS_TEST_POSTGRES";

/// The test database's URL; `None` (after saying how to enable the tests) when it is not
/// configured. Panics under CI, where the PostgreSQL tests must run.
pub(crate) fn url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {URL_VAR} is not: the PostgreSQL tests must run in CI")
        }
        _ => {
            eprintln!(
                "skipping a PostgreSQL test: set {URL_VAR} to enable it, for example \
                 {URL_VAR}=postgres://postgres@127.0.0.1:5432/test"
            );
            None
        }
    }
}

/// A schema of this test's own, dropped (with everything in it) when this is dropped.
pub(crate) struct TestSchema {
    pub(crate) url: String,
    pub(crate) name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl TestSchema {
    /// A fresh schema name for `test`; `None` when PostgreSQL tests are not enabled.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let url = url()?;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).expect("random");
        let name = format!("t_{test}_{}_{n}_{}", std::process::id(), hex::encode(tag));
        Some(Self { url, name })
    }

    /// Options for the test database and this schema, with a small pool.
    pub(crate) fn options(&self) -> PostgresOptions {
        PostgresOptions::new(&self.url)
            .expect("the test database URL")
            .schema(&self.name)
            .pool_size(8)
    }

    /// A store on this schema, migrated. Panics (the test fails) when the database is
    /// unreachable: a configured test database must be there.
    pub(crate) async fn store(&self) -> PostgresStore {
        let store = PostgresStore::connect(self.options())
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR} is set but the database is not usable: {e}"));
        store.migrate().await.expect("migrate");
        store
    }

    /// Runs `sql` on a connection of its own.
    pub(crate) async fn execute(&self, sql: &str) {
        let client = self.connect().await;
        client.batch_execute(sql).await.expect(sql);
    }

    /// The single number `sql` selects.
    pub(crate) async fn number(&self, sql: &str) -> i64 {
        let client = self.connect().await;
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// A connection of its own to the test database.
    pub(crate) async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime (or while it unwinds): clean up from a thread
        // with a runtime of its own.
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}
