//! What a provider publishes: its discovery document (checked against the
//! configured issuer) and its signing keys (refetched when a token names a
//! key we have not seen, at most once a minute).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::signin::provider_client::{ProviderCallError, ProviderClient};

/// How often the keys may be refetched for an unknown `kid`.
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The discovery document's fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub backchannel_logout_supported: bool,
    /// RP-Initiated Logout 1.0.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    ProviderClient(#[from] ProviderCallError),
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("{0} is not an https URL")]
    InsecureEndpoint(String),
}

/// Algorithms we accept for ID and logout tokens: asymmetric only (an
/// HMAC "signed" with a public key is the classic forgery), never `none`.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Metadata {
    /// Fetches `issuer/.well-known/openid-configuration` and checks it.
    pub async fn discover(http: &ProviderClient, issuer: &str) -> Result<Self, DiscoveryError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let metadata: Metadata = http.send(http.get(&url)).await?.ok_json()?;
        if metadata.issuer != issuer {
            return Err(DiscoveryError::WrongIssuer {
                expected: issuer.to_string(),
                found: metadata.issuer,
            });
        }
        // Endpoints share the issuer's scheme: https, or http on loopback
        // (what configuration allowed for the issuer).
        let scheme = issuer.split("://").next().unwrap_or_default();
        for endpoint in [
            Some(&metadata.authorization_endpoint),
            Some(&metadata.token_endpoint),
            Some(&metadata.jwks_uri),
            metadata.userinfo_endpoint.as_ref(),
            metadata.revocation_endpoint.as_ref(),
            metadata.end_session_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let ok = endpoint.starts_with("https://")
                || (scheme == "http" && endpoint.starts_with("http://"));
            if !ok {
                return Err(DiscoveryError::InsecureEndpoint(endpoint.clone()));
            }
        }
        Ok(metadata)
    }

    /// The algorithms this provider signs ID tokens with that we accept
    /// (RS256 when the document does not say, as OpenID Discovery states).
    pub fn accepted_algorithms(&self) -> Vec<Algorithm> {
        let listed: Vec<&str> = if self.id_token_signing_alg_values_supported.is_empty() {
            vec!["RS256"]
        } else {
            self.id_token_signing_alg_values_supported
                .iter()
                .map(String::as_str)
                .collect()
        };
        ASYMMETRIC
            .iter()
            .copied()
            .filter(|alg| listed.iter().any(|l| alg_name(*alg) == *l))
            .collect()
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "other",
    }
}

/// The provider's keys, with a bounded refetch for unknown key ids.
pub struct Keys {
    jwks_uri: String,
    set: RwLock<Arc<JwkSet>>,
    /// When an unknown `kid` last made us refetch (the bound; the load at
    /// discovery does not count).
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no usable key {kid:?} for {alg:?}, even after refetching")]
    Unknown { kid: Option<String>, alg: Algorithm },
    #[error("the keys could not be fetched: {0}")]
    Fetch(#[from] ProviderCallError),
}

impl Keys {
    pub fn new(jwks_uri: String) -> Self {
        Self {
            jwks_uri,
            set: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            refetched: tokio::sync::Mutex::new(None),
        }
    }

    async fn fetch(&self, http: &ProviderClient) -> Result<(), ProviderCallError> {
        let set: JwkSet = http.send(http.get(&self.jwks_uri)).await?.ok_json()?;
        if let Ok(mut current) = self.set.write() {
            *current = Arc::new(set);
        }
        Ok(())
    }

    /// The keys as last fetched (what `/.well-known/jwks.json` republishes).
    pub fn current(&self) -> Arc<JwkSet> {
        self.set
            .read()
            .map(|set| set.clone())
            .unwrap_or_else(|_| Arc::new(JwkSet { keys: Vec::new() }))
    }

    /// Fetches the keys now (at discovery).
    pub async fn load(&self, http: &ProviderClient) -> Result<(), ProviderCallError> {
        self.fetch(http).await
    }

    /// The key for a token's `kid` and `alg`; an unknown `kid` refetches
    /// the set, at most once per [`KEY_REFETCH_INTERVAL`].
    pub async fn key(
        &self,
        http: &ProviderClient,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.find(kid, alg) {
            return Ok(key);
        }
        {
            let mut refetched = self.refetched.lock().await;
            if refetched.is_none_or(|at| at.elapsed() >= KEY_REFETCH_INTERVAL) {
                *refetched = Some(Instant::now());
                self.fetch(http).await?;
            }
        }
        self.find(kid, alg).ok_or(KeyError::Unknown {
            kid: kid.map(String::from),
            alg,
        })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let set = self.set.read().ok()?.clone();
        let usable: Vec<&Jwk> = set
            .keys
            .iter()
            .filter(|jwk| fits(jwk, alg))
            .filter(|jwk| kid.is_none() || jwk.common.key_id.as_deref() == kid)
            .collect();
        // Without a `kid`, only an unambiguous key will do.
        match usable.as_slice() {
            [one] => DecodingKey::from_jwk(one).ok(),
            _ => None,
        }
    }
}

/// Whether a JWK may verify `alg`: a signing key of the matching type, its
/// own `alg` (when it states one) equal.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return false;
    }
    if let Some(stated) = jwk.common.key_algorithm
        && key_alg_name(stated) != Some(alg_name(alg))
    {
        return false;
    }
    matches!(
        (&jwk.algorithm, alg),
        (
            P::RSA(_),
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
        ) | (P::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
            | (P::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

fn key_alg_name(alg: KeyAlgorithm) -> Option<&'static str> {
    Some(match alg {
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        KeyAlgorithm::PS384 => "PS384",
        KeyAlgorithm::PS512 => "PS512",
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}
