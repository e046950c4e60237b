//! Device Bound Session Credentials (`DBSC=on`), driven by a client written
//! from the draft (w3c/webappsec-dbsc; `DBSC.md`): it reads
//! `Secure-Session-Registration` as an RFC 9651 list, makes an ES256 or
//! RS256 key, signs `dbsc+jwt` proofs by hand (JWS compact form over its
//! own key, no JWT library), and answers `Secure-Session-Challenge`s the
//! way the browser does. Then every forgery the issue names, a copied
//! cookie jar, logout and revocation ending the DBSC session, an unbound
//! client untouched, DBSC off answering as before, and the binding kept
//! on PostgreSQL and across a restart.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::support::upstream::{echoed, received, spawn_upstream};
use crate::support::*;

const EMAIL: &str = "ann@example.com";

/// A device key, as the browser's TPM would hold it.
pub(crate) enum DeviceKey {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl DeviceKey {
    pub(crate) fn es256() -> Self {
        Self::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn rs256() -> Self {
        Self::Rs256(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Rs256(_) => "RS256",
        }
    }

    /// The public key as a JWK (RFC 7517/7518).
    fn jwk(&self) -> Value {
        match self {
            Self::Es256(key) => {
                let point = key.public_key().as_ref();
                assert_eq!(point[0], 4, "an uncompressed point");
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": B64.encode(&point[1..33]),
                    "y": B64.encode(&point[33..65]),
                })
            }
            Self::Rs256(key) => {
                let parts = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
                json!({"kty": "RSA", "n": B64.encode(&parts.n), "e": B64.encode(&parts.e)})
            }
        }
    }

    /// A compact JWS of `header` and `payload`, signed by this key.
    fn sign(&self, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            Self::Es256(key) => key.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Self::Rs256(key) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut out)
                    .unwrap();
                out
            }
        };
        format!("{input}.{}", B64.encode(signature))
    }

    /// The registration proof: `jwk` in the header, `jti` the challenge.
    pub(crate) fn registration_proof(&self, challenge: &str) -> String {
        self.sign(
            &json!({"alg": self.alg(), "typ": "dbsc+jwt", "jwk": self.jwk()}),
            &json!({"jti": challenge}),
        )
    }

    /// A refresh proof: no key in the header.
    pub(crate) fn refresh_proof(&self, challenge: &str) -> String {
        self.sign(
            &json!({"alg": self.alg(), "typ": "dbsc+jwt"}),
            &json!({"jti": challenge}),
        )
    }
}

/// An sf-string (RFC 9651 §4.1.6).
fn sf_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Reads an sf-string at the start of `s`: the string and the rest.
fn read_sf_string(s: &str) -> (String, &str) {
    let s = s.strip_prefix('"').expect("an sf-string");
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap().1),
            '"' => return (out, &s[at + 1..]),
            c => out.push(c),
        }
    }
    panic!("unterminated sf-string in {s:?}")
}

/// Parameters `;key="value"` (or bare tokens) after an item.
fn read_params(mut rest: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    while let Some(after) = rest.strip_prefix(';') {
        let after = after.trim_start();
        let (key, value_and_rest) = after.split_once('=').expect("key=value");
        let (value, next) = if value_and_rest.starts_with('"') {
            read_sf_string(value_and_rest)
        } else {
            let end = value_and_rest.find(';').unwrap_or(value_and_rest.len());
            (value_and_rest[..end].to_string(), &value_and_rest[end..])
        };
        params.push((key.to_string(), value));
        rest = next;
    }
    assert!(
        rest.trim().is_empty(),
        "nothing after the parameters: {rest:?}"
    );
    params
}

/// `Secure-Session-Registration: (ES256 RS256);path="...";challenge="..."`.
pub(crate) struct Registration {
    pub(crate) algorithms: Vec<String>,
    pub(crate) path: String,
    pub(crate) challenge: String,
}

pub(crate) fn registration_of(response: &reqwest::Response) -> Option<Registration> {
    let header = response.headers().get("secure-session-registration")?;
    let header = header.to_str().unwrap();
    let inner = header.strip_prefix('(').expect("an inner list");
    let (list, rest) = inner.split_once(')').expect("a closed inner list");
    let params = read_params(rest);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {header}"))
    };
    Some(Registration {
        algorithms: list.split(' ').map(str::to_string).collect(),
        path: param("path"),
        challenge: param("challenge"),
    })
}

/// `Secure-Session-Challenge: "<challenge>";id="<session>"`.
pub(crate) fn challenge_of(response: &reqwest::Response) -> Option<(String, String)> {
    let header = response.headers().get("secure-session-challenge")?;
    let (challenge, rest) = read_sf_string(header.to_str().unwrap());
    let params = read_params(rest);
    let id = params
        .into_iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .expect("the session id");
    Some((challenge, id))
}

/// A browser with DBSC: the cookie jar, its key, and what registration said.
struct BoundBrowser {
    browser: Browser,
    key: DeviceKey,
    session_id: String,
    refresh_url: String,
    cookie_name: String,
}

pub(crate) async fn post_proof(
    browser: &mut Browser,
    path: &str,
    proof: Option<&str>,
) -> reqwest::Response {
    let mut request = browser.request(reqwest::Method::POST, path);
    if let Some(proof) = proof {
        request = request.header("Secure-Session-Response", sf_string(proof));
    }
    browser.send(request).await
}

pub(crate) async fn dbsc_refresh(
    browser: &mut Browser,
    refresh_url: &str,
    session_id: &str,
    proof: Option<&str>,
) -> reqwest::Response {
    let mut request = browser
        .request(reqwest::Method::POST, refresh_url)
        .header("Sec-Secure-Session-Id", sf_string(session_id));
    if let Some(proof) = proof {
        request = request.header("Secure-Session-Response", sf_string(proof));
    }
    browser.send(request).await
}

/// Signs in, reads the registration offer and registers `key`; checks the
/// answer field by field.
async fn sign_in_bound(app: &TestApp, key: DeviceKey, ttl: u64) -> BoundBrowser {
    let mut browser = Browser::new(app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    let signed_in = browser.exchange(&code).await;
    assert_eq!(signed_in.status(), 200);
    let offer = registration_of(&signed_in).expect("the callback offers DBSC");
    assert_eq!(offer.algorithms, ["ES256", "RS256"]);
    assert_eq!(offer.path, "/auth/dbsc/register");

    let proof = key.registration_proof(&offer.challenge);
    let registered = post_proof(&mut browser, &offer.path, Some(&proof)).await;
    assert_eq!(registered.status(), 200, "{:?}", registered.text().await);
    assert_eq!(registered.headers()["cache-control"], "no-store");
    let set = set_cookies(registered.headers());
    let bound_line = set["chronos_bound"].clone();
    assert_eq!(max_age(&bound_line), Some(ttl as i64));
    assert!(
        challenge_of(&registered).is_some(),
        "a challenge ahead of time"
    );
    let instructions: Value = registered.json().await.unwrap();
    let session_id = instructions["session_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(instructions["refresh_url"], "/auth/dbsc/refresh");
    // Requests from our pages and the web app's (FRONTEND_URL) may start a
    // refresh.
    assert_eq!(
        instructions["allowed_refresh_initiators"],
        json!(["127.0.0.1", "localhost"])
    );
    assert_eq!(instructions["scope"]["include_site"], false);
    assert_eq!(instructions["scope"]["origin"], app.url("").as_str());
    assert_eq!(
        instructions["scope"]["scope_specification"],
        json!([{"type": "include", "domain": "127.0.0.1", "path": "/"}])
    );
    let credential = &instructions["credentials"][0];
    assert_eq!(credential["type"], "cookie");
    assert_eq!(credential["name"], "chronos_bound");
    // The attributes the instructions name are the cookie's own, and our
    // other cookies'.
    assert_eq!(credential["attributes"], "Path=/; HttpOnly; SameSite=Lax");
    assert_eq!(
        scope_attributes(&format!(
            "x=y; {}",
            credential["attributes"].as_str().unwrap()
        )),
        scope_attributes(&bound_line)
    );
    let session_line = set_cookies(signed_in.headers())["chronos_session"].clone();
    assert_eq!(
        scope_attributes(&session_line),
        scope_attributes(&bound_line)
    );
    // The session id is the one the sessions list names.
    let listed = browser.session_list().await;
    let current = listed.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["id"], session_id.as_str());
    BoundBrowser {
        browser,
        key,
        session_id,
        refresh_url: instructions["refresh_url"].as_str().unwrap().to_string(),
        cookie_name: credential["name"].as_str().unwrap().to_string(),
    }
}

impl BoundBrowser {
    /// `POST` to its refresh URL for its own session, with `proof` if any.
    async fn refresh_own(&mut self, proof: Option<&str>) -> reqwest::Response {
        let session_id = self.session_id.clone();
        self.refresh_for(&session_id, proof).await
    }

    /// `POST` to its refresh URL for `session_id`, with `proof` if any.
    async fn refresh_for(&mut self, session_id: &str, proof: Option<&str>) -> reqwest::Response {
        dbsc_refresh(&mut self.browser, &self.refresh_url, session_id, proof).await
    }

    /// The refresh the browser makes when the bound cookie is missing:
    /// ask, get the challenge (403), sign it, get the cookie.
    async fn renew(&mut self) -> reqwest::Response {
        let asked = self.refresh_own(None).await;
        assert_eq!(asked.status(), 403);
        let (challenge, id) = challenge_of(&asked).expect("a challenge");
        assert_eq!(id, self.session_id);
        let proof = self.key.refresh_proof(&challenge);
        self.refresh_own(Some(&proof)).await
    }
}

async fn dbsc_app(ttl: u64, database_url: Option<&str>) -> TestApp {
    match database_url {
        Some(url) => dbsc_app_with(ttl, &[("DATABASE_URL", url)]).await,
        None => dbsc_app_with(ttl, &[]).await,
    }
}

async fn dbsc_app_with(ttl: u64, extra: &[(&str, &str)]) -> TestApp {
    let ttl = ttl.to_string();
    let mut vars = vec![
        ("DBSC", "on"),
        ("DBSC_COOKIE_TTL", ttl.as_str()),
        ("RATE_LIMIT_AUTH", "10000/minute"),
        ("METRICS_BIND", "127.0.0.1:0"),
    ];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(&vars).await;
    create_user(&app, EMAIL).await;
    app
}

/// The whole life of a bound session with `key`: bound, used, its cookie
/// withheld and expired (refused everywhere), renewed with a proof.
async fn bound_session_lives_and_renews(app: &TestApp, key: DeviceKey, ttl: u64) {
    let mut bound = sign_in_bound(app, key, ttl).await;
    let b = &mut bound.browser;
    assert_eq!(b.session().await.status(), 200);
    assert_eq!(b.verify().await.status(), 200);
    assert_eq!(b.sessions().await.status(), 200);
    let refreshed = b.refresh().await;
    assert_eq!(refreshed.status(), 200);
    assert!(
        registration_of(&refreshed).is_none(),
        "a bound session is not offered to bind again"
    );

    // Without the bound cookie, every authenticated path answers as for no
    // session, and the refresh token alone renews nothing.
    let cookie = b.jar.remove(&bound.cookie_name).unwrap();
    for (path, response) in [
        ("/auth/session", b.session().await),
        ("/auth/verify", b.verify().await),
        ("/auth/sessions", b.sessions().await),
    ] {
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(error_detail(response).await, "Not authenticated");
    }
    let before = b.jar.clone();
    let refused = b.refresh().await;
    assert_eq!(refused.status(), 401);
    let cleared = set_cookies(refused.headers());
    assert_eq!(
        cleared.keys().collect::<Vec<_>>(),
        ["chronos_bound"],
        "only the bound cookie it lacked: the session goes on for its device"
    );
    assert_cleared(&cleared["chronos_bound"]);
    assert_eq!(error_detail(refused).await, "Refresh failed");
    assert_eq!(b.jar, before);
    b.jar.insert(bound.cookie_name.clone(), cookie);
    assert_eq!(
        b.refresh().await.status(),
        200,
        "the refresh token still works with it"
    );

    // Expired: refused again (the browser would have dropped it already).
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
    assert_eq!(b.session().await.status(), 401);
    assert_eq!(b.refresh().await.status(), 401);

    // Renewed with a proof of the key.
    let renewed = bound.renew().await;
    assert_eq!(renewed.status(), 200, "{:?}", renewed.text().await);
    assert_eq!(renewed.headers()["cache-control"], "no-store");
    assert!(
        challenge_of(&renewed).is_some(),
        "the next challenge ahead of time"
    );
    let instructions: Value = renewed.json().await.unwrap();
    assert_eq!(
        instructions["session_identifier"],
        bound.session_id.as_str()
    );
    let b = &mut bound.browser;
    assert_eq!(b.session().await.status(), 200);
    assert_eq!(b.refresh().await.status(), 200);
}

#[tokio::test]
async fn an_es256_bound_session_needs_its_bound_cookie_and_renews_it_with_a_proof() {
    let app = dbsc_app(5, None).await;
    bound_session_lives_and_renews(&app, DeviceKey::es256(), 5).await;
}

#[tokio::test]
async fn an_rs256_bound_session_needs_its_bound_cookie_and_renews_it_with_a_proof() {
    let app = dbsc_app(5, None).await;
    bound_session_lives_and_renews(&app, DeviceKey::rs256(), 5).await;
}

#[tokio::test]
async fn the_binding_is_kept_in_postgres_and_survives_a_restart() {
    let Some(base) = postgres_url("dbsc_postgres") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let app = dbsc_app(5, Some(&schema.url())).await;
    bound_session_lives_and_renews(&app, DeviceKey::es256(), 5).await;
    let pool = schema.pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dbsc_bindings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    pool.close().await;

    // A restarted server knows the binding from the database.
    let mut bound = sign_in_bound(&app, DeviceKey::rs256(), 5).await;
    let app = app.restart().await;
    bound.browser.base = app.url("");
    assert_eq!(bound.browser.session().await.status(), 200);
    bound.browser.jar.remove(&bound.cookie_name);
    assert_eq!(bound.browser.session().await.status(), 401);
    assert_eq!(bound.renew().await.status(), 200);
    assert_eq!(bound.browser.session().await.status(), 200);
}

#[tokio::test]
async fn a_bound_session_moves_to_postgres_with_migrate_data_and_stays_bound() {
    let Some(base) = postgres_url("dbsc_migrate_data") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let data = tempfile::TempDir::new().unwrap();
    let dir = data.path().to_string_lossy().to_string();
    let sqlite = format!("sqlite://{dir}/chronos.db");
    let vars = [("DBSC", "on"), ("DATA_DIR", dir.as_str())];
    let mut before = spawn_app_with(&[vars[0], vars[1], ("DATABASE_URL", &sqlite)]).await;
    create_user(&before, EMAIL).await;
    let mut bound = sign_in_bound(&before, DeviceKey::es256(), 600).await;
    let public_url = before.url("");
    before.stop().await;
    let moved = chronos_command(&[("DATA_DIR", dir.as_str())])
        .args(["migrate-data", "--from", &sqlite, "--to", &schema.url()])
        .output()
        .unwrap();
    assert!(moved.status.success(), "{moved:?}");
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(said.contains("1 device-bound sessions"), "{said}");
    let after = spawn_app_with(&[
        vars[0],
        vars[1],
        ("DATABASE_URL", &schema.url()),
        ("PUBLIC_URL", &public_url),
    ])
    .await;
    bound.browser.base = after.url("");
    assert_eq!(bound.browser.session().await.status(), 200);
    bound.browser.jar.remove(&bound.cookie_name);
    assert_eq!(bound.browser.session().await.status(), 401, "still bound");
    assert_eq!(
        bound.renew().await.status(),
        200,
        "renewed with the same key"
    );
    assert_eq!(bound.browser.session().await.status(), 200);
}

#[tokio::test]
async fn the_binding_survives_a_restart_on_sqlite() {
    let app = dbsc_app(600, None).await;
    let mut bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let app = app.restart().await;
    bound.browser.base = app.url("");
    bound.browser.jar.remove(&bound.cookie_name);
    assert_eq!(bound.browser.session().await.status(), 401);
    assert_eq!(bound.renew().await.status(), 200);
    assert_eq!(bound.browser.session().await.status(), 200);
    assert_eq!(
        db_count(&app, "SELECT COUNT(*) FROM dbsc_bindings").await,
        1
    );
}

#[tokio::test]
async fn forged_registrations_are_refused_and_a_session_binds_once() {
    let app = dbsc_app(600, None).await;
    let key = DeviceKey::es256();
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    let signed_in = browser.exchange(&code).await;
    let offer = registration_of(&signed_in).unwrap();
    // A second offer for the same session (on its refresh), kept for later.
    let refreshed = browser.refresh().await;
    let second = registration_of(&refreshed).expect("an unbound session's refresh offers it");

    // Another session's challenge.
    let mut other = Browser::new(&app);
    let other_code = other.obtain_code(EMAIL, PASSWORD).await;
    let other_offer = registration_of(&other.exchange(&other_code).await).unwrap();

    let register = |browser: &mut Browser, proof: Option<String>| {
        let mut request = browser.request(reqwest::Method::POST, "/auth/dbsc/register");
        if let Some(proof) = proof {
            request = request.header("Secure-Session-Response", sf_string(&proof));
        }
        request.send()
    };
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no proof", None, 400, "Secure-Session-Response is required"),
        (
            "not a JWT",
            Some("not-a-jwt".into()),
            401,
            "The proof is not a JWT",
        ),
        (
            "wrong typ",
            Some(key.sign(
                &json!({"alg": "ES256", "typ": "JWT", "jwk": key.jwk()}),
                &json!({"jti": offer.challenge}),
            )),
            401,
            "The proof's typ must be dbsc+jwt",
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                B64.encode(json!({"alg": "none", "typ": "dbsc+jwt"}).to_string()),
                B64.encode(json!({"jti": offer.challenge}).to_string())
            )),
            401,
            "The proof is not a JWT",
        ),
        (
            "no key",
            Some(key.refresh_proof(&offer.challenge)),
            401,
            "The proof's header must carry the public key (jwk)",
        ),
        (
            "alg that does not fit the key",
            Some(key.sign(
                &json!({"alg": "RS256", "typ": "dbsc+jwt", "jwk": key.jwk()}),
                &json!({"jti": offer.challenge}),
            )),
            401,
            "The proof's key does not fit its alg (ES256: EC P-256; RS256: RSA of 2048 bits or more)",
        ),
        (
            "signed by another key than the one it carries",
            Some(DeviceKey::es256().sign(
                &json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": key.jwk()}),
                &json!({"jti": offer.challenge}),
            )),
            401,
            "The proof's signature does not verify",
        ),
        (
            "another session's challenge",
            Some(key.registration_proof(&other_offer.challenge)),
            401,
            "The proof answers no challenge issued to this session",
        ),
        (
            "a made-up challenge",
            Some(key.registration_proof("r.9999999999.abc.def")),
            401,
            "The proof answers no challenge issued to this session",
        ),
    ];
    for (what, proof, status, detail) in cases {
        let response = register(&mut browser, proof).await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(error_detail(response).await, detail, "{what}");
    }
    // A proof in a bare token, not an sf-string.
    let bare = browser
        .request(reqwest::Method::POST, "/auth/dbsc/register")
        .header(
            "Secure-Session-Response",
            key.registration_proof(&offer.challenge),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 400);

    // No forgery spent the challenge: the real proof binds.
    let proof = key.registration_proof(&offer.challenge);
    let bound = register(&mut browser, Some(proof.clone())).await.unwrap();
    assert_eq!(bound.status(), 200);
    browser.absorb(bound.headers());
    // Replayed: refused.
    let replayed = register(&mut browser, Some(proof)).await.unwrap();
    assert_eq!(replayed.status(), 401);
    assert_eq!(
        error_detail(replayed).await,
        "The challenge has been answered before"
    );
    // Bound once: another key with the session's second challenge is refused.
    let again = register(
        &mut browser,
        Some(DeviceKey::es256().registration_proof(&second.challenge)),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(
        error_detail(again).await,
        "The session is already bound to a key"
    );
    // Without cookies there is no session to bind.
    let mut anonymous = Browser::new(&app);
    let response = register(
        &mut anonymous,
        Some(key.registration_proof(&other_offer.challenge)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(error_detail(response).await, "Not authenticated");

    let (metrics, _) = app.scrape().await;
    assert_eq!(metrics["chronos_dbsc_registrations_total"], 1.0);
    assert!(metrics["chronos_dbsc_refused_total{reason=\"signature\"}"] >= 1.0);
    assert!(metrics["chronos_dbsc_refused_total{reason=\"replayed\"}"] >= 1.0);
}

#[tokio::test]
async fn forged_refresh_proofs_are_refused() {
    let app = dbsc_app(600, None).await;
    let mut ann = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let mut bob = sign_in_bound(&app, DeviceKey::rs256(), 600).await;

    let asked = ann.refresh_own(None).await;
    assert_eq!(asked.status(), 403);
    asks_for_a_proof(&asked);
    let (challenge, _) = challenge_of(&asked).unwrap();

    // A wrong key.
    let wrong = DeviceKey::es256().refresh_proof(&challenge);
    let response = ann.refresh_own(Some(&wrong)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        error_detail(response).await,
        "The proof's signature does not verify"
    );
    // A key in the header that is not the session's.
    let other_key = DeviceKey::es256();
    let swapped = other_key.registration_proof(&challenge);
    let response = ann.refresh_own(Some(&swapped)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        error_detail(response).await,
        "The proof's key is not the session's"
    );
    // Another session's id, with this session's key and challenge.
    let proof = ann.key.refresh_proof(&challenge);
    let response = bob
        .refresh_for(&ann.session_id, Some(&bob.key.refresh_proof(&challenge)))
        .await;
    assert_eq!(response.status(), 401, "bob's key for ann's session");
    let response = ann.refresh_for(&bob.session_id, Some(&proof)).await;
    assert_eq!(response.status(), 401, "ann's proof for bob's session");
    // Ann's challenge, signed by bob's key, for bob's session.
    let proof_of_bob = bob.key.refresh_proof(&challenge);
    let response = bob.refresh_own(Some(&proof_of_bob)).await;
    // Signed by the session's key but answering someone else's challenge:
    // no cookie, a challenge of its own to sign instead.
    assert_eq!(response.status(), 403);
    assert!(!set_cookies(response.headers()).contains_key("chronos_bound"));
    assert_eq!(challenge_of(&response).unwrap().1, bob.session_id);
    assert_eq!(
        error_detail(response).await,
        "The proof answers no challenge issued to this session"
    );
    // A registration challenge does not answer a refresh.
    let proof_of_ann = ann.key.refresh_proof("r.1.2.3");
    let response = ann.refresh_own(Some(&proof_of_ann)).await;
    assert_eq!(response.status(), 403);
    assert!(!set_cookies(response.headers()).contains_key("chronos_bound"));

    // None of that spent the challenge.
    let good = ann.refresh_own(Some(&proof)).await;
    assert_eq!(good.status(), 200);
    let ahead = challenge_of(&good).unwrap().0;
    // Replayed: a fresh challenge to sign, no cookie.
    let replayed = ann.refresh_own(Some(&proof)).await;
    assert_eq!(replayed.status(), 403);
    assert!(set_cookies(replayed.headers()).is_empty());
    let (fresh, _) = challenge_of(&replayed).unwrap();
    assert_ne!(fresh, challenge);
    assert_eq!(
        error_detail(replayed).await,
        "The challenge has been answered before"
    );
    // The challenge sent ahead of time works, once.
    let proof = ann.key.refresh_proof(&ahead);
    assert_eq!(ann.refresh_own(Some(&proof)).await.status(), 200);
    // Bad input: no id, not an sf-string.
    let no_id = ann
        .browser
        .request(reqwest::Method::POST, "/auth/dbsc/refresh")
        .send()
        .await
        .unwrap();
    assert_eq!(no_id.status(), 400);
    let bare = ann
        .browser
        .request(reqwest::Method::POST, "/auth/dbsc/refresh")
        .header("Sec-Secure-Session-Id", ann.session_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 400);
    assert!(error_detail(bare).await.contains("Sec-Secure-Session-Id"));
}

/// The 403 that asks for a proof sets no cookie and is never cached.
fn asks_for_a_proof(response: &reqwest::Response) {
    assert!(set_cookies(response.headers()).is_empty());
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_copied_cookie_jar_stops_working_with_its_bound_cookie_and_cannot_be_renewed() {
    let ttl = 5;
    let app = dbsc_app(ttl, None).await;
    let mut owner = sign_in_bound(&app, DeviceKey::es256(), ttl).await;
    // The infostealer's copy: every cookie, no key.
    let mut thief = owner.browser.clone_jar();
    assert_eq!(
        thief.session().await.status(),
        200,
        "until the bound cookie expires"
    );
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
    assert_eq!(thief.session().await.status(), 401);
    assert_eq!(thief.verify().await.status(), 401);
    assert_eq!(thief.refresh().await.status(), 401);
    // It cannot renew the bound cookie: a challenge, then its own key refused.
    let asked = dbsc_refresh(&mut thief, &owner.refresh_url, &owner.session_id, None).await;
    assert_eq!(asked.status(), 403);
    let (challenge, _) = challenge_of(&asked).unwrap();
    let own_key = DeviceKey::es256();
    for proof in [
        own_key.refresh_proof(&challenge),
        own_key.registration_proof(&challenge),
    ] {
        let response = dbsc_refresh(
            &mut thief,
            &owner.refresh_url,
            &owner.session_id,
            Some(&proof),
        )
        .await;
        assert_eq!(response.status(), 401);
        assert!(!set_cookies(response.headers()).contains_key("chronos_bound"));
    }
    // Nor bind the session again.
    let again = post_proof(
        &mut thief,
        "/auth/dbsc/register",
        Some(&own_key.registration_proof(&challenge)),
    )
    .await;
    assert_eq!(again.status(), 401);
    assert_eq!(thief.session().await.status(), 401);
    // The owner, with the key, goes on.
    assert_eq!(owner.renew().await.status(), 200);
    assert_eq!(owner.browser.session().await.status(), 200);
}

#[tokio::test]
async fn logout_and_revocation_end_the_dbsc_session_and_clear_the_bound_cookie() {
    let app = dbsc_app(600, None).await;
    let mut bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let bound_line = set_cookies(bound.renew().await.headers())["chronos_bound"].clone();
    let logout = bound.browser.logout().await;
    assert_eq!(logout.status(), 200);
    let cleared = set_cookies(logout.headers());
    assert_eq!(cleared.len(), 4, "the API's three and the bound cookie");
    assert_cleared(&cleared["chronos_bound"]);
    assert_eq!(
        scope_attributes(&cleared["chronos_bound"]),
        scope_attributes(&bound_line),
        "cleared with the attributes it was set with"
    );
    assert_eq!(logout.text().await.unwrap(), r#"{"message":"Logged out"}"#);
    let ended = bound.refresh_own(None).await;
    assert_eq!(ended.status(), 200);
    assert_cleared(&set_cookies(ended.headers())["chronos_bound"]);
    let body: Value = ended.json().await.unwrap();
    assert_eq!(body, json!({"continue": false}));

    // Ended from another session's list: the same.
    let mut laptop = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let mut phone = sign_in_bound(&app, DeviceKey::rs256(), 600).await;
    assert_eq!(
        phone.browser.end_session(&laptop.session_id).await.status(),
        200
    );
    let ended = laptop.refresh_own(None).await;
    let body: Value = ended.json().await.unwrap();
    assert_eq!(body, json!({"continue": false}));
    assert_eq!(laptop.browser.session().await.status(), 401);
    assert_eq!(
        phone.renew().await.status(),
        200,
        "the other session goes on"
    );
    // An id never bound: told to stop too.
    let unknown = dbsc_refresh(
        &mut phone.browser,
        "/auth/dbsc/refresh",
        "no-such-session",
        None,
    )
    .await;
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
    let (metrics, _) = app.scrape().await;
    assert!(metrics["chronos_dbsc_sessions_ended_total"] >= 3.0);
    assert!(metrics["chronos_dbsc_refreshes_total"] >= 2.0);
}

#[tokio::test]
async fn a_browser_without_dbsc_is_unaffected() {
    let app = dbsc_app(5, None).await;
    let mut browser = Browser::new(&app);
    let signed_in = browser.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(signed_in["user"]["email"], EMAIL);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.verify().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    // Someone else's binding changes nothing for it.
    sign_in_bound(&app, DeviceKey::es256(), 5).await;
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.logout().await.status(), 200);
}

#[tokio::test]
async fn with_dbsc_off_nothing_is_offered_and_logout_clears_three_cookies() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    let signed_in = browser.exchange(&code).await;
    assert!(
        signed_in
            .headers()
            .get("secure-session-registration")
            .is_none()
    );
    let refreshed = browser.refresh().await;
    assert!(
        refreshed
            .headers()
            .get("secure-session-registration")
            .is_none()
    );
    let register = post_proof(&mut browser, "/auth/dbsc/register", Some("x")).await;
    assert_eq!(register.status(), 404);
    let refresh = dbsc_refresh(&mut browser, "/auth/dbsc/refresh", "x", None).await;
    assert_eq!(refresh.status(), 404);
    let logout = browser.logout().await;
    assert_eq!(set_cookies(logout.headers()).len(), 3);
}

#[tokio::test]
async fn dbsc_settings_are_checked_at_start_up() {
    for (vars, var) in [
        (&[("DBSC", "yes")][..], "DBSC"),
        (
            &[("DBSC", "on"), ("DBSC_COOKIE_TTL", "2")][..],
            "DBSC_COOKIE_TTL",
        ),
        (
            &[("DBSC", "on"), ("DBSC_COOKIE_TTL", "86401")][..],
            "DBSC_COOKIE_TTL",
        ),
    ] {
        let map: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        let error = chronos::config::Settings::from_source(|k| map.get(k).map(|v| v.to_string()))
            .unwrap_err();
        assert_eq!(error.var, var);
    }
}

#[tokio::test]
async fn a_bound_session_reaches_a_proxied_api_only_with_its_bound_cookie_which_never_leaves() {
    let upstream = spawn_upstream().await;
    let routes = format!("/calendar={}", upstream.url("/api"));
    let app = spawn_app_with(&[("DBSC", "on"), ("PROXY_ROUTES", &routes)]).await;
    create_user(&app, EMAIL).await;
    let mut bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let b = &mut bound.browser;
    b.jar.insert("theme".into(), "dark".into());
    let echo = echoed(b.get("/calendar/echo").await).await;
    // The app's own cookies go on; ours, the bound one included, do not.
    assert_eq!(received(&echo, "cookie"), Some("theme=dark"));
    let hits = upstream.hits();
    b.jar.remove(&bound.cookie_name);
    let refused = b.get("/calendar/echo").await;
    assert_eq!(refused.status(), 401);
    assert_eq!(upstream.hits(), hits, "the upstream is never called");
}

/// A refresh challenge issued `age` seconds ago, made as the server makes
/// them (its key from DATA_DIR, its format): the only way to hold an old
/// one without waiting minutes.
fn challenge_issued_ago(app: &TestApp, session_id: &str, age: u64) -> String {
    use hmac::{KeyInit, Mac};
    let stored = std::fs::read_to_string(app.data_dir.path().join("dbsc_secret")).unwrap();
    let key = B64.decode(stored.trim()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = (now - age + chronos::security::dbsc::CHALLENGE_TTL).to_string();
    let nonce = "a-nonce-of-the-tests-own";
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    for part in [
        &b"challenge"[..],
        b"f",
        session_id.as_bytes(),
        exp.as_bytes(),
        nonce.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    let tag = mac.finalize().into_bytes();
    format!("f.{exp}.{nonce}.{}", B64.encode(&tag[..16]))
}

#[tokio::test]
async fn an_expired_challenge_is_refused_and_a_slightly_stale_one_taken() {
    let app = dbsc_app(600, None).await;
    let mut bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let ttl = chronos::security::dbsc::CHALLENGE_TTL;
    let grace = chronos::security::dbsc::STALE_GRACE;
    // Past its time and the grace: a fresh challenge to sign instead.
    let expired = challenge_issued_ago(&app, &bound.session_id, ttl + grace + 5);
    let proof = bound.key.refresh_proof(&expired);
    let refused = bound.refresh_own(Some(&proof)).await;
    assert_eq!(refused.status(), 403);
    assert!(!set_cookies(refused.headers()).contains_key("chronos_bound"));
    assert!(challenge_of(&refused).is_some());
    assert_eq!(error_detail(refused).await, "The challenge has expired");
    // Past its time but within the grace (a browser's cached one): taken.
    let stale = challenge_issued_ago(&app, &bound.session_id, ttl + grace / 2);
    let proof = bound.key.refresh_proof(&stale);
    let taken = bound.refresh_own(Some(&proof)).await;
    assert_eq!(taken.status(), 200);
    // The forged-format check is real: the same challenge for another
    // session is not one.
    let other = challenge_issued_ago(&app, "another-session", 0);
    let proof = bound.key.refresh_proof(&other);
    let response = bound.refresh_own(Some(&proof)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        error_detail(response).await,
        "The proof answers no challenge issued to this session"
    );
}

#[tokio::test]
async fn a_thief_that_binds_a_stolen_unbound_session_loses_it_at_the_owners_next_refresh() {
    let app = dbsc_app_with(600, &[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    // The owner's browser cannot bind (no device key): the session stays
    // unbound, and its jar is copied.
    let mut owner = Browser::new(&app);
    owner.sign_in(EMAIL, PASSWORD).await;
    let mut thief = owner.clone_jar();
    // The thief refreshes (allowed: unbound), takes the offer, binds its key.
    let refreshed = thief.refresh().await;
    assert_eq!(refreshed.status(), 200);
    let offer = registration_of(&refreshed).unwrap();
    let key = DeviceKey::es256();
    let bound = post_proof(
        &mut thief,
        &offer.path,
        Some(&key.registration_proof(&offer.challenge)),
    )
    .await;
    assert_eq!(bound.status(), 200);
    assert_eq!(thief.session().await.status(), 200);
    // The owner's refresh token is the one the thief's refresh replaced:
    // reuse, and the session ends for both.
    let refused = owner.refresh().await;
    assert_eq!(refused.status(), 401);
    assert_eq!(thief.session().await.status(), 401);
    let session_id = bound_session_id(&bound_json(bound).await);
    let ended = dbsc_refresh(&mut thief, "/auth/dbsc/refresh", &session_id, None).await;
    assert_eq!(
        ended.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

async fn bound_json(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn bound_session_id(instructions: &Value) -> String {
    instructions["session_identifier"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_copied_jars_refresh_without_the_bound_cookie_counts_as_theft() {
    let app = dbsc_app_with(600, &[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    let mut owner = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let mut thief = owner.browser.clone_jar();
    thief.jar.remove(&owner.cookie_name);
    // Refused, and the token has moved on: the owner's next refresh is a
    // reuse (no grace here), which ends the session.
    assert_eq!(thief.refresh().await.status(), 401);
    assert_eq!(owner.browser.refresh().await.status(), 401);
    let ended = owner.refresh_own(None).await;
    assert_eq!(
        ended.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

#[tokio::test]
async fn a_session_idle_past_its_refresh_token_is_told_to_stop() {
    let app = spawn_app_with(&[
        ("DBSC", "on"),
        ("COOKIE_MAX_AGE", "5"),
        ("RATE_LIMIT_AUTH", "10000/minute"),
    ])
    .await;
    create_user(&app, EMAIL).await;
    let mut bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    assert_eq!(bound.renew().await.status(), 200);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Never revoked, but it can no longer refresh: no new bound cookie.
    let ended = bound.refresh_own(None).await;
    assert_eq!(ended.status(), 200);
    assert_cleared(&set_cookies(ended.headers())["chronos_bound"]);
    assert_eq!(
        ended.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}

#[tokio::test]
async fn the_browsers_dbsc_calls_pass_fetch_metadata_but_not_a_foreign_origin() {
    let app = dbsc_app(600, None).await;
    let bound = sign_in_bound(&app, DeviceKey::es256(), 600).await;
    let ask = |origin: &str| {
        bound
            .browser
            .request(reqwest::Method::POST, "/auth/dbsc/refresh")
            .header("Sec-Secure-Session-Id", sf_string(&bound.session_id))
            .header("Sec-Fetch-Site", "cross-site")
            .header("Origin", origin.to_string())
            .send()
    };
    // From the web app's page (FRONTEND_URL, cross-site to the API): the
    // challenge, not a Fetch Metadata refusal.
    let asked = ask("http://localhost:5173").await.unwrap();
    assert_eq!(asked.status(), 403);
    assert!(challenge_of(&asked).is_some());
    assert_eq!(error_detail(asked).await, "A proof is required");
    // From anywhere else: refused by origin.
    let foreign = ask("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(challenge_of(&foreign).is_none());
    assert_eq!(error_detail(foreign).await, "Invalid origin");
}
