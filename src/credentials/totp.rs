//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew either
//! way) as a second factor, with ten single-use recovery codes. The secret
//! is sealed at rest; a code is accepted once (its time step is kept, and
//! an older or equal step is refused); recovery codes are kept as SHA-256
//! hashes. Failed attempts lock the account's second step for the rest of
//! a [`LOCK_WINDOW`] after [`MAX_FAILURES`] (per client, the sign-in rate
//! limit applies too).

use qrcode::QrCode;
use qrcode::render::svg;
use rand::RngExt;
use totp_rs::{Builder, Totp};

use crate::error::ApiError;
use crate::secrets::{Sealer, hash_token};
use crate::store::accounts::UserId;
use crate::store::second_factors::SecondFactors;
use crate::unix_now;

/// Failed attempts allowed per account in a window.
pub const MAX_FAILURES: i64 = 5;
/// The window, in seconds.
pub const LOCK_WINDOW: i64 = 900;
/// Recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Chronos";

/// A code was refused: why, for the page.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("That code is not right, or was used already")]
    Wrong,
    #[error("Too many wrong codes; try again in {0} minutes")]
    Locked(i64),
    #[error("{0}")]
    Api(#[from] ApiError),
}

/// An enrolment begun: what the person scans or types.
pub struct Enrolment {
    /// Base32, for typing in.
    pub secret: String,
    /// `otpauth://totp/...`.
    pub uri: String,
    /// The URI as a QR code, an SVG drawn here.
    pub qr_svg: String,
}

/// Whether and how an account uses TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub enabled: bool,
    pub recovery_codes_left: i64,
}

#[derive(Clone)]
pub struct SecondFactor {
    store: SecondFactors,
    sealer: Sealer,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("second factor: {e}"))
}

fn totp(secret: Vec<u8>, email: &str) -> Result<Totp, ApiError> {
    // ':' separates issuer and account in the label.
    let account = email.replace(':', "");
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(internal)
}

fn enrolment(otp: &Totp) -> Result<Enrolment, ApiError> {
    let uri = otp.to_url().map_err(internal)?;
    let qr_svg = QrCode::new(uri.as_bytes())
        .map_err(internal)?
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrolment {
        secret: otp.secret().to_base32(),
        uri,
        qr_svg,
    })
}

/// A recovery code as typed: lower case, without spaces or dashes.
fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// `xxxxx-xxxxx` from an alphabet without look-alikes (50 bits each).
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let mut code = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            code.push('-');
        }
        code.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    code
}

fn is_totp_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

impl SecondFactor {
    pub fn new(store: SecondFactors, sealer: Sealer) -> Self {
        Self { store, sealer }
    }

    pub async fn status(&self, user_id: &str) -> Result<Status, ApiError> {
        let factor = self.store.totp(user_id).await.map_err(internal)?;
        let enabled = factor.is_some_and(|f| f.confirmed_at.is_some());
        let recovery_codes_left = if enabled {
            self.store
                .recovery_codes_left(user_id)
                .await
                .map_err(internal)?
        } else {
            0
        };
        Ok(Status {
            enabled,
            recovery_codes_left,
        })
    }

    /// Begins (or restarts) enrolment: a new secret, kept unconfirmed
    /// until [`Self::confirm`]. `Conflict` when TOTP is on already.
    pub async fn enrol(&self, user_id: &str, email: &str) -> Result<Enrolment, ApiError> {
        let mut secret = vec![0u8; 20];
        rand::rng().fill(&mut secret[..]);
        let otp = totp(secret.clone(), email)?;
        let sealed = self.sealer.seal(&secret);
        if !self
            .store
            .begin_totp(user_id, &sealed, unix_now() as i64)
            .await
            .map_err(internal)?
        {
            return Err(ApiError::Conflict(
                "Two-step sign-in is on already; turn it off first to enrol again",
            ));
        }
        enrolment(&otp)
    }

    /// The enrolment waiting for its first code, shown again (a wrong
    /// code must not change the secret the person has just scanned).
    pub async fn pending(&self, user_id: &str, email: &str) -> Result<Option<Enrolment>, ApiError> {
        let factor = self.store.totp(user_id).await.map_err(internal)?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_none()) else {
            return Ok(None);
        };
        Ok(Some(enrolment(&totp(self.open(&factor.secret)?, email)?)?))
    }

    /// A stored secret, unsealed.
    fn open(&self, sealed: &str) -> Result<Vec<u8>, ApiError> {
        self.sealer
            .open(sealed)
            .ok_or_else(|| internal("a TOTP secret does not open with this key"))
    }

    /// The step a code is right for, at `now`, with the account's secret.
    fn matching_step(&self, sealed: &str, code: &str, now: u64) -> Result<Option<i64>, ApiError> {
        let otp = totp(self.open(sealed)?, "x")?;
        Ok(otp.check(code, now).map(|step| step as i64))
    }

    /// Confirms enrolment with a first code; the recovery codes, to show
    /// once.
    pub async fn confirm(&self, user_id: &UserId, code: &str) -> Result<Vec<String>, CodeError> {
        let code = code.trim();
        self.not_locked(user_id).await?;
        let factor = self.store.totp(user_id).await.map_err(internal)?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_none()) else {
            return Err(ApiError::Conflict("No enrolment is waiting for a code").into());
        };
        let now = unix_now();
        let step = if is_totp_code(code) {
            self.matching_step(&factor.secret, code, now)?
        } else {
            None
        };
        match step {
            Some(step)
                if self
                    .store
                    .accept_step(user_id, step, true, now as i64)
                    .await
                    .map_err(internal)? =>
            {
                self.store.clear_failures(user_id).await.map_err(internal)?;
                Ok(self.new_recovery_codes(user_id).await?)
            }
            _ => Err(self.failed(user_id).await),
        }
    }

    /// Replaces the recovery codes: the new ones, to show once.
    pub async fn new_recovery_codes(&self, user_id: &UserId) -> Result<Vec<String>, ApiError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes = codes
            .iter()
            .map(|c| hash_token(&normalize_recovery(c)))
            .collect();
        self.store
            .replace_recovery_codes(user_id, hashes, unix_now() as i64)
            .await
            .map_err(internal)?;
        Ok(codes)
    }

    /// Checks a sign-in's second step: a TOTP code (once per time step)
    /// or a recovery code (once).
    pub async fn check(&self, user_id: &str, code: &str) -> Result<(), CodeError> {
        let code = code.trim();
        self.not_locked(user_id).await?;
        let factor = self.store.totp(user_id).await.map_err(internal)?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_some()) else {
            return Err(CodeError::Wrong);
        };
        let now = unix_now();
        let accepted = if is_totp_code(code) {
            match self.matching_step(&factor.secret, code, now)? {
                Some(step) => self
                    .store
                    .accept_step(user_id, step, false, now as i64)
                    .await
                    .map_err(internal)?,
                None => false,
            }
        } else {
            let normalized = normalize_recovery(code);
            normalized.len() == 10
                && self
                    .store
                    .use_recovery_code(user_id, &hash_token(&normalized))
                    .await
                    .map_err(internal)?
        };
        if accepted {
            self.store.clear_failures(user_id).await.map_err(internal)?;
            Ok(())
        } else {
            Err(self.failed(user_id).await)
        }
    }

    async fn not_locked(&self, user_id: &str) -> Result<(), CodeError> {
        let now = unix_now() as i64;
        let failures = self
            .store
            .failures(user_id, now - LOCK_WINDOW)
            .await
            .map_err(internal)?;
        if failures >= MAX_FAILURES {
            return Err(CodeError::Locked(LOCK_WINDOW / 60));
        }
        Ok(())
    }

    async fn failed(&self, user_id: &str) -> CodeError {
        let now = unix_now() as i64;
        match self.store.failed(user_id, now, now - LOCK_WINDOW).await {
            Ok(n) if n >= MAX_FAILURES => {
                tracing::warn!(user_id, "second step locked after {n} wrong codes");
                CodeError::Locked(LOCK_WINDOW / 60)
            }
            Ok(_) => CodeError::Wrong,
            Err(e) => internal(e).into(),
        }
    }

    /// Turns TOTP off (the account page, `chronos user mfa-reset`).
    pub async fn remove(&self, user_id: &UserId) -> Result<bool, ApiError> {
        self.store.remove(user_id).await.map_err(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_normalize_and_differ() {
        let a = new_recovery_code();
        assert_eq!(a.len(), 11);
        assert_eq!(normalize_recovery(&a.to_uppercase()).len(), 10);
        assert_eq!(normalize_recovery(" ABCDE-fghjk "), "abcdefghjk");
        assert_ne!(a, new_recovery_code());
    }

    #[test]
    fn rfc6238_reference_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits); 6 digits: 287082.
        let otp = totp(b"12345678901234567890".to_vec(), "a@b.c").unwrap();
        assert_eq!(otp.generate(59).to_string(), "287082");
        assert_eq!(otp.check("287082", 59), Some(1));
        assert_eq!(otp.check("287082", 59 + 3 * 30), None);
    }
}
