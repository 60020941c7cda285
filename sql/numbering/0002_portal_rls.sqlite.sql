-- Tenant portal (issue 4): PostgreSQL widens the num_numbers row-level security policy to the
-- unheld inventory (0002_portal_rls.pg.sql). SQLite has no row-level security; the repository
-- scopes tenant reads on both backends. Nothing to change here.
SELECT 1;
