/**
 * The JOSE attack classes of RFC 8725 (JWT best current practices) and its revision, against
 * R.SAD (T-2.2.1.1, T-2.2.1.5, T-2.2.1.7, R-3.2.1.2, R-3.2.1.3): "none", algorithm confusion,
 * embedded and fetched keys, crit, the invalid-curve attack on ECDH-ES, compressed and oversized
 * JWE, JSON serialization where compact is required, and single bit flips in every segment.
 * Each case uses its own signer, since a failed device-key check counts toward the lockout.
 */
import { Code } from "@connectrpc/connect";
import { createDeviceKey, rSadTyp, Reason } from "@inkan/sdk";
import type { SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { AttackCase } from "../case.js";
import type { RequirementId } from "../requirement-ids.js";
import { conformancePin, type Session, type TestSigner } from "../session.js";
import { b64, flip, foreignCurvePoint, hs256Jws, offCurvePoint, rawJwe, rawJws } from "./jose.js";
import { against, claimsFor, envelope, jwsHeader } from "./helpers.js";

const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };

interface JoseAttack {
  id: string;
  covers: RequirementId[];
  description: string;
  expected?: { code: Code; reason: Reason };
  alsoAccepted?: { code: Code; reason: Reason }[];
  /** Whether the attack can fail a device-key check (then it runs on its own signer). */
  ownSigner?: boolean;
  rSad(s: Session, signer: TestSigner, ch: SadChallenge): Promise<string> | string;
}

function joseCase(a: JoseAttack): AttackCase {
  return {
    kind: "attack",
    id: a.id,
    covers: a.covers,
    description: a.description,
    expected: a.expected ?? invalid,
    ...(a.alsoAccepted ? { alsoAccepted: a.alsoAccepted } : {}),
    async run(s) {
      const signer = a.ownSigner === false ? await s.sharedSigner() : await s.newSigner();
      const tx = await s.begin(signer, 1);
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await a.rSad(s, signer, tx.ch) }));
    },
  };
}

const jws = (signer: TestSigner, ch: SadChallenge, header: Record<string, unknown> = jwsHeader(signer)) => rawJws(signer.deviceKey.privateKey, header, claimsFor(ch));
const inEnvelope = async (ch: SadChallenge, sad: string) => envelope(ch, { sad, pin: conformancePin });
const jwsSegments = ["header", "payload", "signature"];
const jweSegments = ["protected header", "encrypted key", "IV", "ciphertext", "tag"];

const attacks: JoseAttack[] = [
  {
    id: "jws-alg-none",
    covers: ["T-2.2.1.1", "T-2.2.1.7"],
    description: 'The inner JWS says "alg": "none" and carries no signature, with the right PIN in the envelope. An unsigned SAD must never pass as signed.',
    rSad: (_s, signer, ch) => inEnvelope(ch, `${b64(JSON.stringify({ alg: "none", typ: rSadTyp, kid: signer.deviceKey.kid }))}.${b64(JSON.stringify(claimsFor(ch)))}.`),
  },
  {
    id: "jws-hs256-public-key",
    covers: ["T-2.2.1.1", "T-2.2.1.7"],
    description: 'Algorithm confusion: the inner JWS is "alg": "HS256", keyed with the device\'s public key as the attacker knows it (its JWK JSON). A verifier that lets the token choose the algorithm would accept it; the registered key fixes the algorithm.',
    rSad: (_s, signer, ch) => inEnvelope(ch, hs256Jws(new TextEncoder().encode(JSON.stringify(signer.deviceKey.publicJwk)), { typ: rSadTyp, kid: signer.deviceKey.kid }, claimsFor(ch))),
  },
  {
    id: "jws-embedded-jwk",
    covers: ["T-2.2.1.1", "T-2.2.1.4"],
    description: 'The attacker signs with their own key, names the signer\'s kid and embeds their public key in a "jwk" header. The key must come only from the signer\'s registered keys, never from the token.',
    async rSad(_s, signer, ch) {
      const attacker = await createDeviceKey();
      return inEnvelope(ch, await rawJws(attacker.privateKey, { ...jwsHeader(signer), jwk: attacker.publicJwk }, claimsFor(ch)));
    },
  },
  {
    id: "jws-foreign-key-same-kid",
    covers: ["T-2.2.1.1", "T-2.2.1.4"],
    description: "The attacker signs the claims with a key of their own and puts the signer's registered kid in the header. The signature does not verify with the registered key: refused.",
    async rSad(_s, signer, ch) {
      const attacker = await createDeviceKey();
      return inEnvelope(ch, await rawJws(attacker.privateKey, jwsHeader(signer), claimsFor(ch)));
    },
  },
  ...(["jku", "x5u"] as const).map((member): JoseAttack => ({
    id: `jws-${member}`,
    covers: ["T-2.2.1.1"],
    description: `The inner JWS, genuinely signed, carries a "${member}" header pointing at a key set on the attacker's server. The SAM never fetches keys and refuses the header outright.`,
    rSad: async (_s, signer, ch) => inEnvelope(ch, await jws(signer, ch, { ...jwsHeader(signer), [member]: "https://attacker.invalid/keys" })),
  })),
  {
    id: "jws-kid-traversal",
    covers: ["T-2.2.1.1"],
    description: 'The inner JWS\'s "kid" is a path-traversal / injection string instead of the device key\'s thumbprint. Keys are looked up only among the signer\'s registered keys: refused.',
    rSad: async (_s, signer, ch) => inEnvelope(ch, await jws(signer, ch, { ...jwsHeader(signer), kid: "../../../../dev/null' OR '1'='1" })),
  },
  {
    id: "jws-crit",
    covers: ["T-2.2.1.1"],
    description: 'The inner JWS, genuinely signed, declares a critical extension the SAM does not know ("crit": ["urn:x"]). RFC 7515 requires refusing it.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => inEnvelope(ch, await jws(signer, ch, { ...jwsHeader(signer), crit: ["urn:x"], "urn:x": true })),
  },
  {
    id: "jws-typ-confusion",
    covers: ["T-2.2.1.7"],
    description: 'A genuine device-key JWS of another kind (typ "inkan-suspension+jwt") is presented as an R.SAD. Explicit typing keeps one kind of signed request from being replayed as another.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => inEnvelope(ch, await jws(signer, ch, { ...jwsHeader(signer), typ: "inkan-suspension+jwt" })),
  },
  ...jwsSegments.map((segment, i): JoseAttack => ({
    id: `jws-bit-flip-${segment.replaceAll(" ", "-")}`,
    covers: ["T-2.2.1.7", "R-3.2.1.2"],
    description: `One bit of the inner JWS's ${segment} is flipped (then re-encrypted, as an attacker holding the device's output could). The signature no longer verifies: refused.`,
    rSad: async (_s, signer, ch) => inEnvelope(ch, flip(await jws(signer, ch), i)),
  })),
  ...(["jku", "jwk", "x5u"] as const).map((member): JoseAttack => ({
    id: `jwe-${member}`,
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: `The outer JWE carries a "${member}" header (a key the attacker supplies or hosts). The SAM decrypts only with its own published keys and refuses the header.`,
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { header: { [member]: member === "jwk" ? signer.deviceKey.publicJwk : "https://attacker.invalid/keys" } }),
  })),
  {
    id: "jwe-crit",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The outer JWE declares an unknown critical extension ("crit"). Refused, as RFC 7516 requires.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { header: { crit: ["urn:x"], "urn:x": true } }),
  },
  {
    id: "jwe-zip",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The outer JWE\'s plaintext is DEFLATE-compressed ("zip": "DEF"), the vector of decompression bombs and compression oracles. The SAM never decompresses: refused.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { deflate: true }),
  },
  {
    id: "jwe-unknown-kid",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: "The outer JWE names a kid the SAM never published. Refused without trying other keys.",
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { header: { kid: "attacker-key-1" } }),
  },
  {
    id: "jwe-alg-dir",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The outer JWE header says "alg": "dir" (a shared key) over otherwise valid content. Only the algorithms of the SAM\'s published keys are accepted.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { header: { alg: "dir" } }),
  },
  {
    id: "jwe-alg-direct-ecdh-es",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The outer JWE uses direct key agreement ("alg": "ECDH-ES") with the SAM key published as "ECDH-ES+A256KW", over otherwise valid content. A SAM accepts exactly the algorithm it published for the key.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { direct: true }),
  },
  {
    id: "jwe-invalid-curve-epk",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The invalid-curve attack on ECDH-ES: the JWE\'s "epk" is a point that is not on P-256 (x = y = 1). A SAM that did the key agreement with it would leak bits of its private key; it must check the point and refuse.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { epk: offCurvePoint() }),
  },
  {
    id: "jwe-foreign-curve-epk",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: 'The JWE\'s "epk" is a secp256k1 point labelled as P-256 (a point of another curve). Refused like any point off the curve.',
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin }, { epk: foreignCurvePoint() }),
  },
  {
    id: "jwe-oversized-plaintext",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: "The JWE decrypts to an envelope of 10,000 bytes (the limit is 8,192) while the R.SAD stays under its size limit. The SAM bounds what it decrypts and parses: refused as too large.",
    expected: { code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED },
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin, pad: "x".repeat(10_000) }),
  },
  {
    id: "jwe-oversized",
    covers: ["T-2.2.1.5", "R-3.2.1.3"],
    description: "The R.SAD is 20,000 characters long, beyond the 16,384 the contract allows. Refused before any decryption.",
    expected: { code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST },
    alsoAccepted: [{ code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED }],
    ownSigner: false,
    rSad: async (_s, signer, ch) => rawJwe(ch.encryptionKey!, { sad: await jws(signer, ch), pin: conformancePin, pad: "x".repeat(15_000) }),
  },
  {
    id: "jwe-json-serialization",
    covers: ["R-3.2.1.3", "T-2.2.1.7"],
    description: "A genuine JWE is re-sent in the JSON serialization (an object with protected, encrypted_key, iv, ciphertext, tag) where the compact form is required. Refused as malformed.",
    expected: { code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST },
    alsoAccepted: [invalid],
    ownSigner: false,
    async rSad(s, signer, ch) {
      const [p, k, iv, c, t] = (await s.rSad(signer, ch)).split(".");
      return JSON.stringify({ protected: p, encrypted_key: k, iv, ciphertext: c, tag: t });
    },
  },
  {
    id: "r-sad-unencrypted",
    covers: ["R-3.2.1.3", "T-2.2.1.5"],
    description: "The device-signed JWS is sent without the JWE around it (so the claims travel readable by the SCA, and the PIN would too). The SAM accepts R.SAD only encrypted to its key.",
    expected: { code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST },
    alsoAccepted: [invalid],
    ownSigner: false,
    rSad: (_s, signer, ch) => jws(signer, ch),
  },
  {
    id: "r-sad-missing-pin",
    covers: ["R-3.1.4", "T-2.2.1.4"],
    description: "A genuine device-key JWS in an envelope without the PIN: one factor where the credential's level requires two. Refused for the assurance level.",
    expected: { code: Code.FailedPrecondition, reason: Reason.ASSURANCE_LEVEL_NOT_MET },
    ownSigner: false,
    rSad: async (_s, signer, ch) => envelope(ch, { sad: await jws(signer, ch) }),
  },
  ...jweSegments.map((segment, i): JoseAttack => ({
    id: `jwe-bit-flip-${segment.replaceAll(" ", "-").toLowerCase()}`,
    covers: ["T-2.2.1.7", "R-3.2.1.2", "R-3.2.1.3"],
    description: `One bit of the outer JWE's ${segment} is flipped in transit. Authenticated encryption (and the header as AAD) detects it: refused.`,
    ownSigner: false,
    rSad: async (s, signer, ch) => flip(await s.rSad(signer, ch), i),
  })),
];

export const joseCases: AttackCase[] = attacks.map(joseCase);
