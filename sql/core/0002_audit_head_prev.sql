-- The chain head also keeps the prev_hash of its last row, so that PostgreSQL can append a row
-- in one statement: the head upsert computes the new hash from the old one and returns both
-- (src/core/audit.c, append_pg_one). NULL on heads no append has moved since.
ALTER TABLE gh_audit_head ADD COLUMN prev_hash TEXT;
