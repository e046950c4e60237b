//! The account page (`GET /auth/account`) and the API behind it: a
//! signed-in person's passkeys (`/auth/passkeys`: list, add, rename,
//! remove) and two-step sign-in (`/auth/totp`: status, enrol, confirm, new
//! recovery codes, turn off). Embedded accounts only; changes need the
//! API's CSRF token like every other call, which the page is served with.
//! Turning TOTP off or replacing its recovery codes asks for a current
//! code: a stolen session alone cannot weaken the account.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::ApiJson;
use super::session::authenticate;
use crate::config::public_path;
use crate::cookies::CookieKind;
use crate::credentials::Credentials;
use crate::credentials::passkeys::{PasskeyEntry, PasskeyVerifier};
use crate::credentials::totp::{CodeError, Status};
use crate::error::{ApiError, Result};
use crate::routes::state::AppState;
use crate::security::csrf::{Binding, Purpose};
use crate::store::accounts::User;
use crate::unix_now;
use crate::web::html::{Page, escape};

type AppStateRef = State<Arc<AppState>>;

fn credentials(state: &AppState) -> Result<&Arc<Credentials>> {
    state.credentials.as_ref().ok_or(ApiError::NotFound)
}

fn passkeys(credentials: &Credentials) -> Result<&PasskeyVerifier> {
    credentials.passkeys.as_ref().ok_or(ApiError::NotTheirs(
        "Passkeys are not available on this server",
    ))
}

/// The signed-in person's account.
async fn me(state: &AppState, headers: &HeaderMap) -> Result<(Arc<Credentials>, User)> {
    let credentials = credentials(state)?.clone();
    let claims = authenticate(state, headers).await?;
    let user = credentials
        .accounts
        .by_id(&claims.sub)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotAuthenticated)?;
    Ok((credentials, user))
}

pub async fn list_passkeys(
    State(state): AppStateRef,
    headers: HeaderMap,
) -> Result<Json<Vec<PasskeyEntry>>> {
    let (credentials, user) = me(&state, &headers).await?;
    Ok(Json(passkeys(&credentials)?.list(&user.id).await?))
}

pub async fn passkey_options(State(state): AppStateRef, headers: HeaderMap) -> Result<Response> {
    let (credentials, user) = me(&state, &headers).await?;
    let begun = passkeys(&credentials)?.start_registration(&user).await?;
    Ok(Json(begun).into_response())
}

#[derive(Deserialize)]
pub struct NewPasskey {
    #[serde(rename = "ceremonyId")]
    ceremony_id: String,
    credential: Value,
    name: String,
}

pub async fn add_passkey(
    State(state): AppStateRef,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewPasskey>,
) -> Result<Response> {
    let (credentials, user) = me(&state, &headers).await?;
    let entry = passkeys(&credentials)?
        .finish_registration(&user, &body.ceremony_id, body.credential, &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

#[derive(Deserialize)]
pub struct Rename {
    name: String,
}

pub async fn rename_passkey(
    State(state): AppStateRef,
    headers: HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<Rename>,
) -> Result<Json<Value>> {
    let (credentials, user) = me(&state, &headers).await?;
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotTheirs("Passkey not found"));
    };
    passkeys(&credentials)?
        .rename(&user.id, &id, &body.name)
        .await?;
    Ok(Json(json!({ "message": "Passkey renamed" })))
}

pub async fn remove_passkey(
    State(state): AppStateRef,
    headers: HeaderMap,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Value>> {
    let (credentials, user) = me(&state, &headers).await?;
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotTheirs("Passkey not found"));
    };
    passkeys(&credentials)?.remove(&user.id, &id).await?;
    Ok(Json(json!({ "message": "Passkey removed" })))
}

pub async fn totp_status(State(state): AppStateRef, headers: HeaderMap) -> Result<Json<Status>> {
    let (credentials, user) = me(&state, &headers).await?;
    Ok(Json(credentials.totp.status(&user.id).await?))
}

pub async fn totp_enrol(State(state): AppStateRef, headers: HeaderMap) -> Result<Json<Value>> {
    let (credentials, user) = me(&state, &headers).await?;
    let enrolment = credentials.totp.enrol(&user.id, &user.email).await?;
    Ok(Json(json!({
        "secret": enrolment.secret,
        "uri": enrolment.uri,
        "qrSvg": enrolment.qr_svg,
    })))
}

#[derive(Deserialize)]
pub struct Code {
    code: String,
}

fn code_error(e: CodeError) -> ApiError {
    match e {
        CodeError::Wrong => ApiError::Refused("That code is not right, or was used already"),
        CodeError::Locked(_) => ApiError::RateLimited {
            body: json!({ "detail": e.to_string() }).to_string().into(),
            retry_after: crate::credentials::totp::LOCK_WINDOW as u64,
        },
        CodeError::Api(e) => e,
    }
}

fn codes(codes: Vec<String>) -> Json<Value> {
    Json(json!({ "recoveryCodes": codes }))
}

pub async fn totp_confirm(
    State(state): AppStateRef,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<Value>> {
    let (credentials, user) = me(&state, &headers).await?;
    let recovery = credentials
        .totp
        .confirm(&user.id, &body.code)
        .await
        .map_err(code_error)?;
    Ok(codes(recovery))
}

/// The signed-in person, once a current TOTP (or recovery) code proves
/// the account's second factor is at hand.
async fn me_with_code(
    state: &AppState,
    headers: &HeaderMap,
    code: &str,
) -> Result<(Arc<Credentials>, User)> {
    let (credentials, user) = me(state, headers).await?;
    credentials
        .totp
        .check(&user.id, code)
        .await
        .map_err(code_error)?;
    Ok((credentials, user))
}

pub async fn totp_recovery_codes(
    State(state): AppStateRef,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<Value>> {
    let (credentials, user) = me_with_code(&state, &headers, &body.code).await?;
    Ok(codes(credentials.totp.new_recovery_codes(&user.id).await?))
}

pub async fn totp_disable(
    State(state): AppStateRef,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Code>,
) -> Result<Json<Value>> {
    let (credentials, user) = me_with_code(&state, &headers, &body.code).await?;
    credentials.totp.remove(&user.id).await?;
    Ok(Json(json!({ "message": "Two-step sign-in is off" })))
}

/// The account page: signed in, the page and a CSRF token for its calls
/// (the API's cookie, set here); otherwise a pointer to the app's sign-in.
pub async fn page(State(state): AppStateRef, headers: HeaderMap) -> Response {
    let page = Page::new(Vec::new()).calling_home();
    let login = format!("{}/login", state.settings.security.frontend_url);
    let user = match me(&state, &headers).await {
        Ok((_, user)) => user,
        Err(ApiError::NotFound) => return ApiError::NotFound.into_response(),
        Err(ApiError::NotAuthenticated) => {
            let body = format!(
                "<h1>Your account</h1><p class=\"lead\">You are not signed in.</p>\
                 <p><a href=\"{}\">Sign in</a></p>",
                escape(&login)
            );
            return page.render(StatusCode::UNAUTHORIZED, "Your account", &body);
        }
        Err(e) => return e.into_response(),
    };
    let binding = Binding::of(&*state.authority, state.cookies(), &headers).await;
    let token = state.csrf().issue(Purpose::Api, &binding, unix_now());
    let base = escape(&public_path(
        state.settings.server.public_url.as_deref().unwrap_or(""),
    ));
    let passkeys_available = state
        .credentials
        .as_ref()
        .is_some_and(|c| c.passkeys.is_some());
    let passkey_section = if passkeys_available {
        "<h2>Passkeys</h2><table id=\"passkeys\"><thead><tr><th>Name</th><th>Created</th><th>Last used</th><th></th></tr></thead><tbody></tbody></table>\
         <label for=\"passkey-name\">New passkey's name</label><input id=\"passkey-name\" maxlength=\"64\" value=\"Passkey\">\
         <button type=\"button\" id=\"add-passkey\">Add a passkey</button>"
    } else {
        "<h2>Passkeys</h2><p>Passkeys need this server's address to be a domain name.</p>"
    };
    let body = format!(
        "<h1>Your account</h1><p class=\"lead\">Signed in as <strong id=\"email\">{email}</strong>.</p>\
         <p class=\"error\" role=\"alert\" id=\"error\" hidden></p>{passkey_section}\
         <h2>Two-step sign-in</h2><p id=\"totp-status\">…</p><div id=\"totp\"></div>\
         <p><a href=\"{app}\">Back to the app</a></p>\
         <script nonce=\"{nonce}\">const BASE = \"{base}\"; const CSRF = \"{csrf}\";\n{script}</script>",
        email = escape(&user.email),
        app = escape(&state.settings.security.frontend_url),
        nonce = page.nonce,
        csrf = escape(&token),
        script = SCRIPT,
    );
    let mut response = page.render(StatusCode::OK, "Your account", &body);
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies().set(CookieKind::Csrf, &token),
    );
    response
}

const SCRIPT: &str = r##"(() => {
  const error = document.getElementById("error");
  const show = (m) => { error.textContent = m; error.hidden = !m; };
  const call = async (method, path, body) => {
    const r = await fetch(BASE + path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": CSRF },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(json.detail || ("Error " + r.status));
    return json;
  };
  const bytes = (s) => {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
  };
  const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
  const when = (t) => t ? new Date(t).toLocaleString() : "never";
  const table = document.querySelector("#passkeys tbody");
  const listPasskeys = async () => {
    if (!table) return;
    const keys = await call("GET", "/auth/passkeys");
    table.replaceChildren(...keys.map((k) => {
      const tr = document.createElement("tr");
      tr.dataset.id = k.id;
      tr.append(cell(k.name), cell(when(k.created_at)), cell(when(k.last_used_at)));
      const actions = document.createElement("td");
      const rename = document.createElement("button");
      rename.textContent = "Rename"; rename.className = "rename";
      rename.onclick = async () => {
        const name = prompt("New name", k.name);
        if (name === null) return;
        try { await call("PATCH", "/auth/passkeys/" + encodeURIComponent(k.id), { name }); show(""); }
        catch (e) { show(e.message); }
        listPasskeys();
      };
      const remove = document.createElement("button");
      remove.textContent = "Remove"; remove.className = "remove secondary";
      remove.onclick = async () => {
        try { await call("DELETE", "/auth/passkeys/" + encodeURIComponent(k.id)); show(""); }
        catch (e) { show(e.message); }
        listPasskeys();
      };
      actions.append(rename, " ", remove);
      tr.append(actions);
      return tr;
    }));
  };
  const add = document.getElementById("add-passkey");
  if (add) add.onclick = async () => {
    try {
      const begun = await call("POST", "/auth/passkeys/options", {});
      const publicKey = begun.options.publicKey;
      publicKey.challenge = bytes(publicKey.challenge);
      publicKey.user.id = bytes(publicKey.user.id);
      (publicKey.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
      const credential = await navigator.credentials.create({ publicKey });
      await call("POST", "/auth/passkeys", {
        ceremonyId: begun.ceremonyId, credential: credential.toJSON(),
        name: document.getElementById("passkey-name").value,
      });
      show("");
      document.body.dataset.added = String(Number(document.body.dataset.added || 0) + 1);
    } catch (e) { show(e.message); }
    listPasskeys();
  };
  const status = document.getElementById("totp-status");
  const totp = document.getElementById("totp");
  const codeForm = (label, action) => {
    const input = document.createElement("input");
    input.autocomplete = "one-time-code"; input.id = "totp-code"; input.placeholder = "Code";
    const button = document.createElement("button");
    button.textContent = label; button.type = "button"; button.id = "totp-action";
    button.onclick = () => action(input.value);
    return [input, button];
  };
  const showCodes = (codes) => {
    const ul = document.createElement("ul");
    ul.className = "codes"; ul.id = "recovery-codes";
    codes.forEach((c) => { const li = document.createElement("li"); li.textContent = c; ul.append(li); });
    totp.replaceChildren(Object.assign(document.createElement("p"), { textContent: "Recovery codes (shown once):" }), ul);
  };
  const loadTotp = async () => {
    const s = await call("GET", "/auth/totp");
    if (s.enabled) {
      status.textContent = "On. Recovery codes left: " + s.recovery_codes_left + ".";
      const off = codeForm("Turn off", async (code) => {
        try { await call("POST", "/auth/totp/disable", { code }); show(""); loadTotp(); } catch (e) { show(e.message); }
      });
      const renew = document.createElement("button");
      renew.type = "button"; renew.className = "secondary"; renew.textContent = "New recovery codes";
      renew.onclick = async () => {
        try { showCodes((await call("POST", "/auth/totp/recovery-codes", { code: off[0].value })).recoveryCodes); show(""); }
        catch (e) { show(e.message); }
      };
      totp.replaceChildren(...off, renew);
    } else {
      status.textContent = "Off.";
      const on = document.createElement("button");
      on.type = "button"; on.id = "totp-enrol"; on.textContent = "Turn on";
      on.onclick = async () => {
        try {
          const e = await call("POST", "/auth/totp/enrol", {});
          const qr = document.createElement("div"); qr.className = "qr"; qr.innerHTML = e.qrSvg;
          const secret = Object.assign(document.createElement("code"), { className: "secret", id: "totp-secret", textContent: e.secret });
          totp.replaceChildren(qr, secret, ...codeForm("Confirm", async (code) => {
            try { showCodes((await call("POST", "/auth/totp/confirm", { code })).recoveryCodes); show(""); status.textContent = "On."; }
            catch (err) { show(err.message); }
          }));
        } catch (err) { show(err.message); }
      };
      totp.replaceChildren(on);
    }
  };
  listPasskeys().catch((e) => show(e.message));
  loadTotp().catch((e) => show(e.message));
})();"##;
