//! What only the PostgreSQL backend has: connecting with a URL (refused credentials, a schema
//! newer than this binary, errors that never show the password), the server's own write
//! failures, and artifacts kept in the database for every replica.

use backstop_store::{PostgresStore, StoreError};
use backstop_testkit::servers::Postgres;
use sqlx::{ConnectOptions, Connection};

async fn cluster_with(database: &str) -> Postgres {
    let pg = Postgres::start().await;
    pg.create_database(database).await;
    pg
}

#[tokio::test]
async fn a_wrong_password_is_refused_naming_what_to_fix_and_never_the_password() {
    let pg = cluster_with("backstop").await;
    pg.add_password_user("backstop", "right-horse").await;
    let err = PostgresStore::connect(&pg.url_as("backstop", "wrong-battery", "backstop"))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open(_)), "{text}");
    assert!(!text.contains("wrong-battery"), "{text}");
    assert!(text.contains("refused user \"backstop\""), "{text}");
    assert!(text.contains("check the user name and password"), "{text}");
    assert!(text.contains("backstop:***@localhost"), "{text}");
    let store = PostgresStore::connect(&pg.url_as("backstop", "right-horse", "backstop"))
        .await
        .expect("the right password is accepted");
    store.close().await;
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let pg = Postgres::start().await;
    let err = PostgresStore::connect(&pg.url("nope"))
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("has no database \"nope\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused_naming_the_versions_and_left_unchanged() {
    let pg = cluster_with("backstop").await;
    // A newer Backstop's bookkeeping: our migrations and two we do not know.
    PostgresStore::connect(&pg.url("backstop"))
        .await
        .unwrap()
        .close()
        .await;
    pg.execute(
        "backstop",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (90, 'leases', true, '\\x00', 1), (91, 'agents', true, '\\x00', 1)",
    )
    .await;
    pg.execute("backstop", "CREATE TABLE future_agents (id TEXT)")
        .await;
    let err = PostgresStore::connect(&pg.url("backstop"))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open(_)), "{text}");
    assert!(text.contains("schema version(s) 90, 91"), "{text}");
    assert!(text.contains("newer Backstop"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");

    // Also on a database that has only the newer bookkeeping: nothing gets created.
    pg.create_database("fresh").await;
    pg.execute(
        "fresh",
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
         checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .await;
    pg.execute(
        "fresh",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (97, 'future', true, '\\x00', 1)",
    )
    .await;
    assert!(PostgresStore::connect(&pg.url("fresh")).await.is_err());
    let mut conn = pg
        .cluster()
        .connect_options("fresh")
        .connect()
        .await
        .unwrap();
    let releases: bool = sqlx::query_scalar("SELECT to_regclass('releases') IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        releases,
        "nothing was created in a database of a newer schema"
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_servers_write_failures_are_write_failures_and_conflicts_are_not() {
    let pg = cluster_with("backstop").await;
    let mut conn = pg
        .cluster()
        .connect_options("backstop")
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    let duplicate = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let duplicate = StoreError::from(duplicate);
    assert!(matches!(duplicate, StoreError::Conflict(_)), "{duplicate}");
    assert!(!duplicate.is_write_failure());
    sqlx::query("SET default_transaction_read_only = on")
        .execute(&mut conn)
        .await
        .unwrap();
    let read_only = sqlx::query("INSERT INTO t VALUES (2)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let read_only = StoreError::Database(read_only);
    assert!(read_only.is_write_failure(), "{read_only}");
    conn.close().await.unwrap();
}

/// An artifact backed up by one replica is run by another with an empty state folder (another
/// host): fetched from the database, chunk by chunk, verified. A local copy that rotted is
/// fetched again; chunks that were tampered with in the database are refused, never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_in_the_database_reach_every_replica_verified() {
    use backstop_store::{BlobError, BlobStore, FolderBlobs};
    let pg = cluster_with("backstop").await;
    let store = PostgresStore::connect(&pg.url("backstop")).await.unwrap();
    let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = store.blobs(FolderBlobs::new(here.path()));
    let second = store.blobs(FolderBlobs::new(there.path()));
    // Two and a half chunks, so the chunking and the short last chunk are exercised.
    let artifact: Vec<u8> = (0..(backstop_store::postgres::blobs::CHUNK * 5 / 2))
        .map(|i| (i % 251) as u8)
        .collect();
    let file = here.path().join("app.bin");
    std::fs::write(&file, &artifact).unwrap();
    let (digest, fetched, again) = tokio::task::spawn_blocking(move || {
        let digest = first.put_file(&file).unwrap();
        assert_eq!(first.put_file(&file).unwrap(), digest, "idempotent");
        let path = second.local_path(&digest).unwrap();
        let fetched = std::fs::read(&path).unwrap();
        // The other host's copy rots: fetched again on the next use.
        std::fs::write(&path, b"rotten").unwrap();
        let again = second.get(&digest).unwrap();
        (digest, fetched, again)
    })
    .await
    .unwrap();
    assert_eq!(fetched, artifact);
    assert_eq!(again, artifact);
    let chunks: i64 = sqlx::query_scalar("SELECT chunks FROM blobs WHERE sha256 = $1")
        .bind(&digest)
        .fetch_one(
            &mut pg
                .cluster()
                .connect_options("backstop")
                .connect()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(chunks, 3);

    pg.execute(
        "backstop",
        "UPDATE blob_chunks SET data = 'tampered'::bytea WHERE idx = 1",
    )
    .await;
    let third = tempfile::tempdir().unwrap();
    let fresh = store.blobs(FolderBlobs::new(third.path()));
    let (d, missing) = (digest.clone(), "ab".repeat(32));
    let (tampered, absent) = tokio::task::spawn_blocking(move || {
        (
            fresh.local_path(&d).unwrap_err(),
            fresh.verify(&missing).unwrap_err(),
        )
    })
    .await
    .unwrap();
    assert!(matches!(tampered, BlobError::Corrupt { .. }), "{tampered}");
    assert!(matches!(absent, BlobError::Missing(_)), "{absent}");
    assert!(
        !third
            .path()
            .join("sha256")
            .join(&digest[..2])
            .join(&digest[2..])
            .exists(),
        "nothing that does not verify is kept"
    );
}
