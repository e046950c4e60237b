//! The few HTML pages this server renders (sign-in, desktop hand-off):
//! escaping, a shared shell, and a nonce-based Content-Security-Policy.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::secrets::random_token;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A page under construction: its nonce, for inline `<style>` and `<script>`.
pub struct Page {
    pub nonce: String,
    form_action: Vec<String>,
    /// The page's script calls our own API (`connect-src 'self'`).
    connects: bool,
}

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2433}
main{width:100%;max-width:380px;background:#fff;border-radius:12px;padding:32px;
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:22px;margin:0 0 4px}
p.lead{margin:0 0 24px;color:#5b6475}
label{display:block;font-size:14px;font-weight:600;margin:16px 0 6px}
input{width:100%;padding:10px 12px;font-size:16px;border:1px solid #c9ced8;border-radius:8px}
input:focus{outline:2px solid #3b6ef5;border-color:transparent}
button{width:100%;margin-top:24px;padding:11px;font-size:16px;font-weight:600;color:#fff;
background:#3b6ef5;border:0;border-radius:8px;cursor:pointer}
button:hover{background:#2f5bd0}
.error{background:#fdecec;color:#a12626;border-radius:8px;padding:10px 12px;margin:0 0 8px}
details{margin-top:28px;border-top:1px solid #e6e8ee;padding-top:16px}
summary{cursor:pointer;color:#3b6ef5;font-weight:600}
a{color:#3b6ef5}
button.secondary{background:#fff;color:#3b6ef5;border:1px solid #3b6ef5}
button.secondary:hover{background:#eef2fe}
.or{text-align:center;color:#5b6475;margin:20px 0 0;font-size:14px}
.qr{display:block;margin:16px auto;width:200px;height:200px}
code.secret{display:block;word-break:break-all;background:#f4f5f7;padding:8px;border-radius:6px}
ul.codes{columns:2;font-family:ui-monospace,monospace;padding-left:20px}
table{width:100%;border-collapse:collapse;font-size:14px}
td,th{text-align:left;padding:6px 4px;border-bottom:1px solid #e6e8ee}
td button{width:auto;margin:0;padding:4px 8px;font-size:13px}
";

impl Page {
    /// `form_action`: where forms on this page may post and redirect to.
    pub fn new(form_action: Vec<String>) -> Self {
        Self {
            nonce: random_token(16),
            form_action,
            connects: false,
        }
    }

    /// Lets the page's script call this server (passkeys, the account page).
    pub fn calling_home(mut self) -> Self {
        self.connects = true;
        self
    }

    fn csp(&self) -> String {
        let mut form_action = String::from("'self'");
        for origin in &self.form_action {
            form_action.push(' ');
            form_action.push_str(origin);
        }
        let connect = if self.connects {
            "; connect-src 'self'"
        } else {
            ""
        };
        format!(
            "default-src 'none'; style-src 'nonce-{n}'; script-src 'nonce-{n}'; img-src 'self' data:; \
             form-action {form_action}; frame-ancestors 'none'; base-uri 'none'{connect}",
            n = self.nonce
        )
    }

    /// Wraps `body` (already escaped HTML) in the shell and sends it.
    pub fn render(self, status: StatusCode, title: &str, body: &str) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
             <body><main>{body}</main></body></html>\n",
            title = escape(title),
            nonce = self.nonce,
        );
        let mut response = (status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(csp) = HeaderValue::from_str(&self.csp()) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;"
        );
    }
}
