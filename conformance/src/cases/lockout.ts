/**
 * Concurrent guessing (T-2.1.2.2, T-2.2.1.3, R-3.1.2.2): an attacker holding a signer's device key
 * fires many guesses at the PIN at the same instant, so that they are all in flight before the
 * first one is counted. A conforming SAM reserves each factor check before it runs: at most
 * lockout_threshold guesses are ever checked before the signer is locked (and at most
 * Limits.max_authorize_attempts on one transaction), every other guess is refused unchecked, and
 * no answer but AUTHENTICATION_FAILED follows a check (a VERSION_CONFLICT would say "wrong PIN").
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { Reason, buildPinChangeRequest, inkanErrorReason } from "@inkan/sdk";
import { PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { CaseSkipped, type AttackCase, type Observation } from "../case.js";
import { conformancePin, outcomeOf, type Session, type TestSigner, type Transaction } from "../session.js";
import { race } from "./helpers.js";

const locked = { code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_LOCKED };

/** The target's lockout_threshold, read by its security officer; the case is skipped when it cannot be read. */
export async function lockoutThreshold(s: Session): Promise<number> {
  try {
    const { record } = await s.adminClient(PolicyService, s.target.admin).getSecurityPolicy({});
    const threshold = record?.policy?.lockoutThreshold ?? 0;
    if (threshold > 0) return threshold;
  } catch {
    // reported below
  }
  throw new CaseSkipped("the security officer could not read the security policy's lockout_threshold");
}

/** Distinct wrong PINs, never the suite's PIN. */
const wrongPin = (i: number) => String(500_000_000 + i);

/** The reason of each refused call, by name. */
const reasonsOf = (refused: unknown[]) => refused.map((e) => Reason[inkanErrorReason(ConnectError.from(e))] ?? "UNKNOWN");

/**
 * What must hold after a burst of `guesses` wrong guesses against a signer whose threshold is
 * `threshold`: no call succeeded or answered VERSION_CONFLICT, at most `threshold` were checked
 * (AUTHENTICATION_FAILED), each of those was recorded, and the signer is locked.
 *
 * A conforming SAM may refuse guesses unchecked while earlier ones are still being counted, so a
 * burst can end below the threshold with nothing lost. Then `oneMore` wrong guess is sent at a time
 * until the signer is locked (at most threshold of them), and the budget is judged over both.
 */
async function lockoutProblems(s: Session, signer: TestSigner, threshold: number, guesses: number, burst: { succeeded: unknown[]; refused: unknown[] }, oneMore: () => Promise<unknown>): Promise<string[]> {
  const reasons = reasonsOf(burst.refused);
  const isLocked = async () => Boolean((await s.ra.getSigner({ signerId: signer.signerId })).signer?.factors?.lockedAt);
  for (let i = 0; i < threshold && !(await isLocked()); i++) {
    const one = await oneMore().then(() => "SUCCEEDED", (e: unknown) => reasonsOf([e])[0]!);
    if (one !== "AUTHENTICATION_FAILED") return [`a wrong guess sent alone after the burst answered ${one}, not AUTHENTICATION_FAILED`];
    reasons.push(one);
  }
  const count = (r: string) => reasons.filter((x) => x === r).length;
  const failed = count("AUTHENTICATION_FAILED");
  const problems: string[] = [];
  if (burst.succeeded.length > 0) problems.push(`${burst.succeeded.length} of ${guesses} wrong guesses succeeded`);
  if (count("VERSION_CONFLICT") > 0) problems.push(`${count("VERSION_CONFLICT")} of ${guesses} guesses answered VERSION_CONFLICT (a lost count that tells a wrong guess apart)`);
  if (failed > threshold) problems.push(`${failed} of ${guesses} concurrent guesses were checked (AUTHENTICATION_FAILED), more than the lockout threshold ${threshold}`);
  const other = [...new Set(reasons.filter((r) => !["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"].includes(r)))];
  if (other.length > 0) problems.push(`unexpected answers: ${other.join(", ")}`);
  const factors = (await s.ra.getSigner({ signerId: signer.signerId })).signer?.factors;
  if ((factors?.failedAttempts ?? 0) < Math.min(failed, threshold)) problems.push(`${failed} guesses answered AUTHENTICATION_FAILED but only ${factors?.failedAttempts ?? 0} failures were recorded`);
  if (!factors?.lockedAt) problems.push(`the signer is not locked after ${guesses} wrong guesses`);
  return problems;
}

export const lockoutCases: AttackCase[] = [
  {
    kind: "attack",
    id: "lockout-concurrent-guesses",
    covers: ["T-2.1.2.2", "T-2.2.1.3", "R-3.1.2.2"],
    description: "With a signer's device key in hand, the attacker opens 4 x lockout_threshold transactions (at least 24) and sends an R.SAD with a different wrong PIN for each, all at the same instant. At most lockout_threshold of them may be checked (AUTHENTICATION_FAILED), the rest are refused unchecked; none answers VERSION_CONFLICT, the signer ends locked, and the right PIN afterwards is refused with CREDENTIAL_LOCKED.",
    expected: locked,
    oneProtocol: true,
    async run(s): Promise<Observation> {
      const threshold = await lockoutThreshold(s);
      const signer = await s.newSigner();
      const guesses = Math.max(24, 4 * threshold);
      const txs: Transaction[] = [];
      for (let i = 0; i <= guesses; i++) txs.push(await s.begin(signer, 1));
      const rSads = await Promise.all(txs.slice(0, guesses).map((tx, i) => s.rSad(signer, tx.ch, { pin: wrongPin(i) })));
      let next = 0;
      const burst = await race(guesses, () => {
        const i = next++;
        return s.sca.authorize({ transactionId: txs[i]!.ch.transactionId, rSad: rSads[i]! });
      });
      const problems = await lockoutProblems(s, signer, threshold, guesses, burst, async () => {
        const tx = await s.begin(signer, 1);
        return s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.rSad(signer, tx.ch, { pin: wrongPin(guesses) }) });
      });
      const last = txs[guesses]!;
      const outcome = await outcomeOf(s.sca.authorize({ transactionId: last.ch.transactionId, rSad: await s.rSad(signer, last.ch, { pin: conformancePin }) }));
      return { outcome, signed: 0, problems };
    },
  },
  {
    kind: "attack",
    id: "lockout-concurrent-change-pin",
    covers: ["T-2.1.2.2", "R-3.1.2.2"],
    description: "The attacker with the device key sends 4 x lockout_threshold ChangePin requests (at least 24) at the same instant, each with a different wrong old PIN. The PIN change shares the signer's lockout: at most lockout_threshold are checked, none answers VERSION_CONFLICT, the signer ends locked, and a change with the right old PIN is then refused with CREDENTIAL_LOCKED.",
    expected: locked,
    oneProtocol: true,
    async run(s): Promise<Observation> {
      const threshold = await lockoutThreshold(s);
      const signer = await s.newSigner();
      const guesses = Math.max(24, 4 * threshold);
      const change = async (oldPin: string) => {
        const ch = await s.device.createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.PIN_CHANGE });
        return buildPinChangeRequest({ signerId: signer.signerId, oldPin, newPin: "864209753", deviceKey: signer.deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
      };
      const requests: Awaited<ReturnType<typeof change>>[] = [];
      for (let i = 0; i < guesses; i++) requests.push(await change(wrongPin(i)));
      let next = 0;
      const burst = await race(guesses, () => s.device.changePin(requests[next++]!));
      const problems = await lockoutProblems(s, signer, threshold, guesses, burst, async () => s.device.changePin(await change(wrongPin(guesses))));
      const outcome = await outcomeOf(s.device.changePin(await change(conformancePin)));
      return { outcome, signed: 0, problems };
    },
  },
  {
    kind: "attack",
    id: "authorize-attempts-concurrent",
    covers: ["T-2.2.1.3", "R-3.2.1.1"],
    description: "24 R.SADs for one transaction, each with a different wrong PIN and its own jti, are relayed with Authorize at the same instant. The transaction survives Limits.max_authorize_attempts failures: at most that many may be checked (AUTHENTICATION_FAILED), the rest are refused unchecked; the transaction ends FAILED, so the right PIN afterwards is refused with TRANSACTION_STATE and nothing is signed.",
    expected: { code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE },
    oneProtocol: true,
    async run(s): Promise<Observation> {
      const max = (await s.info()).limits?.maxAuthorizeAttempts ?? 0;
      if (max < 1) throw new CaseSkipped("GetInfo does not publish Limits.max_authorize_attempts");
      const signer = await s.newSigner();
      const tx = await s.begin(signer, 1);
      const guesses = 24;
      const rSads = await Promise.all(Array.from({ length: guesses }, (_, i) => s.rSad(signer, tx.ch, { pin: wrongPin(i) })));
      let next = 0;
      const burst = await race(guesses, () => s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: rSads[next++]! }));
      const reasons = reasonsOf(burst.refused);
      const failed = reasons.filter((r) => r === "AUTHENTICATION_FAILED").length;
      const problems: string[] = [];
      if (burst.succeeded.length > 0) problems.push(`${burst.succeeded.length} wrong-PIN R.SADs got a token`);
      if (failed > max) problems.push(`${failed} of ${guesses} concurrent R.SADs on one transaction were checked (AUTHENTICATION_FAILED), more than max_authorize_attempts ${max}`);
      const conflicts = reasons.filter((r) => r === "VERSION_CONFLICT").length;
      if (conflicts > 0) problems.push(`${conflicts} answered VERSION_CONFLICT`);
      const outcome = await outcomeOf(s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.rSad(signer, tx.ch, { pin: conformancePin }) }));
      return { outcome, signed: await s.signaturesCreated(tx.ch.transactionId), problems };
    },
  },
];
