//! The proof a browser sends in `Secure-Session-Response`: a JWT with
//! `typ: dbsc+jwt`, signed ES256 or RS256 by the session's key; at
//! registration the public key rides in its header (`jwk`), afterwards the
//! key registered verifies it. Its `jti` is the challenge it answers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The algorithms a registration offers, as the header lists them.
pub const OFFERED: &str = "(ES256 RS256)";

/// The smallest RSA modulus accepted, bits.
const MIN_RSA_BITS: usize = 2048;

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Type,
    Algorithm,
    MissingKey,
    Key,
    OtherKey,
    Signature,
}

impl Refused {
    /// The `detail` the client sees.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Malformed => "The proof is not a JWT",
            Self::Type => "The proof's typ must be dbsc+jwt",
            Self::Algorithm => "The proof's alg must be ES256 or RS256",
            Self::MissingKey => "The proof's header must carry the public key (jwk)",
            Self::Key => {
                "The proof's key does not fit its alg (ES256: EC P-256; RS256: RSA of 2048 bits or more)"
            }
            Self::OtherKey => "The proof's key is not the session's",
            Self::Signature => "The proof's signature does not verify",
        }
    }

    /// The metric's reason label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Type => "typ",
            Self::Algorithm => "alg",
            Self::MissingKey | Self::Key => "key",
            Self::OtherKey => "other_key",
            Self::Signature => "signature",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
}

/// A verified proof: the challenge it answers, and the key that signed it.
#[derive(Debug)]
pub struct Proof {
    pub jti: String,
    pub algorithm: &'static str,
    /// RFC 7638 SHA-256 thumbprint, base64url.
    pub thumbprint: String,
    /// The public JWK as JSON (registration).
    pub public_jwk: String,
}

fn algorithm_name(alg: Algorithm) -> Result<&'static str, Refused> {
    match alg {
        Algorithm::ES256 => Ok("ES256"),
        Algorithm::RS256 => Ok("RS256"),
        _ => Err(Refused::Algorithm),
    }
}

/// The key must be what `alg` signs with, and strong enough.
fn check_key(alg: Algorithm, jwk: &Jwk) -> Result<(), Refused> {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256)
            if ec.curve == EllipticCurve::P256 =>
        {
            Ok(())
        }
        (AlgorithmParameters::RSA(rsa), Algorithm::RS256) => {
            let n = B64.decode(&rsa.n).map_err(|_| Refused::Key)?;
            let bits = n
                .iter()
                .position(|b| *b != 0)
                .map_or(0, |at| (n.len() - at) * 8 - n[at].leading_zeros() as usize);
            if bits >= MIN_RSA_BITS {
                Ok(())
            } else {
                Err(Refused::Key)
            }
        }
        _ => Err(Refused::Key),
    }
}

/// Signature and `typ` verified; no dates (a proof carries none the draft
/// requires: its freshness is its challenge's).
fn verify_with(token: &str, alg: Algorithm, jwk: &Jwk) -> Result<String, Refused> {
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Refused::Key)?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map(|data| data.claims.jti)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Refused::Signature,
            _ => Refused::Malformed,
        })
}

fn header(token: &str) -> Result<jsonwebtoken::Header, Refused> {
    // Proofs are small; anything larger than a few KiB is not one.
    if token.len() > 8192 {
        return Err(Refused::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
    if header.typ.as_deref() != Some("dbsc+jwt") {
        return Err(Refused::Type);
    }
    algorithm_name(header.alg)?;
    Ok(header)
}

fn thumbprint(jwk: &Jwk) -> Result<String, Refused> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| Refused::Key)
}

/// A registration's proof: the key it carries signed it.
pub fn verify_registration(token: &str) -> Result<Proof, Refused> {
    let header = header(token)?;
    let jwk = header.jwk.as_ref().ok_or(Refused::MissingKey)?;
    check_key(header.alg, jwk)?;
    let jti = verify_with(token, header.alg, jwk)?;
    Ok(Proof {
        jti,
        algorithm: algorithm_name(header.alg)?,
        thumbprint: thumbprint(jwk)?,
        public_jwk: serde_json::to_string(jwk).map_err(|_| Refused::Key)?,
    })
}

/// A refresh's proof, signed by the key registered (`algorithm`,
/// `public_jwk` as stored). A `jwk` in its header is tolerated only when it
/// is that same key.
pub fn verify_refresh(token: &str, algorithm: &str, public_jwk: &str) -> Result<String, Refused> {
    let header = header(token)?;
    if algorithm_name(header.alg)? != algorithm {
        return Err(Refused::OtherKey);
    }
    let registered: Jwk = serde_json::from_str(public_jwk).map_err(|_| Refused::Key)?;
    if let Some(sent) = &header.jwk
        && thumbprint(sent)? != thumbprint(&registered)?
    {
        return Err(Refused::OtherKey);
    }
    verify_with(token, header.alg, &registered)
}
