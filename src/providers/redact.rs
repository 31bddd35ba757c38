//! What upstream text may carry out of bkvy: never a configured secret, and in stored
//! copies never quoted content.
//!
//! Providers quote what they were sent in their error messages: an API key
//! (`Incorrect API key provided: sk-…`), or a piece of the prompt (`Invalid 'messages[0]':
//! "my private…"`). Two rules keep that inside:
//!
//! * **Secrets.** A [`Redactor`] is built from the loaded config: every key value of 8
//!   characters or more, and its URL-encoded form where that differs. Every upstream
//!   error is passed through it where it enters bkvy (the gateway's attempt loop for plain
//!   and streamed calls, the streamed answer after its first content, the health probe),
//!   so no answer, log line, status endpoint, dashboard or CSV row downstream ever sees a
//!   key. Each occurrence becomes `[redacted]`; so does the end of a message that stops
//!   partway into a key (messages are cut at 300 characters). The redactor lives in the
//!   live snapshot ([`crate::gateway::Upstreams`]) and is replaced with the config on a
//!   reload.
//! * **Content.** The caller may get its own upstream message back (keys redacted), but
//!   a copy that bkvy *stores* — the completion event's error message (CSV, dashboard),
//!   log lines, a key's disable reason, a probe's error — is cut by [`stored`] before the
//!   first quotation mark, so whatever the provider quoted of the request stays out.

use std::borrow::Cow;

use crate::config::Config;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest secret value redacted: shorter ones would match ordinary words.
pub const MIN_SECRET_CHARS: usize = 8;

/// Shortest end of a message taken for the start of a cut-off secret.
const MIN_PARTIAL_CHARS: usize = 4;

/// Replaces every configured secret in a text with [`REDACTED`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The values to find, longest first (so a key that contains another goes whole).
    needles: Vec<String>,
}

impl Redactor {
    /// The redactor for every key of every provider in `config`.
    pub fn for_config(config: &Config) -> Self {
        Self::new(
            config
                .providers
                .iter()
                .flat_map(|p| &p.keys)
                .filter_map(|k| k.secret.as_ref())
                .map(|s| s.expose()),
        )
    }

    /// The redactor for these secret values (those under [`MIN_SECRET_CHARS`] are not
    /// looked for).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets {
            if s.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            needles.push(s.to_owned());
            let encoded = url_encoded(s);
            if encoded != s {
                needles.push(encoded);
            }
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// `text` without any secret.
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        // A message cut off partway into a secret ends with the secret's start.
        let cut = self
            .needles
            .iter()
            .filter_map(|n| partial_tail(&out, n))
            .max();
        match cut {
            Some(len) => {
                let keep = out.len() - len;
                Cow::Owned(format!("{}{REDACTED}", &out[..keep]))
            }
            None => out,
        }
    }

    /// The same error, with every secret taken out of its message.
    pub fn error(&self, e: super::UpstreamError) -> super::UpstreamError {
        use super::UpstreamError as E;
        let clean = |m: String| match self.text(&m) {
            Cow::Borrowed(_) => m,
            Cow::Owned(clean) => clean,
        };
        match e {
            E::RateLimited {
                retry_after,
                message,
            } => E::RateLimited {
                retry_after,
                message: clean(message),
            },
            E::Auth { status, message } => E::Auth {
                status,
                message: clean(message),
            },
            E::Server { status, message } => E::Server {
                status,
                message: clean(message),
            },
            E::BadRequest { status, message } => E::BadRequest {
                status,
                message: clean(message),
            },
            E::Malformed { message } => E::Malformed {
                message: clean(message),
            },
            E::Connection { message } => E::Connection {
                message: clean(message),
            },
            E::Timeout => E::Timeout,
            E::Overloaded => E::Overloaded,
        }
    }
}

/// The length in bytes of the longest end of `text` (at least [`MIN_PARTIAL_CHARS`]
/// characters) that is the start of `secret`.
fn partial_tail(text: &str, secret: &str) -> Option<usize> {
    let mut best = None;
    for (i, _) in text.char_indices().rev() {
        let tail = &text[i..];
        if tail.len() >= secret.len() {
            break;
        }
        if tail.chars().count() >= MIN_PARTIAL_CHARS && secret.starts_with(tail) {
            best = Some(tail.len());
        }
    }
    best
}

/// `s` with every byte outside the URL-safe set written as `%XX` (how a key travels in a
/// query such as Gemini's `?key=`).
fn url_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quotation marks that start quoted content in a message.
const QUOTES: [char; 8] = ['"', '\'', '`', '“', '”', '‘', '’', '«'];

/// The copy of a message bkvy stores (event, CSV, dashboard, logs, status): the message
/// up to its first quotation mark, with `…` where something was cut. Whatever a provider
/// or a parser quoted of the request is never stored.
pub fn stored(message: &str) -> Cow<'_, str> {
    match message.find(QUOTES) {
        None => Cow::Borrowed(message),
        Some(i) => Cow::Owned(format!("{}…", message[..i].trim_end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::UpstreamError;

    #[test]
    fn every_secret_and_its_url_form_is_redacted() {
        let r = Redactor::new(["sk-abc123DEF456", "short", "key with/space+"]);
        assert_eq!(
            r.text("Incorrect API key provided: sk-abc123DEF456. Try again."),
            "Incorrect API key provided: [redacted]. Try again."
        );
        assert_eq!(
            r.text("twice sk-abc123DEF456sk-abc123DEF456"),
            "twice [redacted][redacted]"
        );
        // Short values are not looked for.
        assert_eq!(r.text("a short message"), "a short message");
        assert_eq!(r.text("key=key%20with%2Fspace%2B&x"), "key=[redacted]&x");
        assert_eq!(r.text("nothing here"), "nothing here");
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_message_cut_off_inside_a_secret_loses_the_start_of_it() {
        let r = Redactor::new(["sk-abc123DEF456"]);
        assert_eq!(r.text("key provided: sk-abc1"), "key provided: [redacted]");
        // Three characters are too few to tell.
        assert_eq!(r.text("key provided: sk-"), "key provided: sk-");
    }

    #[test]
    fn errors_keep_their_kind_and_status() {
        let r = Redactor::new(["sk-abc123DEF456"]);
        let e = r.error(UpstreamError::Auth {
            status: 401,
            message: "bad key sk-abc123DEF456".into(),
        });
        assert!(
            matches!(&e, UpstreamError::Auth { status: 401, message } if message == "bad key [redacted]"),
            "{e:?}"
        );
        let e = r.error(UpstreamError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(3)),
            message: "sk-abc123DEF456".into(),
        });
        assert_eq!(e.to_string(), "upstream rate limited (429): [redacted]");
    }

    #[test]
    fn stored_copies_stop_before_any_quote() {
        assert_eq!(stored("no quotes here"), "no quotes here");
        assert_eq!(
            stored("Invalid 'messages[0].content': \"my private prompt\""),
            "Invalid…"
        );
        assert_eq!(
            stored("invalid type: string \"secret\""),
            "invalid type: string…"
        );
        assert_eq!(stored("“quoted”"), "…");
    }
}
