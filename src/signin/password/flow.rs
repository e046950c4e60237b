//! What the sign-in page's steps share: the flow they carry (redirect
//! target and PKCE challenge, checked), form decoding, the error page, and
//! the one-time code that ends every way of signing in.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::PasswordSignIn;
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::security::csrf::{Binding, Purpose, same_token};
use crate::store::accounts::UserId;
use crate::unix_now;
use crate::web::html::{Page, escape};
use crate::web::query::query_param;

/// What the page must carry from the authorize request to the form post.
pub struct FlowParams {
    pub(super) redirect_uri: String,
    pub(super) code_challenge: String,
}

fn is_challenge(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FlowParams {
    /// The form token's binding: this flow's challenge.
    pub(super) fn binding(&self) -> Binding {
        Binding::Flow(self.code_challenge.clone())
    }

    pub(super) fn from_pairs(state: &PasswordSignIn, pairs: &[(String, String)]) -> Option<Self> {
        Self::checked(
            state,
            query_param(pairs, "redirect_uri")?,
            query_param(pairs, "code_challenge")?,
            &query_param(pairs, "code_challenge_method")?,
        )
    }

    /// The flow when its redirect target is allowed and its challenge is S256.
    pub(super) fn checked(
        state: &PasswordSignIn,
        redirect_uri: String,
        code_challenge: String,
        method: &str,
    ) -> Option<Self> {
        (method == "S256"
            && is_challenge(&code_challenge)
            && state.page.redirects.allows(&redirect_uri))
        .then_some(Self {
            redirect_uri,
            code_challenge,
        })
    }

    /// The hidden fields that carry the flow through a form.
    pub(super) fn hidden_fields(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"redirect_uri\" value=\"{}\">\
             <input type=\"hidden\" name=\"code_challenge\" value=\"{}\">\
             <input type=\"hidden\" name=\"code_challenge_method\" value=\"S256\">",
            escape(&self.redirect_uri),
            escape(&self.code_challenge),
        )
    }
}

/// Form bodies: `application/x-www-form-urlencoded`, strictly UTF-8.
pub(super) fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
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

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Cannot sign in</h1><p class=\"error\">{}</p><p>Go back to the app and start signing in again.</p>",
        escape(message)
    );
    Page::new(Vec::new()).render(status, "Cannot sign in", &body)
}

/// A form's fields, in order.
pub(super) type Fields = Vec<(String, String)>;

/// A posted form of the page: its fields and the flow they carry, or the
/// error page to answer with.
pub(super) fn read_form(
    state: &PasswordSignIn,
    body: &[u8],
) -> Result<(Fields, FlowParams), Box<Response>> {
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
    Ok((fields, flow))
}

/// Whether a form's single-use token (`field`) is this browser's (it equals
/// the form cookie, in constant time), verifies for `purpose` in
/// `binding`, and is posted for the first time (its nonce is recorded now).
pub(super) async fn fresh_form_token(
    state: &PasswordSignIn,
    headers: &HeaderMap,
    field: Option<String>,
    purpose: Purpose,
    binding: &Binding,
) -> Result<bool, Box<Response>> {
    let verified = match (
        field,
        state.page.cookies.read(headers, CookieKind::SigninForm),
    ) {
        (Some(field), Some(cookie)) if same_token(&field, cookie) => state
            .page
            .csrf
            .verify(purpose, binding, &field, unix_now())
            .ok(),
        _ => None,
    };
    match verified {
        Some(token) => state
            .first_use_of_form_token(&token.nonce, token.exp)
            .await
            .map_err(|e| Box::new(ApiError::internal(e).into_response())),
        None => Ok(false),
    }
}

/// The redirect target with a fresh one-time code for `user_id`.
pub(super) async fn code_url(
    state: &PasswordSignIn,
    user_id: &UserId,
    flow: &FlowParams,
) -> Result<url::Url, ApiError> {
    let code = state
        .issue_code(user_id, &flow.code_challenge, &flow.redirect_uri)
        .await
        .map_err(ApiError::internal)?;
    let mut target = url::Url::parse(&flow.redirect_uri)
        .map_err(|_| ApiError::BadRequest("The redirect target is invalid"))?;
    target.query_pairs_mut().append_pair("code", &code);
    Ok(target)
}

/// 303 to the redirect target with the code.
pub(super) async fn issue_code(
    state: &PasswordSignIn,
    user_id: &UserId,
    flow: &FlowParams,
) -> Response {
    let target = match code_url(state, user_id, flow).await {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
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
