/**
 * Test support: one "SAM process" for the multi-connection races in sqlite-store.test.ts. It opens
 * its own connection to the store file, then for each round (announced through a shared
 * Int32Array, so all workers start at the same instant) tries `attempts` times to consume each
 * kind of one-time object of that round (or, in mode "pending-approvals", to approve the round's
 * pending approval; in mode "attempt-reservations", to reserve an attempt of the round's subject),
 * and reports how many it won (or the counts its reservations saw).
 */
import { parentPort, workerData } from "node:worker_threads";
import { SqliteStore } from "./sqlite-store.js";

export interface RaceWorkerData {
  /** URL of this module, for ts-worker.mjs. */
  entry: string;
  file: string;
  /** Int32Array[0]: the current round (1, 2, ...), or -1 to stop. */
  signal: SharedArrayBuffer;
  attempts: number;
  /** The fixed clock, in ms since the epoch. */
  now: number;
  /** What to race for (default "one-time-objects"). */
  mode?: "one-time-objects" | "pending-approvals" | "attempt-reservations";
  /** Names this worker in the approvals it sends (decidedBy). */
  name?: string;
}

/** What a worker in mode "pending-approvals" reports for one round. */
export interface ApprovalWins {
  round: number;
  pendingApproval: number;
}

/** What a worker in mode "attempt-reservations" reports for one round: the count each reservation saw. */
export interface ReservationCounts {
  round: number;
  counts: number[];
}

export interface RaceWins {
  round: number;
  challenge: number;
  sadToken: number;
  activationCode: number;
  jti: number;
}

/** The ids of the objects of one round, shared by the test and the workers. */
export const raceIds = (round: number) => ({
  challenge: `worker-challenge-${round}`,
  sadToken: `worker-sad-${round}`,
  activationCode: `worker-act-${round}`,
  jti: `worker-jti-${round}`,
  pendingApproval: `worker-pa-${round}`,
  attemptSubject: `signer:worker-${round}`,
});

async function run(data: RaceWorkerData): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("race-worker runs in a worker thread");
  const flag = new Int32Array(data.signal);
  const now = new Date(data.now);
  const store = SqliteStore.open({ file: data.file });
  port.postMessage("ready");
  let seen = 0;
  for (;;) {
    Atomics.wait(flag, 0, seen); // the start barrier: every worker wakes on the same store
    const round = Atomics.load(flag, 0);
    if (round < 0) break;
    seen = round;
    const ids = raceIds(round);
    if (data.mode === "pending-approvals") {
      const wins: ApprovalWins = { round, pendingApproval: 0 };
      for (let i = 0; i < data.attempts; i++) {
        const decidedBy = `${data.name ?? "worker"}-${i}`;
        const approved = await store.decidePendingApproval({
          id: ids.pendingApproval, from: "PENDING", to: "APPROVED", decidedBy, decidedAt: now,
          body: JSON.stringify({ approver: decidedBy }), seal: new TextEncoder().encode(decidedBy), now,
        });
        if (approved) wins.pendingApproval++;
      }
      port.postMessage(wins);
      continue;
    }
    if (data.mode === "attempt-reservations") {
      const report: ReservationCounts = { round, counts: [] };
      for (let i = 0; i < data.attempts; i++) {
        report.counts.push(await store.reserveAttempt({ subject: ids.attemptSubject, id: `${data.name ?? "worker"}-${i}`, now, expiresAt: new Date(data.now + 60_000) }));
      }
      port.postMessage(report);
      continue;
    }
    const wins: RaceWins = { round, challenge: 0, sadToken: 0, activationCode: 0, jti: 0 };
    for (let i = 0; i < data.attempts; i++) {
      if (await store.consumeChallenge({ hash: ids.challenge, purpose: "transaction", now })) wins.challenge++;
      if (await store.consumeSadToken({ hash: ids.sadToken, now })) wins.sadToken++;
      if ((await store.attemptActivationCode({ id: ids.activationCode, codeHash: "right", now })).outcome === "accepted") wins.activationCode++;
      if (await store.useJti({ key: ids.jti, expiresAt: new Date(data.now + 60_000), now })) wins.jti++;
    }
    port.postMessage(wins);
  }
  await store.close();
}

if (parentPort && (workerData as Partial<RaceWorkerData> | null)?.signal) await run(workerData as RaceWorkerData);
