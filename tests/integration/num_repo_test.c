/* num_repo: the numbering database layer on SQLite and PostgreSQL: migrations, adding numbers,
 * every transition's side effects (rows, pool counters, outbox events in order, audit rows),
 * refused and conflicting transitions, the 100-thread race and the quota race, expiry and sweep
 * jobs, tenant-scoped reads, list filters and keyset paging, history, the audit chain after
 * random operations (and its tamper detection), the index preload checked against the
 * database, and PostgreSQL row-level security. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "gh-core.h"
#include "index.h"
#include "numfx.h"
#include "repo.h"
#include "testutil.h"

#define T0     1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY_MS 86400000LL

typedef struct {
	void *ctx;
	char *dir;
	char *url;
	gh_test_backend_t b;
	gh_store_t *store;
	num_repo_t *repo;
	gh_metrics_t *metrics;
} fx_t;

static const char *bname(gh_test_backend_t b) { return b == GH_TEST_SQLITE ? "sqlite" : "pg"; }

static json_t *jparse(const char *s)
{
	json_error_t je;
	json_t *j = json_loads(s, 0, &je);
	if (!j)
		fail_msg("bad test JSON: %s", je.text);
	return j;
}

static void put_pool(fx_t *fx, const char *tenant, const char *body)
{
	json_t *b = jparse(body), *out = NULL;
	gh_err_t err = {0};
	int rc = num_repo_pool_put(fx->repo, tenant, b, -1, "admin:test", T0, &out, &err);
	if (rc != 0)
		fail_msg("pool put %s: %s", tenant, err.message);
	json_decref(out);
	json_decref(b);
	gh_err_clear(&err);
}

static int fx_open(fx_t *fx, gh_test_backend_t b)
{
	memset(fx, 0, sizeof(*fx));
	fx->b = b;
	fx->ctx = talloc_new(NULL);
	if (gh_test_num_db_open(fx->ctx, b, &(gh_store_opts_t){.pool_size = 16}, &fx->dir, &fx->url,
	                        &fx->store) < 0) {
		talloc_free(fx->ctx);
		return -1;
	}
	gh_err_t err = {0};
	fx->metrics = gh_metrics_new(fx->ctx);
	assert_int_equal(num_repo_open(fx->ctx, fx->store,
	                               &(num_repo_opts_t){.metrics = fx->metrics}, &fx->repo),
	                 0);
	assert_int_equal(num_repo_seed_operators(fx->repo, T0, &err), 0);
	put_pool(fx, "t1",
	         "{\"segment\":\"enterprise\",\"quotas\":{\"MSISDN\":1000,\"SHORT_CODE\":100,"
	         "\"ALPHA\":100},\"max_reservations\":1000,\"vanity_allowed\":true}");
	put_pool(fx, "t2",
	         "{\"segment\":\"smb\",\"quotas\":{\"MSISDN\":1000,\"SHORT_CODE\":100,"
	         "\"ALPHA\":100},\"max_reservations\":1000,\"direct_assign\":true}");
	gh_err_clear(&err);
	return 0;
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->ctx);
	gh_test_num_db_free(fx->dir, fx->url);
}

#define BOTH(name) GH_TEST_NUM_BOTH(name, fx_t, fx_open, fx_close)

/* ---- helpers -------------------------------------------------------------------------- */

static uint64_t key_of(const char *ident)
{
	gh_ident_t id;
	assert_int_equal(gh_ident_normalize(NULL, GH_IDENT_AUTO, ident, strlen(ident), &id, NULL),
	                 0);
	return id.key;
}

static void add_one(fx_t *fx, const char *ident, const char *op, int vanity)
{
	gh_err_t err = {0};
	num_new_t n = {
	    .identifier = ident, .kind = GH_IDENT_AUTO, .operator_id = op, .vanity_tier = vanity};
	int rc = num_repo_add(fx->repo, &n, 1, "admin:test", T0, &err);
	if (rc != 0)
		fail_msg("add %s: %s", ident, err.message);
	gh_err_clear(&err);
}

static int64_t q_i64(fx_t *fx, const char *sql, const char *p1)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, sql, p1 ? (gh_val_t[]){GH_TEXT(p1)} : NULL, p1 ? 1 : 0, &r);
	if (rc != 0)
		fail_msg("query %s: %d %s", sql, rc, gh_conn_errmsg(c));
	int64_t v = gh_rows_i64(r, 0);
	gh_rows_close(r);
	gh_store_release(c);
	return v;
}

static void exec_sql(fx_t *fx, const char *sql)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	int rc = gh_conn_exec_script(c, sql);
	if (rc != 0)
		fail_msg("exec %s: %s", sql, gh_conn_errmsg(c));
	gh_store_release(c);
}

static int64_t outbox_max(fx_t *fx)
{
	return q_i64(fx, "SELECT COALESCE(MAX(id), 0) FROM gh_outbox", NULL);
}

/* Subjects of the number's outbox rows after id `after`, comma-joined, in id order. */
static char *subjects_after(fx_t *fx, const char *ident, int64_t after)
{
	char agg[64];
	snprintf(agg, sizeof(agg), "number/%s", ident);
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query(c,
	                               "SELECT subject, aggregate_seq FROM gh_outbox WHERE "
	                               "aggregate_id = $1 AND id > $2 ORDER BY id",
	                               (gh_val_t[]){GH_TEXT(agg), GH_I64(after)}, 2, &r),
	                 0);
	char *s = talloc_strdup(fx->ctx, "");
	int64_t prev_seq = 0;
	while (gh_rows_next(r) > 0) {
		s = talloc_asprintf_append(s, "%s%s", *s ? "," : "", gh_rows_text(r, 0));
		assert_true(gh_rows_i64(r, 1) > prev_seq);
		prev_seq = gh_rows_i64(r, 1);
	}
	gh_rows_close(r);
	gh_store_release(c);
	return s;
}

/* The last audit row's action for the identifier. */
static char *last_audit(fx_t *fx, const char *ident)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c,
	                                   "SELECT action FROM gh_audit WHERE chain = 'numbering' "
	                                   "AND entity_id = $1 ORDER BY seq DESC LIMIT 1",
	                                   (gh_val_t[]){GH_TEXT(ident)}, 1, &r),
	                 0);
	char *s = talloc_strdup(fx->ctx, gh_rows_text(r, 0));
	gh_rows_close(r);
	gh_store_release(c);
	return s;
}

static int do_tx(fx_t *fx, const char *ident, num_action_t a, num_role_t role, const char *tenant,
                 int64_t expected, int64_t now, num_number_t *out, gh_err_t *err)
{
	num_tx_req_t req = {.key = key_of(ident),
	                    .action = a,
	                    .role = role,
	                    .tenant_id = tenant,
	                    .actor = tenant ? "tenant:test" : "admin:test",
	                    .expected_version = expected,
	                    .auto_renew = -1,
	                    .now_ms = now,
	                    .request_id = "req-1"};
	if (a == NUM_ACT_OVERRIDE)
		req.justification = "cleared by compliance review #42";
	if (a == NUM_ACT_RECALL)
		req.recall_reason = NUM_QR_RECALL_ABUSE;
	num_number_t tmp;
	return num_repo_transition(fx->repo, &req, out ? out : &tmp, err);
}

static void tx_ok(fx_t *fx, const char *ident, num_action_t a, num_role_t role, const char *tenant,
                  int64_t now, num_number_t *out)
{
	gh_err_t err = {0};
	int rc = do_tx(fx, ident, a, role, tenant, -1, now, out, &err);
	if (rc != 0)
		fail_msg("%s %s by %s on %s: %s (%s)", num_action_name(a), ident,
		         num_role_name(role), bname(fx->b), err.message, gh_code_name(err.code));
	gh_err_clear(&err);
}

static int64_t pool_i(fx_t *fx, const char *tenant, const char *col)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT %s FROM num_pools WHERE tenant_id = $1", col);
	return q_i64(fx, sql, tenant);
}

/* ---- migrations and adding ------------------------------------------------------------ */

static void test_migrations_on(fx_t *fx)
{
	gh_err_t err = {0};
	/* again: nothing pending, nothing changes */
	assert_int_equal(gh_migrate_run(fx->store, "numbering", gh_sql_files, &err), 0);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_operators", NULL), 5);
	assert_int_equal(num_repo_seed_operators(fx->repo, T0, &err), 0);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_operators", NULL), 5);
	assert_int_equal(q_i64(fx, "SELECT MAX(idx) FROM num_operators", NULL), 5);
	const char *tables[] = {"num_contracts", "num_numbers", "num_reservations", "num_leases",
	                        "num_quarantines"};
	for (size_t i = 0; i < 5; i++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tables[i]);
		assert_int_equal(q_i64(fx, sql, NULL), 0);
	}
	gh_operator_t ops[8];
	size_t n;
	assert_int_equal(num_repo_operator_table(fx->repo, ops, 8, &n), 0);
	assert_int_equal(n, 5);
	assert_string_equal(ops[0].id, "awcc");
	assert_string_equal(ops[1].prefixes[0], "+9379");
	gh_err_clear(&err);
}
BOTH(test_migrations)

static void test_add_on(fx_t *fx)
{
	gh_err_t err = {0};
	num_new_t ok[] = {
	    {"+93 70 123 4567", GH_IDENT_AUTO, "awcc", 0},
	    {"0791234567", GH_IDENT_MSISDN, "roshan", 2},
	    {"4040", GH_IDENT_AUTO, "mtn", 0},
	    {"MyBank", GH_IDENT_ALPHA, NULL, 0},
	};
	int64_t ob = outbox_max(fx);
	assert_int_equal(num_repo_add(fx->repo, ok, 4, "admin:test", T0, &err), 0);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_numbers", NULL), 4);
	num_number_t n;
	assert_int_equal(num_repo_get(fx->repo, key_of("+93701234567"), NULL, &n, &err), 0);
	assert_string_equal(n.identifier, "+93701234567");
	assert_int_equal(n.state, NUM_ST_AVAILABLE);
	assert_int_equal(n.version, 1);
	assert_string_equal(n.operator_id, "awcc");
	assert_int_equal(num_repo_get(fx->repo, key_of("MYBANK"), NULL, &n, &err), 0);
	assert_string_equal(n.identifier, "MYBANK");
	assert_string_equal(n.display, "MyBank");
	assert_int_equal(n.kind, NUM_KIND_ALPHA);
	assert_string_equal(n.operator_id, "");
	assert_int_equal(num_repo_get(fx->repo, key_of("4040"), NULL, &n, &err), 0);
	assert_int_equal(n.kind, NUM_KIND_SHORT_CODE);
	assert_string_equal(subjects_after(fx, "MYBANK", ob),
	                    "number.available.v1,num.cache.invalidate.v1");
	assert_string_equal(last_audit(fx, "+93791234567"), "number.add");
	assert_int_equal(
	    q_i64(fx, "SELECT operator_idx FROM num_numbers WHERE identifier = $1", "+93791234567"),
	    2);

	/* bad identifiers */
	const char *bad[] = {"12", "+93 60 123 4567", "MY  BANK", "0701234567890", "abc$"};
	for (size_t i = 0; i < 5; i++) {
		num_new_t b = {bad[i], GH_IDENT_AUTO, "awcc", 0};
		assert_int_equal(num_repo_add(fx->repo, &b, 1, "admin:test", T0, &err), -EINVAL);
		assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);
		assert_string_equal(err.field, "/numbers/0/identifier");
	}
	/* operator prefix mismatch, unknown operator, missing operator */
	num_new_t mism[] = {{"+93701111111", GH_IDENT_AUTO, "awcc", 0},
	                    {"+93791111111", GH_IDENT_AUTO, "awcc", 0}};
	assert_int_equal(num_repo_add(fx->repo, mism, 2, "admin:test", T0, &err), -EINVAL);
	assert_string_equal(err.field, "/numbers/1/operator_id");
	num_new_t unk = {"+93701111112", GH_IDENT_AUTO, "nope", 0};
	assert_int_equal(num_repo_add(fx->repo, &unk, 1, "admin:test", T0, &err), -EINVAL);
	num_new_t noop = {"505", GH_IDENT_AUTO, NULL, 0};
	assert_int_equal(num_repo_add(fx->repo, &noop, 1, "admin:test", T0, &err), -EINVAL);
	assert_string_equal(err.field, "/numbers/0/operator_id");

	/* duplicates: against the database (case-insensitive alpha) and inside the request */
	num_new_t dup[] = {{"+93702222222", GH_IDENT_AUTO, "awcc", 0},
	                   {"MYBANK", GH_IDENT_AUTO, NULL, 0}};
	int64_t audit_rows = q_i64(fx, "SELECT COUNT(*) FROM gh_audit", NULL);
	assert_int_equal(num_repo_add(fx->repo, dup, 2, "admin:test", T0, &err), -EEXIST);
	assert_int_equal(err.code, GH_E_ALREADY_EXISTS);
	num_new_t dup2[] = {{"+93702222222", GH_IDENT_AUTO, "awcc", 0},
	                    {"0093702222222", GH_IDENT_AUTO, "awcc", 0}};
	assert_int_equal(num_repo_add(fx->repo, dup2, 2, "admin:test", T0, &err), -EEXIST);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_numbers", NULL), 4);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM gh_audit", NULL), audit_rows);
	gh_err_clear(&err);
}
BOTH(test_add)

/* ---- transitions ---------------------------------------------------------------------- */

static void test_transitions_on(fx_t *fx)
{
	const char *A = "+93701000001";
	add_one(fx, A, "awcc", 0);
	num_number_t n;
	int64_t ob = outbox_max(fx);

	/* reserve by a tenant */
	tx_ok(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, &n);
	assert_int_equal(n.state, NUM_ST_RESERVED);
	assert_string_equal(n.tenant_id, "t1");
	assert_int_equal(n.version, 2);
	assert_true(n.has_reservation);
	assert_int_equal(n.reservation_expires_ms, T0 + 900000);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 1);
	assert_int_equal(pool_i(fx, "t1", "reservations"), 1);
	assert_int_equal(
	    q_i64(fx,
	          "SELECT COUNT(*) FROM num_reservations WHERE tenant_id = $1 AND ended_ms IS NULL",
	          "t1"),
	    1);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.reserved.v1,num.cache.invalidate.v1");
	assert_string_equal(last_audit(fx, A), "number.reserve");

	/* assign by the holder: the reservation ends, a lease opens, held stays */
	ob = outbox_max(fx);
	tx_ok(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", T0 + 1000, &n);
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_false(n.has_reservation);
	assert_true(n.has_lease);
	assert_int_equal(n.lease_status, NUM_LEASE_ACTIVE);
	assert_int_equal(n.lease_ends_ms, T0 + 1000 + 30 * DAY_MS);
	assert_true(n.auto_renew);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 1);
	assert_int_equal(pool_i(fx, "t1", "reservations"), 0);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_leases WHERE tenant_id = $1", "t1"),
	                 1);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.assigned.v1,num.cache.invalidate.v1");
	assert_string_equal(last_audit(fx, A), "number.assign");

	/* suspend and resume (admin, system) */
	ob = outbox_max(fx);
	tx_ok(fx, A, NUM_ACT_SUSPEND, NUM_ROLE_ADMIN, NULL, T0 + 2000, &n);
	assert_int_equal(n.state, NUM_ST_SUSPENDED);
	assert_int_equal(n.lease_status, NUM_LEASE_SUSPENDED);
	assert_string_equal(n.tenant_id, "t1");
	tx_ok(fx, A, NUM_ACT_RESUME, NUM_ROLE_SYSTEM, NULL, T0 + 3000, &n);
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_int_equal(n.lease_status, NUM_LEASE_ACTIVE);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.suspended.v1,num.cache.invalidate.v1,number.resumed.v1,"
	                    "num.cache.invalidate.v1");

	/* release by the holder: TENANT_RELEASE quarantine, lease ended, held back to 0 */
	ob = outbox_max(fx);
	tx_ok(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", T0 + 4000, &n);
	assert_int_equal(n.state, NUM_ST_QUARANTINED);
	assert_string_equal(n.tenant_id, "");
	assert_false(n.has_lease);
	assert_true(n.has_quarantine);
	assert_int_equal(n.quarantine_reason, NUM_QR_TENANT_RELEASE);
	assert_int_equal(n.quarantine_until_ms, T0 + 4000 + 90 * DAY_MS);
	assert_string_equal(n.previous_tenant_id, "t1");
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 0);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_leases WHERE status = $1", "ENDED"),
	                 1);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.released.v1,number.quarantined.v1,num.cache.invalidate.v1");

	/* reclaim by the previous tenant: a new lease, held 1 again */
	tx_ok(fx, A, NUM_ACT_RECLAIM, NUM_ROLE_TENANT, "t1", T0 + 5000, &n);
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_false(n.has_quarantine);
	assert_int_equal(n.lease_status, NUM_LEASE_ACTIVE);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 1);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_leases WHERE tenant_id = $1", "t1"),
	                 2);

	/* recall for abuse, then override the quarantine */
	ob = outbox_max(fx);
	tx_ok(fx, A, NUM_ACT_RECALL, NUM_ROLE_COMPLIANCE, NULL, T0 + 6000, &n);
	assert_int_equal(n.state, NUM_ST_QUARANTINED);
	assert_int_equal(n.quarantine_reason, NUM_QR_RECALL_ABUSE);
	assert_int_equal(n.quarantine_until_ms, T0 + 6000 + 365 * DAY_MS);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 0);
	tx_ok(fx, A, NUM_ACT_OVERRIDE, NUM_ROLE_ADMIN, NULL, T0 + 7000, &n);
	assert_int_equal(n.state, NUM_ST_AVAILABLE);
	assert_false(n.has_quarantine);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.recalled.v1,number.quarantined.v1,num.cache.invalidate.v1,"
	                    "number.available.v1,num.cache.invalidate.v1");
	assert_string_equal(last_audit(fx, A), "number.override");

	/* reserve, then release: straight to AVAILABLE with a closed RESERVATION_EXPIRED record */
	tx_ok(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0 + 8000, &n);
	ob = outbox_max(fx);
	tx_ok(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", T0 + 9000, &n);
	assert_int_equal(n.state, NUM_ST_AVAILABLE);
	assert_false(n.has_quarantine);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 0);
	assert_int_equal(pool_i(fx, "t1", "reservations"), 0);
	assert_int_equal(q_i64(fx,
	                       "SELECT COUNT(*) FROM num_quarantines WHERE reason = $1 AND "
	                       "closed_ms IS NOT NULL AND until_ms = quarantined_ms",
	                       "RESERVATION_EXPIRED"),
	                 1);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.released.v1,num.cache.invalidate.v1");

	/* direct assignment: refused for t1 (pool forbids), allowed for t2 and for an admin */
	gh_err_t err = {0};
	assert_int_equal(do_tx(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", -1, T0, NULL, &err),
	                 -EBUSY);
	assert_int_equal(err.code, GH_E_INVALID_TRANSITION);
	tx_ok(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t2", T0 + 10000, &n);
	assert_string_equal(n.tenant_id, "t2");
	assert_int_equal(pool_i(fx, "t2", "held_msisdn"), 1);
	assert_int_equal(pool_i(fx, "t2", "reservations"), 0);
	/* another tenant cannot release it */
	assert_int_equal(do_tx(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", -1, T0, NULL, &err),
	                 -EBUSY);
	tx_ok(fx, A, NUM_ACT_RECALL, NUM_ROLE_ADMIN, NULL, T0 + 11000, &n);
	tx_ok(fx, A, NUM_ACT_RETIRE, NUM_ROLE_ADMIN, NULL, T0 + 12000, &n);
	assert_int_equal(n.state, NUM_ST_RETIRED);
	assert_false(n.has_quarantine);
	assert_int_equal(pool_i(fx, "t2", "held_msisdn"), 0);

	/* admin assigns directly for a tenant; the pool policy applies */
	const char *V = "+93791000002";
	add_one(fx, V, "roshan", 3);
	assert_int_equal(do_tx(fx, V, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", -1, T0, NULL, &err),
	                 -EPROTO);
	assert_int_equal(err.code, GH_E_FAILED_PRECONDITION);
	assert_string_equal(json_string_value(json_object_get(err.details, "reason")),
	                    "vanity_not_allowed");
	assert_int_equal(
	    do_tx(fx, V, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "nopool", -1, T0, NULL, &err), -EPROTO);
	assert_string_equal(json_string_value(json_object_get(err.details, "reason")),
	                    "pool_missing");
	assert_int_equal(do_tx(fx, V, NUM_ACT_ASSIGN, NUM_ROLE_ADMIN, NULL, -1, T0, NULL, &err),
	                 -EINVAL);
	assert_string_equal(err.field, "/tenant_id");
	assert_int_equal(do_tx(fx, V, NUM_ACT_ASSIGN, NUM_ROLE_ADMIN, "t1", -1, T0, &n, &err), 0);
	assert_string_equal(n.tenant_id, "t1");
	assert_int_equal(n.state, NUM_ST_ASSIGNED);

	/* a suspended pool refuses new numbers */
	json_t *body = jparse("{\"status\":\"SUSPENDED\"}"), *out = NULL;
	int64_t ob2 =
	    q_i64(fx, "SELECT COUNT(*) FROM gh_outbox WHERE aggregate_id = $1", "pool/t1");
	assert_int_equal(num_repo_pool_patch(fx->repo, "t1", body, -1, "admin:x", T0, &out, &err),
	                 0);
	assert_string_equal(json_string_value(json_object_get(out, "status")), "SUSPENDED");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(out, "held"), "MSISDN")), 1);
	assert_int_equal(
	    q_i64(fx, "SELECT COUNT(*) FROM gh_outbox WHERE aggregate_id = $1", "pool/t1"),
	    ob2 + 1);
	json_decref(out);
	json_decref(body);
	const char *B = "+93701000003";
	add_one(fx, B, "awcc", 0);
	assert_int_equal(do_tx(fx, B, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", -1, T0, NULL, &err),
	                 -EPROTO);
	assert_string_equal(json_string_value(json_object_get(err.details, "reason")),
	                    "pool_suspended");

	/* bad arguments */
	num_tx_req_t req = {.key = key_of(B),
	                    .action = NUM_ACT_RESERVE,
	                    .role = NUM_ROLE_TENANT,
	                    .tenant_id = "t2",
	                    .expected_version = -1,
	                    .ttl_s = 8 * 86400,
	                    .now_ms = T0};
	assert_int_equal(num_repo_transition(fx->repo, &req, &n, &err), -EINVAL);
	assert_string_equal(err.field, "/ttl_seconds");
	req.key = key_of("+93701999999");
	req.ttl_s = 0;
	assert_int_equal(num_repo_transition(fx->repo, &req, &n, &err), -ENOENT);
	assert_int_equal(err.code, GH_E_NOT_FOUND);
	gh_err_clear(&err);
}
BOTH(test_transitions)

static void test_refused_and_conflict_on(fx_t *fx)
{
	const char *A = "+93701000011";
	add_one(fx, A, "awcc", 0);
	gh_err_t err = {0};
	int64_t ob = outbox_max(fx);
	int64_t audits = q_i64(fx, "SELECT COUNT(*) FROM gh_audit", NULL);
	assert_int_equal(do_tx(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", -1, T0, NULL, &err),
	                 -EBUSY);
	assert_int_equal(err.code, GH_E_INVALID_TRANSITION);
	assert_string_equal(json_string_value(json_object_get(err.details, "from")), "AVAILABLE");
	assert_string_equal(json_string_value(json_object_get(err.details, "action")), "release");
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM gh_audit", NULL), audits + 1);
	assert_string_equal(last_audit(fx, A), "number.transition_refused");
	assert_int_equal(outbox_max(fx), ob);
	num_number_t n;
	assert_int_equal(num_repo_get(fx->repo, key_of(A), NULL, &n, &err), 0);
	assert_int_equal(n.version, 1);
	/* override needs a justification of 20 bytes: recall first */
	tx_ok(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, &n);
	tx_ok(fx, A, NUM_ACT_RECALL, NUM_ROLE_ADMIN, NULL, T0, &n);
	num_tx_req_t req = {.key = key_of(A),
	                    .action = NUM_ACT_OVERRIDE,
	                    .role = NUM_ROLE_ADMIN,
	                    .expected_version = -1,
	                    .justification = "too short",
	                    .now_ms = T0};
	assert_int_equal(num_repo_transition(fx->repo, &req, &n, &err), -EINVAL);
	assert_string_equal(err.field, "/justification");
	/* sweep before the cool-off: refused */
	assert_int_equal(do_tx(fx, A, NUM_ACT_SWEEP, NUM_ROLE_SYSTEM, NULL, -1, T0, NULL, &err),
	                 -EBUSY);

	/* expected_version mismatch: CONFLICT with the current version, nothing written */
	assert_int_equal(num_repo_get(fx->repo, key_of(A), NULL, &n, &err), 0);
	assert_int_equal(n.version, 3);
	ob = outbox_max(fx);
	assert_int_equal(do_tx(fx, A, NUM_ACT_OVERRIDE, NUM_ROLE_ADMIN, NULL, 2, T0, NULL, &err),
	                 -ESTALE);
	assert_int_equal(err.code, GH_E_CONFLICT);
	assert_int_equal(json_integer_value(json_object_get(err.details, "current_version")), 3);
	assert_int_equal(outbox_max(fx), ob);
	assert_int_equal(do_tx(fx, A, NUM_ACT_OVERRIDE, NUM_ROLE_ADMIN, NULL, 3, T0, &n, &err), 0);
	assert_int_equal(n.version, 4);

	char *metrics;
	size_t len;
	assert_int_equal(gh_metrics_render(fx->metrics, fx->ctx, &metrics, &len), 0);
	assert_non_null(strstr(metrics, "numbering_transitions_total{action=\"release\","
	                                "result=\"invalid_transition\"} 1"));
	assert_non_null(strstr(metrics, "numbering_conflicts_total 1"));
	gh_err_clear(&err);
}
BOTH(test_refused_and_conflict)

/* ---- races ---------------------------------------------------------------------------- */

typedef struct {
	fx_t *fx;
	const char *ident;
	const char *tenant;
	int64_t expected;
	pthread_barrier_t *bar;
	int rc;
	gh_code_t code;
} racer_t;

static void *racer(void *p)
{
	racer_t *a = p;
	gh_err_t err = {0};
	pthread_barrier_wait(a->bar);
	a->rc = do_tx(a->fx, a->ident, NUM_ACT_RESERVE, NUM_ROLE_TENANT, a->tenant, a->expected, T0,
	              NULL, &err);
	a->code = err.code;
	gh_err_clear(&err);
	return NULL;
}

static void run_racers(racer_t *a, int n)
{
	pthread_t th[128];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		a[i].bar = &bar;
		assert_int_equal(pthread_create(&th[i], NULL, racer, &a[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
}

/* 100 reserves of one number with the version read before: one winner, 99 CONFLICT. */
static void test_race_on(fx_t *fx)
{
	const char *A = "+93701000021";
	add_one(fx, A, "awcc", 0);
	num_number_t n;
	gh_err_t err = {0};
	assert_int_equal(num_repo_get(fx->repo, key_of(A), NULL, &n, &err), 0);
	racer_t a[100];
	for (int i = 0; i < 100; i++)
		a[i] = (racer_t){
		    .fx = fx, .ident = A, .tenant = i % 2 ? "t1" : "t2", .expected = n.version};
	run_racers(a, 100);
	int ok = 0, conflicts = 0;
	for (int i = 0; i < 100; i++) {
		if (a[i].rc == 0)
			ok++;
		else if (a[i].rc == -ESTALE && a[i].code == GH_E_CONFLICT)
			conflicts++;
		else
			fail_msg("%s: racer %d: rc %d code %s", bname(fx->b), i, a[i].rc,
			         gh_code_name(a[i].code));
	}
	assert_int_equal(ok, 1);
	assert_int_equal(conflicts, 99);
	assert_int_equal(num_repo_get(fx->repo, key_of(A), NULL, &n, &err), 0);
	assert_int_equal(n.version, 2);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_reservations", NULL), 1);
	assert_int_equal(pool_i(fx, n.tenant_id, "held_msisdn"), 1);
	assert_int_equal(
	    q_i64(fx, "SELECT COUNT(*) FROM gh_audit WHERE action = $1", "number.reserve"), 1);
	gh_err_clear(&err);
}
BOTH(test_race)

/* 20 reserves of 20 numbers against a quota of 5: exactly 5 succeed. */
static void test_quota_on(fx_t *fx)
{
	put_pool(fx, "tq", "{\"quotas\":{\"MSISDN\":5},\"max_reservations\":100}");
	char idents[20][20];
	racer_t a[20];
	for (int i = 0; i < 20; i++) {
		snprintf(idents[i], sizeof(idents[i]), "+937010001%02d", i);
		add_one(fx, idents[i], "awcc", 0);
		a[i] = (racer_t){.fx = fx, .ident = idents[i], .tenant = "tq", .expected = -1};
	}
	run_racers(a, 20);
	int ok = 0, quota = 0;
	for (int i = 0; i < 20; i++) {
		if (a[i].rc == 0)
			ok++;
		else if (a[i].rc == -EDQUOT && a[i].code == GH_E_QUOTA_EXCEEDED)
			quota++;
		else
			fail_msg("%s: racer %d: rc %d", bname(fx->b), i, a[i].rc);
	}
	assert_int_equal(ok, 5);
	assert_int_equal(quota, 15);
	assert_int_equal(pool_i(fx, "tq", "held_msisdn"), 5);
	assert_int_equal(pool_i(fx, "tq", "reservations"), 5);
	assert_int_equal(q_i64(fx, "SELECT COUNT(*) FROM num_numbers WHERE tenant_id = $1", "tq"),
	                 5);
	/* the concurrent-reservation limit is a quota too */
	put_pool(fx, "tr", "{\"quotas\":{\"MSISDN\":50},\"max_reservations\":1}");
	gh_err_t err = {0};
	int free_i = -1;
	for (int i = 0; i < 20 && free_i < 0; i++)
		if (a[i].rc != 0)
			free_i = i;
	int second = -1;
	for (int i = free_i + 1; i < 20 && second < 0; i++)
		if (a[i].rc != 0)
			second = i;
	tx_ok(fx, idents[free_i], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "tr", T0, NULL);
	assert_int_equal(
	    do_tx(fx, idents[second], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "tr", -1, T0, NULL, &err),
	    -EDQUOT);
	assert_string_equal(json_string_value(json_object_get(err.details, "limit")),
	                    "max_reservations");
	assert_int_equal(json_integer_value(json_object_get(err.details, "max")), 1);
	assert_int_equal(pool_i(fx, "tr", "held_msisdn"), 1);
	gh_err_clear(&err);
	/* the error names the limit reached: here the kind's quota */
	assert_int_equal(
	    do_tx(fx, idents[second], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "tq", -1, T0, NULL, &err),
	    -EDQUOT);
	assert_string_equal(json_string_value(json_object_get(err.details, "limit")), "msisdn");
	assert_int_equal(json_integer_value(json_object_get(err.details, "max")), 5);
	assert_int_equal(pool_i(fx, "tq", "held_msisdn"), 5);
	gh_err_clear(&err);
}
BOTH(test_quota)

/* ---- jobs ----------------------------------------------------------------------------- */

static void test_jobs_on(fx_t *fx)
{
	const char *A = "+93701000031", *B = "+93701000032";
	add_one(fx, A, "awcc", 0);
	add_one(fx, B, "awcc", 0);
	num_tx_req_t req = {.key = key_of(A),
	                    .action = NUM_ACT_RESERVE,
	                    .role = NUM_ROLE_TENANT,
	                    .tenant_id = "t1",
	                    .expected_version = -1,
	                    .ttl_s = 60,
	                    .now_ms = T0};
	num_number_t n;
	gh_err_t err = {0};
	assert_int_equal(num_repo_transition(fx->repo, &req, &n, &err), 0);
	tx_ok(fx, B, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, B, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", T0, NULL);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 2);

	int64_t ob = outbox_max(fx);
	assert_int_equal(num_repo_expire_due(fx->repo, T0 + 59999, 10), 0);
	assert_int_equal(num_repo_expire_due(fx->repo, T0 + 60000, 10), 1);
	assert_int_equal(num_repo_get(fx->repo, key_of(A), NULL, &n, &err), 0);
	assert_int_equal(n.state, NUM_ST_AVAILABLE);
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 1);
	assert_int_equal(pool_i(fx, "t1", "reservations"), 0);
	assert_string_equal(subjects_after(fx, A, ob),
	                    "number.reservation_expired.v1,num.cache.invalidate.v1");
	assert_string_equal(last_audit(fx, A), "number.expire");
	assert_int_equal(num_repo_expire_due(fx->repo, T0 + 120000, 10), 0);

	tx_ok(fx, B, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", T0, NULL);
	assert_int_equal(num_repo_sweep_due(fx->repo, T0 + 89 * DAY_MS, 10), 0);
	ob = outbox_max(fx);
	assert_int_equal(num_repo_sweep_due(fx->repo, T0 + 90 * DAY_MS, 10), 1);
	assert_int_equal(num_repo_get(fx->repo, key_of(B), NULL, &n, &err), 0);
	assert_int_equal(n.state, NUM_ST_AVAILABLE);
	assert_false(n.has_quarantine);
	assert_string_equal(subjects_after(fx, B, ob),
	                    "number.available.v1,num.cache.invalidate.v1");
	assert_int_equal(pool_i(fx, "t1", "held_msisdn"), 0);
	gh_err_clear(&err);
}
BOTH(test_jobs)

/* ---- reads ---------------------------------------------------------------------------- */

static void test_tenant_scope_on(fx_t *fx)
{
	const char *A = "+93701000041";
	add_one(fx, A, "awcc", 0);
	num_number_t n;
	gh_err_t err = {0};
	assert_int_equal(num_repo_get(fx->repo, key_of(A), "t1", &n, &err), -ENOENT);
	tx_ok(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	assert_int_equal(num_repo_get(fx->repo, key_of(A), "t1", &n, &err), 0);
	assert_int_equal(num_repo_get(fx->repo, key_of(A), "t2", &n, &err), -ENOENT);
	assert_int_equal(err.code, GH_E_NOT_FOUND);
	assert_int_equal(num_repo_get(fx->repo, key_of("+93701999998"), "t1", &n, &err), -ENOENT);
	tx_ok(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", T0, NULL);
	/* the previous tenant still sees its TENANT_RELEASE quarantine, nobody else does */
	assert_int_equal(num_repo_get(fx->repo, key_of(A), "t1", &n, &err), 0);
	assert_int_equal(n.state, NUM_ST_QUARANTINED);
	assert_int_equal(num_repo_get(fx->repo, key_of(A), "t2", &n, &err), -ENOENT);
	gh_err_clear(&err);
}
BOTH(test_tenant_scope)

static void test_list_on(fx_t *fx)
{
	/* 30 MSISDNs (every 5th contains 777), 3 short codes, 2 alpha ids */
	num_new_t nums[35];
	char idents[35][20];
	for (int i = 0; i < 30; i++) {
		snprintf(idents[i], sizeof(idents[i]), i % 5 ? "+937010%05d" : "+9370777%04d", i);
		nums[i] = (num_new_t){idents[i], GH_IDENT_AUTO, "awcc", i % 5 ? 0 : 2};
	}
	for (int i = 30; i < 33; i++) {
		snprintf(idents[i], sizeof(idents[i]), "7%d7", i);
		nums[i] = (num_new_t){idents[i], GH_IDENT_AUTO, "mtn", 0};
	}
	snprintf(idents[33], 20, "MyBank");
	snprintf(idents[34], 20, "Shop777");
	nums[33] = (num_new_t){idents[33], GH_IDENT_AUTO, NULL, 0};
	nums[34] = (num_new_t){idents[34], GH_IDENT_AUTO, NULL, 0};
	gh_err_t err = {0};
	assert_int_equal(num_repo_add(fx->repo, nums, 35, "admin:test", T0, &err), 0);
	tx_ok(fx, idents[1], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, idents[2], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", T0, NULL);

	/* keyset paging sees every number exactly once, in key order */
	void *ctx = talloc_new(NULL);
	uint64_t after = 0, next;
	size_t total = 0;
	int pages = 0;
	int64_t prev = INT64_MIN;
	do {
		num_number_t *rows;
		size_t n;
		assert_int_equal(
		    num_repo_list(fx->repo, NULL, after, 7, ctx, &rows, &n, &next, &err), 0);
		for (size_t i = 0; i < n; i++) {
			assert_true((int64_t)rows[i].key > prev);
			prev = (int64_t)rows[i].key;
		}
		total += n;
		pages++;
		after = next;
	} while (next);
	assert_int_equal(total, 35);
	assert_int_equal(pages, 5);

	num_number_t *rows;
	size_t n;
	num_filter_t f = {.kind = -1, .state = -1, .vanity_min = -1, .pattern = "*777*"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 7); /* 6 MSISDNs and SHOP777 */
	f = (num_filter_t){
	    .kind = NUM_KIND_MSISDN, .state = -1, .vanity_min = -1, .pattern = "*777*"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++)
		assert_non_null(strstr(rows[i].identifier, "777"));
	f = (num_filter_t){.kind = NUM_KIND_SHORT_CODE, .state = -1, .vanity_min = -1};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 3);
	f = (num_filter_t){.kind = -1, .state = NUM_ST_RESERVED, .vanity_min = -1};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 2);
	f = (num_filter_t){.kind = -1, .state = -1, .vanity_min = -1, .tenant_id = "t2"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].identifier, idents[2]);
	f = (num_filter_t){.kind = -1, .state = -1, .vanity_min = 1};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 6);
	f = (num_filter_t){
	    .kind = -1, .state = -1, .vanity_min = -1, .prefix = "+9370777", .operator_id = "awcc"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 6);
	f = (num_filter_t){.kind = -1, .state = -1, .vanity_min = -1, .prefix = "my"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].display, "MyBank");
	f = (num_filter_t){.kind = -1, .state = -1, .vanity_min = -1, .pattern = "7%"};
	assert_int_equal(num_repo_list(fx->repo, &f, 0, 100, ctx, &rows, &n, &next, &err), -EINVAL);
	assert_string_equal(err.field, "/pattern");
	talloc_free(ctx);
	gh_err_clear(&err);
}
BOTH(test_list)

static void test_history_on(fx_t *fx)
{
	const char *A = "+93701000051";
	add_one(fx, A, "awcc", 0);
	tx_ok(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	gh_err_t err = {0};
	do_tx(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", -1, T0, NULL, &err);
	tx_ok(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", T0 + 1, NULL);
	json_t *h;
	assert_int_equal(num_repo_history(fx->repo, key_of(A), &h, &err), 0);
	assert_int_equal(json_array_size(h), 4);
	const char *want[] = {"number.add", "number.reserve", "number.transition_refused",
	                      "number.assign"};
	int64_t prev = 0;
	for (size_t i = 0; i < 4; i++) {
		json_t *row = json_array_get(h, i);
		assert_string_equal(json_string_value(json_object_get(row, "action")), want[i]);
		assert_true(json_integer_value(json_object_get(row, "seq")) > prev);
		prev = json_integer_value(json_object_get(row, "seq"));
	}
	json_t *last = json_array_get(h, 3);
	assert_string_equal(json_string_value(json_object_get(last, "tenant_id")), "t1");
	assert_string_equal(json_string_value(json_object_get(last, "request_id")), "req-1");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(last, "payload"), "to")), "ASSIGNED");
	assert_string_equal(json_string_value(json_object_get(last, "ts")),
	                    "2026-01-01T00:00:00.001Z");
	json_decref(h);
	assert_int_equal(num_repo_history(fx->repo, key_of("+93701999997"), &h, &err), -ENOENT);
	gh_err_clear(&err);
}
BOTH(test_history)

/* ---- random operations: audit chain and index ----------------------------------------- */

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static const char *const tenants[] = {"t1", "t2", "t3", "stranger"};

static bool str_eq_t(const char *a, const char *b) { return a && b && *a && strcmp(a, b) == 0; }

/* For every number and tenant: the index loaded from the database decides what
 * num_validate_rule decides on the database row read through num_repo_get. */
static void check_index(fx_t *fx, char idents[][20], int n, int64_t now)
{
	void *ctx = talloc_new(NULL);
	num_index_t *ix;
	assert_int_equal(num_index_new(ctx, 1000, 100, &ix), 0);
	size_t loaded;
	assert_int_equal(num_repo_load_index(fx->repo, ix, &loaded), 0);
	assert_int_equal(loaded, (size_t)n);
	gh_err_t err = {0};
	for (int i = 0; i < n; i++) {
		uint64_t key = key_of(idents[i]);
		num_number_t row;
		assert_int_equal(num_repo_get(fx->repo, key, NULL, &row, &err), 0);
		num_index_entry_t e = {.key = key,
		                       .version = (uint64_t)row.version,
		                       .state = (uint8_t)row.state,
		                       .tenant = row.tenant_id[0] ? 1 : 0,
		                       .lease_status =
		                           row.has_lease ? (uint8_t)row.lease_status : 0,
		                       .lease_ends_at_ms = row.has_lease ? row.lease_ends_ms : 0};
		num_pool_status_t pool = NUM_POOL_SUSPENDED;
		if (row.tenant_id[0]) {
			json_t *p;
			if (num_repo_pool_get(fx->repo, row.tenant_id, &p, &err) == 0) {
				num_pool_status_parse(
				    json_string_value(json_object_get(p, "status")), &pool);
				json_decref(p);
			}
		}
		/* the fallback entry equals the preloaded one */
		num_index_entry_t got, fb;
		assert_int_equal(num_index_get(ix, key, &got), 0);
		assert_int_equal(num_repo_index_entry(fx->repo, ix, key, &fb), 0);
		assert_int_equal(got.version, fb.version);
		assert_int_equal(got.state, fb.state);
		assert_int_equal(got.tenant, fb.tenant);
		assert_int_equal(got.operator_idx, fb.operator_idx);
		assert_int_equal(got.vanity_tier, fb.vanity_tier);
		assert_int_equal(got.lease_status, fb.lease_status);
		assert_int_equal(got.lease_ends_at_ms, fb.lease_ends_at_ms);
		assert_memory_equal(got.lease_id, fb.lease_id, sizeof(got.lease_id));
		assert_int_equal(got.operator_idx, row.operator_id[0] ? 1 : 0); /* awcc is idx 1 */
		assert_int_equal(got.version, row.version);
		assert_int_equal(got.state, row.state);
		for (size_t t = 0; t < 4; t++) {
			for (int64_t dt = 0; dt <= 40 * DAY_MS; dt += 20 * DAY_MS) {
				uint32_t tidx = NUM_TENANT_NONE;
				num_index_tenant_find(ix, tenants[t], &tidx);
				num_validate_t v;
				assert_int_equal(num_validate(ix, key, tidx, now + dt, &v), 0);
				num_vreason_t want = num_validate_rule(
				    &e, str_eq_t(row.tenant_id, tenants[t]), pool, now + dt);
				if (v.reason != want)
					fail_msg("%s %s tenant %s: index %s, database %s",
					         bname(fx->b), idents[i], tenants[t],
					         num_vreason_name(v.reason),
					         num_vreason_name(want));
			}
		}
	}
	assert_int_equal(num_validate(ix, key_of("+93701999996"), 0, now, &(num_validate_t){0}),
	                 -ENOENT);
	talloc_free(ctx);
	gh_err_clear(&err);
}

/* The number a transition returns (built in memory) equals the stored one, field by field. */
static void same_as_stored(fx_t *fx, const num_number_t *a, int op)
{
	num_number_t b;
	gh_err_t err = {0};
	assert_int_equal(num_repo_get(fx->repo, a->key, NULL, &b, &err), 0);
#define SAME_I(f)                                                                                \
	if ((int64_t)a->f != (int64_t)b.f)                                                       \
	fail_msg("%s: op %d %s: %s returned %lld, stored %lld", bname(fx->b), op, a->identifier, \
	         #f, (long long)a->f, (long long)b.f)
#define SAME_S(f)                                                                                \
	if (strcmp(a->f, b.f) != 0)                                                              \
	fail_msg("%s: op %d %s: %s returned '%s', stored '%s'", bname(fx->b), op, a->identifier, \
	         #f, a->f, b.f)
	SAME_S(identifier);
	SAME_S(display);
	SAME_I(kind);
	SAME_I(state);
	SAME_S(operator_id);
	SAME_S(tenant_id);
	SAME_I(vanity_tier);
	SAME_I(version);
	SAME_I(created_ms);
	SAME_I(updated_ms);
	SAME_I(has_reservation);
	SAME_I(reservation_created_ms);
	SAME_I(reservation_expires_ms);
	SAME_I(has_lease);
	SAME_S(lease_id);
	SAME_I(lease_status);
	SAME_I(lease_starts_ms);
	SAME_I(lease_ends_ms);
	SAME_I(auto_renew);
	SAME_I(has_quarantine);
	SAME_I(quarantine_reason);
	SAME_I(quarantined_ms);
	SAME_I(quarantine_until_ms);
	SAME_S(previous_tenant_id);
#undef SAME_I
#undef SAME_S
}

static void test_random_ops_on(fx_t *fx)
{
	put_pool(fx, "t3",
	         "{\"quotas\":{\"MSISDN\":3,\"SHORT_CODE\":1,\"ALPHA\":1},"
	         "\"max_reservations\":2,\"direct_assign\":true}");
	enum { N = 16 };
	char idents[N][20];
	for (int i = 0; i < N; i++) {
		if (i < 12)
			snprintf(idents[i], sizeof(idents[i]), "+937020000%02d", i);
		else if (i < 14)
			snprintf(idents[i], sizeof(idents[i]), "90%d", i);
		else
			snprintf(idents[i], sizeof(idents[i]), "ALPHA%d", i);
		add_one(fx, idents[i], i < 14 ? "awcc" : NULL, i % 7 == 0);
	}
	int64_t now = T0;
	int counts[8] = {0};
	for (int op = 0; op < 500; op++) {
		const char *id = idents[rnd(N)];
		num_action_t a = (num_action_t)rnd(NUM_ACT__COUNT);
		num_role_t roles[] = {NUM_ROLE_TENANT, NUM_ROLE_TENANT,     NUM_ROLE_TENANT,
		                      NUM_ROLE_ADMIN,  NUM_ROLE_COMPLIANCE, NUM_ROLE_SYSTEM};
		num_role_t role = roles[rnd(6)];
		const char *tenant = role == NUM_ROLE_TENANT || rnd(2) ? tenants[rnd(3)] : NULL;
		now += rnd(4) == 0 ? (int64_t)rnd(40) * DAY_MS : (int64_t)rnd(600000);
		int64_t expected = -1;
		if (rnd(4) == 0) {
			num_number_t cur;
			gh_err_t e2 = {0};
			assert_int_equal(num_repo_get(fx->repo, key_of(id), NULL, &cur, &e2), 0);
			expected = cur.version - (int64_t)rnd(2);
		}
		gh_err_t err = {0};
		num_number_t after;
		int rc = do_tx(fx, id, a, role, tenant, expected, now, &after, &err);
		if (rc == -EIO)
			fail_msg("%s: op %d: %s", bname(fx->b), op, err.message);
		if (rc == 0)
			same_as_stored(fx, &after, op);
		counts[err.code == GH_OK ? 0 : err.code % 8]++;
		gh_err_clear(&err);
		if (op % 100 == 99) {
			num_repo_expire_due(fx->repo, now, 100);
			num_repo_sweep_due(fx->repo, now, 100);
		}
	}
	assert_true(counts[0] > 50); /* enough transitions happened to mean something */

	/* pools' counters agree with the numbers they hold */
	for (int t = 0; t < 3; t++) {
		int64_t held = pool_i(fx, tenants[t], "held_msisdn + held_short_code + held_alpha");
		assert_int_equal(
		    held,
		    q_i64(fx, "SELECT COUNT(*) FROM num_numbers WHERE tenant_id = $1", tenants[t]));
		assert_int_equal(pool_i(fx, tenants[t], "reservations"),
		                 q_i64(fx,
		                       "SELECT COUNT(*) FROM num_reservations WHERE tenant_id = $1 "
		                       "AND ended_ms IS NULL",
		                       tenants[t]));
	}

	check_index(fx, idents, N, now);
	json_t *body = jparse("{\"status\":\"SUSPENDED\"}"), *out = NULL;
	gh_err_t err = {0};
	assert_int_equal(num_repo_pool_patch(fx->repo, "t2", body, -1, "admin:x", now, &out, &err),
	                 0);
	json_decref(out);
	json_decref(body);
	check_index(fx, idents, N, now);

	gh_audit_verify_t v;
	assert_int_equal(gh_audit_verify(fx->store, "numbering", &v), 0);
	if (!v.ok)
		fail_msg("%s: audit: %s at %lld", bname(fx->b), v.reason,
		         (long long)v.first_bad_seq);
	assert_true(v.rows > 300);
	int64_t bad = v.rows / 2;
	char sql[160];
	snprintf(sql, sizeof(sql),
	         "UPDATE gh_audit SET payload = '{\"from\":\"RETIRED\"}' WHERE chain = 'numbering' "
	         "AND seq = %lld",
	         (long long)bad);
	exec_sql(fx, sql);
	assert_int_equal(gh_audit_verify(fx->store, "numbering", &v), 0);
	assert_false(v.ok);
	assert_int_equal(v.first_bad_seq, bad);
	gh_err_clear(&err);
}
BOTH(test_random_ops)

/* ---- operators and pools -------------------------------------------------------------- */

static void test_operators_pools_on(fx_t *fx)
{
	gh_err_t err = {0};
	json_t *out = NULL;
	json_t *b = jparse("{\"id\":\"newco\",\"name\":\"NewCo\",\"mcc\":\"412\","
	                   "\"mncs\":[\"99\"],\"prefixes\":[\"+93750\"],"
	                   "\"valid_from\":\"2026-01-01T00:00:00Z\"}");
	assert_int_equal(num_repo_operator_create(fx->repo, b, "admin:x", T0, &out, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "version")), 1);
	json_decref(out);
	assert_int_equal(num_repo_operator_create(fx->repo, b, "admin:x", T0, &out, &err), -EEXIST);
	assert_int_equal(err.code, GH_E_ALREADY_EXISTS);
	json_decref(b);
	/* a prefix another operator holds in the same period */
	b = jparse("{\"id\":\"clash\",\"name\":\"C\",\"mcc\":\"412\",\"mncs\":[\"98\"],"
	           "\"prefixes\":[\"+93750\"]}");
	assert_int_equal(num_repo_operator_create(fx->repo, b, "admin:x", T0, &out, &err), -EINVAL);
	json_decref(b);
	b = jparse("{\"id\":\"x\",\"nme\":\"typo\"}");
	assert_int_equal(num_repo_operator_create(fx->repo, b, "admin:x", T0, &out, &err), -EINVAL);
	assert_string_equal(err.field, "/nme");
	json_decref(b);
	gh_operator_t ops[8];
	size_t n;
	assert_int_equal(num_repo_operator_table(fx->repo, ops, 8, &n), 0);
	assert_int_equal(n, 6);
	assert_string_equal(ops[5].id, "newco");
	/* the new operator's numbers carry its idx, 6 */
	add_one(fx, "+93750123456", "newco", 0);
	assert_int_equal(
	    q_i64(fx, "SELECT operator_idx FROM num_numbers WHERE operator_id = $1", "newco"), 6);

	b = jparse("{\"name\":\"NewCo Ltd\"}");
	assert_int_equal(
	    num_repo_operator_patch(fx->repo, "newco", b, 5, "admin:x", T0, &out, &err), -ESTALE);
	assert_int_equal(json_integer_value(json_object_get(err.details, "current_version")), 1);
	assert_int_equal(
	    num_repo_operator_patch(fx->repo, "newco", b, 1, "admin:x", T0, &out, &err), 0);
	json_decref(out);
	assert_int_equal(num_repo_operator_get(fx->repo, "newco", &out, &err), 0);
	assert_string_equal(json_string_value(json_object_get(out, "name")), "NewCo Ltd");
	assert_int_equal(json_integer_value(json_object_get(out, "version")), 2);
	assert_string_equal(json_string_value(json_object_get(out, "valid_from")),
	                    "2026-01-01T00:00:00.000Z");
	json_decref(out);
	assert_int_equal(
	    num_repo_operator_patch(fx->repo, "nope", b, -1, "admin:x", T0, &out, &err), -ENOENT);
	json_decref(b);
	assert_int_equal(num_repo_operators_list(fx->repo, &out, &err), 0);
	assert_int_equal(json_array_size(out), 6);
	json_decref(out);

	/* pools: GET body PUT back unchanged; bad values refused; versions checked */
	json_t *p;
	assert_int_equal(num_repo_pool_get(fx->repo, "t1", &p, &err), 0);
	assert_int_equal(num_repo_pool_put(fx->repo, "t1", p, 1, "admin:x", T0, &out, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "version")), 2);
	assert_true(json_equal(json_object_get(out, "quotas"), json_object_get(p, "quotas")));
	json_decref(out);
	assert_int_equal(num_repo_pool_put(fx->repo, "t1", p, 1, "admin:x", T0, &out, &err),
	                 -ESTALE);
	json_decref(p);
	b = jparse("{\"allowed_operators\":[\"nope\"]}");
	assert_int_equal(num_repo_pool_patch(fx->repo, "t1", b, -1, "admin:x", T0, &out, &err),
	                 -EINVAL);
	assert_string_equal(err.field, "/allowed_operators");
	json_decref(b);
	b = jparse("{\"allowed_kinds\":[\"ALPHA\"],\"allowed_operators\":[\"mtn\"]}");
	assert_int_equal(num_repo_pool_patch(fx->repo, "t2", b, -1, "admin:x", T0, &out, &err), 0);
	json_decref(out);
	json_decref(b);
	add_one(fx, "+93701000071", "awcc", 0);
	assert_int_equal(
	    do_tx(fx, "+93701000071", NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", -1, T0, NULL, &err),
	    -EPROTO);
	assert_string_equal(json_string_value(json_object_get(err.details, "reason")),
	                    "kind_not_allowed");
	assert_int_equal(num_repo_pool_patch(fx->repo, "t9", b, -1, "admin:x", T0, &out, &err),
	                 -ENOENT);
	assert_int_equal(num_repo_pool_get(fx->repo, "t9", &out, &err), -ENOENT);
	b = jparse("{\"lease_term_days\":0}");
	assert_int_equal(num_repo_pool_put(fx->repo, "t9", b, -1, "admin:x", T0, &out, &err),
	                 -EINVAL);
	assert_string_equal(err.field, "/lease_term_days");
	json_decref(b);
	b = jparse("{}");
	assert_int_equal(
	    num_repo_pool_put(fx->repo, "bad tenant", b, -1, "admin:x", T0, &out, &err), -EINVAL);
	json_decref(b);
	gh_err_clear(&err);
}
BOTH(test_operators_pools)

/* ---- PostgreSQL row-level security ---------------------------------------------------- */

static void test_rls(void **state)
{
	(void)state;
	fx_t fx_, *fx = &fx_;
	if (fx_open(fx, GH_TEST_PG) < 0)
		return;
	const char *idents[] = {"+93701000061", "+93701000062", "+93701000063", "+93701000064"};
	for (int i = 0; i < 4; i++)
		add_one(fx, idents[i], "awcc", 0);
	tx_ok(fx, idents[0], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, idents[1], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, idents[1], NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, idents[1], NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", T0, NULL);
	tx_ok(fx, idents[2], NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", T0, NULL);
	tx_ok(fx, idents[2], NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t2", T0, NULL);
	tx_ok(fx, idents[3], NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t2", T0, NULL);
	tx_ok(fx, idents[3], NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t2", T0, NULL);

	char role[40], sql[512];
	snprintf(role, sizeof(role), "rls_%d", rand() % 1000000);
	snprintf(sql, sizeof(sql),
	         "CREATE ROLE %s NOLOGIN; GRANT SELECT ON num_pools, num_numbers, num_leases, "
	         "num_reservations, num_quarantines TO %s",
	         role, role);
	exec_sql(fx, sql);
	/* what a tenant sees: its rows; of num_numbers also the unheld inventory (0002) */
	static const struct {
		const char *table, *col;
	} tabs[] = {{"num_pools", "tenant_id = $1"},
	            {"num_numbers", "(tenant_id = $1 OR tenant_id IS NULL)"},
	            {"num_leases", "tenant_id = $1"},
	            {"num_reservations", "tenant_id = $1"},
	            {"num_quarantines", "previous_tenant_id = $1"}};
	for (size_t t = 0; t < 2; t++) {
		const char *tenant = t ? "t2" : "t1";
		for (size_t i = 0; i < 5; i++) {
			snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s WHERE %s",
			         tabs[i].table, tabs[i].col);
			int64_t want = q_i64(fx, sql, tenant);
			snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tabs[i].table);
			int64_t all = q_i64(fx, sql, NULL);
			gh_conn_t *c;
			assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
			char set[128];
			snprintf(set, sizeof(set), "SET ROLE %s; SET ghasi.tenant_id = '%s'", role,
			         tenant);
			assert_int_equal(gh_conn_exec_script(c, set), 0);
			gh_rows_t *r;
			assert_int_equal(gh_conn_query_one(c, sql, NULL, 0, &r), 0);
			int64_t seen = gh_rows_i64(r, 0);
			gh_rows_close(r);
			/* unset: the service's view, every row */
			assert_int_equal(gh_conn_exec_script(c, "SET ghasi.tenant_id = ''"), 0);
			assert_int_equal(gh_conn_query_one(c, sql, NULL, 0, &r), 0);
			int64_t seen_all = gh_rows_i64(r, 0);
			gh_rows_close(r);
			assert_int_equal(
			    gh_conn_exec_script(c, "RESET ROLE; RESET ghasi.tenant_id"), 0);
			gh_store_release(c);
			if (seen != want || seen_all != all)
				fail_msg("%s as %s: saw %lld of %lld (want %lld), unset %lld",
				         tabs[i].table, tenant, (long long)seen, (long long)all,
				         (long long)want, (long long)seen_all);
			assert_true(want > 0);
			assert_true(all > want);
		}
	}
	snprintf(sql, sizeof(sql), "DROP OWNED BY %s; DROP ROLE %s", role, role);
	exec_sql(fx, sql);
	fx_close(fx);
}

int main(void)
{
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migrations),  cmocka_unit_test(test_add),
	    cmocka_unit_test(test_transitions), cmocka_unit_test(test_refused_and_conflict),
	    cmocka_unit_test(test_race),        cmocka_unit_test(test_quota),
	    cmocka_unit_test(test_jobs),        cmocka_unit_test(test_tenant_scope),
	    cmocka_unit_test(test_list),        cmocka_unit_test(test_history),
	    cmocka_unit_test(test_random_ops),  cmocka_unit_test(test_operators_pools),
	    cmocka_unit_test(test_rls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
