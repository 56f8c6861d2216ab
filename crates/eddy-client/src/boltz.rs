//! [`crate::SwapServerApi`] over Boltz API v2: Eddy's loop-out as a Boltz reverse swap and its
//! loop-in as a submarine swap paying the client's own invoice, against any Boltz-compatible
//! provider (an Eddy server's `/v2` front door among them). The engines run unchanged and make
//! every check they make against an Eddy server — the HTLC and its address rebuilt from the
//! client's own data, the invoice's hash and amount, the fee against the client's limits, the
//! timeout inside the client's window (an upper bound boltz-client does not have),
//! confirmations before the preimage is revealed, script-path fallbacks and refunds. This
//! adapter adds the checks Boltz's shapes need: the answer's amounts are the ones asked
//! (`onchainAmount`, `expectedAmount`), amounts are computed exactly from the pair's terms,
//! and a swap id the provider made up is used in a URL only if it is a plain token.
//!
//! Boltz names swaps by its own ids: each is kept in the client's store (`boltz:<payment
//! hash>`) before the engine stores the swap, so every later call finds it after a restart.

use std::sync::Arc;

use async_trait::async_trait;
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use eddy_core::api::{ApiCallError, Quote, SwapState, Terms};
use eddy_core::boltz::submarine::SubmarinePair;
use eddy_core::boltz::{Charges, ReversePair, ASSET};
use eddy_core::musig::{PartialSigBytes, PubNonceBytes, PUB_NONCE_LEN};
use eddy_core::types::{Preimage, SwapId};
use eddy_core::validate::{LoopInCreate, LoopInOffer, LoopOutCreate, LoopOutOffer};
use eddy_store::SwapStore;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::HttpSwapServer;
use crate::{ClaimToSign, LoopInApi, LoopOutApi};

/// The longest swap id this client puts in a URL.
const MAX_ID_CHARS: usize = 64;

/// A Boltz API v2 provider.
pub struct BoltzProvider {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn SwapStore>,
    network: Network,
}

/// `POST /v2/swap/reverse`'s answer, the fields the client uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReverseCreated {
    id: String,
    invoice: String,
    lockup_address: String,
    refund_public_key: PublicKey,
    timeout_block_height: u32,
    onchain_amount: Option<u64>,
}

/// `POST /v2/swap/submarine`'s answer, the fields the client uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubmarineCreated {
    id: String,
    address: String,
    claim_public_key: PublicKey,
    timeout_block_height: u32,
    expected_amount: u64,
}

/// `GET /v2/swap/submarine/{id}/claim`'s answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimDetails {
    preimage: String,
    pub_nonce: String,
    transaction_hash: String,
}

/// A co-signature's answer (`pubNonce`, `partialSignature`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cosigned {
    pub_nonce: String,
    partial_signature: String,
}

/// `GET /v2/swap/{id}`'s answer.
#[derive(Deserialize)]
struct Status {
    status: String,
}

fn unreadable(what: &str) -> ApiCallError {
    ApiCallError::Unreadable(format!("not {what}"))
}

/// The meta key of swap `id`'s Boltz id.
fn id_key(id: &SwapId) -> String {
    format!("boltz:{id}")
}

/// Whether `id` is a plain token (letters, digits, `-`, `_`; at most [`MAX_ID_CHARS`]): what
/// the provider chose goes into this client's URLs and store only so.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Eddy state a Boltz status stands for, as the loop-in engine reads it: paying while the
/// provider has the lockup and has not paid, claiming once it has, refundable when it failed.
pub fn submarine_state(status: &str) -> SwapState {
    match status {
        "swap.created" | "invoice.set" => SwapState::Created,
        "transaction.mempool" | "transaction.confirmed" | "invoice.pending" => SwapState::Paying,
        "invoice.paid" | "transaction.claim.pending" => SwapState::Claiming,
        "transaction.claimed" => SwapState::Succeeded,
        "invoice.failedToPay" | "transaction.lockupFailed" => SwapState::Refundable,
        "swap.expired" => SwapState::Expired,
        "transaction.refunded" => SwapState::Refunded,
        _ => SwapState::Unknown,
    }
}

impl BoltzProvider {
    /// A provider at `base` (e.g. `https://provider.example/api`), its swap ids kept in
    /// `store`, its addresses and invoices checked against `network`.
    pub fn new(base: &str, store: Arc<dyn SwapStore>, network: Network) -> Result<BoltzProvider, String> {
        Ok(BoltzProvider {
            base: base.trim_end_matches('/').to_string(),
            http: crate::http::client()?,
            store,
            network,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiCallError> {
        HttpSwapServer::call(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ApiCallError> {
        HttpSwapServer::call(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// The BTC/BTC pair of `GET /v2/swap/{kind}`.
    async fn pair<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<T, ApiCallError> {
        let pairs: Value = self.get(&format!("/v2/swap/{kind}")).await?;
        let pair = pairs
            .get(ASSET)
            .and_then(|p| p.get(ASSET))
            .ok_or_else(|| ApiCallError::Refused(format!("the provider offers no {ASSET}/{ASSET} {kind} pair")))?;
        serde_json::from_value(pair.clone()).map_err(|e| ApiCallError::Unreadable(format!("the {kind} pair: {e}")))
    }

    async fn reverse_pair(&self) -> Result<(ReversePair, Charges), ApiCallError> {
        let pair: ReversePair = self.pair("reverse").await?;
        let charges = Charges::of_pair(pair.fees.percentage, pair.fees.miner_fees.lockup)
            .filter(|_| pair.rate == 1)
            .ok_or_else(|| ApiCallError::Refused(format!("the reverse pair's terms are not exact: {pair:?}")))?;
        Ok((pair, charges))
    }

    async fn submarine_pair(&self) -> Result<(SubmarinePair, Charges), ApiCallError> {
        let pair: SubmarinePair = self.pair("submarine").await?;
        let charges = Charges::of_pair(pair.fees.percentage, pair.fees.miner_fees)
            .filter(|_| pair.rate == 1)
            .ok_or_else(|| ApiCallError::Refused(format!("the submarine pair's terms are not exact: {pair:?}")))?;
        Ok((pair, charges))
    }

    /// The invoice amount a submarine swap of `amount` on chain pays, exactly.
    fn submarine_invoice(charges: &Charges, pair: &SubmarinePair, amount: Amount) -> Result<u64, ApiCallError> {
        let invoice = charges.submarine_invoice_for(amount.to_sat()).map_err(|(below, above)| {
            ApiCallError::Refused(format!(
                "no invoice makes the provider ask exactly {} sat (its fee rounds past it): {below} or {above} sat can be had",
                amount.to_sat()
            ))
        })?;
        if invoice < pair.limits.minimal || invoice > pair.limits.maximal {
            return Err(ApiCallError::Refused(format!(
                "an invoice of {invoice} sat is outside the provider's limits {}..={} sat",
                pair.limits.minimal, pair.limits.maximal
            )));
        }
        Ok(invoice)
    }

    /// Swap `id`'s Boltz id, as stored at its creation.
    async fn boltz_id(&self, id: &SwapId) -> Result<String, ApiCallError> {
        self.store
            .get_meta(&id_key(id))
            .await
            .map_err(|e| ApiCallError::Failed(format!("reading the swap's Boltz id: {e}")))?
            .ok_or_else(|| ApiCallError::Failed(format!("no Boltz id is stored for swap {id}")))
    }

    /// Keeps the provider's id of swap `id` (a plain token, else the answer is refused).
    async fn keep_id(&self, id: &SwapId, boltz_id: &str) -> Result<(), ApiCallError> {
        if !plain_id(boltz_id) {
            return Err(ApiCallError::Refused(format!(
                "the provider's swap id {:?} is not a plain token",
                boltz_id.chars().take(MAX_ID_CHARS).collect::<String>()
            )));
        }
        self.store
            .set_meta(&id_key(id), boltz_id)
            .await
            .map_err(|e| ApiCallError::Failed(format!("storing the swap's Boltz id: {e}")))
    }
}

#[async_trait]
impl LoopOutApi for BoltzProvider {
    /// The reverse pair as Eddy terms: amounts are on-chain amounts (the pair's invoice limits
    /// less its fees); no prepay; the timeout is not announced by Boltz pairs (0 here), and is
    /// checked at each swap.
    async fn terms(&self) -> Result<Terms, ApiCallError> {
        let (pair, charges) = self.reverse_pair().await?;
        Ok(Terms {
            network: self.network.to_core_arg().to_string(),
            min_amount_sat: charges.reverse_onchain(pair.limits.minimal),
            max_amount_sat: charges.reverse_onchain(pair.limits.maximal),
            base_fee_sat: charges.base,
            fee_ppm: charges.ppm,
            prepay_sat: 0,
            expiry_delta: 0,
        })
    }

    async fn quote_loop_out(&self, amount: Amount) -> Result<Quote, ApiCallError> {
        let (pair, charges) = self.reverse_pair().await?;
        let invoice = charges
            .reverse_invoice_for(amount.to_sat())
            .ok_or_else(|| ApiCallError::Refused("the provider's fee takes the whole amount".into()))?;
        if invoice < pair.limits.minimal || invoice > pair.limits.maximal {
            return Err(ApiCallError::Refused(format!(
                "{} sat on chain takes an invoice of {invoice} sat, outside the provider's limits {}..={} sat",
                amount.to_sat(),
                pair.limits.minimal,
                pair.limits.maximal
            )));
        }
        Ok(Quote {
            amount_sat: amount.to_sat(),
            swap_fee_sat: invoice - amount.to_sat(),
            prepay_sat: 0,
            swap_invoice_sat: invoice,
            expiry_delta: 0,
        })
    }

    async fn loop_out(&self, req: &LoopOutCreate) -> Result<LoopOutOffer, ApiCallError> {
        let (pair, charges) = self.reverse_pair().await?;
        let body = json!({
            "from": ASSET,
            "to": ASSET,
            "preimageHash": req.payment_hash.to_string(),
            "claimPublicKey": req.claim_key.serialize().to_lower_hex_string(),
            "onchainAmount": req.amount.to_sat(),
            "pairHash": pair.hash,
            "description": "eddy loop-out",
        });
        let created: ReverseCreated = self.post("/v2/swap/reverse", &body).await?;
        // Boltz answers the on-chain amount only when the invoice amount was asked; given, it
        // must be ours (the engine checks the HTLC's value on chain either way).
        if created.onchain_amount.is_some_and(|a| a != req.amount.to_sat()) {
            return Err(ApiCallError::Refused(format!(
                "the provider answered an on-chain amount of {:?} sat, {} sat was asked",
                created.onchain_amount,
                req.amount.to_sat()
            )));
        }
        // The invoice asks what the pair announced, not merely something under our fee cap:
        // a provider showing one price and charging another is refused.
        let asked = eddy_core::validate::decode_invoice("swap", &created.invoice, self.network, 0, 0)
            .map_err(|e| ApiCallError::Refused(e.to_string()))?
            .amount_msat
            .map(|m| m.0);
        let priced = charges
            .reverse_invoice_for(req.amount.to_sat())
            .map(|i| i.saturating_mul(1000));
        if asked.is_none() || asked != priced {
            return Err(ApiCallError::Refused(format!(
                "the invoice asks {asked:?} msat, the pair's price of {} sat on chain is {priced:?} msat",
                req.amount.to_sat()
            )));
        }
        self.keep_id(&SwapId::from(req.payment_hash), &created.id).await?;
        // The engine checks the rest: the invoice's hash, amount, network, expiry and final
        // CLTV, the fee against its limit, the timeout inside its window, and the address
        // rebuilt from its own data.
        Ok(LoopOutOffer {
            swap_invoice: created.invoice,
            prepay_invoice: None,
            server_key: created.refund_public_key,
            expiry: created.timeout_block_height,
            htlc_address: created.lockup_address,
        })
    }

    /// Boltz learns the preimage with the claim request: the preimage alone asks it to settle.
    async fn push_preimage(&self, preimage: &Preimage) -> Result<(), ApiCallError> {
        let id = self.boltz_id(&SwapId::from(preimage.payment_hash())).await?;
        let _: Value = self
            .post(
                &format!("/v2/swap/reverse/{id}/claim"),
                &json!({"preimage": preimage.expose_hex()}),
            )
            .await?;
        Ok(())
    }

    async fn cosign_claim(
        &self,
        id: &SwapId,
        preimage: &Preimage,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
        index: usize,
        _prevouts: &[bitcoin::TxOut],
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        // Claims through a Boltz provider are not batched (`batches_claims` is false): one
        // input, index 0.
        if index != 0 || tx.input.len() != 1 {
            return Err(ApiCallError::NotOffered("batched claims"));
        }
        let boltz_id = self.boltz_id(id).await?;
        let body = json!({
            "preimage": preimage.expose_hex(),
            "pubNonce": nonce.to_lower_hex_string(),
            "transaction": bitcoin::consensus::encode::serialize_hex(tx),
            "index": 0,
        });
        let answer: Cosigned = self.post(&format!("/v2/swap/reverse/{boltz_id}/claim"), &body).await?;
        crate::http::cosignature(&answer.pub_nonce, &answer.partial_signature)
    }
}

#[async_trait]
impl LoopInApi for BoltzProvider {
    /// The fee of a submarine swap locking exactly `amount`: `amount` less the one invoice
    /// amount for which the provider expects `amount` (refused when rounding skips it).
    async fn loop_in_fee(&self, amount: Amount) -> Result<Amount, ApiCallError> {
        let (pair, charges) = self.submarine_pair().await?;
        let invoice = Self::submarine_invoice(&charges, &pair, amount)?;
        Ok(amount - Amount::from_sat(invoice))
    }

    async fn loop_in(&self, req: &LoopInCreate) -> Result<LoopInOffer, ApiCallError> {
        if req.last_hop.is_some() {
            return Err(ApiCallError::NotOffered("a last hop (Boltz API v2 has none)"));
        }
        let facts = eddy_core::validate::decode_invoice("loop-in", &req.invoice, self.network, 0, 0)
            .map_err(|e| ApiCallError::Refused(e.to_string()))?;
        let invoice = facts.amount_msat.map_or(0, |m| m.0 / 1000);
        let (pair, charges) = self.submarine_pair().await?;
        // The amount is what the engine funds: the provider must ask exactly it.
        if Self::submarine_invoice(&charges, &pair, req.amount)? != invoice {
            return Err(ApiCallError::Refused(format!(
                "an invoice of {invoice} sat does not make a lockup of {} sat",
                req.amount.to_sat()
            )));
        }
        let body = json!({
            "from": ASSET,
            "to": ASSET,
            "invoice": req.invoice,
            "refundPublicKey": req.refund_key.serialize().to_lower_hex_string(),
            "pairHash": pair.hash,
        });
        let created: SubmarineCreated = self.post("/v2/swap/submarine", &body).await?;
        if created.expected_amount != req.amount.to_sat() {
            return Err(ApiCallError::Refused(format!(
                "the provider expects {} sat, the swap is for {} sat",
                created.expected_amount,
                req.amount.to_sat()
            )));
        }
        self.keep_id(&SwapId::from(facts.payment_hash), &created.id).await?;
        // The engine checks the rest: the fee against its limit and against this quote, the
        // timeout inside its window and the address rebuilt from its own data.
        Ok(LoopInOffer {
            server_key: created.claim_public_key,
            expiry: created.timeout_block_height,
            htlc_address: created.address,
            swap_fee: req.amount - Amount::from_sat(invoice),
        })
    }

    async fn swap_state(&self, id: &SwapId) -> Result<SwapState, ApiCallError> {
        let boltz_id = self.boltz_id(id).await?;
        let status: Status = self.get(&format!("/v2/swap/{boltz_id}")).await?;
        Ok(submarine_state(&status.status))
    }

    async fn claim_request(&self, id: &SwapId) -> Result<(PubNonceBytes, ClaimToSign), ApiCallError> {
        let boltz_id = self.boltz_id(id).await?;
        let d: ClaimDetails = self.get(&format!("/v2/swap/submarine/{boltz_id}/claim")).await?;
        let nonce = <[u8; PUB_NONCE_LEN]>::from_hex(&d.pub_nonce).map_err(|_| unreadable("a public nonce"))?;
        let preimage = <[u8; 32]>::from_hex(&d.preimage)
            .map(Preimage::from_bytes)
            .map_err(|_| unreadable("a preimage"))?;
        let sighash = <[u8; 32]>::from_hex(&d.transaction_hash).map_err(|_| unreadable("a sighash"))?;
        Ok((nonce, ClaimToSign::Sighash { preimage, sighash }))
    }

    async fn claim_cosign(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        partial: &PartialSigBytes,
    ) -> Result<(), ApiCallError> {
        let boltz_id = self.boltz_id(id).await?;
        let body = json!({
            "pubNonce": nonce.to_lower_hex_string(),
            "partialSignature": partial.to_lower_hex_string(),
        });
        let _: Value = self
            .post(&format!("/v2/swap/submarine/{boltz_id}/claim"), &body)
            .await?;
        Ok(())
    }

    async fn cosign_refund(
        &self,
        id: &SwapId,
        nonce: &PubNonceBytes,
        tx: &bitcoin::Transaction,
    ) -> Result<(PubNonceBytes, PartialSigBytes), ApiCallError> {
        let boltz_id = self.boltz_id(id).await?;
        let body = json!({
            "pubNonce": nonce.to_lower_hex_string(),
            "transaction": bitcoin::consensus::encode::serialize_hex(tx),
            "index": 0,
        });
        let answer: Cosigned = self
            .post(&format!("/v2/swap/submarine/{boltz_id}/refund"), &body)
            .await?;
        crate::http::cosignature(&answer.pub_nonce, &answer.partial_signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_used() {
        assert!(plain_id("aB3dE6gH9jK2"));
        assert!(plain_id("swap-1_2"));
        for bad in [
            "",
            "../v1/terms",
            "a b",
            "a?b=c",
            "a/b",
            "é",
            &"a".repeat(MAX_ID_CHARS + 1),
        ] {
            assert!(!plain_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn boltz_statuses_read_as_the_loop_in_engine_needs() {
        assert_eq!(submarine_state("invoice.set"), SwapState::Created);
        assert_eq!(submarine_state("transaction.confirmed"), SwapState::Paying);
        assert_eq!(submarine_state("transaction.claim.pending"), SwapState::Claiming);
        assert_eq!(submarine_state("invoice.failedToPay"), SwapState::Refundable);
        assert_eq!(submarine_state("transaction.lockupFailed"), SwapState::Refundable);
        assert_eq!(submarine_state("transaction.claimed"), SwapState::Succeeded);
        assert_eq!(submarine_state("something.new"), SwapState::Unknown);
    }
}
