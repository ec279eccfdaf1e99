//! The tokens in mailed links (activation, email change, password reset).
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(payload))`, the
//! key derived from the instance's secret key for this one use. The payload
//! binds the purpose, the user, the address the link was sent for (and the new
//! one, for an email change), an expiry and the user's link generation for
//! that purpose. Issuing or using a link raises the generation, so a used or
//! superseded link no longer matches (single use) without storing any token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret_key::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// How long a mailed link works (SPEC §3.2).
pub const LINK_LIFETIME: Duration = Duration::hours(24);

/// Separates link keys from every other key derived from the secret key.
const KEY_DERIVATION_LABEL: &[u8] = b"scribe link v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkPurpose {
    /// Verify the address of a new account (sign-up, resend).
    #[serde(rename = "activate")]
    Activation,
    /// Move an account to a new address; used through `activate` as well.
    #[serde(rename = "email")]
    EmailChange,
    #[serde(rename = "reset")]
    PasswordReset,
}

/// What a link token says, once its signature and expiry are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    #[serde(rename = "p")]
    pub purpose: LinkPurpose,
    #[serde(rename = "u")]
    pub user_id: i64,
    /// The user's generation counter for this purpose when the link was issued.
    #[serde(rename = "g")]
    pub generation: i64,
    /// The account's address when the link was issued.
    #[serde(rename = "e")]
    pub email: String,
    /// The address to switch to (email change only).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub new_email: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(rename = "x")]
    pub expires: i64,
}

impl LinkClaims {
    pub fn new(
        purpose: LinkPurpose,
        user_id: i64,
        generation: i64,
        email: &str,
        new_email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        LinkClaims {
            purpose,
            user_id,
            generation,
            email: email.to_owned(),
            new_email: new_email.map(str::to_owned),
            expires: (now + LINK_LIFETIME).timestamp(),
        }
    }
}

/// Why a link token was refused; all of them are a 401 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not a token, or not signed with this instance's key.
    Invalid,
    /// Signed, but for another purpose.
    WrongPurpose,
    Expired,
}

/// An HMAC keyed with 32 bytes. HMAC pads a key shorter than the hash's block
/// with zeros, so the key in a zeroed block is the same key, and `new` on a
/// whole block can't fail (unlike `new_from_slice`).
fn keyed(key: &[u8]) -> HmacSha256 {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    let len = key.len().min(block.len());
    block[..len].copy_from_slice(&key[..len]);
    <HmacSha256 as KeyInit>::new(&block)
}

/// The link key: HMAC(secret key, label), so links can't be confused with
/// anything else the secret key protects.
fn mac(secret: &SecretKey) -> HmacSha256 {
    let derived = keyed(secret.as_bytes())
        .chain_update(KEY_DERIVATION_LABEL)
        .finalize()
        .into_bytes();
    keyed(&derived)
}

/// Signs `claims` into a URL-safe token.
pub fn sign(secret: &SecretKey, claims: &LinkClaims) -> String {
    // Serialising plain strings and integers can't fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let signature = mac(secret).chain_update(payload.as_bytes()).finalize();
    format!(
        "{payload}.{}",
        URL_SAFE_NO_PAD.encode(signature.into_bytes())
    )
}

/// Checks signature, purpose and expiry. The generation and the user are the
/// caller's to check against the database.
pub fn verify(
    secret: &SecretKey,
    token: &str,
    accepted: &[LinkPurpose],
    now: DateTime<Utc>,
) -> Result<LinkClaims, LinkError> {
    let (payload, signature) = token.trim().split_once('.').ok_or(LinkError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| LinkError::Invalid)?;
    // `verify_slice` compares in constant time.
    mac(secret)
        .chain_update(payload.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| LinkError::Invalid)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LinkError::Invalid)?;
    let claims: LinkClaims = serde_json::from_slice(&payload).map_err(|_| LinkError::Invalid)?;
    if !accepted.contains(&claims.purpose) {
        return Err(LinkError::WrongPurpose);
    }
    if now.timestamp() >= claims.expires {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    fn claims(now: DateTime<Utc>) -> LinkClaims {
        LinkClaims::new(
            LinkPurpose::EmailChange,
            7,
            3,
            "old@example.org",
            Some("new@example.org"),
            now,
        )
    }

    #[test]
    fn round_trips_within_a_day() {
        let now = Utc::now();
        let token = sign(&key(1), &claims(now));
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        let accepted = [LinkPurpose::Activation, LinkPurpose::EmailChange];
        assert_eq!(
            verify(&key(1), &token, &accepted, now).unwrap(),
            claims(now)
        );
        let almost = now + LINK_LIFETIME - Duration::seconds(2);
        assert!(verify(&key(1), &token, &accepted, almost).is_ok());
        assert_eq!(
            verify(&key(1), &token, &accepted, now + LINK_LIFETIME),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn refuses_other_keys_purposes_and_tampering() {
        let now = Utc::now();
        let token = sign(&key(1), &claims(now));
        let accepted = [LinkPurpose::EmailChange];
        assert_eq!(
            verify(&key(2), &token, &accepted, now),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            verify(&key(1), &token, &[LinkPurpose::PasswordReset], now),
            Err(LinkError::WrongPurpose)
        );
        // A payload naming another user, with the old signature.
        let (_, signature) = token.split_once('.').unwrap();
        let mut forged = claims(now);
        forged.user_id = 1;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged = format!("{forged_payload}.{signature}");
        assert_eq!(
            verify(&key(1), &forged, &accepted, now),
            Err(LinkError::Invalid)
        );
        for garbage in ["", ".", "abc", "abc.def", "a.b.c", "!!!.???"] {
            assert_eq!(
                verify(&key(1), garbage, &accepted, now),
                Err(LinkError::Invalid),
                "{garbage}"
            );
        }
    }
}
