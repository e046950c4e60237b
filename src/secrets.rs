//! Secrets generated on first start and kept in `DATA_DIR`, so that tokens
//! survive a restart without any configuration (development defaults).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::Rng;

/// A fresh random token: `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    B64.encode(buf)
}

/// How one-time codes, refresh tokens and flow ids are stored: SHA-256,
/// base64url. The tokens carry 256 bits of randomness, so a fast hash is
/// enough (no password-style stretching needed).
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    B64.encode(Sha256::digest(token.as_bytes()))
}

/// The PKCE S256 challenge of a verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// Creates `dir` (mode 0700 on Unix) if it does not exist.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `contents` to `path` only if no file is there yet, atomically (a
/// concurrent starter either wins or reads the winner's complete file).
/// Returns whether this call created the file.
pub fn create_once(path: &Path, contents: &[u8]) -> io::Result<bool> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads the random secret stored in `dir/name`, generating `len` bytes the
/// first time.
pub fn load_or_generate(dir: &Path, name: &str, len: usize) -> io::Result<Vec<u8>> {
    ensure_dir(dir)?;
    let path = dir.join(name);
    if !path.exists() {
        let mut bytes = vec![0u8; len];
        rand::rng().fill_bytes(&mut bytes);
        create_once(&path, B64.encode(&bytes).as_bytes())?;
    }
    let text = fs::read_to_string(&path)?;
    match B64.decode(text.trim()) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a generated secret; delete it to make a new one",
                path.display()
            ),
        )),
    }
}

/// Seals small secrets kept at rest (a provider's refresh tokens):
/// AES-256-GCM with a random nonce, under a key generated into DATA_DIR.
#[derive(Clone)]
pub struct Sealer {
    cipher: aes_gcm::Aes256Gcm,
}

impl Sealer {
    /// The sealer whose key is `dir/name` (generated on first use).
    pub fn load_or_generate(dir: &Path, name: &str) -> io::Result<Self> {
        let key = load_or_generate(dir, name, 32)?;
        Self::new(&key[..32])
    }

    pub fn new(key: &[u8]) -> io::Result<Self> {
        use aes_gcm::KeyInit;
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(key)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a sealing key is 32 bytes"))?;
        Ok(Self { cipher })
    }

    /// `base64url(nonce || ciphertext)`.
    pub fn seal(&self, plain: &[u8]) -> String {
        use aes_gcm::aead::Aead;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&aes_gcm::Nonce::from(nonce), plain)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The plain text, if `sealed` was sealed with this key and not altered.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        use aes_gcm::aead::Aead;
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(&aes_gcm::Nonce::from(nonce), ciphertext)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_unaltered_and_with_its_key() {
        let sealer = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = sealer.seal(b"refresh-token-value");
        assert!(!sealed.contains("refresh"));
        assert_ne!(sealed, sealer.seal(b"refresh-token-value"), "fresh nonce");
        assert_eq!(sealer.open(&sealed).unwrap(), b"refresh-token-value");
        let other = Sealer::new(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed).is_none());
        let mut bytes = B64.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(sealer.open(&B64.encode(bytes)).is_none());
        assert!(sealer.open("garbage").is_none());
    }

    #[test]
    fn a_generated_secret_is_kept() {
        let dir = std::env::temp_dir().join(format!("chronos-secret-{}", uuid::Uuid::new_v4()));
        let first = load_or_generate(&dir, "k", 32).unwrap();
        let second = load_or_generate(&dir, "k", 32).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("k")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "secret readable by others");
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
