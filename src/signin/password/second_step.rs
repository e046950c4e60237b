//! The sign-in's second step, after a right password: a TOTP code or a
//! recovery code when the account has TOTP on; enrolment first when
//! `MFA_REQUIRED` and it has none. The step's form carries a single-use
//! token bound to the flow and the account (also set as the form cookie),
//! so the account it continues cannot be swapped and the step cannot be
//! skipped: the one-time code is issued only after it.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use super::PasswordSignIn;
use super::flow::{FlowParams, code_url, error_page, fresh_form_token, issue_code, read_form};
use crate::config::public_path;
use crate::cookies::CookieKind;
use crate::credentials::totp::{CodeError, Enrolment};
use crate::error::ApiError;
use crate::security::csrf::{Binding, Purpose};
use crate::security::guard::{ENROL_PATH, SECOND_STEP_PATH};
use crate::store::accounts::{User, UserId};
use crate::unix_now;
use crate::web::html::{Page, escape};
use crate::web::query::query_param;

type PageState = State<std::sync::Arc<PasswordSignIn>>;

fn binding(flow: &FlowParams, user_id: &str) -> Binding {
    Binding::Flow(format!("{}.{user_id}", flow.code_challenge))
}

/// After a right password: the code, or the second step it needs first.
pub(super) async fn after_password(
    state: &PasswordSignIn,
    flow: &FlowParams,
    user: &User,
) -> Response {
    let credentials = &state.page.credentials;
    let status = match credentials.totp.status(&user.id).await {
        Ok(status) => status,
        Err(e) => return e.into_response(),
    };
    if status.enabled {
        step_page(state, flow, &user.id, StatusCode::OK, None)
    } else if credentials.mfa_required {
        match credentials.totp.enrol(&user.id, &user.email).await {
            Ok(enrolment) => enrol_page(state, flow, &user.id, &enrolment, StatusCode::OK, None),
            Err(e) => e.into_response(),
        }
    } else {
        issue_code(state, &user.id, flow).await
    }
}

/// What a page of the second step says, and where its form goes.
struct Step<'a> {
    title: &'a str,
    content: &'a str,
    action: &'a str,
}

/// A page of the second step: the form with a fresh step token, which is
/// also the form cookie.
fn render(
    state: &PasswordSignIn,
    flow: &FlowParams,
    user_id: &str,
    status: StatusCode,
    step: Step<'_>,
    error: Option<&str>,
) -> Response {
    let Step {
        title,
        content,
        action,
    } = step;
    let token = state
        .page
        .csrf
        .issue(Purpose::SecondStep, &binding(flow, user_id), unix_now());
    let base = escape(&public_path(&state.page.public_url));
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1>{error}{content}\
         <form method=\"post\" action=\"{base}{action}\" id=\"second-step\">{hidden}\
         <input type=\"hidden\" name=\"user\" value=\"{user}\">\
         <input type=\"hidden\" name=\"step\" value=\"{token}\">\
         <label for=\"code\">Code</label>\
         <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"text\" maxlength=\"16\" required autofocus>\
         <button type=\"submit\">Continue</button></form>",
        title = escape(title),
        hidden = flow.hidden_fields(),
        user = escape(user_id),
        token = escape(&token),
    );
    let mut response = Page::new(state.page.redirects.origins()).render(status, title, &body);
    response.headers_mut().append(
        header::SET_COOKIE,
        state.page.cookies.set(CookieKind::SigninForm, &token),
    );
    response
}

fn step_page(
    state: &PasswordSignIn,
    flow: &FlowParams,
    user_id: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    render(
        state,
        flow,
        user_id,
        status,
        Step {
            title: "Two-step sign-in",
            content: "<p class=\"lead\">Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>",
            action: SECOND_STEP_PATH,
        },
        error,
    )
}

fn enrol_page(
    state: &PasswordSignIn,
    flow: &FlowParams,
    user_id: &str,
    enrolment: &Enrolment,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let content = format!(
        "<p class=\"lead\">This server asks for a second step at sign-in. Scan the code with an \
         authenticator app, then enter the 6-digit code it shows.</p>\
         <div class=\"qr\" id=\"qr\">{svg}</div>\
         <p>Or type this key:</p><code class=\"secret\" id=\"totp-secret\">{secret}</code>",
        svg = enrolment.qr_svg,
        secret = escape(&enrolment.secret),
    );
    render(
        state,
        flow,
        user_id,
        status,
        Step {
            title: "Set up two-step sign-in",
            content: &content,
            action: ENROL_PATH,
        },
        error,
    )
}

/// A checked post of the step's form: its flow, account and code.
struct StepPost {
    flow: FlowParams,
    user_id: UserId,
    code: String,
}

async fn check_post(
    state: &PasswordSignIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<StepPost, Box<Response>> {
    let (fields, flow) = read_form(state, body)?;
    let Some(user_id) = query_param(&fields, "user") else {
        return Err(Box::new(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form is invalid or incomplete.",
        )));
    };
    let token = query_param(&fields, "step");
    let binding = binding(&flow, &user_id);
    let fresh = fresh_form_token(state, headers, token, Purpose::SecondStep, &binding).await?;
    if !fresh {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "This step expired, was already sent, or was not opened in this browser.",
        )));
    }
    Ok(StepPost {
        flow,
        user_id: user_id.into(),
        code: query_param(&fields, "code").unwrap_or_default(),
    })
}

/// A refused code's status for the page shown again (429 once locked).
fn refused(error: &CodeError) -> (StatusCode, String) {
    let status = match error {
        CodeError::Locked(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    (status, error.to_string())
}

pub(super) async fn answer(State(state): PageState, headers: HeaderMap, body: Bytes) -> Response {
    let post = match check_post(&state, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return *page,
    };
    match state
        .page
        .credentials
        .totp
        .check(&post.user_id, &post.code)
        .await
    {
        Ok(()) => issue_code(&state, &post.user_id, &post.flow).await,
        Err(CodeError::Api(e)) => e.into_response(),
        Err(e) => {
            let (status, message) = refused(&e);
            step_page(&state, &post.flow, &post.user_id, status, Some(&message))
        }
    }
}

pub(super) async fn enrol(State(state): PageState, headers: HeaderMap, body: Bytes) -> Response {
    let post = match check_post(&state, &headers, &body).await {
        Ok(post) => post,
        Err(page) => return *page,
    };
    let credentials = &state.page.credentials;
    match credentials.totp.confirm(&post.user_id, &post.code).await {
        Ok(codes) => recovery_codes_page(&state, &post.flow, &post.user_id, &codes).await,
        Err(CodeError::Api(e)) => e.into_response(),
        Err(e) => {
            let (status, message) = refused(&e);
            let email = match credentials.accounts.by_id(&post.user_id).await {
                Ok(Some(user)) => user.email,
                Ok(None) => return error_page(StatusCode::BAD_REQUEST, "This account is gone."),
                Err(e) => return ApiError::internal(e).into_response(),
            };
            match credentials.totp.pending(&post.user_id, &email).await {
                Ok(Some(enrolment)) => enrol_page(
                    &state,
                    &post.flow,
                    &post.user_id,
                    &enrolment,
                    status,
                    Some(&message),
                ),
                Ok(None) => error_page(StatusCode::BAD_REQUEST, "Start signing in again."),
                Err(e) => e.into_response(),
            }
        }
    }
}

/// Enrolment done: the recovery codes, shown this once, and the way on
/// (the code for the app, as a link).
async fn recovery_codes_page(
    state: &PasswordSignIn,
    flow: &FlowParams,
    user_id: &UserId,
    codes: &[String],
) -> Response {
    let target = match code_url(state, user_id, flow).await {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let list: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", escape(c)))
        .collect();
    let body = format!(
        "<h1>Recovery codes</h1><p class=\"lead\">Two-step sign-in is on. Keep these codes \
         somewhere safe: each signs you in once if you lose your authenticator. They are not \
         shown again.</p><ul class=\"codes\" id=\"recovery-codes\">{list}</ul>\
         <p><a id=\"continue\" href=\"{href}\">Continue to the app</a></p>",
        href = escape(target.as_str()),
    );
    let mut response =
        Page::new(state.page.redirects.origins()).render(StatusCode::OK, "Recovery codes", &body);
    // Not cached: the envelope sends every /auth/* answer with no-store.
    response.headers_mut().append(
        header::SET_COOKIE,
        state.page.cookies.clear(CookieKind::SigninForm),
    );
    response
}
