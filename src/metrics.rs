//! Prometheus metrics (text format at `/metrics`), every name `berth_...`.
//! Request metrics are recorded by the HTTP layer; store figures are read
//! when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::StoreFigures;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels, Counter>,
    pub latency: Family<Labels, Histogram>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub uploads_in_flight: Gauge,
    pub merges: Counter,
    pub corrupt_reads: Counter,
    /// Blob blocks served by reads, by how each was checked (`check`:
    /// hashed, or cached: vouched for by a recent whole read).
    pub read_blocks: Family<Labels, Counter>,
    pub vouched_files: Gauge,
    pub manifest_corrupt_reads: Counter,
    pub scrubs: Counter,
    pub scrub_corrupt: Gauge,
    pub scrub_bytes: Counter,
    pub gc_runs: Counter,
    pub gc_reclaimed_bytes: Counter,
    pub failed_logins: Counter,
    pub throttled_logins: Counter,
    /// Audit events (`event`: login, login_failed, token_issued, refused,
    /// directory_unavailable; `method`: htpasswd, ldap, robot, certificate,
    /// bearer, anonymous).
    pub auth_events: Family<Labels, Counter>,
    /// Mirror events by upstream (see [`Mirror`]).
    pub mirror: MirrorMetrics,
    store: [Gauge; 6],
    /// Requests to the object store by `op` (counted by the store).
    object_store: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "http_received_bytes",
            "request body bytes announced by clients",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "http_sent_bytes",
            "response body bytes of sized responses",
            bytes_out.clone(),
        );
        let uploads_in_flight = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "open upload sessions in memory",
            uploads_in_flight.clone(),
        );
        let merges = Counter::default();
        registry.register(
            "merges",
            "indexes made by multi-arch merges",
            merges.clone(),
        );
        let corrupt_reads = Counter::default();
        registry.register(
            "blob_corrupt_reads",
            "blob blocks that failed verification on read",
            corrupt_reads.clone(),
        );
        let read_blocks = Family::<Labels, Counter>::default();
        registry.register(
            "blob_read_blocks",
            "blob blocks served, by check: hashed, or cached (sent from memory unhashed after a whole verified read, verify.trust_cached_secs)",
            read_blocks.clone(),
        );
        let vouched_files = Gauge::default();
        registry.register(
            "blob_files_vouched_for",
            "blob files whose bytes in memory reads may send unhashed (held up to verify.trust_cached_secs; the table keeps at most 50000)",
            vouched_files.clone(),
        );
        let manifest_corrupt_reads = Counter::default();
        registry.register(
            "manifest_corrupt_reads",
            "manifests kept in files that failed verification on read",
            manifest_corrupt_reads.clone(),
        );
        let scrubs = Counter::default();
        registry.register("scrub_runs", "scrubs run while serving", scrubs.clone());
        let scrub_corrupt = Gauge::default();
        registry.register(
            "scrub_corrupt_items",
            "corrupt or dangling items the last scrub found",
            scrub_corrupt.clone(),
        );
        let scrub_bytes = Counter::default();
        registry.register(
            "scrub_bytes",
            "bytes re-hashed by scrubs",
            scrub_bytes.clone(),
        );
        let gc_runs = Counter::default();
        registry.register(
            "gc_runs",
            "garbage collections while serving",
            gc_runs.clone(),
        );
        let gc_reclaimed_bytes = Counter::default();
        registry.register(
            "gc_reclaimed_bytes",
            "bytes reclaimed by garbage collection",
            gc_reclaimed_bytes.clone(),
        );
        let failed_logins = Counter::default();
        registry.register(
            "failed_logins",
            "requests with wrong credentials",
            failed_logins.clone(),
        );
        let throttled_logins = Counter::default();
        registry.register(
            "throttled_logins",
            "logins refused unchecked after too many failures from the address or for the user",
            throttled_logins.clone(),
        );
        let auth_events = Family::<Labels, Counter>::default();
        registry.register(
            "auth_events",
            "logins, token issues and refusals, by event and method",
            auth_events.clone(),
        );
        let mirror = MirrorMetrics::default();
        for (name, help, family) in [
            (
                "mirror_hits",
                "pulls of mirrored content served from the cache, by upstream and kind",
                &mirror.hits,
            ),
            (
                "mirror_misses",
                "pulls of mirrored content fetched from the upstream, by upstream and kind",
                &mirror.misses,
            ),
            (
                "mirror_upstream_bytes",
                "bytes received from upstreams",
                &mirror.bytes,
            ),
            (
                "mirror_upstream_errors",
                "failed requests to upstreams",
                &mirror.errors,
            ),
            (
                "mirror_stale_served",
                "cached tags served unchecked because the upstream failed",
                &mirror.stale,
            ),
            (
                "mirror_evictions",
                "cached blobs evicted for max_bytes",
                &mirror.evictions,
            ),
            (
                "mirror_synced",
                "manifests and blobs copied by sync jobs",
                &mirror.synced,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        let store: [Gauge; 6] = Default::default();
        let names = [
            ("store_repositories", "repositories with content"),
            ("store_manifests", "manifests stored"),
            ("store_blobs", "blobs stored (each once)"),
            ("store_blob_bytes", "bytes of blobs stored"),
            (
                "store_dedupe_saved_bytes",
                "bytes that repositories share instead of storing twice",
            ),
            ("store_db_bytes", "size of the metadata database file"),
        ];
        for (g, (n, h)) in store.iter().zip(names) {
            registry.register(n, h, g.clone());
        }
        let object_store = Family::<Labels, Counter>::default();
        registry.register(
            "object_store_requests",
            "requests to the object store (storage.blobs = \"s3\") by operation",
            object_store.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            merges,
            corrupt_reads,
            read_blocks,
            vouched_files,
            manifest_corrupt_reads,
            scrubs,
            scrub_corrupt,
            scrub_bytes,
            gc_runs,
            gc_reclaimed_bytes,
            failed_logins,
            throttled_logins,
            auth_events,
            mirror,
            store,
            object_store,
        }
    }
}

/// What a mirror counts, each by `upstream` (and `kind`: manifest or blob).
#[derive(Clone, Default)]
pub struct MirrorMetrics {
    pub hits: Family<Labels, Counter>,
    pub misses: Family<Labels, Counter>,
    pub bytes: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub stale: Family<Labels, Counter>,
    pub evictions: Family<Labels, Counter>,
    pub synced: Family<Labels, Counter>,
}

/// Which counter of [`MirrorMetrics`] an event moves.
#[derive(Clone, Copy, Debug)]
pub enum Mirror {
    Hit,
    Miss,
    Bytes,
    Error,
    Stale,
    Eviction,
    Synced,
}

impl MirrorMetrics {
    /// Add `n` to `event` of `upstream` (`kind` empty for no kind label).
    pub fn count(&self, event: Mirror, upstream: &str, kind: &str, n: u64) {
        let family = match event {
            Mirror::Hit => &self.hits,
            Mirror::Miss => &self.misses,
            Mirror::Bytes => &self.bytes,
            Mirror::Error => &self.errors,
            Mirror::Stale => &self.stale,
            Mirror::Eviction => &self.evictions,
            Mirror::Synced => &self.synced,
        };
        let mut labels = vec![("upstream".to_string(), upstream.to_string())];
        if !kind.is_empty() {
            labels.push(("kind".to_string(), kind.to_string()));
        }
        family.get_or_create(&labels).inc_by(n);
    }
}

impl Metrics {
    pub fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        seconds: f64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let labels = vec![
            ("route".to_string(), route.to_string()),
            ("method".to_string(), method.to_string()),
            ("status".to_string(), status.to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&vec![("route".to_string(), route.to_string())])
            .observe(seconds);
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }

    /// The text exposition, with store figures as of now.
    pub fn render(&self, store: &StoreFigures, uploads: usize) -> String {
        let values = [
            store.repositories,
            store.manifests,
            store.blobs,
            store.blob_bytes,
            store.dedupe_saved_bytes,
            store.db_bytes,
        ];
        for (g, v) in self.store.iter().zip(values) {
            g.set(v as i64);
        }
        self.uploads_in_flight.set(uploads as i64);
        for (op, n) in &store.object_store_requests {
            // the store counts; the counter catches up with it
            let c = self
                .object_store
                .get_or_create(&vec![("op".to_string(), op.to_string())]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
