-- numbering: operators, MNO contracts, numbers, reservations, leases, quarantine records and
-- tenant pools (specs/numbering.md). PostgreSQL dialect (see 0001_numbering.sqlite.sql).
-- Numbers are keyed by the 64-bit gh_ident key (core e164.h) stored as a signed 64-bit integer;
-- state, kind and status columns hold the upper-case names of numbering/lifecycle.h.

-- Operators are data (E.212 defaults seeded by the service). idx is a small stable number (1, 2,
-- ...) given at creation and never reused: the number index stores it instead of the id.
CREATE TABLE num_operators (
  id            TEXT    PRIMARY KEY,
  idx           BIGINT  NOT NULL UNIQUE CHECK (idx BETWEEN 1 AND 65535),
  name          TEXT    NOT NULL,
  mcc           TEXT    NOT NULL,
  mncs          TEXT    NOT NULL,  -- space-separated
  prefixes      TEXT    NOT NULL,  -- space-separated canonical MSISDN prefixes
  valid_from_ms BIGINT  NOT NULL DEFAULT 0,  -- 0 = always
  valid_to_ms   BIGINT  NOT NULL DEFAULT 0,  -- 0 = open-ended
  version       BIGINT  NOT NULL DEFAULT 1,
  created_ms    BIGINT  NOT NULL,
  updated_ms    BIGINT  NOT NULL
);

-- Lease contracts with the MNOs (number blocks are imported under one).
CREATE TABLE num_contracts (
  id           TEXT    PRIMARY KEY,
  operator_id  TEXT    NOT NULL REFERENCES num_operators (id),
  contract_ref TEXT    NOT NULL,
  starts_ms    BIGINT  NOT NULL,
  ends_ms      BIGINT  NOT NULL DEFAULT 0,
  status       TEXT    NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'ENDED')),
  version      BIGINT  NOT NULL DEFAULT 1,
  created_ms   BIGINT  NOT NULL,
  updated_ms   BIGINT  NOT NULL
);

-- tenant_id: the holder of the live reservation or lease (RESERVED, ASSIGNED, SUSPENDED), else
-- NULL. operator_idx copies num_operators.idx (0 = none) so the index preload needs no join.
CREATE TABLE num_numbers (
  key          BIGINT  PRIMARY KEY,
  identifier   TEXT    NOT NULL UNIQUE,
  display      TEXT    NOT NULL,
  kind         TEXT    NOT NULL CHECK (kind IN ('MSISDN', 'SHORT_CODE', 'ALPHA')),
  operator_id  TEXT    REFERENCES num_operators (id),
  operator_idx BIGINT  NOT NULL DEFAULT 0,
  state        TEXT    NOT NULL CHECK (state IN ('AVAILABLE', 'RESERVED', 'ASSIGNED',
                                                 'SUSPENDED', 'QUARANTINED', 'RETIRED')),
  tenant_id    TEXT,
  vanity_tier  BIGINT  NOT NULL DEFAULT 0 CHECK (vanity_tier BETWEEN 0 AND 255),
  block_id     TEXT,
  contract_id  TEXT    REFERENCES num_contracts (id),
  version      BIGINT  NOT NULL CHECK (version >= 1),
  created_ms   BIGINT  NOT NULL,
  updated_ms   BIGINT  NOT NULL,
  CHECK ((tenant_id IS NOT NULL) = (state IN ('RESERVED', 'ASSIGNED', 'SUSPENDED')))
);
CREATE INDEX num_numbers_tenant ON num_numbers (tenant_id, key) WHERE tenant_id IS NOT NULL;
CREATE INDEX num_numbers_state ON num_numbers (state, key);
CREATE INDEX num_numbers_operator ON num_numbers (operator_id, key);

-- At most one live reservation per number (ended_ms IS NULL).
CREATE TABLE num_reservations (
  id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  number_key  BIGINT  NOT NULL REFERENCES num_numbers (key),
  tenant_id   TEXT    NOT NULL,
  created_ms  BIGINT  NOT NULL,
  expires_ms  BIGINT  NOT NULL,
  ended_ms    BIGINT ,
  end_action  TEXT
);
CREATE UNIQUE INDEX num_reservations_live ON num_reservations (number_key) WHERE ended_ms IS NULL;
CREATE INDEX num_reservations_due ON num_reservations (expires_ms) WHERE ended_ms IS NULL;

-- At most one live (not ENDED) lease per number.
CREATE TABLE num_leases (
  lease_id    TEXT    PRIMARY KEY,
  number_key  BIGINT  NOT NULL REFERENCES num_numbers (key),
  tenant_id   TEXT    NOT NULL,
  starts_ms   BIGINT  NOT NULL,
  ends_ms     BIGINT  NOT NULL CHECK (ends_ms > starts_ms),
  auto_renew  BIGINT  NOT NULL CHECK (auto_renew IN (0, 1)),
  status      TEXT    NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ENDED')),
  ended_ms    BIGINT ,
  created_ms  BIGINT  NOT NULL,
  updated_ms  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX num_leases_live ON num_leases (number_key) WHERE status <> 'ENDED';
CREATE INDEX num_leases_tenant ON num_leases (tenant_id, number_key);
CREATE INDEX num_leases_ending ON num_leases (ends_ms) WHERE status <> 'ENDED';

-- Quarantine records; at most one open (closed_ms IS NULL) per number. A 0-day cool-off
-- (RESERVATION_EXPIRED) is written already closed: the record is history.
CREATE TABLE num_quarantines (
  id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  number_key         BIGINT  NOT NULL REFERENCES num_numbers (key),
  reason             TEXT    NOT NULL CHECK (reason IN ('RESERVATION_EXPIRED', 'TENANT_RELEASE',
                                                        'RECALL_ADMIN', 'RECALL_ABUSE')),
  quarantined_ms     BIGINT  NOT NULL,
  until_ms           BIGINT  NOT NULL CHECK (until_ms >= quarantined_ms),
  previous_tenant_id TEXT,
  closed_ms          BIGINT ,
  close_action       TEXT
);
CREATE UNIQUE INDEX num_quarantines_open ON num_quarantines (number_key) WHERE closed_ms IS NULL;
CREATE INDEX num_quarantines_due ON num_quarantines (until_ms) WHERE closed_ms IS NULL;
CREATE INDEX num_quarantines_prev ON num_quarantines (previous_tenant_id) WHERE closed_ms IS NULL;

-- Tenant pools. held_* count the tenant's RESERVED + ASSIGNED + SUSPENDED numbers per kind and
-- reservations its live reservations; both change only by conditional UPDATEs in the
-- transitions' transactions, so quotas hold under concurrency. allowed_operators and
-- allowed_kinds are space-separated lists, NULL = any.
CREATE TABLE num_pools (
  tenant_id          TEXT    PRIMARY KEY,
  status             TEXT    NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
  segment            TEXT    NOT NULL,
  quota_msisdn       BIGINT  NOT NULL CHECK (quota_msisdn >= 0),
  quota_short_code   BIGINT  NOT NULL CHECK (quota_short_code >= 0),
  quota_alpha        BIGINT  NOT NULL CHECK (quota_alpha >= 0),
  held_msisdn        BIGINT  NOT NULL DEFAULT 0 CHECK (held_msisdn >= 0),
  held_short_code    BIGINT  NOT NULL DEFAULT 0 CHECK (held_short_code >= 0),
  held_alpha         BIGINT  NOT NULL DEFAULT 0 CHECK (held_alpha >= 0),
  max_reservations   BIGINT  NOT NULL CHECK (max_reservations >= 0),
  reservations       BIGINT  NOT NULL DEFAULT 0 CHECK (reservations >= 0),
  allowed_operators  TEXT,
  allowed_kinds      TEXT,
  vanity_allowed     BIGINT  NOT NULL CHECK (vanity_allowed IN (0, 1)),
  direct_assign      BIGINT  NOT NULL CHECK (direct_assign IN (0, 1)),
  lease_term_days    BIGINT  NOT NULL CHECK (lease_term_days BETWEEN 1 AND 3650),
  auto_renew         BIGINT  NOT NULL CHECK (auto_renew IN (0, 1)),
  version            BIGINT  NOT NULL DEFAULT 1,
  created_ms         BIGINT  NOT NULL,
  updated_ms         BIGINT  NOT NULL
);

-- Row-level security on the tenant-scoped tables. The service connects without the setting and
-- sees every row; a portal transaction runs SET LOCAL ghasi.tenant_id = '<tenant>' and then sees
-- only that tenant's rows. FORCE applies the policies to the table owner too (superusers and
-- BYPASSRLS roles still bypass them).
CREATE FUNCTION num_rls_tenant() RETURNS TEXT LANGUAGE sql STABLE AS
  $$ SELECT NULLIF(current_setting('ghasi.tenant_id', true), '') $$;

ALTER TABLE num_pools ENABLE ROW LEVEL SECURITY;
ALTER TABLE num_pools FORCE ROW LEVEL SECURITY;
CREATE POLICY num_pools_tenant ON num_pools
  USING (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant());

ALTER TABLE num_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE num_numbers FORCE ROW LEVEL SECURITY;
CREATE POLICY num_numbers_tenant ON num_numbers
  USING (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant());

ALTER TABLE num_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE num_reservations FORCE ROW LEVEL SECURITY;
CREATE POLICY num_reservations_tenant ON num_reservations
  USING (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant());

ALTER TABLE num_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE num_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY num_leases_tenant ON num_leases
  USING (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR tenant_id = num_rls_tenant());

ALTER TABLE num_quarantines ENABLE ROW LEVEL SECURITY;
ALTER TABLE num_quarantines FORCE ROW LEVEL SECURITY;
CREATE POLICY num_quarantines_tenant ON num_quarantines
  USING (num_rls_tenant() IS NULL OR previous_tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR previous_tenant_id = num_rls_tenant());
