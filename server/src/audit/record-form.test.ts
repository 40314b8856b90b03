/**
 * R-3.2.2.4, issue 20: the record texts are made in one pass (recordTexts), and must stay byte for
 * byte what the previous form gave: body = JCS(fields) and hash = SHA-256(JCS({ ...fields, chain })).
 * Any difference would make new records fail `inkan audit verify`, or old chains fail the start.
 */
import { describe, expect, it } from "vitest";
import * as events from "./events.js";
import type { AuditEventFields } from "./record-form.js";
import { canonicalJson, newStoredRecord, precomputedMembers, sha256, storedRecordHasher, timestampJson, toBase64, ZERO_HASH } from "./record-form.js";

/** The previous implementation of newStoredRecord (before issue 20), kept as the reference. */
function legacyRecord(args: { nodeId: string; sequence: number; time: Date; eventType: string; fields: AuditEventFields; prevHash: Uint8Array }): { body: string; hash: Uint8Array } {
  const body = canonicalJson(args.fields);
  const json = { ...args.fields, nodeId: args.nodeId, sequence: String(args.sequence), occurredAt: timestampJson(args.time), eventType: args.eventType, prevHash: toBase64(args.prevHash) };
  return { body, hash: sha256(canonicalJson(json)) };
}

/** A small deterministic generator (no Math.random: the test repeats exactly). */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const awkward = ["", "a", "\"", "\\", "/", "\u0000", "\u0007", "\b\f\n\r\t", "\u001f", "\u007f", "\u00e9", "\u2028\u2029", "\ud83d\ude00", "\uffff", "\ufeff", "日本語", "<script>", "a\"b\\c", "\u00e9\u0301", "\ud800\udc00", "Z", "z", "_", "10", "9"];

function text(rand: () => number): string {
  let t = "";
  const n = Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) t += awkward[Math.floor(rand() * awkward.length)]! + (rand() < 0.3 ? String.fromCharCode(32 + Math.floor(rand() * 95)) : "");
  return t;
}

function randomFields(rand: () => number): AuditEventFields {
  const actor: Record<string, string> = { kind: "ACTOR_KIND_SCA" };
  if (rand() < 0.7) actor["id"] = text(rand) || "x";
  if (rand() < 0.5) actor["certificateSha256"] = toBase64(new Uint8Array(32).fill(Math.floor(rand() * 256)));
  const fields: Record<string, unknown> = { actor, outcome: rand() < 0.5 ? "AUDIT_OUTCOME_SUCCESS" : "AUDIT_OUTCOME_DENIED" };
  for (const key of ["reason", "signerId", "credentialId", "transactionId", "subjectUserId", "pendingRequestId", "requestId"]) {
    const r = rand();
    if (r < 0.5) fields[key] = text(rand) || "v";
    else if (r < 0.6) fields[key] = undefined; // an absent optional field, as a spread may leave it
  }
  if (rand() < 0.3) fields["approver"] = { kind: "ACTOR_KIND_PRIVILEGED_USER", role: "PRIVILEGED_ROLE_AUDITOR", id: text(rand) || "u" };
  if (rand() < 0.8) {
    const details: Record<string, string | undefined> = {};
    const n = Math.floor(rand() * 6);
    for (let i = 0; i < n; i++) {
      const key = rand() < 0.5 ? text(rand) || "k" : awkward[Math.floor(rand() * awkward.length)]!;
      // Integer-like keys reorder in a parsed object, so such a body never verified; detail keys start with a letter.
      details[/^\d+$/.test(key) ? `k${key}` : key] = text(rand);
    }
    if (rand() < 0.2) details["gone"] = undefined;
    fields["details"] = details;
  }
  return fields as unknown as AuditEventFields;
}

function expectSame(args: Parameters<typeof legacyRecord>[0]): void {
  const legacy = legacyRecord(args);
  const record = newStoredRecord(args);
  expect(record.body).toBe(legacy.body);
  expect(toBase64(record.hash)).toBe(toBase64(legacy.hash));
  // The verifier's path (storedRecordHasher) gives the same hash for the stored row.
  expect(toBase64(storedRecordHasher(record)(args.sequence)!)).toBe(toBase64(legacy.hash));
}

describe("record texts (R-3.2.2.4, issue 20)", () => {
  it("R-3.2.2.4: new records are byte-identical to the previous form over 5,000 random records with unicode and escapes", () => {
    const rand = generator(20);
    let prevHash = ZERO_HASH;
    for (let sequence = 1; sequence <= 5000; sequence++) {
      const time = new Date(Date.UTC(2026, 0, 1) + Math.floor(rand() * 1e10) * (rand() < 0.5 ? 1000 : 1));
      const nodeId = rand() < 0.9 ? "node-1" : text(rand) || "n";
      const eventType = rand() < 0.9 ? "signature.created" : "x.y";
      const args = { nodeId, sequence, time, eventType, fields: randomFields(rand), prevHash };
      expectSame(args);
      prevHash = legacyRecord(args).hash;
    }
  });

  it("R-3.2.2.4: every event function's record is byte-identical to the previous form", () => {
    const sca = { kind: "sca", subject: "CN=Exämple \"SCA\",O=\\Example", certificateSha256: new Uint8Array(32).fill(1) } as const;
    const built = [
      events.signatureCreated({ sca, signerId: "s-1", credentialId: "c-1", transactionId: "t-1", requestId: "r-1", hash: new Uint8Array(32).fill(0xab), hashAlgorithm: "SHA256", signatureAlgorithm: "ECDSA_P256_SHA256" }),
      events.samStarted({ version: "1.0.0 \u00e9", headSequence: 3, moduleCheckpointSequence: 2 }),
      events.recordVersioned({ key: "signer/s-1 \ud83d\ude00", version: 7 }),
      events.samStopped({ cause: "signal" }),
    ];
    let sequence = 1;
    for (const event of built) {
      const { eventType, ...fields } = event;
      const args = { nodeId: "node-ü", sequence, time: new Date(Date.UTC(2026, 11, 7, 4, 0, 0, sequence)), eventType, fields, prevHash: new Uint8Array(32).fill(sequence) };
      expectSame(args);
      // As the audit log passes it: the event whole, its eventType not a field.
      const whole = newStoredRecord({ ...args, fields: event });
      expect(whole.body).toBe(legacyRecord(args).body);
      expect(toBase64(whole.hash)).toBe(toBase64(legacyRecord(args).hash));
      sequence++;
    }
  });

  it("R-3.2.2.4: a lone surrogate is refused as before (no record without a canonical form)", () => {
    const fields = { actor: { kind: "ACTOR_KIND_SYSTEM" }, outcome: "AUDIT_OUTCOME_SUCCESS", details: { bad: "\ud800" } } as unknown as AuditEventFields;
    const args = { nodeId: "n", sequence: 1, time: new Date(0), eventType: "a.b", fields, prevHash: ZERO_HASH };
    expect(() => legacyRecord(args)).toThrow();
    expect(() => newStoredRecord(args)).toThrow();
    expect(() => newStoredRecord({ ...args, fields: { ...fields, details: {}, signerId: "\udc00" } as unknown as AuditEventFields })).toThrow();
  });
});

describe("event building fast paths (issue 20)", () => {
  it("T-2.2.2.3: a detail that looks like a secret is refused every time, also after allowed keys were remembered", () => {
    const officer = { kind: "privileged-user", userId: "so-1", role: "SECURITY_OFFICER" } as const;
    const call = () => events.policyChanged({ requester: officer, oldVersion: 1, newVersion: 2, oldPolicy: { adminPin: "0000", sadLifetime: "1" }, newPolicy: { adminPin: "1111", sadLifetime: "2" } });
    for (let i = 0; i < 3; i++) expect(call).toThrow(/looks like a secret/);
    expect(() => events.policyChanged({ requester: officer, oldVersion: 1, newVersion: 2, oldPolicy: { sadLifetime: "1" }, newPolicy: { sadLifetime: "2" } })).not.toThrow();
  });

  it("R-3.2.2.4: a well-formed string is kept as is and a lone surrogate still replaced", () => {
    const sca = (subject: string) => ({ kind: "sca", subject }) as const;
    const made = (subject: string) => events.signatureCreated({ sca: sca(subject), signerId: "s", credentialId: "c", transactionId: "t", hash: new Uint8Array(32), hashAlgorithm: "SHA256", signatureAlgorithm: "ES256" });
    expect(made("CN=\ud83d\ude00 ok").actor.id).toBe("CN=\ud83d\ude00 ok");
    expect(made("CN=\ud800x").actor.id).toBe("CN=\uFFFDx");
    expect(made("CN=x\udc00").actor.id).toBe("CN=x\uFFFD");
  });
});

describe("signature.created from a per-call template (issue 20)", () => {
  it("R-3.2.2.4: events and records are byte-identical to the builder's over 5,000 random inputs, calls interleaved and actors changed in place", () => {
    const rand = generator(2020);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const lone = ["\ud800", "\udc00", "a\udbff", "\udfffz"];
    const someText = (): string => (rand() < 0.1 ? pick(lone) : "") + text(rand);
    type Input = Parameters<typeof events.signatureCreated>[0];
    const newCall = (): Input => {
      const sca: { kind: "sca"; subject: string; certificateSha256?: Uint8Array } = { kind: "sca", subject: someText() };
      if (rand() < 0.7) sca.certificateSha256 = new Uint8Array(32).map(() => Math.floor(rand() * 256));
      const input: Input = {
        sca,
        signerId: rand() < 0.1 ? "" : someText() || "s",
        credentialId: rand() < 0.1 ? "" : someText() || "c",
        transactionId: rand() < 0.1 ? "" : someText() || "t",
        hash: new Uint8Array(32),
        hashAlgorithm: pick(["SHA256", "SHA384", "SHA512", "NONE", ""]) as Input["hashAlgorithm"],
        signatureAlgorithm: pick(["ECDSA", "RSA_PSS", "ED25519", "", "ES256", someText()]),
      };
      const r = rand();
      if (r < 0.6) input.requestId = someText() || "r";
      else if (r < 0.7) input.requestId = "";
      return input;
    };
    const calls = Array.from({ length: 6 }, newCall);
    let prevHash = ZERO_HASH;
    let templated = 0;
    for (let sequence = 1; sequence <= 5000; sequence++) {
      // Mostly the same call many times over (a SignHash or a stream batch), sometimes another one,
      // a new one, or the same actor object or certificate bytes changed in place.
      const r = rand();
      if (r < 0.02) calls[Math.floor(rand() * calls.length)] = newCall();
      const call = calls[rand() < 0.8 ? 0 : Math.floor(rand() * calls.length)]!;
      if (r > 0.99) (call.sca as { subject: string }).subject = someText();
      const cert = call.sca.certificateSha256;
      if (r > 0.98 && r <= 0.99 && cert) cert[Math.floor(rand() * 32)]! ^= 1;
      const length = rand() < 0.02 ? pick([0, 2049, 3000]) : 1 + Math.floor(rand() * 64);
      const input = { ...call, hash: new Uint8Array(length).map(() => Math.floor(rand() * 256)) };
      const event = events.signatureCreated(input);
      const reference = events.builtForms.signatureCreated(input);
      expect(event).toEqual(reference);
      expect(JSON.stringify(event)).toBe(JSON.stringify(reference));
      expect(Object.isFrozen(event)).toBe(true);
      if (precomputedMembers(event)) templated++;
      const { eventType, ...fields } = reference;
      const args = { nodeId: rand() < 0.9 ? "node-1" : text(rand) || "n", sequence, time: new Date(Date.UTC(2026, 0, 1) + Math.floor(rand() * 1e10)), eventType, prevHash };
      const record = newStoredRecord({ ...args, fields: event }); // as the audit log passes it: the event whole
      const built = newStoredRecord({ ...args, fields: reference });
      const legacy = legacyRecord({ ...args, fields });
      expect(record.body).toBe(built.body);
      expect(record.body).toBe(legacy.body);
      expect(toBase64(record.hash)).toBe(toBase64(built.hash));
      expect(toBase64(record.hash)).toBe(toBase64(legacy.hash));
      prevHash = record.hash;
    }
    expect(templated).toBeGreaterThan(4500); // the template's path is the one taken (the rest: empty or oversized hashes)
  });

  it("R-3.2.2.4: an event's attached members are not copied by a spread (the copy is made canonical in full)", () => {
    const sca = { kind: "sca", subject: "CN=SCA" } as const;
    const event = events.signatureCreated({ sca, signerId: "s", credentialId: "c", transactionId: "t", hash: new Uint8Array([1, 2]), hashAlgorithm: "SHA256", signatureAlgorithm: "ECDSA" });
    expect(precomputedMembers(event)).toBeDefined();
    expect(precomputedMembers({ ...event })).toBeUndefined();
    expect(Object.keys(event)).toEqual(Object.keys(events.builtForms.signatureCreated({ sca, signerId: "s", credentialId: "c", transactionId: "t", hash: new Uint8Array([1, 2]), hashAlgorithm: "SHA256", signatureAlgorithm: "ECDSA" })));
  });
});
