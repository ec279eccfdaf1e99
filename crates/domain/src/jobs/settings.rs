//! Job settings (SPEC §3.5): how a runner should transcribe one job. A user stores
//! sets of them (`submit_settings`), may mark one as their default, and names one
//! when submitting a job.
//!
//! The shape, the defaults and every rule are Project-W v0.6.0's (`JobSettingsRequest`
//! and the pydantic validators of its parents). Deserialising fills Project-W's default
//! for every missing top-level field, exactly as its request model does, so the rules
//! below see the defaults too (SPEC §3.10: `{"task": "translate"}` alone is refused,
//! because the default alignment is on).

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{Set, TransactionTrait};
use serde::{Deserialize, Serialize};

use crate::entities::{default_job_settings, job_settings};
use crate::error::{DomainError, DomainResult, LocSegment, Violation};
use crate::Domain;

#[cfg(test)]
mod tests;

/// A closed set of strings on the wire. Generates the enum with its serde names, the
/// list of all values (the route crate builds the OpenAPI enum from it) and `as_str`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the contract's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// `TaskEnum`.
    Task {
        Transcribe = "transcribe",
        Translate = "translate",
    }
);

string_enum!(
    /// `JobModelEnum`: the Whisper model. The `.en` models only know English.
    Model {
        Tiny = "tiny",
        TinyEn = "tiny.en",
        Base = "base",
        BaseEn = "base.en",
        Small = "small",
        SmallEn = "small.en",
        Medium = "medium",
        MediumEn = "medium.en",
        Turbo = "turbo",
        Large = "large",
    }
);

impl Model {
    pub const fn is_english_only(self) -> bool {
        matches!(
            self,
            Model::TinyEn | Model::BaseEn | Model::SmallEn | Model::MediumEn
        )
    }
}

string_enum!(
    /// `JobLangEnum`: the spoken language as an ISO 639 code (Project-W takes no
    /// full names: they have duplicates). `None` in [`JobSettings`] means "detect".
    Language {
        Afrikaans = "af",
        Amharic = "am",
        Arabic = "ar",
        Assamese = "as",
        Azerbaijani = "az",
        Bashkir = "ba",
        Belarusian = "be",
        Bulgarian = "bg",
        Bengali = "bn",
        Tibetan = "bo",
        Breton = "br",
        Bosnian = "bs",
        Catalan = "ca",
        Czech = "cs",
        Welsh = "cy",
        Danish = "da",
        German = "de",
        GreekModern = "el",
        English = "en",
        Spanish = "es",
        Estonian = "et",
        Basque = "eu",
        Persian = "fa",
        Finnish = "fi",
        Faroese = "fo",
        French = "fr",
        Galician = "gl",
        Gujarati = "gu",
        Hausa = "ha",
        Hawaiian = "haw",
        Hebrew = "he",
        Hindi = "hi",
        Croatian = "hr",
        Haitian = "ht",
        Hungarian = "hu",
        Armenian = "hy",
        Indonesian = "id",
        Icelandic = "is",
        Italian = "it",
        Japanese = "ja",
        Javanese = "jw",
        Georgian = "ka",
        Kazakh = "kk",
        CentralKhmer = "km",
        Kannada = "kn",
        Korean = "ko",
        Latin = "la",
        Luxembourgish = "lb",
        Lingala = "ln",
        Lao = "lo",
        Lithuanian = "lt",
        Latvian = "lv",
        Malagasy = "mg",
        Maori = "mi",
        Macedonian = "mk",
        Malayalam = "ml",
        Mongolian = "mn",
        Marathi = "mr",
        Malay = "ms",
        Maltese = "mt",
        Burmese = "my",
        Nepali = "ne",
        Dutch = "nl",
        NorwegianNynorsk = "nn",
        Norwegian = "no",
        Occitan = "oc",
        Punjabi = "pa",
        Polish = "pl",
        Pashto = "ps",
        Portuguese = "pt",
        Romanian = "ro",
        Russian = "ru",
        Sanskrit = "sa",
        Sindhi = "sd",
        Sinhala = "si",
        Slovak = "sk",
        Slovenian = "sl",
        Shona = "sn",
        Somali = "so",
        Albanian = "sq",
        Serbian = "sr",
        Sundanese = "su",
        Swedish = "sv",
        Swahili = "sw",
        Tamil = "ta",
        Telugu = "te",
        Tajik = "tg",
        Thai = "th",
        Turkmen = "tk",
        Tagalog = "tl",
        Turkish = "tr",
        Tatar = "tt",
        Ukrainian = "uk",
        Urdu = "ur",
        Uzbek = "uz",
        Vietnamese = "vi",
        Yiddish = "yi",
        Yoruba = "yo",
        Cantonese = "yue",
        Mandarin = "zh",
    }
);

impl Language {
    /// Whether the aligner has a model for this language (Project-W's
    /// `supported_alignment_languages`).
    pub const fn supports_alignment(self) -> bool {
        use Language::*;
        matches!(
            self,
            English
                | French
                | German
                | Spanish
                | Italian
                | Japanese
                | Mandarin
                | Dutch
                | Ukrainian
                | Portuguese
                | Arabic
                | Czech
                | Russian
                | Polish
                | Hungarian
                | Finnish
                | Persian
                | GreekModern
                | Turkish
                | Danish
                | Hebrew
                | Vietnamese
                | Korean
                | Urdu
                | Telugu
                | Hindi
                | Catalan
                | Malayalam
                | Norwegian
                | NorwegianNynorsk
                | Slovak
                | Slovenian
                | Croatian
                | Romanian
                | Basque
                | Galician
                | Georgian
                | Latvian
                | Tagalog
                | Swedish
        )
    }
}

string_enum!(
    /// `InterpolateMethodEnum`: how words without a timestamp get one.
    InterpolateMethod {
        Nearest = "nearest",
        Linear = "linear",
        Ignore = "ignore",
    }
);

/// `JobSettingsResponse`. Missing fields take Project-W's defaults ([`Default`]);
/// an explicit `null` for `language`, `alignment` or `diarization` means
/// auto-detect, no alignment, no diarization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    pub task: Task,
    pub model: Model,
    pub language: Option<Language>,
    pub alignment: Option<AlignmentSettings>,
    pub diarization: Option<DiarizationSettings>,
    pub vad_settings: VadSettings,
    pub asr_settings: AsrSettings,
    pub email_notification: bool,
}

/// The nested objects have no defaults: a client that sends one sends all of its
/// fields, `null` included (pydantic's `int | None` without a default is required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentSettings {
    pub processing: AlignmentProcessingSettings,
    pub return_char_alignments: bool,
    pub interpolate_method: InterpolateMethod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentProcessingSettings {
    pub highlight_words: bool,
    /// ≥ 1; needs `max_line_width`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_line_count: Option<i64>,
    /// ≥ 1.
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_line_width: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiarizationSettings {
    /// ≥ 0.
    #[serde(deserialize_with = "Option::deserialize")]
    pub min_speakers: Option<i64>,
    /// ≥ 0 and ≥ `min_speakers`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_speakers: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VadSettings {
    /// In (0, 1).
    pub vad_onset: f64,
    /// In (0, 1).
    pub vad_offset: f64,
    /// Seconds, 1..=30.
    pub chunk_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsrSettings {
    /// ≥ 1.
    pub beam_size: i64,
    /// > 0.
    pub patience: f64,
    /// In [0, 1].
    pub length_penalty: f64,
    /// ≥ 0.
    pub temperature: f64,
    /// ≥ 0.
    pub temperature_increment_on_fallback: f64,
    /// ≥ 0.
    pub compression_ratio_threshold: f64,
    pub log_prob_threshold: f64,
    pub no_speech_threshold: f64,
    /// At most [`MAX_INITIAL_PROMPT_CHARS`] characters.
    #[serde(deserialize_with = "Option::deserialize")]
    pub initial_prompt: Option<String>,
    pub suppress_tokens: Vec<i64>,
    pub suppress_numerals: bool,
}

pub const MAX_INITIAL_PROMPT_CHARS: usize = 2000;

/// Project-W's application defaults (`JobSettingsRequest()`), also what
/// `default_settings` answers for a user who never chose their own.
impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            task: Task::Transcribe,
            model: Model::Large,
            language: None,
            alignment: Some(AlignmentSettings {
                processing: AlignmentProcessingSettings {
                    highlight_words: false,
                    max_line_count: None,
                    max_line_width: None,
                },
                return_char_alignments: false,
                interpolate_method: InterpolateMethod::Nearest,
            }),
            diarization: None,
            vad_settings: VadSettings {
                vad_onset: 0.5,
                vad_offset: 0.363,
                chunk_size: 30,
            },
            asr_settings: AsrSettings {
                beam_size: 5,
                patience: 1.0,
                length_penalty: 1.0,
                temperature: 0.0,
                temperature_increment_on_fallback: 0.2,
                compression_ratio_threshold: 2.4,
                log_prob_threshold: -1.0,
                no_speech_threshold: 0.6,
                initial_prompt: None,
                suppress_tokens: vec![-1],
                suppress_numerals: false,
            },
            email_notification: false,
        }
    }
}

/// Checks every rule of SPEC §3.5 on settings whose defaults are filled in, and
/// reports problems the way FastAPI reports Project-W's: all range violations at once
/// (`loc` = `["body", <object>…, <field>]`); a nested object's own rule only when its
/// fields are fine (`loc` = that object); and the model-level rules (`loc` = `["body"]`)
/// only when everything else is fine, stopping at the first that fails, in
/// Project-W's order.
pub fn validate(settings: &JobSettings) -> Result<(), Vec<Violation>> {
    let mut check = Checker::default();

    if let Some(alignment) = &settings.alignment {
        let processing = &alignment.processing;
        let at = ["alignment", "processing"];
        let before = check.count();
        check.optional_at_least(&at, "max_line_count", processing.max_line_count, 1);
        check.optional_at_least(&at, "max_line_width", processing.max_line_width, 1);
        if check.count() == before
            && processing.max_line_count.is_some()
            && processing.max_line_width.is_none()
        {
            check.rule(&at, "max_line_width can't be None if max_line_count is set");
        }
    }

    if let Some(diarization) = &settings.diarization {
        let at = ["diarization"];
        let before = check.count();
        check.optional_at_least(&at, "min_speakers", diarization.min_speakers, 0);
        check.optional_at_least(&at, "max_speakers", diarization.max_speakers, 0);
        if check.count() == before {
            if let (Some(min), Some(max)) = (diarization.min_speakers, diarization.max_speakers) {
                if max < min {
                    check.rule(&at, "max_speakers can't be smaller than min_speakers");
                }
            }
        }
    }

    let vad = &settings.vad_settings;
    let at = ["vad_settings"];
    check.open_interval(&at, "vad_onset", vad.vad_onset, 0.0, 1.0);
    check.open_interval(&at, "vad_offset", vad.vad_offset, 0.0, 1.0);
    check.at_least(&at, "chunk_size", vad.chunk_size, 1);
    check.at_most(&at, "chunk_size", vad.chunk_size, 30);

    let asr = &settings.asr_settings;
    let at = ["asr_settings"];
    check.at_least(&at, "beam_size", asr.beam_size, 1);
    check.greater_than(&at, "patience", asr.patience, 0.0);
    check.at_least(&at, "length_penalty", asr.length_penalty, 0.0);
    check.at_most(&at, "length_penalty", asr.length_penalty, 1.0);
    check.at_least(&at, "temperature", asr.temperature, 0.0);
    check.at_least(
        &at,
        "temperature_increment_on_fallback",
        asr.temperature_increment_on_fallback,
        0.0,
    );
    check.at_least(
        &at,
        "compression_ratio_threshold",
        asr.compression_ratio_threshold,
        0.0,
    );
    if let Some(prompt) = &asr.initial_prompt {
        if prompt.chars().count() > MAX_INITIAL_PROMPT_CHARS {
            check.push(
                &at,
                "initial_prompt",
                format!("String should have at most {MAX_INITIAL_PROMPT_CHARS} characters"),
                "string_too_long",
            );
        }
    }

    if check.count() > 0 {
        return Err(check.violations);
    }
    match first_broken_model_rule(settings) {
        Some(message) => {
            check.rule(&[], &message);
            Err(check.violations)
        }
        None => Ok(()),
    }
}

/// The cross-field rules of Project-W's `JobSettingsRunnerResponse`, in its order.
fn first_broken_model_rule(settings: &JobSettings) -> Option<String> {
    if settings.model.is_english_only() && settings.language != Some(Language::English) {
        return Some(
            "If you want to use the 'tiny.en', 'base.en', 'small.en' or 'medium.en' models, \
             you have to set the language to 'en'"
                .to_owned(),
        );
    }
    if settings.task == Task::Translate && settings.alignment.is_some() {
        return Some("Alignment not supported for the translation task".to_owned());
    }
    if let (Some(_), Some(language)) = (&settings.alignment, settings.language) {
        if !language.supports_alignment() {
            return Some(format!(
                "language {language} is not supported for alignment. \
                 Either disable alignment or choose another language"
            ));
        }
    }
    if settings.task == Task::Translate && settings.language == Some(Language::English) {
        return Some("Cannot translate English into English".to_owned());
    }
    None
}

/// Collects violations with pydantic's messages and types.
#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn count(&self) -> usize {
        self.violations.len()
    }

    fn push(&mut self, at: &[&str], field: &str, msg: String, kind: &str) {
        let loc = std::iter::once("body")
            .chain(at.iter().copied())
            .chain(Some(field).filter(|field| !field.is_empty()))
            .map(LocSegment::from);
        self.violations.push(Violation::new(loc, msg, kind));
    }

    /// A failed `@model_validator` of the object at `at` (`[]`: the body itself).
    fn rule(&mut self, at: &[&str], message: &str) {
        self.push(at, "", format!("Value error, {message}"), "value_error");
    }

    fn at_least<N: PartialOrd + std::fmt::Display>(
        &mut self,
        at: &[&str],
        field: &str,
        value: N,
        min: N,
    ) {
        if value < min {
            let msg = format!("Input should be greater than or equal to {min}");
            self.push(at, field, msg, "greater_than_equal");
        }
    }

    fn at_most<N: PartialOrd + std::fmt::Display>(
        &mut self,
        at: &[&str],
        field: &str,
        value: N,
        max: N,
    ) {
        if value > max {
            let msg = format!("Input should be less than or equal to {max}");
            self.push(at, field, msg, "less_than_equal");
        }
    }

    fn greater_than(&mut self, at: &[&str], field: &str, value: f64, bound: f64) {
        if value <= bound {
            let msg = format!("Input should be greater than {bound}");
            self.push(at, field, msg, "greater_than");
        }
    }

    fn less_than(&mut self, at: &[&str], field: &str, value: f64, bound: f64) {
        if value >= bound {
            let msg = format!("Input should be less than {bound}");
            self.push(at, field, msg, "less_than");
        }
    }

    fn open_interval(&mut self, at: &[&str], field: &str, value: f64, low: f64, high: f64) {
        self.greater_than(at, field, value, low);
        self.less_than(at, field, value, high);
    }

    fn optional_at_least(&mut self, at: &[&str], field: &str, value: Option<i64>, min: i64) {
        if let Some(value) = value {
            self.at_least(at, field, value, min);
        }
    }
}

/// Stores a set of settings for the user after checking them, and makes it their
/// default if asked (the previous default stays stored, only no longer the default).
/// Returns the new id, which `submit_job` takes as `job_settings_id`.
pub async fn submit_settings(
    d: &Domain,
    user_id: i64,
    settings: JobSettings,
    is_new_default: bool,
) -> DomainResult<i64> {
    validate(&settings).map_err(DomainError::Validation)?;
    let json = serde_json::to_string(&settings)
        .map_err(|err| DomainError::internal("serialise job settings", err))?;
    let txn = d.db.begin().await?;
    let stored = job_settings::ActiveModel {
        user_id: Set(user_id),
        settings: Set(json),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    if is_new_default {
        // An upsert keyed by the user: concurrent submissions leave exactly one
        // default (the last to commit), never a constraint error.
        default_job_settings::Entity::insert(default_job_settings::ActiveModel {
            user_id: Set(user_id),
            job_settings_id: Set(stored.id),
        })
        .on_conflict(
            OnConflict::column(default_job_settings::Column::UserId)
                .update_column(default_job_settings::Column::JobSettingsId)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    tracing::debug!(
        user_id,
        settings_id = stored.id,
        is_new_default,
        "job settings stored"
    );
    Ok(stored.id)
}

/// The user's default settings, else the application defaults.
pub async fn default_settings(d: &Domain, user_id: i64) -> DomainResult<JobSettings> {
    let stored = job_settings::Entity::find()
        .inner_join(default_job_settings::Entity)
        .filter(default_job_settings::Column::UserId.eq(user_id))
        .one(&d.db)
        .await?;
    match stored {
        Some(row) => parse_stored(&row),
        None => Ok(JobSettings::default()),
    }
}

/// The id of the user's default settings, `None` when they use the application
/// defaults (a job submitted without a settings id records this).
pub async fn default_settings_id(d: &Domain, user_id: i64) -> DomainResult<Option<i64>> {
    Ok(default_job_settings::Entity::find_by_id(user_id)
        .one(&d.db)
        .await?
        .map(|row| row.job_settings_id))
}

/// The settings `settings_id` if they are the user's. Someone else's id answers
/// exactly like an unknown one, so ids reveal nothing (Project-W's 400 wording).
pub async fn settings_of_user(
    d: &Domain,
    user_id: i64,
    settings_id: i64,
) -> DomainResult<JobSettings> {
    let stored = job_settings::Entity::find_by_id(settings_id)
        .filter(job_settings::Column::UserId.eq(user_id))
        .one(&d.db)
        .await?;
    match stored {
        Some(row) => parse_stored(&row),
        None => Err(DomainError::Invalid(format!(
            "The provided job_settings_id of '{settings_id}' is invalid"
        ))),
    }
}

fn parse_stored(row: &job_settings::Model) -> DomainResult<JobSettings> {
    serde_json::from_str(&row.settings).map_err(|err| {
        DomainError::internal(
            &format!("stored job settings {} are unreadable", row.id),
            err,
        )
    })
}
