//! A DBSC registration proof for bench/dbsc.py: a fresh ES256 key, and the
//! `dbsc+jwt` it signs for the challenge given (jwk in the header), on stdout.
//!
//!     dbsc_proof CHALLENGE

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let challenge = std::env::args()
        .nth(1)
        .ok_or("usage: dbsc_proof CHALLENGE")?;
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)?;
    let point = key.public_key().as_ref();
    let header = serde_json::json!({
        "alg": "ES256",
        "typ": "dbsc+jwt",
        "jwk": {"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])},
    });
    let payload = serde_json::json!({ "jti": challenge });
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let signature = key.sign(&SystemRandom::new(), input.as_bytes())?;
    println!("{input}.{}", B64.encode(signature.as_ref()));
    Ok(())
}
