//! Retry policy: what one attempt's outcome means for the request (return
//! the answer, try another key, retry after a delay, or move to the next
//! candidate), for the key that was used, and for the provider's breaker.
//!
//! [`classify`] turns an upstream status (and, for a 403, its body) into an
//! [`Outcome`]; [`decide`] maps an outcome and where the request stands to
//! a [`Decision`]. Both are pure; dispatch does the I/O around them and
//! [`delay`] adds the jitter. The rules, in the order of [`decide`]:
//!
//! - Accepted (a 2xx that passed its checks): return it; the key is
//!   accepted; the provider succeeded.
//! - Credentials refused (401, or a 403 about credentials): the key is
//!   refused (see `keys` for quarantine). The request may move to one other
//!   key of the same provider, once; then the refusal is final. It never
//!   goes on to other providers: the body was fine, the gateway's
//!   credentials were not, and fanning one request out to every key and
//!   provider multiplies whatever went wrong. No breaker verdict.
//! - Content refused (a 403 about the content: moderation, policy, safety,
//!   an HTML block page) and any other 4xx: final, no verdict; the key was
//!   accepted.
//! - 429: the key cools down (for `Retry-After`); the request moves to
//!   another usable key, else to the next candidate, and the last
//!   candidate's 429 goes to the client with its `Retry-After` (the client
//!   SDK retries; waiting here too would multiply the retries). No verdict.
//! - 408, 5xx, connection failures, timeouts: retried on the same provider
//!   with jittered exponential backoff, or after `Retry-After` when it is at
//!   most [`MAX_RETRY_AFTER`], up to `max_retries`; then the next candidate,
//!   or, for the last one, this answer. The provider failed.
//! - Broken answers (a redirect, a 2xx that is not a valid answer, a body
//!   over the size limit): no retry will fix them; next candidate or final.
//!   The provider failed.
//!
//! The breaker verdict is per candidate, not per attempt: dispatch reports
//! the last attempt's verdict once when it leaves the candidate.

use std::time::Duration;

use rand::Rng as _;

/// Longest `Retry-After` waited for before a retry; a longer one moves on.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx that passed its checks.
    Accepted,
    /// 401, or a 403 about credentials: the gateway's key was refused.
    CredentialsRefused,
    /// A 403 about the request's content.
    ContentRefused,
    /// 429.
    RateLimited { retry_after: Option<Duration> },
    /// Any other 4xx: the request itself was refused.
    Rejected,
    /// 408, 5xx, no connection or no answer in time.
    Unavailable { retry_after: Option<Duration> },
    /// An answer no retry fixes: a redirect, an invalid or oversized body.
    Broken,
}

/// Where the request stands when an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Retries already made on this candidate.
    pub retries: u32,
    /// The provider's `max_retries`.
    pub max_retries: u32,
    /// Another key of this provider is usable and untried in this request.
    pub another_key: bool,
    /// This request already moved to another key after a refusal.
    pub switched_key: bool,
    /// No usable candidate follows this one.
    pub last: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// This attempt's answer (or error) is the request's.
    Return,
    /// Same provider, another key, at once.
    NextKey,
    /// Same provider again after a wait.
    Retry(Wait),
    /// Give up on this provider.
    NextCandidate,
}

/// How long to wait before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The upstream's `Retry-After`.
    RetryAfter(Duration),
    /// Jittered exponential backoff for retry number `attempt` (1 = first).
    Backoff { attempt: u32 },
}

/// What the attempt says about the key it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Unknown,
    Accepted,
    Refused,
    /// Rate limited: cool down for the `Retry-After`, if any.
    CoolDown(Option<Duration>),
}

/// What the attempt says about the provider's health (its breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Success,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub next: Next,
    pub key: KeyVerdict,
    pub health: Health,
}

/// The outcome of a non-2xx answer. `body` matters only for a 403.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    match status {
        401 => Outcome::CredentialsRefused,
        403 if is_about_content(body) => Outcome::ContentRefused,
        403 => Outcome::CredentialsRefused,
        429 => Outcome::RateLimited { retry_after },
        408 | 500..=599 => Outcome::Unavailable { retry_after },
        400..=499 => Outcome::Rejected,
        _ => Outcome::Broken,
    }
}

/// Words that mark a 403 as a refusal of the request's content rather than
/// of the credentials.
const CONTENT_WORDS: [&str; 12] = [
    "moderation",
    "flagged",
    "content",
    "policy",
    "policies",
    "safety",
    "unsafe",
    "violat",
    "prohibited",
    "inappropriate",
    "blocked",
    "filter",
];

/// Whether a 403 body is about the content: an HTML page (a WAF or proxy
/// block page: the upstream API never read the key) or an error that talks
/// about moderation, policy, safety or blocking. Anything else (including
/// an empty body) is taken as a refusal of the credentials.
pub fn is_about_content(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    let trimmed = head.trim_start();
    trimmed.starts_with('<') || CONTENT_WORDS.iter().any(|word| head.contains(word))
}

/// The decision table; see the module doc.
pub fn decide(outcome: Outcome, at: &Position) -> Decision {
    let move_on = if at.last {
        Next::Return
    } else {
        Next::NextCandidate
    };
    let (next, key, health) = match outcome {
        Outcome::Accepted => (Next::Return, KeyVerdict::Accepted, Health::Success),
        Outcome::CredentialsRefused => {
            let next = if at.another_key && !at.switched_key {
                Next::NextKey
            } else {
                Next::Return
            };
            (next, KeyVerdict::Refused, Health::Unknown)
        }
        Outcome::ContentRefused | Outcome::Rejected => {
            (Next::Return, KeyVerdict::Accepted, Health::Unknown)
        }
        Outcome::RateLimited { retry_after } => {
            let next = if at.another_key {
                Next::NextKey
            } else {
                move_on
            };
            (next, KeyVerdict::CoolDown(retry_after), Health::Unknown)
        }
        Outcome::Unavailable { retry_after } => {
            let next = match retry_after {
                _ if at.retries >= at.max_retries => move_on,
                Some(wait) if wait > MAX_RETRY_AFTER => move_on,
                Some(wait) => Next::Retry(Wait::RetryAfter(wait)),
                None => Next::Retry(Wait::Backoff {
                    attempt: at.retries + 1,
                }),
            };
            (next, KeyVerdict::Unknown, Health::Failure)
        }
        Outcome::Broken => (move_on, KeyVerdict::Unknown, Health::Failure),
    };
    Decision { next, key, health }
}

/// The delay for `wait`, with `base` the first backoff delay.
pub fn delay(wait: Wait, base: Duration) -> Duration {
    match wait {
        Wait::RetryAfter(d) => d,
        Wait::Backoff { attempt } => backoff(base, attempt),
    }
}

/// The delay before retry `attempt` (1 = the first): full jitter between
/// half and all of `base · 2^attempt`.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.min(10));
    let millis = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis))
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn statuses_and_bodies_classify() {
        let ra = Some(SECS(3));
        let cases: &[(u16, &str, Outcome)] = &[
            (401, "", Outcome::CredentialsRefused),
            (
                403,
                r#"{"error":{"type":"permission_error","message":"Your API key does not have permission"}}"#,
                Outcome::CredentialsRefused,
            ),
            (403, "", Outcome::CredentialsRefused),
            (
                403,
                r#"{"error":{"message":"Your request was flagged by our moderation system"}}"#,
                Outcome::ContentRefused,
            ),
            (
                403,
                r#"{"error":{"code":"content_filter","message":"filtered"}}"#,
                Outcome::ContentRefused,
            ),
            (
                403,
                "  <!DOCTYPE html><html><title>Attention Required! | Cloudflare</title>",
                Outcome::ContentRefused,
            ),
            (
                403,
                r#"{"error":"This request violates our usage policies"}"#,
                Outcome::ContentRefused,
            ),
            (429, "", Outcome::RateLimited { retry_after: ra }),
            (408, "", Outcome::Unavailable { retry_after: ra }),
            (500, "", Outcome::Unavailable { retry_after: ra }),
            (529, "", Outcome::Unavailable { retry_after: ra }),
            (400, "", Outcome::Rejected),
            (404, "", Outcome::Rejected),
            (413, "", Outcome::Rejected),
            (422, "", Outcome::Rejected),
            (301, "", Outcome::Broken),
            (307, "", Outcome::Broken),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                classify(*status, ra, body.as_bytes()),
                *expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn the_decision_table() {
        use Health::{Failure, Success, Unknown as Unsure};
        use KeyVerdict as K;
        use Next::*;
        let at = |retries, another_key, switched_key, last| Position {
            retries,
            max_retries: 2,
            another_key,
            switched_key,
            last,
        };
        let limited = |s| Outcome::RateLimited { retry_after: s };
        let down = |s| Outcome::Unavailable { retry_after: s };
        #[rustfmt::skip]
        let table: &[(Outcome, Position, Next, KeyVerdict, Health)] = &[
            // outcome                    retries keys  switched last   next                                   key                    breaker
            (Outcome::Accepted,           at(0, true,  false, false), Return,                                K::Accepted,           Success),
            (Outcome::Accepted,           at(2, false, true,  true),  Return,                                K::Accepted,           Success),
            (Outcome::CredentialsRefused, at(0, true,  false, false), NextKey,                               K::Refused,            Unsure),
            (Outcome::CredentialsRefused, at(0, true,  true,  false), Return,                                K::Refused,            Unsure),
            (Outcome::CredentialsRefused, at(0, false, false, false), Return,                                K::Refused,            Unsure),
            (Outcome::ContentRefused,     at(0, true,  false, false), Return,                                K::Accepted,           Unsure),
            (Outcome::Rejected,           at(0, true,  false, false), Return,                                K::Accepted,           Unsure),
            (limited(Some(SECS(9))),      at(0, true,  false, false), NextKey,                               K::CoolDown(Some(SECS(9))), Unsure),
            (limited(None),               at(0, false, false, false), NextCandidate,                         K::CoolDown(None),     Unsure),
            (limited(Some(SECS(9))),      at(0, false, false, true),  Return,                                K::CoolDown(Some(SECS(9))), Unsure),
            (down(None),                  at(0, true,  false, false), Retry(Wait::Backoff { attempt: 1 }),   K::Unknown,            Failure),
            (down(None),                  at(1, true,  false, true),  Retry(Wait::Backoff { attempt: 2 }),   K::Unknown,            Failure),
            (down(Some(SECS(2))),         at(0, true,  false, false), Retry(Wait::RetryAfter(SECS(2))),      K::Unknown,            Failure),
            (down(Some(SECS(31))),        at(0, true,  false, false), NextCandidate,                         K::Unknown,            Failure),
            (down(Some(SECS(31))),        at(0, true,  false, true),  Return,                                K::Unknown,            Failure),
            (down(None),                  at(2, true,  false, false), NextCandidate,                         K::Unknown,            Failure),
            (down(None),                  at(2, true,  false, true),  Return,                                K::Unknown,            Failure),
            (Outcome::Broken,             at(0, true,  false, false), NextCandidate,                         K::Unknown,            Failure),
            (Outcome::Broken,             at(0, true,  false, true),  Return,                                K::Unknown,            Failure),
        ];
        for (outcome, position, next, key, health) in table {
            assert_eq!(
                decide(*outcome, position),
                Decision {
                    next: *next,
                    key: *key,
                    health: *health
                },
                "{outcome:?} at {position:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 1..5 {
            let d = delay(Wait::Backoff { attempt }, base);
            let cap = base * (1 << attempt);
            assert!(d <= cap && d >= cap / 2, "{d:?} for {attempt}");
        }
        assert_eq!(delay(Wait::RetryAfter(SECS(4)), base), SECS(4));
    }

    #[test]
    fn parses_retry_after_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
