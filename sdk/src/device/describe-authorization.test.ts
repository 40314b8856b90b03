import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { SadChallengeSchema } from "../gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { describeAuthorization } from "./describe-authorization.js";

const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
// The example of sam.proto (SadChallenge.dtbsr_digest): SHA-256("") and SHA-256("abc").
const hashes = [hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")];
const challenge = create(SadChallengeSchema, {
  transactionId: "txn-1", signerId: "sig-1", credentialId: "cred-1", audience: "https://sam.example/",
  dtbsrDigest: hex("b66e39f17e49ce653aed80495c0645f35099576a32c25bf99a167b751bcede40"), hashAlgorithm: HashAlgorithm.SHA256,
  numSignatures: 2, description: "Invoices 2026-11", expiresAt: timestampFromDate(new Date("2026-11-25T12:00:00Z")),
});

describe("describeAuthorization (R-3.2.1.4: the signer sees what the R.SAD binds)", () => {
  it("shows count, description and the digest as the dtbsr claim carries it", async () => {
    const what = await describeAuthorization(challenge);
    expect(what).toMatchObject({
      count: 2, description: "Invoices 2026-11", digest: "tm458X5JzmU67YBJXAZF81CZV2oywlv5mhZ7dRvO3kA", signerId: "sig-1", credentialId: "cred-1",
      expiresAt: new Date("2026-11-25T12:00:00Z"), matchesHashes: undefined,
    });
    expect(what.digestFingerprint.startsWith("b66e 39f1 7e49")).toBe(true);
    expect(what.text).toBe('Sign 2 documents: "Invoices 2026-11" (DTBS/R b66e 39f1 7e49 ce65 …)');
  });

  it("R-3.2.1.4: checks the device's own list against the digest: equal, reordered, shortened", async () => {
    expect((await describeAuthorization(challenge, { hashes })).matchesHashes).toBe(true);
    expect((await describeAuthorization(challenge, { hashes: [...hashes].reverse() })).matchesHashes).toBe(false);
    expect((await describeAuthorization(challenge, { hashes: hashes.slice(0, 1) })).matchesHashes).toBe(false);
  });
});
