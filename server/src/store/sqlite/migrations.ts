/**
 * Versioned schema of the SQLite store. Each migration runs once, in order, inside the same
 * BEGIN IMMEDIATE transaction that records it in `schema_migrations`, so several processes
 * opening one file at once apply each migration exactly once. Never edit a released migration:
 * append a new one.
 *
 * Conventions: STRICT tables; times are INTEGER milliseconds since the epoch; hashes, seals and
 * signatures are BLOBs; one-time objects are keyed by the hash of their secret.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    sql: `
-- Sealed records: queryable fields are columns; body and seal are stored exactly as given.
CREATE TABLE signers (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  status TEXT NOT NULL,
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
CREATE INDEX signers_by_status ON signers (status, id);

CREATE TABLE factors (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  signer_id TEXT NOT NULL,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
CREATE INDEX factors_by_signer ON factors (signer_id, id);

CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  signer_id TEXT NOT NULL,
  status TEXT NOT NULL,
  public_key_fingerprint TEXT NOT NULL UNIQUE, -- T-2.1.4.4: a public key known to the SAM cannot be added twice
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
CREATE INDEX credentials_by_signer ON credentials (signer_id, id);
CREATE INDEX credentials_by_status ON credentials (status, id);

CREATE TABLE privileged_users (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  role TEXT NOT NULL,
  status TEXT NOT NULL,
  certificate_fingerprint TEXT NOT NULL UNIQUE,
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
CREATE INDEX privileged_users_by_role ON privileged_users (role, id);

CREATE TABLE privileged_user_keys (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  key_fingerprint TEXT NOT NULL UNIQUE,
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
CREATE INDEX privileged_user_keys_by_user ON privileged_user_keys (user_id, id);

CREATE TABLE policy_versions (
  id TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  body TEXT NOT NULL,
  seal BLOB NOT NULL,
  PRIMARY KEY (id, version)
) STRICT, WITHOUT ROWID;

-- Transactions and their ordered DTBS/R lists (one row per entry, so memory stays bounded).
CREATE TABLE transactions (
  id TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL,
  signer_id TEXT NOT NULL,
  sca TEXT NOT NULL,
  hash_algorithm TEXT NOT NULL,
  num_signatures INTEGER NOT NULL CHECK (num_signatures >= 1),
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'AUTHORIZED', 'COMPLETED', 'CANCELLED', 'REVOKED')),
  hash_count INTEGER NOT NULL DEFAULT 0 CHECK (hash_count >= 0),
  dtbsr_digest BLOB,
  -- T-2.2.1.6: the database itself refuses a counter above the authorized number.
  signatures_created INTEGER NOT NULL DEFAULT 0 CHECK (signatures_created BETWEEN 0 AND num_signatures),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  authorized_at INTEGER,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX transactions_by_expiry ON transactions (expires_at);

CREATE TABLE dtbsr (
  transaction_id TEXT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL CHECK (idx >= 0),
  hash BLOB NOT NULL,
  signed INTEGER NOT NULL DEFAULT 0 CHECK (signed IN (0, 1)),
  PRIMARY KEY (transaction_id, idx)
) STRICT, WITHOUT ROWID;
CREATE INDEX dtbsr_by_hash ON dtbsr (transaction_id, hash, signed, idx);

-- One-time objects, each consumed by one conditional UPDATE.
CREATE TABLE challenges (
  hash TEXT PRIMARY KEY,
  purpose TEXT NOT NULL,
  subject TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  consumed_at INTEGER
) STRICT;
CREATE INDEX challenges_by_expiry ON challenges (expires_at);

CREATE TABLE sad_tokens (
  hash TEXT PRIMARY KEY,
  transaction_id TEXT NOT NULL,
  generation INTEGER NOT NULL CHECK (generation >= 0),
  previous_hash TEXT UNIQUE, -- T-2.2.1.3: a token is rotated at most once
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  consumed_at INTEGER,
  revoked_at INTEGER
) STRICT;
CREATE INDEX sad_tokens_by_transaction ON sad_tokens (transaction_id);
CREATE INDEX sad_tokens_by_expiry ON sad_tokens (expires_at);

CREATE TABLE activation_codes (
  id TEXT PRIMARY KEY,
  signer_id TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  attempts_left INTEGER NOT NULL CHECK (attempts_left >= 0),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  consumed_at INTEGER,
  revoked_at INTEGER
) STRICT;
CREATE INDEX activation_codes_by_signer ON activation_codes (signer_id);
CREATE INDEX activation_codes_by_expiry ON activation_codes (expires_at);

CREATE TABLE used_jtis (
  key TEXT PRIMARY KEY,
  used_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);

-- Audit: append-only per node. The triggers stop the SAM's own code from changing history; they
-- are no defence against someone who can write the file (the hash chain and the signed
-- checkpoints are), so tampering tests drop them first.
CREATE TABLE audit_records (
  node_id TEXT NOT NULL,
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  time INTEGER NOT NULL,
  event TEXT NOT NULL,
  body TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (node_id, sequence)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

CREATE TABLE audit_checkpoints (
  node_id TEXT NOT NULL,
  sequence INTEGER NOT NULL CHECK (sequence >= 1),
  time INTEGER NOT NULL,
  body TEXT NOT NULL,
  signature BLOB NOT NULL,
  PRIMARY KEY (node_id, sequence)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
`,
  },
  {
    version: 2,
    name: "pending approvals (dual control)",
    sql: `
-- R-3.2.1.6: requests under dual control. Sealed by the caller like the records above; the
-- request and its digest are base64url TEXT because that is how the seal covers them.
CREATE TABLE pending_approvals (
  id TEXT PRIMARY KEY,
  version INTEGER NOT NULL CHECK (version >= 1),
  method TEXT NOT NULL,
  request_digest TEXT NOT NULL,
  request TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  requested_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'EXECUTED', 'FAILED', 'REJECTED', 'EXPIRED')),
  decided_by TEXT,
  decided_at INTEGER,
  body TEXT NOT NULL,
  seal BLOB NOT NULL
) STRICT;
-- The same request of the same requester is pending at most once.
CREATE UNIQUE INDEX pending_approvals_one_pending ON pending_approvals (method, request_digest, requested_by)
  WHERE state = 'PENDING';
CREATE INDEX pending_approvals_by_state ON pending_approvals (state, id);
CREATE INDEX pending_approvals_by_requester ON pending_approvals (requested_by, id);
`,
  },
  {
    version: 3,
    name: "transaction challenge hash",
    sql: `
-- R-3.2.2.2, T-2.2.1.3: the hash (base64url) of a transaction's one-time challenge, stored with
-- the DTBS/R digest when the list is frozen (or at creation for a list sealed at once). NULL while
-- uploading. Transactions sealed before this column existed kept the hash in their body: copy it.
ALTER TABLE transactions ADD COLUMN challenge_hash TEXT;
UPDATE transactions SET challenge_hash = json_extract(body, '$.challengeHash')
  WHERE json_valid(body) AND json_type(body, '$.challengeHash') = 'text';
`,
  },
  {
    version: 4,
    name: "recorded signatures",
    sql: `
-- SignStream resume (sam.proto): a claimed entry's signature, recorded after it was verified, so an
-- interrupted stream resends it (from_record) instead of signing the DTBS/R twice. NULL while
-- unsigned or in flight. Signatures are public values: not encrypted.
ALTER TABLE dtbsr ADD COLUMN signature BLOB;
`,
  },
  {
    version: 5,
    name: "transaction authorize failures and the FAILED state",
    sql: `
-- sam.proto Limits.max_authorize_attempts: a transaction counts its failed Authorize attempts and
-- ends in FAILED at the limit. A CHECK constraint cannot be changed in place, so both tables are
-- rebuilt: the DTBS/R list first (dropping transactions would cascade-delete it), then the
-- transactions; RENAME re-points the list's foreign key at the new table.
CREATE TABLE transactions_v5 (
  id TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL,
  signer_id TEXT NOT NULL,
  sca TEXT NOT NULL,
  hash_algorithm TEXT NOT NULL,
  num_signatures INTEGER NOT NULL CHECK (num_signatures >= 1),
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'AUTHORIZED', 'COMPLETED', 'CANCELLED', 'REVOKED', 'FAILED')),
  hash_count INTEGER NOT NULL DEFAULT 0 CHECK (hash_count >= 0),
  dtbsr_digest BLOB,
  -- T-2.2.1.6: the database itself refuses a counter above the authorized number.
  signatures_created INTEGER NOT NULL DEFAULT 0 CHECK (signatures_created BETWEEN 0 AND num_signatures),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  authorized_at INTEGER,
  updated_at INTEGER NOT NULL,
  challenge_hash TEXT,
  authorize_failures INTEGER NOT NULL DEFAULT 0 CHECK (authorize_failures >= 0)
) STRICT;
INSERT INTO transactions_v5 (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
    signatures_created, created_at, expires_at, authorized_at, updated_at, challenge_hash)
  SELECT id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
    signatures_created, created_at, expires_at, authorized_at, updated_at, challenge_hash FROM transactions;
CREATE TABLE dtbsr_v5 (
  transaction_id TEXT NOT NULL REFERENCES transactions_v5 (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL CHECK (idx >= 0),
  hash BLOB NOT NULL,
  signed INTEGER NOT NULL DEFAULT 0 CHECK (signed IN (0, 1)),
  signature BLOB,
  PRIMARY KEY (transaction_id, idx)
) STRICT, WITHOUT ROWID;
INSERT INTO dtbsr_v5 (transaction_id, idx, hash, signed, signature) SELECT transaction_id, idx, hash, signed, signature FROM dtbsr;
DROP TABLE dtbsr;
DROP TABLE transactions;
ALTER TABLE transactions_v5 RENAME TO transactions;
ALTER TABLE dtbsr_v5 RENAME TO dtbsr;
CREATE INDEX transactions_by_expiry ON transactions (expires_at);
CREATE INDEX dtbsr_by_hash ON dtbsr (transaction_id, hash, signed, idx);
`,
  },
  {
    version: 6,
    name: "open challenges by subject",
    sql: `
-- auth.proto CreateRequestNonce: a privileged user's unused nonces are counted at each issue.
CREATE INDEX challenges_open_by_subject ON challenges (purpose, subject, expires_at) WHERE consumed_at IS NULL;
`,
  },
  {
    version: 7,
    name: "stream token start index",
    sql: `
-- sam.proto SignStream: a stream's token keeps the stream's start index, so that the index written
-- in its resume tokens (client-held text) cannot be lowered.
ALTER TABLE sad_tokens ADD COLUMN min_index INTEGER NOT NULL DEFAULT 0 CHECK (min_index >= 0);
`,
  },
  {
    version: 8,
    name: "attempt reservations",
    sql: `
-- T-2.1.2.2, T-2.2.1.3: one row per factor check in flight (or crashed mid-check), reserved before
-- the check and counted per subject in the same BEGIN IMMEDIATE transaction, so concurrent checks
-- on any connection never exceed a signer's lockout threshold or a transaction's authorize
-- attempts. Expired rows still count until the domain clears them at a reset; never purged.
CREATE TABLE attempt_reservations (
  subject TEXT NOT NULL CHECK (subject <> ''),
  id TEXT NOT NULL CHECK (id <> ''),
  reserved_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL CHECK (expires_at > reserved_at),
  PRIMARY KEY (subject, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX attempt_reservations_by_expiry ON attempt_reservations (subject, expires_at);
`,
  },
  {
    version: 9,
    name: "sealed authorization, DTBS/R and token MACs",
    sql: `
-- Issue 14 (T-2.2.2.2, R-3.1.1.1, R-3.2.1.1): what Authorize verified, sealed with a module key and
-- checked before every signature; each DTBS/R entry and SAD token carries the SAM's MAC (a key
-- derived in the module per transaction), so rows inserted, cloned or edited in the file sign nothing.
ALTER TABLE transactions ADD COLUMN authorization_body TEXT;
ALTER TABLE transactions ADD COLUMN authorization_seal BLOB;
ALTER TABLE dtbsr ADD COLUMN mac BLOB;
ALTER TABLE sad_tokens ADD COLUMN mac BLOB;
CREATE INDEX transactions_open_by_signer ON transactions (signer_id, state);
`,
  },
  {
    version: 10,
    name: "audit records by event",
    sql: `
-- Issue 14 rollback detection: at start a node reads only the "record.versioned" events of each
-- node's chain (integrity/ROLLBACK.md), not the whole chain.
CREATE INDEX audit_records_by_event ON audit_records (node_id, event, sequence);
`,
  },
  {
    version: 11,
    name: "claims with leases",
    sql: `
-- Issue 17 (T-2.2.1.6): a DTBS/R entry is claimed by one request (claim_id) of one node and boot,
-- under a lease (lease_until, the store's clock, ms); an entry claimed and not recorded can be
-- claimed again once the lease expired, or at once by a later boot of the same node. Recording
-- needs the current claim. A consumed SAD token remembers the claim it made (a SignHash retried
-- after a crash takes exactly that claim over). signatures_recorded counts recorded entries, so a
-- signature removed from a row by hand (to sign that entry again) is detected (issue 14).
-- Rows claimed before this version (lease_until NULL) and never recorded are claimable again.
ALTER TABLE dtbsr ADD COLUMN claim_id TEXT;
ALTER TABLE dtbsr ADD COLUMN claim_node TEXT;
ALTER TABLE dtbsr ADD COLUMN claim_boot TEXT;
ALTER TABLE dtbsr ADD COLUMN lease_until INTEGER;
ALTER TABLE sad_tokens ADD COLUMN claim_id TEXT;
ALTER TABLE transactions ADD COLUMN signatures_recorded INTEGER NOT NULL DEFAULT 0 CHECK (signatures_recorded >= 0);
UPDATE transactions SET signatures_recorded = (SELECT COUNT(*) FROM dtbsr WHERE dtbsr.transaction_id = transactions.id AND dtbsr.signature IS NOT NULL);
CREATE INDEX dtbsr_by_claim ON dtbsr (transaction_id, claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX dtbsr_unrecorded ON dtbsr (transaction_id, idx) WHERE signed = 1 AND signature IS NULL;
`,
  },
  {
    version: 12,
    name: "DTBS/R lookup by hash without the signed flag",
    sql: `
-- Issue 20: the lookup of an entry by its hash (SignHash's pre-check and claim, T-2.2.1.6) used an
-- index that held the mutable signed flag, so every claim (by hash or by range) moved an entry of
-- that index. The new index holds only fixed columns (a claim no longer writes to it); the signed
-- flag is read from the row. The queries name it (INDEXED BY): without statistics the planner would
-- read every entry of the transaction by primary key instead.
DROP INDEX dtbsr_by_hash;
CREATE INDEX dtbsr_by_hash_idx ON dtbsr (transaction_id, hash, idx);
`,
  },
];
