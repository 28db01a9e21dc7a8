//! [`SecretKey`]: the master key that seals function secrets at rest with XChaCha20-Poly1305
//! (an AEAD: a wrong key or a changed byte fails to open instead of giving garbage). Each sealed
//! value is bound to where it belongs (`function/KEY`, as associated data), so a ciphertext
//! copied to another function or key does not open either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The key file in the data dir, created (mode 0600) on first start without `FAAS_SECRET_KEY`.
pub const KEY_FILE: &str = "secret.key";
/// Random per value; 24 bytes (XChaCha) so random nonces never collide in practice.
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Sealed with the key and stored once per database, so a node started with another key
/// refuses to start instead of failing on every secret later.
const CHECK_CONTEXT: &str = "faas/secret-key-check";
const CHECK_PLAINTEXT: &[u8] = b"faas secret key check v1";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret key: {0}")]
    BadKey(String),
    #[error("a sealed secret does not open with this key (wrong key, or the stored value was altered)")]
    Open,
    #[error("secret key file {path}: {error}")]
    File { path: PathBuf, error: std::io::Error },
}

/// The 32-byte master key. Its `Debug` shows nothing of it.
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Where the key came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    Created(PathBuf),
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&bytes.into()) }
    }

    /// A new random key, as base64 (what `FAAS_SECRET_KEY` and the key file hold).
    pub fn generate() -> String {
        BASE64.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// 32 bytes as base64 (standard alphabet, padded) or as 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| SecretError::BadKey(e.to_string()))?
        } else {
            BASE64.decode(text).map_err(|_| SecretError::BadKey("neither 64 hex digits nor base64".into()))?
        };
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| SecretError::BadKey(format!("{} bytes; a key has 32", b.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key from `env` (`FAAS_SECRET_KEY`) if set, else from `data_dir/secret.key`, which is
    /// created with mode 0600 if missing.
    pub fn load(env: Option<&str>, data_dir: &Path) -> Result<(Self, KeySource), SecretError> {
        if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
            return Ok((Self::parse(text)?, KeySource::Env));
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |error| SecretError::File { path: path.clone(), error };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text)?, KeySource::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(file_error)?;
                file.write_all(format!("{text}\n").as_bytes()).map_err(file_error)?;
                file.sync_all().map_err(file_error)?;
                Ok((Self::parse(&text)?, KeySource::Created(path)))
            }
            Err(e) => Err(file_error(e)),
        }
    }

    /// `plaintext` sealed for `context`: base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        BASE64.encode(out)
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = BASE64.decode(sealed).map_err(|_| SecretError::Open)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)
    }

    /// A token to store beside the secrets, so the next start can [`verify`](Self::verify) its key.
    pub fn check_token(&self) -> String {
        self.seal(CHECK_CONTEXT, CHECK_PLAINTEXT)
    }

    pub fn verify(&self, token: &str) -> Result<(), SecretError> {
        match self.open(CHECK_CONTEXT, token) {
            Ok(plain) if plain == CHECK_PLAINTEXT => Ok(()),
            _ => Err(SecretError::BadKey(
                "it is not the key this database's secrets were sealed with: start every node with the \
                 same FAAS_SECRET_KEY (or the data dir's secret.key)"
                    .into(),
            )),
        }
    }
}

/// The plaintext length of a sealed value, without opening it (for the size limits).
pub fn sealed_len(sealed: &str) -> usize {
    let padding = sealed.bytes().rev().take_while(|&b| b == b'=').count();
    (sealed.len() / 4 * 3).saturating_sub(padding).saturating_sub(NONCE_BYTES + TAG_BYTES)
}

/// The associated data binding a secret to its function and key.
pub fn context(function: &str, key: &str) -> String {
    format!("faas/secret/{function}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = SecretKey::from_bytes([7; 32]);
        let sealed = key.seal("f/K", b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.open("f/K", &sealed).expect("opens"), b"hunter2");
        assert_eq!(sealed_len(&sealed), 7);
        assert_ne!(key.seal("f/K", b"hunter2"), sealed, "a fresh nonce every time");
    }

    #[test]
    fn wrong_key_or_context_fails() {
        let sealed = SecretKey::from_bytes([7; 32]).seal("f/K", b"hunter2");
        assert!(matches!(SecretKey::from_bytes([8; 32]).open("f/K", &sealed), Err(SecretError::Open)));
        assert!(matches!(SecretKey::from_bytes([7; 32]).open("g/K", &sealed), Err(SecretError::Open)));
        let token = SecretKey::from_bytes([7; 32]).check_token();
        assert!(SecretKey::from_bytes([7; 32]).verify(&token).is_ok());
        assert!(matches!(SecretKey::from_bytes([8; 32]).verify(&token), Err(SecretError::BadKey(_))));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let key = SecretKey::from_bytes([7; 32]);
        let mut bytes = BASE64.decode(key.seal("f/K", b"hunter2")).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(key.open("f/K", &BASE64.encode(&bytes)), Err(SecretError::Open)));
        bytes[last] ^= 1;
        bytes[NONCE_BYTES] ^= 0x80;
        assert!(matches!(key.open("f/K", &BASE64.encode(&bytes)), Err(SecretError::Open)));
        assert!(matches!(key.open("f/K", "short"), Err(SecretError::Open)));
    }

    #[test]
    fn parses_base64_and_hex() {
        assert!(SecretKey::parse(&SecretKey::generate()).is_ok());
        assert!(SecretKey::parse(&"ab".repeat(32)).is_ok());
        assert!(matches!(SecretKey::parse("c2hvcnQ="), Err(SecretError::BadKey(_))));
        assert!(matches!(SecretKey::parse("not a key!"), Err(SecretError::BadKey(_))));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, source) = SecretKey::load(None, dir.path()).expect("created");
        assert!(matches!(source, KeySource::Created(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, source) = SecretKey::load(None, dir.path()).expect("read");
        assert!(matches!(source, KeySource::File(_)));
        assert_eq!(b.open("x", &a.seal("x", b"v")).expect("same key"), b"v");
    }
}
