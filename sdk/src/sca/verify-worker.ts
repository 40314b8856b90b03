/**
 * Worker-thread entry of the SDK's parallel signature check (issue 20, T-2.2.1.8): checks one
 * slice of a batch in order with its own verifier for the transaction's key (created once per
 * transaction and kept for the next slices) and answers the position of the first signature that
 * does not verify, or -1. Loaded by verify-pool.ts; Node only (not part of @inkan/sdk/device).
 */
import { parentPort } from "node:worker_threads";
import { createSignatureVerifier, type SignatureCheck } from "./signature-verifier.js";
import type { VerifyReply, VerifyRequest } from "./verify-pool.js";

const verifiers = new Map<number, SignatureCheck>();
const keep = 8; // transactions whose verifier is kept (the oldest is dropped first)

parentPort!.on("message", (m: VerifyRequest) => {
  let reply: VerifyReply;
  try {
    let check = verifiers.get(m.keyId);
    if (!check) {
      check = createSignatureVerifier(m.key);
      verifiers.set(m.keyId, check);
      if (verifiers.size > keep) verifiers.delete(verifiers.keys().next().value!);
    }
    let failed = -1;
    for (let i = 0; i < m.hashes.length; i++) {
      if (!check(m.hashes[i]!, m.signatures[i]!)) {
        failed = i; // the first in order; the rest are not checked
        break;
      }
    }
    reply = { id: m.id, failed };
  } catch (err) {
    reply = { id: m.id, error: (err as Error).message ?? String(err) };
  }
  parentPort!.postMessage(reply);
});
