//! A BOLT11 invoice as it arrives from a counterparty (a loop-out server's swap and prepay
//! invoices, a loop-in client's invoice): `eddy_core::validate::decode_invoice` on any text.
//! Asserts: an accepted invoice is for the asked network, stays payable for the asked time,
//! and its facts are exactly those of the invoice re-parsed from its own serialization
//! (parse → serialize → parse), hash and amount included.
#![no_main]

use std::str::FromStr;

use bitcoin::hashes::Hash;
use eddy_core::validate::{decode_invoice, InvoiceError};
use eddy_fuzz::{network, NOW};
use libfuzzer_sys::fuzz_target;
use lightning_invoice::{Bolt11Invoice, Currency};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut accepted = 0;
    for n in 0..4 {
        let net = network(n);
        let min = 60;
        match decode_invoice("swap", text, net, NOW, min) {
            Ok(facts) => {
                accepted += 1;
                assert_eq!(facts.currency, Currency::from(net).to_string());
                assert!(
                    facts.expires_at_unix >= NOW + min,
                    "{} < now + {min}",
                    facts.expires_at_unix
                );
                let inv = Bolt11Invoice::from_str(text.trim()).expect("accepted, so it parses");
                let again = Bolt11Invoice::from_str(&inv.to_string()).expect("its own serialization parses");
                assert_eq!(again, inv);
                assert_eq!(
                    decode_invoice("swap", &inv.to_string(), net, NOW, min).as_ref(),
                    Ok(&facts)
                );
                assert_eq!(facts.payment_hash.0, inv.payment_hash().to_byte_array());
                assert_eq!(facts.amount_msat.map(|a| a.0), inv.amount_milli_satoshis());
                assert_eq!(facts.min_final_cltv_delta, inv.min_final_cltv_expiry_delta());
                assert_eq!(facts.payee, inv.get_payee_pub_key());
                for hint in inv.route_hints() {
                    let sum: u64 = hint.0.iter().map(|h| u64::from(h.cltv_expiry_delta)).sum();
                    assert!(sum <= facts.route_hint_cltv);
                }
            }
            Err(InvoiceError::Parse { which, reason }) => {
                assert_eq!(which, "swap");
                assert!(!reason.is_empty());
                assert!(Bolt11Invoice::from_str(text.trim()).is_err());
            }
            Err(InvoiceError::Network { got, expected, .. }) => {
                assert_eq!(expected, net);
                assert_ne!(got, Currency::from(net).to_string());
            }
            Err(InvoiceError::Expiry {
                remaining_secs,
                needed_secs,
                ..
            }) => {
                assert!(remaining_secs < needed_secs);
            }
            Err(e @ InvoiceError::NoAmount { .. }) => panic!("decode_invoice never asks for an amount: {e}"),
        }
    }
    // Testnet and signet invoices share no currency: at most one network accepts it.
    assert!(accepted <= 1, "accepted for {accepted} networks");
});
