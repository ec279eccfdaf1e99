//! Checks for the wire contract's two error shapes (SPEC §3) and its exact JSON content type.

use reqwest::header::CONTENT_TYPE;
use reqwest::Response;
use serde_json::Value;

/// SPEC §3: JSON responses carry exactly `application/json`, no charset (Project-W's runner
/// compares the header literally).
pub fn assert_json_content_type(response: &Response) {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<not text>").to_string());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{} {}: Content-Type must be exactly application/json",
        response.status(),
        response.url()
    );
}

/// The Content-Type header, or "" when absent.
pub fn content_type(response: &Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Asserts the status, then reads the body as text (shown in failures).
pub async fn text_body(response: Response, status: u16) -> String {
    let actual = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("read the response body");
    assert_eq!(actual, status, "{url}: unexpected status; body: {text}");
    text
}

/// Asserts the status and the exact JSON content type; returns the parsed body.
pub async fn json_body(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let url = response.url().clone();
    let content_type = content_type(&response);
    let text = response.text().await.expect("read the response body");
    assert_eq!(actual, status, "{url}: unexpected status; body: {text}");
    assert_eq!(
        content_type, "application/json",
        "{url}: Content-Type must be exactly application/json; body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: body is not JSON ({e}): {text}"))
}

/// An `ErrorResponse` with this status: `{"detail": "<non-empty string>"}` and nothing else,
/// as exactly `application/json`. Returns the detail.
pub async fn assert_error(response: Response, status: u16) -> String {
    let url = response.url().clone();
    let body = json_body(response, status).await;
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{url}: ErrorResponse must be an object: {body}"));
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        vec!["detail"],
        "{url}: ErrorResponse has exactly one key, detail: {body}"
    );
    let detail = object["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("{url}: ErrorResponse.detail must be a string: {body}"));
    assert!(!detail.trim().is_empty(), "{url}: empty detail: {body}");
    detail.to_string()
}

/// 413 as an `ErrorResponse`.
pub async fn assert_payload_too_large(response: Response) -> String {
    assert_error(response, 413).await
}

/// 415 as an `ErrorResponse`.
pub async fn assert_unsupported_media_type(response: Response) -> String {
    assert_error(response, 415).await
}

/// One item of an `HTTPValidationError`.
#[derive(Clone, Debug)]
pub struct ValidationItem {
    pub loc: Vec<Value>,
    pub msg: String,
    pub kind: String,
    pub raw: Value,
}

impl ValidationItem {
    /// `loc` as text, e.g. `body.settings.language` or `query.job_ids.0`.
    pub fn path(&self) -> String {
        self.loc
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A 422 `HTTPValidationError`: `{"detail": [{"loc": [str|int...], "msg": str, "type": str}]}`
/// with at least one item, as exactly `application/json`. Returns the items.
pub async fn assert_validation_error(response: Response) -> Vec<ValidationItem> {
    let url = response.url().clone();
    let body = json_body(response, 422).await;
    let detail = body
        .get("detail")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{url}: HTTPValidationError.detail must be a list: {body}"));
    assert!(
        !detail.is_empty(),
        "{url}: empty validation error list: {body}"
    );
    detail
        .iter()
        .map(|item| {
            let loc = item
                .get("loc")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{url}: item without a loc list: {item}"));
            assert!(
                !loc.is_empty()
                    && loc
                        .iter()
                        .all(|p| p.is_string() || p.is_i64() || p.is_u64()),
                "{url}: loc must be a non-empty list of strings and integers: {item}"
            );
            let msg = item
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{url}: item without a msg string: {item}"));
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{url}: item without a type string: {item}"));
            ValidationItem {
                loc: loc.clone(),
                msg: msg.to_string(),
                kind: kind.to_string(),
                raw: item.clone(),
            }
        })
        .collect()
}

/// A 422 with an item whose `loc` is `expected` (e.g. `["query", "job_id"]`).
pub async fn assert_validation_error_at(response: Response, expected: &[&str]) -> ValidationItem {
    let items = assert_validation_error(response).await;
    let wanted = expected.join(".");
    items
        .iter()
        .find(|item| item.path() == wanted)
        .cloned()
        .unwrap_or_else(|| {
            let got: Vec<String> = items.iter().map(ValidationItem::path).collect();
            panic!("no validation error at {wanted}; got {got:?}")
        })
}

/// `x-request-id` of a response; every response carries one.
pub fn request_id(response: &Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}: no x-request-id header", response.url()))
}
