//! Prometheus metrics of the operator, served on `/metrics`. Labels stay bounded (no object names).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Label set of a write to a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    /// `inject` or `remove`.
    pub action: &'static str,
}

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Server-side applies to targets by action.
    pub applies: Family<ActionLabel, Counter>,
    /// Targets skipped because of a conflict or an unresolvable layout.
    pub skipped: Counter,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            applies: Family::default(),
            skipped: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
        }
    }
}

impl Metrics {
    /// Register every metric under the `tablesnap_operator` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("tablesnap_operator");
        sub.register(
            "reconciles",
            "Reconciles of TableSnaps by result",
            self.reconciles.clone(),
        );
        sub.register(
            "target_applies",
            "Server-side applies to Cassandra objects by action",
            self.applies.clone(),
        );
        sub.register(
            "targets_skipped",
            "Targets skipped (conflict or unresolvable layout)",
            self.skipped.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile",
            self.duration.clone(),
        );
    }
}
