//! The backends a store test runs on: SQLite in a temporary state folder, and PostgreSQL in a
//! temporary cluster (`initdb` + `pg_ctl` as a non-root user, about a second) with a fresh
//! database. [`on_both_backends!`] turns each check into a `sqlite::…` and a `postgres::…` test.
//!
//! Each check owns its cluster, stopped when the check ends (also when it fails): nextest runs
//! every test in its own process, so a cluster shared through a static would be one per test
//! anyway, and would never be stopped (statics are not dropped).

#![allow(dead_code)] // Each test binary uses the part it needs.

use std::ops::Deref;

use backstop_store::{PostgresStore, SqliteStore, Store};
use backstop_testkit::servers::Postgres;

/// Where a check's store lives.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { cluster: Postgres, url: String },
}

/// A store of either backend, used through `dyn Store` like the daemon does.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Deref for AnyStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            AnyStore::Sqlite(s) => s,
            AnyStore::Postgres(s) => s,
        }
    }
}

impl AnyStore {
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

/// The database every PostgreSQL check gets, created empty.
pub const DATABASE: &str = "backstop_check";

impl Backend {
    pub async fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    pub async fn postgres() -> Backend {
        let cluster = Postgres::start().await;
        cluster.create_database(DATABASE).await;
        let url = cluster.url(DATABASE);
        Backend::Postgres { cluster, url }
    }

    /// Opens (creating on first use) the store.
    pub async fn open(&self) -> AnyStore {
        match self {
            Backend::Sqlite(dir) => {
                AnyStore::Sqlite(SqliteStore::open_dir(dir.path()).await.unwrap())
            }
            Backend::Postgres { url, .. } => {
                AnyStore::Postgres(PostgresStore::connect(url).await.unwrap())
            }
        }
    }

    /// Opens the store again, as a restarted daemon does (SQLite: without creating anything).
    pub async fn reopen(&self) -> AnyStore {
        match self {
            Backend::Sqlite(dir) => {
                AnyStore::Sqlite(SqliteStore::open_existing_dir(dir.path()).await.unwrap())
            }
            Backend::Postgres { .. } => self.open().await,
        }
    }

    /// Runs `sql` on the database directly, as someone with access to it (not through the
    /// store) would.
    pub async fn tamper(&self, sql: &str) {
        match self {
            Backend::Sqlite(dir) => {
                let path = dir.path().join(backstop_store::sqlite::DB_FILE);
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Backend::Postgres { cluster, .. } => cluster.execute(DATABASE, sql).await,
        }
    }
}

/// `on_both_backends!(check_a, check_b)` with `async fn check_a(backend: Backend)` defined in
/// the test file: tests `sqlite::check_a` and `postgres::check_a`, …
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    super::$check($crate::common::Backend::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    super::$check($crate::common::Backend::postgres().await).await
                }
            )*
        }
    };
}
