/**
 * `inkan audit verify`: checks the audit log (R-3.2.2.4) and prints OK or, per node, the first
 * break with its sequence and kind. Exit code 0 when every chain verifies, 1 when one does not
 * (or the log cannot be read), 2 for a usage error.
 *
 *   inkan audit verify [--data-dir DIR] [--config FILE] [--node ID] [--json]
 *       the live log of every node (or one): the configured store (the data directory's SQLite
 *       file, or the PostgreSQL database the nodes share: INKAN_STORE), the configured crypto
 *       module's audit key and the checkpoints the module keeps for each node (truncation of the
 *       database is detected)
 *   inkan audit verify --file EXPORT.jsonl --public-key KEY [--partial] [--json]
 *       an export, offline, with the audit public key (PEM SPKI or JWK JSON) obtained out of
 *       band; --partial accepts records after the last checkpoint (a to_sequence export)
 */
import { createReadStream, existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import type { JWK } from "jose";
import { readHighWaterMarks } from "../audit/checkpoint.js";
import { verifyAuditExport, type ExportVerification } from "../audit/export.js";
import { verifyAuditLog, type AuditVerification } from "../audit/verify.js";
import { readEnv, storeOf, withConfigFile, type RawConfig } from "../config/config.js";
import { openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { createPkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import type { Store } from "../store/port.js";
import { createPostgresStore } from "../store/postgres/postgres-store.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";

const usage = `usage:
  inkan audit verify [--data-dir DIR] [--config FILE] [--node ID] [--json]
  inkan audit verify --file EXPORT.jsonl --public-key KEY [--partial] [--json]`;

/** Runs `inkan audit verify ...` (args after "audit"); resolves to the exit code. */
export async function auditVerifyCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "verify") {
    console.error(usage);
    return 2;
  }
  let values: { "data-dir"?: string; config?: string; node?: string; file?: string; "public-key"?: string; partial?: boolean; json?: boolean };
  try {
    values = parseArgs({
      args: rest,
      options: {
        "data-dir": { type: "string" },
        config: { type: "string" },
        node: { type: "string" },
        file: { type: "string" },
        "public-key": { type: "string" },
        partial: { type: "boolean" },
        json: { type: "boolean" },
      },
    }).values;
  } catch (err) {
    console.error(`inkan audit verify: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (values.file !== undefined || values["public-key"] !== undefined) {
    if (!values.file || !values["public-key"] || values.node !== undefined || values["data-dir"] !== undefined || values.config !== undefined) {
      console.error(`inkan audit verify: --file needs --public-key (and takes no --data-dir or --node)\n${usage}`);
      return 2;
    }
    return verifyFile(values.file, values["public-key"], values.partial ?? false, values.json ?? false);
  }
  // The settings as `inkan serve` reads them: the flag, then INKAN_*, then the config file.
  const raw: RawConfig = { ...readEnv() };
  if (values["data-dir"] !== undefined) raw.dataDir = values["data-dir"];
  if (values.config !== undefined) raw.configFile = values.config;
  return verifyDataDir(withConfigFile(raw), values.node, values.json ?? false);
}

/**
 * Issue 21: the store and crypto module the settings name (INKAN_STORE, INKAN_PKCS11_*), as
 * `inkan serve` would open them, without the serving settings (TLS files): every node's chain in
 * a shared PostgreSQL database, with each node's checkpoint in the shared module.
 */
async function verifyDataDir(raw: RawConfig, nodeId: string | undefined, json: boolean): Promise<number> {
  const dataDir = resolve(raw.dataDir ?? ".data");
  let result: AuditVerification;
  try {
    const named = storeOf(raw.store, dataDir);
    if (named.kind === "mongodb") throw new Error("this command opens a SQLite file or a PostgreSQL database; for a MongoDB store, have a running node verify it: inkan admin audit verify");
    if (named.kind === "sqlite" && !existsSync(named.file)) {
      console.error(`inkan audit verify: no store at ${named.file}`);
      return 1;
    }
    const cryptoModule = raw.pkcs11Library
      ? await createPkcs11CryptoModule({ library: raw.pkcs11Library, token: raw.pkcs11Token ?? "", ...(raw.pkcs11PinFile ? { pin: { file: raw.pkcs11PinFile } } : {}) })
      : await openEmbeddedCryptoModule(dataDir);
    try {
      const store: Store = named.kind === "postgres" ? await createPostgresStore({ uri: named.uri, poolSize: 2 }) : await createSqliteStore({ file: named.file });
      try {
        const marks = await readHighWaterMarks(cryptoModule, nodeId === undefined ? [] : [nodeId]);
        result = await verifyAuditLog(store, await cryptoModule.systemPublicKey("audit-signing"), marks, nodeId === undefined ? {} : { nodeId });
      } finally {
        await store.close();
      }
    } finally {
      await cryptoModule.close();
    }
  } catch (err) {
    console.error(`inkan audit verify: ${(err as Error).message}`);
    return 1;
  }
  if (json) {
    console.log(JSON.stringify(result));
  } else if (result.nodes.length === 0) {
    console.log("OK (no audit records)");
  } else {
    for (const n of result.nodes) {
      console.log(
        n.problem
          ? `node ${n.nodeId}: BROKEN at sequence ${n.problem.firstBadSequence}: ${n.problem.kind} (${n.problem.description})`
          : `node ${n.nodeId}: OK, ${n.lastSequence} records, last checkpoint ${n.lastCheckpointSequence}, crypto module checkpoint ${n.moduleCheckpointSequence}`,
      );
    }
    console.log(result.ok ? "OK" : "BROKEN");
  }
  return result.ok ? 0 : 1;
}

async function readPublicKey(path: string): Promise<Uint8Array | JWK> {
  const text = (await readFile(path, "utf8")).trim();
  if (text.startsWith("{")) return JSON.parse(text) as JWK;
  const b64 = /-----BEGIN PUBLIC KEY-----([\s\S]+?)-----END PUBLIC KEY-----/.exec(text)?.[1];
  if (!b64) throw new Error(`${path} is neither a PEM public key nor a JWK`);
  return new Uint8Array(Buffer.from(b64.replace(/\s+/g, ""), "base64"));
}

async function verifyFile(file: string, publicKeyFile: string, partial: boolean, json: boolean): Promise<number> {
  let result: ExportVerification;
  try {
    const key = await readPublicKey(publicKeyFile);
    const input = createReadStream(file, { encoding: "utf8" });
    const lines = createInterface({ input, crlfDelay: Infinity });
    try {
      result = await verifyAuditExport(lines, key, { requireCheckpointedTail: !partial });
    } finally {
      lines.close();
      input.destroy();
    }
  } catch (err) {
    console.error(`inkan audit verify: ${(err as Error).message}`);
    return 1;
  }
  if (json) {
    console.log(JSON.stringify(result));
  } else {
    for (const n of result.nodes) {
      console.log(
        n.problem
          ? `node ${n.nodeId}: BROKEN at sequence ${n.problem.firstBadSequence}: ${n.problem.kind} (${n.problem.description})`
          : `node ${n.nodeId}: OK, records ${n.firstSequence} to ${n.lastSequence}, last checkpoint ${n.lastCheckpointSequence}`,
      );
    }
    if (result.fileProblem) console.log(`file: BROKEN at line ${result.fileProblem.line}: ${result.fileProblem.kind} (${result.fileProblem.description})`);
    console.log(result.ok ? "OK" : "BROKEN");
  }
  return result.ok ? 0 : 1;
}
