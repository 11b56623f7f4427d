//! Real PostgreSQL for tests: a database of its own per test on the server
//! at 127.0.0.1:5432 (CI's `.ci/run` starts it), or a private server this
//! test starts and stops itself (to restart it under load). Tests fail,
//! never skip, when PostgreSQL is not there.

use std::path::PathBuf;
use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};

/// The shared server's maintenance database (trust auth, user `postgres`).
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A fresh database on `server`, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    pub url: String,
    server: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        PgDb::create_on(SERVER).await
    }

    pub async fn create_on(server: &str) -> PgDb {
        let admin = format!("{server}/postgres");
        let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin} ({e}): start it (see .ci/run)")
        });
        let name = format!("sy_{}", uuid::Uuid::new_v4().simple());
        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        PgDb {
            url: format!("{server}/{name}"),
            server: server.to_owned(),
            name,
        }
    }

    pub async fn drop_db(self) {
        let admin = format!("{}/postgres", self.server);
        if let Ok(mut c) = PgConnection::connect(&admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = c.execute(sqlx::AssertSqlSafe(sql)).await;
        }
    }

    /// One value from the database (a count, a sum).
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let mut c = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// A PostgreSQL server of this test's own (initdb into a temp dir, run as
/// the `postgres` user), so it can be stopped and started without touching
/// other tests' databases.
pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let dir = std::env::temp_dir().join(format!("sy-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        let data = dir.join("data");
        as_postgres(&[
            "initdb",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-D",
            data.to_str().unwrap(),
        ]);
        let pg = PrivatePg {
            port: crate::common::free_port(),
            dir,
        };
        pg.up();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn up(&self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        as_postgres(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
    }

    /// Stops it the way a crash would (no checkpoint, connections cut).
    pub fn crash(&self) {
        let data = self.dir.join("data");
        as_postgres(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", "pg_ctl", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
