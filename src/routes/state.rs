//! The application state every route reads: built once at start-up
//! ([`crate::app`]), shared behind an `Arc`, passed explicitly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http::HeaderValue;

use crate::authority::SessionAuthority;
use crate::config::Settings;
use crate::cookies::CookiePolicy;
use crate::security::Security;
use crate::security::csrf::CsrfTokens;
use crate::security::redirects::RedirectPolicy;
use crate::signin::SignInMethod;
use crate::signin::oidc::client::OidcClient;
use crate::store::flows::FlowStore;
use crate::vault::Vault;
use crate::vault::risc::Risc;

pub struct AppState {
    pub settings: Settings,
    /// The security layer's parts (cookies and CSRF tokens are also the
    /// routes' business).
    pub security: Arc<Security>,
    /// Where a sign-in may return to.
    pub redirects: RedirectPolicy,
    /// Who holds a session: tokens, refresh, revocation, the sessions list.
    pub authority: Arc<dyn SessionAuthority>,
    /// How people sign in.
    pub sign_in: Arc<dyn SignInMethod>,
    /// Sign-in flows in progress (PKCE verifiers).
    pub flows: Arc<dyn FlowStore>,
    /// `LOGOUT_CLEAR_SITE_DATA`, ready to send.
    pub clear_site_data: Option<HeaderValue>,
    /// Starting, serving or draining (`GET /health/ready`).
    pub phase: Phase,
    /// The database, for the readiness probe's check.
    pub database: crate::store::database::Database,
    /// Connected accounts and their tokens (`PROVIDER_TOKENS=keep`).
    pub vault: Option<Arc<Vault>>,
    /// The provider's security events (with the vault).
    pub risc: Option<Arc<Risc>>,
    /// The identity provider as an OpenID client (oidc; supabase with the vault).
    pub provider_client: Option<Arc<OidcClient>>,
    /// The app's APIs behind this server (`PROXY_ROUTES`), when any.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
    /// Passkeys and second factors of embedded accounts (the account page);
    /// `None` with an external identity provider.
    pub credentials: Option<Arc<crate::credentials::Credentials>>,
}

/// Where the process is in its life; only `Serving` is ready for traffic.
#[derive(Default)]
pub struct Phase(AtomicU8);

impl Phase {
    pub const STARTING: u8 = 0;
    pub const SERVING: u8 = 1;
    pub const DRAINING: u8 = 2;

    pub fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, phase: u8) {
        self.0.store(phase, Ordering::Relaxed);
    }
}

impl AppState {
    pub fn cookies(&self) -> &CookiePolicy {
        &self.security.cookies
    }

    pub fn csrf(&self) -> &CsrfTokens {
        &self.security.csrf
    }
}
