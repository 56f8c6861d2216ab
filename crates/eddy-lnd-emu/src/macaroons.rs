//! The emulator's macaroon check: which permission (entity, action) each RPC Eddy calls needs,
//! and the permission sets of LND's default macaroons, so a call made with a macaroon that
//! lacks a permission is refused as LND refuses it.
//!
//! Source: LND's `rpcserver.go` (`MainRPCServerPermissions`, `readPermissions`,
//! `invoicePermissions`), `lnrpc/invoicesrpc/invoices_server.go`, `lnrpc/routerrpc/router_server.go`
//! and `lnrpc/walletrpc/walletkit_server.go` (`macPermissions`); the refusal comes from
//! `macaroons/service.go` (a plain error: gRPC `Unknown`). The emulator's macaroons are opaque
//! random tokens mapped to a permission set (real macaroons carry the set signed inside; what a
//! client sees — accepted or refused per call — is the same).

use std::collections::BTreeSet;

/// One permission: (entity, action).
pub type Permission = (&'static str, &'static str);

/// GetDebugInfo needs all four (it returns the config and the log).
const DEBUG_INFO: [Permission; 4] = [
    ("info", "read"),
    ("offchain", "read"),
    ("onchain", "read"),
    ("peers", "read"),
];

/// The permissions each served RPC needs (full gRPC path), `None` for a path not served.
pub fn required(path: &str) -> Option<&'static [Permission]> {
    if path == "/lnrpc.Lightning/GetDebugInfo" {
        return Some(&DEBUG_INFO);
    }
    Some(match path {
        "/lnrpc.Lightning/GetInfo" => &[("info", "read")],
        "/lnrpc.Lightning/ListChannels" => &[("offchain", "read")],
        "/lnrpc.Lightning/AddInvoice" => &[("invoices", "write")],
        "/lnrpc.Lightning/DecodePayReq" => &[("offchain", "read")],
        "/lnrpc.Lightning/NewAddress" => &[("address", "write")],
        "/lnrpc.Lightning/WalletBalance" => &[("onchain", "read")],
        "/invoicesrpc.Invoices/AddHoldInvoice" => &[("invoices", "write")],
        "/invoicesrpc.Invoices/SettleInvoice" => &[("invoices", "write")],
        "/invoicesrpc.Invoices/CancelInvoice" => &[("invoices", "write")],
        // Yes, write: `invoices_server.go` registers LookupInvoiceV2 with invoices:write.
        "/invoicesrpc.Invoices/LookupInvoiceV2" => &[("invoices", "write")],
        "/invoicesrpc.Invoices/SubscribeSingleInvoice" => &[("invoices", "read")],
        "/routerrpc.Router/SendPaymentV2" => &[("offchain", "write")],
        "/routerrpc.Router/TrackPaymentV2" => &[("offchain", "read")],
        "/walletrpc.WalletKit/SendOutputs" => &[("onchain", "write")],
        "/walletrpc.WalletKit/EstimateFee" => &[("onchain", "read")],
        _ => return None,
    })
}

const ENTITIES: [&str; 9] = [
    "onchain", "offchain", "address", "message", "peers", "info", "invoices", "signer", "macaroon",
];

/// A macaroon's permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions(BTreeSet<Permission>);

impl Permissions {
    /// `admin.macaroon`: everything.
    pub fn admin() -> Permissions {
        Permissions(ENTITIES.iter().flat_map(|e| [(*e, "read"), (*e, "write")]).collect())
    }

    /// `readonly.macaroon`: every entity, read only.
    pub fn readonly() -> Permissions {
        Permissions(ENTITIES.iter().map(|e| (*e, "read")).collect())
    }

    /// `invoice.macaroon`: invoices and addresses read/write, on-chain read.
    pub fn invoice() -> Permissions {
        Permissions(
            [
                ("invoices", "read"),
                ("invoices", "write"),
                ("address", "read"),
                ("address", "write"),
                ("onchain", "read"),
            ]
            .into_iter()
            .collect(),
        )
    }

    /// A custom set (`lncli bakemacaroon`).
    pub fn of(perms: &[Permission]) -> Permissions {
        Permissions(perms.iter().copied().collect())
    }

    /// Whether all of `ps` are granted.
    pub fn allows(&self, ps: &[Permission]) -> bool {
        ps.iter().all(|p| self.0.contains(p))
    }
}

/// LND's refusal of a call the macaroon does not permit.
pub const PERMISSION_DENIED: &str = "permission denied";
