//! The password sign-in's page: `GET /auth/signin` shows the form,
//! `POST /auth/signin` and `POST /auth/signup` check it and answer 303 to
//! the allow-listed `redirect_uri` with a one-time code.
//!
//! Login CSRF is stopped three times over: the Origin check (only our own
//! origin may post here, in the security layer), a hidden single-use token
//! bound to this flow's challenge that must match an httpOnly cookie set
//! with the form, and PKCE (a code made for someone else's challenge is
//! useless in this browser's flow).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::flow::{FlowParams, error_page, fresh_form_token, read_form};
use super::{CheckError, PasswordSignIn, RegisterError, passkey, second_step};
use crate::config::public_path;
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::security::csrf::Purpose;
use crate::security::guard::{
    ENROL_PATH, PASSKEY_OPTIONS_PATH, PASSKEY_PATH, PASSKEY_SIGNUP_OPTIONS_PATH,
    PASSKEY_SIGNUP_PATH, SECOND_STEP_PATH,
};
use crate::store::accounts::AccountError;
use crate::unix_now;
use crate::web::html::{Page, escape};
use crate::web::query::{query_pairs, query_param};

type PageState = State<Arc<PasswordSignIn>>;

pub fn router(method: Arc<PasswordSignIn>) -> Router {
    Router::new()
        .route("/auth/signin", get(page).post(sign_in))
        .route("/auth/signup", post(sign_up))
        .route(SECOND_STEP_PATH, post(second_step::answer))
        .route(ENROL_PATH, post(second_step::enrol))
        .route(PASSKEY_OPTIONS_PATH, post(passkey::sign_in_options))
        .route(PASSKEY_PATH, post(passkey::sign_in))
        .route(PASSKEY_SIGNUP_OPTIONS_PATH, post(passkey::sign_up_options))
        .route(PASSKEY_SIGNUP_PATH, post(passkey::sign_up))
        .with_state(method)
}

/// Renders the form with a fresh anti-CSRF token (cookie + hidden field).
pub(super) fn form_page(
    state: &PasswordSignIn,
    flow: &FlowParams,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Response {
    let token = state
        .page
        .csrf
        .issue(Purpose::Form, &flow.binding(), unix_now());
    let hidden = format!(
        "{}<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        flow.hidden_fields(),
        escape(&token),
    );
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    // Under PUBLIC_URL's path: a proxy in front may serve the page there.
    let base = escape(&public_path(&state.page.public_url));
    let passkeys = state.page.credentials.passkeys.is_some();
    let signup_passkey = if passkeys {
        "<p class=\"or\">or</p><button type=\"button\" class=\"secondary\" id=\"signup-passkey\" hidden>Create an account with a passkey</button>"
    } else {
        ""
    };
    let signup = if state.page.signup_enabled {
        format!(
            "<details><summary>Create an account</summary>\
             <form method=\"post\" action=\"{base}/auth/signup\" id=\"signup\">{hidden}\
             <label for=\"signup-name\">Name (optional)</label>\
             <input id=\"signup-name\" name=\"name\" autocomplete=\"name\" maxlength=\"200\">\
             <label for=\"signup-email\">Email</label>\
             <input id=\"signup-email\" name=\"email\" type=\"email\" autocomplete=\"email\" required>\
             <label for=\"signup-password\">Password (at least 8 characters)</label>\
             <input id=\"signup-password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"8\" required>\
             <button type=\"submit\">Create account</button></form>{signup_passkey}</details>"
        )
    } else {
        String::new()
    };
    let page = Page::new(state.page.redirects.origins()).calling_home();
    // The email field offers passkeys in the browser's autofill
    // (conditional mediation) when there are passkeys.
    let (autocomplete, passkey_button, script) = if passkeys {
        (
            "username webauthn",
            "<p class=\"or\">or</p><button type=\"button\" class=\"secondary\" id=\"passkey\" hidden>Sign in with a passkey</button>",
            format!(
                "<script nonce=\"{}\">const BASE = \"{base}\";\n{}</script>",
                page.nonce,
                passkey::SCRIPT
            ),
        )
    } else {
        ("username", "", String::new())
    };
    let body = format!(
        "<h1>Sign in to Chronos</h1><p class=\"lead\">Use your Chronos account.</p>{error}\
         <p class=\"error\" role=\"alert\" id=\"passkey-error\" hidden></p>\
         <form method=\"post\" action=\"{base}/auth/signin\" id=\"signin\">{hidden}\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"{autocomplete}\" value=\"{email}\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{passkey_button}{signup}{script}",
        email = escape(email),
    );
    let mut response = page.render(status, "Sign in", &body);
    response.headers_mut().append(
        header::SET_COOKIE,
        state.page.cookies.set(CookieKind::SigninForm, &token),
    );
    response
}

async fn page(State(state): PageState, RawQuery(query): RawQuery) -> Response {
    match FlowParams::from_pairs(&state, &query_pairs(query.as_deref())) {
        Some(flow) => form_page(&state, &flow, StatusCode::OK, None, ""),
        None => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is invalid or incomplete.",
        ),
    }
}

/// A checked form post: its fields and flow, or the page to answer with.
struct Submission {
    fields: Vec<(String, String)>,
    flow: FlowParams,
}

async fn check_submission(
    state: &PasswordSignIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Submission, Box<Response>> {
    let (fields, flow) = read_form(state, body)?;
    // The hidden token equals the form cookie, verifies for this flow's
    // form, and has not been posted before.
    let token = query_param(&fields, "csrf");
    let fresh = fresh_form_token(state, headers, token, Purpose::Form, &flow.binding()).await?;
    if !fresh {
        let email = query_param(&fields, "email").unwrap_or_default();
        return Err(Box::new(form_page(
            state,
            &flow,
            StatusCode::FORBIDDEN,
            Some(
                "This form expired, was already sent, or was not opened in this browser. Please try again.",
            ),
            &email,
        )));
    }
    Ok(Submission { fields, flow })
}

const BAD_CREDENTIALS: &str = "Invalid email or password.";

async fn sign_in(State(state): PageState, headers: HeaderMap, body: Bytes) -> Response {
    let Submission { fields, flow } = match check_submission(&state, &headers, &body).await {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let email = query_param(&fields, "email").unwrap_or_default();
    let password = query_param(&fields, "password").unwrap_or_default();
    if email.trim().is_empty() || password.is_empty() {
        return form_page(
            &state,
            &flow,
            StatusCode::BAD_REQUEST,
            Some("Enter your email and password."),
            &email,
        );
    }
    authenticate(&state, &flow, &email, &password).await
}

/// Checks the password: a code for the right one, the generic error (same
/// answer, same time for an unknown email) otherwise.
async fn authenticate(
    state: &PasswordSignIn,
    flow: &FlowParams,
    email: &str,
    password: &str,
) -> Response {
    match state.accounts().authenticate(email, password).await {
        Ok(Some(user)) => second_step::after_password(state, flow, &user).await,
        Ok(None) => form_page(
            state,
            flow,
            StatusCode::UNAUTHORIZED,
            Some(BAD_CREDENTIALS),
            email,
        ),
        Err(CheckError::Busy(_)) => busy_page(state, flow, email),
        Err(CheckError::Internal(e)) => ApiError::internal(e).into_response(),
    }
}

/// 503 with `Retry-After`: too many sign-ins are being checked at once.
/// The form comes back filled in, with a friendly word.
fn busy_page(state: &PasswordSignIn, flow: &FlowParams, email: &str) -> Response {
    let mut response = form_page(
        state,
        flow,
        StatusCode::SERVICE_UNAVAILABLE,
        Some("Many people are signing in right now. Please try again in a moment."),
        email,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn sign_up(State(state): PageState, headers: HeaderMap, body: Bytes) -> Response {
    if !state.page.signup_enabled {
        return error_page(StatusCode::FORBIDDEN, "Sign-up is disabled on this server.");
    }
    let Submission { fields, flow } = match check_submission(&state, &headers, &body).await {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let email = query_param(&fields, "email").unwrap_or_default();
    let password = query_param(&fields, "password").unwrap_or_default();
    let name = query_param(&fields, "name");
    match state
        .accounts()
        .register(&email, &password, name.as_deref())
        .await
    {
        Ok(user) => second_step::after_password(&state, &flow, &user).await,
        // Someone signing up again with their own password is signed in;
        // anyone else gets the same answer as a failed sign-in.
        Err(RegisterError::Account(AccountError::Exists)) => {
            authenticate(&state, &flow, &email, &password).await
        }
        Err(RegisterError::Busy(_)) => busy_page(&state, &flow, &email),
        Err(RegisterError::Account(AccountError::Internal(e))) => {
            ApiError::internal(e).into_response()
        }
        Err(invalid) => {
            let message = format!("Cannot create the account: {invalid}.");
            form_page(
                &state,
                &flow,
                StatusCode::BAD_REQUEST,
                Some(&message),
                &email,
            )
        }
    }
}
