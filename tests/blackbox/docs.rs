//! SPEC §3.8: OpenAPI at `/openapi.json`, Swagger UI at `/docs`, Redoc at `/redoc`.

use scribe_tests::serde_json::Value;
use scribe_tests::*;

db_test!(
    async fn openapi_json_is_openapi_3_1_with_the_general_routes(app: TestApp) {
        let doc = app.get_json("/openapi.json").await;
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1."), "openapi: {version:?}");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, operation) in [
            ("/api/about", "general-about"),
            ("/api/auth_settings", "general-auth_settings"),
        ] {
            assert_eq!(
                paths[path]["get"]["operationId"], operation,
                "{path} in /openapi.json"
            );
        }
    }
);

db_test!(
    /// The served document is the one `scribe openapi` prints (and `--check` compares with
    /// the committed file), so what clients download is what is reviewed.
    async fn served_openapi_equals_the_cli_output(app: TestApp) {
        let served = app.get_json("/openapi.json").await;
        let printed = run_scribe(&["openapi"], &[]).await;
        printed.assert_success();
        let printed: Value = serde_json::from_str(&printed.stdout)
            .unwrap_or_else(|e| panic!("`scribe openapi` prints JSON: {e}\n{printed}"));
        assert!(
            served == printed,
            "GET /openapi.json differs from `scribe openapi`"
        );
    }
);

db_test!(
    async fn swagger_ui_is_served_at_docs(app: TestApp) {
        // `/docs` may redirect to `/docs/`; the client follows.
        for path in ["/docs", "/docs/"] {
            let response = app.get(path).await;
            assert!(
                content_type(&response).starts_with("text/html"),
                "{path}: {}",
                content_type(&response)
            );
            let html = text_body(response, 200).await;
            assert!(
                html.to_lowercase().contains("swagger"),
                "{path} is Swagger UI:\n{html}"
            );
        }
    }
);

db_test!(
    /// Swagger UI's assets are vendored (no internet at build or run time) and it loads
    /// our document.
    async fn swagger_ui_assets_are_served(app: TestApp) {
        let html = text_body(app.get("/docs/").await, 200).await;
        for asset in ["swagger-ui.css", "swagger-ui-bundle.js"] {
            assert!(html.contains(asset), "/docs/ references {asset}:\n{html}");
            let response = app.get(&format!("/docs/{asset}")).await;
            assert_eq!(response.status(), 200, "/docs/{asset}");
        }
        let initializer = app.get("/docs/swagger-initializer.js").await;
        if initializer.status() == 200 {
            let js = initializer.text().await.unwrap();
            assert!(
                js.contains("/openapi.json"),
                "Swagger UI loads /openapi.json:\n{js}"
            );
        } else {
            assert!(
                html.contains("/openapi.json"),
                "Swagger UI loads /openapi.json:\n{html}"
            );
        }
    }
);

db_test!(
    async fn redoc_is_served(app: TestApp) {
        let response = app.get("/redoc").await;
        assert!(
            content_type(&response).starts_with("text/html"),
            "/redoc: {}",
            content_type(&response)
        );
        let html = text_body(response, 200).await;
        assert!(
            html.to_lowercase().contains("redoc"),
            "/redoc is Redoc:\n{html}"
        );
    }
);
