//! SPEC §3.8 `client_path`: a built frontend served at `/`, unknown non-API paths fall back
//! to `index.html` (the SPA routes them), `/api/*` stays the API with JSON 404s.

use std::path::Path;

use scribe_tests::serde_json::json;
use scribe_tests::*;

const INDEX: &str =
    "<!doctype html><html><body><div id=\"app\">scribe-spa-index</div></body></html>";
const SCRIPT: &str = "console.log('scribe-spa-script');";

fn write_client(dir: &Path) {
    std::fs::create_dir_all(dir.join("_app/immutable")).unwrap();
    std::fs::write(dir.join("index.html"), INDEX).unwrap();
    std::fs::write(dir.join("_app/immutable/start.js"), SCRIPT).unwrap();
    std::fs::write(dir.join("favicon.png"), [0x89, b'P', b'N', b'G']).unwrap();
}

async fn spawn_with_client(backend: Backend) -> TestApp {
    let setup = TestSetup::new(backend).await;
    let client = setup.dir.path().join("client");
    write_client(&client);
    setup
        .with_config(json!({ "client_path": client }))
        .spawn()
        .await
}

db_test!(
    async fn client_files_are_served_at_the_root(backend: Backend) {
        let app = spawn_with_client(backend).await;

        let response = app.get("/").await;
        assert!(
            content_type(&response).starts_with("text/html"),
            "{}",
            content_type(&response)
        );
        assert_eq!(text_body(response, 200).await, INDEX);

        let response = app.get("/_app/immutable/start.js").await;
        let ty = content_type(&response);
        assert!(ty.contains("javascript"), "start.js served as {ty}");
        assert_eq!(text_body(response, 200).await, SCRIPT);

        let response = app.get("/favicon.png").await;
        assert_eq!(content_type(&response), "image/png");
        assert_eq!(response.status(), 200);
    }
);

db_test!(
    async fn unknown_client_paths_fall_back_to_index_html(backend: Backend) {
        let app = spawn_with_client(backend).await;
        for path in [
            "/jobs",
            "/auth/local/reset-password",
            "/some/deep/route?x=1",
        ] {
            let response = app.get(path).await;
            assert!(content_type(&response).starts_with("text/html"), "{path}");
            assert_eq!(text_body(response, 200).await, INDEX, "{path}");
        }
    }
);

db_test!(
    async fn api_paths_stay_the_api_next_to_a_client(backend: Backend) {
        let app = spawn_with_client(backend).await;
        app.get_json("/api/about").await;
        assert_error(app.get("/api/unknown").await, 404).await;
        assert_error(app.get("/api/").await, 404).await;
        assert_error(app.post("/api/about").await, 405).await;
        // The docs keep working too.
        assert_eq!(app.get("/openapi.json").await.status(), 200);
        assert_eq!(app.get("/docs/").await.status(), 200);
    }
);

db_test!(
    /// The fallback must not leak files outside `client_path`.
    async fn path_traversal_stays_inside_the_client_dir(backend: Backend) {
        let app = spawn_with_client(backend).await;
        // The config (with the secret key) sits next to the client dir.
        let secret = app.setup.config["security"]["secret_key"]
            .as_str()
            .unwrap()
            .to_string();
        for path in [
            "/../scribe.yaml",
            "/%2e%2e/scribe.yaml",
            "/_app/../../scribe.yaml",
            "/_app/..%2f..%2fscribe.yaml",
            "/..%5cscribe.yaml",
        ] {
            let response = app
                .raw_http(&format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                ))
                .await;
            assert!(response.starts_with("HTTP/1.1 "), "{path}: {response}");
            assert!(
                !response.contains(&secret),
                "{path} leaked the config:\n{response}"
            );
            assert!(
                !response.contains("secret_key"),
                "{path} leaked the config:\n{response}"
            );
        }
    }
);
