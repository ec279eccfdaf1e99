//! Email addresses as Project-W accepts and stores them (python-email-validator
//! without a deliverability check): one `@`, a dot-atom local part, a domain
//! of letter/digit/hyphen labels with a dot. Normalising lowercases the domain
//! and keeps the local part as written, so `Jane@Example.ORG` is stored as
//! `Jane@example.org` and differs from `jane@example.org` (SPEC §3.10).
//!
//! Messages are email-validator's, since pydantic puts them into Project-W's
//! 422 answers.

use std::fmt;

use crate::error::{DomainError, Violation};

/// Longest address (RFC 5321 forward path less the angle brackets).
const MAX_LENGTH: usize = 254;
const MAX_LOCAL_LENGTH: usize = 64;
const MAX_LABEL_LENGTH: usize = 63;
/// Domains email-validator refuses as special-use or reserved (RFC 6761 and
/// friends), and their subdomains. Scribe accepts them where an address is
/// only looked up (so its initial `admin@localhost` can log in) but refuses
/// them as a new account's address, as Project-W does.
const SPECIAL_USE_DOMAINS: &[&str] = &["arpa", "invalid", "local", "localhost", "onion", "test"];
/// Characters allowed in a local part besides letters and digits (RFC 5322 atext).
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// A syntactically valid, normalised email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    normalized: String,
    at: usize,
}

/// Why a text is not an email address; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailError(String);

impl fmt::Display for EmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmailError {}

impl EmailError {
    fn new(message: impl Into<String>) -> Self {
        EmailError(message.into())
    }

    /// The 422 item for this problem at `["body", field]`, as pydantic words it.
    pub fn violation(&self, field: &str) -> Violation {
        Violation::new(
            ["body".into(), field.into()],
            format!("Value error, {}", self.0),
            "value_error",
        )
    }

    /// A 422 answer for this problem at `["body", field]`.
    pub fn into_validation(self, field: &str) -> DomainError {
        DomainError::Validation(vec![self.violation(field)])
    }
}

impl EmailAddress {
    /// Checks the syntax and normalises. Special-use domains such as
    /// `localhost` are accepted: use this to look an address up.
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let Some(at) = text.rfind('@') else {
            return Err(EmailError::new("An email address must have an @-sign."));
        };
        let (local, domain) = (&text[..at], &text[at + 1..]);
        if local.is_empty() {
            return Err(EmailError::new(
                "There must be something before the @-sign.",
            ));
        }
        if domain.is_empty() {
            return Err(EmailError::new("There must be something after the @-sign."));
        }
        check_local_part(local)?;
        let domain = normalise_domain(domain)?;
        let normalized = format!("{local}@{domain}");
        let length = normalized.chars().count();
        if length > MAX_LENGTH {
            return Err(EmailError::new(format!(
                "The email address is too long ({} characters too many).",
                length - MAX_LENGTH
            )));
        }
        Ok(EmailAddress {
            at: local.len(),
            normalized,
        })
    }

    /// [`parse`](Self::parse), and also refuses special-use domains: for an
    /// address a user chooses (sign-up, email change).
    pub fn parse_new(text: &str) -> Result<Self, EmailError> {
        let address = Self::parse(text)?;
        let domain = address.domain();
        if SPECIAL_USE_DOMAINS
            .iter()
            .any(|special| domain == *special || domain.ends_with(&format!(".{special}")))
        {
            return Err(EmailError::new(
                "The part after the @-sign is a special-use or reserved name that cannot be used \
                 with email.",
            ));
        }
        Ok(address)
    }

    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    pub fn local_part(&self) -> &str {
        &self.normalized[..self.at]
    }

    /// The lower-cased domain.
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }

    pub fn into_string(self) -> String {
        self.normalized
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

fn check_local_part(local: &str) -> Result<(), EmailError> {
    let length = local.chars().count();
    if length > MAX_LOCAL_LENGTH {
        return Err(EmailError::new(format!(
            "The email address is too long before the @-sign ({} characters too many).",
            length - MAX_LOCAL_LENGTH
        )));
    }
    let mut invalid: Vec<String> = local
        .chars()
        .filter(|&c| {
            !(c.is_ascii_alphanumeric()
                || ATEXT_SPECIALS.contains(c)
                || c == '.'
                || (!c.is_ascii() && (c.is_alphanumeric() || is_unicode_symbol_ok(c))))
        })
        .map(describe_char)
        .collect();
    invalid.dedup();
    if !invalid.is_empty() {
        return Err(EmailError::new(format!(
            "The email address contains invalid characters before the @-sign: {}.",
            invalid.join(", ")
        )));
    }
    if local.starts_with('.') {
        return Err(EmailError::new(
            "An email address cannot start with a period.",
        ));
    }
    if local.ends_with('.') {
        return Err(EmailError::new(
            "An email address cannot have a period immediately before the @-sign.",
        ));
    }
    if local.contains("..") {
        return Err(EmailError::new(
            "An email address cannot have two periods in a row.",
        ));
    }
    Ok(())
}

/// Non-ASCII characters that internationalised local parts may hold beyond
/// letters and digits: marks and symbols, but no spaces or controls.
fn is_unicode_symbol_ok(c: char) -> bool {
    !c.is_whitespace() && !c.is_control()
}

fn describe_char(c: char) -> String {
    if c == ' ' {
        "SPACE".to_owned()
    } else if c.is_whitespace() || c.is_control() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

fn normalise_domain(domain: &str) -> Result<String, EmailError> {
    let domain = domain.to_lowercase();
    if domain.starts_with('.') {
        return Err(EmailError::new(
            "An email address cannot have a period immediately after the @-sign.",
        ));
    }
    if domain.ends_with('.') {
        return Err(EmailError::new(
            "An email address cannot end with a period.",
        ));
    }
    if domain.contains("..") {
        return Err(EmailError::new(
            "An email address cannot have two periods in a row.",
        ));
    }
    let mut invalid: Vec<String> = domain
        .chars()
        .filter(|&c| !(c.is_alphanumeric() || c == '-' || c == '.'))
        .map(describe_char)
        .collect();
    invalid.dedup();
    if !invalid.is_empty() {
        return Err(EmailError::new(format!(
            "The part after the @-sign contains invalid characters: {}.",
            invalid.join(", ")
        )));
    }
    for label in domain.split('.') {
        if label.starts_with('-') || label.ends_with('-') {
            return Err(EmailError::new(
                "The part after the @-sign is not valid. A label cannot start or end with a \
                 hyphen.",
            ));
        }
        if label.chars().count() > MAX_LABEL_LENGTH {
            return Err(EmailError::new(format!(
                "After the @-sign, periods cannot be separated by so many characters ({} \
                 characters too many).",
                label.chars().count() - MAX_LABEL_LENGTH
            )));
        }
    }
    if domain == "localhost" {
        return Ok(domain);
    }
    let Some((_, top_level)) = domain.rsplit_once('.') else {
        return Err(EmailError::new(
            "The part after the @-sign is not valid. It should have a period.",
        ));
    };
    if top_level.chars().all(|c| c.is_ascii_digit()) {
        return Err(EmailError::new(
            "The part after the @-sign is not valid. It is not within a valid top-level domain.",
        ));
    }
    Ok(domain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_domain_only() {
        let address = EmailAddress::parse("Jane.Doe+tag@Sub.Example.ORG").unwrap();
        assert_eq!(address.as_str(), "Jane.Doe+tag@sub.example.org");
        assert_eq!(address.local_part(), "Jane.Doe+tag");
        assert_eq!(address.domain(), "sub.example.org");
        assert_eq!(
            EmailAddress::parse("müller@Bücher.DE").unwrap().as_str(),
            "müller@bücher.de"
        );
    }

    #[test]
    fn refuses_bad_syntax_with_email_validators_words() {
        for (text, message) in [
            ("plain", "must have an @-sign"),
            ("@example.org", "something before the @-sign"),
            ("jane@", "something after the @-sign"),
            (
                "ja ne@example.org",
                "invalid characters before the @-sign: SPACE",
            ),
            (
                "a@b@example.org",
                "invalid characters before the @-sign: '@'",
            ),
            (".jane@example.org", "cannot start with a period"),
            ("jane.@example.org", "period immediately before the @-sign"),
            ("ja..ne@example.org", "two periods in a row"),
            ("jane@example", "It should have a period"),
            ("jane@.example.org", "period immediately after the @-sign"),
            ("jane@example.org.", "cannot end with a period"),
            ("jane@exa_mple.org", "invalid characters: '_'"),
            ("jane@-example.org", "start or end with a hyphen"),
            ("jane@1.2.3.4", "valid top-level domain"),
            ("jane@[1.2.3.4]", "invalid characters"),
        ] {
            let err = EmailAddress::parse(text).unwrap_err().to_string();
            assert!(err.contains(message), "{text}: {err}");
        }
        let long_local = format!("{}@example.org", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local)
            .unwrap_err()
            .to_string()
            .contains("1 characters too many"));
        let long = format!("a@{}.org", vec!["b".repeat(60); 5].join("."));
        assert!(EmailAddress::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("too long"));
    }

    #[test]
    fn special_use_domains_only_for_lookups() {
        assert!(EmailAddress::parse("admin@localhost").is_ok());
        assert!(EmailAddress::parse_new("admin@localhost").is_err());
        assert!(EmailAddress::parse_new("x@foo.test").is_err());
        assert!(EmailAddress::parse_new("x@example.org").is_ok());
    }

    #[test]
    fn violation_is_shaped_like_pydantics() {
        let err = EmailAddress::parse("nope").unwrap_err();
        let violation = err.violation("email");
        assert_eq!(violation.kind, "value_error");
        assert_eq!(
            violation.msg,
            "Value error, An email address must have an @-sign."
        );
    }
}
