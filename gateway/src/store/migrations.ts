/**
 * The gateway store's schema, by version (append only: a released migration never changes). The
 * gateway keeps only relay state: no PIN, device key, SAD or SAP token (README, "What the gateway keeps").
 */
export const migrations: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      -- A signing request an SCA posted: the SAM's SadChallenge (public: what the signer is asked),
      -- reachable by an unguessable id, until the signer approves or declines or it expires.
      CREATE TABLE requests (
        id TEXT PRIMARY KEY,              -- 256-bit random, base64url: the request URL's secret part
        signer_id TEXT NOT NULL,
        credential_id TEXT NOT NULL,
        sca TEXT NOT NULL,                -- the SCA's certificate subject, shown to the signer
        sca_fingerprint TEXT NOT NULL,    -- SHA-256 of the SCA's certificate: only it reads the outcome
        transaction_id TEXT NOT NULL,
        challenge_json TEXT NOT NULL,     -- the SadChallenge as the SAM signed it (protobuf JSON)
        expires_at INTEGER NOT NULL,      -- the transaction's expiry, ms since the epoch
        created_at INTEGER NOT NULL,
        -- pending: waiting for the signer; submitted: an R.SAD is on its way to the SCA (held in
        -- memory only); authorized, declined, failed, cancelled: final.
        state TEXT NOT NULL CHECK (state IN ('pending', 'submitted', 'authorized', 'declined', 'failed', 'cancelled')),
        version INTEGER NOT NULL,         -- bumped on every change, for the long polls
        refusal TEXT,                     -- the SAM's reason for the last refused R.SAD (e.g. a wrong PIN)
        refusals INTEGER NOT NULL DEFAULT 0, -- refused R.SADs so far (the SAM allows max_authorize_attempts)
        signed INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX requests_signer ON requests (signer_id, state);
      -- A portal session: opened when the SAM verified the device's key (AuthenticateDevice).
      CREATE TABLE portal_sessions (
        token_hash TEXT PRIMARY KEY,      -- SHA-256 of the bearer token; the token itself is never stored
        signer_id TEXT NOT NULL,
        device_key_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    sql: `
      -- Issue 16: a request filed by the CSC API (oauth2code) names where the portal sends the
      -- signer's browser once they decided: a path of this gateway (/csc/v2/oauth2/return?request=...),
      -- checked when filed and again by the page. NULL for a request an SCA posted.
      ALTER TABLE requests ADD COLUMN return_to TEXT;
    `,
  },
];

/**
 * The same schema in the shared PostgreSQL database (schema inkan_gateway, its own migration
 * versions; append only). Times are ms since the epoch (BIGINT).
 */
export const pgMigrations: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        signer_id TEXT NOT NULL,
        credential_id TEXT NOT NULL,
        sca TEXT NOT NULL,
        sca_fingerprint TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        challenge_json TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'submitted', 'authorized', 'declined', 'failed', 'cancelled')),
        version INTEGER NOT NULL,
        refusal TEXT,
        refusals INTEGER NOT NULL DEFAULT 0,
        signed INTEGER NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        return_to TEXT
      );
      CREATE INDEX requests_signer ON requests (signer_id, state);
      CREATE TABLE portal_sessions (
        token_hash TEXT PRIMARY KEY,
        signer_id TEXT NOT NULL,
        device_key_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL
      );
    `,
  },
];
