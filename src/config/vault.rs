//! The vault section: connected accounts and the provider tokens they
//! hold, and the services allowed to exchange a person's session for a
//! fresh provider access token (RFC 8693 at `POST /oauth/token`).

use super::identity::{IdentitySettings, Provider};
use super::{ConfigError, Env, Secret, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "PROVIDER_TOKENS",
        default: "session",
        help: "session: the provider's tokens live with the session and are revoked at logout; keep: they belong to the person's connected account, survive logout and are served to SERVICE_CLIENTS",
    },
    VarDoc {
        name: "PROVIDER_NAME",
        default: "google",
        help: "the provider's name in the API (connected accounts' provider, the token exchange's audience)",
    },
    VarDoc {
        name: "PROVIDER_SCOPES",
        default: "(empty: OIDC_SCOPES)",
        help: "scopes asked for when a person connects an account (space-separated, with openid), e.g. openid email https://www.googleapis.com/auth/calendar",
    },
    VarDoc {
        name: "PROVIDER_TOKEN_REFRESH_MARGIN",
        default: "300",
        help: "seconds before its expiry a provider access token is refreshed instead of served",
    },
    VarDoc {
        name: "PROVIDER_ISSUER",
        default: "(empty; supabase with keep: required)",
        help: "with IDENTITY_PROVIDER=supabase: the OpenID issuer of the provider Supabase signs people in with (https://accounts.google.com), whose token endpoint refreshes their tokens",
    },
    VarDoc {
        name: "PROVIDER_CLIENT_ID",
        default: "(empty; supabase with keep: required)",
        help: "with IDENTITY_PROVIDER=supabase: the OAuth client id configured for that provider in Supabase",
    },
    VarDoc {
        name: "PROVIDER_CLIENT_SECRET",
        default: "(empty)",
        help: "with IDENTITY_PROVIDER=supabase: that client's secret; never logged",
    },
    VarDoc {
        name: "SERVICE_CLIENTS",
        default: "(empty: no token exchange)",
        help: "services allowed at POST /oauth/token: id:secret[:offline], comma-separated; secrets at least 32 characters; offline ones may exchange an account id with no person online",
    },
    VarDoc {
        name: "RISC_ISSUER",
        default: "https://accounts.google.com",
        help: "the transmitter of Security Event Tokens posted to /auth/risc (Google Cross-Account Protection); its /.well-known/risc-configuration names its keys",
    },
];

/// A service allowed to exchange tokens.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    pub id: String,
    pub secret: Secret,
    /// May exchange a connected account's id with no person online.
    pub offline: bool,
}

/// The OpenID client that refreshes and revokes provider tokens.
#[derive(Debug, Clone)]
pub struct ProviderClientSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `PROVIDER_TOKENS=keep`.
    pub keep: bool,
    pub name: String,
    /// Asked for at connect (space-separated).
    pub scopes: String,
    pub refresh_margin: u64,
    /// `None` unless `keep` (and the identity provider has one).
    pub client: Option<ProviderClientSettings>,
    pub service_clients: Vec<ServiceClient>,
    pub risc_issuer: String,
}

pub fn parse(
    env: &Env,
    identity: &IdentitySettings,
    production: bool,
) -> Result<VaultSettings, ConfigError> {
    let keep = match env
        .get("PROVIDER_TOKENS")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("session") => false,
        Some("keep") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "PROVIDER_TOKENS",
                format!("expected session or keep, got {other:?}"),
            ));
        }
    };
    let name = env
        .get("PROVIDER_NAME")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "google".into());
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(ConfigError::new(
            "PROVIDER_NAME",
            format!("expected a short lower-case name such as google, got {name:?}"),
        ));
    }
    let scopes = env.get("PROVIDER_SCOPES").map(|v| v.trim().to_string());
    let refresh_margin = parse::seconds_or(
        "PROVIDER_TOKEN_REFRESH_MARGIN",
        env.get("PROVIDER_TOKEN_REFRESH_MARGIN"),
        300,
        0,
    )?;
    let issuer = env.get("PROVIDER_ISSUER").map(|v| v.trim().to_string());
    let client_id = env.get("PROVIDER_CLIENT_ID").map(|v| v.trim().to_string());
    let client_secret = env
        .get("PROVIDER_CLIENT_SECRET")
        .map(|v| Secret::new(v.into_bytes()));
    let service_clients = match env.get("SERVICE_CLIENTS") {
        None => Vec::new(),
        Some(v) => service_clients(&v)?,
    };
    let risc_issuer = env
        .get("RISC_ISSUER")
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://accounts.google.com".into());
    parse::base_url("RISC_ISSUER", &risc_issuer)?;
    let supabase = matches!(identity.provider, Provider::Supabase(_));
    if (issuer.is_some() || client_id.is_some()) && !supabase {
        return Err(ConfigError::new(
            if issuer.is_some() {
                "PROVIDER_ISSUER"
            } else {
                "PROVIDER_CLIENT_ID"
            },
            "is only for IDENTITY_PROVIDER=supabase (with oidc, the OIDC_* client refreshes tokens)",
        ));
    }
    let client = match (&identity.provider, keep) {
        (_, false) => None,
        (Provider::Embedded, true) => {
            return Err(ConfigError::new(
                "PROVIDER_TOKENS",
                "keep needs an identity provider with tokens (IDENTITY_PROVIDER=oidc or supabase)",
            ));
        }
        (Provider::Oidc(oidc), true) => Some(ProviderClientSettings {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret: oidc.client_secret.clone(),
        }),
        (Provider::Supabase(_), true) => {
            let issuer = issuer.ok_or_else(|| {
                ConfigError::new(
                    "PROVIDER_ISSUER",
                    "is required with IDENTITY_PROVIDER=supabase and PROVIDER_TOKENS=keep (e.g. https://accounts.google.com)",
                )
            })?;
            if !production || issuer.starts_with("https://") {
                parse::base_url("PROVIDER_ISSUER", &issuer)?;
            } else {
                return Err(ConfigError::new("PROVIDER_ISSUER", "must be an https URL"));
            }
            let client_id = client_id.ok_or_else(|| {
                ConfigError::new(
                    "PROVIDER_CLIENT_ID",
                    "is required with IDENTITY_PROVIDER=supabase and PROVIDER_TOKENS=keep",
                )
            })?;
            Some(ProviderClientSettings {
                issuer,
                client_id,
                client_secret,
            })
        }
    };
    let scopes = match (scopes, &identity.provider) {
        (Some(scopes), _) => scopes,
        (None, Provider::Oidc(oidc)) => oidc.scopes.join(" "),
        (None, _) => "openid email profile".into(),
    };
    if !scopes.split_whitespace().any(|s| s == "openid") {
        return Err(ConfigError::new(
            "PROVIDER_SCOPES",
            "must include openid (connecting an account proves who it is)",
        ));
    }
    Ok(VaultSettings {
        keep,
        name,
        scopes,
        refresh_margin,
        client,
        service_clients,
        risc_issuer,
    })
}

fn service_clients(value: &str) -> Result<Vec<ServiceClient>, ConfigError> {
    let mut clients: Vec<ServiceClient> = Vec::new();
    for item in parse::split_list(value) {
        let mut parts = item.splitn(3, ':');
        let (id, secret, flag) = (parts.next(), parts.next(), parts.next());
        let (Some(id), Some(secret)) = (id, secret) else {
            return Err(ConfigError::new(
                "SERVICE_CLIENTS",
                "expected id:secret[:offline] items, comma-separated",
            ));
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::new(
                "SERVICE_CLIENTS",
                format!("{id:?} is not a client id (letters, digits, - _ .)"),
            ));
        }
        if secret.chars().count() < 32 {
            return Err(ConfigError::new(
                "SERVICE_CLIENTS",
                format!("the secret of {id:?} is shorter than 32 characters"),
            ));
        }
        let offline = match flag {
            None => false,
            Some("offline") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "SERVICE_CLIENTS",
                    format!("{id:?}: expected offline after the secret, got {other:?}"),
                ));
            }
        };
        if clients.iter().any(|c| c.id == id) {
            return Err(ConfigError::new(
                "SERVICE_CLIENTS",
                format!("{id:?} is listed twice"),
            ));
        }
        clients.push(ServiceClient {
            id: id.to_string(),
            secret: Secret::new(secret.as_bytes().to_vec()),
            offline,
        });
    }
    Ok(clients)
}
