//! `PUBLIC_URL` with a path: the API served under `/api` by a proxy that
//! strips the prefix (the web client's Vite development setup). The server
//! still answers on its own paths; every URL it writes for the browser (the
//! sign-in page's forms, the authorize URL, the OpenAPI `servers`) carries
//! the path, or the browser leaves the prefix and the proxy answers 404.

use base64::Engine;
use serde_json::Value;

use crate::support::*;

const FRONT: &str = "http://localhost:5174";
const PUBLIC: &str = "http://localhost:5174/api";

/// Every `action`, `href` and `src` of a page that points at this server
/// by path alone but does not begin with `prefix`.
fn outside(html: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["action=\"", "href=\"", "src=\""] {
        for (at, _) in html.match_indices(attribute) {
            let from = at + attribute.len();
            let value = &html[from..from + html[from..].find('"').unwrap()];
            if value.starts_with('/') && !value.starts_with(&format!("{prefix}/")) {
                found.push(value.to_string());
            }
        }
    }
    found
}

fn action_of(html: &str, form: &str) -> String {
    let at = html
        .find(&format!("id=\"{form}\""))
        .unwrap_or_else(|| panic!("no form {form}"));
    let tag = &html[html[..at].rfind("<form").unwrap()..at];
    let from = tag.find("action=\"").unwrap() + "action=\"".len();
    tag[from..from + tag[from..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn with_a_path_in_public_url_every_url_written_for_the_browser_carries_it() {
    // The trailing slash is the operator's; the path is /api either way.
    let app = spawn_app_with(&[
        ("PUBLIC_URL", "http://localhost:5174/api/"),
        ("FRONTEND_URL", FRONT),
    ])
    .await;
    create_user(&app, "ann@example.com").await;
    // Requests reach the server as the proxy forwards them: without /api.
    let mut browser = Browser::new(&app);
    browser.origin = Some(FRONT.into());

    // The authorize URL: the page under PUBLIC_URL.
    let url = browser.login_url(None).await;
    assert!(url.starts_with(&format!("{PUBLIC}/auth/signin?")), "{url}");

    // The page's forms post under the path, and nothing on it leaves it.
    let page = browser.get(url.strip_prefix(PUBLIC).unwrap()).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert_eq!(action_of(&html, "signin"), "/api/auth/signin");
    assert_eq!(action_of(&html, "signup"), "/api/auth/signup");
    assert_eq!(outside(&html, "/api"), Vec::<String>::new(), "{html}");
    let fields = hidden_fields(&html, "signin");

    // Posts are taken from PUBLIC_URL's origin (an origin has no path) and
    // no other: the server's own address is refused.
    let direct = app.url("");
    let refused = browser
        .post_form("signin", Some(direct.trim_end_matches('/')), &fields)
        .await;
    assert_eq!(refused.status(), 403);

    // A page the server renders again (here: a tampered form token) keeps
    // the path too.
    let mut tampered = fields.clone();
    for (k, v) in tampered.iter_mut() {
        if k == "csrf" {
            v.push('x');
        }
    }
    let again = browser.post_form("signin", Some(FRONT), &tampered).await;
    assert_eq!(again.status(), 403);
    let html = again.text().await.unwrap();
    assert_eq!(action_of(&html, "signin"), "/api/auth/signin");
    assert_eq!(action_of(&html, "signup"), "/api/auth/signup");
    assert_eq!(outside(&html, "/api"), Vec::<String>::new(), "{html}");

    // Signed in: 303 to the frontend's callback, the code exchanged.
    let mut body = hidden_fields(&html, "signin");
    body.push(("email".into(), "ann@example.com".into()));
    body.push(("password".into(), PASSWORD.into()));
    let posted = browser.post_form("signin", Some(FRONT), &body).await;
    assert_eq!(posted.status(), 303);
    let location = posted.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{FRONT}/auth/web/callback?code=")),
        "{location}"
    );
    let code = code_from_location(&posted);
    assert_eq!(browser.exchange(&code).await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    // The issuer is PUBLIC_URL as before (without the trailing slash), so
    // tokens issued before this change still verify.
    let token = browser.cookie("chronos_session").unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], PUBLIC);

    // The desktop hand-off page links to the app only.
    for query in ["code=abc", "error=access_denied&error_description=no"] {
        let page = browser.desktop_callback(query).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert_eq!(outside(&html, "/api"), Vec::<String>::new(), "{html}");
    }

    // The OpenAPI document names this server, path included; the rest is
    // the repository's document.
    let mut served: Value = browser.openapi().await.json().await.unwrap();
    assert_eq!(served["servers"][0]["url"], PUBLIC);
    assert_eq!(served["servers"].as_array().unwrap().len(), 1);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut document: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/docs/openapi.json")).unwrap(),
    )
    .unwrap();
    served.as_object_mut().unwrap().remove("servers");
    document.as_object_mut().unwrap().remove("servers");
    assert_eq!(served, document);
}

#[tokio::test]
async fn at_the_root_the_forms_post_to_the_root() {
    let app = spawn_app_with(&[("PUBLIC_URL", "http://localhost:5174/")]).await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    assert!(url.starts_with(&format!("{FRONT}/auth/signin?")), "{url}");
    let html = browser
        .get(url.strip_prefix(FRONT).unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(action_of(&html, "signin"), "/auth/signin");
    assert_eq!(action_of(&html, "signup"), "/auth/signup");
    let served: Value = browser.openapi().await.json().await.unwrap();
    assert_eq!(served["servers"][0]["url"], FRONT);
}

#[tokio::test]
async fn chromium_signs_in_through_a_proxy_that_serves_the_api_under_a_path() {
    const WHAT: &str = "prefix browser test";
    if let Some(reason) = missing_browser_tooling() {
        return skip_or_fail(WHAT, &reason);
    }
    let Some(nginx) = nginx_binary() else {
        return skip_or_fail(WHAT, "no nginx (apt-get install nginx-light)");
    };
    // One origin, as with Vite: the web client at the root, the API under
    // /api, forwarded without the prefix.
    let (front_port, client_port) = (free_port(), free_port());
    let front = format!("http://localhost:{front_port}");
    let api = format!("{front}/api");
    let app = spawn_app_with(&[("PUBLIC_URL", &api), ("FRONTEND_URL", &front)]).await;
    create_user(&app, "browser@example.com").await;
    let dir = tempfile::TempDir::new().unwrap();
    let server = format!(
        "server {{\n listen 127.0.0.1:{front_port};\n\
         location /api/ {{ proxy_pass http://{chronos}/; proxy_set_header Host $http_host; }}\n\
         location / {{ proxy_pass http://127.0.0.1:{client_port}; proxy_set_header Host $http_host; }}\n}}",
        chronos = app.addr,
    );
    let _nginx = start_nginx_with(&nginx, dir.path(), front_port, &server);

    let root = env!("CARGO_MANIFEST_DIR");
    let output = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/browser/prefix-signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_URL", &front)
        .env("FRONTEND_PORT", client_port.to_string())
        .env("EMAIL", "browser@example.com")
        .env("PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    script_passed(
        &output,
        &[
            "the form posts to /api/auth/signin",
            format!("posted to {api}/auth/signin: 303").as_str(),
            "signed in as browser@example.com",
            "session 200 browser@example.com",
        ],
    );
}
