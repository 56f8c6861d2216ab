//! The PostgreSQL store, for providers that run the server on a database server;
//! migrations from `migrations/postgres`. Its queries are the SQLite store's, written once in
//! `sql.rs` (with PostgreSQL's numbered placeholders).

use std::time::Duration;

use async_trait::async_trait;
use eddy_core::types::SwapId;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use crate::{
    db_err, is_unique_violation, now, record, EventRecord, ListFilter, NewSwap, StateUpdate, StoreError, SwapRecord,
    SwapStore,
};

/// PostgreSQL-backed store.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@127.0.0.1:5432/eddy`) and runs pending migrations.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(PgStore { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql::sql_swap_store!(PgStore, sqlx::postgres::PgRow, crate::sql::numbered, pg_bool, pg_bool);

fn pg_bool(b: bool) -> bool {
    b
}
