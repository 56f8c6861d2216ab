// Boltz's own boltz-core library as an independent peer for Eddy's tests. One JSON request per
// line on stdin, one JSON answer per line on stdout (hex for bytes):
//   {"op":"tree","kind":"reverse"|"submarine","preimageHash","claimPublicKey","refundPublicKey",
//    "timeoutBlockHeight","serverPublicKey","clientPublicKey","privateKey"}
//     -> {"claimLeaf","refundLeaf","leafVersion","internalKey","outputKey"}: the swap tree as
//        boltz-core builds it and the MuSig2 keys (Boltz's server key first), tweaked by it.
//   {"op":"start", ...the tree fields..., "privateKey", "msg"} -> {"pubNonce"}: opens a MuSig2
//     session over msg (a key-path sighash) for the holder of privateKey.
//   {"op":"sign","theirNonce","theirPublicKey"} -> {"partialSignature"}: aggregates both nonces,
//     signs (the open session).
//   {"op":"finish","theirPartial"} -> {"signature","theirPartialValid"}: checks the other
//     party's partial signature and aggregates the final BIP340 signature.
//   {"op":"spend", ...the tree fields..., "privateKey", "transactionId", "vout", "amount",
//    "script", "destinationScript", "fee", "preimage" | "refund": true} -> {"hex"}: a
//     script-path spend of one swap output built and signed by boltz-core's own
//     constructClaimTransaction: the claim leaf with the preimage, or (refund) the refund leaf
//     with the timeout as lock time. No server takes part.
'use strict';
const readline = require('node:readline');
const {
  Musig,
  OutputType,
  TaprootUtils,
  SwapTreeSerializer,
  constructClaimTransaction,
  reverseSwapTree,
  swapTree,
} = require('boltz-core');

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => Uint8Array.from(Buffer.from(h, 'hex'));

const treeOf = (r) => {
  const build = r.kind === 'reverse' ? reverseSwapTree : swapTree;
  return build(false, bytes(r.preimageHash), bytes(r.claimPublicKey), bytes(r.refundPublicKey), r.timeoutBlockHeight);
};

// Boltz aggregates its own (the server's) key first.
const keyAgg = (r) => {
  const tree = treeOf(r);
  const musig = Musig.create(bytes(r.privateKey), [bytes(r.serverPublicKey), bytes(r.clientPublicKey)]);
  return { tree, musig, tweaked: TaprootUtils.tweakMusig(musig, tree.tree) };
};

let session = null;
const handle = (r) => {
  switch (r.op) {
    case 'tree': {
      const { tree, musig, tweaked } = keyAgg(r);
      const s = SwapTreeSerializer.serializeSwapTree(tree);
      return {
        claimLeaf: s.claimLeaf.output,
        refundLeaf: s.refundLeaf.output,
        leafVersion: s.claimLeaf.version,
        internalKey: hex(TaprootUtils.toXOnly(musig.aggPubkey)),
        outputKey: hex(TaprootUtils.toXOnly(tweaked.aggPubkey)),
      };
    }
    case 'start': {
      const { tweaked } = keyAgg(r);
      session = { nonce: tweaked.message(bytes(r.msg)).generateNonce() };
      return { pubNonce: hex(session.nonce.publicNonce) };
    }
    case 'sign': {
      const mine = session.nonce;
      const aggregated = mine.aggregateNonces([
        [mine.myPublicKey, mine.publicNonce],
        [bytes(r.theirPublicKey), bytes(r.theirNonce)],
      ]);
      session.signed = aggregated.initializeSession().signPartial();
      session.theirPublicKey = bytes(r.theirPublicKey);
      return { partialSignature: hex(session.signed.ourPartialSignature) };
    }
    case 'finish': {
      const signed = session.signed;
      const theirPartialValid = signed.verifyPartial(session.theirPublicKey, bytes(r.theirPartial));
      if (!theirPartialValid) {
        return { theirPartialValid, signature: null };
      }
      signed.addPartial(session.theirPublicKey, bytes(r.theirPartial));
      return { theirPartialValid, signature: hex(signed.aggregatePartials()) };
    }
    case 'spend': {
      const { tree, musig } = keyAgg(r);
      const refund = r.refund === true;
      const tx = constructClaimTransaction(
        [
          {
            type: OutputType.Taproot,
            transactionId: r.transactionId,
            vout: r.vout,
            amount: BigInt(r.amount),
            script: bytes(r.script),
            privateKey: bytes(r.privateKey),
            preimage: refund ? new Uint8Array(0) : bytes(r.preimage),
            swapTree: tree,
            internalKey: TaprootUtils.toXOnly(musig.aggPubkey),
            cooperative: false,
          },
        ],
        bytes(r.destinationScript),
        BigInt(r.fee),
        true,
        refund ? r.timeoutBlockHeight : undefined,
        refund,
      );
      return { hex: tx.hex };
    }
    default:
      throw new Error(`unknown op ${r.op}`);
  }
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let out;
  try {
    out = handle(JSON.parse(line));
  } catch (e) {
    out = { error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
});
