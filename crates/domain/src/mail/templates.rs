//! Plain-text mail templates. Each returns `(subject, body)`.
//!
//! Links are plain concatenation onto `client_url`, with no slash normalising:
//! it usually ends in `/#` because the frontend uses hash routing (SPEC §3.10),
//! and Project-W's frontend expects exactly these paths.

/// Link tokens are valid this long (SPEC §3.2); the texts say so.
const LINK_LIFETIME: &str = "24 hours";

fn activation_link(client_url: &str, token: &str) -> String {
    format!("{client_url}/local/activate?token={token}")
}

fn password_reset_link(client_url: &str, token: &str) -> String {
    format!("{client_url}/auth/local/reset-password?token={token}")
}

fn home_link(client_url: &str) -> String {
    format!("{client_url}/")
}

/// Sent after sign-up and by `resend_activation_email`.
pub fn activation(client_url: &str, token: &str) -> (String, String) {
    let link = activation_link(client_url, token);
    (
        "Activate your Scribe account".to_owned(),
        format!(
            "Welcome to Scribe!\n\
             \n\
             Please confirm your email address by opening this link:\n\
             \n\
             {link}\n\
             \n\
             The link works once and expires in {LINK_LIFETIME}. After that you can \
             request a new one on the website.\n\
             \n\
             If you didn't sign up for Scribe, you can ignore this email.\n"
        ),
    )
}

/// Sent to the new address when a user changes their email; the change takes
/// effect when the link is opened.
pub fn email_change_confirmation(client_url: &str, token: &str) -> (String, String) {
    let link = activation_link(client_url, token);
    (
        "Confirm your new email address for Scribe".to_owned(),
        format!(
            "Hello,\n\
             \n\
             someone asked to use this address for their Scribe account. To confirm \
             the change, open this link:\n\
             \n\
             {link}\n\
             \n\
             Until then the account keeps its old address. The link works once and \
             expires in {LINK_LIFETIME}; after that the change has to be requested \
             again on the website.\n\
             \n\
             If you don't have a Scribe account or didn't ask for this, you can \
             ignore this email.\n"
        ),
    )
}

/// Sent by `request_password_reset`.
pub fn password_reset(client_url: &str, token: &str) -> (String, String) {
    let link = password_reset_link(client_url, token);
    (
        "Reset your Scribe password".to_owned(),
        format!(
            "Hello,\n\
             \n\
             to choose a new password for your Scribe account, open this link:\n\
             \n\
             {link}\n\
             \n\
             The link works once and expires in {LINK_LIFETIME}. After that you can \
             request a new one on the website.\n\
             \n\
             If you didn't ask for a password reset, you can ignore this email: \
             your password stays as it is.\n"
        ),
    )
}

/// An admin's message to every user (`send_email_to_all_users`): their text
/// as written, with a short footer saying why it arrived.
pub fn broadcast(subject: &str, body: &str) -> (String, String) {
    (
        subject.to_owned(),
        format!(
            "{body}\n\
             \n\
             -- \n\
             You receive this message from the administrators of the Scribe \
             instance you have an account on.\n"
        ),
    )
}

/// A transcription finished.
pub fn job_succeeded(client_url: &str, job_id: i64, file_name: &str) -> (String, String) {
    let link = home_link(client_url);
    (
        format!("Scribe: your transcript of {file_name} is ready"),
        format!(
            "Hello,\n\
             \n\
             your Scribe job {job_id} ({file_name}) has finished successfully.\n\
             \n\
             You can download the transcript with the download button next to the \
             job here:\n\
             \n\
             {link}\n"
        ),
    )
}

/// A transcription failed (or was aborted).
pub fn job_failed(
    client_url: &str,
    job_id: i64,
    file_name: &str,
    error_msg: &str,
) -> (String, String) {
    let link = home_link(client_url);
    (
        format!("Scribe: your job for {file_name} failed"),
        format!(
            "Hello,\n\
             \n\
             unfortunately your Scribe job {job_id} ({file_name}) failed with this \
             error:\n\
             \n\
             {error_msg}\n\
             \n\
             You can submit the file again after checking the job settings, with \
             the 'New Job' button here:\n\
             \n\
             {link}\n"
        ),
    )
}

/// The inactivity cleanup (SPEC §3.10) will delete the account in `days_left` days.
pub fn account_deletion_warning(client_url: &str, days_left: i64) -> (String, String) {
    let link = home_link(client_url);
    let days = if days_left == 1 { "day" } else { "days" };
    (
        format!("Scribe: your account will be deleted in {days_left} {days}"),
        format!(
            "Hello,\n\
             \n\
             you haven't used your account on the Scribe transcription service at \
             {link} for a while.\n\
             \n\
             Inactive accounts are deleted automatically. If you want to keep yours, \
             please log in within the next {days_left} {days}; otherwise the account \
             and all its data will be deleted.\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_URL: &str = "https://scribe.example.org/#";

    #[test]
    fn activation_link_is_plain_concatenation() {
        let (subject, body) = activation(CLIENT_URL, "abc.DEF-123");
        assert!(subject.contains("Scribe"));
        assert!(body.contains("\nhttps://scribe.example.org/#/local/activate?token=abc.DEF-123\n"));
    }

    #[test]
    fn email_change_uses_the_activation_path() {
        let (_, body) = email_change_confirmation(CLIENT_URL, "tok");
        assert!(body.contains("\nhttps://scribe.example.org/#/local/activate?token=tok\n"));
    }

    #[test]
    fn password_reset_link_is_plain_concatenation() {
        let (_, body) = password_reset(CLIENT_URL, "tok");
        assert!(
            body.contains("\nhttps://scribe.example.org/#/auth/local/reset-password?token=tok\n")
        );
    }

    #[test]
    fn no_slash_normalising_even_with_a_trailing_slash() {
        let (_, body) = activation("http://localhost:5173/", "t");
        assert!(body.contains("http://localhost:5173//local/activate?token=t"));
    }

    #[test]
    fn job_and_account_mails_link_the_client_root() {
        let (subject, body) = job_succeeded(CLIENT_URL, 42, "talk.mp3");
        assert!(subject.contains("talk.mp3"));
        assert!(body.contains("job 42"));
        assert!(body.contains("\nhttps://scribe.example.org/#/\n"));

        let (_, body) = job_failed(CLIENT_URL, 7, "x.wav", "out of memory");
        assert!(body.contains("\nout of memory\n"));
        assert!(body.contains("\nhttps://scribe.example.org/#/\n"));

        let (subject, body) = account_deletion_warning(CLIENT_URL, 30);
        assert!(subject.contains("30 days"));
        assert!(body.contains("https://scribe.example.org/#/ "));
        assert!(body.contains("next 30 days"));
        assert!(account_deletion_warning(CLIENT_URL, 1).0.contains("1 day"));
    }

    #[test]
    fn broadcast_keeps_the_admins_text() {
        let (subject, body) = broadcast("Maintenance", "Down on Sunday.\nSorry!");
        assert_eq!(subject, "Maintenance");
        assert!(body.starts_with("Down on Sunday.\nSorry!\n\n-- \n"));
    }
}
