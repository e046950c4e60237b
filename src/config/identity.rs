//! The identity section: who signs people in. `embedded` is our own
//! password page; `oidc` is any OpenID Connect provider (Google, Keycloak,
//! Auth0, Entra ID, Okta...); `supabase` is Supabase Auth, which then also
//! issues the session's tokens.

use url::Url;

use super::{ConfigError, Env, Secret, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "IDENTITY_PROVIDER",
        default: "embedded",
        help: "who signs people in: embedded (our password page), oidc (an OpenID Connect provider) or supabase (Supabase Auth)",
    },
    VarDoc {
        name: "SIGNUP_ENABLED",
        default: "true (production: false)",
        help: "whether the embedded sign-in page offers sign-up",
    },
    VarDoc {
        name: "WEBAUTHN_RP_ID",
        default: "(empty: PUBLIC_URL's host)",
        help: "the passkeys' relying party id: PUBLIC_URL's host or a domain it is under (passkeys are off when PUBLIC_URL's host is an IP address and this is unset)",
    },
    VarDoc {
        name: "MFA_REQUIRED",
        default: "false",
        help: "embedded accounts must enrol a TOTP second factor at their next password sign-in (a passkey sign-in needs none)",
    },
    VarDoc {
        name: "OIDC_ISSUER",
        default: "(empty; required for oidc)",
        help: "the provider's issuer URL; its discovery document must name exactly this issuer",
    },
    VarDoc {
        name: "OIDC_CLIENT_ID",
        default: "(empty; required for oidc)",
        help: "this server's client id at the provider",
    },
    VarDoc {
        name: "OIDC_CLIENT_SECRET",
        default: "(empty: a public client, PKCE only)",
        help: "the client secret, sent as client_secret_basic or client_secret_post as discovery allows; never logged",
    },
    VarDoc {
        name: "OIDC_SCOPES",
        default: "openid email profile",
        help: "scopes asked for (space-separated; must include openid)",
    },
    VarDoc {
        name: "OIDC_AUTH_PARAMS",
        default: "(empty)",
        help: "extra authorization parameters, e.g. access_type=offline&prompt=consent, or hd=example.com (Google)",
    },
    VarDoc {
        name: "OIDC_ALLOWED_EMAIL_DOMAINS",
        default: "(empty: any)",
        help: "comma-separated email domains whose people may sign in",
    },
    VarDoc {
        name: "OIDC_REQUIRE_VERIFIED_EMAIL",
        default: "true",
        help: "refuse sign-in unless the provider says the email is verified",
    },
    VarDoc {
        name: "SUPABASE_URL",
        default: "(empty; required for supabase)",
        help: "the Supabase project URL (its Auth API is SUPABASE_URL/auth/v1)",
    },
    VarDoc {
        name: "SUPABASE_PUBLISHABLE_KEY",
        default: "(empty; required for supabase)",
        help: "the project's publishable (or legacy anon) key, sent as apikey; never the secret key",
    },
    VarDoc {
        name: "SUPABASE_ANON_KEY",
        default: "(empty)",
        help: "accepted instead of SUPABASE_PUBLISHABLE_KEY",
    },
    VarDoc {
        name: "SUPABASE_JWT_SECRET",
        default: "(empty: keys from the project's JWKS)",
        help: "only for projects still on the legacy HS256 JWT secret",
    },
    VarDoc {
        name: "SUPABASE_OAUTH_PROVIDER",
        default: "google",
        help: "the provider Supabase signs people in with",
    },
    VarDoc {
        name: "SUPABASE_SCOPES",
        default: "(empty: the provider's defaults)",
        help: "extra scopes asked of that provider, space-separated",
    },
    VarDoc {
        name: "SUPABASE_AUTH_PARAMS",
        default: "(empty)",
        help: "extra parameters for the provider, e.g. access_type=offline&prompt=consent",
    },
    VarDoc {
        name: "OIDC_REVOKE_ON_LOGOUT",
        default: "true",
        help: "at logout, revoke the provider refresh token held for the session (when the provider has a revocation endpoint)",
    },
];

/// Authorization parameters that the flow itself sets.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Exactly as configured (issuer comparison is exact).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub auth_params: Vec<(String, String)>,
    /// Lower-case; empty: any domain.
    pub allowed_email_domains: Vec<String>,
    pub require_verified_email: bool,
    pub revoke_on_logout: bool,
}

#[derive(Debug, Clone)]
pub struct SupabaseSettings {
    /// The project URL, without a trailing slash.
    pub url: String,
    pub publishable_key: Secret,
    pub jwt_secret: Option<Secret>,
    pub oauth_provider: String,
    pub scopes: Option<String>,
    pub auth_params: Vec<(String, String)>,
}

impl SupabaseSettings {
    /// `SUPABASE_URL/auth/v1`: the Auth API and its tokens' issuer.
    pub fn auth_url(&self) -> String {
        format!("{}/auth/v1", self.url)
    }
}

#[derive(Debug, Clone)]
pub enum Provider {
    Embedded,
    Oidc(OidcSettings),
    Supabase(SupabaseSettings),
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub provider: Provider,
    pub signup_enabled: bool,
    /// `WEBAUTHN_RP_ID`; checked against PUBLIC_URL at start-up.
    pub webauthn_rp_id: Option<String>,
    pub mfa_required: bool,
}

pub fn parse(env: &Env, production: bool) -> Result<IdentitySettings, ConfigError> {
    let signup_enabled = parse::bool_or("SIGNUP_ENABLED", env.get("SIGNUP_ENABLED"), !production)?;
    let kind = env
        .get("IDENTITY_PROVIDER")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "embedded".into());
    let oidc = oidc(env, production, kind == "oidc")?;
    let supabase = supabase(env, production, kind == "supabase")?;
    let provider = match (kind.as_str(), oidc) {
        ("embedded", _) => Provider::Embedded,
        ("supabase", _) => Provider::Supabase(supabase.ok_or_else(|| {
            ConfigError::new(
                "SUPABASE_URL",
                "is required with IDENTITY_PROVIDER=supabase (e.g. https://abcd.supabase.co)",
            )
        })?),
        ("oidc", Some(oidc)) => Provider::Oidc(oidc),
        ("oidc", None) => {
            return Err(ConfigError::new(
                "OIDC_ISSUER",
                "is required with IDENTITY_PROVIDER=oidc (e.g. https://accounts.google.com)",
            ));
        }
        (other, _) => {
            return Err(ConfigError::new(
                "IDENTITY_PROVIDER",
                format!("expected embedded, oidc or supabase, got {other:?}"),
            ));
        }
    };
    let webauthn_rp_id = env
        .get("WEBAUTHN_RP_ID")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let mfa_required = parse::bool_or("MFA_REQUIRED", env.get("MFA_REQUIRED"), false)?;
    Ok(IdentitySettings {
        provider,
        signup_enabled,
        webauthn_rp_id,
        mfa_required,
    })
}

/// The OIDC_* variables; `None` when OIDC_ISSUER is unset. Setting them
/// without `IDENTITY_PROVIDER=oidc` (`wanted`) is a mistake worth a stop.
fn oidc(env: &Env, production: bool, wanted: bool) -> Result<Option<OidcSettings>, ConfigError> {
    let issuer = env.get("OIDC_ISSUER").map(|v| v.trim().to_string());
    let client_id = env.get("OIDC_CLIENT_ID").map(|v| v.trim().to_string());
    let client_secret = env
        .get("OIDC_CLIENT_SECRET")
        .map(|v| Secret::new(v.into_bytes()));
    let scopes = env.get("OIDC_SCOPES");
    let auth_params = env.get("OIDC_AUTH_PARAMS");
    let domains = env.get("OIDC_ALLOWED_EMAIL_DOMAINS");
    let require_verified_email = parse::bool_or(
        "OIDC_REQUIRE_VERIFIED_EMAIL",
        env.get("OIDC_REQUIRE_VERIFIED_EMAIL"),
        true,
    )?;
    let revoke_on_logout = parse::bool_or(
        "OIDC_REVOKE_ON_LOGOUT",
        env.get("OIDC_REVOKE_ON_LOGOUT"),
        true,
    )?;
    if !wanted && (issuer.is_some() || client_id.is_some()) {
        return Err(ConfigError::new(
            if issuer.is_some() {
                "OIDC_ISSUER"
            } else {
                "OIDC_CLIENT_ID"
            },
            "is set, but IDENTITY_PROVIDER is not oidc; set IDENTITY_PROVIDER=oidc to use it",
        ));
    }
    let Some(issuer) = issuer else {
        if client_id.is_some() {
            return Err(ConfigError::new(
                "OIDC_ISSUER",
                "is required when OIDC_CLIENT_ID is set",
            ));
        }
        return Ok(None);
    };
    base_https_url("OIDC_ISSUER", &issuer, production)?;
    let client_id = client_id.ok_or_else(|| {
        ConfigError::new("OIDC_CLIENT_ID", "is required with IDENTITY_PROVIDER=oidc")
    })?;
    let scopes: Vec<String> = scopes
        .unwrap_or_else(|| "openid email profile".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::new(
            "OIDC_SCOPES",
            "must include openid (e.g. \"openid email profile\")",
        ));
    }
    let auth_params = auth_params_of("OIDC_AUTH_PARAMS", auth_params, RESERVED_PARAMS)?;
    let allowed_email_domains = match domains {
        None => Vec::new(),
        Some(v) => parse::split_list(&v)
            .map(|d| {
                let d = d.trim_start_matches('@').to_ascii_lowercase();
                let ok = !d.is_empty()
                    && d.contains('.')
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                ok.then_some(d.clone()).ok_or_else(|| {
                    ConfigError::new(
                        "OIDC_ALLOWED_EMAIL_DOMAINS",
                        format!("{d:?} is not a domain name"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        scopes,
        auth_params,
        allowed_email_domains,
        require_verified_email,
        revoke_on_logout,
    }))
}

/// `https://host` (or plain http on loopback outside production), no path.
fn base_https_url(var: &'static str, value: &str, production: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| {
        ConfigError::new(
            var,
            format!("expected an absolute https URL, got {value:?}"),
        )
    })?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback && !production) {
        return Err(ConfigError::new(
            var,
            format!(
                "must be an https URL (plain http only on loopback, outside production), got {value:?}"
            ),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(var, "must not have a query or fragment"));
    }
    Ok(url)
}

/// `a=b&c=d` extra authorization parameters; names the flow sets refused.
fn auth_params_of(
    var: &'static str,
    value: Option<String>,
    reserved: &[&str],
) -> Result<Vec<(String, String)>, ConfigError> {
    let params: Vec<(String, String)> = match value {
        None => Vec::new(),
        Some(v) => url::form_urlencoded::parse(v.trim().trim_start_matches('?').as_bytes())
            .into_owned()
            .collect(),
    };
    if let Some((name, _)) = params
        .iter()
        .find(|(name, _)| name.is_empty() || reserved.contains(&name.as_str()))
    {
        return Err(ConfigError::new(
            var,
            format!("{name:?} cannot be set here: the sign-in flow sets it"),
        ));
    }
    Ok(params)
}

/// The SUPABASE_* variables; `None` when SUPABASE_URL is unset.
fn supabase(
    env: &Env,
    production: bool,
    wanted: bool,
) -> Result<Option<SupabaseSettings>, ConfigError> {
    let url = env.get("SUPABASE_URL").map(|v| v.trim().to_string());
    let publishable = env.get("SUPABASE_PUBLISHABLE_KEY");
    let anon = env.get("SUPABASE_ANON_KEY");
    let jwt_secret = env.get("SUPABASE_JWT_SECRET");
    let oauth_provider = env
        .get("SUPABASE_OAUTH_PROVIDER")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "google".into());
    let scopes = env.get("SUPABASE_SCOPES").map(|v| v.trim().to_string());
    let params = env.get("SUPABASE_AUTH_PARAMS");
    let Some(url) = url else {
        return Ok(None);
    };
    if !wanted {
        return Err(ConfigError::new(
            "SUPABASE_URL",
            "is set, but IDENTITY_PROVIDER is not supabase; set IDENTITY_PROVIDER=supabase to use it",
        ));
    }
    let parsed = base_https_url("SUPABASE_URL", &url, production)?;
    if parsed.path() != "/" {
        return Err(ConfigError::new(
            "SUPABASE_URL",
            "is the project URL, without a path (the Auth API is under /auth/v1)",
        ));
    }
    let publishable_key = publishable.or(anon).ok_or_else(|| {
        ConfigError::new(
            "SUPABASE_PUBLISHABLE_KEY",
            "is required with IDENTITY_PROVIDER=supabase (the project's publishable or anon key)",
        )
    })?;
    // The secret (service-role) key must never leave the backend this way.
    if publishable_key.starts_with("sb_secret_") {
        return Err(ConfigError::new(
            "SUPABASE_PUBLISHABLE_KEY",
            "is a secret key (sb_secret_...); use the publishable key",
        ));
    }
    if !oauth_provider
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || oauth_provider.is_empty()
    {
        return Err(ConfigError::new(
            "SUPABASE_OAUTH_PROVIDER",
            format!("{oauth_provider:?} is not a provider name (e.g. google)"),
        ));
    }
    if jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err(ConfigError::new(
            "SUPABASE_JWT_SECRET",
            "is shorter than a Supabase JWT secret (at least 32 characters)",
        ));
    }
    let auth_params = auth_params_of(
        "SUPABASE_AUTH_PARAMS",
        params,
        &[
            "provider",
            "redirect_to",
            "code_challenge",
            "code_challenge_method",
            "scopes",
            "state",
            "redirect_uri",
        ],
    )?;
    Ok(Some(SupabaseSettings {
        url: url.trim_end_matches('/').to_string(),
        publishable_key: Secret::new(publishable_key.into_bytes()),
        jwt_secret: jwt_secret.map(|s| Secret::new(s.into_bytes())),
        oauth_provider,
        scopes: scopes.filter(|s| !s.is_empty()),
        auth_params,
    }))
}
