//! The SQLite store: one file (created 0600) in WAL mode with `synchronous=FULL`, so a
//! committed transition survives power loss; migrations from `migrations/sqlite`. Its queries
//! are written once for both SQL stores in `sql.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use eddy_core::types::SwapId;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use crate::{
    db_err, is_unique_violation, now, record, EventRecord, ListFilter, NewSwap, StateUpdate, StoreError, SwapRecord,
    SwapStore,
};

/// SQLite-backed store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(e.to_string()))?;
        }
        if !path.exists() {
            // Create the file ourselves so it is private from the first byte.
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            opts.open(path).map_err(|e| StoreError::Db(e.to_string()))?;
        }
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db_err)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql::sql_swap_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    crate::sql::as_written,
    sqlite_bool,
    sqlite_bool_out
);

/// SQLite has no boolean type: 0 or 1.
fn sqlite_bool(b: bool) -> i64 {
    i64::from(b)
}

fn sqlite_bool_out(v: i64) -> bool {
    v != 0
}
