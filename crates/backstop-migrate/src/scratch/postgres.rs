//! PostgreSQL scratch database. With `--database-url`, a fresh database is created in that
//! server and dropped afterwards. Without one, a temporary cluster is started: `initdb` +
//! `pg_ctl start` from the newest PostgreSQL found, as a non-root user (`postgres`, else
//! `nobody`) when we run as root, listening only on a Unix socket in a private temporary
//! folder, fsync off; it is stopped and the folder deleted when dropped, also after errors.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::lex::Dialect;
use super::{ExecError, ExecMode, ScratchDb, execute_script, unique_name};
use crate::fingerprint::{self, Fingerprint};
use crate::model::{Engine, Script};
use crate::proof::ProofError;

const PORT: u16 = 5432;

/// A PostgreSQL cluster in a temporary folder, owned by this process.
pub struct TempCluster {
    dir: Option<tempfile::TempDir>,
    bindir: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    run_as: Option<(u32, u32)>,
    running: bool,
}

impl TempCluster {
    /// Finds the server binaries, runs `initdb` and starts the cluster (blocking: a second or two).
    pub fn start() -> Result<Self, ProofError> {
        let bindir = find_bindir()?;
        let io = |action: &str| {
            let action = action.to_string();
            move |e: std::io::Error| ProofError::Io {
                action: action.clone(),
                message: e.to_string(),
            }
        };
        // /tmp rather than $TMPDIR: the PostgreSQL user must be able to reach the folder, and the
        // socket path must stay short (a Unix socket path has at most 107 bytes).
        let parent = Path::new("/tmp");
        let parent = if parent.is_dir() {
            parent.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("backstop-pg-")
            .tempdir_in(&parent)
            .map_err(io("creating a temporary folder for PostgreSQL"))?;
        let data = dir.path().join("data");
        let socket = dir.path().join("sock");
        std::fs::create_dir(&socket).map_err(io("creating the socket folder"))?;
        let run_as = non_root_user()?;
        if let Some((uid, gid)) = run_as {
            for p in [dir.path(), socket.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(io(&format!(
                    "handing {} to the PostgreSQL user",
                    p.display()
                )))?;
            }
        }
        let mut cluster = TempCluster {
            dir: Some(dir),
            bindir,
            data,
            socket,
            run_as,
            running: false,
        };
        let data_arg = cluster.data.display().to_string();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts the server of an initialized (or stopped) cluster and waits until it accepts
    /// connections.
    pub fn start_server(&mut self) -> Result<(), ProofError> {
        let data_arg = self.data.display().to_string();
        let log = self.log_path().display().to_string();
        // 100 connections, PostgreSQL's default: the same cluster serves tests where three
        // daemons share it, each with a pool of 8 and a LISTEN connection; at 20 their pools
        // could wait for connections the server refused ("pool timed out").
        let options = format!(
            "-c listen_addresses='' -k '{}' -p {PORT} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100 -c shared_buffers=16MB",
            self.socket.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data_arg, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (`-m immediate`: like a crash, every connection cut), keeping
    /// the data for [`TempCluster::start_server`].
    pub fn stop_server(&mut self) -> Result<(), ProofError> {
        let data_arg = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data_arg, "-m", "immediate", "-w", "-t", "30", "stop"],
        )?;
        self.running = false;
        Ok(())
    }

    /// Connection options for `database` in this cluster (user `postgres`, trust auth, socket).
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.socket)
            .port(PORT)
            .username("postgres")
            .database(database)
    }

    /// The temporary folder holding the data directory (`data/`), the socket folder (`sock/`,
    /// port 5432) and the server log; removed on drop.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().join("server.log"))
            .unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some(d) = &self.dir {
            cmd.current_dir(d.path());
        }
        cmd.env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), ProofError> {
        let out =
            self.command(program)
                .args(args)
                .output()
                .map_err(|e| ProofError::ClusterStart {
                    step: format!("running {}", self.bindir.join(program).display()),
                    detail: e.to_string(),
                })?;
        if out.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Ok(log) = std::fs::read_to_string(self.log_path()) {
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            detail.push_str(&format!("\nserver log:\n{}", tail.join("\n")));
        }
        Err(ProofError::ClusterStart {
            step: format!("{program} ({})", out.status),
            detail,
        })
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data.display().to_string();
            let _ = self
                .command("pg_ctl")
                .args(["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"])
                .output();
            self.running = false;
        }
        // The folder goes with the TempDir (we are its owner or root).
        self.dir.take();
    }
}

/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else `initdb` on PATH.
fn find_bindir() -> Result<PathBuf, ProofError> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let initdb = dir.join("initdb");
        if initdb.is_file() {
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(parent) = real.parent().filter(|p| has_server(p)) {
                return Ok(parent.to_path_buf());
            }
        }
    }
    Err(ProofError::PostgresNotInstalled)
}

/// `None` when we are not root; else the uid/gid of `postgres`, or of `nobody`.
fn non_root_user() -> Result<Option<(u32, u32)>, ProofError> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4
                && f[0] == wanted
                && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
            {
                return Ok(Some((uid, gid)));
            }
        }
    }
    Err(ProofError::ClusterStart {
        step: "choosing a user to run PostgreSQL as".to_string(),
        detail: "running as root and neither a `postgres` nor a `nobody` user exists (PostgreSQL refuses to run as root)"
            .to_string(),
    })
}

/// A fresh database in a PostgreSQL server, connected.
pub struct PgScratch {
    admin: PgConnectOptions,
    database: String,
    conn: Option<PgConnection>,
    /// Dropped last: the cluster outlives the connection.
    cluster: Option<TempCluster>,
    dropped: bool,
}

impl PgScratch {
    /// With `database_url`: a new database in that server (the URL's database is only used to
    /// create and drop it). Without: a temporary cluster.
    pub async fn start(database_url: Option<&str>) -> Result<Self, ProofError> {
        let (admin, cluster) = match database_url {
            Some(url) => {
                let opts =
                    PgConnectOptions::from_str(url).map_err(|e| ProofError::BadDatabaseUrl {
                        // Never echo the URL: it may carry a password.
                        message: e.to_string(),
                    })?;
                (opts, None)
            }
            None => {
                let cluster = tokio::task::spawn_blocking(TempCluster::start)
                    .await
                    .map_err(|e| ProofError::ClusterStart {
                        step: "starting PostgreSQL".to_string(),
                        detail: e.to_string(),
                    })??;
                (cluster.connect_options("postgres"), Some(cluster))
            }
        };
        let admin = admin.disable_statement_logging();
        let mut s = PgScratch {
            admin,
            database: String::new(),
            conn: None,
            cluster,
            dropped: true,
        };
        s.create().await?;
        Ok(s)
    }

    /// The scratch database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    async fn admin_conn(&self) -> Result<PgConnection, ProofError> {
        PgConnection::connect_with(&self.admin)
            .await
            .map_err(|e| ProofError::Unreachable {
                message: e.to_string(),
            })
    }

    async fn create(&mut self) -> Result<(), ProofError> {
        let name = unique_name("backstop_scratch");
        let mut admin = self.admin_conn().await?;
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .map_err(|e| ProofError::Scratch {
                action: "creating the scratch database".to_string(),
                message: e.to_string(),
            })?;
        let _ = admin.close().await;
        self.database = name;
        self.dropped = false;
        let opts = self.admin.clone().database(&self.database);
        let conn =
            PgConnection::connect_with(&opts)
                .await
                .map_err(|e| ProofError::Unreachable {
                    message: e.to_string(),
                })?;
        self.conn = Some(conn);
        Ok(())
    }

    async fn drop_database(&mut self) -> Result<(), ProofError> {
        if let Some(c) = self.conn.take() {
            let _ = c.close().await;
        }
        if self.dropped {
            return Ok(());
        }
        let mut admin = self.admin_conn().await?;
        drop_database_on(&mut admin, &self.database)
            .await
            .map_err(|e| ProofError::Scratch {
                action: format!("dropping the scratch database {}", self.database),
                message: e.to_string(),
            })?;
        let _ = admin.close().await;
        self.dropped = true;
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut PgConnection, ProofError> {
        self.conn.as_mut().ok_or_else(|| ProofError::Scratch {
            action: "using the PostgreSQL scratch database".to_string(),
            message: "the connection is closed".to_string(),
        })
    }
}

async fn drop_database_on(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let force = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    if sqlx::raw_sql(sqlx::AssertSqlSafe(force))
        .execute(&mut *admin)
        .await
        .is_ok()
    {
        return Ok(());
    }
    // Before PostgreSQL 13 there is no FORCE.
    let plain = format!("DROP DATABASE IF EXISTS \"{name}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(plain))
        .execute(&mut *admin)
        .await
        .map(|_| ())
}

impl ScratchDb for PgScratch {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn execute(&mut self, script: &Script, mode: ExecMode) -> Result<(), ExecError> {
        let conn = self.conn().map_err(ExecError::Infra)?;
        execute_script(conn, script, mode, Dialect::Postgres).await
    }

    async fn fingerprint(&mut self) -> Result<Fingerprint, ProofError> {
        let conn = self.conn()?;
        fingerprint::postgres::fingerprint(conn)
            .await
            .map_err(|e| ProofError::Scratch {
                action: "reading the PostgreSQL catalog".to_string(),
                message: e.to_string(),
            })
    }

    async fn server_version(&mut self) -> Result<String, ProofError> {
        let conn = self.conn()?;
        let v: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(conn)
            .await
            .map_err(|e| ProofError::Scratch {
                action: "reading the PostgreSQL version".to_string(),
                message: e.to_string(),
            })?;
        // `16.4 (Debian 16.4-1.pgdg120+2)` → `16.4`.
        let v = v.split_whitespace().next().unwrap_or_default();
        Ok(format!("PostgreSQL {v}"))
    }

    async fn reset(&mut self) -> Result<(), ProofError> {
        self.drop_database().await?;
        self.create().await
    }

    async fn close(mut self) {
        let _ = self.drop_database().await;
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        // A temporary cluster goes away whole; a database in someone else's server must be dropped.
        if self.dropped || self.cluster.is_some() {
            return;
        }
        let admin = self.admin.clone();
        let name = self.database.clone();
        self.conn.take();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect_with(&admin).await {
                    let _ = drop_database_on(&mut c, &name).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}
