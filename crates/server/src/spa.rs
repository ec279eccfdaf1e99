//! Serves a built single-page frontend (`client_path`) at `/`. Paths that are
//! not files fall back to `index.html` so client-side routes survive a reload;
//! `/api/*` never reaches this service (its scope answers 404 itself).

use std::path::PathBuf;

use actix_files::{Files, NamedFile};
use actix_web::dev::{fn_service, ServiceRequest, ServiceResponse};

pub fn service(dir: PathBuf) -> Files {
    let index = dir.join("index.html");
    Files::new("/", dir)
        .index_file("index.html")
        .default_handler(fn_service(move |req: ServiceRequest| {
            let index = index.clone();
            async move {
                let (req, _) = req.into_parts();
                let response = NamedFile::open_async(&index).await?.into_response(&req);
                Ok(ServiceResponse::new(req, response))
            }
        }))
}
