//! Wiring: one function builds the actix application and its OpenAPI document
//! from the route crates, so routes and documentation can't disagree.

use std::path::PathBuf;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};
use scribe_http::extract::BodyLimit;
use scribe_http::fallback::{self, KnownRoutes};
use scribe_http::openapi::{ContractSchemaNames, SecuritySchemes};
use scribe_http::AppState;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
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
    let (app, mut document) = app
        .into_utoipa_app()
        .openapi(openapi)
        .service(
            utoipa_actix_web::scope("/api")
                .configure(scribe_client_routes::configure)
                .configure(scribe_runner_routes::configure)
                .configure(scribe_admin_routes::configure)
                .default_service(web::to(fallback::unmatched)),
        )
        .configure(probes::configure)
        .split_for_parts();
    ContractSchemaNames.modify(&mut document);
    (app, document)
}

/// The OpenAPI document, as `scribe openapi` prints and `/openapi.json` serves it.
pub fn openapi_document() -> OpenApiDoc {
    routes(App::new()).1
}

pub fn openapi_json(document: &OpenApiDoc) -> String {
    let mut json = document.to_pretty_json().unwrap_or_default();
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
    let app = app
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document.clone()))
        .service(web::redirect("/docs", "/docs/"))
        .service(Redoc::with_url("/redoc", document));
    let app = match client_path {
        Some(dir) => app.service(spa::service(dir)),
        None => app.default_service(web::to(fallback::unmatched)),
    };
    app.wrap(middleware::from_fn(
        scribe_http::middleware::normalize_errors,
    ))
    .wrap(middleware::from_fn(scribe_http::middleware::log_requests))
}
