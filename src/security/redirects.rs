//! The allow-list of places a sign-in may return to: the frontend's own
//! callback, plus exactly the URLs in `OAUTH_REDIRECT_URLS`.

#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    default: String,
    allowed: Vec<String>,
}

impl RedirectPolicy {
    pub fn new(frontend_url: &str, allowed: Vec<String>) -> Self {
        Self {
            default: format!("{frontend_url}/auth/web/callback"),
            allowed,
        }
    }

    /// `FRONTEND_URL/auth/web/callback`.
    pub fn default_target(&self) -> &str {
        &self.default
    }

    /// Exact match only: no prefixes, no wildcards, no normalisation that
    /// an attacker could steer.
    pub fn allows(&self, url: &str) -> bool {
        url == self.default || self.allowed.iter().any(|a| a == url)
    }

    /// The target for a requested `redirectTo` (none = the default), or
    /// `None` when it is not allowed.
    pub fn resolve<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        match requested.filter(|r| !r.is_empty()) {
            None => Some(&self.default),
            Some(r) if self.allows(r) => Some(r),
            Some(_) => None,
        }
    }

    /// Origins of every allowed target (for the sign-in page's CSP
    /// `form-action`, which browsers also apply to the redirect after a post).
    pub fn origins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for target in std::iter::once(&self.default).chain(&self.allowed) {
            if let Ok(url) = url::Url::parse(target) {
                let origin = match (url.host_str(), url.port()) {
                    (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
                    (Some(h), None) => format!("{}://{h}", url.scheme()),
                    (None, _) => format!("{}:", url.scheme()),
                };
                if !out.contains(&origin) {
                    out.push(origin);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_targets_are_allowed() {
        let p = RedirectPolicy::new(
            "http://localhost:5173",
            vec!["https://app.example.com/done".into()],
        );
        assert_eq!(
            p.resolve(None),
            Some("http://localhost:5173/auth/web/callback")
        );
        assert_eq!(
            p.resolve(Some("")),
            Some("http://localhost:5173/auth/web/callback")
        );
        assert_eq!(
            p.resolve(Some("https://app.example.com/done")),
            Some("https://app.example.com/done")
        );
        for bad in [
            "https://app.example.com/done/../evil",
            "https://app.example.com/done?x=1",
            "https://app.example.com.evil.com/done",
            "https://evil.com",
            "//evil.com",
            "javascript:alert(1)",
        ] {
            assert_eq!(p.resolve(Some(bad)), None, "{bad}");
        }
        assert_eq!(
            p.origins(),
            vec![
                "http://localhost:5173".to_string(),
                "https://app.example.com".to_string()
            ]
        );
    }
}
