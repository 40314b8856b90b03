/**
 * The backup file of `inkan backup` (issue 22): one file, a header line, a manifest line (JSON),
 * then the bytes of each file the manifest lists, in its order.
 *
 *   INKAN-BACKUP/1\n
 *   {"snapshotId": ..., "store": "sqlite" | "postgres", "highWaterMarks": {...}, "files": [...]}\n
 *   <bytes of files[0]><bytes of files[1]>...
 *
 * The snapshot's identity is SHA-256 over the canonical JSON of the format, the store kind, each
 * file's path and SHA-256 (the store snapshot's among them) and the audit high-water marks: it
 * names exactly this content at this point of the audit log. Never in it: the crypto module's
 * token and PIN files (keys are backed up with the HSM's own tools).
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import canonicalize from "canonicalize";
import { InkanError } from "../errors.js";
import type { HighWaterMarks } from "../integrity/restore-state.js";

export const BUNDLE_HEADER = "INKAN-BACKUP/1";
/** The manifest path of the store snapshot (SQLite database file, or a pg_dump custom-format archive). */
export const STORE_ENTRY = { sqlite: "store/store.sqlite3", postgres: "store/store.pgdump" } as const;

export interface BundleFile {
  /** Relative to the data directory ("store/..." for the store snapshot). */
  path: string;
  size: number;
  sha256: string;
  mode: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_HEADER;
  snapshotId: string;
  takenAt: string;
  store: "sqlite" | "postgres";
  /** Node -> newest audit sequence in the snapshot. */
  highWaterMarks: HighWaterMarks;
  /** Node -> hex SHA-256 hash of the audit record at its mark: the chain the snapshot ends with. */
  highWaterHashes: Record<string, string>;
  files: BundleFile[];
  /** Not in the backup: back these up with the crypto module's own tools. */
  excluded: string[];
}

/** The snapshot's identity (see the module comment). */
export function snapshotIdOf(m: Pick<BundleManifest, "store" | "files" | "highWaterMarks" | "highWaterHashes">): string {
  const files = m.files.map((f) => ({ path: f.path, sha256: f.sha256 }));
  const { highWaterMarks, highWaterHashes } = m;
  return createHash("sha256").update(canonicalize({ format: BUNDLE_HEADER, store: m.store, files, highWaterMarks, highWaterHashes })!).digest("hex");
}

export function sha256File(path: string): { sha256: string; size: number } {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  const buf = Buffer.alloc(1 << 20);
  let size = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; size += n) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { sha256: hash.digest("hex"), size };
}

/** Writes the bundle: header, manifest, then each file's bytes from `sourceOf(path)`. */
export function writeBundle(out: string, manifest: BundleManifest, sourceOf: (path: string) => string): void {
  const fd = openSync(out, "wx", 0o600);
  try {
    writeSync(fd, `${BUNDLE_HEADER}\n${JSON.stringify(manifest)}\n`);
    const buf = Buffer.alloc(1 << 20);
    for (const f of manifest.files) {
      const src = openSync(sourceOf(f.path), "r");
      try {
        let left = f.size;
        while (left > 0) {
          const n = readSync(src, buf, 0, Math.min(buf.length, left), null);
          if (n <= 0) throw new InkanError("INVALID_REQUEST", `${f.path} shrank while it was backed up`);
          writeSync(fd, buf, 0, n);
          left -= n;
        }
      } finally {
        closeSync(src);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and checks a bundle: its header, manifest, every file's SHA-256 and the snapshot id.
 * Calls `extract(file, bytes)` for each file once checked. Throws INVALID_REQUEST when anything
 * does not match (a damaged or edited backup restores nothing).
 */
export function readBundle(path: string, extract: (file: BundleFile, bytes: Buffer) => void): BundleManifest {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(1 << 20);
    const n = readSync(fd, head, 0, head.length, 0);
    const first = head.indexOf(0x0a);
    const second = first < 0 ? -1 : head.indexOf(0x0a, first + 1);
    if (first < 0 || second < 0 || second >= n || head.subarray(0, first).toString() !== BUNDLE_HEADER) {
      throw new InkanError("INVALID_REQUEST", `${path} is not an inkan backup`);
    }
    const manifest = JSON.parse(head.subarray(first + 1, second).toString("utf8")) as BundleManifest;
    if (manifest.format !== BUNDLE_HEADER || !Array.isArray(manifest.files) || snapshotIdOf(manifest) !== manifest.snapshotId) {
      throw new InkanError("INVALID_REQUEST", `${path}: the manifest does not match its snapshot id`);
    }
    let offset = second + 1;
    for (const f of manifest.files) {
      if (f.path.split("/").some((p) => p === ".." || p === "") || f.path.startsWith("/")) throw new InkanError("INVALID_REQUEST", `${path}: bad file path ${f.path}`);
      const bytes = Buffer.alloc(f.size);
      if (readSync(fd, bytes, 0, f.size, offset) !== f.size) throw new InkanError("INVALID_REQUEST", `${path}: truncated at ${f.path}`);
      if (createHash("sha256").update(bytes).digest("hex") !== f.sha256) throw new InkanError("INVALID_REQUEST", `${path}: ${f.path} does not match its SHA-256`);
      offset += f.size;
      extract(f, bytes);
    }
    return manifest;
  } finally {
    closeSync(fd);
  }
}
