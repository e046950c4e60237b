//! Credentials beyond the password for embedded accounts: passkeys
//! (WebAuthn) and a TOTP second factor with recovery codes. The sign-in
//! page uses them to sign people in; the account page (`/auth/account`)
//! to manage them.

pub mod passkeys;
pub mod totp;

use passkeys::PasskeyVerifier;
use totp::SecondFactor;

use crate::store::accounts::Accounts;

/// What the sign-in page and the account page share.
pub struct Credentials {
    /// `None` when PUBLIC_URL's host is an IP address (WebAuthn needs a
    /// domain name) and `WEBAUTHN_RP_ID` is unset.
    pub passkeys: Option<PasskeyVerifier>,
    pub totp: SecondFactor,
    pub accounts: Accounts,
    /// `MFA_REQUIRED`: a password sign-in without a second factor enrols one.
    pub mfa_required: bool,
}

impl Credentials {
    pub async fn prune(&self) -> anyhow::Result<()> {
        if let Some(passkeys) = &self.passkeys {
            passkeys.prune().await?;
        }
        Ok(())
    }
}
