/** What leaves the SAM (T-2.2.1.8, R-3.2.1.5): every signature verifies against the credential's certified key. */
import type { AttackCase } from "../case.js";

export const integrityCases: AttackCase[] = [
  {
    kind: "attack",
    id: "signatures-verify",
    covers: ["T-2.2.1.8", "R-3.2.1.5", "R-3.2.1.1"],
    description: "The legitimate flow, checked from outside: three documents are authorized by the signer's device and signed with SignHash (method 2: one hash per call with the rotated token). Every signature must verify over its document with the public key of the credential's certificate, so that a signature altered in the SAM or in transit is detected by anyone relying on it.",
    expected: "success",
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 3);
      const problems: string[] = [];
      let token = tx.token;
      for (let i = 0; i < 3; i += 1) {
        const res = await s.signHash(token, [tx.hashes[i]!]);
        if (!s.verifies(signer, tx.messages[i]!, res.signatures[0]!)) problems.push(`signature ${i} does not verify against the credential's key`);
        if (res.signaturesRemaining !== 2 - i) problems.push(`signatures_remaining is ${res.signaturesRemaining} after ${i + 1} of 3`);
        token = res.nextSadToken;
      }
      if (token !== "") problems.push("a next token was issued although no signature remained");
      return { outcome: "succeeded", signed: 0, problems };
    },
  },
  {
    kind: "attack",
    id: "stream-signatures-verify",
    covers: ["T-2.2.1.8", "R-3.2.1.5", "T-2.2.1.6"],
    description: "The legitimate batch flow: a SignStream over 50 authorized documents. Every index arrives once, in order, and every signature verifies over its document with the credential's key.",
    expected: "success",
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 50);
      const problems: string[] = [];
      const seen = new Set<number>();
      for await (const m of s.signStream(tx.token)) {
        for (const sig of m.signatures) {
          if (seen.has(sig.index)) problems.push(`index ${sig.index} arrived twice`);
          seen.add(sig.index);
          if (!s.verifies(signer, tx.messages[sig.index]!, sig.signature)) problems.push(`signature ${sig.index} does not verify`);
        }
      }
      if (seen.size !== 50) problems.push(`${seen.size} of 50 signatures arrived`);
      return { outcome: "succeeded", signed: 0, problems };
    },
  },
];
