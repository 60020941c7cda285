-- Event consumers and anomaly signals (issue 4, items 6 and 8).
-- num_billing_state: the billing status of each tenant as the last billing
-- event by event time set it: delinquent/paid events may arrive out of order or be handled
-- concurrently by two replicas, so each per-number suspend/resume transaction re-reads this
-- row (under the write lock) and applies only while it still holds the status it acts for.
-- Internal to the service (no tenant-facing reads). SQLite dialect (see the .pg.sql).
CREATE TABLE num_billing_state (
  tenant_id  TEXT    PRIMARY KEY,
  status     TEXT    NOT NULL CHECK (status IN ('DELINQUENT', 'PAID')),
  event_ms   INTEGER NOT NULL,
  event_id   TEXT    NOT NULL,
  updated_ms INTEGER NOT NULL
);

-- Anomaly signals (issue 4, item 8; numbering/anomaly.c): reserve/release churn per tenant over
-- the last hour and quarantines closed within the last 24 h are read by time.
CREATE INDEX num_reservations_created ON num_reservations (created_ms);
CREATE INDEX num_reservations_ended ON num_reservations (ended_ms) WHERE ended_ms IS NOT NULL;
CREATE INDEX num_quarantines_opened ON num_quarantines (quarantined_ms);
CREATE INDEX num_quarantines_closed ON num_quarantines (closed_ms) WHERE closed_ms IS NOT NULL;
