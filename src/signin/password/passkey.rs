//! Signing in (and up) with a passkey on the embedded sign-in page. The
//! page's script asks for options, lets the browser make the assertion
//! (autofill or dialog), and posts the answer; the answer, like a right
//! password, earns a one-time code for the flow's redirect target, so the
//! callback and the web client are the same. A passkey verified with user
//! verification is two factors: no second step follows.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Deserialize;
use serde_json::{Value, json};

use super::PasswordSignIn;
use super::flow::{FlowParams, code_url};
use crate::cookies::CookieKind;
use crate::credentials::passkeys::PasskeyVerifier;
use crate::error::ApiError;
use crate::web::json::ApiJson;

type PageState = State<Arc<PasswordSignIn>>;

/// The flow, as the page's script sends it (the form's hidden fields).
#[derive(Deserialize)]
pub struct FlowFields {
    redirect_uri: String,
    code_challenge: String,
    code_challenge_method: String,
}

#[derive(Deserialize)]
pub struct SignInOptions {
    #[serde(flatten)]
    flow: FlowFields,
    /// For the email field's autofill rather than a dialog.
    #[serde(default)]
    conditional: bool,
}

#[derive(Deserialize)]
pub struct SignUpOptions {
    #[serde(flatten)]
    flow: FlowFields,
    email: String,
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct Answer {
    #[serde(flatten)]
    flow: FlowFields,
    #[serde(rename = "ceremonyId")]
    ceremony_id: String,
    credential: Value,
}

fn flow(state: &PasswordSignIn, fields: FlowFields) -> Result<FlowParams, ApiError> {
    FlowParams::checked(
        state,
        fields.redirect_uri,
        fields.code_challenge,
        &fields.code_challenge_method,
    )
    .ok_or(ApiError::BadRequest(
        "This sign-in flow is invalid or incomplete",
    ))
}

fn verifier(state: &PasswordSignIn) -> Result<&PasskeyVerifier, ApiError> {
    state
        .page
        .credentials
        .passkeys
        .as_ref()
        .ok_or(ApiError::NotTheirs(
            "Passkeys are not available on this server",
        ))
}

/// `{"redirectUrl"}` with the code, and the form cookie cleared.
async fn signed_in(
    state: &PasswordSignIn,
    user_id: &crate::store::accounts::UserId,
    flow: &FlowParams,
) -> Result<Response, ApiError> {
    let target = code_url(state, user_id, flow).await?;
    let mut response = Json(json!({ "redirectUrl": target.as_str() })).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.page.cookies.clear(CookieKind::SigninForm),
    );
    Ok(response)
}

pub async fn sign_in_options(
    State(state): PageState,
    ApiJson(body): ApiJson<SignInOptions>,
) -> Result<Response, ApiError> {
    let passkeys = verifier(&state)?;
    let flow = flow(&state, body.flow)?;
    let begun = passkeys
        .start_signin(&flow.code_challenge, body.conditional)
        .await?;
    Ok(Json(begun).into_response())
}

pub async fn sign_in(
    State(state): PageState,
    ApiJson(body): ApiJson<Answer>,
) -> Result<Response, ApiError> {
    let passkeys = verifier(&state)?;
    let flow = flow(&state, body.flow)?;
    let user_id = passkeys
        .finish_signin(&flow.code_challenge, &body.ceremony_id, body.credential)
        .await?;
    signed_in(&state, &user_id, &flow).await
}

pub async fn sign_up_options(
    State(state): PageState,
    ApiJson(body): ApiJson<SignUpOptions>,
) -> Result<Response, ApiError> {
    if !state.page.signup_enabled {
        return Err(ApiError::Forbidden("Sign-up is disabled on this server"));
    }
    let passkeys = verifier(&state)?;
    let flow = flow(&state, body.flow)?;
    let begun = passkeys
        .start_signup(&flow.code_challenge, &body.email, body.name.as_deref())
        .await?;
    Ok(Json(begun).into_response())
}

pub async fn sign_up(
    State(state): PageState,
    ApiJson(body): ApiJson<Answer>,
) -> Result<Response, ApiError> {
    if !state.page.signup_enabled {
        return Err(ApiError::Forbidden("Sign-up is disabled on this server"));
    }
    let passkeys = verifier(&state)?;
    let flow = flow(&state, body.flow)?;
    let user = passkeys
        .finish_signup(&flow.code_challenge, &body.ceremony_id, body.credential)
        .await?;
    signed_in(&state, &user.id, &flow).await
}

/// The sign-in page's passkey script (after `const BASE = "...";`).
pub const SCRIPT: &str = r#"(() => {
  if (!window.PublicKeyCredential) return;
  const form = document.getElementById("signin");
  const flow = {
    redirect_uri: form.elements.redirect_uri.value,
    code_challenge: form.elements.code_challenge.value,
    code_challenge_method: "S256",
  };
  const error = document.getElementById("passkey-error");
  const show = (message) => { error.textContent = message; error.hidden = false; };
  const bytes = (s) => {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
  };
  const post = async (path, body) => {
    const r = await fetch(BASE + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
    });
    return { ok: r.ok, body: await r.json().catch(() => ({})) };
  };
  const finish = async (path, begun, credential) => {
    const done = await post(path, { ...flow, ceremonyId: begun.ceremonyId, credential: credential.toJSON() });
    if (done.ok) location.assign(done.body.redirectUrl);
    else show(done.body.detail || "The passkey was not accepted.");
  };
  let pending = null;
  const signIn = async (conditional) => {
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    const begun = await post("/auth/signin/passkey/options", { ...flow, conditional });
    if (!begun.ok) { show(begun.body.detail || "Passkeys are unavailable."); return; }
    const publicKey = begun.body.options.publicKey;
    publicKey.challenge = bytes(publicKey.challenge);
    (publicKey.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    let credential;
    try {
      credential = await navigator.credentials.get({
        publicKey, signal: controller.signal, ...(conditional ? { mediation: "conditional" } : {}),
      });
    } catch (e) {
      if (!conditional && e.name !== "AbortError") show("No passkey was used.");
      return;
    }
    await finish("/auth/signin/passkey", begun.body, credential);
  };
  const button = document.getElementById("passkey");
  button.hidden = false;
  button.addEventListener("click", () => signIn(false));
  if (PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then((ok) => { if (ok) signIn(true); });
  }
  const signUp = document.getElementById("signup-passkey");
  if (signUp) {
    signUp.hidden = false;
    signUp.addEventListener("click", async () => {
      const email = document.getElementById("signup-email").value;
      const name = document.getElementById("signup-name").value;
      if (pending) pending.abort();
      const begun = await post("/auth/signup/passkey/options", { ...flow, email, name });
      if (!begun.ok) { show(begun.body.detail || "Cannot create the account."); return; }
      const publicKey = begun.body.options.publicKey;
      publicKey.challenge = bytes(publicKey.challenge);
      publicKey.user.id = bytes(publicKey.user.id);
      (publicKey.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
      let credential;
      try { credential = await navigator.credentials.create({ publicKey }); }
      catch (e) { show("No passkey was created."); return; }
      await finish("/auth/signup/passkey", begun.body, credential);
    });
  }
})();"#;
