//! A small SMTP server for tests: it listens on 127.0.0.1 (any free port), speaks
//! enough SMTP for lettre without TLS (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) and keeps every message it accepts, so tests can read
//! links out of real mails delivered over TCP.
//!
//! ```ignore
//! let sink = SmtpSink::start().await;
//! // config: smtp_server { hostname: 127.0.0.1, port: sink.port(), secure: plain, sender_email: .. }
//! let mail = sink.wait_for(|m| m.recipients.contains(&email), Duration::from_secs(10)).await.unwrap();
//! let link = mail.link("http://localhost:5173/#/local/activate?token=").unwrap();
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One accepted message.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// Envelope sender (`MAIL FROM`).
    pub from: String,
    /// Envelope recipients (`RCPT TO`): To, Cc and Bcc alike.
    pub recipients: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, CRLF line ends.
    pub data: String,
    /// Headers in order, unfolded; values as sent (not RFC 2047-decoded).
    pub headers: Vec<(String, String)>,
    /// The `Subject` header, RFC 2047 encoded words decoded.
    pub subject: String,
    /// The body with its transfer encoding (quoted-printable, base64) undone and
    /// line ends turned into `\n`.
    pub body: String,
    /// `(username, password)` if the client authenticated on this connection.
    pub auth: Option<(String, String)>,
}

impl ReceivedMail {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first whitespace-delimited word of the body that starts with `prefix`,
    /// e.g. `mail.link("http://localhost:5173/#/local/activate?token=")`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let start = self.body.find(prefix)?;
        let rest = &self.body[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }

    /// What follows `prefix` in the body up to the next whitespace: the token of
    /// a link, e.g. `mail.token_after("/local/activate?token=")`.
    pub fn token_after(&self, prefix: &str) -> Option<String> {
        let start = self.body.find(prefix)? + prefix.len();
        let rest = &self.body[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    /// `DATA` commands still to refuse with 451.
    fail_next: AtomicUsize,
    /// `DATA` commands refused so far.
    refused: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    /// Number of messages received; waiters watch it.
    count: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Binds 127.0.0.1:0 and serves in the background. The port is bound when this
    /// returns, so a client can connect at once.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let port = listener.local_addr().expect("the sink's address").port();
        let shared = Arc::new(Shared::default());
        let (count_tx, count) = watch::channel(0);
        let task = tokio::spawn(serve(listener, shared.clone(), Arc::new(count_tx)));
        SmtpSink {
            port,
            shared,
            count,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// The next `n` deliveries are refused with `451` (a transient error) at `DATA`.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many deliveries were refused by [`SmtpSink::fail_next`].
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The first message (received before or during the wait) that matches, or
    /// `None` after `timeout`.
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut(&ReceivedMail) -> bool,
        timeout: Duration,
    ) -> Option<ReceivedMail> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            count.borrow_and_update();
            if let Some(found) = self.messages().into_iter().find(|m| predicate(m)) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, count.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the server task is gone.
                _ => return None,
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts the sessions.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, count: Arc<watch::Sender<usize>>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (shared, count) = (shared.clone(), count.clone());
                sessions.spawn(async move {
                    // A client hanging up mid-session is not the sink's problem.
                    let _ = session(stream, &shared, &count).await;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// A transaction in progress on one connection.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    recipients: Vec<String>,
}

async fn session(
    stream: TcpStream,
    shared: &Shared,
    count: &watch::Sender<usize>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut envelope = Envelope::default();
    let mut auth: Option<(String, String)> = None;
    write
        .write_all(b"220 scribe-test-sink ESMTP ready\r\n")
        .await?;
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim().to_owned()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                b"250-scribe-test-sink\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 52428800\r\n"
            }
            "HELO" => {
                envelope = Envelope::default();
                b"250 scribe-test-sink\r\n"
            }
            "AUTH" => match authenticate(&arg, &mut reader, &mut write).await? {
                Some(credentials) => {
                    auth = Some(credentials);
                    b"235 2.7.0 Authentication successful\r\n"
                }
                None => b"501 5.5.4 Malformed AUTH\r\n",
            },
            "MAIL" => match path_after(&arg, "FROM:") {
                Some(from) => {
                    envelope = Envelope {
                        from: Some(from),
                        recipients: Vec::new(),
                    };
                    b"250 2.1.0 OK\r\n"
                }
                None => b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&envelope.from, path_after(&arg, "TO:")) {
                (None, _) => b"503 5.5.1 MAIL first\r\n",
                (Some(_), Some(to)) => {
                    envelope.recipients.push(to);
                    b"250 2.1.5 OK\r\n"
                }
                (Some(_), None) => b"501 5.5.4 Syntax: RCPT TO:<address>\r\n",
            },
            "DATA" => {
                if envelope.recipients.is_empty() {
                    b"503 5.5.1 RCPT first\r\n"
                } else if take_one(&shared.fail_next) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    envelope = Envelope::default();
                    b"451 4.3.0 Try again later (test sink)\r\n"
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let Some(data) = read_data(&mut reader).await? else {
                        return Ok(());
                    };
                    let envelope = std::mem::take(&mut envelope);
                    let mail = parse_mail(envelope, data, auth.clone());
                    let total = {
                        let mut messages = shared.messages.lock().unwrap();
                        messages.push(mail);
                        messages.len()
                    };
                    count.send_replace(total);
                    b"250 2.0.0 OK queued\r\n"
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Decrements `counter` if it is positive; true if it did.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// One command line without its line end; `None` at end of stream.
async fn read_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// The message after `354`, up to the lone `.`, dot-unstuffed; lines end in CRLF.
async fn read_data(reader: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(reader).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

/// `AUTH PLAIN [initial]` or `AUTH LOGIN [initial]`; any credentials are accepted.
async fn authenticate(
    arg: &str,
    reader: &mut (impl AsyncBufReadExt + Unpin),
    write: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<Option<(String, String)>> {
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((mechanism, initial)) => (
            mechanism.to_ascii_uppercase(),
            Some(initial.trim().to_owned()),
        ),
        None => (arg.to_ascii_uppercase(), None),
    };
    let mut ask = async |prompt: &[u8]| -> std::io::Result<Option<String>> {
        write.write_all(prompt).await?;
        read_line(reader).await
    };
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(initial) => initial,
                None => match ask(b"334 \r\n").await? {
                    Some(line) => line,
                    None => return Ok(None),
                },
            };
            let Some(decoded) = decode_base64(&response) else {
                return Ok(None);
            };
            // authzid NUL authcid NUL password
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            match parts.as_slice() {
                [_, user, password] => Ok(Some((
                    String::from_utf8_lossy(user).into_owned(),
                    String::from_utf8_lossy(password).into_owned(),
                ))),
                _ => Ok(None),
            }
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => initial,
                // "Username:"
                None => match ask(b"334 VXNlcm5hbWU6\r\n").await? {
                    Some(line) => line,
                    None => return Ok(None),
                },
            };
            // "Password:"
            let Some(password) = ask(b"334 UGFzc3dvcmQ6\r\n").await? else {
                return Ok(None);
            };
            match (decode_base64(&user), decode_base64(&password)) {
                (Some(user), Some(password)) => Ok(Some((
                    String::from_utf8_lossy(&user).into_owned(),
                    String::from_utf8_lossy(&password).into_owned(),
                ))),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// The address in `FROM:<a@b> SIZE=…` / `TO:<a@b>`.
fn path_after(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let path = rest.split_whitespace().next().unwrap_or("");
    let path = path.strip_prefix('<')?.strip_suffix('>')?;
    Some(path.to_owned())
}

fn parse_mail(envelope: Envelope, data: String, auth: Option<(String, String)>) -> ReceivedMail {
    let (head, raw_body) = match data.split_once("\r\n\r\n") {
        Some((head, body)) => (head, body),
        None => (data.as_str(), ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the previous header.
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let subject = header("Subject")
        .map(|s| decode_words(&s))
        .unwrap_or_default();
    let encoding = header("Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body_bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(raw_body),
        "base64" => decode_base64(raw_body).unwrap_or_else(|| raw_body.as_bytes().to_vec()),
        _ => raw_body.as_bytes().to_vec(),
    };
    let body = String::from_utf8_lossy(&body_bytes).replace("\r\n", "\n");
    ReceivedMail {
        from: envelope.from.unwrap_or_default(),
        recipients: envelope.recipients,
        data,
        headers,
        subject,
        body,
        auth,
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 2045 quoted-printable: `=XX` escapes and `=` soft line breaks.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if bytes[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Standard base64, whitespace ignored; `None` if it isn't base64.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        buffer = buffer << 6 | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value;
/// whitespace between two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let Some((decoded, len)) = decode_word(candidate) else {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            after_word = false;
            continue;
        };
        if !(after_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&decoded);
        rest = &candidate[len..];
        after_word = true;
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `text`: its decoded text and its length.
fn decode_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let mut parts = inner.splitn(3, '?');
    let _charset = parts.next()?;
    let encoding = parts.next()?;
    let tail = parts.next()?;
    let end = tail.find("?=")?;
    let payload = &tail[..end];
    let bytes = match encoding {
        "b" | "B" => decode_base64(payload)?,
        "q" | "Q" => decode_quoted_printable(&payload.replace('_', " ")),
        _ => return None,
    };
    let len = 2 + (inner.len() - tail.len()) + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_transfer_and_header_encodings() {
        assert_eq!(
            decode_quoted_printable("a=3Db=\r\nc =C3=A4\r\n"),
            "a=bc ä\r\n".as_bytes()
        );
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(
            decode_words("=?utf-8?b?w6Rw?= =?utf-8?q?fel_x?= tail"),
            "äpfel x tail"
        );
        assert_eq!(decode_words("plain =? text"), "plain =? text");
        assert_eq!(
            path_after("FROM:<a@b> SIZE=10", "FROM:"),
            Some("a@b".into())
        );
        assert_eq!(path_after("to: <c@d>", "TO:"), Some("c@d".into()));
    }

    #[tokio::test]
    async fn speaks_smtp_and_keeps_the_message() {
        let sink = SmtpSink::start().await;
        let stream = TcpStream::connect(("127.0.0.1", sink.port()))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut expect = async |send: &str, code: &str| {
            if !send.is_empty() {
                write.write_all(send.as_bytes()).await.unwrap();
            }
            // Multi-line replies: read until "<code> ".
            loop {
                let line = read_line(&mut reader).await.unwrap().unwrap();
                assert!(line.starts_with(code), "{send:?} got {line:?}");
                if line.as_bytes().get(3) == Some(&b' ') {
                    break;
                }
            }
        };
        expect("", "220").await;
        expect("EHLO client\r\n", "250").await;
        expect("AUTH PLAIN AHVzZXIAcHc=\r\n", "235").await;
        expect("MAIL FROM:<from@example.org>\r\n", "250").await;
        expect("RCPT TO:<to@example.org>\r\n", "250").await;
        expect("RCPT TO:<bcc@example.org>\r\n", "250").await;
        expect("DATA\r\n", "354").await;
        expect(
            "Subject: Hi\r\n there\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n..dot =\r\nline\r\n.\r\n",
            "250",
        )
        .await;
        sink.fail_next(1);
        expect("MAIL FROM:<from@example.org>\r\n", "250").await;
        expect("RCPT TO:<to@example.org>\r\n", "250").await;
        expect("DATA\r\n", "451").await;
        expect("QUIT\r\n", "221").await;

        let mail = sink
            .wait_for(|m| m.subject == "Hi there", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(mail.from, "from@example.org");
        assert_eq!(mail.recipients, ["to@example.org", "bcc@example.org"]);
        assert_eq!(mail.body, ".dot line\n");
        assert_eq!(mail.auth, Some(("user".into(), "pw".into())));
        assert_eq!(sink.refused(), 1);
        assert_eq!(sink.messages().len(), 1);
        assert!(sink
            .wait_for(|m| m.subject == "nope", Duration::from_millis(50))
            .await
            .is_none());
    }
}
