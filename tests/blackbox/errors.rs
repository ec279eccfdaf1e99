//! SPEC §3: every error the framework produces is an `ErrorResponse` (or, for 422, an
//! `HTTPValidationError`) served as exactly `application/json`.
//!
//! Body and query errors (413, 415, 422) are checked on the public routes that take a JSON
//! body (`local-account/signup`), a form (`local-account/login`) or a query parameter
//! (`local-account/request_password_reset`, `local-account/activate`): what is tested here is
//! the framework's mapping, the same for every route.

use scribe_tests::reqwest::Method;
use scribe_tests::serde_json::json;
use scribe_tests::*;

const SIGNUP: &str = "/api/local-account/signup";
const LOGIN: &str = "/api/local-account/login";
/// Small, so 413 needs no megabytes.
const BODY_LIMIT: usize = 4096;

async fn spawn_with_small_body_limit(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        json!({ "web_server": { "max_request_body_bytes": BODY_LIMIT } }),
    )
    .await
}

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

db_test!(
    /// Malformed JSON: 422 with `loc` starting at `body` (FastAPI: `["body", <offset>]`).
    async fn malformed_json_body_is_422(app: TestApp) {
        for body in [
            "{\"email\": ",
            "not json",
            "{\"email\": \"a@example.org\",}",
        ] {
            let response = app
                .post_bytes(SIGNUP, "application/json", body.as_bytes().to_vec())
                .await;
            let items = assert_validation_error(response).await;
            assert_eq!(items[0].loc[0], "body", "{body}: {:?}", items[0].raw);
        }
    }
);

db_test!(
    /// Missing and mistyped fields: one item per problem, `loc` naming the field.
    async fn invalid_json_fields_are_422_naming_the_field(app: TestApp) {
        let response = app
            .post_json(SIGNUP, &json!({ "email": "someone@example.org" }))
            .await;
        let item = assert_validation_error_at(response, &["body", "password"]).await;
        assert_eq!(item.kind, "missing", "{:?}", item.raw);

        let response = app
            .post_json(
                SIGNUP,
                &json!({ "email": 5, "password": "Secret-Passw0rd!" }),
            )
            .await;
        assert_validation_error_at(response, &["body", "email"]).await;

        // Not an object at all.
        let response = app.post_json(SIGNUP, &json!([1, 2])).await;
        let items = assert_validation_error(response).await;
        assert_eq!(items[0].loc[0], "body", "{:?}", items[0].raw);
    }
);

db_test!(
    async fn missing_form_field_is_422_naming_the_field(app: TestApp) {
        let response = app
            .post_form(LOGIN, &[("username", "someone@example.org")])
            .await;
        assert_validation_error_at(response, &["body", "password"]).await;
    }
);

db_test!(
    async fn missing_query_parameter_is_422_naming_it(app: TestApp) {
        let response = app.get("/api/local-account/request_password_reset").await;
        assert_validation_error_at(response, &["query", "email"]).await;
        let response = app.post("/api/local-account/activate").await;
        assert_validation_error_at(response, &["query", "token"]).await;
    }
);

db_test!(
    /// A body in the wrong format is 415 `ErrorResponse`, whichever format the route wants.
    async fn wrong_body_media_type_is_415(app: TestApp) {
        let json_body = br#"{"email": "someone@example.org", "password": "Secret-Passw0rd!"}"#;
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
        ] {
            let response = app
                .post_bytes(SIGNUP, content_type, json_body.to_vec())
                .await;
            assert_unsupported_media_type(response).await;
        }
        // No Content-Type at all.
        let response = app
            .request(Method::POST, SIGNUP)
            .body(json_body.to_vec())
            .send()
            .await
            .unwrap();
        assert_unsupported_media_type(response).await;

        let response = app
            .post_json(
                LOGIN,
                &json!({ "username": "a@example.org", "password": "x" }),
            )
            .await;
        assert_unsupported_media_type(response).await;
    }
);

db_test!(
    /// Bodies over `web_server.max_request_body_bytes` are 413 `ErrorResponse`, whether the
    /// length is announced (Content-Length) or not (chunked).
    async fn oversized_bodies_are_413(backend: Backend) {
        let app = spawn_with_small_body_limit(backend).await;
        let big_json = serde_json::to_vec(&json!({
            "email": "someone@example.org",
            "password": "x".repeat(BODY_LIMIT * 2),
        }))
        .unwrap();
        let response = app
            .post_bytes(SIGNUP, "application/json", big_json.clone())
            .await;
        assert_payload_too_large(response).await;

        // Chunked: the server only finds out while reading.
        let mut request = format!(
            "POST {SIGNUP} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        for chunk in big_json.chunks(1000) {
            request.push_str(&format!(
                "{:x}\r\n{}\r\n",
                chunk.len(),
                String::from_utf8_lossy(chunk)
            ));
        }
        request.push_str("0\r\n\r\n");
        let response = app.raw_http(&request).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(
            response
                .to_lowercase()
                .contains("\r\ncontent-type: application/json\r\n"),
            "{response}"
        );

        let password = "x".repeat(BODY_LIMIT * 2);
        let response = app
            .post_form(
                LOGIN,
                &[("username", "a@example.org"), ("password", &password)],
            )
            .await;
        assert_payload_too_large(response).await;

        // A body under the limit still gets through to validation.
        let response = app
            .post_json(SIGNUP, &json!({ "email": "a@example.org" }))
            .await;
        assert_validation_error_at(response, &["body", "password"]).await;
    }
);

/// One request's answer must be a client error in one of the two typed shapes (or a
/// success), never a 5xx.
async fn assert_client_error_shape(what: &str, response: reqwest::Response) {
    let status = response.status().as_u16();
    assert!(status < 500, "{what}: {status}");
    if status == 422 {
        assert_validation_error(response).await;
    } else if status >= 400 {
        assert_error(response, status).await;
    }
}

db_test!(
    /// SPEC §5: never a 500 for something a client sent. Every operation in the served
    /// document gets, without credentials: no body, a malformed JSON body, a body of the
    /// wrong type, and nonsense in each query parameter. The answers are typed client errors.
    async fn no_operation_answers_nonsense_with_a_server_error(app: TestApp) {
        let doc = app.get_json("/openapi.json").await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            // Path parameters get a value no route knows.
            let concrete: String = path
                .split('/')
                .map(|part| {
                    if part.starts_with('{') {
                        "no-such-thing"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            for (method, operation) in item.as_object().unwrap() {
                let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                    continue; // `parameters`, `summary`...
                };
                if !path.starts_with("/api/") {
                    continue;
                }
                let query: Vec<(String, &str)> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .map(|p| (p["name"].as_str().unwrap().to_string(), "%%nonsense%%"))
                    .collect();
                let url = app.url(&concrete);
                let what = |case: &str| format!("{method} {concrete} ({case})");
                let requests = [
                    ("no body", client.request(method.clone(), &url)),
                    (
                        "malformed JSON",
                        client
                            .request(method.clone(), &url)
                            .header("content-type", "application/json")
                            .body("{\"unterminated"),
                    ),
                    (
                        "wrong JSON type",
                        client
                            .request(method.clone(), &url)
                            .json(&json!([[], null, 1.5])),
                    ),
                    (
                        "form garbage",
                        client
                            .request(method.clone(), &url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body("%%%&&&==="),
                    ),
                    (
                        "query nonsense",
                        client.request(method.clone(), &url).query(&query),
                    ),
                ];
                for (case, request) in requests {
                    let response = request.send().await.unwrap();
                    assert_client_error_shape(&what(case), response).await;
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 10,
            "only {checked} requests: is /openapi.json complete?"
        );
        assert!(
            !app.logs().dump().contains("panicked"),
            "{}",
            app.logs().dump()
        );
    }
);
