//! Sending the trace to bkvy open loop: request *i* leaves at its trace time whatever
//! happened to the earlier ones (a slow answer never delays the next send), with at most
//! `max_in_flight` requests outstanding and a client timeout per request. Each answer is
//! read in bkvy's debug shape (`"debug": true`), which reports the provider, model and key
//! that answered, the decision, the measured waits, the failed attempts and the cost.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::trace::TraceRequest;

/// What one request got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The HTTP status; `None` when no answer came (timeout, connection error).
    pub status: Option<u16>,
    /// `error_code` of a failure, or the client's error.
    pub error: Option<String>,
    /// From sending to the end of the answer.
    pub elapsed_ms: f64,
    /// How late it was sent after its trace time (the in-flight cap or the timer).
    pub lag_ms: f64,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub key: Option<String>,
    pub decision: Option<String>,
    pub cost_usd: f64,
    pub rate_limit_wait_ms: f64,
    pub queue_wait_ms: f64,
    pub api_ms: f64,
    /// Failed tries before the answer (or all of them, for a failure), by `error_type`.
    pub attempts: Vec<String>,
    /// `usage.total_tokens` of an answer.
    pub tokens: Option<u64>,
}

/// The `/llm/intelligence` body of a trace request.
pub fn body(r: &TraceRequest) -> Value {
    json!({
        "client_id": "routing-bench",
        "intelligence_level": r.tier.name(),
        "max_wait_seconds": r.budget_s,
        "messages": [{"role": "user", "content": r.prompt()}],
        "debug": true,
    })
}

/// Reads a debug-shaped answer (success or failure) into an outcome.
pub fn read_answer(status: u16, body: &Value) -> Outcome {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let meta = &body["metadata"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let records = if status == 200 {
        &meta["attempts"]
    } else {
        &body["evaluated_combinations"]
    };
    let attempts = records
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| text(&x["error_type"]).unwrap_or_else(|| "unknown".to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        status: Some(status),
        error: (status != 200).then(|| {
            text(&body["error_code"])
                .or_else(|| text(&body["message"]))
                .unwrap_or_else(|| "unknown".to_owned())
        }),
        provider: text(&body["provider_used"]),
        model: text(&body["model_used"]),
        key: text(&body["api_key_used"]),
        decision: text(&body["decision_reason"]),
        cost_usd: num(&meta["cost_usd"]),
        rate_limit_wait_ms: num(&meta["rate_limit_wait_ms"]),
        queue_wait_ms: num(&meta["queue_wait_ms"]),
        api_ms: num(&meta["api_response_time_ms"]),
        attempts,
        tokens: body["response"]["usage"]["total_tokens"].as_u64(),
        ..Outcome::default()
    }
}

async fn send(client: &awc::Client, url: &str, r: &TraceRequest) -> Outcome {
    let started = Instant::now();
    let result = async {
        let mut res = client.post(url).send_json(&body(r)).await.map_err(|e| {
            if matches!(e, awc::error::SendRequestError::Timeout) {
                "client_timeout".to_owned()
            } else {
                format!("send: {e}")
            }
        })?;
        let bytes = res
            .body()
            .limit(16 << 20)
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((res.status().as_u16(), bytes))
    }
    .await;
    let mut out = match result {
        Ok((status, bytes)) => {
            let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            read_answer(status, &v)
        }
        Err(e) => Outcome {
            error: Some(e),
            ..Outcome::default()
        },
    };
    out.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    out
}

/// Sends every request of `trace` to `url` at its time; the outcomes in trace order.
pub async fn replay(
    url: &str,
    trace: &[TraceRequest],
    max_in_flight: usize,
    timeout: Duration,
) -> Vec<Outcome> {
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(max_in_flight)
                .timeout(Duration::from_secs(5)),
        )
        .timeout(timeout)
        .disable_redirects()
        .finish();
    let gate = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let url: Rc<str> = Rc::from(url);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(trace.len());
    for r in trace {
        let due = start + Duration::from_millis(r.at_ms);
        actix_web::rt::time::sleep_until(due.into()).await;
        let permit = Arc::clone(&gate).acquire_owned().await;
        let (client, url, r) = (client.clone(), Rc::clone(&url), r.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let lag_ms = due.elapsed().as_secs_f64() * 1e3;
            let mut out = send(&client, &url, &r).await;
            out.lag_ms = lag_ms;
            drop(permit);
            out
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|e| Outcome {
            error: Some(format!("task: {e}")),
            ..Outcome::default()
        }));
    }
    outcomes
}
