//! The bridge's own state at rest: changelog entries (which hold scheduled berichten' text and
//! taken's form data) sealed with AES-256-GCM. Each entry names the key that sealed it, so keys
//! rotate: the current key seals, every configured key opens. The record key is authenticated
//! with it, so an entry cannot be moved to another key. Keys come from a file or the environment
//! (`GZAC_BRIDGE_STATE_KEYS`), never from the configuration, and are never logged.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::collections::BTreeMap;
use std::path::Path;

/// Marks a sealed entry (a plain one is JSON, which starts with `{`, `[` or `"`).
const MAGIC: &[u8; 4] = b"GZS1";
pub const KEYS_ENV: &str = "GZAC_BRIDGE_STATE_KEYS";

pub struct StateCipher {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

/// Debug without key material.
impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCipher").field("current", &self.current).field("keys", &self.keys.keys()).finish()
    }
}

impl StateCipher {
    /// Keys as `id=<64 hex digits>` entries, separated by commas or new lines (`#` comments);
    /// `current` names the one that seals.
    pub fn parse(current: &str, text: &str) -> anyhow::Result<Self> {
        let mut keys = BTreeMap::new();
        for entry in text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#')) {
            let (id, hex) = entry.split_once('=').ok_or_else(|| anyhow::anyhow!("a state key entry is not id=hex"))?;
            let bytes = decode_hex(hex.trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| anyhow::anyhow!("state key {:?} is not 64 hex digits (256 bits)", id.trim()))?;
            anyhow::ensure!(id.trim().len() < 256 && !id.trim().is_empty(), "a state key id is empty or too long");
            keys.insert(id.trim().to_string(), Aes256Gcm::new_from_slice(&bytes)?);
        }
        anyhow::ensure!(
            keys.contains_key(current),
            "state key {current:?} (state_encryption.key_id) is not among the configured keys"
        );
        Ok(StateCipher { current: current.to_string(), keys })
    }

    /// The cipher the configuration asks for: none without `key_id`; otherwise the keys from
    /// `keys_file`, else from the environment.
    pub fn from_config(cfg: &crate::config::StateEncryption) -> anyhow::Result<Option<Self>> {
        let Some(current) = &cfg.key_id else { return Ok(None) };
        let text = match &cfg.keys_file {
            Some(path) => read_keys(path)?,
            None => std::env::var(KEYS_ENV).map_err(|_| {
                anyhow::anyhow!("state_encryption.key_id is set but neither keys_file nor {KEYS_ENV} holds keys")
            })?,
        };
        Self::parse(current, &text).map(Some)
    }

    pub fn seal(&self, record_key: &str, plain: &[u8]) -> Vec<u8> {
        let cipher = &self.keys[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plain, aad: record_key.as_bytes() })
            .expect("AES-GCM encrypts any input of this size");
        let mut out = Vec::with_capacity(4 + 1 + self.current.len() + 12 + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(self.current.len() as u8);
        out.extend_from_slice(self.current.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plain bytes of an entry: opened when sealed, as they are when not (state written
    /// before encryption was turned on).
    pub fn open<'a>(&self, record_key: &str, bytes: &'a [u8]) -> anyhow::Result<std::borrow::Cow<'a, [u8]>> {
        open_with(Some(self), record_key, bytes)
    }
}

/// `open` for an optional cipher: a sealed entry without a cipher is an error that says so.
pub fn open_with<'a>(
    cipher: Option<&StateCipher>,
    record_key: &str,
    bytes: &'a [u8],
) -> anyhow::Result<std::borrow::Cow<'a, [u8]>> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else { return Ok(bytes.into()) };
    let cipher = cipher.ok_or_else(|| anyhow::anyhow!("the entry is encrypted and no state key is configured"))?;
    let (&n, rest) = rest.split_first().ok_or_else(|| anyhow::anyhow!("truncated encrypted entry"))?;
    anyhow::ensure!(rest.len() >= n as usize + 12 + 16, "truncated encrypted entry");
    let (id, rest) = rest.split_at(n as usize);
    let id = String::from_utf8_lossy(id);
    let key = cipher
        .keys
        .get(id.as_ref())
        .ok_or_else(|| anyhow::anyhow!("the entry is encrypted with state key {id:?}, which is not configured"))?;
    let (nonce, sealed) = rest.split_at(12);
    let plain =
        key.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: record_key.as_bytes() }).map_err(|_| {
            anyhow::anyhow!("the entry does not open with state key {id:?} (damaged, or not this record's)")
        })?;
    Ok(plain.into())
}

fn read_keys(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read state keys from {}: {e}", path.display()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn sealed_entries_hide_their_text_and_open_after_a_key_rotation() {
        let old = StateCipher::parse("2026-01", &format!("2026-01={K1}")).unwrap();
        let sealed = old.seal("b-1", br#"{"berichtTekst":"MARKER geheim"}"#);
        assert!(!String::from_utf8_lossy(&sealed).contains("MARKER"));
        // Rotated: a new key seals, the old one still opens what it sealed.
        let new = StateCipher::parse("2026-07", &format!("2026-01={K1}\n2026-07={K2}")).unwrap();
        assert_eq!(&*new.open("b-1", &sealed).unwrap(), br#"{"berichtTekst":"MARKER geheim"}"#);
        assert!(new.seal("b-1", b"{}").windows(7).any(|w| w == b"2026-07"), "the entry names its key");
        // Not under another record key, not without the key, not damaged.
        assert!(new.open("b-2", &sealed).is_err());
        assert!(StateCipher::parse("x", &format!("x={K2}")).unwrap().open("b-1", &sealed).is_err());
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(new.open("b-1", &damaged).is_err());
        assert!(open_with(None, "b-1", &sealed).is_err());
        // Plain JSON (written before encryption was on) reads as it is.
        assert_eq!(&*new.open("b-1", b"{\"a\":1}").unwrap(), b"{\"a\":1}");
        assert!(StateCipher::parse("k", "k=abcd").is_err() && StateCipher::parse("k", &format!("j={K1}")).is_err());
        assert!(!format!("{new:?}").contains(K1), "no key material in Debug");
    }
}
