/**
 * The R.SAD methods without a device key (sam.proto AuthenticationMethod, T-2.2.1.3,
 * T-2.2.1.7, T-2.1.2.2): PIN + TOTP {claims, pin, otp}, PIN alone {claims, pin} (level 1) and the
 * login assertion {claims, login} (level 1). What the target enables is read from GetInfo; a case
 * whose method or level the target does not enable is skipped with the reason, never failed.
 */
import { Code } from "@connectrpc/connect";
import { Reason, type ClaimsRSadInput } from "@inkan/sdk";
import { AuthenticationMethod } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { randomBytes } from "node:crypto";
import { SignJWT, generateKeyPair } from "jose";
import { CaseSkipped, type AttackCase, type Observation } from "../case.js";
import { conformancePin, outcomeOf, type Session, type TestSigner, type Transaction } from "../session.js";
import { totpNow, wrongTotp, type TotpGenerator } from "../totp.js";
import { against } from "./helpers.js";

const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };
const authenticationFailed = { code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED };
const levelNotMet = { code: Code.FailedPrecondition, reason: Reason.ASSURANCE_LEVEL_NOT_MET };

/** Skips the case unless the target enables every one of `methods` and `level`. */
async function requireTarget(s: Session, methods: AuthenticationMethod[], level: AssuranceLevel): Promise<void> {
  const info = await s.info();
  for (const m of methods) {
    if (!info.authenticationMethods.includes(m)) throw new CaseSkipped(`the target does not enable AUTHENTICATION_METHOD_${AuthenticationMethod[m]} (GetInfo.authentication_methods)`);
  }
  if (!info.assuranceLevels.includes(level)) throw new CaseSkipped(`the target does not offer ${AssuranceLevel[level]} (GetInfo.assurance_levels)`);
}

/** A fresh level-2 signer with a TOTP generator (a code works once, so each case has its own). */
async function totpSigner(s: Session): Promise<TestSigner & { totp: TotpGenerator }> {
  await requireTarget(s, [AuthenticationMethod.PIN_AND_TOTP], AssuranceLevel.ASSURANCE_LEVEL_2);
  const signer = await s.newSigner({ totp: true, assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_2 });
  return { ...signer, totp: signer.totp! };
}

/** A fresh signer with a level-1 credential, when the target allows level 1 and `method`. */
async function levelOneSigner(s: Session, method: AuthenticationMethod): Promise<TestSigner> {
  await requireTarget(s, [method], AssuranceLevel.ASSURANCE_LEVEL_1);
  return s.newSigner({ assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_1 });
}

/** The transaction's first hash signs with the token, and the signature verifies with the credential's key. */
async function signsAndVerifies(s: Session, signer: TestSigner, tx: Transaction, token: string): Promise<Observation> {
  const res = await s.signHash(token, [tx.hashes[0]!]);
  const problems = s.verifies(signer, tx.messages[0]!, res.signatures[0]!) ? [] : ["the signature does not verify with the credential's public key"];
  await s.signaturesCreated(tx.ch.transactionId);
  return { outcome: "succeeded", signed: 0, problems };
}

/** An R.SAD {claims, pin, otp} whose claims were changed on the way (T-2.2.1.7): refused, nothing signed. */
function forgedTotpClaims(id: string, what: string, forge: (s: Session, tx: Transaction, signer: TestSigner) => Promise<{ over: Partial<ClaimsRSadInput>; other?: string }>): AttackCase {
  return {
    kind: "attack",
    id,
    covers: ["T-2.2.1.7", "T-2.2.1.6", "R-3.2.1.2"],
    description: `PIN + TOTP: the SCA (which builds the claims in this method) changes ${what} in an R.SAD {claims, pin, otp} with the signer's correct PIN and a valid OTP. The claims must equal the transaction, so the SAM refuses it as invalid and signs nothing.`,
    expected: invalid,
    async run(s) {
      const signer = await totpSigner(s);
      const tx = await s.begin(signer, 2);
      const { over, other } = await forge(s, tx, signer);
      const rSad = await s.claimsRSad(tx.ch, { pin: conformancePin, otp: totpNow(signer.totp) }, over);
      const obs = await against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad }));
      // The transaction the forged txn names must not have been signed either.
      return other ? { ...obs, signed: obs.signed + (await s.signaturesCreated(other)) } : obs;
    },
  };
}

export const methodCases: AttackCase[] = [
  {
    kind: "attack",
    id: "pin-totp-authorizes",
    covers: ["R-3.1.4", "R-3.2.1.1"],
    description: "PIN + TOTP (level 2): an R.SAD {claims, pin, otp} with the signer's PIN and the current code of the TOTP generator enrolled at activation authorizes a level-2 credential, and the hash signs with a signature that verifies with the credential's key.",
    expected: "success",
    async run(s) {
      const signer = await totpSigner(s);
      const tx = await s.begin(signer, 1);
      const auth = s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { pin: conformancePin, otp: totpNow(signer.totp) }) });
      const outcome = await outcomeOf(auth);
      if (outcome !== "succeeded") return { outcome, signed: 0 };
      return signsAndVerifies(s, signer, tx, (await auth).sadToken);
    },
  },
  {
    kind: "attack",
    id: "pin-totp-replayed-otp",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "PIN + TOTP: a code the SAM already accepted is sent again in a fresh R.SAD (new jti, correct PIN) for a second transaction. Each code works once, so the SAM refuses the factor and signs nothing.",
    expected: authenticationFailed,
    alsoAccepted: [{ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED }],
    async run(s) {
      const signer = await totpSigner(s);
      const otp = totpNow(signer.totp);
      const first = await s.begin(signer, 1);
      const firstOk = await outcomeOf(s.sca.authorize({ transactionId: first.ch.transactionId, rSad: await s.claimsRSad(first.ch, { pin: conformancePin, otp }) }));
      await s.signaturesCreated(first.ch.transactionId);
      const second = await s.begin(signer, 1);
      const obs = await against(s, second.ch.transactionId, s.sca.authorize({ transactionId: second.ch.transactionId, rSad: await s.claimsRSad(second.ch, { pin: conformancePin, otp }) }));
      return firstOk === "succeeded" ? obs : { ...obs, problems: ["the first R.SAD with the code was refused, so the replay proves nothing"] };
    },
  },
  {
    kind: "attack",
    id: "pin-totp-wrong-otp",
    covers: ["T-2.2.1.4", "T-2.1.2.2", "R-3.2.1.1"],
    description: "PIN + TOTP: the correct PIN with a well-formed OTP that is none of the generator's codes near now. The SAM refuses the factors as AUTHENTICATION_FAILED (without saying which) and signs nothing.",
    expected: authenticationFailed,
    async run(s) {
      const signer = await totpSigner(s);
      const tx = await s.begin(signer, 1);
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { pin: conformancePin, otp: wrongTotp(signer.totp) }) }));
    },
  },
  forgedTotpClaims("pin-totp-forged-txn", "txn to another pending transaction of the same signer", async (s, _tx, signer) => {
    const other = (await s.begin(signer, 2)).ch.transactionId;
    return { over: { transactionId: other }, other };
  }),
  forgedTotpClaims("pin-totp-forged-dtbsr", "dtbsr to the digest of other documents", async () => ({ over: { dtbsrDigest: new Uint8Array(randomBytes(32)) } })),
  forgedTotpClaims("pin-totp-forged-count", "n to one more signature than the transaction holds", async (_s, tx) => ({ over: { count: tx.ch.numSignatures + 1 } })),
  {
    kind: "attack",
    id: "level-2-refuses-pin-alone",
    covers: ["R-3.1.4", "T-2.2.1.2"],
    description: "R-3.1.4: on a level-2 credential, an R.SAD with the correct PIN alone ({claims, pin}, a level-1 method) is refused as FAILED_PRECONDITION ASSURANCE_LEVEL_NOT_MET; nothing is signed, the transaction stays pending and a valid level-2 R.SAD (device key + PIN) still authorizes it.",
    expected: levelNotMet,
    async run(s) {
      await requireTarget(s, [AuthenticationMethod.DEVICE_KEY_AND_PIN], AssuranceLevel.ASSURANCE_LEVEL_2);
      const signer = await s.newSigner({ assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_2 });
      const tx = await s.begin(signer, 1);
      const outcome = await outcomeOf(s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { pin: conformancePin }) }));
      const later = s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.rSad(signer, tx.ch) });
      const stillPending = await outcomeOf(later);
      if (stillPending !== "succeeded") {
        await s.signaturesCreated(tx.ch.transactionId);
        return { outcome, signed: 0, problems: ["a valid level-2 R.SAD no longer authorized the transaction after the refusal (it did not stay pending)"] };
      }
      // Only the legitimate authorization may sign: its one signature is not the attack's.
      const legit = await signsAndVerifies(s, signer, tx, (await later).sadToken);
      return { outcome, signed: 0, problems: legit.problems ?? [] };
    },
  },
  {
    kind: "attack",
    id: "level-1-pin-authorizes",
    covers: ["R-3.1.4"],
    description: "R-3.1.4, when the target allows level 1 and enables AUTHENTICATION_METHOD_PIN: an R.SAD {claims, pin} with the signer's PIN authorizes a level-1 credential, and the hash signs with a signature that verifies.",
    expected: "success",
    async run(s) {
      const signer = await levelOneSigner(s, AuthenticationMethod.PIN);
      const tx = await s.begin(signer, 1);
      const auth = s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { pin: conformancePin }) });
      const outcome = await outcomeOf(auth);
      if (outcome !== "succeeded") return { outcome, signed: 0 };
      return signsAndVerifies(s, signer, tx, (await auth).sadToken);
    },
  },
  {
    kind: "attack",
    id: "level-1-pin-wrong",
    covers: ["R-3.1.4", "T-2.2.1.4"],
    description: "When the target allows level 1 and enables AUTHENTICATION_METHOD_PIN: an R.SAD {claims, pin} with a wrong PIN on a level-1 credential is AUTHENTICATION_FAILED and nothing is signed.",
    expected: authenticationFailed,
    async run(s) {
      const signer = await levelOneSigner(s, AuthenticationMethod.PIN);
      const tx = await s.begin(signer, 1);
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { pin: "000000000" }) }));
    },
  },
  {
    kind: "attack",
    id: "level-1-login-forged",
    covers: ["R-3.1.4", "T-2.2.1.4"],
    description: "When the target allows level 1 and enables AUTHENTICATION_METHOD_LOGIN_ASSERTION: an R.SAD {claims, login} whose ID token the attacker signed with its own key (not the RSSP's OpenID provider), nonce the transaction's challenge, is AUTHENTICATION_FAILED and nothing is signed. (A genuine login needs the RSSP's OpenID provider, which the suite does not have.)",
    expected: authenticationFailed,
    async run(s) {
      const signer = await levelOneSigner(s, AuthenticationMethod.LOGIN_ASSERTION);
      const tx = await s.begin(signer, 1);
      const { privateKey } = await generateKeyPair("ES256");
      const iat = Math.floor(Date.now() / 1000);
      const login = await new SignJWT({ sub: signer.signerId, nonce: Buffer.from(tx.ch.challenge).toString("base64url"), iat, exp: iat + 120 })
        .setIssuer("https://op.attacker.invalid").setAudience(tx.ch.audience).setProtectedHeader({ alg: "ES256", kid: "attacker" }).sign(privateKey);
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.claimsRSad(tx.ch, { login }) }));
    },
  },
];
