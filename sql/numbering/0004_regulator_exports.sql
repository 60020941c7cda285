-- numbering: regulator exports (specs/numbering.md "Regulator export"; src/numbering/export.c).
-- One row per archived month: written in the transaction that emits
-- numbering.regulator.export.generated.v1, so the primary key makes the event happen once.
-- The files themselves live in the write-once archive (numbering/regulator/<month>/...).
CREATE TABLE num_exports (
  month           TEXT    PRIMARY KEY,  -- "2026-10", also the export's id
  created_ms      BIGINT  NOT NULL,
  actor           TEXT    NOT NULL,
  chain_first_seq BIGINT  NOT NULL,     -- audit rows of the month: first_seq .. last_seq
  chain_last_seq  BIGINT  NOT NULL,
  chain_hash      TEXT    NOT NULL,     -- hash of row last_seq (64 zeros when 0)
  inventory_rows  BIGINT  NOT NULL,
  events_rows     BIGINT  NOT NULL,
  manifest_sha256 TEXT    NOT NULL,
  key_id          TEXT    NOT NULL,
  algorithm       TEXT    NOT NULL,
  event_id        TEXT    NOT NULL
);
