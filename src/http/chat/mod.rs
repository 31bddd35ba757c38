//! The one chat pipeline every front door runs on.
//!
//! A request goes: load the live snapshot once → when `clients.json` is configured,
//! authenticate the client key from the headers ([`client_auth`]) → read the body (size
//! and time limits) → the door parses and validates it into a [`Chat`] → the client's
//! `allow` list and request limits → plan → admit against the client's budgets with the
//! plan's cost estimate → execute, or stream → record one completion event ([`record`]),
//! which settles the client's real cost → the door shapes the answer. A front door is
//! a [`Door`]: its wire types in, its answer and error shapes out; the `/llm/*` endpoints
//! ([`super::llm`]) and `/v1/chat/completions` ([`super::openai`]) are two doors, and a
//! third is one more file implementing the trait.

pub mod record;
pub mod stream;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bkvy_actors::{KeyModelId, Millis, Plan, Route, RouteError, RouteTarget, RoutingMethod};
use serde_json::{json, Value};

use super::body::read_limited;
use super::client_auth;
use super::error::ApiError;
use super::{names, WebState};
use crate::clients::Clients;
use crate::gateway::{self, Job, Success};
use crate::state::{AppState, Live};
use crate::types::{ChatMessage, ChatOptions, Tooling};
use record::{Call, Reply};
use stream::ChunkFormat;

/// Who is asking when the request does not say.
pub const ANONYMOUS: &str = "anonymous";

/// Shortest accepted `timeout_seconds`: one millisecond, the deadline's resolution.
const MIN_TIMEOUT_SECONDS: f64 = 0.001;

/// Longest accepted `client_id`.
const MAX_CLIENT_ID_LEN: usize = 256;

/// A chat request as every door hands it to the pipeline, after its own parsing.
#[derive(Debug, Clone)]
pub struct Chat {
    /// Where to route.
    pub target: RouteTarget,
    /// The conversation.
    pub messages: Arc<[ChatMessage]>,
    /// Generation options.
    pub options: ChatOptions,
    /// Tools and answer format (empty where the door has none).
    pub tooling: Arc<Tooling>,
    /// The wait budget (planning input).
    pub max_wait_seconds: Option<f64>,
    /// Lowers the hard deadline.
    pub timeout_seconds: Option<f64>,
    /// Who is asking (statistics), [`ANONYMOUS`] when nobody says.
    pub client_id: String,
    /// Whether the request itself named `client_id` (rather than the door deriving it):
    /// with client keys, a named one must be the key's client.
    pub client_id_declared: bool,
    /// Whether the answer is streamed.
    pub stream: bool,
}

/// The checks every door applies to the fields all chat requests share: client id, wait
/// budget, timeout, options. Each door calls it where its own order of checks puts it and
/// answers a failure in its own error shape.
pub fn check_shared(
    client_id: &str,
    max_wait_seconds: Option<f64>,
    timeout_seconds: Option<f64>,
    options: &ChatOptions,
) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::Invalid(m));
    let id = client_id;
    if id.len() > MAX_CLIENT_ID_LEN {
        return invalid(format!("client_id longer than {MAX_CLIENT_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return invalid("client_id must not contain control characters".into());
    }
    if max_wait_seconds.is_some_and(|w| !w.is_finite() || w < 0.0) {
        return invalid("max_wait_seconds must be a non-negative number".into());
    }
    match timeout_seconds {
        Some(t) if !t.is_finite() || t <= 0.0 => {
            return invalid("timeout_seconds must be a positive number".into())
        }
        // Anything shorter would be a deadline that has already passed.
        Some(t) if t < MIN_TIMEOUT_SECONDS => {
            return invalid(format!(
                "timeout_seconds must be at least {MIN_TIMEOUT_SECONDS}"
            ))
        }
        _ => {}
    }
    let o = options;
    let unit = |v: Option<f64>, name: &str, max: f64| match v {
        Some(x) if !(0.0..=max).contains(&x) => {
            invalid(format!("options.{name} must be between 0 and {max}"))
        }
        _ => Ok(()),
    };
    unit(o.temperature, "temperature", 2.0)?;
    unit(o.top_p, "top_p", 1.0)?;
    if o.max_tokens == Some(0) {
        return invalid("options.max_tokens must be at least 1".into());
    }
    if o.top_k == Some(0) {
        return invalid("options.top_k must be at least 1".into());
    }
    Ok(())
}

/// A door's refusal of a request, with what the door learned before refusing it.
pub struct Refused<R> {
    /// The refusal in the door's own error shape.
    pub error: R,
    /// The wait budget, when the body said (recorded in the statistics).
    pub max_wait_seconds: Option<f64>,
}

impl<R> From<R> for Refused<R> {
    fn from(error: R) -> Self {
        Self {
            error,
            max_wait_seconds: None,
        }
    }
}

/// What a door's refusal records in the completion event.
pub trait Refusal {
    /// The stable error code.
    fn code(&self) -> &str;
    /// What went wrong.
    fn message(&self) -> String;
}

impl Refusal for ApiError {
    fn code(&self) -> &str {
        ApiError::code(self)
    }

    fn message(&self) -> String {
        self.to_string()
    }
}

/// What a door knows of the request it answers.
pub struct Ctx<'a> {
    /// The request id (also in the `x-bkvy-request-id` header).
    pub request_id: &'a str,
    /// Arrival, Unix ms.
    pub started_ms: Millis,
    /// The shared state (clock, for the answer's timings).
    pub state: &'a AppState,
}

/// A front door: its wire format in, its answer and error shapes out.
pub trait Door {
    /// A refusal in the door's own error shape.
    type Refusal: Refusal;
    /// The routing method recorded until the body names a target.
    fn method(&self) -> RoutingMethod;
    /// Parses and validates the body (and headers) into a chat request.
    fn parse(
        &mut self,
        req: &HttpRequest,
        body: &[u8],
        max_messages: usize,
    ) -> Result<Chat, Refused<Self::Refusal>>;
    /// One of bkvy's own errors met before parsing (body too large or too slow) as this
    /// door's refusal.
    fn refusal(&self, e: &ApiError) -> Self::Refusal;
    /// The answer to a refused request.
    fn refuse(&self, ctx: &Ctx<'_>, e: &Self::Refusal) -> HttpResponse;
    /// The answer to a request that could not be served: no candidate (`plan` is `None`,
    /// `details` says why each candidate was left out) or every attempt failed (`details`
    /// lists the attempts).
    fn fail(
        &self,
        ctx: &Ctx<'_>,
        e: &ApiError,
        plan: Option<&Plan>,
        details: Option<Value>,
    ) -> HttpResponse;
    /// The body of a complete answer; `res` already carries bkvy's headers.
    fn answer(
        &self,
        ctx: &Ctx<'_>,
        plan: &Plan,
        s: &Success,
        res: HttpResponseBuilder,
    ) -> HttpResponse;
    /// The chunk format of a streamed answer from `id`.
    fn chunks(&self, ctx: &Ctx<'_>, id: &KeyModelId) -> Box<dyn ChunkFormat>;
}

/// Runs one request through the pipeline and emits exactly one completion event for it,
/// whatever the outcome (a streamed answer emits it when the stream ends).
pub async fn serve<D: Door>(
    mut door: D,
    req: &HttpRequest,
    state: &web::Data<AppState>,
    web: &WebState,
    clients: &Clients,
    payload: web::Payload,
) -> HttpResponse {
    // A request dropped before it ends (its client reset the connection) still emits its
    // event and settles its reservation: `Call`'s drop does both.
    let mut call = Call::begin(state, door.method());
    let reply = run(&mut door, req, state, web, clients, payload, &mut call).await;
    call.finish(reply)
}

async fn run<D: Door>(
    door: &mut D,
    req: &HttpRequest,
    state: &web::Data<AppState>,
    web: &WebState,
    clients: &Clients,
    payload: web::Payload,
    call: &mut Call,
) -> Reply {
    let request_id = call.event.request_id.clone();
    let ctx = Ctx {
        request_id: &request_id,
        started_ms: call.event.started_at,
        state,
    };
    let live = state.live();
    let refuse = |door: &D, call: &mut Call, e: ApiError| {
        let refusal = door.refusal(&e);
        call.error(refusal.code(), refusal.message());
        Reply::Done(door.refuse(&ctx, &refusal))
    };
    // A key is checked before the body is read: a caller without one costs no buffering.
    let client = match &live.upstreams.config.clients {
        Some(keys) => match client_auth::authenticate(req, keys) {
            Ok(c) => Some(c),
            Err(e) => return refuse(door, call, e),
        },
        None => None,
    };
    let mut body_len = 0;
    let parsed = match read_limited(req, payload, web).await {
        Ok(bytes) => {
            body_len = bytes.len();
            door.parse(req, &bytes, web.limits.max_messages)
        }
        Err(e) => Err(door.refusal(&e).into()),
    };
    let mut chat = match parsed {
        Ok(chat) => chat,
        Err(refused) => {
            call.event.max_wait_seconds = refused.max_wait_seconds.filter(|w| w.is_finite());
            call.error(refused.error.code(), refused.error.message());
            return Reply::Done(door.refuse(&ctx, &refused.error));
        }
    };
    if let Some(client) = client {
        call.event.client_id.clone_from(&client.name);
        if let Err(e) = client_auth::check_target(
            client,
            chat.client_id_declared.then_some(chat.client_id.as_str()),
            &chat.target,
        ) {
            return refuse(door, call, e);
        }
        chat.client_id.clone_from(&client.name);
        // With a budget, the estimate's output tokens are the call's ceiling.
        if client.daily_budget_usd.is_some() || client.monthly_budget_usd.is_some() {
            chat.options.max_tokens = Some(
                chat.options
                    .max_tokens
                    .unwrap_or(client_auth::DEFAULT_OUTPUT_TOKENS_ESTIMATE),
            );
        }
        let now = state.clock.now_ms();
        if let Err(r) = state.ledger.with(false, |l| l.check_rate(client, now)) {
            call.asked(&chat);
            return refuse(door, call, client_auth::refusal(&r));
        }
    }
    call.asked(&chat);
    let (plan, job) = match plan(state, &live, &chat, ctx.started_ms) {
        Ok(p) => p,
        Err(failure) => {
            let (e, considered) = *failure;
            call.error(e.code(), e.to_string());
            return Reply::Done(door.fail(&ctx, &e, None, considered));
        }
    };
    call.planned(&plan);
    if let Some(client) = client {
        let config = &live.upstreams.config;
        let estimate =
            client_auth::CostEstimate::new(config, &plan, body_len, chat.options.max_tokens);
        match client_auth::admit(
            &state.ledger,
            &state.clock,
            client,
            estimate,
            config.clone(),
        ) {
            Ok(r) => call.reservation = Some(r),
            Err(e) => return refuse(door, call, e),
        }
    }
    if chat.stream {
        return match gateway::execute_stream(&live.upstreams, clients, &plan, &job).await {
            Ok(answered) => {
                let id = answered.candidate.id().clone();
                let mut res = HttpResponse::Ok();
                // No cost header: the cost is known only at the end.
                answer_headers(&mut res, &request_id, &id, plan.decision_reason)
                    .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"));
                let body = stream::live_body(
                    answered,
                    door.chunks(&ctx, &id),
                    call.event.clone(),
                    state.clone(),
                    call.started,
                    call.reservation.take(),
                    stream::StreamLimits {
                        deadline_ms: job.deadline,
                        write_stall: web.limits.stream_write_stall,
                    },
                );
                Reply::Streaming(res.content_type("text/event-stream").streaming(body))
            }
            Err(failure) => {
                let e = call.failed(&failure);
                let attempts = json!(failure.attempts);
                Reply::Done(door.fail(&ctx, &e, Some(&plan), Some(attempts)))
            }
        };
    }
    match gateway::execute(&live.upstreams, clients, &plan, &job).await {
        Ok(success) => {
            call.succeeded(&success);
            let mut res = HttpResponse::Ok();
            answer_headers(
                &mut res,
                &request_id,
                success.candidate.id(),
                plan.decision_reason,
            )
            .insert_header((names::COST_USD, format!("{:.8}", success.cost_usd)));
            Reply::Done(door.answer(&ctx, &plan, &success, res))
        }
        Err(failure) => {
            let e = call.failed(&failure);
            let attempts = json!(failure.attempts);
            Reply::Done(door.fail(&ctx, &e, Some(&plan), Some(attempts)))
        }
    }
}

/// A routing failure: the error and, when every candidate was unavailable, why each was.
type RouteFailure = Box<(ApiError, Option<Value>)>;

fn secs_to_ms(s: f64) -> Millis {
    (s * 1000.0).min(1e15) as Millis
}

/// Plans the request on the snapshot `live` and fixes its deadline and budget, both
/// counted from its arrival at `started` (Unix ms).
fn plan(
    state: &AppState,
    live: &Live,
    chat: &Chat,
    started: Millis,
) -> Result<(Plan, Job), RouteFailure> {
    let settings = &live.upstreams.config.settings;
    let timeout_ms = chat
        .timeout_seconds
        .map_or(settings.request_timeout.as_millis() as Millis, secs_to_ms)
        .min(settings.request_timeout.as_millis() as Millis);
    let deadline = started + timeout_ms;
    let max_wait_ms = chat.max_wait_seconds.map_or(timeout_ms, secs_to_ms);
    let route = Route {
        target: chat.target.clone(),
        max_wait_ms,
        deadline,
    };
    // The choice is made here from the estimates the key/model actors publish: no round
    // trip on the request path.
    let plan = live
        .table
        .plan(&route, state.clock.now_ms())
        .map_err(|mut e| {
            // A candidate left out for its open circuit names the failure that opened it.
            let mut opened_on = None;
            if let RouteError::AllUnavailable { considered, .. } = &mut e {
                for c in considered.iter_mut() {
                    if !c.reason_not_chosen.contains("circuit open") {
                        continue;
                    }
                    let id = KeyModelId::new(&c.provider, &c.api_key, &c.model);
                    if let Some((_, last)) = live.upstreams.last_failures.get(&id) {
                        c.reason_not_chosen =
                            format!("{}; it opened on: {last}", c.reason_not_chosen);
                        opened_on.get_or_insert_with(|| {
                            format!("{}/{} (key {}): {last}", c.provider, c.model, c.api_key)
                        });
                    }
                }
            }
            let considered = match &e {
                RouteError::AllUnavailable { considered, .. } => Some(json!(considered)),
                _ => None,
            };
            let mut err = ApiError::from(e);
            if let (Some(why), ApiError::Unavailable { message, .. }) = (opened_on, &mut err) {
                message.push_str(&format!("; a circuit opened on {why}"));
            }
            Box::new((err, considered))
        })?;
    let job = Job {
        messages: chat.messages.clone(),
        options: chat.options.clone(),
        tooling: chat.tooling.clone(),
        deadline,
        budget_end: (started + max_wait_ms).min(deadline),
    };
    Ok((plan, job))
}

/// The `x-bkvy-*` headers every answer carries: request id, where it went and why.
pub fn answer_headers<'r>(
    res: &'r mut HttpResponseBuilder,
    request_id: &str,
    id: &KeyModelId,
    decision: &str,
) -> &'r mut HttpResponseBuilder {
    res.insert_header((names::REQUEST_ID, request_id))
        .insert_header((names::PROVIDER, id.provider.as_str()))
        .insert_header((names::MODEL, id.model.as_str()))
        .insert_header((names::DECISION, decision))
}
