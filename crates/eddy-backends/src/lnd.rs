//! [`LightningNode`] over LND's gRPC API (fedimint-tonic-lnd): TLS certificate + macaroon from
//! paths or an `lndconnect://` URI.
//!
//! Calls used: lnrpc GetInfo, ListChannels, AddInvoice, DecodePayReq, NewAddress,
//! WalletBalance; invoicesrpc AddHoldInvoice, SubscribeSingleInvoice, SettleInvoice,
//! CancelInvoice, LookupInvoiceV2; routerrpc SendPaymentV2, TrackPaymentV2; walletrpc
//! SendOutputs, EstimateFee.
//!
//! LND cannot be installed where Eddy is developed and tested: this client is tested against
//! `crate::lnd_emu`, a gRPC server built from the same LND proto definitions that serves these
//! calls from an LDK node with LND's documented state semantics. Where that emulation differs
//! from a real LND it is said there; the mapping here follows LND's documentation:
//! - hold invoices: `cltv_expiry` is honoured by LND, so the invoice carries the requested
//!   final CLTV delta; LND cancels an accepted hold invoice by itself when its HTLCs come
//!   within `HOLD_EXPIRY_DELTA` blocks of expiry (lnd `--holdexpirydelta`, default 12);
//! - payments: `SendPaymentV2` refuses a hash already paid or in flight (AlreadyExists), which
//!   is what makes paying idempotent; outcomes come from `TrackPaymentV2`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bitcoin::consensus::encode::deserialize;
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf, Transaction};
use eddy_core::types::{PaymentHash, Preimage};
use fedimint_tonic_lnd::invoicesrpc::lookup_invoice_msg::InvoiceRef;
use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc, signrpc, walletrpc, Client};
use tokio::sync::broadcast;
use tonic::{Code, Status};

use crate::lightning::{
    ChannelInfo, HeldHtlc, HoldInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnEvent,
    NodeInfo, PayParams, PaymentStatus, WalletBalance,
};

/// LND's default `--holdexpirydelta`: it cancels an accepted hold invoice when its HTLCs are
/// this close to expiry.
pub const HOLD_EXPIRY_DELTA: u32 = 12;

/// How to reach LND.
#[derive(Clone, Debug)]
pub struct LndConfig {
    /// `https://host:port` of LND's gRPC interface.
    pub address: String,
    /// LND's `tls.cert` (PEM).
    pub cert_path: PathBuf,
    /// A macaroon with the needed permissions (e.g. `admin.macaroon`).
    pub macaroon_path: PathBuf,
}

impl LndConfig {
    /// Parses `lndconnect://host:port?cert=<base64url DER>&macaroon=<base64url>` and writes the
    /// certificate (PEM) and macaroon into `dir` (0600), returning a config using them.
    pub fn from_lndconnect(uri: &str, dir: &Path) -> Result<LndConfig, LnError> {
        let bad = |m: &str| LnError::Refused(format!("lndconnect URI: {m}"));
        let rest = uri
            .strip_prefix("lndconnect://")
            .ok_or_else(|| bad("must start with lndconnect://"))?;
        let (hostport, query) = rest.split_once('?').ok_or_else(|| bad("missing cert and macaroon"))?;
        let mut cert = None;
        let mut macaroon = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').ok_or_else(|| bad("malformed query"))?;
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| bad("not base64url"))?;
            match k {
                "cert" => cert = Some(decoded),
                "macaroon" => macaroon = Some(decoded),
                _ => {}
            }
        }
        let cert = cert.ok_or_else(|| bad("missing cert"))?;
        let macaroon = macaroon.ok_or_else(|| bad("missing macaroon"))?;
        std::fs::create_dir_all(dir).map_err(|e| LnError::Unavailable(e.to_string()))?;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD
                .encode(&cert)
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let cert_path = dir.join("lnd-tls.cert");
        let macaroon_path = dir.join("lnd.macaroon");
        write_private(&cert_path, pem.as_bytes())?;
        write_private(&macaroon_path, &macaroon)?;
        Ok(LndConfig {
            address: format!("https://{hostport}"),
            cert_path,
            macaroon_path,
        })
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), LnError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| LnError::Unavailable(e.to_string()))?;
    f.write_all(data).map_err(|e| LnError::Unavailable(e.to_string()))
}

/// An LND node.
pub struct LndNode {
    client: Client,
    network: Network,
    events: broadcast::Sender<LnEvent>,
}

fn status_err(s: Status) -> LnError {
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal | Code::Cancelled => {
            LnError::Unavailable(format!("{:?}: {}", s.code(), s.message()))
        }
        Code::Unimplemented => LnError::Unsupported(s.message().to_string()),
        _ => LnError::Refused(format!("{:?}: {}", s.code(), s.message())),
    }
}

fn network_from_lnd(name: &str) -> Option<Network> {
    match name {
        "mainnet" => Some(Network::Bitcoin),
        "testnet" | "testnet3" => Some(Network::Testnet),
        "testnet4" => Some(Network::Testnet4),
        "signet" => Some(Network::Signet),
        "regtest" | "simnet" => Some(Network::Regtest),
        _ => None,
    }
}

fn invoice_state(inv: &lnrpc::Invoice) -> HoldInvoiceState {
    match inv.state {
        1 => HoldInvoiceState::Settled {
            amount_msat: inv.amt_paid_msat.max(0) as u64,
        },
        2 => HoldInvoiceState::Canceled,
        3 => {
            let htlcs: Vec<HeldHtlc> = inv
                .htlcs
                .iter()
                .filter(|h| h.state == 0)
                .map(|h| {
                    let expiry = h.expiry_height.max(0) as u32;
                    HeldHtlc {
                        amount_msat: h.amt_msat,
                        expiry_height: expiry,
                        settle_deadline: expiry.saturating_sub(HOLD_EXPIRY_DELTA),
                    }
                })
                .collect();
            HoldInvoiceState::Accepted {
                amount_msat: htlcs.iter().map(|h| h.amount_msat).sum(),
                htlcs,
            }
        }
        _ => HoldInvoiceState::Open,
    }
}

fn payment_status(p: &lnrpc::Payment) -> PaymentStatus {
    match p.status {
        2 => match Preimage::from_hex(&p.payment_preimage) {
            Ok(preimage) => PaymentStatus::Succeeded {
                preimage,
                fee_msat: p.fee_msat.max(0) as u64,
            },
            Err(_) => PaymentStatus::InFlight,
        },
        3 => PaymentStatus::Failed {
            reason: lnrpc::PaymentFailureReason::try_from(p.failure_reason)
                .map(|r| r.as_str_name().to_string())
                .unwrap_or_else(|_| format!("failure {}", p.failure_reason)),
        },
        _ => PaymentStatus::InFlight,
    }
}

impl LndNode {
    /// Connects (retrying with backoff while LND is unreachable, up to ~30 s) and learns the
    /// network from GetInfo.
    pub async fn connect(config: &LndConfig) -> Result<LndNode, LnError> {
        let mut delay = Duration::from_millis(100);
        let mut last = LnError::Unavailable("not tried".into());
        for _ in 0..9 {
            match Self::try_connect(config).await {
                Ok(n) => return Ok(n),
                Err(e @ LnError::Unavailable(_)) => last = e,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
        Err(last)
    }

    async fn try_connect(config: &LndConfig) -> Result<LndNode, LnError> {
        let mut client = fedimint_tonic_lnd::connect(
            config.address.clone(),
            config.cert_path.clone(),
            config.macaroon_path.clone(),
        )
        .await
        .map_err(|e| LnError::Unavailable(e.to_string()))?;
        let info = client
            .lightning()
            .get_info(lnrpc::GetInfoRequest {})
            .await
            .map_err(status_err)?
            .into_inner();
        let network = info
            .chains
            .first()
            .and_then(|c| network_from_lnd(&c.network))
            .ok_or_else(|| LnError::Refused("GetInfo: unknown network".into()))?;
        let (events, _) = broadcast::channel(1024);
        Ok(LndNode {
            client,
            network,
            events,
        })
    }

    fn c(&self) -> Client {
        self.client.clone()
    }

    /// Forwards a hold invoice's state changes to the event stream.
    fn watch_invoice(&self, hash: PaymentHash) {
        let mut client = self.c();
        let events = self.events.clone();
        tokio::spawn(async move {
            let Ok(resp) = client
                .invoices()
                .subscribe_single_invoice(invoicesrpc::SubscribeSingleInvoiceRequest {
                    r_hash: hash.0.to_vec(),
                })
                .await
            else {
                return;
            };
            let mut stream = resp.into_inner();
            while let Ok(Some(inv)) = stream.message().await {
                let state = invoice_state(&inv);
                let done = matches!(state, HoldInvoiceState::Settled { .. } | HoldInvoiceState::Canceled);
                let _ = events.send(LnEvent::Invoice {
                    payment_hash: hash,
                    state,
                });
                if done {
                    return;
                }
            }
        });
    }

    /// Forwards a payment's updates to the event stream.
    fn watch_payment(&self, stream: tonic::Streaming<lnrpc::Payment>, hash: PaymentHash) {
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            while let Ok(Some(p)) = stream.message().await {
                let status = payment_status(&p);
                let done = !matches!(status, PaymentStatus::InFlight);
                let _ = events.send(LnEvent::Payment {
                    payment_hash: hash,
                    status,
                });
                if done {
                    return;
                }
            }
        });
    }

    /// The final CLTV delta an invoice carries, as LND decodes it.
    async fn final_cltv_delta(&self, bolt11: &str) -> Result<u64, LnError> {
        let decoded = self
            .c()
            .lightning()
            .decode_pay_req(lnrpc::PayReqString {
                pay_req: bolt11.to_string(),
            })
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(decoded.cltv_expiry.max(0) as u64)
    }

    /// The fee rate LND's wallet estimates for `conf_target` blocks.
    pub async fn estimate_fee(&self, conf_target: i32) -> Result<FeeRate, LnError> {
        let r = self
            .c()
            .wallet()
            .estimate_fee(walletrpc::EstimateFeeRequest { conf_target })
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(FeeRate::from_sat_per_kwu(r.sat_per_kw.max(0) as u64))
    }
}

#[async_trait]
impl LightningNode for LndNode {
    async fn info(&self) -> Result<NodeInfo, LnError> {
        let info = self
            .c()
            .lightning()
            .get_info(lnrpc::GetInfoRequest {})
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(NodeInfo {
            pubkey: bitcoin::secp256k1::PublicKey::from_str(&info.identity_pubkey)
                .map_err(|e| LnError::Refused(format!("GetInfo pubkey: {e}")))?,
            network: self.network,
            block_height: info.block_height,
        })
    }

    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<HoldInvoice, LnError> {
        let resp = self
            .c()
            .invoices()
            .add_hold_invoice(invoicesrpc::AddHoldInvoiceRequest {
                memo: req.description.clone(),
                hash: req.payment_hash.0.to_vec(),
                value_msat: req.amount_msat as i64,
                expiry: i64::from(req.expiry_secs),
                cltv_expiry: u64::from(req.min_final_cltv_delta),
                ..Default::default()
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let min_final_cltv_delta = self.final_cltv_delta(&resp.payment_request).await?;
        self.watch_invoice(req.payment_hash);
        Ok(HoldInvoice {
            bolt11: resp.payment_request,
            min_final_cltv_delta,
        })
    }

    async fn hold_invoice_state(&self, payment_hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        match self
            .c()
            .invoices()
            .lookup_invoice_v2(invoicesrpc::LookupInvoiceMsg {
                invoice_ref: Some(InvoiceRef::PaymentHash(payment_hash.0.to_vec())),
                lookup_modifier: 0,
            })
            .await
        {
            Ok(inv) => Ok(invoice_state(&inv.into_inner())),
            Err(s) if s.code() == Code::NotFound => Err(LnError::Unknown(*payment_hash)),
            Err(s) => Err(status_err(s)),
        }
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        let hash = preimage.payment_hash();
        match self.hold_invoice_state(&hash).await? {
            HoldInvoiceState::Settled { .. } => return Ok(()),
            HoldInvoiceState::Canceled => return Err(LnError::Refused("invoice is canceled".into())),
            HoldInvoiceState::Open => return Err(LnError::Refused("invoice is not paid".into())),
            HoldInvoiceState::Accepted { .. } => {}
        }
        self.c()
            .invoices()
            .settle_invoice(invoicesrpc::SettleInvoiceMsg {
                preimage: preimage.expose_bytes().to_vec(),
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn cancel_hold_invoice(&self, payment_hash: &PaymentHash) -> Result<(), LnError> {
        match self.hold_invoice_state(payment_hash).await? {
            HoldInvoiceState::Canceled => return Ok(()),
            HoldInvoiceState::Settled { .. } => return Err(LnError::Refused("invoice is settled".into())),
            _ => {}
        }
        self.c()
            .invoices()
            .cancel_invoice(invoicesrpc::CancelInvoiceMsg {
                payment_hash: payment_hash.0.to_vec(),
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn create_invoice(
        &self,
        preimage: &Preimage,
        amount_msat: u64,
        expiry_secs: u32,
        description: &str,
    ) -> Result<HoldInvoice, LnError> {
        let resp = self
            .c()
            .lightning()
            .add_invoice(lnrpc::Invoice {
                memo: description.to_string(),
                r_preimage: preimage.expose_bytes().to_vec(),
                value_msat: amount_msat as i64,
                expiry: i64::from(expiry_secs),
                ..Default::default()
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let min_final_cltv_delta = self.final_cltv_delta(&resp.payment_request).await?;
        self.watch_invoice(preimage.payment_hash());
        Ok(HoldInvoice {
            bolt11: resp.payment_request,
            min_final_cltv_delta,
        })
    }

    async fn pay_invoice(&self, bolt11: &str, params: &PayParams) -> Result<PaymentHash, LnError> {
        // LND reads a `cltv_limit` of 0 as "no limit": a caller that asked for a budget of 0
        // blocks must get a refusal, never an unbounded payment. (`None` is the node's default,
        // LND's own maximum; the loop-in server always sends a budget of at least 1.)
        if params.max_total_cltv_delta == Some(0) {
            return Err(LnError::Refused(
                "a CLTV budget of 0 blocks: nothing sent (LND would read 0 as no limit)".into(),
            ));
        }
        let decoded = self
            .c()
            .lightning()
            .decode_pay_req(lnrpc::PayReqString {
                pay_req: bolt11.trim().to_string(),
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let hash = PaymentHash::from_str(&decoded.payment_hash)
            .map_err(|_| LnError::Refused("DecodePayReq: bad payment hash".into()))?;
        match self.payment_status(&hash).await? {
            PaymentStatus::InFlight | PaymentStatus::Succeeded { .. } => return Ok(hash),
            PaymentStatus::Unknown | PaymentStatus::Failed { .. } => {}
        }
        let resp = self
            .c()
            .router()
            .send_payment_v2(routerrpc::SendPaymentRequest {
                payment_request: bolt11.trim().to_string(),
                fee_limit_msat: params.max_fee_msat as i64,
                timeout_seconds: params.timeout.as_secs().clamp(1, i32::MAX as u64) as i32,
                outgoing_chan_ids: params.outgoing_channel.into_iter().collect(),
                // Checked above: `Some(d)` is at least 1 here.
                cltv_limit: params
                    .max_total_cltv_delta
                    .map_or(0, |d| i32::try_from(d).unwrap_or(i32::MAX)),
                last_hop_pubkey: params.last_hop.map(|k| k.serialize().to_vec()).unwrap_or_default(),
                ..Default::default()
            })
            .await;
        match resp {
            Ok(stream) => {
                self.watch_payment(stream.into_inner(), hash);
                Ok(hash)
            }
            // LND refuses a hash that is in flight or paid: the payment exists, which is what
            // the caller wanted.
            Err(s) if s.code() == Code::AlreadyExists => Ok(hash),
            Err(s) => Err(status_err(s)),
        }
    }

    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        let resp = self
            .c()
            .router()
            .track_payment_v2(routerrpc::TrackPaymentRequest {
                payment_hash: payment_hash.0.to_vec(),
                no_inflight_updates: false,
            })
            .await;
        let mut stream = match resp {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(PaymentStatus::Unknown),
            Err(s) => return Err(status_err(s)),
        };
        match stream.message().await {
            Ok(Some(p)) => Ok(payment_status(&p)),
            Ok(None) => Ok(PaymentStatus::Unknown),
            Err(s) if s.code() == Code::NotFound => Ok(PaymentStatus::Unknown),
            Err(s) => Err(status_err(s)),
        }
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, LnError> {
        let resp = self
            .c()
            .lightning()
            .list_channels(lnrpc::ListChannelsRequest::default())
            .await
            .map_err(status_err)?
            .into_inner();
        resp.channels
            .into_iter()
            .map(|c| {
                Ok(ChannelInfo {
                    short_channel_id: (c.chan_id != 0).then_some(c.chan_id),
                    peer: bitcoin::secp256k1::PublicKey::from_str(&c.remote_pubkey)
                        .map_err(|e| LnError::Refused(format!("ListChannels pubkey: {e}")))?,
                    capacity: Amount::from_sat(c.capacity.max(0) as u64),
                    local_msat: c.local_balance.max(0) as u64 * 1000,
                    remote_msat: c.remote_balance.max(0) as u64 * 1000,
                    local_reserve: Amount::ZERO,
                    remote_reserve: Amount::ZERO,
                    private: c.private,
                    usable: c.active,
                })
            })
            .collect()
    }

    async fn new_address(&self) -> Result<Address, LnError> {
        let resp = self
            .c()
            .lightning()
            .new_address(lnrpc::NewAddressRequest {
                r#type: lnrpc::AddressType::TaprootPubkey as i32,
                account: String::new(),
            })
            .await
            .map_err(status_err)?
            .into_inner();
        Address::from_str(&resp.address)
            .ok()
            .and_then(|a| a.require_network(self.network).ok())
            .ok_or_else(|| {
                LnError::Refused(format!(
                    "NewAddress: {} is not a {} address",
                    resp.address, self.network
                ))
            })
    }

    async fn wallet_balance(&self) -> Result<WalletBalance, LnError> {
        let b = self
            .c()
            .lightning()
            .wallet_balance(lnrpc::WalletBalanceRequest::default())
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(WalletBalance {
            spendable: Amount::from_sat(b.confirmed_balance.max(0) as u64),
            total: Amount::from_sat(b.total_balance.max(0) as u64),
        })
    }

    async fn send_outputs(&self, outputs: &[(ScriptBuf, Amount)], fee_rate: FeeRate) -> Result<Transaction, LnError> {
        let resp = self
            .c()
            .wallet()
            .send_outputs(walletrpc::SendOutputsRequest {
                sat_per_kw: fee_rate.to_sat_per_kwu() as i64,
                outputs: outputs
                    .iter()
                    .map(|(spk, v)| signrpc::TxOut {
                        value: v.to_sat() as i64,
                        pk_script: spk.to_bytes(),
                    })
                    .collect(),
                min_confs: 1,
                spend_unconfirmed: false,
                ..Default::default()
            })
            .await
            .map_err(status_err)?
            .into_inner();
        deserialize(&resp.raw_tx).map_err(|e| LnError::Refused(format!("SendOutputs: bad raw tx: {e}")))
    }

    fn subscribe(&self) -> broadcast::Receiver<LnEvent> {
        self.events.subscribe()
    }

    fn restricts_last_hop(&self) -> bool {
        true
    }

    fn settle_deadline_delta(&self) -> u32 {
        HOLD_EXPIRY_DELTA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lndconnect_uri_is_parsed_and_refused_when_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let uri = format!(
            "lndconnect://10.0.0.1:10009?cert={}&macaroon={}",
            url.encode([0x30u8, 0x82, 0x01]),
            url.encode([0xaau8; 4])
        );
        let c = LndConfig::from_lndconnect(&uri, dir.path()).expect("parsed");
        assert_eq!(c.address, "https://10.0.0.1:10009");
        assert_eq!(std::fs::read(&c.macaroon_path).expect("macaroon"), vec![0xaa; 4]);
        let pem = std::fs::read_to_string(&c.cert_path).expect("cert");
        assert_eq!(pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        for bad in [
            "https://x:1?cert=AA&macaroon=AA",
            "lndconnect://x:1",
            "lndconnect://x:1?cert=AA",
            "lndconnect://x:1?cert=!!&macaroon=AA",
        ] {
            assert!(
                matches!(LndConfig::from_lndconnect(bad, dir.path()), Err(LnError::Refused(_))),
                "{bad}"
            );
        }
    }
}
