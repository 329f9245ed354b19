//! Prometheus metrics: what an operator's dashboard needs to see the service working.
//!
//! Counters and histograms are updated where things happen (the HTTP layer, `ask`);
//! gauges of state that lives elsewhere (generation slots, jobs, knowledge base sizes) are
//! read when scraped, so they can never drift from the truth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern (`/v1/kbs/{kb}/search`), never the raw path: one series per
    /// route, not per knowledge base or document.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a request duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern.
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KbLabels {
    kb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    state: &'static str,
}

/// Observations as they are made, for the gauges read at scrape time.
pub struct Snapshot {
    /// Generation slots.
    pub slots: zhiku_schemas::SlotInfo,
    /// Job system load; absent when no job system runs.
    pub jobs: Option<zhiku_jobs::JobStats>,
    /// `(kb, documents, chunks)` for every knowledge base.
    pub kbs: Vec<(String, usize, usize)>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The service's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<RouteLabels>,
    search_seconds: Histogram,
    ask_seconds: Histogram,
    first_token_seconds: Histogram,
    generation_tokens_per_second: Histogram,
    generated_tokens: Counter,
    prompt_tokens: Counter,
    upload_chunks: Counter,
    chunks_indexed: Counter,
    jobs_queued: Gauge,
    jobs_running: Gauge,
    slots: Family<SlotLabels, Gauge>,
    slot_events: Family<SlotLabels, Counter>,
    kb_documents: Family<KbLabels, Gauge>,
    kb_chunks: Family<KbLabels, Gauge>,
}

/// Brings a counter that mirrors a running total kept elsewhere up to that total.
fn mirror(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Buckets from 5 ms to about 80 s: searches take milliseconds, answers seconds.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("zhiku");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let durations: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_buckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route (for streams: until the response starts)",
            durations.clone(),
        );
        let search_seconds = latency_buckets();
        registry.register(
            "search_duration_seconds",
            "Search latency (embedding the query, both indexes, fusion)",
            search_seconds.clone(),
        );
        let ask_seconds = latency_buckets();
        registry.register(
            "ask_duration_seconds",
            "Answer latency, retrieval to last token",
            ask_seconds.clone(),
        );
        let first_token_seconds = latency_buckets();
        registry.register(
            "ask_time_to_first_token_seconds",
            "Time from an ask request to its first answer token",
            first_token_seconds.clone(),
        );
        let generation_tokens_per_second = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "generation_tokens_per_second",
            "Answer tokens per second after the first, per answer",
            generation_tokens_per_second.clone(),
        );
        let generated_tokens = Counter::default();
        registry.register(
            "generated_tokens",
            "Answer tokens generated",
            generated_tokens.clone(),
        );
        let prompt_tokens = Counter::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens processed",
            prompt_tokens.clone(),
        );
        let upload_chunks = Counter::default();
        let chunks_indexed = Counter::default();
        registry.register(
            "ingested_chunks",
            "Chunks indexed since start, by uploads and jobs (rate() gives chunks/s)",
            chunks_indexed.clone(),
        );
        let jobs_queued = Gauge::default();
        registry.register("jobs_queued", "Ingestion jobs waiting", jobs_queued.clone());
        let jobs_running = Gauge::default();
        registry.register(
            "jobs_running",
            "Ingestion jobs running",
            jobs_running.clone(),
        );
        let slots = Family::<SlotLabels, Gauge>::default();
        registry.register(
            "llm_slots",
            "Generation slots: parallel (size), busy, queue (size), queued",
            slots.clone(),
        );
        let slot_events = Family::<SlotLabels, Counter>::default();
        registry.register(
            "llm_requests",
            "Generation requests since start: admitted, rejected (503), cancelled (client left)",
            slot_events.clone(),
        );
        let kb_documents = Family::<KbLabels, Gauge>::default();
        registry.register(
            "kb_documents",
            "Documents per knowledge base",
            kb_documents.clone(),
        );
        let kb_chunks = Family::<KbLabels, Gauge>::default();
        registry.register("kb_chunks", "Chunks per knowledge base", kb_chunks.clone());
        Self {
            registry,
            requests,
            durations,
            search_seconds,
            ask_seconds,
            first_token_seconds,
            generation_tokens_per_second,
            generated_tokens,
            prompt_tokens,
            upload_chunks,
            chunks_indexed,
            jobs_queued,
            jobs_running,
            slots,
            slot_events,
            kb_documents,
            kb_chunks,
        }
    }

    /// Counts an HTTP request and its latency.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let route_labels = RouteLabels {
            method: method.to_string(),
            route: route.to_string(),
        };
        self.durations.get_or_create(&route_labels).observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method: route_labels.method,
                route: route_labels.route,
                status,
            })
            .inc();
    }

    /// Records a search's latency.
    pub fn search(&self, seconds: f64) {
        self.search_seconds.observe(seconds);
    }

    /// Records a generated answer.
    pub fn answer(&self, timings: &zhiku_schemas::Timings, usage: &zhiku_schemas::Usage) {
        self.ask_seconds.observe(timings.total_ms as f64 / 1000.0);
        if let Some(ms) = timings.time_to_first_token_ms {
            self.first_token_seconds.observe(ms as f64 / 1000.0);
        }
        if let Some(rate) = timings.tokens_per_second {
            self.generation_tokens_per_second.observe(rate);
        }
        self.generated_tokens.inc_by(usage.completion_tokens as u64);
        self.prompt_tokens.inc_by(usage.prompt_tokens as u64);
    }

    /// Counts chunks indexed by a synchronous upload.
    pub fn uploaded(&self, chunks: usize) {
        self.upload_chunks.inc_by(chunks as u64);
    }

    /// The metrics in the Prometheus/OpenMetrics text format, gauges set from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        let s = &snapshot.slots;
        for (state, value) in [
            ("parallel", s.parallel),
            ("busy", s.busy),
            ("queue", s.queue),
            ("queued", s.queued),
        ] {
            gauge(
                &self.slots.get_or_create(&SlotLabels { state }),
                value as u64,
            );
        }
        for (state, value) in [
            ("admitted", s.admitted),
            ("rejected", s.rejected),
            ("cancelled", s.cancelled),
        ] {
            mirror(
                &self.slot_events.get_or_create(&SlotLabels { state }),
                value,
            );
        }
        let jobs = snapshot.jobs.unwrap_or_default();
        gauge(&self.jobs_queued, jobs.queued as u64);
        gauge(&self.jobs_running, jobs.running as u64);
        mirror(
            &self.chunks_indexed,
            jobs.chunks_indexed + self.upload_chunks.get(),
        );
        // Deleted knowledge bases must disappear, not linger at their last value.
        self.kb_documents.clear();
        self.kb_chunks.clear();
        for (kb, documents, chunks) in &snapshot.kbs {
            let labels = KbLabels { kb: kb.clone() };
            gauge(&self.kb_documents.get_or_create(&labels), *documents as u64);
            gauge(&self.kb_chunks.get_or_create(&labels), *chunks as u64);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
