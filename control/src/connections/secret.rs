//! A connection's secret: encrypted at rest with the key from the settings
//! (`TERN_SECRET_KEY`, ChaCha20-Poly1305, the connection's name bound in as
//! associated data so a ciphertext cannot be moved to another connection), or
//! a reference to where it lives (`env:NAME`, `file:/path`), read only when
//! a job connects. A secret is never logged, returned or shown.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::error::{ControlError, Result};

/// How to set the key, said wherever one is missing or wrong.
pub const KEY_HELP: &str = "set TERN_SECRET_KEY (or `secret_key` in the settings file) to 64 hex \
     characters, e.g. the output of `tern connection new-key`, on every tern process; or \
     reference the secret instead with env:NAME or file:/path";

/// The key secrets are encrypted with, and the one before it while a
/// rotation is under way (`TERN_PREVIOUS_SECRET_KEY`).
#[derive(Clone)]
pub struct SecretKey {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

fn parse_key(text: &str, setting: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| ControlError::Invalid(format!("{setting} is not hexadecimal: {KEY_HELP}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        ControlError::Invalid(format!(
            "{setting} is {} bytes long, not 32: {KEY_HELP}",
            b.len()
        ))
    })
}

impl SecretKey {
    /// The key from its hex text (and the previous one, when rotating).
    pub fn parse(current: &str, previous: Option<&str>) -> Result<SecretKey> {
        Ok(SecretKey {
            current: parse_key(current, "the secret key")?,
            previous: previous
                .filter(|p| !p.trim().is_empty())
                .map(|p| parse_key(p, "the previous secret key"))
                .transpose()?,
        })
    }

    /// A fresh random key, as hex.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// `plain` encrypted for the connection `name`: `v1:` and the hex of a
    /// random nonce followed by the ciphertext.
    pub fn encrypt(&self, name: &str, plain: &str) -> Result<String> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.current));
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| ControlError::Internal(format!("encrypting the secret of `{name}`")))?;
        Ok(format!("v1:{}{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// The secret of connection `name`, with the current key or else the
    /// previous one.
    pub fn decrypt(&self, name: &str, stored: &str) -> Result<String> {
        let bytes = stored
            .strip_prefix("v1:")
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "connection `{name}`: its stored secret is damaged; an admin can set it again"
                ))
            })?;
        let (nonce, sealed) = bytes.split_at(12);
        for key in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
            if let Ok(plain) = cipher.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            ) {
                return String::from_utf8(plain).map_err(|_| {
                    ControlError::Invalid(format!("connection `{name}`: its secret is not text"))
                });
            }
        }
        Err(ControlError::Invalid(format!(
            "connection `{name}`: its secret was encrypted with another key than this tern's: {KEY_HELP}"
        )))
    }

    /// Whether `stored` opens with the current key (not only the previous).
    pub fn is_current(&self, name: &str, stored: &str) -> bool {
        SecretKey {
            current: self.current,
            previous: None,
        }
        .decrypt(name, stored)
        .is_ok()
    }
}

/// Reads a referenced secret: `env:NAME` from this process's environment,
/// `file:/path` from the file (its trailing newline dropped).
pub fn read_reference(connection: &str, reference: &str) -> Result<String> {
    if let Some(var) = reference.strip_prefix("env:") {
        return std::env::var(var).map_err(|_| {
            ControlError::Invalid(format!(
                "connection `{connection}`: its secret is the environment variable {var}, \
                 which is not set for this tern process"
            ))
        });
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                ControlError::Invalid(format!(
                    "connection `{connection}`: cannot read its secret file {path}: {e}"
                ))
            });
    }
    Err(ControlError::Invalid(format!(
        "connection `{connection}`: a secret reference is env:NAME or file:/path"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_with_its_key_and_its_name() {
        let key = SecretKey::parse(&SecretKey::generate(), None).expect("key");
        let sealed = key.encrypt("legacy-inbox", "hunter2").expect("sealed");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key.decrypt("legacy-inbox", &sealed).expect("opens"),
            "hunter2"
        );
        assert!(key.decrypt("other", &sealed).is_err(), "bound to its name");
        let other = SecretKey::parse(&SecretKey::generate(), None).expect("key");
        assert!(other.decrypt("legacy-inbox", &sealed).is_err());
        let old = hex::encode(key.current);
        let rotating = SecretKey::parse(&SecretKey::generate(), Some(&old)).expect("rotating key");
        assert_eq!(
            rotating.decrypt("legacy-inbox", &sealed).expect("old key"),
            "hunter2"
        );
        assert!(!rotating.is_current("legacy-inbox", &sealed));
        assert!(format!("{key:?}").contains("***"));
        assert!(SecretKey::parse("abc", None).is_err());
    }
}
