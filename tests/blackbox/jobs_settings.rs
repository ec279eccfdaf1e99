//! Issue 5, job settings over real HTTP (SPEC §3.5, §3.10): `submit_settings` and
//! `default_settings` with users signed up through the real mail flow, on SQLite and on
//! PostgreSQL. Every refused request is checked to have stored nothing.

use scribe_tests::accounts::*;
use scribe_tests::reqwest::{header, Method};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

async fn submit(
    app: &TestApp,
    token: &str,
    query: &str,
    body: &Value,
) -> scribe_tests::reqwest::Response {
    bearer(
        app,
        Method::POST,
        &format!("/api/jobs/submit_settings{query}"),
        token,
    )
    .json(body)
    .send()
    .await
    .unwrap()
}

async fn defaults_of(app: &TestApp, token: &str) -> Value {
    json_body(
        bearer(app, Method::GET, "/api/jobs/default_settings", token)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await
}

async fn stored_settings(app: &TestApp) -> (i64, i64) {
    (
        app.db()
            .scalar_i64("SELECT COUNT(*) FROM job_settings")
            .await,
        app.db()
            .scalar_i64("SELECT COUNT(*) FROM default_job_settings")
            .await,
    )
}

/// Project-W's `JobSettingsRequest()`, as its `default_settings` answers it.
fn application_defaults() -> Value {
    json!({
        "task": "transcribe",
        "model": "large",
        "language": null,
        "alignment": {
            "processing": {"highlight_words": false, "max_line_count": null, "max_line_width": null},
            "return_char_alignments": false,
            "interpolate_method": "nearest"
        },
        "diarization": null,
        "vad_settings": {"vad_onset": 0.5, "vad_offset": 0.363, "chunk_size": 30},
        "asr_settings": {
            "beam_size": 5,
            "patience": 1.0,
            "length_penalty": 1.0,
            "temperature": 0.0,
            "temperature_increment_on_fallback": 0.2,
            "compression_ratio_threshold": 2.4,
            "log_prob_threshold": -1.0,
            "no_speech_threshold": 0.6,
            "initial_prompt": null,
            "suppress_tokens": [-1],
            "suppress_numerals": false
        },
        "email_notification": false
    })
}

db_test!(
    async fn defaults_round_trip_and_a_new_default_replaces_them(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;
        let bob = user_session(&app, &sink, "bob@example.org", true).await;

        assert_eq!(defaults_of(&app, &alice).await, application_defaults());

        // Everything left out: the defaults are stored, and nothing becomes a default.
        let first = json_body(submit(&app, &alice, "", &json!({})).await, 200).await;
        assert!(first.is_i64(), "settings id: {first}");
        assert_eq!(stored_settings(&app).await, (1, 0));
        assert_eq!(defaults_of(&app, &alice).await, application_defaults());

        let chosen = json!({
            "language": "de",
            "model": "turbo",
            "diarization": {"min_speakers": 2, "max_speakers": 4},
            "asr_settings": {
                "beam_size": 3, "patience": 2, "length_penalty": 0.5, "temperature": 0.1,
                "temperature_increment_on_fallback": 0, "compression_ratio_threshold": 3,
                "log_prob_threshold": -2, "no_speech_threshold": 0.5,
                "initial_prompt": "Ein Vortrag über Whisper.",
                "suppress_tokens": [-1, 42], "suppress_numerals": true
            },
            "email_notification": true
        });
        let second = json_body(
            submit(&app, &alice, "?is_new_default=true", &chosen).await,
            200,
        )
        .await;
        assert_ne!(second, first);
        let mut expected = application_defaults();
        merge_json(&mut expected, chosen.clone());
        // merge_json merges objects key by key; these were sent whole.
        expected["asr_settings"] = json!({
            "beam_size": 3, "patience": 2.0, "length_penalty": 0.5, "temperature": 0.1,
            "temperature_increment_on_fallback": 0.0, "compression_ratio_threshold": 3.0,
            "log_prob_threshold": -2.0, "no_speech_threshold": 0.5,
            "initial_prompt": "Ein Vortrag über Whisper.",
            "suppress_tokens": [-1, 42], "suppress_numerals": true
        });
        assert_eq!(defaults_of(&app, &alice).await, expected);
        // Only Alice's default changed.
        assert_eq!(defaults_of(&app, &bob).await, application_defaults());

        // `is_new_default=false` leaves the default alone; a later default replaces it.
        json_body(
            submit(
                &app,
                &alice,
                "?is_new_default=false",
                &json!({"language": "fr"}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(defaults_of(&app, &alice).await, expected);
        let english = json!({"model": "small.en", "language": "en", "alignment": null});
        json_body(
            submit(&app, &alice, "?is_new_default=true", &english).await,
            200,
        )
        .await;
        let now = defaults_of(&app, &alice).await;
        assert_eq!(now["model"], "small.en");
        assert_eq!(now["alignment"], Value::Null);
        assert_eq!(now["asr_settings"], application_defaults()["asr_settings"]);
        assert_eq!(stored_settings(&app).await, (4, 1));

        // Deleting the account deletes its settings and its default.
        json_body(
            bearer(&app, Method::DELETE, "/api/users/delete", &alice)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        assert_eq!(stored_settings(&app).await, (0, 0));
    }
);

db_test!(
    async fn every_rule_is_a_422_at_its_field_and_stores_nothing(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;

        let asr = |field: &str, value: Value| {
            let mut asr = application_defaults()["asr_settings"].clone();
            asr[field] = value;
            json!({"asr_settings": asr})
        };
        let vad = |field: &str, value: Value| {
            let mut vad = application_defaults()["vad_settings"].clone();
            vad[field] = value;
            json!({"vad_settings": vad})
        };
        let lines = |count: Value, width: Value| {
            json!({"alignment": {
                "processing": {"highlight_words": true, "max_line_count": count, "max_line_width": width},
                "return_char_alignments": false,
                "interpolate_method": "nearest"
            }})
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            // SPEC §3.10: the rules see the defaults, and the default alignment is on.
            (
                json!({"task": "translate"}),
                "body",
                "Alignment not supported",
            ),
            (
                json!({"language": "af"}),
                "body",
                "not supported for alignment",
            ),
            (
                json!({"model": "tiny.en"}),
                "body",
                "set the language to 'en'",
            ),
            (
                json!({"model": "medium.en", "language": "de", "alignment": null}),
                "body",
                "set the language to 'en'",
            ),
            (
                json!({"task": "translate", "language": "en", "alignment": null}),
                "body",
                "Cannot translate English into English",
            ),
            (
                json!({"diarization": {"min_speakers": 3, "max_speakers": 1}}),
                "body.diarization",
                "max_speakers can't be smaller than min_speakers",
            ),
            (
                lines(json!(2), Value::Null),
                "body.alignment.processing",
                "max_line_width can't be None",
            ),
            (
                lines(json!(0), json!(10)),
                "body.alignment.processing.max_line_count",
                "greater than or equal to 1",
            ),
            (
                lines(json!(1), json!(0)),
                "body.alignment.processing.max_line_width",
                "greater than or equal to 1",
            ),
            (
                json!({"diarization": {"min_speakers": -1, "max_speakers": null}}),
                "body.diarization.min_speakers",
                "greater than or equal to 0",
            ),
            (
                json!({"diarization": {"min_speakers": null, "max_speakers": -2}}),
                "body.diarization.max_speakers",
                "greater than or equal to 0",
            ),
            (
                vad("vad_onset", json!(0)),
                "body.vad_settings.vad_onset",
                "greater than 0",
            ),
            (
                vad("vad_onset", json!(1)),
                "body.vad_settings.vad_onset",
                "less than 1",
            ),
            (
                vad("vad_offset", json!(1.2)),
                "body.vad_settings.vad_offset",
                "less than 1",
            ),
            (
                vad("chunk_size", json!(0)),
                "body.vad_settings.chunk_size",
                "greater than or equal to 1",
            ),
            (
                vad("chunk_size", json!(31)),
                "body.vad_settings.chunk_size",
                "less than or equal to 30",
            ),
            (
                asr("beam_size", json!(0)),
                "body.asr_settings.beam_size",
                "greater than or equal to 1",
            ),
            (
                asr("patience", json!(0)),
                "body.asr_settings.patience",
                "greater than 0",
            ),
            (
                asr("length_penalty", json!(1.01)),
                "body.asr_settings.length_penalty",
                "less than or equal to 1",
            ),
            (
                asr("length_penalty", json!(-1)),
                "body.asr_settings.length_penalty",
                "greater than or equal to 0",
            ),
            (
                asr("temperature", json!(-0.5)),
                "body.asr_settings.temperature",
                "greater than or equal to 0",
            ),
            (
                asr("temperature_increment_on_fallback", json!(-1)),
                "body.asr_settings.temperature_increment_on_fallback",
                "greater than or equal to 0",
            ),
            (
                asr("compression_ratio_threshold", json!(-1)),
                "body.asr_settings.compression_ratio_threshold",
                "greater than or equal to 0",
            ),
            (
                asr("initial_prompt", json!("x".repeat(2001))),
                "body.asr_settings.initial_prompt",
                "at most 2000 characters",
            ),
            // Schema errors, found before any rule.
            (json!({"model": "huge"}), "body.model", ""),
            (json!({"language": "xx"}), "body.language", ""),
            (
                json!({"asr_settings": {"beam_size": 5}}),
                "body.asr_settings.patience",
                "Field required",
            ),
            (
                json!({"diarization": {"min_speakers": 1}}),
                "body.diarization.max_speakers",
                "Field required",
            ),
            (
                json!({"vad_settings": {"vad_onset": "high", "vad_offset": 0.3, "chunk_size": 30}}),
                "body.vad_settings.vad_onset",
                "",
            ),
        ];
        for query in ["", "?is_new_default=true"] {
            for (body, loc, msg_part) in &cases {
                let response = submit(&app, &alice, query, body).await;
                let items = assert_validation_error(response).await;
                assert_eq!(
                    items.len(),
                    1,
                    "{body}: {:?}",
                    items.iter().map(|i| &i.raw).collect::<Vec<_>>()
                );
                assert_eq!(items[0].path(), *loc, "{body}: {}", items[0].raw);
                assert!(items[0].msg.contains(msg_part), "{body}: {}", items[0].raw);
            }
        }
        assert_eq!(stored_settings(&app).await, (0, 0));
        assert_eq!(defaults_of(&app, &alice).await, application_defaults());

        // Range problems are reported together, and hide the cross-field rules.
        let mut body = asr("beam_size", json!(0));
        body["task"] = json!("translate");
        body["vad_settings"] = json!({"vad_onset": 0.5, "vad_offset": 0, "chunk_size": 30});
        let items = assert_validation_error(submit(&app, &alice, "", &body).await).await;
        let paths: Vec<String> = items.iter().map(|item| item.path()).collect();
        assert_eq!(
            paths,
            [
                "body.vad_settings.vad_offset",
                "body.asr_settings.beam_size"
            ]
        );
        assert_eq!(stored_settings(&app).await, (0, 0));
    }
);

db_test!(
    async fn only_reading_defaults_works_unverified_or_without_the_terms(backend: Backend) {
        let (app, sink) = app_with_mail(
            backend,
            json!({"terms_of_services": {"1": {"name": "Rules", "version": 1, "tos_html": "<p>Be nice</p>"}}}),
        )
        .await;
        let unverified = user_session(&app, &sink, "new@example.org", false).await;
        let verified = user_session(&app, &sink, "ivy@example.org", true).await;

        // No credentials at all: 401 on both routes.
        assert_error(
            plain_client()
                .post(app.url("/api/jobs/submit_settings"))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        assert_error(
            plain_client()
                .get(app.url("/api/jobs/default_settings"))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;

        // Unverified: 403 naming the address, even for a body that is also invalid
        // (the permission is checked first).
        let detail = assert_error(submit(&app, &unverified, "", &json!({})).await, 403).await;
        assert!(detail.contains("new@example.org"), "{detail}");
        assert_error(
            submit(&app, &unverified, "", &json!({"task": "translate"})).await,
            403,
        )
        .await;
        assert_eq!(defaults_of(&app, &unverified).await, application_defaults());

        // Verified, but the terms not accepted: 403 too; accepting them opens the route.
        let detail = assert_error(
            submit(&app, &verified, "?is_new_default=true", &json!({})).await,
            403,
        )
        .await;
        assert!(detail.contains("terms of services"), "{detail}");
        assert_eq!(defaults_of(&app, &verified).await, application_defaults());
        assert_eq!(stored_settings(&app).await, (0, 0));

        json_body(
            bearer(
                &app,
                Method::POST,
                "/api/users/accept_tos?tos_id=1&tos_version=1",
                &verified,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        json_body(
            submit(
                &app,
                &verified,
                "?is_new_default=true",
                &json!({"email_notification": true}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(
            defaults_of(&app, &verified).await["email_notification"],
            true
        );
        assert_eq!(stored_settings(&app).await, (1, 1));
    }
);

db_test!(
    async fn malformed_requests_are_refused_like_fastapi(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        let alice = user_session(&app, &sink, "alice@example.org", true).await;

        let bad_query = submit(&app, &alice, "?is_new_default=maybe", &json!({})).await;
        assert_validation_error_at(bad_query, &["query", "is_new_default"]).await;
        let not_json = bearer(&app, Method::POST, "/api/jobs/submit_settings", &alice)
            .header(header::CONTENT_TYPE, "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        let items = assert_validation_error(not_json).await;
        assert_eq!(items[0].kind, "json_invalid");
        let no_body = bearer(&app, Method::POST, "/api/jobs/submit_settings", &alice)
            .send()
            .await
            .unwrap();
        assert_validation_error_at(no_body, &["body"]).await;
        assert_eq!(stored_settings(&app).await, (0, 0));
    }
);
