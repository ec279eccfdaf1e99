//! Delivery of one message: over SMTP with lettre, or into the log when no SMTP
//! server is configured (the embedded default; tests read links from there).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::OutgoingMail;
use crate::config::{SmtpConfig, SmtpSecurity};

/// Why a delivery failed. `permanent` failures are not worth retrying: the
/// message itself can't be built (e.g. an address that doesn't parse).
#[derive(Debug)]
pub(crate) struct SendError {
    pub message: String,
    pub permanent: bool,
}

impl SendError {
    fn permanent(message: String) -> Self {
        SendError {
            message,
            permanent: true,
        }
    }
}

pub(crate) enum Delivery {
    Smtp(Box<SmtpDelivery>),
    Log,
}

impl Delivery {
    pub async fn send(&self, id: i64, mail: &OutgoingMail) -> Result<(), SendError> {
        match self {
            Delivery::Smtp(smtp) => smtp.send(mail).await,
            Delivery::Log => {
                tracing::info!(
                    mail_id = id,
                    to = %mail.to.join(", "),
                    bcc = %mail.bcc.join(", "),
                    subject = %mail.subject,
                    body = %mail.body,
                    "mail"
                );
                Ok(())
            }
        }
    }
}

pub(crate) struct SmtpDelivery {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
}

impl SmtpDelivery {
    /// `timeout` bounds the connection and each SMTP command.
    pub fn new(config: &SmtpConfig, timeout: Duration) -> Result<Self, String> {
        let sender: Mailbox = config
            .sender_email
            .parse()
            .map_err(|err| format!("smtp_server.sender_email: {err}"))?;
        let host = config.hostname.as_str();
        let builder = match config.secure {
            // Project-W's `plain`: no TLS at all.
            SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            // STARTTLS is required, never skipped when the server doesn't offer it.
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|err| format!("smtp_server.hostname: {err}"))?,
            // TLS from the first byte.
            SmtpSecurity::Ssl => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|err| format!("smtp_server.hostname: {err}"))?,
        };
        let mut builder = builder.port(config.port).timeout(Some(timeout));
        // Like Project-W: authenticate only when both are given.
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().clone(),
            ));
        }
        Ok(SmtpDelivery {
            transport: builder.build(),
            sender,
        })
    }

    fn message(&self, mail: &OutgoingMail) -> Result<Message, SendError> {
        let parse = |address: &String| {
            address
                .parse::<Mailbox>()
                .map_err(|err| SendError::permanent(format!("bad address {address:?}: {err}")))
        };
        // Like Project-W: the Message-ID names the sender's domain, not the
        // (often meaningless, in containers) host name.
        let message_id = format!(
            "<{}.scribe@{}>",
            hex::encode(rand::random::<[u8; 16]>()),
            self.sender.email.domain()
        );
        let mut builder = Message::builder()
            .message_id(Some(message_id))
            .from(self.sender.clone())
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &mail.to {
            builder = builder.to(parse(to)?);
        }
        // lettre puts Bcc into the envelope only and drops the header.
        for bcc in &mail.bcc {
            builder = builder.bcc(parse(bcc)?);
        }
        builder
            .body(mail.body.clone())
            .map_err(|err| SendError::permanent(format!("building the message: {err}")))
    }

    async fn send(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        let message = self.message(mail)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            // SMTP errors, permanent ones (5xx) included, are retried: a 5xx is
            // often a misconfiguration (credentials, relay policy) fixed later.
            .map_err(|err| SendError {
                message: err.to_string(),
                permanent: false,
            })
    }
}
