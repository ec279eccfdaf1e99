//! `web_server.ssl`: HTTPS with a PEM certificate and key (here a throwaway
//! self-signed pair from the openssl command line tool).

use std::process::Command;

use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

db_test!(
    async fn https_is_served_with_the_configured_certificate(backend: Backend) {
        let dir = scribe_tests::tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command line tool is required for this test");
        assert!(status.status.success(), "openssl failed: {status:?}");

        let app = spawn_app_with(
            backend,
            json!({"web_server": {"no_https": false, "ssl": {
                "cert_file": cert.to_str().unwrap(),
                "key_file": key.to_str().unwrap()
            }}}),
        )
        .await;
        let url = format!("https://{}/api/about", app.address);
        let output = tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--insecure", "--include", &url])
            .output()
            .await
            .expect("curl is required for this test");
        let response = String::from_utf8_lossy(&output.stdout);
        assert!(
            response.starts_with("HTTP/"),
            "{response} {:?}",
            output.stderr
        );
        assert!(response.contains(" 200"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let about: Value = scribe_tests::serde_json::from_str(body).unwrap();
        assert!(about["version"].is_string());
        // Plain HTTP on the TLS port gets no answer as HTTP.
        let plain = tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--max-time",
                "5",
                &format!("http://{}/api/about", app.address),
            ])
            .output()
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&plain.stdout).contains("version"));
    }
);

#[tokio::test]
async fn an_unreadable_certificate_stops_start_up_with_a_message() {
    let setup = TestSetup::new(Backend::Sqlite).await.with_config(json!({
        "web_server": {"no_https": false, "ssl": {"cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"}}
    }));
    let output = setup.run(&["serve"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output.stderr.contains("web_server.ssl.cert_file"),
        "{}",
        output.stderr
    );
}
