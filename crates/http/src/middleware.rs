//! Middleware applied to every request: a request id and one log line per
//! request, and the guarantee that no error leaves the server without one of
//! the two typed JSON bodies, including errors actix-web produces itself
//! (unknown route, wrong method) that never pass through a handler.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use rand::Rng;
use tracing::Instrument;

use crate::error::ApiError;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, also available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Tags the request with an id (a sane incoming `X-Request-Id` from a proxy is
/// kept so logs can be correlated), logs method, path, status and latency once
/// the response is known, and echoes the id in the response.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || format!("{:016x}", rand::rng().random::<u64>()),
            str::to_owned,
        );
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.path().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %request_id);

    let outcome = next.call(req).instrument(span.clone()).await;
    let status = match &outcome {
        Ok(response) => response.status().as_u16(),
        Err(err) => err.as_response_error().status_code().as_u16(),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status,
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            request_id = %request_id,
            "request"
        )
    });
    let mut response = outcome?.map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// Replaces any non-JSON error body by `ErrorResponse`, keeping status and headers
/// (such as `Allow` on a 405). Errors raised as `Err` by inner services are turned
/// into responses here so they pass through the same rule.
pub async fn normalize_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = match next.call(req).await {
        Ok(response) => response.map_into_boxed_body(),
        // Cloning the request up front to build a response here would break
        // actix's routing (it needs the only reference), so the error is
        // re-raised as an `ApiError` that renders itself as JSON instead.
        Err(err) => {
            let status = err.as_response_error().status_code();
            if err.as_error::<ApiError>().is_some() {
                return Err(err);
            }
            let detail = status.canonical_reason().unwrap_or("Error");
            return Err(ApiError::new(status, detail).into());
        }
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return Ok(response);
    }
    let detail = status.canonical_reason().unwrap_or("Error").to_owned();
    let (request, original) = response.into_parts();
    let mut replacement = ApiError::new(status, detail).error_response();
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, replacement))
}

fn is_json(response: &ServiceResponse<BoxBody>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"))
}

/// Rejects requests whose `Host` isn't in `web_server.allowed_hosts` (`*` allows
/// any host, `*.example.org` any subdomain), against DNS rebinding and host
/// header injection into generated links.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let allowed = req
        .app_data::<actix_web::web::Data<crate::AppState>>()
        .map(|state| state.domain.config.web_server.allowed_hosts.clone())
        .unwrap_or_default();
    if !allowed.is_empty() && !allowed.iter().any(|host| host == "*") {
        let raw_host = req
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or_default();
        let host = host_name(raw_host).to_ascii_lowercase();
        if !allowed.iter().any(|pattern| host_matches(pattern, &host)) {
            tracing::warn!(host = %host, "request for a host not in allowed_hosts");
            return Err(ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "Invalid host header",
            )
            .into());
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The name part of a `Host` header: without the port, IPv6 brackets removed.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => host.split(':').next().unwrap_or(host),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::{host_matches, host_name};

    #[test]
    fn ports_and_brackets_are_not_part_of_the_name() {
        assert_eq!(host_name("example.org:5000"), "example.org");
        assert_eq!(host_name("[::1]:5000"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(host_matches("scribe.example.org", "scribe.example.org"));
        assert!(host_matches("*.example.org", "a.example.org"));
        assert!(!host_matches("*.example.org", "example.org"));
        assert!(!host_matches("*.example.org", "evil-example.org"));
    }
}
