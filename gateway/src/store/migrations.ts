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
        sca TEXT NOT NULL,                -- the SCA's certificate subject, shown to the signer
        transaction_id TEXT NOT NULL,
        challenge_json TEXT NOT NULL,     -- the SadChallenge as the SCA received it (protobuf JSON)
        expires_at INTEGER NOT NULL,      -- ms since the epoch
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'expired')),
        decided_at INTEGER
      ) STRICT;
      CREATE INDEX requests_signer ON requests (signer_id, state);
    `,
  },
];
