//! A temporary PostgreSQL cluster, started by the migrate crate's own code (`initdb` + `pg_ctl`
//! as a non-root user, on a Unix socket only); `pg_ctl stop` on its data folder when dropped.

use std::path::Path;

use backstop_migrate::scratch::TempCluster;
use sqlx::{ConnectOptions, Connection};

pub struct Postgres {
    cluster: TempCluster,
}

impl Postgres {
    /// Starts a cluster (a second or two, off the async workers) or fails the test with why.
    pub async fn start() -> Postgres {
        let cluster = tokio::task::spawn_blocking(TempCluster::start)
            .await
            .expect("join")
            .expect("a temporary PostgreSQL cluster starts");
        Postgres { cluster }
    }

    /// [`Postgres::start`] with an empty database `name` in it, for synchronous tests.
    pub fn blocking_with_database(name: &str) -> Postgres {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async {
                let pg = Postgres::start().await;
                pg.create_database(name).await;
                pg
            })
    }

    /// A `postgres://` URL for `database`, user `postgres`, over the cluster's socket.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}&port=5432",
            self.dir().join("sock").display()
        )
    }

    /// The cluster's temporary folder (data, socket, log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.cluster
            .dir()
            .expect("a running cluster has its folder")
    }

    /// Stops the server like a crash (every connection cut), keeping its data.
    pub fn stop(&mut self) {
        self.cluster.stop_server().expect("PostgreSQL stops");
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn start_again(&mut self) {
        self.cluster
            .start_server()
            .expect("PostgreSQL starts again");
    }

    pub fn cluster(&self) -> &TempCluster {
        &self.cluster
    }

    /// Runs `sql` (one statement) in `database` as the superuser, failing the test if it fails.
    pub async fn execute(&self, database: &str, sql: &str) {
        let mut conn = self
            .cluster
            .connect_options(database)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {database}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.ok();
    }

    /// Creates an empty database `name`.
    pub async fn create_database(&self, name: &str) {
        self.execute("postgres", &format!("CREATE DATABASE \"{name}\""))
            .await;
    }

    /// Adds a superuser `user` that must log in with `password` (SCRAM, checked by the server:
    /// a wrong one is refused), for tests of credentials; the other users keep trust auth.
    pub async fn add_password_user(&self, user: &str, password: &str) {
        self.execute(
            "postgres",
            &format!("CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{password}'"),
        )
        .await;
        let hba = self.dir().join("data/pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
        // The first matching line wins: this one goes first. Written in place (same owner).
        std::fs::write(&hba, format!("local all {user} scram-sha-256\n{rules}"))
            .expect("writing pg_hba.conf");
        self.execute("postgres", "SELECT pg_reload_conf()").await;
    }

    /// A `postgres://` URL for `database` as `user` with `password`, over the cluster's socket.
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@localhost/{database}?host={}&port=5432",
            self.dir().join("sock").display()
        )
    }
}
