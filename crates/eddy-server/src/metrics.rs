//! Prometheus metrics of the swap server, served as text at `GET /metrics`: swaps created and
//! finished (by outcome), swaps in flight, HTTP requests refused, and the latency from the
//! client's HTLCs being accepted (held) to the on-chain HTLC being broadcast — the figure that
//! decides how long a client's payment sits in flight. The latencies are also kept raw (last
//! [`LATENCY_SAMPLES`]) so benchmarks can report exact percentiles.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Raw latency samples kept for [`Metrics::publish_latencies`].
pub const LATENCY_SAMPLES: usize = 10_000;

type Labels = Vec<(String, String)>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    created: Counter,
    finished: Family<Labels, Counter>,
    active: Gauge,
    active_in: Gauge,
    wallet: Gauge,
    node_behind: Gauge,
    taking_swaps: Gauge,
    refused: Family<Labels, Counter>,
    publish_latency: Histogram,
    samples: Mutex<VecDeque<Duration>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("eddy_server");
        let created = Counter::default();
        let finished = Family::<Labels, Counter>::default();
        let active = Gauge::default();
        let active_in = Gauge::default();
        let wallet = Gauge::default();
        let node_behind = Gauge::default();
        let taking_swaps = Gauge::default();
        taking_swaps.set(1);
        registry.register(
            "node_blocks_behind",
            "Blocks the Lightning node's best block is behind the chain source's tip (-1: node unreachable)",
            node_behind.clone(),
        );
        registry.register(
            "taking_swaps",
            "1 while new swaps are taken; 0 while the Lightning node does not follow the chain",
            taking_swaps.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        // 0.5 ms … ~4 s.
        let publish_latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 14,
        ));
        registry.register("loop_out_created", "Loop-outs created", created.clone());
        registry.register(
            "loop_out_finished",
            "Loop-outs that reached a final state, by outcome",
            finished.clone(),
        );
        registry.register("loop_out_active", "Loop-outs not yet final", active.clone());
        registry.register("loop_in_active", "Loop-ins not yet final", active_in.clone());
        registry.register(
            "swap_wallet_spendable_sat",
            "Swap wallet funds available for HTLCs",
            wallet.clone(),
        );
        registry.register(
            "requests_refused",
            "Loop-out requests refused, by reason",
            refused.clone(),
        );
        registry.register(
            "htlc_publish_latency_seconds",
            "Time from the client's HTLCs accepted to the on-chain HTLC broadcast",
            publish_latency.clone(),
        );
        Metrics {
            registry,
            created,
            finished,
            active,
            active_in,
            wallet,
            node_behind,
            taking_swaps,
            refused,
            publish_latency,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// A swap was created.
    pub fn swap_created(&self) {
        self.created.inc();
    }

    /// A swap reached the final state named `outcome`.
    pub fn swap_finished(&self, outcome: &str) {
        self.finished
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc();
    }

    /// Sets the number of loop-outs in flight.
    pub fn set_active(&self, n: usize) {
        self.active.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the number of loop-ins in flight.
    pub fn set_active_in(&self, n: usize) {
        self.active_in.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The watchdog's reading: blocks behind (`None`: node unreachable) and whether new swaps
    /// are taken.
    pub fn set_node_health(&self, behind: Option<u32>, taking: bool) {
        self.node_behind.set(behind.map_or(-1, i64::from));
        self.taking_swaps.set(i64::from(taking));
    }

    /// Sets the swap wallet's spendable balance.
    pub fn set_wallet_balance(&self, sat: u64) {
        self.wallet.set(i64::try_from(sat).unwrap_or(i64::MAX));
    }

    /// A request was refused for `reason` (`invalid`, `duplicate`, `unavailable`, `rate_limited`…).
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// Records one HTLC-accepted → HTLC-broadcast latency.
    pub fn publish_latency(&self, d: Duration) {
        self.publish_latency.observe(d.as_secs_f64());
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() == LATENCY_SAMPLES {
            s.pop_front();
        }
        s.push_back(d);
    }

    /// The recorded latencies, oldest first.
    pub fn publish_latencies(&self) -> Vec<Duration> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::new();
        m.swap_created();
        m.swap_created();
        m.swap_finished("succeeded");
        m.set_active(1);
        m.set_active_in(2);
        m.refused("rate_limited");
        m.publish_latency(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("eddy_server_loop_out_created_total 2"), "{text}");
        assert!(
            text.contains("eddy_server_loop_out_finished_total{outcome=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(text.contains("eddy_server_loop_out_active 1"), "{text}");
        assert!(text.contains("eddy_server_loop_in_active 2"), "{text}");
        assert!(
            text.contains("eddy_server_requests_refused_total{reason=\"rate_limited\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("eddy_server_htlc_publish_latency_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("eddy_server_htlc_publish_latency_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
        assert_eq!(m.publish_latencies(), vec![Duration::from_millis(3)]);
    }
}
