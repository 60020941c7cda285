-- Core tables every service uses: hash-chained audit, transactional outbox, idempotency keys,
-- job leases and the consumed-event ledger. SQLite dialect (see 0001_core.pg.sql).

-- Audit: one hash chain per `chain` (a service name). Rows are never updated or deleted.
CREATE TABLE gh_audit (
  chain        TEXT    NOT NULL,
  seq          INTEGER NOT NULL,
  ts_ms        INTEGER NOT NULL,
  actor        TEXT    NOT NULL,
  action       TEXT    NOT NULL,
  entity_type  TEXT    NOT NULL,
  entity_id    TEXT    NOT NULL,
  tenant_id    TEXT,
  request_id   TEXT,
  payload      TEXT    NOT NULL,  -- canonical JSON
  prev_hash    TEXT    NOT NULL,
  hash         TEXT    NOT NULL,
  PRIMARY KEY (chain, seq)
);
CREATE INDEX gh_audit_entity ON gh_audit (chain, entity_type, entity_id, seq);
-- The chain head: serialises appends and lets verify notice a truncated tail.
CREATE TABLE gh_audit_head (
  chain TEXT PRIMARY KEY,
  seq   INTEGER NOT NULL,
  hash  TEXT    NOT NULL
);

-- Outbox: written in the transaction of the state change, published by the relay in id order.
CREATE TABLE gh_outbox (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id      TEXT    NOT NULL UNIQUE,
  subject       TEXT    NOT NULL,
  aggregate_id  TEXT    NOT NULL,
  aggregate_seq INTEGER NOT NULL,
  envelope      TEXT    NOT NULL,
  created_ms    INTEGER NOT NULL,
  published_ms  INTEGER
);
CREATE INDEX gh_outbox_pending ON gh_outbox (id) WHERE published_ms IS NULL;
CREATE TABLE gh_outbox_agg (
  aggregate_id TEXT PRIMARY KEY,
  seq          INTEGER NOT NULL
);

-- Idempotency keys (specs/conventions.md): the stored response is replayed for the same key
-- and body; a different body under the same key is refused.
CREATE TABLE gh_idem (
  scope        TEXT    NOT NULL,
  idem_key     TEXT    NOT NULL,
  request_hash TEXT    NOT NULL,
  status       INTEGER NOT NULL,
  content_type TEXT    NOT NULL,
  body         TEXT    NOT NULL,
  created_ms   INTEGER NOT NULL,
  expires_ms   INTEGER NOT NULL,
  PRIMARY KEY (scope, idem_key)
);
CREATE INDEX gh_idem_expiry ON gh_idem (expires_ms);

-- Leases: a job meant to run once per deployment holds one while it runs.
CREATE TABLE gh_lease (
  name       TEXT    PRIMARY KEY,
  holder     TEXT    NOT NULL,
  expires_ms INTEGER NOT NULL
);

-- Consumers are idempotent by event id.
CREATE TABLE gh_consumed (
  consumer    TEXT    NOT NULL,
  event_id    TEXT    NOT NULL,
  consumed_ms INTEGER NOT NULL,
  PRIMARY KEY (consumer, event_id)
);
