//! Operator metrics in Prometheus text format (`GET /metrics`), always on.
//!
//! Request metrics are updated from each completion event (the same event statistics
//! consume), so every request is counted once whatever its outcome. Per key/model state
//! (queue, RPM/RPD use, pauses) is read from the key/model actors at scrape time, and
//! actor mailbox metrics from their meters. Labels are low-cardinality names only:
//! provider, model, key id, routing method, tier, outcome. Never content, never secrets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::RwLock;
use std::time::Duration;

use bkvy_actors::mailbox::WAIT_BUCKETS;
use bkvy_actors::{CapacityStatus, KeyModelId, MailboxMeter, Millis, RequestCompleted};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `intelligence`, `scenario` or `direct`.
    pub routing_method: String,
    /// Requested tier (intelligence mode) or empty.
    pub intelligence_level: String,
    /// Provider that answered, or empty.
    pub provider: String,
    /// Model that answered, or empty.
    pub model: String,
    /// `success` or the error code.
    pub outcome: String,
}

/// Routing method and success/failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `intelligence`, `scenario` or `direct`.
    pub routing_method: String,
    /// `success` or `failure`.
    pub result: String,
}

/// Provider and model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
}

/// Provider, model and a kind (token kind or error kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// The kind.
    pub kind: String,
}

/// One key/model pair.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyModelLabels {
    /// Provider name.
    pub provider: String,
    /// Key id (never the secret).
    pub key_id: String,
    /// Model name.
    pub model: String,
}

impl From<&KeyModelId> for KeyModelLabels {
    fn from(id: &KeyModelId) -> Self {
        Self {
            provider: id.provider.clone(),
            key_id: id.key_id.clone(),
            model: id.model.clone(),
        }
    }
}

/// One client of `clients.json` and a period.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// Client name (never its key).
    pub client: String,
    /// `day`, `month` or `total` (spend); `minute` or `day` (requests).
    pub period: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Per-client spend, budgets and requests, set from the client ledger at scrape time.
struct ClientGauges {
    spend: Family<ClientLabels, FloatGauge>,
    remaining: Family<ClientLabels, FloatGauge>,
    requests: Family<ClientLabels, Gauge>,
}

/// Attempt error labels that are capacity decisions inside bkvy, not upstream errors.
const CAPACITY_KINDS: [&str; 9] = bkvy_actors::Rejection::LABELS;

type FloatCounter = Counter<f64, AtomicU64>;

fn seconds_histogram() -> Histogram {
    // 50 µs … ~200 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 23))
}

/// Every metric bkvy exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    upstream_duration: Family<ModelLabels, Histogram, fn() -> Histogram>,
    overhead: Histogram,
    ttft: Family<MethodLabels, Histogram, fn() -> Histogram>,
    tokens: Family<KindLabels, Counter>,
    cost: Family<ModelLabels, FloatCounter>,
    upstream_errors: Family<KindLabels, Counter>,
    capacity_rejections: Family<KindLabels, Counter>,
    slot_wait: Family<KeyModelLabels, Histogram, fn() -> Histogram>,
    key_model: KeyModelGauges,
    clients: ClientGauges,
    events_dropped: Gauge,
    /// The series a plain successful answer touches, per label combination (see
    /// [`Answered`]).
    answered: RwLock<HashMap<String, Answered>>,
}

/// Every series a plain (non-streamed) successful answer updates, looked up in the
/// families once per combination of routing method, tier, provider, model and key and kept:
/// building eight label sets (≈ 15 owned strings) and hashing each into its family for
/// every request was a visible share of bkvy's own cost. The handles share their values
/// with the families, so the exposition is the same.
#[derive(Clone)]
struct Answered {
    requests: Counter,
    duration: Histogram,
    upstream: Histogram,
    cost: FloatCounter,
    tokens: [Counter; 3],
    slot_wait: Histogram,
}

thread_local! {
    /// The key of the `answered` cache, built without allocating per request.
    static ANSWERED_KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

struct KeyModelGauges {
    queue_length: Family<KeyModelLabels, Gauge>,
    in_flight: Family<KeyModelLabels, Gauge>,
    rpm_used: Family<KeyModelLabels, Gauge>,
    rpm_remaining: Family<KeyModelLabels, Gauge>,
    rpd_used: Family<KeyModelLabels, Gauge>,
    rpd_remaining: Family<KeyModelLabels, Gauge>,
    paused_until: Family<KeyModelLabels, Gauge>,
    disabled: Family<KeyModelLabels, Gauge>,
}

impl Metrics {
    /// All metrics, registered; `mailboxes` names each actor kind's meter.
    pub fn new(mailboxes: Vec<(&'static str, MailboxMeter)>) -> Self {
        let mut registry = Registry::with_prefix("bkvy");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests by routing method, requested tier, answering provider and model, and outcome (success or error code)",
            requests.clone(),
        );
        let request_duration =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Whole request time, arrival to answer",
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "upstream_duration_seconds",
            "Time of the upstream call that answered",
            upstream_duration.clone(),
        );
        let overhead = seconds_histogram();
        registry.register(
            "gateway_overhead_seconds",
            "Whole request time minus the answering upstream call (routing, queueing, retries, bkvy itself)",
            overhead.clone(),
        );
        let ttft = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            seconds_histogram,
        );
        registry.register(
            "time_to_first_token_seconds",
            "Streamed answers: arrival to the first content sent to the client",
            ttft.clone(),
        );
        let tokens = Family::default();
        registry.register(
            "tokens",
            "Tokens by provider, model and kind (input, output, thinking)",
            tokens.clone(),
        );
        let cost = Family::default();
        registry.register("cost_usd", "Cost of answered requests in USD", cost.clone());
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Failed upstream calls by kind (rate_limited, server_error, timeout, connection, auth, bad_request, malformed_response)",
            upstream_errors.clone(),
        );
        let capacity_rejections = Family::default();
        registry.register(
            "capacity_rejections",
            format!(
                "Candidates that refused a slot ({})",
                bkvy_actors::Rejection::LABELS.join(", ")
            ),
            capacity_rejections.clone(),
        );
        let slot_wait =
            Family::<KeyModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_histogram,
            );
        registry.register(
            "key_model_queue_wait_seconds",
            "Time the answering call waited for its key/model slot (queue and rate limit)",
            slot_wait.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let f: Family<KeyModelLabels, Gauge> = Family::default();
            registry.register(name, help, f.clone());
            f
        };
        let key_model = KeyModelGauges {
            queue_length: gauge(
                &mut registry,
                "key_model_queue_length",
                "Requests waiting in the key/model FIFO",
            ),
            in_flight: gauge(
                &mut registry,
                "key_model_in_flight",
                "Upstream calls in flight",
            ),
            rpm_used: gauge(
                &mut registry,
                "key_model_rpm_used",
                "Calls in the current 60-second window",
            ),
            rpm_remaining: gauge(
                &mut registry,
                "key_model_rpm_remaining",
                "Calls left in the current 60-second window",
            ),
            rpd_used: gauge(&mut registry, "key_model_rpd_used", "Calls today"),
            rpd_remaining: gauge(&mut registry, "key_model_rpd_remaining", "Calls left today"),
            paused_until: gauge(
                &mut registry,
                "key_model_paused_until_seconds",
                "Unix time a 429 pause ends (0 when not paused)",
            ),
            disabled: gauge(
                &mut registry,
                "key_model_disabled",
                "1 when the key is out of rotation (authentication failed)",
            ),
        };
        let clients = ClientGauges {
            spend: Family::default(),
            remaining: Family::default(),
            requests: Family::default(),
        };
        registry.register(
            "client_spend_usd",
            "What a client of clients.json has spent, USD, by period (day and month are UTC)",
            clients.spend.clone(),
        );
        registry.register(
            "client_budget_remaining_usd",
            "What is left of a client's daily or monthly budget, USD",
            clients.remaining.clone(),
        );
        registry.register(
            "client_requests",
            "A client's requests in the last minute and today (its rpm and rpd counts)",
            clients.requests.clone(),
        );
        let events_dropped = Gauge::default();
        registry.register(
            "completion_events_dropped",
            "Completion events a consumer's full mailbox could not take",
            events_dropped.clone(),
        );
        registry.register_collector(Box::new(MailboxCollector { meters: mailboxes }));
        Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            overhead,
            ttft,
            tokens,
            cost,
            upstream_errors,
            capacity_rejections,
            slot_wait,
            key_model,
            clients,
            events_dropped,
            answered: RwLock::default(),
        }
    }

    /// The fast path of [`observe`](Self::observe): a successful, non-streamed answer that
    /// carries every number. Returns `false` (nothing counted) for anything else.
    fn observe_answered(&self, e: &RequestCompleted) -> bool {
        let (
            true,
            None,
            Some(provider),
            Some(model),
            Some(key_id),
            Some(up),
            Some(cost),
            Some(q),
            Some(r),
            Some(input),
            Some(output),
            Some(thinking),
        ) = (
            e.success,
            e.time_to_first_token_ms,
            &e.provider_used,
            &e.model_used,
            &e.api_key_used,
            e.upstream_us,
            e.cost_usd,
            e.queue_wait_ms,
            e.rate_limit_wait_ms,
            e.input_tokens,
            e.output_tokens,
            e.thinking_tokens,
        )
        else {
            return false;
        };
        let method = e.routing_method.as_str();
        let tier = e.intelligence_level.map(|t| t.as_str()).unwrap_or_default();
        let m = ANSWERED_KEY.with_borrow_mut(|key| {
            key.clear();
            let _ = write!(key, "{method}\0{tier}\0{provider}\0{model}\0{key_id}");
            let found = self
                .answered
                .read()
                .ok()
                .and_then(|map| map.get(key.as_str()).cloned());
            found.unwrap_or_else(|| {
                let m = self.resolve_answered(method, tier, provider, model, key_id);
                if let Ok(mut map) = self.answered.write() {
                    map.insert(key.clone(), m.clone());
                }
                m
            })
        });
        m.requests.inc();
        m.duration.observe(e.total_us as f64 / 1e6);
        m.upstream.observe(up as f64 / 1e6);
        self.overhead
            .observe(e.total_us.saturating_sub(up) as f64 / 1e6);
        m.cost.inc_by(cost);
        for (counter, n) in m.tokens.iter().zip([input, output, thinking]) {
            counter.inc_by(n);
        }
        m.slot_wait.observe((q + r).max(0) as f64 / 1000.0);
        for a in &e.attempt_errors {
            self.count_attempt_error(a);
        }
        true
    }

    fn resolve_answered(
        &self,
        method: &str,
        tier: &str,
        provider: &str,
        model: &str,
        key_id: &str,
    ) -> Answered {
        let labels = ModelLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
        };
        let kind = |kind: &str| KindLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
            kind: kind.to_owned(),
        };
        // One statement per lookup: `get_or_create` hands out a read guard of its family,
        // which must be gone before the next lookup in the same family may insert.
        let requests = self
            .requests
            .get_or_create(&RequestLabels {
                routing_method: method.to_owned(),
                intelligence_level: tier.to_owned(),
                provider: provider.to_owned(),
                model: model.to_owned(),
                outcome: "success".to_owned(),
            })
            .clone();
        let duration = self
            .request_duration
            .get_or_create(&MethodLabels {
                routing_method: method.to_owned(),
                result: "success".to_owned(),
            })
            .clone();
        let upstream = self.upstream_duration.get_or_create(&labels).clone();
        let cost = self.cost.get_or_create(&labels).clone();
        let input = self.tokens.get_or_create(&kind("input")).clone();
        let output = self.tokens.get_or_create(&kind("output")).clone();
        let thinking = self.tokens.get_or_create(&kind("thinking")).clone();
        let slot_wait = self
            .slot_wait
            .get_or_create(&KeyModelLabels {
                provider: provider.to_owned(),
                key_id: key_id.to_owned(),
                model: model.to_owned(),
            })
            .clone();
        Answered {
            requests,
            duration,
            upstream,
            cost,
            tokens: [input, output, thinking],
            slot_wait,
        }
    }

    fn count_attempt_error(&self, a: &bkvy_actors::AttemptError) {
        let family = if CAPACITY_KINDS.contains(&a.kind.as_str()) {
            &self.capacity_rejections
        } else {
            &self.upstream_errors
        };
        family
            .get_or_create(&KindLabels {
                provider: a.provider.clone(),
                model: a.model.clone(),
                kind: a.kind.clone(),
            })
            .inc();
    }

    /// Counts one finished request.
    pub fn observe(&self, e: &RequestCompleted) {
        if self.observe_answered(e) {
            return;
        }
        let provider = e.provider_used.clone().unwrap_or_default();
        let model = e.model_used.clone().unwrap_or_default();
        let outcome = if e.success {
            "success".to_owned()
        } else {
            e.error_type.clone().unwrap_or_else(|| "error".to_owned())
        };
        self.requests
            .get_or_create(&RequestLabels {
                routing_method: e.routing_method.as_str().to_owned(),
                intelligence_level: e
                    .intelligence_level
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                provider: provider.clone(),
                model: model.clone(),
                outcome,
            })
            .inc();
        let total = e.total_us as f64 / 1e6;
        self.request_duration
            .get_or_create(&MethodLabels {
                routing_method: e.routing_method.as_str().to_owned(),
                result: if e.success { "success" } else { "failure" }.to_owned(),
            })
            .observe(total);
        if let Some(ttft) = e.time_to_first_token_ms {
            self.ttft
                .get_or_create(&MethodLabels {
                    routing_method: e.routing_method.as_str().to_owned(),
                    result: if e.success { "success" } else { "failure" }.to_owned(),
                })
                .observe(ttft.max(0) as f64 / 1000.0);
        }
        if let Some(up) = e.upstream_us {
            let labels = ModelLabels {
                provider: provider.clone(),
                model: model.clone(),
            };
            self.upstream_duration
                .get_or_create(&labels)
                .observe(up as f64 / 1e6);
            self.overhead
                .observe(e.total_us.saturating_sub(up) as f64 / 1e6);
            if let Some(c) = e.cost_usd {
                self.cost.get_or_create(&labels).inc_by(c);
            }
        }
        for (kind, n) in [
            ("input", e.input_tokens),
            ("output", e.output_tokens),
            ("thinking", e.thinking_tokens),
        ] {
            if let Some(n) = n {
                self.tokens
                    .get_or_create(&KindLabels {
                        provider: provider.clone(),
                        model: model.clone(),
                        kind: kind.to_owned(),
                    })
                    .inc_by(n);
            }
        }
        if let (Some(key_id), Some(q), Some(r)) =
            (&e.api_key_used, e.queue_wait_ms, e.rate_limit_wait_ms)
        {
            self.slot_wait
                .get_or_create(&KeyModelLabels {
                    provider: provider.clone(),
                    key_id: key_id.clone(),
                    model: model.clone(),
                })
                .observe((q + r).max(0) as f64 / 1000.0);
        }
        for a in &e.attempt_errors {
            self.count_attempt_error(a);
        }
    }

    /// Sets the per key/model gauges from live actor state.
    pub fn set_key_models(&self, now: Millis, states: &[(KeyModelId, CapacityStatus)]) {
        let g = &self.key_model;
        for (id, s) in states {
            let l = KeyModelLabels::from(id);
            g.queue_length.get_or_create(&l).set(s.queue_length as i64);
            g.in_flight.get_or_create(&l).set(i64::from(s.in_flight));
            g.rpm_used
                .get_or_create(&l)
                .set(i64::from(s.requests_this_minute));
            g.rpm_remaining.get_or_create(&l).set(i64::from(
                s.rpm_limit.saturating_sub(s.requests_this_minute),
            ));
            g.rpd_used
                .get_or_create(&l)
                .set(i64::from(s.requests_today));
            g.rpd_remaining
                .get_or_create(&l)
                .set(i64::from(s.rpd_limit.saturating_sub(s.requests_today)));
            let paused = s.paused_until.filter(|&p| p > now).map_or(0, |p| p / 1000);
            g.paused_until.get_or_create(&l).set(paused);
            g.disabled
                .get_or_create(&l)
                .set(i64::from(s.disabled.is_some()));
        }
    }

    /// Sets the per-client gauges (clients no longer configured disappear).
    pub fn set_clients(&self, views: &[crate::client_ledger::ClientView]) {
        let g = &self.clients;
        g.spend.clear();
        g.remaining.clear();
        g.requests.clear();
        let l = |client: &str, period: &str| ClientLabels {
            client: client.to_owned(),
            period: period.to_owned(),
        };
        for v in views {
            let c = v.client.as_str();
            g.spend.get_or_create(&l(c, "day")).set(v.spent_today_usd);
            g.spend
                .get_or_create(&l(c, "month"))
                .set(v.spent_this_month_usd);
            g.spend.get_or_create(&l(c, "total")).set(v.spent_total_usd);
            if let Some(r) = v.daily_remaining_usd {
                g.remaining.get_or_create(&l(c, "day")).set(r);
            }
            if let Some(r) = v.monthly_remaining_usd {
                g.remaining.get_or_create(&l(c, "month")).set(r);
            }
            g.requests
                .get_or_create(&l(c, "minute"))
                .set(i64::from(v.requests_last_minute));
            g.requests
                .get_or_create(&l(c, "day"))
                .set(i64::from(v.requests_today));
        }
    }

    /// Sets the dropped-events gauge.
    pub fn set_events_dropped(&self, n: u64) {
        self.events_dropped.set(n.min(i64::MAX as u64) as i64);
    }

    /// The text exposition (Prometheus text format 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Mailbox metrics per actor kind, read from the meters at scrape time.
#[derive(Debug)]
struct MailboxCollector {
    meters: Vec<(&'static str, MailboxMeter)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    actor: String,
}

impl Collector for MailboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let readings: Vec<_> = self
            .meters
            .iter()
            .map(|(name, m)| {
                (
                    ActorLabels {
                        actor: (*name).to_owned(),
                    },
                    m.read(),
                )
            })
            .collect();
        let mut e = encoder.encode_descriptor(
            "actor_messages_handled",
            "Messages handled, by actor kind",
            None,
            MetricType::Counter,
        )?;
        for (l, r) in &readings {
            ConstCounter::new(r.handled).encode(e.encode_family(l)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "actor_mailbox_backlog",
            "Messages sent but not yet handled, by actor kind",
            None,
            MetricType::Gauge,
        )?;
        for (l, r) in &readings {
            ConstGauge::new(r.backlog.min(i64::MAX as u64) as i64).encode(e.encode_family(l)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "actor_handle_seconds",
            "Time spent in message handlers, by actor kind",
            None,
            MetricType::Counter,
        )?;
        for (l, r) in &readings {
            ConstCounter::new(r.handle_nanos as f64 / 1e9).encode(e.encode_family(l)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "actor_mailbox_wait_seconds",
            "Time a request-path message waited in the mailbox before its handler ran",
            None,
            MetricType::Histogram,
        )?;
        for (l, r) in &readings {
            let mut buckets: Vec<(f64, u64)> = WAIT_BUCKETS
                .iter()
                .copied()
                .zip(r.wait_buckets.iter().copied())
                .collect();
            let finite: u64 = r.wait_buckets.iter().sum();
            buckets.push((f64::INFINITY, r.wait_count.saturating_sub(finite)));
            e.encode_family(l)?.encode_histogram::<ActorLabels>(
                Duration::from_nanos(r.wait_nanos).as_secs_f64(),
                r.wait_count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The operators' list of rejection kinds is `Rejection::LABELS`, whole.
    #[test]
    fn the_operations_guide_lists_every_rejection_kind() {
        let guide = include_str!("../docs/OPERATIONS.md");
        let row = guide
            .lines()
            .find(|l| l.starts_with("| `bkvy_capacity_rejections_total`"))
            .expect("the metric's row in docs/OPERATIONS.md");
        for label in bkvy_actors::Rejection::LABELS {
            assert!(
                row.contains(&format!("`{label}`")),
                "{label} missing: {row}"
            );
        }
        assert_eq!(
            row.matches("`, `").count() + 1,
            bkvy_actors::Rejection::LABELS.len() + 2,
            "a kind the code does not have: {row}"
        );
    }
}
