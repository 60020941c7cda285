-- numbering: signed MNO imports (specs/numbering.md "MNO CSV import"). SQLite dialect (see
-- 0002_import.pg.sql).

-- Operators' signing keys for imports. key_id is the lower-case hex SHA-256 of the DER
-- SubjectPublicKeyInfo (core sign.h gh_sign_pubkey_id); algorithm is stated per key because a
-- plain RSA key can make both PKCS#1 v1.5 and PSS signatures. A key verifies uploads made in
-- [valid_from_ms, valid_until_ms) (valid_until_ms 0 = open-ended).
CREATE TABLE num_signing_keys (
  operator_id    TEXT    NOT NULL REFERENCES num_operators (id),
  key_id         TEXT    NOT NULL,
  algorithm      TEXT    NOT NULL CHECK (algorithm IN ('rsa-pkcs1-sha256', 'rsa-pss-sha256',
                                                       'ed25519')),
  public_key_pem TEXT    NOT NULL,
  valid_from_ms  INTEGER NOT NULL,
  valid_until_ms INTEGER NOT NULL DEFAULT 0,
  created_ms     INTEGER NOT NULL,
  actor          TEXT    NOT NULL,
  PRIMARY KEY (operator_id, key_id),
  CHECK (valid_until_ms = 0 OR valid_until_ms > valid_from_ms)
);

-- A contract's reference names it inside its operator's files (the CSV's contract_ref).
CREATE UNIQUE INDEX num_contracts_ref ON num_contracts (operator_id, contract_ref);

-- One row per upload, whatever its outcome. A file (by SHA-256) is imported once per operator:
-- re-uploading an ACCEPTED or PARTIAL file returns that batch. REJECTED batches (signature,
-- key, header) do not count: the same bytes may come again with a good signature.
CREATE TABLE num_import_batches (
  id             TEXT    PRIMARY KEY,
  operator_id    TEXT    NOT NULL REFERENCES num_operators (id),
  contract_id    TEXT    REFERENCES num_contracts (id),
  sha256         TEXT    NOT NULL,
  size_bytes     INTEGER NOT NULL,
  file_name      TEXT,
  status         TEXT    NOT NULL CHECK (status IN ('ACCEPTED', 'PARTIAL', 'REJECTED')),
  reason         TEXT,   -- REJECTED: SIGNATURE_MISSING, SIGNATURE_INVALID, NO_SIGNING_KEY, ...
  key_id         TEXT,   -- the key whose signature verified (or, for KEY_EXPIRED, would have)
  algorithm      TEXT,
  rows_total     INTEGER NOT NULL DEFAULT 0,
  rows_imported  INTEGER NOT NULL DEFAULT 0,
  rows_skipped   INTEGER NOT NULL DEFAULT 0,  -- already held by the same operator
  rows_rejected  INTEGER NOT NULL DEFAULT 0,
  created_ms     INTEGER NOT NULL,
  actor          TEXT    NOT NULL
);
CREATE UNIQUE INDEX num_import_batches_file ON num_import_batches (operator_id, sha256)
  WHERE status <> 'REJECTED';
CREATE INDEX num_import_batches_created ON num_import_batches (created_ms);

-- The error report of a batch, in line order (seq).
CREATE TABLE num_import_errors (
  batch_id TEXT    NOT NULL REFERENCES num_import_batches (id),
  seq      INTEGER NOT NULL,
  line     INTEGER NOT NULL,
  field    TEXT,
  code     TEXT    NOT NULL,
  reason   TEXT    NOT NULL,
  PRIMARY KEY (batch_id, seq)
);

-- Provenance of imported numbers (instead of one audit row per number: the batch's audit row
-- carries the file's SHA-256, which commits to every row) and the MNO's notes.
ALTER TABLE num_numbers ADD COLUMN import_batch_id TEXT REFERENCES num_import_batches (id);
ALTER TABLE num_numbers ADD COLUMN notes TEXT;
