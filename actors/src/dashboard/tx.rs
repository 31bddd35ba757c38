//! One transaction as the dashboard keeps it: the columns it shows, from a live
//! [`RequestCompleted`] or from a row of the transaction CSV written by the stats module
//! (same column order, [`csv_log::COLUMNS`]), so live and loaded history look the same.

use serde::Serialize;

use super::range::parse_instant;
use crate::clock::Millis;
use crate::events::RequestCompleted;
use crate::stats::csv_log::{self, unescape_cell};

/// The index of a column in [`csv_log::COLUMNS`], at compile time (a missing name does
/// not compile), so reading a million rows does no name look-ups.
const fn col(name: &str) -> usize {
    let mut i = 0;
    while i < csv_log::COLUMNS.len() {
        let c = csv_log::COLUMNS[i].as_bytes();
        let n = name.as_bytes();
        if c.len() == n.len() {
            let mut j = 0;
            while j < c.len() && c[j] == n[j] {
                j += 1;
            }
            if j == c.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no such transaction-log column")
}

/// Longest error message kept (the CSV keeps 500 characters too).
const MAX_MESSAGE_CHARS: usize = 500;

/// One finished request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tx {
    /// Arrival time, Unix ms.
    pub at_ms: Millis,
    /// Request id.
    pub request_id: String,
    /// The caller's `client_id`.
    pub client_id: String,
    /// `intelligence`, `scenario` or `direct`.
    pub routing_method: String,
    /// Requested level (intelligence mode).
    pub intelligence_level: Option<String>,
    /// The caller's wait budget.
    pub max_wait_seconds: Option<f64>,
    /// Whether an answer was returned.
    pub success: bool,
    /// Provider that answered, else the requested one (direct mode).
    pub provider: Option<String>,
    /// Model that answered, else the requested one (direct mode).
    pub model: Option<String>,
    /// Key id that answered.
    pub api_key: Option<String>,
    /// Wall time, ms.
    pub total_time_ms: Millis,
    /// Cost in USD.
    pub cost: Option<f64>,
    /// Tokens in.
    pub input_tokens: Option<u64>,
    /// Tokens out.
    pub output_tokens: Option<u64>,
    /// Error code (failures).
    pub error_type: Option<String>,
    /// Error message (failures).
    pub error_message: Option<String>,
}

impl Tx {
    /// From a live event.
    pub fn from_event(ev: &RequestCompleted) -> Self {
        Self {
            at_ms: ev.started_at,
            request_id: ev.request_id.clone(),
            client_id: ev.client_id.clone(),
            routing_method: ev.routing_method.as_str().to_owned(),
            intelligence_level: ev.intelligence_level.map(|t| t.as_str().to_owned()),
            max_wait_seconds: ev.max_wait_seconds,
            success: ev.success,
            provider: ev
                .provider_used
                .clone()
                .or_else(|| ev.requested_provider.clone()),
            model: ev.model_used.clone().or_else(|| ev.requested_model.clone()),
            api_key: ev.api_key_used.clone(),
            total_time_ms: ev.total_time_ms,
            cost: ev.cost_usd,
            input_tokens: ev.input_tokens,
            output_tokens: ev.output_tokens,
            error_type: ev.error_type.clone(),
            error_message: ev
                .error_message
                .as_deref()
                .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect()),
        }
    }

    /// Whether a provider answered (successful calls only).
    pub fn answered(&self) -> bool {
        self.success && self.provider.is_some()
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.unwrap_or(0) + self.output_tokens.unwrap_or(0)
    }

    /// From one CSV record in [`csv_log::COLUMNS`] order; `None` when it is not a valid row.
    pub fn from_record(rec: &csv::StringRecord) -> Option<Self> {
        if rec.len() != csv_log::COLUMNS.len() {
            return None;
        }
        let cell = |i: usize| -> Option<&str> {
            let s = unescape_cell(rec.get(i)?);
            (!s.is_empty()).then_some(s)
        };
        let text = |i: usize| cell(i).map(str::to_owned);
        let num = |i: usize| -> Option<Option<f64>> {
            match cell(i) {
                None => Some(None),
                Some(s) => s.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some),
            }
        };
        let int = |i: usize| -> Option<Option<u64>> {
            match cell(i) {
                None => Some(None),
                Some(s) => s.parse::<u64>().ok().map(Some),
            }
        };
        let success = match cell(const { col("success") })? {
            "True" | "true" => true,
            "False" | "false" => false,
            _ => return None,
        };
        let used_or_requested =
            |used: usize, requested: usize| text(used).or_else(|| text(requested));
        Some(Self {
            at_ms: parse_instant(cell(const { col("timestamp") })?).ok()?,
            request_id: text(const { col("request_id") }).unwrap_or_default(),
            client_id: text(const { col("client_id") }).unwrap_or_default(),
            routing_method: text(const { col("routing_method") })?,
            intelligence_level: text(const { col("intelligence_level") }),
            max_wait_seconds: num(const { col("max_wait_seconds") })?,
            success,
            provider: used_or_requested(
                const { col("provider_used") },
                const { col("requested_provider") },
            ),
            model: used_or_requested(
                const { col("model_used") },
                const { col("requested_model") },
            ),
            api_key: text(const { col("api_key_used") }),
            total_time_ms: num(const { col("total_time_ms") })?.unwrap_or(0.0) as Millis,
            cost: num(const { col("cost_estimate") })?,
            input_tokens: int(const { col("input_tokens") })?,
            output_tokens: int(const { col("output_tokens") })?,
            error_type: text(const { col("error_type") }),
            error_message: text(const { col("error_message") }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RoutingMethod, Tier};
    use crate::stats::csv_log;

    #[test]
    fn a_csv_row_reads_back_as_the_event_it_came_from() {
        let mut ev = RequestCompleted::new(
            1_700_000_000_123,
            "r1".into(),
            "=cmd".into(),
            RoutingMethod::Intelligence,
        );
        ev.intelligence_level = Some(Tier::Low);
        ev.max_wait_seconds = Some(30.0);
        ev.success = true;
        ev.provider_used = Some("openai".into());
        ev.model_used = Some("gpt-4o-mini".into());
        ev.api_key_used = Some("oa1".into());
        ev.total_time_ms = 420;
        ev.input_tokens = Some(10);
        ev.output_tokens = Some(5);
        ev.cost_usd = Some(1.6e-05);
        let cells = csv_log::row(&ev);
        let rec = csv::StringRecord::from(cells.to_vec());
        assert_eq!(Tx::from_record(&rec), Some(Tx::from_event(&ev)));
    }

    #[test]
    fn broken_rows_are_refused() {
        let short = csv::StringRecord::from(vec!["x"; 5]);
        assert_eq!(Tx::from_record(&short), None);
        let mut cells = vec![""; 25];
        cells[0] = "not a time";
        cells[3] = "direct";
        cells[9] = "True";
        assert_eq!(Tx::from_record(&csv::StringRecord::from(cells)), None);
    }
}
