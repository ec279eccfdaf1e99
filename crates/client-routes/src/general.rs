//! `general` tag: public facts about the instance, no authentication.

use std::collections::BTreeMap;

use actix_web::{get, web};
use scribe_domain::banners::{self, SiteBanner};
use scribe_domain::config::{self, Config};
use scribe_http::openapi::EmailValidated;
use scribe_http::{ApiResult, AppState};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

const DESCRIPTION: &str = "A self-hostable platform on which users can create transcripts of \
their audio files (speech-to-text) using Whisper AI";
const SOURCE_CODE: &str = "https://github.com/scribe-transcription/scribe";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(about).service(auth_settings);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AboutResponse {
    pub description: String,
    pub source_code: String,
    pub version: String,
    pub git_hash: String,
    #[schema(required = true)]
    pub imprint: Option<ImprintResponse>,
    pub terms_of_services: BTreeMap<u32, TosResponse>,
    #[schema(required = true)]
    pub job_retention_in_days: Option<u32>,
    pub site_banners: Vec<SiteBannerResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImprintResponse {
    pub name: String,
    #[schema(required = true)]
    pub email: Option<EmailValidated>,
    #[schema(required = true, min_length = 1, max_length = 2083)]
    pub url: Option<String>,
    #[schema(required = true)]
    pub additional_imprint_html: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TosResponse {
    pub name: String,
    #[schema(minimum = 1)]
    pub version: u32,
    pub tos_html: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteBannerResponse {
    pub id: i64,
    pub html: String,
    pub urgency: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthSettingsResponse {
    pub local_account: LocalAccountResponse,
    pub oidc_providers: BTreeMap<String, ProviderResponse>,
    pub ldap_providers: BTreeMap<String, ProviderResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocalAccountResponse {
    pub mode: LocalAccountOperationModeEnum,
    pub allowed_email_domains: Vec<String>,
    pub allow_creation_of_api_tokens: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalAccountOperationModeEnum {
    Disabled,
    NoSignupHidden,
    NoSignup,
    Enabled,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderResponse {
    pub hidden: bool,
    #[schema(required = true, min_length = 1, max_length = 2083)]
    pub icon_url: Option<String>,
    pub allow_creation_of_api_tokens: bool,
}

/// Describes this instance: version, imprint, terms of service, retention and
/// the current site banners (most urgent first).
#[utoipa::path(
    tag = "general",
    operation_id = "general-about",
    responses((status = 200, body = AboutResponse))
)]
#[get("/about")]
async fn about(state: web::Data<AppState>) -> ApiResult<web::Json<AboutResponse>> {
    let banners = banners::list_site_banners(&state.domain).await?;
    let config = &state.domain.config;
    Ok(web::Json(AboutResponse {
        description: DESCRIPTION.to_owned(),
        source_code: SOURCE_CODE.to_owned(),
        version: state.build.version.to_owned(),
        git_hash: state.build.git_hash.to_owned(),
        imprint: config.imprint.as_ref().map(ImprintResponse::from),
        terms_of_services: config
            .terms_of_services
            .iter()
            .map(|(id, tos)| (*id, TosResponse::from(tos)))
            .collect(),
        job_retention_in_days: config.cleanup.finished_job_retention_in_days,
        site_banners: banners.iter().map(SiteBannerResponse::from).collect(),
    }))
}

/// Which ways to sign in this instance offers, and whether users of each may
/// create API tokens.
#[utoipa::path(
    tag = "general",
    operation_id = "general-auth_settings",
    responses((status = 200, body = AuthSettingsResponse))
)]
#[get("/auth_settings")]
async fn auth_settings(state: web::Data<AppState>) -> web::Json<AuthSettingsResponse> {
    web::Json(AuthSettingsResponse::from(state.domain.config.as_ref()))
}

impl From<&config::ImprintConfig> for ImprintResponse {
    fn from(imprint: &config::ImprintConfig) -> Self {
        ImprintResponse {
            name: imprint.name.clone(),
            email: imprint.email.clone().map(EmailValidated),
            url: imprint.url.clone(),
            additional_imprint_html: imprint.additional_imprint_html.clone(),
        }
    }
}

impl From<&config::TosConfig> for TosResponse {
    fn from(tos: &config::TosConfig) -> Self {
        TosResponse {
            name: tos.name.clone(),
            version: tos.version,
            tos_html: tos.tos_html.clone(),
        }
    }
}

impl From<&SiteBanner> for SiteBannerResponse {
    fn from(banner: &SiteBanner) -> Self {
        SiteBannerResponse {
            id: banner.id,
            html: banner.html.clone(),
            urgency: banner.urgency,
        }
    }
}

impl From<&Config> for AuthSettingsResponse {
    fn from(config: &Config) -> Self {
        let local = &config.security.local_account;
        AuthSettingsResponse {
            local_account: LocalAccountResponse {
                mode: local.mode.into(),
                allowed_email_domains: local.allowed_email_domains.clone(),
                allow_creation_of_api_tokens: local.allow_creation_of_api_tokens,
            },
            oidc_providers: config
                .security
                .oidc_providers
                .iter()
                .map(|(name, provider)| {
                    (
                        name.clone(),
                        ProviderResponse {
                            hidden: provider.hidden,
                            icon_url: provider.icon_url.clone(),
                            allow_creation_of_api_tokens: provider.allow_creation_of_api_tokens,
                        },
                    )
                })
                .collect(),
            ldap_providers: config
                .security
                .ldap_providers
                .iter()
                .map(|(name, provider)| {
                    (
                        name.clone(),
                        ProviderResponse {
                            hidden: provider.hidden,
                            icon_url: provider.icon_url.clone(),
                            allow_creation_of_api_tokens: provider.allow_creation_of_api_tokens,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl From<config::LocalAccountMode> for LocalAccountOperationModeEnum {
    fn from(mode: config::LocalAccountMode) -> Self {
        match mode {
            config::LocalAccountMode::Disabled => LocalAccountOperationModeEnum::Disabled,
            config::LocalAccountMode::NoSignupHidden => {
                LocalAccountOperationModeEnum::NoSignupHidden
            }
            config::LocalAccountMode::NoSignup => LocalAccountOperationModeEnum::NoSignup,
            config::LocalAccountMode::Enabled => LocalAccountOperationModeEnum::Enabled,
        }
    }
}
