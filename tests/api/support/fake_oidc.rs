//! A small, scriptable OpenID provider on loopback for the hostile-provider
//! tests: it serves the discovery document, JWKS, token, userinfo and
//! revocation endpoints, answering whatever the test tells it to (crafted
//! ID tokens, errors, silence), and records what it was sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "chronos-test";
pub const CLIENT_SECRET: &str = "s3cret with spaces&symbols";
pub const RSA_KID: &str = "rsa-1";
/// A 2048-bit RSA key made for these tests (PKCS#1 DER) and its modulus.
const RSA_DER: &[u8] = include_bytes!("../../fixtures/oidc-test-rsa.der");
const RSA_N: &str = include_str!("../../fixtures/oidc-test-rsa.n");

/// What the token endpoint answers next.
#[derive(Clone)]
pub enum TokenReply {
    /// 200 with these tokens.
    Tokens {
        id_token: String,
        refresh_token: Option<String>,
    },
    /// This status and JSON body.
    Status(u16, Value),
    /// Nothing for a minute.
    Hang,
    /// A 2 MiB body.
    Huge,
}

pub struct Script {
    pub discovery: Value,
    pub jwks: Value,
    pub token: TokenReply,
    pub userinfo: Value,
    /// How many revocation calls fail (503) before they succeed.
    pub revoke_failures: usize,
    // What was received:
    pub jwks_fetches: usize,
    pub token_requests: Vec<(HeaderMap, HashMap<String, String>)>,
    pub revoked: Vec<String>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub issuer: String,
    pub script: Arc<Mutex<Script>>,
}

pub fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N.trim(), "e": "AQAB"})
}

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_der(RSA_DER)
}

/// Signs `claims` with the provider's RSA key (or the header given).
pub fn sign(claims: &Value, header: Header, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn rs256(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    header
}

/// A JWT with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims.to_string())
    )
}

impl FakeProvider {
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_at(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "backchannel_logout_supported": true,
        });
        let script = Arc::new(Mutex::new(Script {
            discovery,
            jwks: json!({"keys": [rsa_jwk(RSA_KID)]}),
            token: TokenReply::Status(400, json!({"error": "invalid_grant"})),
            userinfo: json!({}),
            revoke_failures: 0,
            jwks_fetches: 0,
            token_requests: Vec::new(),
            revoked: Vec::new(),
        }));
        let fake = Self { issuer, script };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery_doc))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/revoke", post(revoke))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }

    /// Good ID-token claims for `nonce`, valid now.
    pub fn claims(&self, nonce: &str) -> Value {
        let now = chronos::unix_now();
        json!({
            "iss": self.issuer,
            "sub": "user-1",
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "sid": "op-session-1",
            "email": "ann@example.com",
            "email_verified": true,
            "name": "Ann Example",
            "picture": "https://example.com/ann.png",
        })
    }

    /// The token endpoint will answer this ID token (signed by the RSA key).
    pub fn answer(&self, claims: &Value, refresh_token: Option<&str>) {
        self.answer_raw(sign(claims, rs256(RSA_KID), &rsa_key()), refresh_token);
    }

    pub fn answer_raw(&self, id_token: String, refresh_token: Option<&str>) {
        self.script().token = TokenReply::Tokens {
            id_token,
            refresh_token: refresh_token.map(String::from),
        };
    }

    /// A back-channel logout token for `sid`/`sub`, signed by the RSA key.
    pub fn logout_token(&self, sid: Option<&str>, sub: Option<&str>, jti: &str) -> Value {
        let now = chronos::unix_now();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": jti,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        claims
    }
}

async fn discovery_doc(State(fake): State<FakeProvider>) -> Response {
    axum::Json(fake.script().discovery.clone()).into_response()
}

async fn jwks(State(fake): State<FakeProvider>) -> Response {
    let mut script = fake.script();
    script.jwks_fetches += 1;
    axum::Json(script.jwks.clone()).into_response()
}

async fn token(State(fake): State<FakeProvider>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let reply = {
        let mut script = fake.script();
        script.token_requests.push((headers, form));
        script.token.clone()
    };
    match reply {
        TokenReply::Tokens {
            id_token,
            refresh_token,
        } => {
            let mut body = json!({
                "access_token": "op-access-token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": id_token,
            });
            if let Some(refresh) = refresh_token {
                body["refresh_token"] = json!(refresh);
            }
            axum::Json(body).into_response()
        }
        TokenReply::Status(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        TokenReply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        TokenReply::Huge => (StatusCode::OK, "x".repeat(2 * 1024 * 1024)).into_response(),
    }
}

async fn userinfo(State(fake): State<FakeProvider>, headers: HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer op-access-token")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(fake.script().userinfo.clone()).into_response()
}

async fn revoke(State(fake): State<FakeProvider>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut script = fake.script();
    if script.revoke_failures > 0 {
        script.revoke_failures -= 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(token) = form.get("token") {
        script.revoked.push(token.clone());
    }
    StatusCode::OK.into_response()
}
