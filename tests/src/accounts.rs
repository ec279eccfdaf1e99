//! Accounts for black-box tests: a server whose mail goes to an SMTP sink, users
//! signed up through the real mail flow, sessions from the login form, and
//! requests that authenticate with a Bearer token only.

use std::time::{Duration, Instant};

use reqwest::{header, Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};

use crate::smtp::{ReceivedMail, SmtpSink};
use crate::{assert_error, json_body, merge_json, spawn_app_with, Backend, TestApp};

/// Satisfies the password rule.
pub const PASSWORD: &str = "Correct-Horse-9-battery";
/// The base config's `client_url`: links in mails start with it.
pub const CLIENT_URL: &str = "http://localhost:5173/#";
pub const MAIL_WAIT: Duration = Duration::from_secs(20);

/// A server whose mail goes to a fresh SMTP sink; `extra` is merged over the config.
pub async fn app_with_mail(backend: Backend, extra: Value) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let mut config = json!({
        "smtp_server": {
            "hostname": "127.0.0.1",
            "port": sink.port(),
            "secure": "plain",
            "sender_email": "scribe@example.org"
        }
    });
    merge_json(&mut config, extra);
    (spawn_app_with(backend, config).await, sink)
}

/// A client without a cookie store, so only what a request carries authenticates it.
pub fn plain_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A request authenticated by `Authorization: Bearer <token>` alone.
pub fn bearer(app: &TestApp, method: Method, path: &str, token: &str) -> RequestBuilder {
    plain_client()
        .request(method, app.url(path))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
}

/// Sends a body-less request authenticated by `token` alone.
pub async fn send_as(app: &TestApp, method: Method, path: &str, token: &str) -> Response {
    bearer(app, method, path, token)
        .send()
        .await
        .expect("the request reaches the server")
}

/// The first mail to `address` whose subject contains `subject_part` (any case).
pub async fn mail_to(sink: &SmtpSink, address: &str, subject_part: &str) -> ReceivedMail {
    let address = address.to_owned();
    let subject_part = subject_part.to_lowercase();
    sink.wait_for(
        |mail| {
            mail.recipients
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&address))
                && mail.subject.to_lowercase().contains(&subject_part)
        },
        MAIL_WAIT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "no mail about {subject_part:?} to {address}; got {:?}",
            sink.messages()
        )
    })
}

pub fn activation_token(mail: &ReceivedMail) -> String {
    mail.token_after(&format!("{CLIENT_URL}/local/activate?token="))
        .unwrap_or_else(|| panic!("no activation link in: {}", mail.body))
}

/// The `token` cookie a response sets, with its attributes.
pub fn token_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("token="))
        .map(str::to_owned)
}

/// The value of a `token=...; attributes` cookie.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .trim_start_matches("token=")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub async fn signup(app: &TestApp, email: &str, password: &str) -> Response {
    app.post_json(
        "/api/local-account/signup",
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Posts the login form without cookies; `scope` "" or "admin".
pub async fn login_as(app: &TestApp, email: &str, password: &str, scope: &str) -> Response {
    plain_client()
        .post(app.url("/api/local-account/login"))
        .header(header::USER_AGENT, "blackbox-test")
        .form(&[
            ("username", email),
            ("password", password),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("the login request")
}

/// Logs in and returns the session token from `Set-Cookie`.
pub async fn session_token(app: &TestApp, email: &str, password: &str, scope: &str) -> String {
    let response = login_as(app, email, password, scope).await;
    let cookie = token_cookie(&response).expect("login sets the token cookie");
    json_body(response, 200).await;
    cookie_value(&cookie)
}

/// Signs up `email` with [`PASSWORD`] and follows the mailed activation link.
pub async fn signup_and_activate(app: &TestApp, sink: &SmtpSink, email: &str) {
    json_body(signup(app, email, PASSWORD).await, 200).await;
    let token = activation_token(&mail_to(sink, email, "activ").await);
    let response = app
        .post(&format!("/api/local-account/activate?token={token}"))
        .await;
    assert_eq!(json_body(response, 200).await, json!("Success"));
}

/// Signs up `email` (activated if `verified`) and returns a session token.
pub async fn user_session(app: &TestApp, sink: &SmtpSink, email: &str, verified: bool) -> String {
    if verified {
        signup_and_activate(app, sink, email).await;
    } else {
        json_body(signup(app, email, PASSWORD).await, 200).await;
    }
    session_token(app, email, PASSWORD, "").await
}

/// A request only admins may make: adds a site banner.
pub async fn add_banner(app: &TestApp, token: &str) -> Response {
    bearer(app, Method::POST, "/api/admins/add_site_banner", token)
        .json(&json!({"html": "admins were here", "urgency": 5}))
        .send()
        .await
        .expect("the add_site_banner request")
}

/// Waits until `token` stops authenticating, after a change made by another process
/// (`scribe revalidate-users`): on PostgreSQL it reaches the server's session cache at once
/// through NOTIFY; on SQLite the cache's time to live bounds the wait.
pub async fn assert_token_revoked(app: &TestApp, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = send_as(app, Method::GET, "/api/users/info", token).await;
        if response.status() == 401 {
            assert_eq!(
                assert_error(response, 401).await,
                "Could not validate token"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the token still works: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `token` no longer carries admin privileges (see [`assert_token_revoked`]).
pub async fn assert_admin_stripped(app: &TestApp, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = add_banner(app, token).await;
        if response.status() == 403 {
            assert_eq!(assert_error(response, 403).await, "Not enough permissions");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still admin: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `scribe revalidate-users` on the app's config and returns what it printed.
pub async fn revalidate(app: &TestApp) -> String {
    let output = app.setup.run(&["revalidate-users"]).await;
    output.assert_success().assert_no_panic();
    output.stdout
}
