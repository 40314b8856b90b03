/**
 * Versioned schema of the PostgreSQL store. Each migration runs once, in order, in the
 * transaction that records it in `schema_migrations`, under a transaction-level advisory lock, so
 * several nodes starting together against one database migrate exactly once (PostgreSQL DDL is
 * transactional: a failed migration leaves nothing behind). Never edit a released migration:
 * append a new one.
 *
 * Conventions (the SQLite schema's, translated): times are BIGINT milliseconds since the epoch,
 * passed in by the caller (the port's rule); hashes, seals, signatures and MACs are BYTEA.
 * Bodies are BYTEA holding the caller's string as UTF-8, because TEXT cannot hold U+0000 and the
 * store returns every body exactly. Text keys use the "C" collation: byte order, as in SQLite
 * and JavaScript, whatever the database's locale (cursors and "sorted" lists depend on it).
 */
export interface PgMigration {
  version: number;
  name: string;
  sql: string;
}

export const pgMigrations: readonly PgMigration[] = [
  {
    version: 1,
    name: "initial schema",
    sql: `
-- Sealed records: queryable fields are columns; body and seal are stored exactly as given.
CREATE TABLE signers (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  status TEXT COLLATE "C" NOT NULL,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE INDEX signers_by_status ON signers (status, id);

CREATE TABLE factors (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  signer_id TEXT COLLATE "C" NOT NULL,
  type TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE INDEX factors_by_signer ON factors (signer_id, id);

CREATE TABLE credentials (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  signer_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  -- T-2.1.4.4: a public key known to the SAM cannot be added twice
  public_key_fingerprint TEXT COLLATE "C" NOT NULL CONSTRAINT credentials_public_key_fingerprint_key UNIQUE,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE INDEX credentials_by_signer ON credentials (signer_id, id);
CREATE INDEX credentials_by_status ON credentials (status, id);

CREATE TABLE privileged_users (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  role TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  certificate_fingerprint TEXT COLLATE "C" NOT NULL CONSTRAINT privileged_users_certificate_fingerprint_key UNIQUE,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE INDEX privileged_users_by_role ON privileged_users (role, id);

CREATE TABLE privileged_user_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  user_id TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  key_fingerprint TEXT COLLATE "C" NOT NULL CONSTRAINT privileged_user_keys_key_fingerprint_key UNIQUE,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE INDEX privileged_user_keys_by_user ON privileged_user_keys (user_id, id);

CREATE TABLE policy_versions (
  id TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL CHECK (version >= 1),
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL,
  PRIMARY KEY (id, version)
);

-- Transactions and their ordered DTBS/R lists (one row per entry, so memory stays bounded).
CREATE TABLE transactions (
  id TEXT COLLATE "C" PRIMARY KEY,
  credential_id TEXT COLLATE "C" NOT NULL,
  signer_id TEXT COLLATE "C" NOT NULL,
  sca TEXT COLLATE "C" NOT NULL,
  hash_algorithm TEXT COLLATE "C" NOT NULL,
  num_signatures INTEGER NOT NULL CHECK (num_signatures >= 1),
  body BYTEA NOT NULL,
  state TEXT COLLATE "C" NOT NULL CHECK (state IN ('PENDING', 'AUTHORIZED', 'COMPLETED', 'CANCELLED', 'REVOKED', 'FAILED')),
  hash_count INTEGER NOT NULL DEFAULT 0 CHECK (hash_count >= 0),
  dtbsr_digest BYTEA,
  -- R-3.2.2.2, T-2.2.1.3: the hash of the one-time challenge, set with the digest (or at creation).
  challenge_hash TEXT COLLATE "C",
  -- T-2.2.1.6: the database itself refuses a counter above the authorized number.
  signatures_created INTEGER NOT NULL DEFAULT 0 CHECK (signatures_created BETWEEN 0 AND num_signatures),
  authorize_failures INTEGER NOT NULL DEFAULT 0 CHECK (authorize_failures >= 0),
  -- Issue 14 (T-2.2.2.2): what Authorize verified, sealed with a module key.
  authorization_body BYTEA,
  authorization_seal BYTEA,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  authorized_at BIGINT,
  updated_at BIGINT NOT NULL
);
CREATE INDEX transactions_by_expiry ON transactions (expires_at);
CREATE INDEX transactions_open_by_signer ON transactions (signer_id, state);

CREATE TABLE dtbsr (
  transaction_id TEXT COLLATE "C" NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL CHECK (idx >= 0),
  hash BYTEA NOT NULL,
  signed BOOLEAN NOT NULL DEFAULT FALSE,
  signature BYTEA,
  mac BYTEA,
  PRIMARY KEY (transaction_id, idx)
);
CREATE INDEX dtbsr_by_hash ON dtbsr (transaction_id, hash, signed, idx);

-- One-time objects, each consumed by one conditional UPDATE.
CREATE TABLE challenges (
  hash TEXT COLLATE "C" PRIMARY KEY,
  purpose TEXT COLLATE "C" NOT NULL,
  subject TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  consumed_at BIGINT
);
CREATE INDEX challenges_by_expiry ON challenges (expires_at);
CREATE INDEX challenges_open_by_subject ON challenges (purpose, subject, expires_at) WHERE consumed_at IS NULL;

CREATE TABLE sad_tokens (
  hash TEXT COLLATE "C" PRIMARY KEY,
  transaction_id TEXT COLLATE "C" NOT NULL,
  generation INTEGER NOT NULL CHECK (generation >= 0),
  -- T-2.2.1.3: a token is rotated at most once
  previous_hash TEXT COLLATE "C" CONSTRAINT sad_tokens_previous_hash_key UNIQUE,
  min_index INTEGER NOT NULL DEFAULT 0 CHECK (min_index >= 0),
  mac BYTEA,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  consumed_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX sad_tokens_by_transaction ON sad_tokens (transaction_id);
CREATE INDEX sad_tokens_by_expiry ON sad_tokens (expires_at);

CREATE TABLE activation_codes (
  id TEXT COLLATE "C" PRIMARY KEY,
  signer_id TEXT COLLATE "C" NOT NULL,
  code_hash TEXT COLLATE "C" NOT NULL,
  attempts_left INTEGER NOT NULL CHECK (attempts_left >= 0),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  consumed_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX activation_codes_by_signer ON activation_codes (signer_id);
CREATE INDEX activation_codes_by_expiry ON activation_codes (expires_at);

CREATE TABLE used_jtis (
  key TEXT COLLATE "C" PRIMARY KEY,
  used_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);

-- T-2.1.2.2, T-2.2.1.3: one row per factor check in flight (or crashed mid-check); never purged.
CREATE TABLE attempt_reservations (
  subject TEXT COLLATE "C" NOT NULL CHECK (subject <> ''),
  id TEXT COLLATE "C" NOT NULL CHECK (id <> ''),
  reserved_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL CHECK (expires_at > reserved_at),
  PRIMARY KEY (subject, id)
);
CREATE INDEX attempt_reservations_by_expiry ON attempt_reservations (subject, expires_at);

-- R-3.2.1.6: requests under dual control; one PENDING record per (method, digest, requester).
CREATE TABLE pending_approvals (
  id TEXT COLLATE "C" PRIMARY KEY,
  version BIGINT NOT NULL CHECK (version >= 1),
  method TEXT COLLATE "C" NOT NULL,
  request_digest TEXT COLLATE "C" NOT NULL,
  request TEXT COLLATE "C" NOT NULL,
  requested_by TEXT COLLATE "C" NOT NULL,
  requested_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  state TEXT COLLATE "C" NOT NULL CHECK (state IN ('PENDING', 'APPROVED', 'EXECUTED', 'FAILED', 'REJECTED', 'EXPIRED')),
  decided_by TEXT COLLATE "C",
  decided_at BIGINT,
  body BYTEA NOT NULL,
  seal BYTEA NOT NULL
);
CREATE UNIQUE INDEX pending_approvals_one_pending ON pending_approvals (method, request_digest, requested_by)
  WHERE state = 'PENDING';
CREATE INDEX pending_approvals_by_state ON pending_approvals (state, id);
CREATE INDEX pending_approvals_by_requester ON pending_approvals (requested_by, id);

-- Audit: append-only per node. The triggers stop the SAM's own code from changing history; they
-- are no defence against a database owner (the hash chain and the signed checkpoints are).
CREATE TABLE audit_records (
  node_id TEXT COLLATE "C" NOT NULL,
  sequence BIGINT NOT NULL CHECK (sequence >= 1),
  time BIGINT NOT NULL,
  event TEXT COLLATE "C" NOT NULL,
  body BYTEA NOT NULL,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL,
  PRIMARY KEY (node_id, sequence)
);
CREATE INDEX audit_records_by_event ON audit_records (node_id, event, sequence);

CREATE TABLE audit_checkpoints (
  node_id TEXT COLLATE "C" NOT NULL,
  sequence BIGINT NOT NULL CHECK (sequence >= 1),
  time BIGINT NOT NULL,
  body BYTEA NOT NULL,
  signature BYTEA NOT NULL,
  PRIMARY KEY (node_id, sequence)
);

CREATE FUNCTION inkan_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_records
  FOR EACH STATEMENT EXECUTE FUNCTION inkan_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION inkan_append_only();
`,
  },
  {
    version: 2,
    name: "claims with leases",
    sql: `
-- Issue 17 (T-2.2.1.6): a DTBS/R entry is claimed by one request (claim_id) of one node and boot,
-- under a lease (lease_until, ms of the database server's clock: the time source every node
-- shares); an entry claimed and not recorded can be claimed again once the lease expired, or at
-- once by a later boot of the same node. Recording needs the current claim. A consumed SAD token
-- remembers the claim it made. signatures_recorded counts recorded entries (issue 14: a signature
-- removed from a row by hand is detected). Rows claimed before this version are claimable again.
ALTER TABLE dtbsr ADD COLUMN claim_id TEXT COLLATE "C";
ALTER TABLE dtbsr ADD COLUMN claim_node TEXT COLLATE "C";
ALTER TABLE dtbsr ADD COLUMN claim_boot TEXT COLLATE "C";
ALTER TABLE dtbsr ADD COLUMN lease_until BIGINT;
ALTER TABLE sad_tokens ADD COLUMN claim_id TEXT COLLATE "C";
ALTER TABLE transactions ADD COLUMN signatures_recorded INTEGER NOT NULL DEFAULT 0 CHECK (signatures_recorded >= 0);
UPDATE transactions t SET signatures_recorded = (SELECT COUNT(*) FROM dtbsr d WHERE d.transaction_id = t.id AND d.signature IS NOT NULL);
CREATE INDEX dtbsr_by_claim ON dtbsr (transaction_id, claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX dtbsr_unrecorded ON dtbsr (transaction_id, idx) WHERE signed AND signature IS NULL;
`,
  },
  {
    version: 3,
    name: "DTBS/R lookup by hash without the signed flag",
    sql: `
-- Issue 20 (SQLite migration 12): the lookup of an entry by its hash (SignHash's pre-check and
-- claim, T-2.2.1.6) used an index holding the mutable signed flag, so every claim changed a key of
-- that index. The new index holds only columns fixed at upload; the signed flag is read from the
-- row. The by-hash queries are planned on it once the table has statistics
-- (dtbsr-lookup.test.ts). CREATE INDEX (not CONCURRENTLY, which cannot run in the migration's
-- transaction) blocks writes to dtbsr while it builds.
DROP INDEX dtbsr_by_hash;
CREATE INDEX dtbsr_by_hash_idx ON dtbsr (transaction_id, hash, idx);
`,
  },
];
