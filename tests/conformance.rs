//! Both conformance suites, one test per behaviour, against every backend built in: the same
//! macros a host runs against its own store and queue.

use async_trait::async_trait;
use dataops_webhooks::queue::MemoryQueue;
use dataops_webhooks::store::MemoryStore;
use dataops_webhooks::testing::Harness;

struct Store;

#[async_trait]
impl Harness for Store {
    type Backend = MemoryStore;

    async fn setup(&self) -> MemoryStore {
        MemoryStore::new()
    }
}

struct Queue;

#[async_trait]
impl Harness for Queue {
    type Backend = MemoryQueue;

    async fn setup(&self) -> MemoryQueue {
        MemoryQueue::new()
    }
}

mod memory_store {
    dataops_webhooks::config_store_conformance!(super::Store);
}

mod memory_queue {
    dataops_webhooks::delivery_queue_conformance!(super::Queue);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use async_trait::async_trait;
    use dataops_webhooks::sqlite::SqliteStore;
    use dataops_webhooks::testing::Harness;

    /// A new file in a directory of its own, removed with the harness.
    pub(crate) struct Sqlite(tempfile::TempDir);

    impl Sqlite {
        pub(crate) fn new() -> Self {
            Self(tempfile::tempdir().expect("temp dir"))
        }
    }

    #[async_trait]
    impl Harness for Sqlite {
        type Backend = SqliteStore;

        async fn setup(&self) -> SqliteStore {
            SqliteStore::open(self.0.path().join("conformance.db"))
                .await
                .expect("open")
        }
    }

    mod store {
        dataops_webhooks::config_store_conformance!(super::Sqlite::new());
    }

    mod queue {
        dataops_webhooks::delivery_queue_conformance!(super::Sqlite::new());
    }
}

#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;

#[cfg(feature = "postgres")]
mod postgres {
    use async_trait::async_trait;
    use dataops_webhooks::postgres::PostgresStore;
    use dataops_webhooks::testing::Harness;

    use super::pg::{TestSchema, URL_VAR};

    /// A schema of the test's own, migrated; dropped with the harness.
    pub(crate) struct Postgres(Option<TestSchema>);

    impl Postgres {
        pub(crate) fn new() -> Self {
            Self(TestSchema::new("conformance"))
        }
    }

    #[async_trait]
    impl Harness for Postgres {
        type Backend = PostgresStore;

        async fn setup(&self) -> PostgresStore {
            match &self.0 {
                Some(schema) => schema.store().await,
                None => panic!("{URL_VAR} is not set"),
            }
        }

        fn skip(&self) -> Option<String> {
            self.0
                .is_none()
                .then(|| format!("set {URL_VAR} to run the PostgreSQL conformance tests"))
        }
    }

    mod store {
        dataops_webhooks::config_store_conformance!(super::Postgres::new());
    }

    mod queue {
        dataops_webhooks::delivery_queue_conformance!(super::Postgres::new());
    }
}
