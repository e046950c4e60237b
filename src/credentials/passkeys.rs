//! Passkeys: the WebAuthn relying party (`webauthn-rs`) and its
//! ceremonies. Each ceremony's server half is kept in the database under
//! the hash of an id the browser holds, taken by its one answer, and
//! refused after [`CEREMONY_TTL`]. A ceremony is bound to what began it:
//! the signed-in user (adding a passkey) or the sign-in flow's PKCE
//! challenge (signing in, signing up), so an answer cannot be carried into
//! another flow.
//!
//! Rules on top of the library's (origin, RP id hash, challenge, user
//! verification, signature, sign counter): a credential id belongs to one
//! account only, and the user handle a passkey returns must be that
//! account's; a counter update is a compare-and-set, so two answers with
//! the same counter (a clone, or a race between replicas) cannot both pass.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use url::Url;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::error::ApiError;
use crate::secrets::{hash_token, random_token};
use crate::store::accounts::{AccountError, Accounts, User, UserId};
use crate::store::passkeys::{Ceremony, Passkeys, Purpose, StoredPasskey};
use crate::unix_now;

/// How long the browser has to answer a challenge.
pub const CEREMONY_TTL: u64 = 300;
/// A passkey's name is at most this many characters.
pub const MAX_NAME_LEN: usize = 64;

const UNKNOWN_CEREMONY: &str = "The passkey challenge is unknown, used or expired; start again";
const NOT_ACCEPTED: &str = "The passkey was not accepted";

/// Where passkeys are valid: the RP id, and the one origin allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub id: String,
    pub origin: Url,
}

impl RelyingParty {
    /// From `PUBLIC_URL` and `WEBAUTHN_RP_ID`. `Ok(None)` when PUBLIC_URL's
    /// host is an IP address and no RP id is set: WebAuthn needs a domain
    /// name, so passkeys are off. `Err` names what is wrong with the RP id.
    pub fn from_settings(public_url: &str, rp_id: Option<&str>) -> Result<Option<Self>, String> {
        let origin = Url::parse(public_url).map_err(|e| format!("PUBLIC_URL: {e}"))?;
        let host = match origin.host() {
            Some(url::Host::Domain(host)) => host.to_ascii_lowercase(),
            Some(_) if rp_id.is_none() => return Ok(None),
            _ => {
                return Err(format!(
                    "PUBLIC_URL's host must be a domain name for passkeys, not {:?}",
                    origin.host_str().unwrap_or_default()
                ));
            }
        };
        let id = match rp_id {
            None => host,
            Some(id) => {
                let id = id.trim().trim_end_matches('.').to_ascii_lowercase();
                let suffix = host == id || host.ends_with(&format!(".{id}"));
                if id.is_empty() || id.parse::<std::net::IpAddr>().is_ok() || !suffix {
                    return Err(format!(
                        "{id:?} must be PUBLIC_URL's host ({host}) or a domain it is under"
                    ));
                }
                id
            }
        };
        let mut origin = origin;
        origin.set_path("");
        Ok(Some(Self { id, origin }))
    }
}

/// A passkey as the account page lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PasskeyEntry {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// The authenticator says the key is backed up (synced).
    pub backed_up: bool,
}

/// A ceremony begun: the id the browser sends back, and the options for
/// `navigator.credentials.create()` / `.get()`.
#[derive(Debug, Serialize)]
pub struct Begun {
    #[serde(rename = "ceremonyId")]
    pub ceremony_id: String,
    pub options: Value,
}

/// What a sign-up ceremony remembers about the account to create (its
/// flow is the ceremony's binding).
#[derive(Serialize, Deserialize)]
struct SignUp {
    user_id: UserId,
    email: String,
    name: Option<String>,
    state: PasskeyRegistration,
}

pub struct PasskeyVerifier {
    webauthn: Webauthn,
    store: Passkeys,
    accounts: Accounts,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("passkeys: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn uuid_of(user_id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(user_id).map_err(internal)
}

/// A checked passkey name: trimmed, 1 to 64 characters, no control characters.
pub fn clean_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(ApiError::Unprocessable(format!(
            "The passkey's name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    Ok(name.to_string())
}

impl PasskeyVerifier {
    pub fn new(rp: &RelyingParty, store: Passkeys, accounts: Accounts) -> Result<Self, String> {
        let webauthn = WebauthnBuilder::new(&rp.id, &rp.origin)
            .and_then(|b| b.rp_name("Chronos").build())
            .map_err(|e| format!("{e}"))?;
        Ok(Self {
            webauthn,
            store,
            accounts,
        })
    }

    async fn begin(
        &self,
        purpose: Purpose,
        binding: &str,
        state: &impl Serialize,
        options: &impl Serialize,
    ) -> Result<Begun, ApiError> {
        let ceremony_id = random_token(32);
        let state = serde_json::to_string(state).map_err(internal)?;
        self.store
            .begin(
                hash_token(&ceremony_id),
                purpose,
                binding,
                state,
                (unix_now() + CEREMONY_TTL) as i64,
            )
            .await
            .map_err(internal)?;
        let options = serde_json::to_value(options).map_err(internal)?;
        Ok(Begun {
            ceremony_id,
            options,
        })
    }

    /// Takes the ceremony: its state when it is of this purpose, bound to
    /// `binding` (constant time) and not expired. Taken either way.
    async fn take(
        &self,
        ceremony_id: &str,
        purpose: Purpose,
        binding: Option<&str>,
    ) -> Result<Ceremony, ApiError> {
        let taken = self
            .store
            .take(hash_token(ceremony_id), purpose)
            .await
            .map_err(internal)?;
        match taken {
            Some(c)
                if c.expires_at > unix_now() as i64
                    && binding
                        .is_none_or(|b| bool::from(b.as_bytes().ct_eq(c.binding.as_bytes()))) =>
            {
                Ok(c)
            }
            _ => Err(ApiError::Refused(UNKNOWN_CEREMONY)),
        }
    }

    /// Options to create a discoverable credential: a passkey found by the
    /// browser without an email typed needs one.
    fn creation(
        &self,
        user_id: Uuid,
        email: &str,
        display_name: &str,
        exclude: Vec<Vec<u8>>,
    ) -> Result<(Value, PasskeyRegistration), ApiError> {
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_id, email, display_name, exclude)
            .map_err(internal)?;
        let mut options = serde_json::to_value(options).map_err(internal)?;
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(Value::as_object_mut)
        {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        Ok((options, state))
    }

    fn registered(
        &self,
        credential: Value,
        state: &PasskeyRegistration,
    ) -> Result<Passkey, ApiError> {
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
            .map_err(|_| ApiError::Unprocessable("The passkey answer is malformed".into()))?;
        self.webauthn
            .finish_passkey_registration(&credential, state)
            .map_err(|e| {
                tracing::info!(error = %e, "passkey registration refused");
                refusal(&e)
            })
    }

    fn stored(
        &self,
        passkey: &Passkey,
        user_id: &UserId,
        name: String,
    ) -> Result<StoredPasskey, ApiError> {
        Ok(StoredPasskey {
            credential_id: b64(passkey.cred_id().as_ref()),
            user_id: user_id.clone(),
            name,
            credential: serde_json::to_string(passkey).map_err(internal)?,
            created_at: unix_now() as i64,
            last_used_at: None,
        })
    }

    /// A signed-in person begins adding a passkey.
    pub async fn start_registration(&self, user: &User) -> Result<Begun, ApiError> {
        let exclude = self
            .store
            .of_user(&user.id)
            .await
            .map_err(internal)?
            .into_iter()
            .filter_map(|p| URL_SAFE_NO_PAD.decode(p.credential_id).ok())
            .collect();
        let display = user.name.clone().unwrap_or_else(|| user.email.clone());
        let (options, state) = self.creation(uuid_of(&user.id)?, &user.email, &display, exclude)?;
        self.begin(Purpose::Register, &user.id, &state, &options)
            .await
    }

    /// Verifies the browser's answer and keeps the passkey.
    pub async fn finish_registration(
        &self,
        user: &User,
        ceremony_id: &str,
        credential: Value,
        name: &str,
    ) -> Result<PasskeyEntry, ApiError> {
        let name = clean_name(name)?;
        let ceremony = self
            .take(ceremony_id, Purpose::Register, Some(&user.id))
            .await?;
        let state: PasskeyRegistration = serde_json::from_str(&ceremony.state).map_err(internal)?;
        let passkey = self.registered(credential, &state)?;
        let stored = self.stored(&passkey, &user.id, name)?;
        if !self.store.add(&stored).await.map_err(internal)? {
            return Err(ApiError::Conflict("This passkey is registered already"));
        }
        Ok(entry(&stored))
    }

    /// Begins creating an account with a passkey only, in the sign-in flow
    /// whose PKCE challenge is `flow`.
    pub async fn start_signup(
        &self,
        flow: &str,
        email: &str,
        name: Option<&str>,
    ) -> Result<Begun, ApiError> {
        let Some(email) = crate::store::accounts::normalize_email(email) else {
            return Err(ApiError::Unprocessable(
                "Enter a valid email address".into(),
            ));
        };
        let name = crate::store::accounts::clean_name(name).map_err(|_| {
            ApiError::Unprocessable("The name must be at most 200 characters".into())
        })?;
        let user_id = UserId::random();
        let display = name.unwrap_or(&email).to_string();
        let (options, state) = self.creation(uuid_of(&user_id)?, &email, &display, Vec::new())?;
        let signup = SignUp {
            user_id,
            email,
            name: name.map(String::from),
            state,
        };
        self.begin(Purpose::SignUp, flow, &signup, &options).await
    }

    /// Creates the account with its passkey; `Conflict` when the email
    /// has an account already.
    pub async fn finish_signup(
        &self,
        flow: &str,
        ceremony_id: &str,
        credential: Value,
    ) -> Result<User, ApiError> {
        let ceremony = self.take(ceremony_id, Purpose::SignUp, Some(flow)).await?;
        let signup: SignUp = serde_json::from_str(&ceremony.state).map_err(internal)?;
        let passkey = self.registered(credential, &signup.state)?;
        let stored = self.stored(&passkey, &signup.user_id, "Passkey".into())?;
        // Credential ids are random: one registered already is a replayed
        // answer (the insert below would also refuse it).
        if self
            .store
            .by_credential(&stored.credential_id)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Err(ApiError::Conflict("This passkey is registered already"));
        }
        match self
            .accounts
            .create_with_passkey(
                signup.user_id,
                &signup.email,
                signup.name.as_deref(),
                stored,
            )
            .await
        {
            Ok(user) => Ok(user),
            Err(AccountError::Exists) => Err(ApiError::Conflict(
                "An account with this email exists; sign in to it and add a passkey there",
            )),
            Err(AccountError::Internal(e)) => Err(ApiError::internal(e)),
            Err(e) => Err(ApiError::Unprocessable(e.to_string())),
        }
    }

    /// Begins a sign-in with a discoverable passkey in the flow whose PKCE
    /// challenge is `flow`. `conditional`: for the browser's autofill
    /// (conditional mediation) rather than a dialog.
    pub async fn start_signin(&self, flow: &str, conditional: bool) -> Result<Begun, ApiError> {
        let (mut options, state): (RequestChallengeResponse, DiscoverableAuthentication) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(internal)?;
        if !conditional {
            options.mediation = None;
        }
        self.begin(Purpose::SignIn, flow, &state, &options).await
    }

    /// Verifies a sign-in answer: the account it signs in.
    pub async fn finish_signin(
        &self,
        flow: &str,
        ceremony_id: &str,
        credential: Value,
    ) -> Result<UserId, ApiError> {
        let ceremony = self.take(ceremony_id, Purpose::SignIn, Some(flow)).await?;
        let state: DiscoverableAuthentication =
            serde_json::from_str(&ceremony.state).map_err(internal)?;
        let answer: PublicKeyCredential = serde_json::from_value(credential)
            .map_err(|_| ApiError::Unprocessable("The passkey answer is malformed".into()))?;
        let (handle, credential_id) = self
            .webauthn
            .identify_discoverable_authentication(&answer)
            .map_err(|_| ApiError::Refused(NOT_ACCEPTED))?;
        let Some(stored) = self
            .store
            .by_credential(&b64(credential_id))
            .await
            .map_err(internal)?
        else {
            return Err(ApiError::Refused("This passkey is not registered here"));
        };
        // The handle the authenticator keeps with the key names the account
        // it was made for; a key of one account never signs in another.
        if uuid_of(&stored.user_id)? != handle {
            tracing::warn!("passkey answer with another account's user handle refused");
            return Err(ApiError::Refused(NOT_ACCEPTED));
        }
        let mut passkey: Passkey = serde_json::from_str(&stored.credential).map_err(internal)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&answer, state, &passkey)
            .map_err(|e| {
                tracing::info!(error = %e, "passkey sign-in refused");
                refusal(&e)
            })?;
        passkey.update_credential(&result);
        let now_credential = serde_json::to_string(&passkey).map_err(internal)?;
        if !self
            .store
            .used(
                &stored.credential_id,
                &stored.credential,
                &now_credential,
                unix_now() as i64,
            )
            .await
            .map_err(internal)?
        {
            return Err(ApiError::Refused(NOT_ACCEPTED));
        }
        Ok(stored.user_id)
    }

    /// The account's passkeys.
    pub async fn list(&self, user_id: &str) -> Result<Vec<PasskeyEntry>, ApiError> {
        let stored = self.store.of_user(user_id).await.map_err(internal)?;
        Ok(stored.iter().map(entry).collect())
    }

    pub async fn rename(&self, user_id: &str, id: &str, name: &str) -> Result<(), ApiError> {
        let name = clean_name(name)?;
        match self
            .store
            .rename(user_id, id, &name)
            .await
            .map_err(internal)?
        {
            true => Ok(()),
            false => Err(ApiError::NotTheirs("Passkey not found")),
        }
    }

    pub async fn remove(&self, user_id: &str, id: &str) -> Result<(), ApiError> {
        match self.store.remove(user_id, id).await.map_err(internal)? {
            true => Ok(()),
            false => Err(ApiError::NotTheirs("Passkey not found")),
        }
    }

    pub async fn prune(&self) -> anyhow::Result<()> {
        self.store.purge(unix_now() as i64).await?;
        Ok(())
    }
}

/// Why the verifier refused an answer, in words a person can act on.
fn refusal(e: &WebauthnError) -> ApiError {
    ApiError::Refused(match e {
        WebauthnError::InvalidRPOrigin => "The passkey answer was made for another site",
        WebauthnError::CredentialPossibleCompromise => {
            "The passkey's sign counter went back: it may be a copy"
        }
        WebauthnError::UserNotVerified => {
            "The passkey did not verify the person (PIN or biometrics)"
        }
        _ => NOT_ACCEPTED,
    })
}

fn entry(stored: &StoredPasskey) -> PasskeyEntry {
    use crate::store::accounts::rfc3339;
    PasskeyEntry {
        id: stored.credential_id.clone(),
        name: stored.name.clone(),
        created_at: rfc3339(stored.created_at),
        last_used_at: stored.last_used_at.map(rfc3339),
        backed_up: backed_up(&stored.credential),
    }
}

/// The backup state the authenticator last reported, as the verifier
/// keeps it in the stored credential (JSON).
fn backed_up(credential: &str) -> bool {
    serde_json::from_str::<Value>(credential)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_state").and_then(Value::as_bool))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rp_id_comes_from_public_url_or_a_suffix_of_it() {
        let rp = RelyingParty::from_settings("https://auth.example.com/base", None).unwrap();
        assert_eq!(rp.unwrap().id, "auth.example.com");
        let rp = RelyingParty::from_settings("https://auth.example.com", Some("example.com"));
        assert_eq!(rp.unwrap().unwrap().id, "example.com");
        assert!(
            RelyingParty::from_settings("https://auth.example.com", Some("other.com")).is_err()
        );
        assert!(
            RelyingParty::from_settings("https://auth.example.com", Some("ample.com")).is_err()
        );
        assert!(
            RelyingParty::from_settings("http://127.0.0.1:8000", None)
                .unwrap()
                .is_none()
        );
        assert!(RelyingParty::from_settings("http://127.0.0.1:8000", Some("localhost")).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(clean_name("  Laptop ").unwrap(), "Laptop");
        assert!(clean_name("").is_err());
        assert!(clean_name("a\nb").is_err());
        assert!(clean_name(&"x".repeat(65)).is_err());
    }
}
