//! A cookie-keeping HTTP client that signs in the way a browser does:
//! follow `redirectUrl`, fill in the form (hidden fields included), carry
//! the code back to the API; then one typed helper per endpoint, called as
//! the web client calls it. Cookies are kept by hand so tests can copy,
//! replay and tamper with them. It never follows redirects.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::*;

pub const PASSWORD: &str = "correct horse battery";

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub jar: BTreeMap<String, String>,
    /// The origin this browser's frontend pages run on.
    pub origin: Option<String>,
}

impl Browser {
    /// A browser without cookies on `app`.
    pub fn new(app: &TestApp) -> Self {
        Self::at(&app.url(""))
    }

    /// A browser whose requests come from another loopback address (a
    /// client of its own for the rate limits).
    pub fn from_address(app: &TestApp, ip: &str) -> Self {
        let mut browser = Self::new(app);
        browser.client = app.client_from(ip);
        browser
    }

    /// A browser for the server at `base` (e.g. a spawned binary).
    pub fn at(base: &str) -> Self {
        Self {
            client: client_from(None),
            base: base.to_string(),
            jar: BTreeMap::new(),
            origin: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Another browser holding a copy of these cookies.
    pub fn clone_jar(&self) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            jar: self.jar.clone(),
            origin: self.origin.clone(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn absorb(&mut self, headers: &HeaderMap) {
        for (name, line) in set_cookies(headers) {
            let value = cookie_value(&line).to_string();
            if value.is_empty() || max_age(&line) == Some(0) {
                self.jar.remove(&name);
            } else {
                self.jar.insert(name, value);
            }
        }
    }

    pub fn request(&self, method: reqwest::Method, path_or_url: &str) -> reqwest::RequestBuilder {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        };
        let mut request = self.client.request(method, url);
        if !self.jar.is_empty() {
            request = request.header("Cookie", self.cookie_header());
        }
        request
    }

    /// Sends and keeps the cookies the response sets.
    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.unwrap();
        self.absorb(response.headers());
        response
    }

    /// `GET path` (or a whole URL), keeping the cookies of the answer.
    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let request = self.request(reqwest::Method::GET, path);
        self.send(request).await
    }

    /// A state-changing API call as the web client makes it: with the CSRF
    /// header read from the CSRF cookie.
    pub async fn post_api(&mut self, path: &str) -> reqwest::Response {
        let mut request = self.request(reqwest::Method::POST, path);
        if let Some(token) = self.cookie("chronos_csrf") {
            request = request.header("X-CSRF-Token", token);
        }
        self.send(request).await
    }

    /// `DELETE path` as the web client sends it, with the CSRF header.
    pub async fn delete_api(&mut self, path: &str) -> reqwest::Response {
        let mut request = self.request(reqwest::Method::DELETE, path);
        if let Some(token) = self.cookie("chronos_csrf") {
            request = request.header("X-CSRF-Token", token);
        }
        self.send(request).await
    }

    // The API, one helper per endpoint, each as the web client calls it.

    /// `GET /auth/google/login`: the sign-in page's (or the provider's
    /// authorize) URL as `redirectUrl`, and the flow cookie.
    pub async fn start_login(&mut self, redirect_to: Option<&str>) -> reqwest::Response {
        let mut path = "/auth/google/login".to_string();
        if let Some(target) = redirect_to {
            path.push_str(&format!("?redirectTo={}", urlencode(target)));
        }
        self.get(&path).await
    }

    /// [`Self::start_login`]'s `redirectUrl`: where the browser goes next
    /// (our sign-in page, or the provider's authorize URL).
    pub async fn login_url(&mut self, redirect_to: Option<&str>) -> String {
        let start = self.start_login(redirect_to).await;
        assert_eq!(start.status(), 200, "GET /auth/google/login");
        start.json::<Value>().await.unwrap()["redirectUrl"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `GET /auth/signin` (the page at `page_url`): the hidden fields of
    /// its form `form` (`signin` or `signup`), with a fresh form token.
    pub async fn form_fields(&mut self, page_url: &str, form: &str) -> Vec<(String, String)> {
        let html = self.get(page_url).await.text().await.unwrap();
        hidden_fields(&html, form)
    }

    /// `POST /auth/{form}` (`signin` or `signup`) with these fields, as the
    /// page's form posts it from `origin` (`None`: no Origin header). Not
    /// sent yet: [`Self::post_form`] sends it.
    pub fn form_request(
        &self,
        form: &str,
        origin: Option<&str>,
        body: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        let mut request = self.request(reqwest::Method::POST, &format!("/auth/{form}"));
        if let Some(origin) = origin {
            request = request.header("Origin", origin.trim_end_matches('/'));
        }
        request
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode_form(body))
    }

    /// Sends [`Self::form_request`] without keeping the cookies of the
    /// answer: the form's cookie stays as it was, so the same post can be
    /// sent again (a replay).
    pub async fn send_form(
        &self,
        form: &str,
        origin: Option<&str>,
        body: &[(String, String)],
    ) -> reqwest::Response {
        self.form_request(form, origin, body).send().await.unwrap()
    }

    /// Sends [`Self::form_request`] and keeps the cookies of the answer.
    pub async fn post_form(
        &mut self,
        form: &str,
        origin: Option<&str>,
        body: &[(String, String)],
    ) -> reqwest::Response {
        let request = self.form_request(form, origin, body);
        self.send(request).await
    }

    /// Opens the sign-in page and submits `form` (`signin` or `signup`) with
    /// the given visible fields from our own origin; the answer to the post.
    pub async fn submit(
        &mut self,
        page_url: &str,
        form: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let page = self.get(page_url).await;
        assert_eq!(page.status(), 200, "sign-in page");
        let html = page.text().await.unwrap();
        let mut body: Vec<(String, String)> = hidden_fields(&html, form);
        for (k, v) in fields {
            body.push((k.to_string(), v.to_string()));
        }
        let origin = self.base.clone();
        self.post_form(form, Some(&origin), &body).await
    }

    /// `POST /auth/web/callback` with the code, as the frontend does.
    pub async fn exchange(&mut self, code: &str) -> reqwest::Response {
        let mut request = self
            .request(reqwest::Method::POST, "/auth/web/callback")
            .json(&serde_json::json!({ "code": code }));
        if let Some(origin) = &self.origin {
            request = request.header("Origin", origin);
        }
        self.send(request).await
    }

    /// Login → page → form → 303 → the code in the Location.
    pub async fn obtain_code(&mut self, email: &str, password: &str) -> String {
        let url = self.login_url(None).await;
        let posted = self
            .submit(&url, "signin", &[("email", email), ("password", password)])
            .await;
        assert_eq!(posted.status(), 303, "{}", posted.text().await.unwrap());
        code_from_location(&posted)
    }

    /// The whole sign-in; returns the session response body.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Value {
        let code = self.obtain_code(email, password).await;
        let response = self.exchange(&code).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /auth/session`: the user and `expires_at`, or 401.
    pub async fn session(&mut self) -> reqwest::Response {
        self.get("/auth/session").await
    }

    /// `GET /auth/verify`: forward-auth, the user in headers, or 401.
    pub async fn verify(&mut self) -> reqwest::Response {
        self.get("/auth/verify").await
    }

    /// `GET /auth/csrf`: a CSRF cookie for this browser's session.
    pub async fn csrf(&mut self) -> reqwest::Response {
        self.get("/auth/csrf").await
    }

    /// `POST /auth/refresh`, with the CSRF header.
    pub async fn refresh(&mut self) -> reqwest::Response {
        self.post_api("/auth/refresh").await
    }

    /// `POST /auth/refresh` without the CSRF header (a forged request).
    pub async fn refresh_without_csrf(&mut self) -> reqwest::Response {
        let request = self.request(reqwest::Method::POST, "/auth/refresh");
        self.send(request).await
    }

    /// `POST /auth/logout`, with the CSRF header when there is a CSRF cookie.
    pub async fn logout(&mut self) -> reqwest::Response {
        self.post_api("/auth/logout").await
    }

    /// `POST /auth/logout?scope=` `local`, `global` or `none`.
    pub async fn logout_with_scope(&mut self, scope: &str) -> reqwest::Response {
        self.post_api(&format!("/auth/logout?scope={scope}")).await
    }

    /// `GET /auth/sessions`: this user's sessions.
    pub async fn sessions(&mut self) -> reqwest::Response {
        self.get("/auth/sessions").await
    }

    /// [`Self::sessions`]' list.
    pub async fn session_list(&mut self) -> Vec<Value> {
        self.sessions().await.json().await.unwrap()
    }

    /// The id of one of this browser's user's sessions other than its own,
    /// from `GET /auth/sessions`.
    pub async fn other_session_id(&mut self) -> String {
        self.session_list()
            .await
            .iter()
            .find(|s| s["current"] == false)
            .expect("another session")["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `DELETE /auth/sessions/{id}`, with the CSRF header.
    pub async fn end_session(&mut self, id: &str) -> reqwest::Response {
        self.delete_api(&format!("/auth/sessions/{id}")).await
    }

    /// `DELETE /auth/sessions/{id}` without the CSRF header.
    pub async fn end_session_without_csrf(&mut self, id: &str) -> reqwest::Response {
        let request = self.request(reqwest::Method::DELETE, &format!("/auth/sessions/{id}"));
        self.send(request).await
    }

    /// `GET /auth/desktop/callback?{query}`: the hand-off page to the app.
    pub async fn desktop_callback(&mut self, query: &str) -> reqwest::Response {
        self.get(&format!("/auth/desktop/callback?{query}")).await
    }

    /// `GET /.well-known/jwks.json`.
    pub async fn jwks(&mut self) -> reqwest::Response {
        self.get("/.well-known/jwks.json").await
    }

    /// `GET /health`.
    pub async fn health(&mut self) -> reqwest::Response {
        self.get("/health").await
    }

    /// `GET /health/ready`.
    pub async fn ready(&mut self) -> reqwest::Response {
        self.get("/health/ready").await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&mut self) -> reqwest::Response {
        self.get("/openapi.json").await
    }
}

pub fn code_from_location(response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .expect("a code in the redirect")
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn encode_form(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden inputs of the form with id `form`.
pub fn hidden_fields(html: &str, form: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!("id=\"{form}\""))
        .unwrap_or_else(|| panic!("no form {form}"));
    let end = start + html[start..].find("</form>").unwrap();
    let section = &html[start..end];
    section
        .split("<input ")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .map(|tag| {
            let attr = |name: &str| {
                let from = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let to = from + tag[from..].find('"').unwrap();
                unescape(&tag[from..to])
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

/// Creates an account directly in the app's store.
pub async fn create_user(app: &TestApp, email: &str) -> chronos::store::accounts::User {
    app.identity
        .passwords
        .register(email, PASSWORD, Some("Test User"))
        .await
        .unwrap()
}

/// A browser on `app` holding a copy of `browser`'s cookies (the same
/// person on another replica, or a thief replaying what it copied).
pub fn on(app: &TestApp, browser: &Browser) -> Browser {
    let mut copy = Browser::new(app);
    copy.jar = browser.jar.clone();
    copy
}
