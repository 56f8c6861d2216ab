//! Swap keys for a daemon (server or client): one secret per swap and purpose, derived from a
//! 32-byte seed kept in the data dir (0600, created on first start) as
//! `HMAC-SHA256(seed, "eddy/" || purpose || swap id || counter)`, so a restarted daemon can
//! always re-derive the key of any stored swap and the store itself never holds a private key.

use std::path::Path;

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use eddy_core::types::SwapId;

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
    pub fn secret(&self, purpose: &str, id: &SwapId) -> SecretKey {
        let mut counter = 0u8;
        loop {
            let mut engine = hmac::HmacEngine::<sha256::Hash>::new(&self.seed);
            engine.input(b"eddy/");
            engine.input(purpose.as_bytes());
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
    pub fn public(&self, purpose: &str, id: &SwapId) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.secret(purpose, id))
    }
}
