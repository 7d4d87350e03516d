//! The store: one database for accounts, usage, Stripe state and the ledger, SQLite
//! in a file by default and PostgreSQL in production, behind sqlx's
//! database-neutral driver so that every query is written once.
//!
//! This module owns the schema: the migrations in `billing/migrations/` are
//! embedded in the binary and applied by [`Store::migrate`] (at start and by
//! `coopgate migrate`). They are written in SQL both databases accept, with
//! times as Unix milliseconds; only triggers, whose syntax differs, are
//! written once per database (`NNNN_name.sqlite.sql`, `NNNN_name.postgres.sql`).
//!
//! The schema, not the rows: each table belongs to one module (listed in
//! ARCHITECTURE.md), the only one whose files hold SQL on it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

use crate::Error;

/// The migrations, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i64, &str, Sql)] = &[
    (1, "accounts", Sql::Both(include_str!("../migrations/0001_accounts.sql"))),
    (2, "api keys", Sql::Both(include_str!("../migrations/0002_api_keys.sql"))),
    (3, "billing anchor", Sql::Both(include_str!("../migrations/0003_billing_anchor.sql"))),
    (4, "stripe", Sql::Both(include_str!("../migrations/0004_stripe.sql"))),
    (5, "usage", Sql::Both(include_str!("../migrations/0005_usage.sql"))),
    (6, "spend cap", Sql::Both(include_str!("../migrations/0006_spend_cap.sql"))),
    (7, "metered memberships", Sql::Both(include_str!("../migrations/0007_metered_memberships.sql"))),
    (8, "ledger", Sql::Both(include_str!("../migrations/0008_ledger.sql"))),
    (
        9,
        "ledger invariants",
        Sql::PerBackend {
            sqlite: include_str!("../migrations/0009_ledger_invariants.sqlite.sql"),
            postgres: include_str!("../migrations/0009_ledger_invariants.postgres.sql"),
        },
    ),
    (10, "commons downloads", Sql::Both(include_str!("../migrations/0010_commons.sql"))),
    (11, "portal", Sql::Both(include_str!("../migrations/0011_portal.sql"))),
    (12, "organisation seats", Sql::Both(include_str!("../migrations/0012_seats.sql"))),
    (13, "priorities", Sql::Both(include_str!("../migrations/0013_priorities.sql"))),
];

/// A migration's SQL: portable, or (for triggers, whose syntax differs) one
/// text per database holding the same rules.
enum Sql {
    /// SQL both databases accept.
    Both(&'static str),
    /// The same schema written for each.
    PerBackend { sqlite: &'static str, postgres: &'static str },
}

/// Which database a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How long a query waits for a connection before failing. sqlx's default
/// (30 s) would hold a request that needs the store that long while the
/// database is away; seconds are enough to ride out a busy pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pool of connections to the store.
#[derive(Debug, Clone)]
pub struct Store {
    /// The pool every query runs on.
    pool: AnyPool,
    /// Whether the store was last seen failing (see [`Store::seems_away`]).
    away: Arc<AtomicBool>,
    /// Which database it is.
    backend: Backend,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). For SQLite the file
    /// and its folder are created when missing.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::Database(sqlx::Error::Io(e)))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") { url.to_owned() } else { format!("{url}{sep}mode=rwc") };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(Error::UnsupportedStore(url.to_owned()));
        };
        // SQLite allows one writer at a time; a single connection avoids "database
        // is locked" under concurrent writes, and SQLite is the small-co-op case.
        let max = if backend == Backend::Sqlite { 1 } else { 10 };
        let pool = AnyPoolOptions::new().max_connections(max).acquire_timeout(ACQUIRE_TIMEOUT).connect(&url).await?;
        Ok(Store { pool, backend, away: Arc::default() })
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<(), Error> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                let sql = match (sql, self.backend) {
                    (Sql::Both(sql), _) => *sql,
                    (Sql::PerBackend { sqlite, .. }, Backend::Sqlite) => *sqlite,
                    (Sql::PerBackend { postgres, .. }, Backend::Postgres) => *postgres,
                };
                Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect();
        Migrator::with_migrations(migrations).run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Copies an embedded store, consistent as of one moment, into a new
    /// SQLite file at `to` while the gateway keeps serving (SQLite's
    /// `VACUUM INTO`: a read transaction, so writers are not held up for long).
    /// The copy is a complete store: restoring is pointing `store.url` at it.
    pub async fn backup_to(&self, to: &Path) -> Result<(), Error> {
        if self.backend != Backend::Sqlite {
            return Err(Error::BackupNotSupported);
        }
        if to.exists() {
            return Err(Error::BackupExists(to.display().to_string()));
        }
        let to = to.to_str().ok_or_else(|| Error::BackupExists(format!("{} (not UTF-8)", to.display())))?;
        sqlx::query("VACUUM INTO ?").bind(to).execute(&self.pool).await?;
        Ok(())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the store was last seen failing: a caller holding an older
    /// answer uses it rather than wait for a connection that will not come.
    pub fn seems_away(&self) -> bool {
        self.away.load(Ordering::Relaxed)
    }

    /// Records whether the store just failed or answered; shared by every
    /// clone. Returns what it was before.
    pub fn set_away(&self, away: bool) -> bool {
        self.away.swap(away, Ordering::Relaxed)
    }
}

/// Test support: fresh stores on every backend available.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// Fresh, migrated stores: SQLite and, when `COOPGATE_TEST_DATABASE_URL` is
    /// set, one on a fresh PostgreSQL database. Without it the PostgreSQL run is
    /// skipped with one line, unless `COOPGATE_TEST_REQUIRE_SERVICES=1`.
    pub async fn stores() -> Vec<(Store, Cleanup)> {
        let mut out = vec![sqlite().await];
        match std::env::var("COOPGATE_TEST_DATABASE_URL") {
            Ok(base) => out.push(fresh_postgres(&base).await),
            Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("COOPGATE_TEST_DATABASE_URL is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
            }
            Err(_) => {
                // Straight to stderr, past the test harness's capture, and once per run.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "store tests did not run on PostgreSQL: COOPGATE_TEST_DATABASE_URL is not set"
                    );
                });
            }
        }
        out
    }

    /// Runs Beancount's `bean-check` (the program `COOPGATE_TEST_BEAN_CHECK`
    /// names) on `text`: `Some(Err(what it printed))` if it finds a problem,
    /// `None` after saying so when the variable is not set (a failure when
    /// `COOPGATE_TEST_REQUIRE_SERVICES=1`).
    pub fn bean_check(text: &str) -> Option<Result<(), String>> {
        let program = match std::env::var("COOPGATE_TEST_BEAN_CHECK") {
            Ok(p) => p,
            Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("COOPGATE_TEST_BEAN_CHECK is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
            }
            Err(_) => {
                eprintln!("bean-check did not run: COOPGATE_TEST_BEAN_CHECK is not set");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.beancount");
        std::fs::write(&path, text).expect("write the export");
        let out = std::process::Command::new(&program)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if out.status.success() && out.stdout.is_empty() && out.stderr.is_empty() {
            Some(Ok(()))
        } else {
            Some(Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
        }
    }

    /// A fresh, migrated SQLite store in a temporary folder.
    pub async fn sqlite() -> (Store, Cleanup) {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite =
            Store::connect(&format!("sqlite://{}", dir.path().join("test.db").display())).await.expect("sqlite");
        sqlite.migrate().await.expect("migrate sqlite");
        (sqlite, Cleanup::Dir(dir))
    }

    /// Removes a test's database when the test ends.
    pub enum Cleanup {
        /// The SQLite file's folder.
        Dir(#[allow(dead_code)] tempfile::TempDir),
        /// A PostgreSQL database to drop, with the URL to drop it from.
        Postgres { admin_url: String, name: String },
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Cleanup::Postgres { admin_url, name } = self {
                let (url, sql) = (admin_url.clone(), format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                // Drop runs outside async; a throwaway runtime on its own thread does the work.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(async {
                        if let Ok(admin) = Store::connect(&url).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin.pool()).await;
                        }
                    });
                })
                .join();
            }
        }
    }

    /// The URL of a fresh, migrated PostgreSQL database when
    /// `COOPGATE_TEST_DATABASE_URL` is set; `None` after saying so (a failure
    /// when `COOPGATE_TEST_REQUIRE_SERVICES=1`).
    pub async fn postgres_url() -> Option<(String, Cleanup)> {
        match std::env::var("COOPGATE_TEST_DATABASE_URL") {
            Ok(base) => {
                let (store, url, cleanup) = fresh_postgres_at(&base).await;
                drop(store);
                Some((url, cleanup))
            }
            Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("COOPGATE_TEST_DATABASE_URL is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
            }
            Err(_) => {
                eprintln!("PostgreSQL test did not run: COOPGATE_TEST_DATABASE_URL is not set");
                None
            }
        }
    }

    /// Creates a uniquely named database next to `base` and connects to it.
    async fn fresh_postgres(base: &str) -> (Store, Cleanup) {
        let (store, _, cleanup) = fresh_postgres_at(base).await;
        (store, cleanup)
    }

    /// Creates a uniquely named database next to `base`: the store, its URL,
    /// and what drops it.
    async fn fresh_postgres_at(base: &str) -> (Store, String, Cleanup) {
        let admin = Store::connect(base).await.expect("PostgreSQL at COOPGATE_TEST_DATABASE_URL answers");
        let name = format!("coopgate_test_{:016x}", getrandom::u64().expect("randomness"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await
            .expect("create db");
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("COOPGATE_TEST_DATABASE_URL needs a /database part"),
        };
        let store = Store::connect(&url).await.expect("connect fresh db");
        store.migrate().await.expect("migrate postgres");
        (store, url, Cleanup::Postgres { admin_url: base.to_owned(), name })
    }
}
