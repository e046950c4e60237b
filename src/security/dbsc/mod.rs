//! Device Bound Session Credentials (W3C webappsec-dbsc; `DBSC=on`): a
//! browser that holds a key in hardware binds the session to it, and from
//! then on the session needs, beside its cookies, a short-lived bound
//! cookie that only a fresh proof of the key renews. A copied cookie jar
//! stops working when its bound cookie expires (`DBSC_COOKIE_TTL`).
//!
//! What is kept where: the binding (the key) in the database
//! ([`crate::store::dbsc`]) and, for the hot path, in memory here; the
//! challenges and the bound cookie are MAC'd values that need no storage
//! to check (a challenge's single use is recorded when it is answered).
//! A session this process does not know as bound is unbound: a binding
//! made on another replica is learned at the next revocation poll (every 250 ms).

pub mod fields;
pub mod proof;

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderName, HeaderValue};
use serde_json::json;
use sha2::Sha256;

use crate::cookies::{CookieKind, CookiePolicy};
pub use crate::metrics::DbscEvent as Event;
use crate::metrics::Metrics;
use crate::secrets::{hash_token, random_token};
use crate::store::dbsc::{Binding, DbscBindings};
use crate::store::sql::StoreError;

pub const REGISTER_PATH: &str = "/auth/dbsc/register";
pub const REFRESH_PATH: &str = "/auth/dbsc/refresh";

/// Offered on the callback's and an unbound session's refresh's answers.
pub static REGISTRATION: HeaderName = HeaderName::from_static("secure-session-registration");
/// The browser's proof.
pub static RESPONSE: HeaderName = HeaderName::from_static("secure-session-response");
/// A challenge for the next proof (403, or ahead of time on a 200).
pub static CHALLENGE: HeaderName = HeaderName::from_static("secure-session-challenge");
/// The session a refresh is for.
pub static SESSION_ID: HeaderName = HeaderName::from_static("sec-secure-session-id");

/// How long a challenge is good for, seconds.
pub const CHALLENGE_TTL: u64 = 300;
/// How long past that one is still taken: the browser may answer with one
/// it cached (the draft's advice).
pub const STALE_GRACE: u64 = 60;

/// What a challenge is for: it answers only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Register,
    Refresh,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Self::Register => "r",
            Self::Refresh => "f",
        }
    }
}

/// Why a challenge was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeRefused {
    /// Not one of ours for this session and purpose.
    Foreign,
    /// Past its time (and the grace).
    Expired,
    /// Answered before.
    Used,
}

impl ChallengeRefused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Foreign => "challenge",
            Self::Expired => "expired",
            Self::Used => "replayed",
        }
    }
}

/// Why taking a challenge failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("challenge refused")]
    Refused(ChallengeRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bound session, as this process knows it.
struct Bound {
    /// The MAC of its bound cookies, with the session and key already
    /// absorbed: checking a cookie hashes only its expiry.
    mac: Hmac<Sha256>,
    /// When this process learned of it (Unix s): a reload keeps what it
    /// learned meanwhile.
    learned_at: u64,
}

pub struct Dbsc {
    mac: Hmac<Sha256>,
    cookie_ttl: u64,
    bound: RwLock<HashMap<String, Bound>>,
    store: DbscBindings,
    cookies: CookiePolicy,
    registration_path: String,
    refresh_path: String,
    /// PUBLIC_URL's origin, host and path prefix: the session's scope.
    origin: String,
    host: String,
    prefix: String,
    /// The hosts whose pages may start a refresh: ours and the web app's.
    initiators: Vec<String>,
    metrics: Metrics,
}

impl Dbsc {
    /// `public_url`: where the browser reaches us (its path prefixes our
    /// paths in what we tell the browser); `frontend_url`: the web app,
    /// whose pages' requests may start a refresh.
    pub fn new(
        key: &[u8],
        cookie_ttl: u64,
        store: DbscBindings,
        cookies: CookiePolicy,
        (public_url, frontend_url): (&str, &str),
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(public_url)?;
        let prefix = url.path().trim_end_matches('/').to_string();
        let mut initiators = vec![url.host_str().unwrap_or_default().to_string()];
        if let Some(host) = url::Url::parse(frontend_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            && !initiators.contains(&host)
        {
            initiators.push(host);
        }
        Ok(Self {
            mac: Hmac::new_from_slice(key).map_err(|_| anyhow::anyhow!("bad DBSC key"))?,
            cookie_ttl,
            bound: RwLock::new(HashMap::new()),
            store,
            cookies,
            registration_path: format!("{prefix}{REGISTER_PATH}"),
            refresh_path: format!("{prefix}{REFRESH_PATH}"),
            origin: url.origin().ascii_serialization(),
            host: url.host_str().unwrap_or_default().to_string(),
            prefix,
            initiators,
            metrics,
        })
    }

    fn mac_of(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    // --- The bound cookie ---

    /// The bound cookies' MAC for the session and key, expiry still to come.
    fn bound_mac(&self, session_id: &str, thumbprint: &str) -> Hmac<Sha256> {
        self.mac_of(&[b"bound", session_id.as_bytes(), thumbprint.as_bytes()])
    }

    /// The bound cookie's value for the session and key: `EXP.MAC`.
    fn bound_value(&self, session_id: &str, thumbprint: &str, now: u64) -> String {
        let exp_text = (now + self.cookie_ttl).to_string();
        let mut mac = self.bound_mac(session_id, thumbprint);
        mac.update(exp_text.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{exp_text}.{}", B64.encode(&tag[..16]))
    }

    /// `Set-Cookie` of a fresh bound cookie.
    pub fn bound_cookie(&self, session_id: &str, thumbprint: &str, now: u64) -> HeaderValue {
        self.cookies.set(
            CookieKind::Bound,
            &self.bound_value(session_id, thumbprint, now),
        )
    }

    /// Whether a request of this session may go on: the session is not
    /// bound, or `cookie` is a live bound cookie for it and its key (MAC
    /// checked in constant time). No I/O: every authenticated request asks.
    pub fn allows(&self, session_id: &str, cookie: Option<&str>, now: u64) -> bool {
        let Ok(bound) = self.bound.read() else {
            return false;
        };
        let Some(binding) = bound.get(session_id) else {
            return true;
        };
        let Some((exp_text, tag)) = cookie.and_then(|c| c.split_once('.')) else {
            return false;
        };
        match exp_text.parse::<u64>() {
            Ok(exp) if exp > now && exp <= now + self.cookie_ttl + 60 => {}
            _ => return false,
        }
        // Exactly 16 bytes (a shorter tag would be checked on its first
        // bytes only), decoded without allocating.
        let mut decoded = [0u8; 18];
        if tag.len() != 22 || B64.decode_slice(tag, &mut decoded) != Ok(16) {
            return false;
        }
        let mut mac = binding.mac.clone();
        mac.update(exp_text.as_bytes());
        mac.verify_truncated_left(&decoded[..16]).is_ok()
    }

    /// Whether this process knows the session as bound.
    pub fn is_bound(&self, session_id: &str) -> bool {
        self.bound.read().is_ok_and(|b| b.contains_key(session_id))
    }

    // --- Challenges ---

    /// A single-use challenge for the session's next proof.
    pub fn challenge(&self, purpose: Purpose, session_id: &str, now: u64) -> String {
        let exp = (now + CHALLENGE_TTL).to_string();
        let nonce = random_token(16);
        let tag = self
            .mac_of(&[
                b"challenge",
                purpose.tag().as_bytes(),
                session_id.as_bytes(),
                exp.as_bytes(),
                nonce.as_bytes(),
            ])
            .finalize()
            .into_bytes();
        format!("{}.{exp}.{nonce}.{}", purpose.tag(), B64.encode(&tag[..16]))
    }

    /// The challenge's expiry if it is ours, for this session and purpose,
    /// and not too old.
    fn check_challenge(
        &self,
        purpose: Purpose,
        session_id: &str,
        challenge: &str,
        now: u64,
    ) -> Result<u64, ChallengeRefused> {
        let mut parts = challenge.splitn(4, '.');
        let (Some(tag), Some(exp_text), Some(nonce), Some(mac)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ChallengeRefused::Foreign);
        };
        let mac = B64.decode(mac).map_err(|_| ChallengeRefused::Foreign)?;
        if tag != purpose.tag() || mac.len() != 16 {
            return Err(ChallengeRefused::Foreign);
        }
        self.mac_of(&[
            b"challenge",
            tag.as_bytes(),
            session_id.as_bytes(),
            exp_text.as_bytes(),
            nonce.as_bytes(),
        ])
        .verify_truncated_left(&mac)
        .map_err(|_| ChallengeRefused::Foreign)?;
        let exp: u64 = exp_text.parse().map_err(|_| ChallengeRefused::Foreign)?;
        if now > exp + STALE_GRACE {
            return Err(ChallengeRefused::Expired);
        }
        Ok(exp)
    }

    /// Takes the challenge a verified proof answers: ours for this session
    /// and purpose, in time, and never answered before (recorded now, for
    /// every process).
    pub async fn take_challenge(
        &self,
        purpose: Purpose,
        session_id: &str,
        challenge: &str,
        now: u64,
    ) -> Result<(), TakeError> {
        let exp = self
            .check_challenge(purpose, session_id, challenge, now)
            .map_err(TakeError::Refused)?;
        let first = self
            .store
            .first_answer(
                hash_token(&format!("dbsc:{challenge}")),
                (exp + STALE_GRACE) as i64,
            )
            .await?;
        if first {
            Ok(())
        } else {
            Err(TakeError::Refused(ChallengeRefused::Used))
        }
    }

    /// `Secure-Session-Registration: (ES256 RS256);path="...";challenge="..."`.
    pub fn registration_header(&self, session_id: &str, now: u64) -> Option<HeaderValue> {
        let value = format!(
            "{};path={};challenge={}",
            proof::OFFERED,
            fields::string(&self.registration_path)?,
            fields::string(&self.challenge(Purpose::Register, session_id, now))?
        );
        HeaderValue::from_str(&value).ok()
    }

    /// `Secure-Session-Challenge: "<challenge>";id="<session id>"`.
    pub fn challenge_header(&self, session_id: &str, now: u64) -> Option<HeaderValue> {
        let value = format!(
            "{};id={}",
            fields::string(&self.challenge(Purpose::Refresh, session_id, now))?,
            fields::string(session_id)?
        );
        HeaderValue::from_str(&value).ok()
    }

    // --- Bindings ---

    /// Binds the session to the proof's key; `false` when it was bound
    /// before.
    pub async fn bind(
        &self,
        session_id: &str,
        proof: &proof::Proof,
        now: u64,
    ) -> Result<bool, StoreError> {
        let bound = self
            .store
            .bind(&Binding {
                session_id: session_id.to_string(),
                algorithm: proof.algorithm.to_string(),
                thumbprint: proof.thumbprint.clone(),
                public_jwk: proof.public_jwk.clone(),
                bound_at: now as i64,
            })
            .await?;
        if bound {
            self.learn(session_id.to_string(), proof.thumbprint.clone(), now);
        }
        Ok(bound)
    }

    fn learn(&self, session_id: String, thumbprint: String, now: u64) {
        let mac = self.bound_mac(&session_id, &thumbprint);
        if let Ok(mut bound) = self.bound.write() {
            bound.insert(
                session_id,
                Bound {
                    mac,
                    learned_at: now,
                },
            );
        }
    }

    /// The session's binding as stored (a refresh checks against it).
    pub async fn binding_of(&self, session_id: &str) -> Result<Option<Binding>, StoreError> {
        let binding = self.store.of(session_id).await?;
        if let Some(binding) = &binding
            && !self.is_bound(session_id)
        {
            self.learn(
                binding.session_id.clone(),
                binding.thumbprint.clone(),
                crate::unix_now(),
            );
        }
        Ok(binding)
    }

    /// A proof of the session's key was taken.
    pub async fn proved(&self, session_id: &str, now: u64) -> Result<(), StoreError> {
        self.store.refreshed(session_id, now as i64).await
    }

    /// Learns the bindings made since `since` (Unix s; every one with 0),
    /// by this process or another.
    pub async fn follow(&self, since: u64) -> Result<usize, StoreError> {
        let rows = self.store.bound_since(since as i64).await?;
        let now = crate::unix_now();
        let Ok(mut bound) = self.bound.write() else {
            return Ok(0);
        };
        let mut learned = 0;
        for (session_id, thumbprint) in rows {
            if let std::collections::hash_map::Entry::Vacant(entry) = bound.entry(session_id) {
                learned += 1;
                let mac = self.bound_mac(entry.key(), &thumbprint);
                entry.insert(Bound {
                    mac,
                    learned_at: now,
                });
            }
        }
        Ok(learned)
    }

    /// Deletes the bindings of sessions no longer kept and the answered
    /// challenges past their time (five minutes more, for a replica whose
    /// clock is behind); then, when bindings went, forgets them in memory
    /// too (those learned since the reading began are kept).
    pub async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        let deleted = self.store.purge(now.saturating_sub(300) as i64).await?;
        if deleted == 0 {
            return Ok(0);
        }
        let started = crate::unix_now();
        let kept: std::collections::HashSet<String> = self
            .store
            .bound_since(0)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if let Ok(mut bound) = self.bound.write() {
            bound.retain(|id, b| kept.contains(id) || b.learned_at >= started);
        }
        Ok(deleted)
    }

    // --- What the browser is told ---

    /// The session instructions (registration's and refresh's answer).
    pub fn instructions(&self, session_id: &str) -> serde_json::Value {
        // Our paths only, where PUBLIC_URL has a prefix: the rest of the
        // origin is someone else's (rules apply last to first).
        let scope_specification = if self.prefix.is_empty() {
            json!([{"type": "include", "domain": self.host, "path": "/"}])
        } else {
            json!([
                {"type": "exclude", "domain": self.host, "path": "/"},
                {"type": "include", "domain": self.host, "path": self.prefix},
            ])
        };
        json!({
            "session_identifier": session_id,
            "refresh_url": self.refresh_path,
            "allowed_refresh_initiators": self.initiators,
            "scope": {
                "origin": self.origin,
                "include_site": false,
                "scope_specification": scope_specification,
            },
            "credentials": [{
                "type": "cookie",
                "name": self.cookies.name(CookieKind::Bound),
                "attributes": self.cookies.attributes(CookieKind::Bound),
            }],
        })
    }

    /// Counts a registration, a refresh, or a refused proof (by reason).
    pub fn count(&self, event: Event) {
        self.metrics.dbsc(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CookieSettings, SameSite};

    fn dbsc(db: crate::store::database::Database) -> Dbsc {
        let cookies = CookiePolicy::new(
            &CookieSettings {
                session_name: "s".into(),
                refresh_name: "r".into(),
                csrf_name: "c".into(),
                max_age: 604_800,
                domain: None,
                secure: false,
                same_site: SameSite::Lax,
            },
            3600,
            Some(600),
        );
        Dbsc::new(
            &[7; 32],
            600,
            DbscBindings::new(db),
            cookies,
            ("http://localhost:8000", "http://localhost:5173"),
            Metrics::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn challenges_answer_one_session_and_purpose_once_and_in_time() {
        let t = crate::store::testing::TestDb::sqlite().await;
        let d = dbsc(t.db.clone());
        let now = 1_800_000_000;
        let c = d.challenge(Purpose::Refresh, "s1", now);
        let refused = |r: Result<(), TakeError>| match r {
            Err(TakeError::Refused(why)) => Some(why),
            _ => None,
        };
        assert_eq!(
            refused(d.take_challenge(Purpose::Refresh, "s2", &c, now).await),
            Some(ChallengeRefused::Foreign)
        );
        assert_eq!(
            refused(d.take_challenge(Purpose::Register, "s1", &c, now).await),
            Some(ChallengeRefused::Foreign)
        );
        let late = now + CHALLENGE_TTL + STALE_GRACE + 1;
        assert_eq!(
            refused(d.take_challenge(Purpose::Refresh, "s1", &c, late).await),
            Some(ChallengeRefused::Expired)
        );
        // Slightly stale is still fine; once.
        let stale = now + CHALLENGE_TTL + STALE_GRACE / 2;
        assert!(
            d.take_challenge(Purpose::Refresh, "s1", &c, stale)
                .await
                .is_ok()
        );
        assert_eq!(
            refused(d.take_challenge(Purpose::Refresh, "s1", &c, stale).await),
            Some(ChallengeRefused::Used)
        );
        let forged = format!("{}x", &c[..c.len() - 1]);
        assert_eq!(
            refused(d.take_challenge(Purpose::Refresh, "s1", &forged, now).await),
            Some(ChallengeRefused::Foreign)
        );
    }

    #[tokio::test]
    async fn a_bound_session_needs_its_live_bound_cookie() {
        let t = crate::store::testing::TestDb::sqlite().await;
        let d = dbsc(t.db.clone());
        let now = 1_800_000_000;
        assert!(d.allows("s1", None, now), "an unbound session goes on");
        d.learn("s1".into(), "thumb".into(), now);
        assert!(!d.allows("s1", None, now));
        let value = d.bound_value("s1", "thumb", now);
        assert!(d.allows("s1", Some(&value), now + 599));
        assert!(!d.allows("s1", Some(&value), now + 600), "expired");
        d.learn("s2".into(), "thumb".into(), now);
        assert!(!d.allows("s2", Some(&value), now), "another session's");
        let other_key = d.bound_value("s1", "other", now);
        assert!(!d.allows("s1", Some(&other_key), now), "another key's");
        let (exp, tag) = value.split_once('.').unwrap();
        let later = format!("{}.{tag}", exp.parse::<u64>().unwrap() + 1000);
        assert!(!d.allows("s1", Some(&later), now), "a lifetime of its own");
        assert!(!d.allows("s1", Some("junk"), now));
    }

    #[tokio::test]
    async fn purge_deletes_only_the_bindings_whose_sessions_are_gone() {
        for t in crate::store::testing::TestDb::both().await {
            let d = dbsc(t.db.clone());
            let user = t.user("ann@example.com").await;
            let now = crate::unix_now();
            t.db.write(
                "INSERT INTO sessions (id, user_id, created_at, last_used_at, refresh_counter, refresh_issued_at)
                 VALUES ($1, $2, $3, $3, 0, $3)",
                crate::store::sql::args!["live", &user.id, now as i64],
            )
            .await
            .unwrap();
            let proof = |thumbprint: &str| proof::Proof {
                jti: String::new(),
                algorithm: "ES256",
                thumbprint: thumbprint.into(),
                public_jwk: "{}".into(),
            };
            // Bound a while ago (the purge leaves this second's alone).
            assert!(d.bind("live", &proof("a"), now - 10).await.unwrap());
            assert!(d.bind("gone", &proof("b"), now - 10).await.unwrap());
            assert!(
                !d.bind("live", &proof("c"), now).await.unwrap(),
                "bound once"
            );
            assert_eq!(d.purge(now).await.unwrap(), 1, "{}", t.engine());
            assert!(d.is_bound("live") && !d.is_bound("gone"), "{}", t.engine());
            assert!(d.binding_of("live").await.unwrap().is_some());
            assert!(d.binding_of("gone").await.unwrap().is_none());
        }
    }
}
