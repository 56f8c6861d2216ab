//! Operating the embedded node, for its operator (issue 14): peers, channels, on-chain sends.
//! The swap engines never call these — they work through [`crate::LightningNode`] — but a node
//! nobody can fund, connect or open a channel on without writing Rust is not usable. Each call
//! maps one ldk-node operation and turns its error into an [`LnError`] that says what to do.

use std::str::FromStr;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, Amount, FeeRate, Txid};
use ldk_node::lightning::ln::msgs::SocketAddress;

use super::{blocking, LdkNode};
use crate::lightning::LnError;

/// An ldk-node error of an operator's call, as what it means to the caller: a refusal of this
/// request (422 on the APIs: change the request), or a failure of the node (503: retry, see the
/// node's log). `what` names the call.
fn node_error(what: &str, e: ldk_node::NodeError) -> LnError {
    use ldk_node::NodeError as E;
    match e {
        E::NotRunning
        | E::AlreadyRunning
        | E::PersistenceFailed
        | E::WalletOperationFailed
        | E::WalletOperationTimeout
        | E::OnchainTxSigningFailed
        | E::TxSyncFailed
        | E::TxSyncTimeout
        | E::FeerateEstimationUpdateFailed
        | E::FeerateEstimationUpdateTimeout
        | E::GossipUpdateFailed
        | E::GossipUpdateTimeout => {
            LnError::Unavailable(format!("{what}: the node failed ({e:?}); retry, or see its log"))
        }
        E::InsufficientFunds => LnError::Refused(format!(
            "{what}: the wallet cannot pay it and its fee; fund it (`eddy node address`) or ask for less"
        )),
        E::OnchainTxCreationFailed => LnError::Refused(format!(
            "{what}: no transaction could be built (too little left for the fee, or an amount below the dust limit)"
        )),
        E::ConnectionFailed => LnError::Refused(format!("{what}: the peer could not be reached")),
        other => LnError::Refused(format!("{what}: {other:?}")),
    }
}

/// One channel, as its operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminChannel {
    /// The node's own id for it (32 hex characters): set at opening and never changed — the
    /// handle `open` returns and `close` takes.
    pub id: String,
    /// The channel id (64 hex; a temporary one until the funding is negotiated). `close`
    /// takes it too.
    pub channel_id: String,
    /// Short channel id, once confirmed.
    pub short_channel_id: Option<u64>,
    /// The peer.
    pub peer: PublicKey,
    /// Capacity.
    pub capacity: Amount,
    /// What this node can send now, msat.
    pub outbound_msat: u64,
    /// What it can receive now, msat.
    pub inbound_msat: u64,
    /// The funding output, once known (`txid:vout`).
    pub funding: Option<String>,
    /// Confirmed and ready (both sides).
    pub ready: bool,
    /// Ready and the peer connected: it can route now.
    pub usable: bool,
    /// This node opened it.
    pub outbound: bool,
    /// Announced to the network (public).
    pub announced: bool,
}

/// What the operator sends on-chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendAmount {
    /// This much.
    Exactly(Amount),
    /// Everything spendable, less what ldk-node keeps for fee-bumping its anchor channels'
    /// closes while any channel is open.
    All,
}

/// Parses `PUBKEY@HOST:PORT`.
pub fn parse_peer(s: &str) -> Result<(PublicKey, String), LnError> {
    let (key, addr) = s
        .trim()
        .split_once('@')
        .ok_or_else(|| LnError::Refused(format!("{s:?} is not PUBKEY@HOST:PORT")))?;
    let key = PublicKey::from_str(key).map_err(|_| LnError::Refused(format!("{key:?} is not a node public key")))?;
    let parsed = SocketAddress::from_str(addr).map_err(|_| LnError::Refused(format!("{addr:?} is not HOST:PORT")))?;
    let port = match parsed {
        SocketAddress::TcpIpV4 { port, .. }
        | SocketAddress::TcpIpV6 { port, .. }
        | SocketAddress::OnionV3 { port, .. }
        | SocketAddress::Hostname { port, .. } => port,
        SocketAddress::OnionV2(_) => 0,
    };
    if port == 0 {
        return Err(LnError::Refused(format!("{addr:?} is not HOST:PORT (port 1 to 65535)")));
    }
    Ok((key, addr.to_string()))
}

impl LdkNode {
    /// The addresses the node listens on for peers.
    pub fn listening(&self) -> Vec<String> {
        self.shared
            .node
            .listening_addresses()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Connects to `peer` at `address` (`HOST:PORT`) and remembers it (reconnected after
    /// restarts). A peer that cannot be reached is refused (the request named it), not an
    /// outage of this node.
    pub async fn connect_peer(&self, peer: PublicKey, address: &str) -> Result<(), LnError> {
        let addr =
            SocketAddress::from_str(address).map_err(|_| LnError::Refused(format!("{address:?} is not HOST:PORT")))?;
        let s = self.shared.clone();
        blocking(move || {
            s.node
                .connect(peer, addr, true)
                .map_err(|e| node_error(&format!("connecting to {peer}"), e))
        })
        .await?
    }

    /// Opens an unannounced channel of `amount` to `peer` (at `address`, or where it is already
    /// connected), pushing `push_msat` to it. Returns the node's id for it (see
    /// [`AdminChannel::id`]).
    pub async fn open_channel(
        &self,
        peer: PublicKey,
        address: Option<&str>,
        amount: Amount,
        push_msat: u64,
    ) -> Result<String, LnError> {
        let s = self.shared.clone();
        let address = match address {
            Some(a) => SocketAddress::from_str(a).map_err(|_| LnError::Refused(format!("{a:?} is not HOST:PORT")))?,
            None => {
                let known = s.node.list_peers().into_iter().find(|p| p.node_id == peer);
                match known {
                    None => {
                        return Err(LnError::Refused(format!(
                            "not connected to {peer}: connect first (PUBKEY@HOST:PORT) or give its address"
                        )))
                    }
                    // The peer connected to this node: its address is the port it connected
                    // from, which ldk-node would remember for the channel and never reach again.
                    Some(p) if !p.is_persisted => {
                        return Err(LnError::Refused(format!(
                            "{peer} connected to this node from {} (an inbound connection: a temporary port): give the address it listens on, PUBKEY@HOST:PORT, so that this node can reconnect to it",
                            p.address
                        )))
                    }
                    Some(p) => p.address,
                }
            }
        };
        let spendable = s.node.list_balances().spendable_onchain_balance_sats;
        if amount.to_sat() > spendable {
            return Err(LnError::Refused(format!(
                "the wallet can spend {spendable} sat, less than the {} sat channel (and its fee): fund it first",
                amount.to_sat()
            )));
        }
        if push_msat > amount.to_sat().saturating_mul(1000) {
            return Err(LnError::Refused("the push is more than the channel".into()));
        }
        let push = (push_msat > 0).then_some(push_msat);
        let sats = amount.to_sat();
        let user_id = blocking(move || {
            s.node
                .open_channel(peer, address, sats, push, None)
                .map_err(|e| node_error("opening the channel", e))
        })
        .await??;
        Ok(format!("{:032x}", user_id.0))
    }

    /// Closes the channel `channel_id` (the node's id for it, or its channel id; hex):
    /// cooperatively, or by broadcasting this node's latest commitment (`force`: its funds come
    /// back after the to-self delay).
    pub async fn close_channel(&self, channel_id: &str, force: bool) -> Result<(), LnError> {
        let s = self.shared.clone();
        let wanted = channel_id.trim().to_ascii_lowercase();
        blocking(move || {
            let c = s
                .node
                .list_channels()
                .into_iter()
                .find(|c| c.channel_id.to_string() == wanted || format!("{:032x}", c.user_channel_id.0) == wanted)
                .ok_or_else(|| LnError::Refused(format!("no channel {wanted}")))?;
            if force {
                s.node
                    .force_close_channel(&c.user_channel_id, c.counterparty_node_id, None)
                    .map_err(|e| node_error("force-closing the channel", e))
            } else {
                s.node
                    .close_channel(&c.user_channel_id, c.counterparty_node_id)
                    .map_err(|e| node_error("closing the channel", e))
            }
        })
        .await?
    }

    /// Every channel, with the ids `close_channel` takes.
    pub async fn admin_channels(&self) -> Result<Vec<AdminChannel>, LnError> {
        let s = self.shared.clone();
        blocking(move || {
            s.node
                .list_channels()
                .into_iter()
                .map(|c| AdminChannel {
                    id: format!("{:032x}", c.user_channel_id.0),
                    channel_id: c.channel_id.to_string(),
                    short_channel_id: c.short_channel_id,
                    peer: c.counterparty_node_id,
                    capacity: Amount::from_sat(c.channel_value_sats),
                    outbound_msat: c.outbound_capacity_msat,
                    inbound_msat: c.inbound_capacity_msat,
                    funding: c.funding_txo.map(|o| o.to_string()),
                    ready: c.is_channel_ready,
                    usable: c.is_usable,
                    outbound: c.is_outbound,
                    announced: c.is_announced,
                })
                .collect()
        })
        .await
    }

    /// What the node's open channels would pay it if closed now, sat — without closed channels
    /// still awaiting confirmations (a cooperative close's output is already in the wallet's
    /// on-chain balance: LDK's own total would count it twice for six blocks).
    pub fn lightning_balance(&self) -> Amount {
        Amount::from_sat(
            self.shared
                .node
                .list_balances()
                .lightning_balances
                .iter()
                .map(|b| match b {
                    ldk_node::LightningBalance::ClaimableOnChannelClose { amount_satoshis, .. } => *amount_satoshis,
                    _ => 0,
                })
                .sum(),
        )
    }

    /// What closed channels still owe the node until their outputs confirm or are swept, sat
    /// (LDK's other balances: outputs awaiting confirmations or the to-self delay, HTLCs
    /// unresolved). A cooperative close's output may show here and on-chain at once.
    pub fn closing_balance(&self) -> Amount {
        let b = self.shared.node.list_balances();
        Amount::from_sat(b.total_lightning_balance_sats)
            .checked_sub(self.lightning_balance())
            .unwrap_or(Amount::ZERO)
    }

    /// Sends on-chain from the node's wallet to `address` (checked against the node's network)
    /// at `fee_rate` (default: ldk-node's estimate). Returns the transaction id.
    pub async fn send_onchain(
        &self,
        address: &Address,
        amount: SendAmount,
        fee_rate: Option<FeeRate>,
    ) -> Result<Txid, LnError> {
        if !address.as_unchecked().is_valid_for_network(self.network) {
            return Err(LnError::Refused(format!(
                "{address} is not an address for {}",
                self.network
            )));
        }
        let _one_at_a_time = self.send_lock.lock().await;
        let s = self.shared.clone();
        let address = address.clone();
        blocking(move || {
            let spendable = s.node.list_balances().spendable_onchain_balance_sats;
            match amount {
                SendAmount::Exactly(a) => {
                    if a.to_sat() > spendable {
                        return Err(LnError::Refused(format!(
                            "the wallet can spend {spendable} sat, less than {} sat and the fee",
                            a.to_sat()
                        )));
                    }
                    s.node
                        .onchain_payment()
                        .send_to_address(&address, a.to_sat(), fee_rate)
                        .map_err(|e| node_error("sending", e))
                }
                SendAmount::All => {
                    // A closing channel's claims (anchor bumps, HTLC claims) are paid from the
                    // wallet: emptying it then can lose what the channel still holds.
                    let closing = s.node.list_balances().lightning_balances.iter().any(|b| {
                        !matches!(b, ldk_node::LightningBalance::ClaimableOnChannelClose { .. })
                    });
                    if closing {
                        return Err(LnError::Refused(
                            "a closed channel is still being resolved on-chain and may need the wallet's coins for its fees: send an amount, or wait until `closing_sat` is 0".into(),
                        ));
                    }
                    let keep = !s.node.list_channels().is_empty();
                    s.node
                        .onchain_payment()
                        .send_all_to_address(&address, keep, fee_rate)
                        .map_err(|e| node_error("sending", e))
                }
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_or_say_why_not() {
        let key = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";
        let (k, a) = parse_peer(&format!("{key}@127.0.0.1:9735")).expect("peer");
        assert_eq!(k.to_string(), key);
        assert_eq!(a, "127.0.0.1:9735");
        let e = parse_peer(key).expect_err("no address");
        assert!(e.to_string().contains("is not PUBKEY@HOST:PORT"), "{e}");
        let e = parse_peer("02ab@127.0.0.1:9735").expect_err("short key");
        assert!(e.to_string().contains("is not a node public key"), "{e}");
        let e = parse_peer(&format!("{key}@nowhere")).expect_err("no port");
        assert!(e.to_string().contains("is not HOST:PORT"), "{e}");
        let e = parse_peer(&format!("{key}@B:0")).expect_err("port 0");
        assert!(e.to_string().contains("port 1 to 65535"), "{e}");
    }

    #[test]
    fn node_errors_are_refusals_or_failures_of_the_node() {
        use ldk_node::NodeError as E;
        // The node's own failures: retry (503 on the APIs).
        for e in [
            E::NotRunning,
            E::PersistenceFailed,
            E::WalletOperationTimeout,
            E::TxSyncFailed,
        ] {
            assert!(matches!(node_error("sending", e), LnError::Unavailable(_)), "{e:?}");
        }
        // The request's: change it (422), told how.
        let LnError::Refused(m) = node_error("sending", E::InsufficientFunds) else {
            panic!("insufficient funds is a refusal")
        };
        assert!(
            m.starts_with("sending: the wallet cannot pay it") && m.contains("eddy node address"),
            "{m}"
        );
        assert!(
            matches!(node_error("opening the channel", E::ConnectionFailed), LnError::Refused(m) if m.contains("could not be reached"))
        );
        assert!(
            matches!(node_error("closing the channel", E::ChannelClosingFailed), LnError::Refused(m) if m == "closing the channel: ChannelClosingFailed")
        );
    }
}
