//! A temporary PostgreSQL cluster, started by the migrate crate's own code (`initdb` + `pg_ctl`
//! as a non-root user, on a Unix socket only); `pg_ctl stop` on its data folder when dropped.

use std::path::Path;

use backstop_migrate::scratch::TempCluster;

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

    pub fn cluster(&self) -> &TempCluster {
        &self.cluster
    }
}
