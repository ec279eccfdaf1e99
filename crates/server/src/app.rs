//! Wiring: one function builds the actix application and its OpenAPI document
//! from the route crates, so routes and documentation can't disagree.

use std::path::PathBuf;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};
use scribe_http::extract::BodyLimit;
use scribe_http::fallback::{self, KnownRoutes};
use scribe_http::openapi::{apply_contract_schema_names, SecuritySchemes};
use scribe_http::AppState;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

use crate::{probes, spa};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Scribe",
        description = "Self-hostable transcription backend, wire-compatible with Project-W v0.6.0.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(
        scribe_http::openapi::ErrorResponse,
        scribe_http::openapi::HttpValidationError,
        scribe_http::openapi::ValidationError,
    ))
)]
struct ApiDoc;

/// Registers every route on a (possibly state-less) app and returns the app
/// with the document describing exactly those routes.
fn routes<T>(app: App<T>) -> (App<T>, OpenApiDoc)
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    let mut openapi = ApiDoc::openapi();
    openapi.info.version = scribe_domain::VERSION.to_owned();
    app.into_utoipa_app()
        .openapi(openapi)
        .service(
            utoipa_actix_web::scope("/api")
                .configure(scribe_client_routes::configure)
                .configure(scribe_runner_routes::configure)
                .configure(scribe_admin_routes::configure)
                .default_service(web::to(fallback::unmatched)),
        )
        .configure(probes::configure)
        .split_for_parts()
}

/// The OpenAPI document, as `scribe openapi` prints and `/openapi.json` serves it.
pub fn openapi_document() -> OpenApiDoc {
    routes(App::new()).1
}

/// The document as served and committed: utoipa's rendering with the contract's
/// schema names applied.
pub fn openapi_value(document: &OpenApiDoc) -> serde_json::Value {
    let mut value = serde_json::to_value(document).unwrap_or_default();
    apply_contract_schema_names(&mut value);
    value
}

pub fn openapi_json(document: &OpenApiDoc) -> String {
    let mut json = serde_json::to_string_pretty(&openapi_value(document)).unwrap_or_default();
    json.push('\n');
    json
}

/// The complete application for one worker thread.
pub fn build(
    state: AppState,
    body_limit: usize,
    client_path: Option<PathBuf>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let app = App::new()
        .app_data(web::Data::new(state))
        .app_data(BodyLimit(body_limit));
    let (app, document) = routes(app);
    let app = app.app_data(web::Data::new(KnownRoutes::from_openapi(&document)));
    let rendered = openapi_value(&document);
    let served = web::Bytes::from(serde_json::to_vec(&rendered).unwrap_or_default());
    let app = app
        .route(
            "/openapi.json",
            web::get().to(move || {
                let served = served.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(served)
                }
            }),
        )
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        .service(web::redirect("/docs", "/docs/"))
        .service(Redoc::with_url("/redoc", rendered));
    let app = match client_path {
        Some(dir) => app.service(spa::service(dir)),
        None => app.default_service(web::to(fallback::unmatched)),
    };
    app.wrap(middleware::from_fn(scribe_http::auth::send_rotated_cookie))
        .wrap(middleware::from_fn(
            scribe_http::middleware::normalize_errors,
        ))
        .wrap(middleware::from_fn(scribe_http::middleware::check_host))
        .wrap(middleware::from_fn(scribe_http::middleware::log_requests))
}
