//! MuSig2 key aggregation (BIP327 `KeyAgg`) of an HTLC's two keys: what building an HTLC
//! needs of MuSig2 — its taproot internal key — without the signing sessions of `musig`,
//! which themselves work on built HTLCs. Kept apart so that the HTLC's construction
//! (`htlc`) and MuSig2 signing (`musig`) do not depend on each other both ways. Keys cross from
//! `bitcoin`'s secp256k1 types to the `musig2` crate's here as bytes, as in `musig`.

use bitcoin::secp256k1::{PublicKey, XOnlyPublicKey};
use musig2::secp::Point;
use musig2::KeyAggContext;

/// `pk` as the `musig2` crate's point; `None` when it is not on the curve (never for a valid
/// `PublicKey`).
pub(crate) fn point(pk: &PublicKey) -> Option<Point> {
    Point::from_slice(&pk.serialize()).ok()
}

/// The key aggregation context of (server, client), in that order (no sorting).
pub(crate) fn context(server: &PublicKey, client: &PublicKey) -> Result<KeyAggContext, String> {
    let pts = [
        point(server).ok_or("the server's key is not a curve point")?,
        point(client).ok_or("the client's key is not a curve point")?,
    ];
    KeyAggContext::new(pts).map_err(|e| e.to_string())
}

/// The untweaked aggregate of (server, client), in that order (no sorting), as an x-only key:
/// the taproot internal key of an Eddy P2TR HTLC.
pub fn aggregate_untweaked(server: &PublicKey, client: &PublicKey) -> Result<XOnlyPublicKey, String> {
    let agg: Point = context(server, client)?.aggregated_pubkey_untweaked();
    XOnlyPublicKey::from_slice(&agg.serialize_xonly()).map_err(|e| e.to_string())
}
