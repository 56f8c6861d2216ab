//! Value types shared by every part of Eddy: swap ids, payment hashes, preimages, millisatoshi
//! amounts and block heights. Secrets (`Preimage`) never print themselves.

use core::fmt;
use core::str::FromStr;

use bitcoin::hashes::{sha256, Hash};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use bitcoin::{Amount, FeeRate, Network};

/// A block height on the chain the swap lives on.
pub type BlockHeight = u32;

/// Error parsing one of the fixed-size hex values of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexValueError {
    /// The text was not hex, or not of the expected length.
    #[error("expected {expected} hex characters, got {got:?}")]
    Invalid {
        /// Number of hex characters expected.
        expected: usize,
        /// What was given (never a secret: preimage parsing hides it).
        got: String,
    },
}

fn parse_hex32(s: &str, show: bool) -> Result<[u8; 32], HexValueError> {
    let err = || HexValueError::Invalid {
        expected: 64,
        got: if show { s.to_owned() } else { "<redacted>".to_owned() },
    };
    if s.len() != 64 {
        return Err(err());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16).ok_or_else(err)?;
        let lo = (chunk[1] as char).to_digit(16).ok_or_else(err)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! hex32_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn to_byte_array(self) -> [u8; 32] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }

        impl FromStr for $name {
            type Err = HexValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s, true).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32_newtype!(
    /// `sha256(preimage)`: the lock shared by the Lightning payment and the on-chain HTLC.
    PaymentHash
);

hex32_newtype!(
    /// A swap's identifier. Eddy uses the payment hash's bytes (one swap per hash, as Lightning
    /// Loop does), which makes a replayed hash a duplicate swap by construction.
    SwapId
);

impl From<PaymentHash> for SwapId {
    fn from(h: PaymentHash) -> Self {
        SwapId(h.0)
    }
}

/// The 32-byte secret whose sha256 is the payment hash. `Debug` and `Display` never print it;
/// use [`Preimage::expose_hex`] where it must really leave the process (the claim witness,
/// the preimage push to the server, the store).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preimage([u8; 32]);

impl Preimage {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Preimage(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Preimage)
    }

    /// A fresh preimage from the operating system's CSPRNG.
    pub fn random() -> Self {
        use bitcoin::secp256k1::rand::RngCore;
        let mut bytes = [0u8; 32];
        bitcoin::secp256k1::rand::thread_rng().fill_bytes(&mut bytes);
        Preimage(bytes)
    }

    /// Parses 64 hex characters; the error never echoes the input.
    pub fn from_hex(s: &str) -> Result<Self, HexValueError> {
        parse_hex32(s, false).map(Preimage)
    }

    /// The secret bytes.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The secret as hex, for the few places it must be written out.
    pub fn expose_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `sha256(self)`.
    pub fn payment_hash(&self) -> PaymentHash {
        PaymentHash(sha256::Hash::hash(&self.0).to_byte_array())
    }
}

/// Serialized as hex: only for the swap store, which must keep the preimage to finish a swap
/// after a restart. Never put a `Preimage` in a log or an API error.
impl Serialize for Preimage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.expose_hex())
    }
}

impl<'de> Deserialize<'de> for Preimage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Preimage::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

impl PaymentHash {
    /// `ripemd160(self)`, i.e. `hash160(preimage)`: what the HTLC scripts commit to.
    pub fn ripemd160(&self) -> [u8; 20] {
        bitcoin::hashes::ripemd160::Hash::hash(&self.0).to_byte_array()
    }

    /// Whether `preimage` hashes to this payment hash.
    pub fn matches(&self, preimage: &Preimage) -> bool {
        preimage.payment_hash() == *self
    }
}

/// An amount in millisatoshis, as Lightning counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AmountMsat(pub u64);

impl AmountMsat {
    /// Converts whole satoshis.
    pub fn from_sat(amount: Amount) -> Option<Self> {
        amount.to_sat().checked_mul(1000).map(AmountMsat)
    }

    /// Whole satoshis if this is a whole number of them.
    pub fn to_sat_exact(self) -> Option<Amount> {
        (self.0 % 1000 == 0).then(|| Amount::from_sat(self.0 / 1000))
    }
}

/// Which way a swap moves money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapDirection {
    /// Lightning → chain (the client claims the on-chain HTLC).
    LoopOut,
    /// Chain → Lightning (the server claims the on-chain HTLC).
    LoopIn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimage_never_prints() {
        let p = Preimage::from_bytes([7u8; 32]);
        let shown = format!("{p:?}");
        assert!(!shown.contains("0707"), "{shown}");
        let err = Preimage::from_hex("zz").expect_err("not hex");
        assert!(!format!("{err}").contains("zz"));
    }

    #[test]
    fn hash_round_trips() {
        let p =
            Preimage::from_hex("0353725431741829e4d8aa1c4043143a17b054f9d91ef4e442686a0b63e8a0cc").expect("valid hex");
        let h = p.payment_hash();
        assert_eq!(
            h.to_string(),
            "9a6de8835775903af1551d43a24b3e06f7a2c9a8c5f07d40505250c5cc325f5d"
        );
        assert_eq!(h.to_string().parse::<PaymentHash>(), Ok(h));
        assert!(h.matches(&p));
    }
}
