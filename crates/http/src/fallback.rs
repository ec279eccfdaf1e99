//! What to answer when no route matched. actix-web registers each documented
//! route with a method guard, so a known path with the wrong method would fall
//! through as 404; the OpenAPI document knows every path and its methods, so it
//! tells a 405 (with `Allow`) from a genuine 404.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::OpenApi;

use crate::error::ApiError;

#[derive(Debug, Clone, Default)]
pub struct KnownRoutes {
    routes: Vec<KnownRoute>,
}

#[derive(Debug, Clone)]
struct KnownRoute {
    /// `None` stands for a `{parameter}` segment, which matches anything.
    segments: Vec<Option<String>>,
    methods: Vec<&'static str>,
}

impl KnownRoutes {
    pub fn from_openapi(document: &OpenApi) -> Self {
        let routes = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods = Vec::new();
                let operations = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                for (method, present) in operations {
                    if present {
                        methods.push(method);
                    }
                }
                KnownRoute {
                    segments: path
                        .trim_matches('/')
                        .split('/')
                        .map(|segment| {
                            (!(segment.starts_with('{') && segment.ends_with('}')))
                                .then(|| segment.to_owned())
                        })
                        .collect(),
                    methods,
                }
            })
            .collect();
        KnownRoutes { routes }
    }

    fn methods_for(&self, path: &str) -> Option<&[&'static str]> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.routes
            .iter()
            .find(|route| {
                route.segments.len() == segments.len()
                    && route
                        .segments
                        .iter()
                        .zip(&segments)
                        .all(|(known, actual)| known.as_deref().is_none_or(|k| k == *actual))
            })
            .map(|route| route.methods.as_slice())
    }
}

/// The default service: 405 with `Allow` for a known path, else 404.
pub async fn unmatched(
    req: HttpRequest,
    known: Option<web::Data<KnownRoutes>>,
) -> Result<HttpResponse, ApiError> {
    let methods = known
        .as_ref()
        .and_then(|known| known.methods_for(req.path()));
    match methods {
        Some(methods) if !methods.is_empty() => {
            let allow = HeaderValue::from_str(&methods.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("GET"));
            Err(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
                    .with_header(header::ALLOW, allow),
            )
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not Found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder};

    #[test]
    fn templates_match_any_segment_value() {
        let document = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(
                        "/api/about",
                        PathItem::new(HttpMethod::Get, OperationBuilder::new()),
                    )
                    .path(
                        "/api/ldap/login/{idp_name}",
                        PathItem::new(HttpMethod::Post, OperationBuilder::new()),
                    ),
            )
            .build();
        let known = KnownRoutes::from_openapi(&document);
        assert_eq!(known.methods_for("/api/about"), Some(&["GET"][..]));
        assert_eq!(
            known.methods_for("/api/ldap/login/Corp"),
            Some(&["POST"][..])
        );
        assert_eq!(known.methods_for("/api/ldap/login"), None);
        assert_eq!(known.methods_for("/api/unknown"), None);
    }
}
