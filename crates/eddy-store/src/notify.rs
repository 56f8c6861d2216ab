//! [`NotifyingStore`]: a [`SwapStore`] that announces every swap it creates or moves, so a
//! process that owns its engines (the client daemon) can follow changes as they are written
//! instead of re-reading every swap on a timer. The announcement goes out after the write
//! committed and carries only the swap id; a listener reads the swap itself. Listeners that
//! fall behind get `Lagged` from the channel and should re-read everything once.

use std::sync::Arc;

use async_trait::async_trait;
use eddy_core::types::SwapId;
use tokio::sync::broadcast;

use crate::{EventRecord, ListFilter, NewSwap, StateUpdate, StoreError, SwapRecord, SwapStore};

/// Wraps a store; every successful `create` and `transition` is announced.
pub struct NotifyingStore {
    inner: Arc<dyn SwapStore>,
    changes: broadcast::Sender<SwapId>,
}

impl NotifyingStore {
    /// Wraps `inner`; listeners may fall up to `capacity` announcements behind.
    pub fn new(inner: Arc<dyn SwapStore>, capacity: usize) -> NotifyingStore {
        let (changes, _) = broadcast::channel(capacity.max(1));
        NotifyingStore { inner, changes }
    }

    /// The ids of swaps written from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SwapId> {
        self.changes.subscribe()
    }
}

#[async_trait]
impl SwapStore for NotifyingStore {
    async fn create(&self, swap: &NewSwap) -> Result<SwapRecord, StoreError> {
        let r = self.inner.create(swap).await?;
        // No listener is not an error.
        let _ = self.changes.send(swap.id);
        Ok(r)
    }

    async fn get(&self, id: &SwapId) -> Result<Option<SwapRecord>, StoreError> {
        self.inner.get(id).await
    }

    async fn transition(
        &self,
        id: &SwapId,
        expected_version: i64,
        update: &StateUpdate,
    ) -> Result<SwapRecord, StoreError> {
        let r = self.inner.transition(id, expected_version, update).await?;
        let _ = self.changes.send(*id);
        Ok(r)
    }

    async fn events(&self, id: &SwapId) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events(id).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<SwapRecord>, StoreError> {
        self.inner.list(filter).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_meta(key).await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_meta(key, value).await
    }
}
