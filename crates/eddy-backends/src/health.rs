//! Whether the Lightning node follows the chain: the watchdog both daemons run. A node whose
//! chain sync died (measured in issue 13: a file-handle flood made ldk-node's logger panic and
//! its sync stop, silently) cannot act before HTLC deadlines, so a daemon that embeds one must
//! notice — the node's best block falling [`NODE_LAG_BLOCKS`] behind the chain source's tip (or
//! running that far ahead of it, which means the source stopped), or the node not answering —
//! and stop taking new swaps after a grace, and exit for its supervisor after a longer one.
//! [`ChainFollow`] keeps that state; the daemons feed it a check per pass.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use eddy_core::constants::NODE_LAG_BLOCKS;

use crate::lightning::LightningNode;

/// Whether a node at `node` (its best block; `None`: it did not answer) follows a chain source
/// whose tip is `tip`.
pub fn follows(node: Option<u32>, tip: u32) -> bool {
    node.is_some_and(|h| tip.saturating_sub(h) < NODE_LAG_BLOCKS && h.saturating_sub(tip) < NODE_LAG_BLOCKS)
}

/// What one check changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowChange {
    /// The node stopped following the chain at this check.
    Lost,
    /// It follows again.
    Regained,
    /// As before.
    Same,
}

/// The watchdog's state: since when the node has not followed the chain, and how far behind
/// it was at the last check.
#[derive(Debug, Default)]
pub struct ChainFollow {
    state: Mutex<(Option<Instant>, Option<u32>)>,
    /// Whether any check has seen the node following (until then a daemon that just started
    /// — possibly restarted by its supervisor because the node stopped — must not trust it).
    seen: std::sync::atomic::AtomicBool,
}

impl ChainFollow {
    /// A node that follows (until a check says otherwise).
    pub fn new() -> ChainFollow {
        ChainFollow::default()
    }

    /// Records one observation: the node's best block (`None`: it did not answer) against the
    /// chain source's `tip`. Logs the changes.
    pub fn observe(&self, node: Option<u32>, tip: u32) -> FollowChange {
        let ok = follows(node, tip);
        if ok {
            self.seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let behind = node.map(|h| tip.saturating_sub(h));
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = behind;
        match (ok, s.0) {
            (true, Some(_)) => {
                s.0 = None;
                tracing::info!(behind = ?behind, "the Lightning node follows the chain again");
                FollowChange::Regained
            }
            (false, None) => {
                s.0 = Some(Instant::now());
                tracing::warn!(node = ?node, tip, "the Lightning node is not following the chain");
                FollowChange::Lost
            }
            _ => FollowChange::Same,
        }
    }

    /// Asks `ln` for its best block and records it against `tip`.
    pub async fn check(&self, ln: &dyn LightningNode, tip: u32) -> FollowChange {
        let node = ln.info().await.ok().map(|i| i.block_height);
        self.observe(node, tip)
    }

    /// How long the node has not followed the chain (`None`: it does).
    pub fn lagging_for(&self) -> Option<Duration> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .map(|t| t.elapsed())
    }

    /// How many blocks behind the chain source's tip the node was at the last check (`None`:
    /// it did not answer, or no check ran yet).
    pub fn blocks_behind(&self) -> Option<u32> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Whether new swaps may start: not once the node has not followed the chain for `grace`.
    pub fn taking_swaps(&self, grace: Duration) -> bool {
        self.lagging_for().is_none_or(|d| d < grace)
    }

    /// Whether any check so far has seen the node following the chain.
    pub fn seen_following(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_follows_within_one_block_either_way() {
        assert!(follows(Some(100), 100));
        assert!(follows(Some(99), 100));
        assert!(!follows(Some(98), 100));
        assert!(follows(Some(101), 100));
        assert!(!follows(Some(102), 100));
        assert!(!follows(None, 100));
    }

    #[test]
    fn lost_then_regained_and_the_grace() {
        let f = ChainFollow::new();
        assert!(!f.seen_following());
        assert_eq!(f.observe(Some(90), 100), FollowChange::Lost);
        assert!(!f.seen_following());
        assert_eq!(f.observe(Some(100), 100), FollowChange::Regained);
        assert!(f.seen_following());
        assert!(f.lagging_for().is_none());
        assert_eq!(f.observe(Some(100), 103), FollowChange::Lost);
        assert_eq!(f.blocks_behind(), Some(3));
        assert_eq!(f.observe(Some(100), 104), FollowChange::Same);
        assert_eq!(f.blocks_behind(), Some(4));
        assert!(f.lagging_for().is_some());
        assert!(!f.taking_swaps(Duration::ZERO));
        assert!(f.taking_swaps(Duration::from_secs(3600)));
        assert_eq!(f.observe(None, 104), FollowChange::Same);
        assert_eq!(f.blocks_behind(), None);
        assert_eq!(f.observe(Some(104), 104), FollowChange::Regained);
        assert!(f.lagging_for().is_none());
        assert!(f.taking_swaps(Duration::ZERO));
    }
}
