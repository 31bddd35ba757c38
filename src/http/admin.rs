//! `POST /admin/reload`: re-read and apply the config (allow-listed addresses only).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, WebState};
use crate::reload::{self, ReloadError};

/// `POST /admin/reload`.
pub async fn reload(
    req: HttpRequest,
    state: web::Data<AppState>,
    web: web::Data<WebState>,
) -> Result<HttpResponse, ApiError> {
    super::require_admin(&req, &web)?;
    match reload::reload(&state).await {
        Ok(report) => Ok(HttpResponse::Ok().json(json!({
            "success": true,
            "message": "config reloaded",
            "added": report.added,
            "kept": report.kept,
            "removed": report.removed,
        }))),
        Err(ReloadError::Invalid(problems)) => {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Ok(HttpResponse::UnprocessableEntity().json(json!({
                "success": false,
                "error": ReloadError::Invalid(problems).to_string(),
                "error_code": "invalid_config",
                "problems": listed,
            })))
        }
        Err(e @ ReloadError::NoConfigDir) => Err(ApiError::Unavailable {
            code: "reload_unavailable",
            message: e.to_string(),
            retry_after_secs: None,
        }),
        Err(e @ ReloadError::Failed(_)) => Err(ApiError::Internal(e.to_string())),
    }
}
