//! # eddy-store
//!
//! Where swaps live between steps, so every daemon can be killed at any moment and resume:
//! the [`SwapStore`] trait, an SQLite implementation (the default: one file in the data dir)
//! and a PostgreSQL one (for providers running several server instances), each with numbered
//! migrations. A state transition writes the new state and the event that caused it in one
//! database transaction, guarded by the swap's version (optimistic concurrency), so a state is
//! never persisted without its cause and two writers cannot both move the same swap.
//!
//! States and events are opaque JSON to the store (the state machines in `eddy-core` define
//! them). They include secrets (preimages, swap keys): the SQLite file is created 0600, and no
//! store error message ever echoes state contents.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod crash;
pub mod keys;
pub mod notify;
mod postgres;
mod sql;
mod sqlite;

pub use crash::crash_point;
pub use keys::{KeyPurpose, SeedKeys};
pub use notify::NotifyingStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use eddy_core::types::SwapId;
use serde_json::Value;

/// Which state machine a swap runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwapKind {
    /// Loop-out, client side.
    LoopOutClient,
    /// Loop-out, server side.
    LoopOutServer,
    /// Loop-in, client side.
    LoopInClient,
    /// Loop-in, server side.
    LoopInServer,
}

impl SwapKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapKind::LoopOutClient => "loop_out_client",
            SwapKind::LoopOutServer => "loop_out_server",
            SwapKind::LoopInClient => "loop_in_client",
            SwapKind::LoopInServer => "loop_in_server",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<SwapKind> {
        [
            SwapKind::LoopOutClient,
            SwapKind::LoopOutServer,
            SwapKind::LoopInClient,
            SwapKind::LoopInServer,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A swap to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSwap {
    /// Its id.
    pub id: SwapId,
    /// Its state machine.
    pub kind: SwapKind,
    /// The initial state's tag.
    pub state_name: String,
    /// Whether the initial state is terminal.
    pub terminal: bool,
    /// The initial state.
    pub state: Value,
    /// What created it (recorded as event 1).
    pub event: Value,
}

/// A transition to write.
#[derive(Clone, Debug, PartialEq)]
pub struct StateUpdate {
    /// The new state's tag.
    pub state_name: String,
    /// Whether it is terminal.
    pub terminal: bool,
    /// The new state.
    pub state: Value,
    /// The event that caused it.
    pub event: Value,
}

/// A stored swap.
#[derive(Clone, Debug, PartialEq)]
pub struct SwapRecord {
    /// Its id.
    pub id: SwapId,
    /// Its state machine.
    pub kind: SwapKind,
    /// The current state's tag.
    pub state_name: String,
    /// Whether it is terminal.
    pub terminal: bool,
    /// The current state.
    pub state: Value,
    /// Version: 1 at creation, +1 per transition.
    pub version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// The version it produced.
    pub seq: i64,
    /// The event.
    pub event: Value,
    /// Unix seconds.
    pub at: i64,
}

/// Which swaps to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFilter {
    /// Every swap.
    All,
    /// Swaps not in a terminal state (what a daemon resumes at start).
    Active,
}

/// Store errors.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A swap with this id exists already.
    #[error("swap {0} already exists")]
    Duplicate(SwapId),
    /// No such swap.
    #[error("unknown swap {0}")]
    NotFound(SwapId),
    /// Someone else moved the swap first.
    #[error("swap {id} is at version {actual}, not {expected}")]
    Conflict {
        /// The swap.
        id: SwapId,
        /// The version the writer started from.
        expected: i64,
        /// The version in the store.
        actual: i64,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// A row could not be read back (bad JSON, unknown kind).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// The swap store.
#[async_trait]
pub trait SwapStore: Send + Sync {
    /// Creates a swap at version 1 with its creation event.
    async fn create(&self, swap: &NewSwap) -> Result<SwapRecord, StoreError>;

    /// Reads a swap.
    async fn get(&self, id: &SwapId) -> Result<Option<SwapRecord>, StoreError>;

    /// Moves a swap from `expected_version` to the next, writing the state and its event in
    /// one database transaction.
    async fn transition(
        &self,
        id: &SwapId,
        expected_version: i64,
        update: &StateUpdate,
    ) -> Result<SwapRecord, StoreError>;

    /// A swap's events, oldest first.
    async fn events(&self, id: &SwapId) -> Result<Vec<EventRecord>, StoreError>;

    /// Swaps, oldest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<SwapRecord>, StoreError>;

    /// A daemon-wide value (e.g. the chain watcher's last block).
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets a daemon-wide value.
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// Writes an engine's record as the swap's next state: `rec` serialised as the stored state,
/// with its `state_name` and `terminal` flag and the `event` that caused it, guarded by
/// `version` (the one read), which becomes the version written.
pub async fn save<T: serde::Serialize>(
    store: &dyn SwapStore,
    id: &SwapId,
    version: &mut i64,
    state_name: String,
    terminal: bool,
    rec: &T,
    event: serde_json::Value,
) -> Result<(), StoreError> {
    let state =
        serde_json::to_value(rec).map_err(|_| StoreError::Corrupt(format!("swap {id}: state does not encode")))?;
    let r = store
        .transition(
            id,
            *version,
            &StateUpdate {
                state_name,
                terminal,
                state,
                event,
            },
        )
        .await?;
    *version = r.version;
    Ok(())
}

/// The swaps of `kind` that match `filter`, in the store's order, each with its stored state read as
/// `T` (the engine's record type); a state that does not read is [`StoreError::Corrupt`].
pub async fn records_of<T: serde::de::DeserializeOwned>(
    store: &dyn SwapStore,
    filter: ListFilter,
    kind: SwapKind,
) -> Result<Vec<(SwapRecord, T)>, StoreError> {
    let mut out = vec![];
    for r in store.list(filter).await? {
        if r.kind != kind {
            continue;
        }
        let rec: T =
            serde_json::from_value(r.state.clone()).map_err(|_| StoreError::Corrupt(format!("swap {}", r.id)))?;
        out.push((r, rec));
    }
    Ok(out)
}

/// The tag of a state machine state (`#[serde(tag = "state")]`): what the store keeps in
/// `state_name` and what status reports show.
pub fn state_name<S: serde::Serialize>(state: &S) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Builds a record from stored columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    id: &str,
    kind: &str,
    state_name: String,
    terminal: bool,
    state: &str,
    version: i64,
    created_at: i64,
    updated_at: i64,
) -> Result<SwapRecord, StoreError> {
    Ok(SwapRecord {
        id: id.parse().map_err(|_| StoreError::Corrupt(format!("swap id {id:?}")))?,
        kind: SwapKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?} of swap {id}")))?,
        state_name,
        terminal,
        // The message names the swap, never the (secret-bearing) contents.
        state: serde_json::from_str(state)
            .map_err(|_| StoreError::Corrupt(format!("state of swap {id} is not JSON")))?,
        version,
        created_at,
        updated_at,
    })
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
