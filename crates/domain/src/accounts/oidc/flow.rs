//! The login flow's state between `oidc/login` and `oidc/auth`, kept by the
//! browser in a short-lived cookie signed with a key derived from the secret
//! key (HMAC-SHA256 over the payload, as for mailed links): the `state` sent
//! to the provider, the ID token's expected `nonce`, the PKCE verifier and
//! the redirect URI. A callback must come back to the browser that started
//! the flow (the cookie) with the same `state`, and each `state` is accepted
//! once: its hash goes into `oidc_used_states`, shared by every replica.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entities::oidc_used_states;
use crate::error::DomainResult;
use crate::secret_key::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// The cookie's name.
pub const FLOW_COOKIE: &str = "scribe_oidc_flow";
/// How long a user may take at the provider's login page.
pub const FLOW_LIFETIME: Duration = Duration::minutes(10);

const KEY_LABEL: &[u8] = b"scribe oidc flow v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The provider's name in lower case.
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<String>,
    #[serde(rename = "r")]
    pub redirect_uri: String,
    /// Unix seconds.
    #[serde(rename = "x")]
    pub expires: i64,
}

/// Why a flow cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    Invalid,
    Expired,
}

fn mac(secret: &SecretKey) -> HmacSha256 {
    let mut derived = [0u8; 32];
    // The secret is uniformly random: no salt needed (RFC 5869 §3.1).
    Hkdf::<Sha256>::new(None, secret.as_bytes())
        .expand(KEY_LABEL, &mut derived)
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 can always expand to 32 bytes"));
    // A 32-byte key zero-padded to HMAC's block is the same key, and `new` on
    // a whole block can't fail.
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    block[..derived.len()].copy_from_slice(&derived);
    <HmacSha256 as KeyInit>::new(&block)
}

/// The cookie value for `flow`.
pub fn seal(secret: &SecretKey, flow: &Flow) -> String {
    // Serialising plain strings and integers can't fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(flow).unwrap_or_default());
    let signature = mac(secret).chain_update(payload.as_bytes()).finalize();
    format!(
        "{payload}.{}",
        URL_SAFE_NO_PAD.encode(signature.into_bytes())
    )
}

/// Checks the signature and the expiry of a cookie value.
pub fn open(secret: &SecretKey, cookie: &str, now: DateTime<Utc>) -> Result<Flow, FlowError> {
    let (payload, signature) = cookie.trim().split_once('.').ok_or(FlowError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| FlowError::Invalid)?;
    mac(secret)
        .chain_update(payload.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| FlowError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| FlowError::Invalid)?;
    let flow: Flow = serde_json::from_slice(&payload).map_err(|_| FlowError::Invalid)?;
    if now.timestamp() >= flow.expires {
        return Err(FlowError::Expired);
    }
    Ok(flow)
}

/// Marks `state` as used; `false` if it already was (a replayed response).
/// Rows of flows that expired are dropped on the way.
pub async fn consume(
    db: &impl ConnectionTrait,
    state: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DomainResult<bool> {
    oidc_used_states::Entity::delete_many()
        .filter(oidc_used_states::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?;
    let inserted = oidc_used_states::Entity::insert(oidc_used_states::ActiveModel {
        state_hash: Set(hex::encode(Sha256::digest(state.as_bytes()))),
        expires_at: Set(expires),
    })
    .exec(db)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(err) if super::super::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    fn flow(now: DateTime<Utc>) -> Flow {
        Flow {
            provider: "keycloak".to_owned(),
            state: "state-1".to_owned(),
            nonce: "nonce-1".to_owned(),
            pkce_verifier: Some("verifier".to_owned()),
            redirect_uri: "https://scribe.example.org/api/oidc/auth/keycloak".to_owned(),
            expires: (now + FLOW_LIFETIME).timestamp(),
        }
    }

    #[test]
    fn round_trips_until_it_expires() {
        let now = Utc::now();
        let sealed = seal(&key(1), &flow(now));
        assert_eq!(open(&key(1), &sealed, now).unwrap(), flow(now));
        assert_eq!(
            open(&key(1), &sealed, now + FLOW_LIFETIME),
            Err(FlowError::Expired)
        );
    }

    #[test]
    fn refuses_other_keys_and_tampering() {
        let now = Utc::now();
        let sealed = seal(&key(1), &flow(now));
        assert_eq!(open(&key(2), &sealed, now), Err(FlowError::Invalid));
        let (_, signature) = sealed.split_once('.').unwrap();
        let mut forged = flow(now);
        forged.state = "attacker".to_owned();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            open(&key(1), &format!("{payload}.{signature}"), now),
            Err(FlowError::Invalid)
        );
        for garbage in ["", ".", "abc", "a.b", "!!.??"] {
            assert_eq!(open(&key(1), garbage, now), Err(FlowError::Invalid));
        }
    }

    #[test]
    fn the_key_differs_from_the_link_key() {
        // A mailed link's token must never pass as a flow cookie.
        let now = Utc::now();
        let link = crate::links::sign(
            &key(1),
            &crate::links::LinkClaims::new(
                crate::links::LinkPurpose::Activation,
                1,
                0,
                "a@example.org",
                None,
                now,
            ),
        );
        assert_eq!(open(&key(1), &link, now), Err(FlowError::Invalid));
    }
}
