//! `web_server.allowed_hosts`: requests for other host names are refused.

use scribe_tests::serde_json::json;
use scribe_tests::*;

db_test!(
    async fn only_allowed_host_names_are_served(backend: Backend) {
        let app = spawn_app_with(
            backend,
            json!({"web_server": {"allowed_hosts": ["127.0.0.1", "*.example.org"]}}),
        )
        .await;
        json_body(app.get("/api/about").await, 200).await;
        let with_host = |host: &'static str| {
            app.request(reqwest::Method::GET, "/api/about")
                .header(reqwest::header::HOST, host)
                .send()
        };
        json_body(with_host("scribe.example.org").await.unwrap(), 200).await;
        let detail = assert_error(with_host("evil.test").await.unwrap(), 400).await;
        assert_eq!(detail, "Invalid host header");
        assert_error(with_host("example.org").await.unwrap(), 400).await;
    }
);
