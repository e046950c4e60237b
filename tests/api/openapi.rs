//! The OpenAPI document (`docs/openapi.json`, served at `/openapi.json`)
//! against the running server: every answer a run of real requests gets —
//! successes, refusals, 429s, malformed input — must be a documented status
//! of its operation, with the documented media type, a JSON body that
//! validates against the documented schema, and the documented required
//! headers. Every operation is exercised, and every route the server
//! serves is documented.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::dbsc::{DeviceKey, challenge_of, dbsc_refresh, post_proof, registration_of};
use crate::support::fake_oidc::{self, FakeProvider};
use crate::support::*;

const EMAIL: &str = "ann@example.com";

struct Contract {
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

/// `/paths/~1auth~1session/...`: a JSON pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    fn load() -> Self {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"),
        )
        .unwrap();
        Self {
            doc: serde_json::from_str(&text).unwrap(),
            seen: BTreeSet::new(),
        }
    }

    /// Follows a local `$ref`.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self.resolve(
                self.doc
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling {pointer}")),
            ),
            None => value,
        }
    }

    /// Checks one real answer to `method template`.
    async fn check(&mut self, method: &str, template: &str, response: reqwest::Response) -> u16 {
        let status = response.status().as_u16();
        let what = format!("{method} {template} → {status}");
        let op_pointer = format!("/paths/{}/{}", escape(template), method.to_lowercase());
        assert!(
            self.doc.pointer(&op_pointer).is_some(),
            "{what}: operation not documented"
        );
        self.seen.insert((method.to_string(), template.to_string()));
        let key = if self
            .doc
            .pointer(&format!("{op_pointer}/responses/{status}"))
            .is_some()
        {
            status.to_string()
        } else {
            "default".to_string()
        };
        let spec_pointer = format!("{op_pointer}/responses/{key}");
        let spec = self
            .resolve(
                self.doc
                    .pointer(&spec_pointer)
                    .unwrap_or_else(|| panic!("{what}: status not documented")),
            )
            .clone();
        if key == "default" {
            assert!(status >= 400, "{what}: a success must be documented itself");
        }
        for (name, header) in spec["headers"].as_object().into_iter().flatten() {
            if self.resolve(header)["required"] == true {
                assert!(
                    response.headers().contains_key(name.as_str()),
                    "{what}: documented header {name} missing"
                );
            }
        }
        let content_type = response.headers().get("content-type").map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_string()
        });
        let body = response.bytes().await.unwrap();
        let Some(content) = spec.get("content").and_then(Value::as_object) else {
            assert!(
                body.is_empty(),
                "{what}: documented without a body, got one"
            );
            return status;
        };
        let media = content_type.unwrap_or_else(|| panic!("{what}: no content type"));
        let Some(media_spec) = content.get(&media) else {
            panic!("{what}: {media} not documented ({:?})", content.keys());
        };
        if media == "application/json" {
            let schema_pointer = match media_spec["schema"].get("$ref") {
                Some(r) => r.as_str().unwrap().to_string(),
                None => {
                    // Where the schema sits, through the response's own $ref.
                    let base = self.doc.pointer(&spec_pointer).unwrap();
                    let base = match base.get("$ref") {
                        Some(r) => r.as_str().unwrap().trim_start_matches('#').to_string(),
                        None => spec_pointer.clone(),
                    };
                    format!("#{base}/content/{}/schema", escape(&media))
                }
            };
            // The whole document as the root, so `$ref`s inside resolve.
            let mut root = self.doc.clone();
            root["$ref"] = Value::String(schema_pointer);
            let validator = jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap();
            let instance: Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{what}: {errors:?}\n{instance}");
        }
        status
    }
}

#[tokio::test]
async fn the_served_document_is_the_one_in_the_repository_and_is_valid_json_schema() {
    let app = spawn_app().await;
    let mut contract = Contract::load();
    let response = app.openapi().await;
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, contract.doc);
    assert_eq!(contract.doc["openapi"], "3.1.0");
    for (name, schema) in contract.doc["components"]["schemas"].as_object().unwrap() {
        assert!(jsonschema::meta::is_valid(schema), "schema {name}");
    }
    let response = app.openapi().await;
    contract.check("GET", "/openapi.json", response).await;
    // Every route the server serves is in the document.
    let paths = contract.doc["paths"].as_object().unwrap();
    for route in chronos::metrics::ROUTES {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    assert_eq!(paths.len(), chronos::metrics::ROUTES.len());
}

#[tokio::test]
async fn every_answer_of_a_real_run_matches_the_document() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "1000/minute"),
        ("REFRESH_REUSE_INTERVAL_SECONDS", "0"),
    ])
    .await;
    let mut c = Contract::load();
    create_user(&app, EMAIL).await;
    let client = app.client();
    let get = |path: &str| client.get(app.url(path)).send();

    // Probes, keys, the document.
    assert_eq!(c.check("GET", "/health", app.health().await).await, 200);
    assert_eq!(
        c.check("GET", "/health/ready", app.ready().await).await,
        200
    );
    assert_eq!(
        c.check("GET", "/.well-known/jwks.json", app.jwks().await)
            .await,
        200
    );
    assert_eq!(
        c.check("GET", "/openapi.json", app.openapi().await).await,
        200
    );

    // The sign-in flow, step by step.
    let mut browser = Browser::new(&app);
    let login = browser.start_login(None).await;
    assert_eq!(c.check("GET", "/auth/google/login", login).await, 200);
    let bad_redirect = get("/auth/google/login?redirectTo=https://evil.example/")
        .await
        .unwrap();
    assert_eq!(
        c.check("GET", "/auth/google/login", bad_redirect).await,
        400
    );
    let page = get("/auth/signin").await.unwrap();
    c.check("GET", "/auth/signin", page).await;
    // Forms that did not come from the page.
    for form in ["/auth/signin", "/auth/signup"] {
        let forged = client
            .post(app.url(form))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Origin", app.url(""))
            .body("email=a%40b.c&password=x")
            .send()
            .await
            .unwrap();
        assert!(c.check("POST", form, forged).await >= 400);
    }
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    for body in ["{}", "not json", r#"{"code": "nope"}"#] {
        let response = client
            .post(app.url("/auth/web/callback"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(c.check("POST", "/auth/web/callback", response).await >= 400);
    }
    let exchanged = browser.exchange(&code).await;
    assert_eq!(c.check("POST", "/auth/web/callback", exchanged).await, 200);

    // The session.
    let signed_in = browser.session().await;
    assert_eq!(c.check("GET", "/auth/session", signed_in).await, 200);
    assert_eq!(
        c.check("GET", "/auth/session", app.session().await).await,
        401
    );
    let signed_in = browser.verify().await;
    assert_eq!(c.check("GET", "/auth/verify", signed_in).await, 200);
    assert_eq!(
        c.check("GET", "/auth/verify", app.verify().await).await,
        401
    );
    let csrf = browser.csrf().await;
    assert_eq!(c.check("GET", "/auth/csrf", csrf).await, 200);
    let desktop = app.desktop_callback("code=<x>&error=e").await;
    assert_eq!(c.check("GET", "/auth/desktop/callback", desktop).await, 200);

    // Refresh: without the CSRF header, then properly, then a replay.
    let stolen = browser.jar.clone();
    let no_csrf = browser.refresh_without_csrf().await;
    assert_eq!(c.check("POST", "/auth/refresh", no_csrf).await, 403);
    let refreshed = browser.refresh().await;
    assert_eq!(c.check("POST", "/auth/refresh", refreshed).await, 200);
    let mut thief = Browser::new(&app);
    thief.jar = stolen;
    let replay = thief.refresh().await;
    assert_eq!(c.check("POST", "/auth/refresh", replay).await, 401);

    // Sessions: list, end another, end a foreign id.
    let mut laptop = Browser::new(&app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, PASSWORD).await;
    let listed = laptop.sessions().await;
    assert_eq!(c.check("GET", "/auth/sessions", listed).await, 200);
    assert_eq!(
        c.check("GET", "/auth/sessions", app.sessions().await).await,
        401
    );
    let other = laptop.other_session_id().await;
    let ended = laptop.end_session(&other).await;
    assert_eq!(c.check("DELETE", "/auth/sessions/{id}", ended).await, 200);
    let foreign = laptop.end_session("not-a-session").await;
    assert_eq!(c.check("DELETE", "/auth/sessions/{id}", foreign).await, 404);

    // Logout, signed in and not, and from a foreign origin.
    let out = laptop.logout().await;
    assert_eq!(c.check("POST", "/auth/logout", out).await, 200);
    let anonymous = app.logout().await;
    assert_eq!(c.check("POST", "/auth/logout", anonymous).await, 200);
    let foreign_origin = app
        .post_from_origin("/auth/logout", "https://evil.example")
        .await;
    assert_eq!(c.check("POST", "/auth/logout", foreign_origin).await, 403);

    // Requests the envelope refuses get the documented error shape.
    let unknown = app.call("GET", "/nowhere").await;
    assert_eq!(unknown.status(), 404);
    let big = client
        .post(app.url("/auth/logout"))
        .body(vec![b'x'; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("POST", "/auth/logout", big).await, 413);
    let wrong_method = app.call("PUT", "/auth/session").await;
    assert_eq!(wrong_method.status(), 405);

    // 429s, on a budget of its own.
    let tight = spawn_app_with(&[("RATE_LIMIT_AUTH", "1/minute")]).await;
    for (method, path) in [
        ("GET", "/auth/session"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/csrf"),
    ] {
        let _ = tight.call(method, path).await;
        let limited = tight.call(method, path).await;
        assert_eq!(c.check(method, path, limited).await, 429);
    }

    // The back-channel logout exists with an OpenID Connect provider.
    let fake = FakeProvider::start().await;
    let oidc = spawn_app_with(&[
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", fake.issuer.as_str()),
        ("OIDC_CLIENT_ID", fake_oidc::CLIENT_ID),
        ("OIDC_CLIENT_SECRET", fake_oidc::CLIENT_SECRET),
    ])
    .await;
    for body in ["", "logout_token=not.a.token"] {
        let response = oidc.backchannel_logout(body).await;
        assert_eq!(
            c.check("POST", "/auth/backchannel-logout", response).await,
            400
        );
    }

    // Connected accounts and the token exchange (PROVIDER_TOKENS=keep).
    let vault = spawn_app_with(&[
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", fake.issuer.as_str()),
        ("OIDC_CLIENT_ID", crate::support::fake_oidc::CLIENT_ID),
        (
            "OIDC_CLIENT_SECRET",
            crate::support::fake_oidc::CLIENT_SECRET,
        ),
        ("PROVIDER_TOKENS", "keep"),
        (
            "SERVICE_CLIENTS",
            "calendar:a-service-secret-of-thirty-two-chars",
        ),
    ])
    .await;
    let anonymous = vault.client();
    for (method, path, url) in [
        ("GET", "/auth/accounts", "/auth/accounts"),
        ("GET", "/auth/google/connect", "/auth/google/connect"),
        ("DELETE", "/auth/accounts/{id}", "/auth/accounts/some-id"),
        (
            "DELETE",
            "/auth/google/accounts/{id}",
            "/auth/google/accounts/some-id",
        ),
    ] {
        let request = match method {
            "GET" => anonymous.get(vault.url(url)),
            _ => anonymous.delete(vault.url(url)),
        };
        assert_eq!(
            c.check(method, path, request.send().await.unwrap()).await,
            401
        );
    }
    let exchange = |secret: &'static str, body: &'static str| {
        anonymous
            .post(vault.url("/oauth/token"))
            .basic_auth("calendar", Some(secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let wrong = exchange("not the secret", "grant_type=x").await.unwrap();
    assert_eq!(c.check("POST", "/oauth/token", wrong).await, 401);
    let bad = exchange(
        "a-service-secret-of-thirty-two-chars",
        "grant_type=password",
    )
    .await
    .unwrap();
    assert_eq!(c.check("POST", "/oauth/token", bad).await, 400);
    let event = anonymous
        .post(vault.url("/auth/risc"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("POST", "/auth/risc", event).await, 400);

    // Signing out at the provider (the embedded one has no endpoint).
    let mut leaving = Browser::new(&app);
    leaving.sign_in(EMAIL, PASSWORD).await;
    let out = leaving.get("/auth/logout/provider").await;
    assert_eq!(c.check("GET", "/auth/logout/provider", out).await, 303);
    let bad = leaving
        .get("/auth/logout/provider?redirectTo=https://evil.example/")
        .await;
    assert_eq!(c.check("GET", "/auth/logout/provider", bad).await, 400);

    // Device-bound sessions: off here (404), then on.
    let off = post_proof(&mut browser, "/auth/dbsc/register", Some("x")).await;
    assert_eq!(c.check("POST", "/auth/dbsc/register", off).await, 404);
    let off = dbsc_refresh(&mut browser, "/auth/dbsc/refresh", "x", None).await;
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", off).await, 404);
    let dbsc = spawn_app_with(&[("DBSC", "on")]).await;
    create_user(&dbsc, EMAIL).await;
    let mut device = Browser::new(&dbsc);
    let code = device.obtain_code(EMAIL, PASSWORD).await;
    let offer = registration_of(&device.exchange(&code).await).unwrap();
    let key = DeviceKey::es256();
    let no_proof = post_proof(&mut device, &offer.path, None).await;
    assert_eq!(c.check("POST", "/auth/dbsc/register", no_proof).await, 400);
    let forged = post_proof(
        &mut device,
        &offer.path,
        Some(&key.refresh_proof(&offer.challenge)),
    )
    .await;
    assert_eq!(c.check("POST", "/auth/dbsc/register", forged).await, 401);
    let proof = key.registration_proof(&offer.challenge);
    let bound = post_proof(&mut device, &offer.path, Some(&proof)).await;
    let session_id = bound.headers()["secure-session-challenge"]
        .to_str()
        .unwrap();
    let session_id = session_id
        .rsplit("id=")
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert_eq!(c.check("POST", "/auth/dbsc/register", bound).await, 200);
    let again = post_proof(&mut device, &offer.path, Some(&proof)).await;
    assert_eq!(c.check("POST", "/auth/dbsc/register", again).await, 401);
    let asked = dbsc_refresh(&mut device, "/auth/dbsc/refresh", &session_id, None).await;
    let (challenge, _) = challenge_of(&asked).unwrap();
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", asked).await, 403);
    let proof = key.refresh_proof(&challenge);
    let renewed = dbsc_refresh(&mut device, "/auth/dbsc/refresh", &session_id, Some(&proof)).await;
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", renewed).await, 200);
    let wrong = DeviceKey::es256().refresh_proof(&challenge);
    let wrong = dbsc_refresh(&mut device, "/auth/dbsc/refresh", &session_id, Some(&wrong)).await;
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", wrong).await, 401);
    let no_id = device
        .request(reqwest::Method::POST, "/auth/dbsc/refresh")
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", no_id).await, 400);
    let without_bound_cookie = {
        let mut copy = device.clone_jar();
        copy.jar.remove("chronos_bound");
        copy.refresh().await
    };
    assert_eq!(
        c.check("POST", "/auth/refresh", without_bound_cookie).await,
        401
    );
    assert_eq!(device.logout().await.status(), 200);
    let ended = dbsc_refresh(&mut device, "/auth/dbsc/refresh", &session_id, None).await;
    assert_eq!(c.check("POST", "/auth/dbsc/refresh", ended).await, 200);

    // The account page and passkeys, on a server whose PUBLIC_URL is a
    // domain name (passkeys need one). What a browser's authenticator
    // answers is the browser test's; here, every operation's answers.
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let named = spawn_app_with(&[
        ("BIND", bind.as_str()),
        ("PUBLIC_URL", public.as_str()),
        ("RATE_LIMIT_AUTH", "1000/minute"),
    ])
    .await;
    create_user(&named, EMAIL).await;
    let stranger = named
        .client()
        .get(named.url("/auth/account"))
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("GET", "/auth/account", stranger).await, 401);
    let mut person = Browser::at(&public);
    person.sign_in(EMAIL, PASSWORD).await;
    let page = person.get("/auth/account").await;
    assert_eq!(c.check("GET", "/auth/account", page).await, 200);
    let listed = person.get("/auth/passkeys").await;
    assert_eq!(c.check("GET", "/auth/passkeys", listed).await, 200);
    let call = |person: &Browser, method: reqwest::Method, path: &str, body: serde_json::Value| {
        let mut request = person.request(method, path).json(&body);
        if let Some(token) = person.cookie("chronos_csrf") {
            request = request.header("X-CSRF-Token", token);
        }
        request.send()
    };
    let begun = call(
        &person,
        reqwest::Method::POST,
        "/auth/passkeys/options",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let begun: Value = {
        let text = begun.text().await.unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let options = call(
        &person,
        reqwest::Method::POST,
        "/auth/passkeys/options",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        c.check("POST", "/auth/passkeys/options", options).await,
        200
    );
    let malformed = call(
        &person,
        reqwest::Method::POST,
        "/auth/passkeys",
        serde_json::json!({ "ceremonyId": begun["ceremonyId"], "credential": {}, "name": "Laptop" }),
    )
    .await
    .unwrap();
    assert_eq!(c.check("POST", "/auth/passkeys", malformed).await, 422);
    let renamed = call(
        &person,
        reqwest::Method::PATCH,
        "/auth/passkeys/nope",
        serde_json::json!({ "name": "x" }),
    )
    .await
    .unwrap();
    assert_eq!(c.check("PATCH", "/auth/passkeys/{id}", renamed).await, 404);
    let removed = call(
        &person,
        reqwest::Method::DELETE,
        "/auth/passkeys/nope",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(c.check("DELETE", "/auth/passkeys/{id}", removed).await, 404);
    let status = person.get("/auth/totp").await;
    assert_eq!(c.check("GET", "/auth/totp", status).await, 200);
    let enrol = call(
        &person,
        reqwest::Method::POST,
        "/auth/totp/enrol",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(c.check("POST", "/auth/totp/enrol", enrol).await, 200);
    for path in [
        "/auth/totp/confirm",
        "/auth/totp/recovery-codes",
        "/auth/totp/disable",
    ] {
        let wrong = call(
            &person,
            reqwest::Method::POST,
            path,
            serde_json::json!({ "code": "000000" }),
        )
        .await
        .unwrap();
        assert_eq!(c.check("POST", path, wrong).await, 401, "{path}");
    }
    // The sign-in page's passkey calls and second steps, without a flow
    // or an authenticator: their refusals.
    let flow = serde_json::json!({
        "redirect_uri": "http://localhost:5173/auth/web/callback",
        "code_challenge": "a".repeat(43),
        "code_challenge_method": "S256",
    });
    let signin_options = named
        .client()
        .post(named.url("/auth/signin/passkey/options"))
        .json(&flow)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.check("POST", "/auth/signin/passkey/options", signin_options)
            .await,
        200
    );
    let mut answer = flow.clone();
    answer["ceremonyId"] = "unknown".into();
    answer["credential"] = serde_json::json!({});
    let refused = named
        .client()
        .post(named.url("/auth/signin/passkey"))
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("POST", "/auth/signin/passkey", refused).await, 401);
    let mut signup = flow.clone();
    signup["email"] = "new@example.com".into();
    let signup_options = named
        .client()
        .post(named.url("/auth/signup/passkey/options"))
        .json(&signup)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.check("POST", "/auth/signup/passkey/options", signup_options)
            .await,
        200
    );
    let refused = named
        .client()
        .post(named.url("/auth/signup/passkey"))
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_eq!(c.check("POST", "/auth/signup/passkey", refused).await, 401);
    for path in ["/auth/signin/second-factor", "/auth/signin/enrol"] {
        let stray = named
            .client()
            .post(named.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("code=123456")
            .send()
            .await
            .unwrap();
        assert_eq!(c.check("POST", path, stray).await, 400, "{path}");
    }

    // Every documented operation was exercised.
    let mut missing = Vec::new();
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let key = (method.to_uppercase(), path.clone());
            if !c.seen.contains(&key) {
                missing.push(format!("{} {}", key.0, key.1));
            }
        }
    }
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}
