//! Chain-watcher cost: connecting a 4,000-transaction block to an index watching 10,000 swaps
//! (each swap: one P2TR HTLC script plus its funding outpoint), with 20 of the block's
//! transactions touching watched swaps; and the heap bytes per watched swap, measured with a
//! counting allocator. Prints JSON. `cargo bench` runs 50 iterations; `cargo test` a smoke run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode,
    TxOut, Txid, Witness, XOnlyPublicKey,
};
use eddy_backends::{WatchId, WatchIndex};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The watch of swap `i` (a swap is named by its whole id).
fn watch_id(i: u64) -> WatchId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    WatchId::Swap(eddy_core::types::SwapId(id))
}

fn p2tr(i: u64) -> ScriptBuf {
    let secp = Secp256k1::new();
    let mut sk = [0u8; 32];
    sk[..8].copy_from_slice(&(i + 1).to_be_bytes());
    sk[31] = 1;
    let kp = Keypair::from_seckey_slice(&secp, &sk).expect("key");
    let (x, _) = XOnlyPublicKey::from_keypair(&kp);
    ScriptBuf::new_p2tr_tweaked(bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(x))
}

fn tx(prev: OutPoint, spk: ScriptBuf, n: u64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[n as u8; 64]]),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(50_000 + n),
                script_pubkey: spk,
            },
            TxOut {
                value: Amount::from_sat(10_000),
                script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::hash(&n.to_le_bytes())),
            },
        ],
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (swaps, txs, iters) = if full {
        (10_000u64, 4_000u64, 50)
    } else {
        (1_000, 400, 3)
    };
    let scripts: Vec<ScriptBuf> = (0..swaps).map(p2tr).collect();
    let fundings: Vec<OutPoint> = (0..swaps)
        .map(|i| OutPoint {
            txid: Txid::hash(&i.to_le_bytes()),
            vout: 0,
        })
        .collect();

    let before = LIVE.load(Ordering::Relaxed);
    let mut index = WatchIndex::default();
    for i in 0..swaps {
        index.watch_script(watch_id(i), scripts[i as usize].clone());
        index.watch_outpoint(watch_id(i), fundings[i as usize]);
    }
    let per_swap = (LIVE.load(Ordering::Relaxed) - before) as f64 / swaps as f64;

    // 10 transactions pay watched scripts, 10 spend watched fundings, the rest are strangers.
    let block_txs: Vec<Transaction> = (0..txs)
        .map(|n| {
            let stranger = OutPoint {
                txid: Txid::hash(&(n + 1_000_000).to_le_bytes()),
                vout: 1,
            };
            if n < 10 {
                tx(stranger, scripts[(n * 7) as usize].clone(), n)
            } else if n < 20 {
                tx(fundings[(n * 11) as usize], p2tr(swaps + n), n)
            } else {
                tx(stranger, p2tr(swaps + n), n)
            }
        })
        .collect();
    let block = Block {
        header: bitcoin::block::Header {
            version: bitcoin::block::Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata: block_txs,
    };
    let (events, _) = index.connect_block(&block, 1);
    assert_eq!(events.len(), 20, "10 fundings + 10 spends");
    let mut times = vec![];
    for _ in 0..iters {
        let t = Instant::now();
        let (ev, _) = index.connect_block(&block, 1);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(ev.is_empty(), "already recorded");
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"chain_watcher\",\"mode\":\"{}\",\"watched_swaps\":{swaps},\"block_txs\":{txs},\
         \"connect_ms_p50\":{:.2},\"connect_ms_max\":{:.2},\"heap_bytes_per_swap\":{:.0}}}",
        if full { "full" } else { "smoke" },
        times[times.len() / 2],
        times[times.len() - 1],
        per_swap
    );
}
