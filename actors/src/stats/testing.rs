//! Sample events for the unit tests of this module.

use crate::events::RequestCompleted;
use crate::ids::{RoutingMethod, Tier};

/// 2024-03-01T12:00:00Z in Unix ms.
pub const DAY0: i64 = 1_709_294_400_000;

/// A varied, deterministic event: every third fails validation, the rest succeed.
pub fn event(i: u64) -> RequestCompleted {
    let method = [
        RoutingMethod::Intelligence,
        RoutingMethod::Scenario,
        RoutingMethod::Direct,
    ][(i % 3) as usize];
    let mut ev = RequestCompleted::new(
        DAY0 + (i as i64 % 5) * 86_400_000 + i as i64,
        format!("req-{i}"),
        format!("client-{}", i % 4),
        method,
    );
    ev.total_time_ms = (i % 7) as i64 * 10;
    match method {
        RoutingMethod::Intelligence => ev.intelligence_level = Some(Tier::ALL[(i % 3) as usize]),
        RoutingMethod::Scenario => ev.scenario = Some("support".into()),
        RoutingMethod::Direct => {
            ev.requested_provider = Some("openai".into());
            ev.requested_model = Some("gpt-4o".into());
        }
    }
    if i % 3 == 2 {
        ev.error_type = Some("invalid_request".into());
        ev.error_message = Some(format!("bad field {i}"));
        ev.http_status = 422;
    } else {
        ev.success = true;
        ev.http_status = 200;
        ev.provider_used = Some(["gemini", "openai"][(i % 2) as usize].into());
        ev.model_used = Some("m".into());
        ev.api_key_used = Some("k1".into());
        ev.queue_wait_ms = Some(0);
        ev.rate_limit_wait_ms = Some(i as i64 % 3);
        ev.input_tokens = Some(10 + i);
        ev.output_tokens = Some(20);
        ev.cost_usd = Some(0.000016 * (i % 4) as f64);
        ev.finish_reason = Some("stop".into());
        ev.decision_reason = Some("cheapest_within_estimate".into());
    }
    ev
}
