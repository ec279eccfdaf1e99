//! SPEC §3: every error the framework produces is an `ErrorResponse` (or, for 422, an
//! `HTTPValidationError`) served as exactly `application/json`.
//!
//! 413, 415 and 422 need routes that take bodies or parameters; their checks
//! (`assert_payload_too_large`, `assert_unsupported_media_type`, `assert_validation_error_at`)
//! are in the harness, ready for the issues that add those routes.

use scribe_tests::reqwest::Method;
use scribe_tests::*;

db_test!(
    async fn unknown_api_route_is_404_error_response(app: TestApp) {
        for path in ["/api/unknown", "/api/jobs/nonexistent", "/api/about/extra"] {
            assert_error(app.get(path).await, 404).await;
        }
    }
);

db_test!(
    /// Without `client_path`, non-API paths are 404 in the same shape.
    async fn unknown_non_api_route_is_404_error_response(app: TestApp) {
        for path in ["/", "/unknown", "/static/app.js"] {
            assert_error(app.get(path).await, 404).await;
        }
    }
);

db_test!(
    async fn wrong_method_is_405_error_response(app: TestApp) {
        assert_error(app.post("/api/about").await, 405).await;
        assert_error(app.delete("/api/auth_settings").await, 405).await;
        let put = app.request(Method::PUT, "/api/about").send().await.unwrap();
        assert_error(put, 405).await;
    }
);

db_test!(
    /// A JSON body sent to a GET-only route is still a 405, not a body error.
    async fn wrong_method_with_a_body_is_405(app: TestApp) {
        let response = app
            .post_json("/api/about", &serde_json::json!({"x": 1}))
            .await;
        assert_error(response, 405).await;
    }
);

db_test!(
    /// Unknown query parameters are ignored (FastAPI does), and the answer stays JSON.
    async fn extra_query_parameters_are_ignored(app: TestApp) {
        let about = app.get_json("/api/about?unexpected=1&x").await;
        assert!(about.get("version").is_some());
    }
);

db_test!(
    /// Error responses carry a request id like any other.
    async fn errors_carry_a_request_id(app: TestApp) {
        let response = app.get("/api/unknown").await;
        assert!(!request_id(&response).is_empty());
        assert_error(response, 404).await;
    }
);
