//! The synthetic trace: when each request arrives, its tier, its wait budget and its
//! prompt, all from one seed.
//!
//! Arrivals: most requests are spread uniformly over the run (a Poisson-like background);
//! the rest come in a few short bursts at random times, which overrun the cheap keys'
//! RPM so that the router has to spill over, queue within budgets, or both. Tiers are
//! 60/30/10 % low/medium/high; budgets (`max_wait_seconds`) are 2–5 s for a quarter of
//! the requests, 5–20 s for a third and 20–60 s for the rest. The generator is its own
//! SplitMix64, so a seed gives the same trace whatever version of `rand` is in the lock
//! file.

use crate::catalog::Tier;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// What the trace looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    pub seed: u64,
    pub requests: usize,
    /// Arrivals lie in [0, duration_s).
    pub duration_s: f64,
    /// How many bursts.
    pub bursts: usize,
    /// Share of the requests that arrive in bursts.
    pub burst_share: f64,
    /// How long one burst lasts.
    pub burst_len_s: f64,
}

impl Default for TraceSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            requests: 600,
            duration_s: 180.0,
            bursts: 4,
            burst_share: 0.3,
            burst_len_s: 5.0,
        }
    }
}

/// One request of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Its place in arrival order.
    pub id: usize,
    /// When it is sent, from the start of the run.
    pub at_ms: u64,
    pub tier: Tier,
    /// `max_wait_seconds`.
    pub budget_s: f64,
    /// Words of the user message.
    pub prompt_words: u32,
}

impl TraceRequest {
    /// The user message: `prompt_words` words, different for every request.
    pub fn prompt(&self) -> String {
        let mut words = vec![format!("request-{}", self.id)];
        words.extend(
            (1..self.prompt_words).map(|i| WORDS[(self.id + i as usize) % WORDS.len()].to_owned()),
        );
        words.join(" ")
    }

    /// Tokens the fake reports for it on any model of the catalog: the prompt's words in,
    /// and out the answer `"[<model>] <prompt>"`, one word more.
    pub fn tokens(&self) -> u64 {
        2 * u64::from(self.prompt_words) + 1
    }

    /// When its budget ends, from the start of the run.
    pub fn due_ms(&self) -> u64 {
        self.at_ms + (self.budget_s * 1000.0).round() as u64
    }
}

const WORDS: &[&str] = &[
    "summarise",
    "the",
    "quarterly",
    "report",
    "and",
    "list",
    "three",
    "risks",
    "for",
    "our",
    "team",
    "in",
    "plain",
    "words",
    "please",
    "explain",
    "why",
    "it",
    "matters",
];

fn tier(rng: &mut Rng) -> Tier {
    match rng.unit() {
        u if u < 0.6 => Tier::Low,
        u if u < 0.9 => Tier::Medium,
        _ => Tier::High,
    }
}

/// `max_wait_seconds`, to a tenth of a second.
fn budget(rng: &mut Rng) -> f64 {
    let s = match rng.unit() {
        u if u < 0.25 => rng.range(2.0, 5.0),
        u if u < 0.60 => rng.range(5.0, 20.0),
        _ => rng.range(20.0, 60.0),
    };
    (s * 10.0).round() / 10.0
}

/// The trace of `spec`, in arrival order.
pub fn generate(spec: &TraceSpec) -> Vec<TraceRequest> {
    let mut rng = Rng::new(spec.seed);
    let duration_ms = spec.duration_s * 1000.0;
    let burst_len_ms = (spec.burst_len_s * 1000.0).min(duration_ms);
    let in_bursts = if spec.bursts == 0 {
        0
    } else {
        ((spec.requests as f64) * spec.burst_share.clamp(0.0, 1.0)).round() as usize
    };
    let mut times: Vec<f64> = (0..spec.requests - in_bursts)
        .map(|_| rng.range(0.0, duration_ms))
        .collect();
    let starts: Vec<f64> = (0..spec.bursts)
        .map(|_| rng.range(0.0, duration_ms - burst_len_ms))
        .collect();
    for i in 0..in_bursts {
        let start = starts[i % spec.bursts];
        times.push(start + rng.range(0.0, burst_len_ms));
    }
    times.sort_by(f64::total_cmp);
    times
        .into_iter()
        .enumerate()
        .map(|(id, at)| TraceRequest {
            id,
            at_ms: at as u64,
            tier: tier(&mut rng),
            budget_s: budget(&mut rng),
            prompt_words: 5 + (rng.next_u64() % 56) as u32,
        })
        .collect()
}
