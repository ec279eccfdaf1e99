//! Extractors for JSON bodies, forms, query strings and path segments that
//! answer bad input the way Project-W (FastAPI) does: 422 with `loc` naming the
//! offending field, 413 past the size limit, 415 for a body of the wrong type.
//! actix-web's own extractors answer with plain-text 400s, which clients of
//! Project-W can't read, so route crates use these instead.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use scribe_domain::error::LocSegment;
use scribe_domain::Violation;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON or form body accepted, as app data; 1 MiB when not set.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

macro_rules! wrapper {
    ($name:ident) => {
        #[derive(Debug)]
        pub struct $name<T>(pub T);

        impl<T> $name<T> {
            pub fn into_inner(self) -> T {
                self.0
            }
        }

        impl<T> std::ops::Deref for $name<T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.0
            }
        }
    };
}

wrapper!(Json);
wrapper!(Form);
wrapper!(Query);
wrapper!(Path);

type BoxedExtraction<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = BoxedExtraction<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = content_type_is(req, |mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        let body = read_body(req, payload.take());
        Box::pin(async move {
            let bytes = body.await?;
            if bytes.is_empty() {
                return Err(missing_body());
            }
            if !is_json {
                return Err(unsupported_media_type("application/json"));
            }
            let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map(Json)
                .map_err(|err| {
                    let path = err.path().clone();
                    let inner = err.into_inner();
                    if inner.is_syntax() || inner.is_eof() {
                        ApiError::validation(vec![Violation::new(
                            [LocSegment::from("body"), LocSegment::Index(inner.column())],
                            "JSON decode error",
                            "json_invalid",
                        )])
                    } else {
                        ApiError::validation(vec![violation("body", &path, &inner.to_string())])
                    }
                })
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Form<T> {
    type Error = ApiError;
    type Future = BoxedExtraction<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_form = content_type_is(req, |mime| mime == "application/x-www-form-urlencoded");
        let has_content_type = req.headers().contains_key(header::CONTENT_TYPE);
        let body = read_body(req, payload.take());
        Box::pin(async move {
            let bytes = body.await?;
            if has_content_type && !is_form {
                return Err(unsupported_media_type("application/x-www-form-urlencoded"));
            }
            // An empty form is still a form: its required fields are reported missing.
            parse_urlencoded(&bytes, "body").map(Form)
        })
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_urlencoded(req.query_string().as_bytes(), "query").map(Query))
    }
}

impl<T: DeserializeOwned> FromRequest for Path<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let segments: Vec<(&str, &str)> = req.match_info().iter().collect();
        let encoded = serde_html_form::to_string(&segments).unwrap_or_default();
        ready(parse_urlencoded(encoded.as_bytes(), "path").map(Path))
    }
}

fn parse_urlencoded<T: DeserializeOwned>(bytes: &[u8], location: &str) -> Result<T, ApiError> {
    let deserializer = serde_html_form::Deserializer::from_bytes(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().clone();
        ApiError::validation(vec![violation(
            location,
            &path,
            &err.into_inner().to_string(),
        )])
    })
}

fn content_type_is(req: &HttpRequest, accept: impl Fn(&str) -> bool) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| accept(&mime.trim().to_ascii_lowercase()))
        .unwrap_or(false)
}

/// Reads the whole body, refusing (413) as soon as it passes the limit so an
/// oversized upload is never buffered.
fn read_body(req: &HttpRequest, mut payload: Payload) -> BoxedExtraction<Bytes> {
    let limit = req
        .app_data::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |limit| limit.0);
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    Box::pin(async move {
        if declared_length.is_some_and(|length| length > limit) {
            return Err(too_large(limit));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|err| {
                tracing::debug!(error = %err, "could not read request body");
                ApiError::new(StatusCode::BAD_REQUEST, "Could not read the request body")
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body too large: the limit is {limit} bytes"),
    )
}

fn unsupported_media_type(expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Unsupported media type: expected {expected}"),
    )
}

fn missing_body() -> ApiError {
    ApiError::validation(vec![Violation::new(
        [LocSegment::from("body")],
        "Field required",
        "missing",
    )])
}

/// Turns a serde error at `path` into a FastAPI-style violation. serde reports
/// a missing field at the struct that lacks it, so the field name is appended.
fn violation(location: &str, path: &serde_path_to_error::Path, message: &str) -> Violation {
    let mut loc = vec![LocSegment::from(location)];
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => loc.push(LocSegment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => loc.push(LocSegment::from(key.as_str())),
            serde_path_to_error::Segment::Enum { variant } => {
                loc.push(LocSegment::from(variant.as_str()))
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    if let Some(field) = quoted_name(message, "missing field `") {
        loc.push(LocSegment::from(field));
        return Violation::new(loc, "Field required", "missing");
    }
    if let Some(field) = quoted_name(message, "unknown field `") {
        // serde_path_to_error already records the unknown key as the last segment.
        if loc.last() != Some(&LocSegment::from(field)) {
            loc.push(LocSegment::from(field));
        }
        return Violation::new(loc, "Extra inputs are not permitted", "extra_forbidden");
    }
    let kind = if message.starts_with("unknown variant") {
        "enum"
    } else {
        "value_error"
    };
    Violation::new(loc, capitalise(message), kind)
}

fn quoted_name<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        nested: Nested,
    }

    #[derive(Debug, Deserialize)]
    struct Nested {
        #[allow(dead_code)]
        beam_size: u32,
    }

    #[derive(Debug, Deserialize)]
    struct Ids {
        job_ids: Vec<i64>,
    }

    fn violations(err: ApiError) -> serde_json::Value {
        use actix_web::body::MessageBody;
        use actix_web::ResponseError;
        let bytes = err.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["detail"].clone()
    }

    async fn json(body: &str, content_type: &str) -> Result<Json<Settings>, ApiError> {
        let (req, mut payload) = TestRequest::post()
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(body.to_owned())
            .to_http_parts();
        Json::<Settings>::from_request(&req, &mut payload).await
    }

    #[actix_web::test]
    async fn nested_type_errors_name_the_field() {
        let err = json(
            r#"{"name": "x", "nested": {"beam_size": "five"}}"#,
            "application/json",
        )
        .await
        .unwrap_err();
        let detail = violations(err);
        assert_eq!(
            detail[0]["loc"],
            serde_json::json!(["body", "nested", "beam_size"])
        );
    }

    #[actix_web::test]
    async fn missing_and_unknown_fields_are_named() {
        let detail = violations(
            json(r#"{"nested": {"beam_size": 1}}"#, "application/json")
                .await
                .unwrap_err(),
        );
        assert_eq!(detail[0]["loc"], serde_json::json!(["body", "name"]));
        assert_eq!(detail[0]["type"], "missing");
        let detail = violations(
            json(
                r#"{"name": "x", "nested": {"beam_size": 1}, "bogus": 1}"#,
                "application/json",
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(detail[0]["loc"], serde_json::json!(["body", "bogus"]));
    }

    #[actix_web::test]
    async fn malformed_json_and_wrong_media_type() {
        let detail = violations(json("{not json", "application/json").await.unwrap_err());
        assert_eq!(detail[0]["type"], "json_invalid");
        let err = json(r#"{"name": "x"}"#, "text/plain").await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[actix_web::test]
    async fn bodies_over_the_limit_are_refused() {
        let (req, mut payload) = TestRequest::post()
            .app_data(BodyLimit(8))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(r#"{"name": "longer than eight bytes"}"#)
            .to_http_parts();
        let err = Json::<Settings>::from_request(&req, &mut payload)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[actix_web::test]
    async fn repeated_query_keys_form_a_list_and_bad_items_are_located() {
        let req = TestRequest::get()
            .uri("/?job_ids=1&job_ids=2")
            .to_http_request();
        let ids = Query::<Ids>::extract(&req).await.unwrap();
        assert_eq!(ids.job_ids, vec![1, 2]);
        let req = TestRequest::get().uri("/?job_ids=x").to_http_request();
        let detail = violations(Query::<Ids>::extract(&req).await.unwrap_err());
        assert_eq!(detail[0]["loc"][0], "query");
        assert_eq!(detail[0]["loc"][1], "job_ids");
    }
}
