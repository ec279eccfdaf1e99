//! The settings rules without a database, then the services against a real, migrated
//! SQLite file and PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::*;
use crate::db::{connect, migrate, DatabaseSettings};
use crate::entities::users;

fn parse(body: Value) -> JobSettings {
    serde_json::from_value(body).unwrap()
}

/// `loc` as dotted text, e.g. `body.asr_settings.beam_size`.
fn path(violation: &Violation) -> String {
    violation
        .loc
        .iter()
        .map(|segment| match segment {
            LocSegment::Field(name) => name.clone(),
            LocSegment::Index(index) => index.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn violations(body: Value) -> Vec<(String, String)> {
    match validate(&parse(body)) {
        Ok(()) => Vec::new(),
        Err(found) => found.iter().map(|v| (path(v), v.kind.clone())).collect(),
    }
}

/// The one violation `body` produces: its loc and message.
fn only_violation(body: Value) -> (String, String) {
    let settings = parse(body.clone());
    let found = validate(&settings).expect_err(&format!("{body} should be refused"));
    assert_eq!(found.len(), 1, "{body}: {found:?}");
    (path(&found[0]), found[0].msg.clone())
}

fn project_w_defaults() -> Value {
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

#[test]
fn missing_fields_take_project_w_defaults_and_round_trip() {
    let defaults = parse(json!({}));
    assert_eq!(defaults, JobSettings::default());
    assert_eq!(
        serde_json::to_value(&defaults).unwrap(),
        project_w_defaults()
    );
    assert_eq!(parse(project_w_defaults()), defaults);
    assert_eq!(validate(&defaults), Ok(()));

    let text = serde_json::to_string(&defaults).unwrap();
    assert_eq!(
        serde_json::from_str::<JobSettings>(&text).unwrap(),
        defaults
    );
}

#[test]
fn explicit_null_switches_alignment_off_while_a_missing_field_keeps_the_default() {
    assert!(parse(json!({"alignment": null})).alignment.is_none());
    assert!(parse(json!({"language": null})).alignment.is_some());
    let settings = parse(json!({"language": "de", "email_notification": true}));
    assert_eq!(settings.language, Some(Language::German));
    assert!(settings.email_notification);
    assert_eq!(settings.asr_settings, JobSettings::default().asr_settings);
}

#[test]
fn nested_objects_need_every_field_nullable_ones_included() {
    let missing = serde_json::from_value::<JobSettings>(json!({
        "diarization": {"min_speakers": 1}
    }));
    assert!(missing.unwrap_err().to_string().contains("max_speakers"));
    let nulls = parse(json!({"diarization": {"min_speakers": null, "max_speakers": null}}));
    assert_eq!(
        nulls.diarization,
        Some(DiarizationSettings {
            min_speakers: None,
            max_speakers: None
        })
    );
    assert!(serde_json::from_value::<JobSettings>(json!({"model": "huge"})).is_err());
}

#[test]
fn enums_list_the_contract_values() {
    assert_eq!(Language::ALL.len(), 100);
    assert_eq!(Language::ALL.first().map(|l| l.as_str()), Some("af"));
    assert_eq!(Language::ALL.last().map(|l| l.as_str()), Some("zh"));
    assert_eq!(
        Language::ALL
            .iter()
            .filter(|l| l.supports_alignment())
            .count(),
        40
    );
    assert_eq!(
        Model::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        [
            "tiny",
            "tiny.en",
            "base",
            "base.en",
            "small",
            "small.en",
            "medium",
            "medium.en",
            "turbo",
            "large"
        ]
    );
    for language in Language::ALL {
        let text = serde_json::to_value(language).unwrap();
        assert_eq!(text, json!(language.as_str()));
        assert_eq!(serde_json::from_value::<Language>(text).unwrap(), *language);
    }
}

#[test]
fn cross_field_rules_see_the_defaults() {
    // SPEC §3.10: the default alignment is on, so each of these alone is refused.
    let (loc, msg) = only_violation(json!({"task": "translate"}));
    assert_eq!(loc, "body");
    assert_eq!(
        msg,
        "Value error, Alignment not supported for the translation task"
    );
    let (loc, msg) = only_violation(json!({"language": "af"}));
    assert_eq!(loc, "body");
    assert_eq!(
        msg,
        "Value error, language af is not supported for alignment. \
         Either disable alignment or choose another language"
    );
    let (loc, msg) = only_violation(json!({"model": "tiny.en"}));
    assert_eq!(loc, "body");
    assert!(
        msg.contains("you have to set the language to 'en'"),
        "{msg}"
    );

    // ...and fine once the conflicting default is overridden.
    for fine in [
        json!({"task": "translate", "alignment": null}),
        json!({"task": "translate", "alignment": null, "language": "de"}),
        json!({"language": "af", "alignment": null}),
        json!({"language": "sv"}),
        json!({"model": "tiny.en", "language": "en"}),
        json!({"model": "medium.en", "language": "en", "alignment": null}),
    ] {
        assert_eq!(violations(fine.clone()), [], "{fine}");
    }
}

#[test]
fn translating_english_into_english_is_refused() {
    let (loc, msg) =
        only_violation(json!({"task": "translate", "alignment": null, "language": "en"}));
    assert_eq!(loc, "body");
    assert_eq!(msg, "Value error, Cannot translate English into English");
}

#[test]
fn only_the_first_model_rule_is_reported_in_project_w_order() {
    // Breaks the .en rule, the translation/alignment rule and the English rule at once.
    let (_, msg) =
        only_violation(json!({"task": "translate", "model": "base.en", "language": "fr"}));
    assert!(msg.contains("'tiny.en', 'base.en'"), "{msg}");
    let (_, msg) = only_violation(json!({"task": "translate", "language": "en"}));
    assert!(msg.contains("Alignment not supported"), "{msg}");
}

#[test]
fn nested_rules_point_at_their_object() {
    let (loc, msg) = only_violation(json!({"diarization": {"min_speakers": 3, "max_speakers": 2}}));
    assert_eq!(loc, "body.diarization");
    assert_eq!(
        msg,
        "Value error, max_speakers can't be smaller than min_speakers"
    );
    assert_eq!(
        violations(json!({"diarization": {"min_speakers": 2, "max_speakers": 2}})),
        []
    );
    assert_eq!(
        violations(json!({"diarization": {"min_speakers": 5, "max_speakers": null}})),
        []
    );

    let processing = |count: Value, width: Value| {
        json!({"alignment": {
            "processing": {"highlight_words": true, "max_line_count": count, "max_line_width": width},
            "return_char_alignments": false,
            "interpolate_method": "linear"
        }})
    };
    let (loc, msg) = only_violation(processing(json!(2), Value::Null));
    assert_eq!(loc, "body.alignment.processing");
    assert_eq!(
        msg,
        "Value error, max_line_width can't be None if max_line_count is set"
    );
    assert_eq!(violations(processing(json!(2), json!(40))), []);
    assert_eq!(violations(processing(Value::Null, json!(40))), []);
}

#[test]
fn every_range_rule_names_its_field() {
    let alignment = |count: i64, width: i64| {
        json!({"alignment": {
            "processing": {"highlight_words": false, "max_line_count": count, "max_line_width": width},
            "return_char_alignments": false,
            "interpolate_method": "nearest"
        }})
    };
    let diarization =
        |min: i64, max: i64| json!({"diarization": {"min_speakers": min, "max_speakers": max}});
    let vad = |field: &str, value: Value| {
        let mut vad = project_w_defaults()["vad_settings"].clone();
        vad[field] = value;
        json!({"vad_settings": vad})
    };
    let asr = |field: &str, value: Value| {
        let mut asr = project_w_defaults()["asr_settings"].clone();
        asr[field] = value;
        json!({"asr_settings": asr})
    };
    let cases = [
        (
            alignment(0, 5),
            "body.alignment.processing.max_line_count",
            "greater_than_equal",
        ),
        (
            alignment(1, 0),
            "body.alignment.processing.max_line_width",
            "greater_than_equal",
        ),
        (
            diarization(-1, 2),
            "body.diarization.min_speakers",
            "greater_than_equal",
        ),
        (
            diarization(0, -1),
            "body.diarization.max_speakers",
            "greater_than_equal",
        ),
        (
            vad("vad_onset", json!(0.0)),
            "body.vad_settings.vad_onset",
            "greater_than",
        ),
        (
            vad("vad_onset", json!(1.0)),
            "body.vad_settings.vad_onset",
            "less_than",
        ),
        (
            vad("vad_offset", json!(-0.2)),
            "body.vad_settings.vad_offset",
            "greater_than",
        ),
        (
            vad("vad_offset", json!(1)),
            "body.vad_settings.vad_offset",
            "less_than",
        ),
        (
            vad("chunk_size", json!(0)),
            "body.vad_settings.chunk_size",
            "greater_than_equal",
        ),
        (
            vad("chunk_size", json!(31)),
            "body.vad_settings.chunk_size",
            "less_than_equal",
        ),
        (
            asr("beam_size", json!(0)),
            "body.asr_settings.beam_size",
            "greater_than_equal",
        ),
        (
            asr("patience", json!(0)),
            "body.asr_settings.patience",
            "greater_than",
        ),
        (
            asr("length_penalty", json!(-0.1)),
            "body.asr_settings.length_penalty",
            "greater_than_equal",
        ),
        (
            asr("length_penalty", json!(1.5)),
            "body.asr_settings.length_penalty",
            "less_than_equal",
        ),
        (
            asr("temperature", json!(-1)),
            "body.asr_settings.temperature",
            "greater_than_equal",
        ),
        (
            asr("temperature_increment_on_fallback", json!(-0.2)),
            "body.asr_settings.temperature_increment_on_fallback",
            "greater_than_equal",
        ),
        (
            asr("compression_ratio_threshold", json!(-2.4)),
            "body.asr_settings.compression_ratio_threshold",
            "greater_than_equal",
        ),
        (
            asr("initial_prompt", json!("é".repeat(2001))),
            "body.asr_settings.initial_prompt",
            "string_too_long",
        ),
    ];
    for (body, loc, kind) in cases {
        assert_eq!(
            violations(body.clone()),
            [(loc.to_owned(), kind.to_owned())],
            "{body}"
        );
    }

    // The edges themselves are allowed; 2000 characters, not bytes.
    for fine in [
        alignment(1, 1),
        diarization(0, 0),
        vad("vad_onset", json!(0.999)),
        vad("chunk_size", json!(1)),
        asr("length_penalty", json!(0)),
        asr("temperature", json!(0)),
        asr("log_prob_threshold", json!(-100)),
        asr("initial_prompt", json!("é".repeat(2000))),
    ] {
        assert_eq!(violations(fine.clone()), [], "{fine}");
    }
}

#[test]
fn range_violations_come_together_and_hide_the_model_rules() {
    let mut body = project_w_defaults();
    body["task"] = json!("translate");
    body["asr_settings"]["beam_size"] = json!(0);
    body["vad_settings"]["chunk_size"] = json!(99);
    body["diarization"] = json!({"min_speakers": -3, "max_speakers": -4});
    assert_eq!(
        violations(body),
        [
            (
                "body.diarization.min_speakers".to_owned(),
                "greater_than_equal".to_owned()
            ),
            (
                "body.diarization.max_speakers".to_owned(),
                "greater_than_equal".to_owned()
            ),
            (
                "body.vad_settings.chunk_size".to_owned(),
                "less_than_equal".to_owned()
            ),
            (
                "body.asr_settings.beam_size".to_owned(),
                "greater_than_equal".to_owned()
            ),
        ]
    );
}

#[test]
fn messages_follow_pydantic() {
    let found = validate(&parse(json!({"asr_settings": {
        "beam_size": 0, "patience": 0, "length_penalty": 2, "temperature": 0,
        "temperature_increment_on_fallback": 0, "compression_ratio_threshold": 0,
        "log_prob_threshold": 0, "no_speech_threshold": 0, "initial_prompt": null,
        "suppress_tokens": [], "suppress_numerals": true
    }})))
    .unwrap_err();
    let messages: Vec<&str> = found.iter().map(|v| v.msg.as_str()).collect();
    assert_eq!(
        messages,
        [
            "Input should be greater than or equal to 1",
            "Input should be greater than 0",
            "Input should be less than or equal to 1",
        ]
    );
}

// --- services, on SQLite and PostgreSQL ---

struct TestDomain {
    d: Domain,
    // Field order is drop order: the database goes before its directory.
    _guard: scribe_tests::TestDb,
    _dir: TempDir,
}

async fn test_domain(backend: scribe_tests::Backend) -> TestDomain {
    let dir = tempfile::tempdir().unwrap();
    let guard = scribe_tests::TestDb::create(backend, dir.path()).await;
    let settings = DatabaseSettings {
        url: guard.url().to_owned(),
        max_connections: 4,
        retry_for: Duration::from_secs(1),
    };
    let db = connect(&settings).await.unwrap();
    migrate(&db).await.unwrap();
    let config = crate::config::parse_str(crate::config::EMBEDDED_DEFAULT, Vec::new())
        .unwrap()
        .config;
    let d = Domain::new(
        db,
        Arc::new(config),
        crate::secret_key::SecretKey::generate(),
    );
    TestDomain {
        d,
        _guard: guard,
        _dir: dir,
    }
}

async fn add_user(db: &DatabaseConnection, email: &str) -> i64 {
    users::ActiveModel {
        email: Set(email.to_owned()),
        user_type: Set("local".to_owned()),
        provider_name: Set("project-W".to_owned()),
        is_verified: Set(true),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap()
    .id
}

async fn stored_rows(db: &DatabaseConnection) -> (u64, u64) {
    (
        job_settings::Entity::find().count(db).await.unwrap(),
        default_job_settings::Entity::find()
            .count(db)
            .await
            .unwrap(),
    )
}

scribe_tests::db_test!(
    async fn settings_are_stored_per_user_and_the_default_can_change(backend: Backend) {
        let test = test_domain(backend).await;
        let d = &test.d;
        let alice = add_user(&d.db, "alice@example.org").await;
        let bob = add_user(&d.db, "bob@example.org").await;

        assert_eq!(
            default_settings(d, alice).await.unwrap(),
            JobSettings::default()
        );
        assert_eq!(default_settings_id(d, alice).await.unwrap(), None);

        let german = parse(json!({"language": "de", "email_notification": true}));
        let first = submit_settings(d, alice, german.clone(), false)
            .await
            .unwrap();
        assert_eq!(settings_of_user(d, alice, first).await.unwrap(), german);
        // Not a default unless asked.
        assert_eq!(
            default_settings(d, alice).await.unwrap(),
            JobSettings::default()
        );

        let french =
            parse(json!({"language": "fr", "diarization": {"min_speakers": 1, "max_speakers": 3}}));
        let second = submit_settings(d, alice, french.clone(), true)
            .await
            .unwrap();
        assert_eq!(default_settings(d, alice).await.unwrap(), french);
        assert_eq!(default_settings_id(d, alice).await.unwrap(), Some(second));
        // Another user's default is their own.
        assert_eq!(
            default_settings(d, bob).await.unwrap(),
            JobSettings::default()
        );

        let third = submit_settings(d, alice, german.clone(), true)
            .await
            .unwrap();
        assert_eq!(default_settings(d, alice).await.unwrap(), german);
        assert_eq!(default_settings_id(d, alice).await.unwrap(), Some(third));
        // The replaced default is still there for jobs that use it.
        assert_eq!(settings_of_user(d, alice, second).await.unwrap(), french);
        assert_eq!(stored_rows(&d.db).await, (3, 1));
    }
);

scribe_tests::db_test!(
    async fn another_users_settings_id_looks_like_an_unknown_one(backend: Backend) {
        let test = test_domain(backend).await;
        let d = &test.d;
        let alice = add_user(&d.db, "alice@example.org").await;
        let mallory = add_user(&d.db, "mallory@example.org").await;
        let id = submit_settings(d, alice, JobSettings::default(), true)
            .await
            .unwrap();

        let foreign = settings_of_user(d, mallory, id).await.unwrap_err();
        let unknown = settings_of_user(d, mallory, id + 1000).await.unwrap_err();
        match (&foreign, &unknown) {
            (DomainError::Invalid(foreign), DomainError::Invalid(unknown)) => {
                assert_eq!(
                    foreign,
                    &format!("The provided job_settings_id of '{id}' is invalid")
                );
                assert_eq!(
                    unknown,
                    &format!("The provided job_settings_id of '{}' is invalid", id + 1000)
                );
            }
            other => panic!("expected Invalid twice, got {other:?}"),
        }
    }
);

scribe_tests::db_test!(
    async fn refused_settings_store_nothing(backend: Backend) {
        let test = test_domain(backend).await;
        let d = &test.d;
        let alice = add_user(&d.db, "alice@example.org").await;
        for body in [
            json!({"task": "translate"}),
            json!({"language": "af"}),
            json!({"model": "tiny.en"}),
            json!({"vad_settings": {"vad_onset": 1.0, "vad_offset": 0.3, "chunk_size": 30}}),
        ] {
            match submit_settings(d, alice, parse(body.clone()), true).await {
                Err(DomainError::Validation(found)) => assert!(!found.is_empty()),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(stored_rows(&d.db).await, (0, 0));
        assert_eq!(
            default_settings(d, alice).await.unwrap(),
            JobSettings::default()
        );
    }
);

scribe_tests::db_test!(
    async fn deleting_a_user_deletes_their_settings(backend: Backend) {
        let test = test_domain(backend).await;
        let d = &test.d;
        let alice = add_user(&d.db, "alice@example.org").await;
        let bob = add_user(&d.db, "bob@example.org").await;
        submit_settings(d, alice, JobSettings::default(), true)
            .await
            .unwrap();
        submit_settings(d, alice, JobSettings::default(), false)
            .await
            .unwrap();
        let kept = submit_settings(d, bob, JobSettings::default(), true)
            .await
            .unwrap();
        assert_eq!(stored_rows(&d.db).await, (3, 2));

        users::Entity::delete_by_id(alice)
            .exec(&d.db)
            .await
            .unwrap();
        assert_eq!(stored_rows(&d.db).await, (1, 1));
        assert_eq!(default_settings_id(d, bob).await.unwrap(), Some(kept));
    }
);
