-- Tenant portal (issue 4): a portal transaction runs with SET LOCAL ghasi.tenant_id and must
-- still see the unheld inventory it browses, reserves and reclaims from: AVAILABLE,
-- QUARANTINED and RETIRED rows have tenant_id NULL and carry no tenant data (the quarantine
-- record, with previous_tenant_id, keeps its own policy). Another tenant's held number stays
-- invisible, and WITH CHECK lets a tenant transaction write a number row only as unheld or
-- held by that tenant.
DROP POLICY num_numbers_tenant ON num_numbers;
CREATE POLICY num_numbers_tenant ON num_numbers
  USING (num_rls_tenant() IS NULL OR tenant_id IS NULL OR tenant_id = num_rls_tenant())
  WITH CHECK (num_rls_tenant() IS NULL OR tenant_id IS NULL OR tenant_id = num_rls_tenant());
