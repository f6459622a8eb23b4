//! The catalog handle: opening the SQLite file (pragmas, pool, migrations), the clock every
//! timestamp comes from, id generation and write transactions. Owns no table: each table's
//! operations live in their own module as `impl Catalog` blocks.
//!
//! Every write runs in a [`WriteTx`]: first a place in this process's queue of writers (a fair async
//! mutex shared by all clones, so writers of one process wait their turn without holding a pooled
//! connection or spinning in SQLite's busy handler), then `BEGIN IMMEDIATE`, which takes SQLite's
//! write lock up front and waits for other processes (busy_timeout) instead of failing with
//! "database is locked" when a read snapshot could not be upgraded. Reads never wait for writes
//! (WAL).

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{is_busy, CatalogError, Result};

/// The migrations in /migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a statement waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const MAX_CONNECTIONS: u32 = 8;

/// Where the catalog's times come from: Unix milliseconds. Tests inject a [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The catalog. Cheap to clone: clones share the connection pool and the clock.
#[derive(Clone)]
pub struct Catalog {
    pub(crate) pool: SqlitePool,
    clock: Arc<dyn Clock>,
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Opens (creating it and its parent folders if needed) the catalog file at `path`, in WAL
    /// mode, and applies any migrations it lacks.
    pub async fn open(path: impl AsRef<Path>) -> Result<Catalog> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CatalogError::io(parent, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Switching a new file to WAL needs it to itself for a moment, and SQLite answers
        // "database is locked" at once, without waiting, when another process is opening it too.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let pool = loop {
            let attempt = SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.clone())
                .await;
            match attempt {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other?,
            }
        };
        Self::from_pool(pool).await
    }

    /// A private in-memory catalog (one connection, gone when the last clone is dropped).
    pub async fn open_in_memory() -> Result<Catalog> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Every connection to ":memory:" is its own database: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    async fn from_pool(pool: SqlitePool) -> Result<Catalog> {
        // Every pending migration is applied under one write lock, so that processes opening a
        // new file at the same moment apply each migration once: the others wait (busy_timeout),
        // then find nothing left to do. sqlx runs each migration in a savepoint inside it.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        MIGRATOR.run_direct(&mut *tx).await?;
        tx.commit().await?;
        Ok(Catalog {
            pool,
            clock: Arc::new(SystemClock),
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// The same catalog with its times taken from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Catalog {
        self.clock = clock;
        self
    }

    /// Closes every connection (checkpointing the WAL); other clones stop working.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A write transaction holding SQLite's write lock from its first statement.
    pub(crate) async fn write_tx(&self) -> Result<WriteTx> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }
}

/// A `BEGIN IMMEDIATE` transaction plus this process's writer turn; rolls back if dropped
/// uncommitted (an error returned half-way leaves nothing behind).
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// A fresh id: `prefix` + 16 hex digits from the OS's random source.
pub(crate) fn new_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(CatalogError::Random)?;
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(id)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_sixteen_hex_digits() {
        let a = new_id("msg_").unwrap();
        let b = new_id("msg_").unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("msg_"));
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(5);
        assert_eq!(c.now_ms(), 1_005);
        c.set(7);
        assert_eq!(c.now_ms(), 7);
    }
}
