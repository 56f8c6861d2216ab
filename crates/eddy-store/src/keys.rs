//! Swap keys for a daemon (server or client): one secret per swap and purpose, derived from a
//! 32-byte seed kept in the data dir (0600, created on first start) as
//! `HMAC-SHA256(seed, "eddy/" || purpose || swap id || counter)`, so a restarted daemon can
//! always re-derive the key of any stored swap and the store itself never holds a private key.

use std::path::Path;

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use eddy_core::types::SwapId;

/// What a derived key is for. Each purpose's tag is part of the derivation, so the keys of
/// stored swaps depend on it: a tag is never changed or reused (the test vectors pin them), and a
/// new purpose takes a new tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Server: a loop-out HTLC's refund key (tag `loop-out`).
    ServerLoopOut,
    /// Server: a loop-in HTLC's claim key (tag `loop-in`).
    ServerLoopIn,
    /// Server: the swap wallet's key, derived for the all-zero id (tag `swap-wallet`).
    SwapWallet,
    /// Client: a loop-out's claim key, which also signs that swap's calls (tag
    /// `loop-out-claim`).
    ClientLoopOutClaim,
    /// Client: a loop-in's refund key, which also signs that swap's calls (tag
    /// `loop-in-refund`).
    ClientLoopInRefund,
}

impl KeyPurpose {
    /// The tag the derivation hashes.
    pub const fn tag(self) -> &'static str {
        match self {
            KeyPurpose::ServerLoopOut => "loop-out",
            KeyPurpose::ServerLoopIn => "loop-in",
            KeyPurpose::SwapWallet => "swap-wallet",
            KeyPurpose::ClientLoopOutClaim => "loop-out-claim",
            KeyPurpose::ClientLoopInRefund => "loop-in-refund",
        }
    }
}

/// The key source.
pub struct SeedKeys {
    seed: [u8; 32],
}

impl std::fmt::Debug for SeedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedKeys(<redacted>)")
    }
}

impl SeedKeys {
    /// Reads the seed file `dir/file`, creating it (0600) if missing.
    pub fn load_or_create(dir: &Path, file: &str) -> std::io::Result<SeedKeys> {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(b) => {
                let seed: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "server-seed must be 32 bytes")
                })?;
                Ok(SeedKeys { seed })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                std::fs::create_dir_all(dir)?;
                let seed: [u8; 32] = *eddy_core::types::Preimage::random().expose_bytes();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&path)?;
                f.write_all(&seed)?;
                f.sync_all()?;
                Ok(SeedKeys { seed })
            }
            Err(e) => Err(e),
        }
    }

    /// The secret key of swap `id` for `purpose`.
    pub fn secret(&self, purpose: KeyPurpose, id: &SwapId) -> SecretKey {
        let mut counter = 0u8;
        loop {
            let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.seed);
            engine.input(b"eddy/");
            engine.input(purpose.tag().as_bytes());
            engine.input(&id.0);
            engine.input(&[counter]);
            let bytes = hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
            // Out-of-range outputs have probability ~2^-128; step the counter if it ever happens.
            if let Ok(k) = SecretKey::from_slice(&bytes) {
                return k;
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// The public key of [`SeedKeys::secret`].
    pub fn public(&self, purpose: KeyPurpose, id: &SwapId) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.secret(purpose, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hex::DisplayHex;

    /// The derivation of every purpose, pinned: `HMAC-SHA256([7; 32], "eddy/" || tag || [1;
    /// 32] || 0)`, computed independently (Python's `hmac`). A change here changes the keys of
    /// every stored swap.
    #[test]
    fn every_purpose_derives_the_key_it_always_did() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("seed"), [7u8; 32]).expect("seed");
        let keys = SeedKeys::load_or_create(dir.path(), "seed").expect("keys");
        let id = SwapId([1; 32]);
        for (purpose, want) in [
            (
                KeyPurpose::ServerLoopOut,
                "63f5fe98fb5129812aa7e370a281734f1c45e9c5b8b8974169f1349b5a2f5d9d",
            ),
            (
                KeyPurpose::ServerLoopIn,
                "1d419213ab5ebbbddfb0f16ca2c7fa5fa827957fb2faf56fca258638d4349f3d",
            ),
            (
                KeyPurpose::SwapWallet,
                "903ec39214ea3f34bfb7cd8ad0297039721a541af6d9fb0b3cd4c9d0b9977e16",
            ),
            (
                KeyPurpose::ClientLoopOutClaim,
                "ba41096b7d498a56be158371f582ddfd54c9ad4992ea2505c9f290a7968ff320",
            ),
            (
                KeyPurpose::ClientLoopInRefund,
                "fcf025baa6a4de7af4fc4b224ec3b9673f732d738df9b601caccc2903e3234f2",
            ),
        ] {
            assert_eq!(
                keys.secret(purpose, &id).secret_bytes().to_lower_hex_string(),
                want,
                "{purpose:?}"
            );
        }
    }
}
