//! The SQLite store: one file (created 0600) in WAL mode with `synchronous=FULL`, so a
//! committed transition survives power loss; migrations from `migrations/sqlite`.

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

const COLUMNS: &str = "id, kind, state_name, terminal, state, version, created_at, updated_at";

fn row_to_record(r: &sqlx::sqlite::SqliteRow) -> Result<SwapRecord, StoreError> {
    let id: String = r.try_get("id").map_err(db_err)?;
    let kind: String = r.try_get("kind").map_err(db_err)?;
    let state: String = r.try_get("state").map_err(db_err)?;
    record(
        &id,
        &kind,
        r.try_get("state_name").map_err(db_err)?,
        r.try_get::<i64, _>("terminal").map_err(db_err)? != 0,
        &state,
        r.try_get("version").map_err(db_err)?,
        r.try_get("created_at").map_err(db_err)?,
        r.try_get("updated_at").map_err(db_err)?,
    )
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

#[async_trait]
impl SwapStore for SqliteStore {
    async fn create(&self, swap: &NewSwap) -> Result<SwapRecord, StoreError> {
        let id = swap.id.to_string();
        let t = now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO swaps (id, kind, state_name, terminal, state, version, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        )
        .bind(&id)
        .bind(swap.kind.as_str())
        .bind(&swap.state_name)
        .bind(i64::from(swap.terminal))
        .bind(swap.state.to_string())
        .bind(t)
        .bind(t)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate(swap.id)),
            Err(e) => return Err(db_err(e)),
            Ok(_) => {}
        }
        sqlx::query("INSERT INTO swap_events (swap_id, seq, event, at) VALUES (?, 1, ?, ?)")
            .bind(&id)
            .bind(swap.event.to_string())
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(SwapRecord {
            id: swap.id,
            kind: swap.kind,
            state_name: swap.state_name.clone(),
            terminal: swap.terminal,
            state: swap.state.clone(),
            version: 1,
            created_at: t,
            updated_at: t,
        })
    }

    async fn get(&self, id: &SwapId) -> Result<Option<SwapRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM swaps WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(row_to_record).transpose()
    }

    async fn transition(
        &self,
        id: &SwapId,
        expected_version: i64,
        update: &StateUpdate,
    ) -> Result<SwapRecord, StoreError> {
        let key = id.to_string();
        let t = now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE swaps SET state_name = ?, terminal = ?, state = ?, version = version + 1, updated_at = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(&update.state_name)
        .bind(i64::from(update.terminal))
        .bind(update.state.to_string())
        .bind(t)
        .bind(&key)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            let actual: Option<i64> = sqlx::query_scalar("SELECT version FROM swaps WHERE id = ?")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            return Err(match actual {
                None => StoreError::NotFound(*id),
                Some(actual) => StoreError::Conflict {
                    id: *id,
                    expected: expected_version,
                    actual,
                },
            });
        }
        sqlx::query("INSERT INTO swap_events (swap_id, seq, event, at) VALUES (?, ?, ?, ?)")
            .bind(&key)
            .bind(expected_version + 1)
            .bind(update.event.to_string())
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM swaps WHERE id = ?"))
            .bind(&key)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row_to_record(&row)
    }

    async fn events(&self, id: &SwapId) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT seq, event, at FROM swap_events WHERE swap_id = ? ORDER BY seq")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event").map_err(db_err)?;
                Ok(EventRecord {
                    seq: r.try_get("seq").map_err(db_err)?,
                    event: serde_json::from_str(&event)
                        .map_err(|_| StoreError::Corrupt(format!("event of swap {id} is not JSON")))?,
                    at: r.try_get("at").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<SwapRecord>, StoreError> {
        let sql = match filter {
            ListFilter::All => format!("SELECT {COLUMNS} FROM swaps ORDER BY created_at, id"),
            ListFilter::Active => format!("SELECT {COLUMNS} FROM swaps WHERE terminal = 0 ORDER BY created_at, id"),
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(row_to_record).collect()
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
