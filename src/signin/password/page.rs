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

use super::{CheckError, PasswordSignIn, RegisterError};
use crate::config::public_path;
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::security::csrf::{Binding, Purpose, same_token};
use crate::store::accounts::{AccountError, UserId};
use crate::unix_now;
use crate::web::html::{Page, escape};
use crate::web::query::{query_pairs, query_param};

type PageState = State<Arc<PasswordSignIn>>;

pub fn router(method: Arc<PasswordSignIn>) -> Router {
    Router::new()
        .route("/auth/signin", get(page).post(sign_in))
        .route("/auth/signup", post(sign_up))
        .with_state(method)
}

/// What the page must carry from the authorize request to the form post.
struct FlowParams {
    redirect_uri: String,
    code_challenge: String,
}

fn is_challenge(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FlowParams {
    /// The form token's binding: this flow's challenge.
    fn binding(&self) -> Binding {
        Binding::Flow(self.code_challenge.clone())
    }

    fn from_pairs(state: &PasswordSignIn, pairs: &[(String, String)]) -> Option<Self> {
        let redirect_uri = query_param(pairs, "redirect_uri")?;
        let code_challenge = query_param(pairs, "code_challenge")?;
        let method = query_param(pairs, "code_challenge_method")?;
        (method == "S256"
            && is_challenge(&code_challenge)
            && state.page.redirects.allows(&redirect_uri))
        .then_some(Self {
            redirect_uri,
            code_challenge,
        })
    }
}

/// Form bodies: `application/x-www-form-urlencoded`, strictly UTF-8.
fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for part in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut kv = part.splitn(2, |b| *b == b'=');
        let decode = |raw: &[u8]| -> Option<String> {
            let plus: Vec<u8> = raw
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
            String::from_utf8(bytes).ok()
        };
        let key = decode(kv.next().unwrap_or_default())?;
        let value = decode(kv.next().unwrap_or_default())?;
        pairs.push((key, value));
    }
    Some(pairs)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Cannot sign in</h1><p class=\"error\">{}</p><p>Go back to the app and start signing in again.</p>",
        escape(message)
    );
    Page::new(Vec::new()).render(status, "Cannot sign in", &body)
}

/// Renders the form with a fresh anti-CSRF token (cookie + hidden field).
fn form_page(
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
        "<input type=\"hidden\" name=\"redirect_uri\" value=\"{}\">\
         <input type=\"hidden\" name=\"code_challenge\" value=\"{}\">\
         <input type=\"hidden\" name=\"code_challenge_method\" value=\"S256\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&flow.redirect_uri),
        escape(&flow.code_challenge),
        escape(&token),
    );
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    // Under PUBLIC_URL's path: a proxy in front may serve the page there.
    let base = escape(&public_path(&state.page.public_url));
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
             <button type=\"submit\">Create account</button></form></details>"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Sign in to Chronos</h1><p class=\"lead\">Use your Chronos account.</p>{error}\
         <form method=\"post\" action=\"{base}/auth/signin\" id=\"signin\">{hidden}\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{email}\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{signup}",
        email = escape(email),
    );
    let mut response = Page::new(state.page.redirects.origins()).render(status, "Sign in", &body);
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
    let Some(fields) = parse_form(body) else {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read (it must be UTF-8 form data).",
        )));
    };
    let Some(flow) = FlowParams::from_pairs(state, &fields) else {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form is invalid or incomplete.",
        )));
    };
    // The hidden token equals the form cookie, verifies for this flow's
    // form, and has not been posted before.
    let verified = match (
        query_param(&fields, "csrf"),
        state.page.cookies.read(headers, CookieKind::SigninForm),
    ) {
        (Some(field), Some(cookie)) if same_token(&field, cookie) => state
            .page
            .csrf
            .verify(Purpose::Form, &flow.binding(), &field, unix_now())
            .ok(),
        _ => None,
    };
    let fresh = match verified {
        Some(token) => match state.first_use_of_form_token(&token.nonce, token.exp).await {
            Ok(fresh) => fresh,
            Err(e) => return Err(Box::new(ApiError::internal(e).into_response())),
        },
        None => false,
    };
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

/// 303 to the redirect target with the code.
async fn issue_code(state: &PasswordSignIn, user_id: &UserId, flow: &FlowParams) -> Response {
    let code = match state
        .issue_code(user_id, &flow.code_challenge, &flow.redirect_uri)
        .await
    {
        Ok(code) => code,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let Ok(mut target) = url::Url::parse(&flow.redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect target is invalid.");
    };
    target.query_pairs_mut().append_pair("code", &code);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(target.as_str()) {
        headers.insert(header::LOCATION, location);
    }
    headers.append(
        header::SET_COOKIE,
        state.page.cookies.clear(CookieKind::SigninForm),
    );
    response
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
        Ok(Some(user)) => issue_code(state, &user.id, flow).await,
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
        Ok(user) => issue_code(&state, &user.id, &flow).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_strictly() {
        assert_eq!(
            parse_form(b"email=a%40b.c&password=p+w%21&empty="),
            Some(vec![
                ("email".into(), "a@b.c".into()),
                ("password".into(), "p w!".into()),
                ("empty".into(), String::new())
            ])
        );
        assert_eq!(parse_form(b"email=%FF%FE"), None);
        assert_eq!(parse_form(b"email=\xff"), None);
        assert_eq!(parse_form(b""), Some(vec![]));
    }
}
