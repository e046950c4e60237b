//! `GET /auth/desktop/callback?code=&error=&error_description=`: a page that
//! hands the code (or the error) to the desktop app through its deep link
//! (`DESKTOP_REDIRECT_URL`). Every value is escaped; the one inline script
//! and style carry the response's CSP nonce, and the script reads the link
//! from the page instead of having values written into it.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;

use crate::routes::state::AppState;
use crate::web::html::{Page, escape};
use crate::web::query::{query_pairs, query_param};

fn clip(value: Option<String>, max: usize) -> Option<String> {
    value
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

pub async fn callback(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let code = clip(query_param(&pairs, "code"), 512);
    let error = clip(query_param(&pairs, "error"), 200);
    let description = clip(query_param(&pairs, "error_description"), 500);

    let mut link = url::Url::parse(&state.settings.security.desktop_redirect_url).ok();
    if let Some(link) = link.as_mut() {
        let mut query = link.query_pairs_mut();
        if let Some(error) = &error {
            query.append_pair("error", error);
            if let Some(description) = &description {
                query.append_pair("error_description", description);
            }
        } else if let Some(code) = &code {
            query.append_pair("code", code);
        }
    }
    let href = link.map(String::from).unwrap_or_default();

    let page = Page::new(Vec::new());
    let (title, message) = match (&error, &code) {
        (Some(error), _) => (
            "Sign-in failed",
            format!(
                "<p class=\"error\">{}</p><p>Return to the Chronos app and try again.</p>",
                escape(description.as_deref().unwrap_or(error))
            ),
        ),
        (None, Some(_)) => (
            "Opening Chronos",
            "<p>You are signed in. Chronos should open now.</p>".to_string(),
        ),
        (None, None) => (
            "Nothing to do",
            "<p class=\"error\">This page was opened without a sign-in result.</p>".to_string(),
        ),
    };
    let script = if code.is_some() || error.is_some() {
        format!(
            "<script nonce=\"{}\">window.location.replace(document.getElementById('open').href);</script>",
            page.nonce
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>{title}</h1>{message}<p><a id=\"open\" href=\"{href}\">Open Chronos</a></p>{script}",
        title = escape(title),
        href = escape(&href),
    );
    page.render(StatusCode::OK, title, &body)
}
