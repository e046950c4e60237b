//! Supabase Auth (GoTrue) on the wire: the calls Chronos makes, with the
//! headers its official clients send, and its error answers read in both
//! shapes (`{"code": "<error_code>", "message"}` with
//! `X-Supabase-Api-Version: 2024-01-01`, `{"code": <status>, "error_code",
//! "msg"}` without).

use std::net::IpAddr;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::signin::provider_client::{Answer, ProviderCallError, ProviderClient};

pub const API_VERSION: &str = "2024-01-01";

/// A session as `/token` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub user: Option<UserObject>,
    /// The identity provider's tokens (a PKCE exchange after an OAuth
    /// sign-in; GoTrue neither stores nor refreshes them).
    #[serde(default)]
    pub provider_token: Option<String>,
    #[serde(default)]
    pub provider_refresh_token: Option<String>,
}

/// The parts of GoTrue's user object we show.
#[derive(Debug, Clone, Deserialize)]
pub struct UserObject {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// The provider accounts linked to the user.
    #[serde(default)]
    pub identities: Option<Vec<IdentityObject>>,
}

/// One provider account linked to a GoTrue user.
#[derive(Debug, Clone, Deserialize)]
pub struct IdentityObject {
    #[serde(default)]
    pub provider: String,
    /// The provider's id of the person (GoTrue's `identities[].id` is the
    /// provider's subject; `identity_data.sub` says it too).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identity_data: Option<serde_json::Map<String, Value>>,
}

impl IdentityObject {
    /// The provider's subject of this identity.
    pub fn subject(&self) -> Option<String> {
        self.identity_data
            .as_ref()
            .and_then(|d| d.get("sub"))
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| self.id.clone())
    }

    pub fn email(&self) -> Option<String> {
        self.identity_data
            .as_ref()
            .and_then(|d| d.get("email"))
            .and_then(Value::as_str)
            .map(String::from)
    }
}

/// How a call went.
#[derive(Debug)]
pub enum Outcome<T> {
    Ok(T),
    /// Supabase refused (4xx), with its error code.
    Refused {
        status: StatusCode,
        code: String,
    },
    /// 429: its rate limit.
    Limited {
        retry_after: u64,
    },
    /// Unreachable, 5xx, or nonsense.
    Unavailable(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The error code of an error answer, whichever shape it came in.
pub fn error_code(answer: &Answer) -> String {
    if let Some(code) = answer
        .headers
        .get("x-sb-error-code")
        .and_then(|v| v.to_str().ok())
    {
        return code.to_string();
    }
    let body: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
    body.and_then(|b| {
        b.error_code
            .or(match b.code {
                Some(Value::String(code)) => Some(code),
                _ => None,
            })
            .or(b.error)
    })
    .unwrap_or_else(|| "unknown".into())
}

/// The Auth API of one project.
#[derive(Clone)]
pub struct AuthApi {
    http: ProviderClient,
    /// `SUPABASE_URL/auth/v1`.
    base: String,
    apikey: String,
}

impl AuthApi {
    pub fn new(http: ProviderClient, base: String, apikey: String) -> Self {
        Self { http, base, apikey }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        builder: reqwest::RequestBuilder,
        client_ip: Option<IpAddr>,
    ) -> reqwest::RequestBuilder {
        let builder = builder
            .header("apikey", &self.apikey)
            .header("X-Supabase-Api-Version", API_VERSION);
        match client_ip {
            // The person's own address, so Supabase's rate limits count
            // them, not this server (Sb-Forwarded-For, and the forwarded
            // header hosted projects key on).
            Some(ip) => builder
                .header("Sb-Forwarded-For", ip.to_string())
                .header("X-Forwarded-For", ip.to_string()),
            None => builder,
        }
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        builder: reqwest::RequestBuilder,
        expect_body: bool,
    ) -> Outcome<Option<T>> {
        let answer = match self.http.send(builder).await {
            Ok(answer) => answer,
            Err(ProviderCallError::Unreachable(e)) => return Outcome::Unavailable(e),
            Err(e) => return Outcome::Unavailable(e.to_string()),
        };
        let status = answer.status;
        if status.is_success() {
            if !expect_body {
                return Outcome::Ok(None);
            }
            return match answer.json::<T>() {
                Ok(value) => Outcome::Ok(Some(value)),
                Err(e) => Outcome::Unavailable(e.to_string()),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = answer
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(10);
            return Outcome::Limited { retry_after };
        }
        if status.is_client_error() {
            return Outcome::Refused {
                status,
                code: error_code(&answer),
            };
        }
        Outcome::Unavailable(format!("Supabase answered {status}"))
    }

    /// `POST /token?grant_type=pkce`: the code and the flow's verifier.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        client_ip: IpAddr,
    ) -> Outcome<Session> {
        let builder = self.request(
            self.http
                .post(&format!("{}/token?grant_type=pkce", self.base))
                .json(&serde_json::json!({ "auth_code": code, "code_verifier": verifier })),
            Some(client_ip),
        );
        flatten(self.call::<Session>(builder, true).await)
    }

    /// `POST /token?grant_type=refresh_token`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client_ip: Option<IpAddr>,
    ) -> Outcome<Session> {
        let builder = self.request(
            self.http
                .post(&format!("{}/token?grant_type=refresh_token", self.base))
                .json(&serde_json::json!({ "refresh_token": refresh_token })),
            client_ip,
        );
        flatten(self.call::<Session>(builder, true).await)
    }

    /// `POST /logout?scope=` with the session's access token.
    pub async fn logout(&self, access_token: &str, scope: &str) -> Outcome<()> {
        let builder = self.request(
            self.http
                .post(&format!("{}/logout?scope={scope}", self.base))
                .bearer_auth(access_token),
            None,
        );
        match self.call::<Value>(builder, false).await {
            Outcome::Ok(_) => Outcome::Ok(()),
            Outcome::Refused { status, code } => Outcome::Refused { status, code },
            Outcome::Limited { retry_after } => Outcome::Limited { retry_after },
            Outcome::Unavailable(e) => Outcome::Unavailable(e),
        }
    }

    /// `GET /user` with an access token (a person first seen in a token
    /// that did not come through us: their account's creation date).
    pub async fn user(&self, access_token: &str) -> Outcome<UserObject> {
        let builder = self.request(
            self.http
                .get(&format!("{}/user", self.base))
                .bearer_auth(access_token),
            None,
        );
        flatten(self.call::<UserObject>(builder, true).await)
    }
}

fn flatten<T>(outcome: Outcome<Option<T>>) -> Outcome<T> {
    match outcome {
        Outcome::Ok(Some(value)) => Outcome::Ok(value),
        Outcome::Ok(None) => Outcome::Unavailable("an empty answer".into()),
        Outcome::Refused { status, code } => Outcome::Refused { status, code },
        Outcome::Limited { retry_after } => Outcome::Limited { retry_after },
        Outcome::Unavailable(e) => Outcome::Unavailable(e),
    }
}
