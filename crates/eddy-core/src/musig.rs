//! MuSig2 (BIP327) for the P2TR HTLC's cooperative key spend, and the one boundary between
//! `bitcoin`'s secp256k1 types (0.29, shared with ldk-node) and the `musig2` crate's own
//! (secp256k1 0.31): keys, nonces and signatures cross here as bytes and nowhere else.
//!
//! Nonce safety: a [`Signer`] draws its secret nonce from the OS CSPRNG, binds it to the
//! secret key, aggregate key, message and a caller-given session id (BIP327's `NonceGen`
//! extra inputs), keeps it only in memory, and hands it to the signing function *by value*,
//! so a second `sign` on the same session fails with [`MusigError::NonceAlreadyUsed`] instead
//! of leaking the key. Secret nonces are never serialized or persisted: a crash mid-session
//! just means a new session.

use bitcoin::secp256k1::{schnorr, PublicKey, SecretKey};
use musig2::secp::{MaybeScalar, Point, Scalar};
use musig2::{AggNonce, BinaryEncoding, KeyAggContext, LiftedSignature, PubNonce, SecNonce, SecNonceBuilder};

use crate::htlc::TaprootHtlc;

use crate::keyagg;
pub use crate::keyagg::aggregate_untweaked;

/// Serialized public nonce length (two compressed points).
pub const PUB_NONCE_LEN: usize = 66;

/// A MuSig2 public nonce as it travels between the parties.
pub type PubNonceBytes = [u8; PUB_NONCE_LEN];
/// A MuSig2 partial signature as it travels between the parties.
pub type PartialSigBytes = [u8; 32];

/// Errors of a MuSig2 signing session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MusigError {
    /// A key could not be converted (not on the curve).
    #[error("invalid key for musig2")]
    InvalidKey,
    /// Our key is neither of the HTLC's two keys.
    #[error("our key is not a key of this HTLC")]
    NotParticipant,
    /// The other party's nonce does not decode.
    #[error("invalid public nonce")]
    InvalidNonce,
    /// The other party's partial signature does not decode or does not verify.
    #[error("invalid partial signature from the other party")]
    InvalidPartialSignature,
    /// `sign` was called twice on one session.
    #[error("this signing session's nonce was already used")]
    NonceAlreadyUsed,
    /// Tweaking or signing failed.
    #[error("musig2 signing failed: {0}")]
    Signing(String),
}

fn point(pk: &PublicKey) -> Result<Point, MusigError> {
    keyagg::point(pk).ok_or(MusigError::InvalidKey)
}

fn scalar(sk: &SecretKey) -> Result<Scalar, MusigError> {
    Scalar::from_slice(&sk.secret_bytes()).map_err(|_| MusigError::InvalidKey)
}

/// The key aggregation context of `htlc` with its BIP341 taproot tweak applied: signing with it
/// yields signatures valid for the HTLC's output key.
pub fn tweaked_context(htlc: &TaprootHtlc) -> Result<KeyAggContext, MusigError> {
    let ctx = keyagg::context(&htlc.server_key, &htlc.client_key).map_err(MusigError::Signing)?;
    let root = htlc
        .merkle_root()
        .ok_or_else(|| MusigError::Signing("HTLC has no script tree".into()))?;
    ctx.with_taproot_tweak(&root)
        .map_err(|e| MusigError::Signing(e.to_string()))
}

/// One party's side of a two-party MuSig2 signature over one message (a key-spend sighash).
pub struct Signer {
    ctx: KeyAggContext,
    seckey: Scalar,
    their_pubkey: Point,
    message: [u8; 32],
    secnonce: Option<SecNonce>,
    pubnonce: PubNonce,
}

impl Signer {
    /// Starts a session: `our_secret` must be the server's or the client's key of `htlc`;
    /// `session_id` is mixed into the nonce (e.g. swap id and attempt counter).
    pub fn new(
        htlc: &TaprootHtlc,
        our_secret: &SecretKey,
        message: [u8; 32],
        session_id: &[u8],
    ) -> Result<Signer, MusigError> {
        use bitcoin::secp256k1::rand::RngCore;
        let ctx = tweaked_context(htlc)?;
        let our_pub = PublicKey::from_secret_key(&bitcoin::secp256k1::Secp256k1::signing_only(), our_secret);
        let their_pub = if our_pub == htlc.server_key {
            htlc.client_key
        } else if our_pub == htlc.client_key {
            htlc.server_key
        } else {
            return Err(MusigError::NotParticipant);
        };
        let seckey = scalar(our_secret)?;
        let mut seed = [0u8; 32];
        bitcoin::secp256k1::rand::rngs::OsRng.fill_bytes(&mut seed);
        let agg: Point = ctx.aggregated_pubkey();
        let secnonce = SecNonceBuilder::from_seckey(seed, seckey)
            .with_aggregated_pubkey(agg)
            .with_message(&message)
            .with_extra_input(&session_id)
            .build();
        let pubnonce = secnonce.public_nonce();
        Ok(Signer {
            ctx,
            seckey,
            their_pubkey: point(&their_pub)?,
            message,
            secnonce: Some(secnonce),
            pubnonce,
        })
    }

    /// Our public nonce, to send to the other party.
    pub fn public_nonce(&self) -> PubNonceBytes {
        self.pubnonce.to_bytes()
    }

    fn agg_nonce(&self, their_nonce: &PubNonceBytes) -> Result<(AggNonce, PubNonce), MusigError> {
        let theirs = PubNonce::from_bytes(their_nonce).map_err(|_| MusigError::InvalidNonce)?;
        Ok((AggNonce::sum([self.pubnonce.clone(), theirs.clone()]), theirs))
    }

    /// Our partial signature, given the other party's public nonce. Consumes the secret nonce.
    pub fn sign(&mut self, their_nonce: &PubNonceBytes) -> Result<PartialSigBytes, MusigError> {
        let (agg, _) = self.agg_nonce(their_nonce)?;
        let secnonce = self.secnonce.take().ok_or(MusigError::NonceAlreadyUsed)?;
        let partial: MaybeScalar = musig2::sign_partial(&self.ctx, self.seckey, secnonce, &agg, self.message)
            .map_err(|e| MusigError::Signing(e.to_string()))?;
        Ok(partial.serialize())
    }

    /// Checks the other party's partial signature.
    pub fn verify_theirs(
        &self,
        their_nonce: &PubNonceBytes,
        their_partial: &PartialSigBytes,
    ) -> Result<(), MusigError> {
        let (agg, theirs) = self.agg_nonce(their_nonce)?;
        let partial = MaybeScalar::from_slice(their_partial).map_err(|_| MusigError::InvalidPartialSignature)?;
        musig2::verify_partial(&self.ctx, partial, &agg, self.their_pubkey, &theirs, self.message)
            .map_err(|_| MusigError::InvalidPartialSignature)
    }

    /// Verifies the other party's partial signature and aggregates both into the final
    /// BIP340 signature for the HTLC's output key.
    pub fn aggregate(
        &self,
        their_nonce: &PubNonceBytes,
        ours: &PartialSigBytes,
        theirs: &PartialSigBytes,
    ) -> Result<schnorr::Signature, MusigError> {
        self.verify_theirs(their_nonce, theirs)?;
        let (agg, _) = self.agg_nonce(their_nonce)?;
        let a = MaybeScalar::from_slice(ours).map_err(|_| MusigError::Signing("bad own partial".into()))?;
        let b = MaybeScalar::from_slice(theirs).map_err(|_| MusigError::InvalidPartialSignature)?;
        let sig: LiftedSignature = musig2::aggregate_partial_signatures(&self.ctx, &agg, [a, b], self.message)
            .map_err(|e| MusigError::Signing(e.to_string()))?;
        schnorr::Signature::from_slice(&sig.to_bytes()).map_err(|e| MusigError::Signing(e.to_string()))
    }
}

/// The responder's whole part in one call (what a server does when asked to co-sign): a fresh
/// nonce, its partial signature over `message` given the requester's nonce. Returns our public
/// nonce and partial signature.
pub fn cosign(
    htlc: &TaprootHtlc,
    our_secret: &SecretKey,
    message: [u8; 32],
    session_id: &[u8],
    their_nonce: &PubNonceBytes,
) -> Result<(PubNonceBytes, PartialSigBytes), MusigError> {
    let mut signer = Signer::new(htlc, our_secret, message, session_id)?;
    let partial = signer.sign(their_nonce)?;
    Ok((signer.public_nonce(), partial))
}
