/* num_jobs: the numbering jobs and ports on SQLite and PostgreSQL, against a fake billing and a
 * fake sender-id registry served by a gh_http server inside the test (approve, refuse, and
 * unreachable: a closed port):
 *   - renewal approved (ends_at + term, number.renewed.v1, audit), refused and unreachable
 *     (number.renewal_failed.v1 with the reason, lease untouched, never suspended);
 *   - a lease past ends_at -> QUARANTINED TENANT_RELEASE, not a millisecond before;
 *   - the ALPHA gate: verified, not verified (FAILED_PRECONDITION), unreachable and
 *     unconfigured (UNAVAILABLE), and through `ghasi serve` over HTTP;
 *   - the audit verify job on a tampered chain: gauge 1 and numbering.audit.chain_broken.v1;
 *   - expiry precision: 1,000 reservations with TTLs of a few seconds, some made before
 *     `ghasi serve` starts (armed from the database) and the rest while it runs, by this
 *     process (so the server learns them only from the invalidation stream); on PostgreSQL two
 *     replicas race for every expiry. Every reservation must end within +-2 s of expires_at
 *     (the sweep is pushed out to 1 h, so the timers alone must do it), by exactly one
 *     transition, with no refused transition audited. Prints the distribution.
 * The jobs run in-process with an explicit now (the scheduler passes it), so terms of days
 * are tested without waiting; expiry runs the real binary on the real clock. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "gh-core.h"
#include "ghasiproc.h"
#include "httpc.h"
#include "numbering/jobs.h"
#include "numbering/ports.h"
#include "numbering/service.h"
#include "numfx.h"
#include "storefx.h"
#include "testutil.h"

#define T0     1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY_MS 86400000LL

/* ---- the fake ports ---------------------------------------------------------------------- */

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static int billing_calls;
static json_t *billing_last; /* last request body */
static gh_http_server_t *fake;
static void *fake_ctx;
static char url_approve[96], url_refuse[96], url_senderid[96], url_closed[96];

static int h_billing(gh_http_req_t *req, void *ud)
{
	json_t *b;
	if (gh_http_json_body(req, NULL, &b) < 0)
		return -EINVAL;
	pthread_mutex_lock(&fake_mu);
	billing_calls++;
	json_decref(billing_last);
	billing_last = json_deep_copy(b);
	pthread_mutex_unlock(&fake_mu);
	if (ud) /* refuse, with a reason that needs sanitising */
		return gh_http_reply_json(
		    req, 200, json_pack("{sbss}", "approved", 0, "reason", "insufficient funds"));
	return gh_http_reply_json(req, 200, json_pack("{sb}", "approved", 1));
}

/* Verified: MYBANK for tenant t1 only. */
static int h_senderid(gh_http_req_t *req, void *ud)
{
	(void)ud;
	json_t *b;
	if (gh_http_json_body(req, NULL, &b) < 0)
		return -EINVAL;
	int ok = strcmp(gh_json_get_str(b, "operation", ""), "IsVerified") == 0 &&
	         strcmp(gh_json_get_str(b, "alpha", ""), "MYBANK") == 0 &&
	         strcmp(gh_json_get_str(b, "tenant_id", ""), "t1") == 0;
	return gh_http_reply_json(
	    req, 200,
	    ok ? json_pack("{sb}", "verified", 1)
	       : json_pack("{sbss}", "verified", 0, "reason", "unknown_alpha"));
}

static int fake_setup(void **state)
{
	(void)state;
	fake_ctx = talloc_new(NULL);
	fake = gh_http_server_new(fake_ctx, &(gh_http_config_t){.threads = 2});
	if (!fake || gh_http_route(fake, "POST", "/billing/approve", h_billing, NULL) < 0 ||
	    gh_http_route(fake, "POST", "/billing/refuse", h_billing, (void *)1) < 0 ||
	    gh_http_route(fake, "POST", "/senderid", h_senderid, NULL) < 0 ||
	    gh_http_server_start(fake) < 0)
		return -1;
	unsigned p = gh_http_server_port(fake);
	snprintf(url_approve, sizeof url_approve, "http://127.0.0.1:%u/billing/approve", p);
	snprintf(url_refuse, sizeof url_refuse, "http://127.0.0.1:%u/billing/refuse", p);
	snprintf(url_senderid, sizeof url_senderid, "http://127.0.0.1:%u/senderid", p);
	snprintf(url_closed, sizeof url_closed, "http://127.0.0.1:%u/x", gh_test_free_port());
	return 0;
}

static int fake_teardown(void **state)
{
	(void)state;
	gh_http_server_stop(fake);
	talloc_free(fake_ctx);
	json_decref(billing_last);
	return 0;
}

/* ---- in-process fixture ------------------------------------------------------------------ */

typedef struct {
	void *ctx;
	char *dir, *url;
	gh_test_backend_t b;
	gh_store_t *store;
	num_repo_t *repo;
	gh_metrics_t *metrics;
	num_index_t *ix;
	num_svc_t *s;
} fx_t;

static const char *bname(gh_test_backend_t b) { return b == GH_TEST_SQLITE ? "sqlite" : "pg"; }

static void put_pool(gh_store_t *st, num_repo_t *repo, const char *tenant, const char *body)
{
	(void)st;
	json_t *b = json_loads(body, 0, NULL), *out = NULL;
	assert_non_null(b);
	gh_err_t err = {0};
	int rc = num_repo_pool_put(repo, tenant, b, -1, "admin:test", T0, &out, &err);
	if (rc != 0)
		fail_msg("pool put %s: %s", tenant, err.message);
	json_decref(out);
	json_decref(b);
	gh_err_clear(&err);
}

static void migrate(gh_store_t *st)
{
	gh_err_t err = {0};
	if (gh_migrate_run(st, "core", gh_sql_files, &err) != 0 ||
	    gh_migrate_run(st, "numbering", gh_sql_files, &err) != 0)
		fail_msg("migrate: %s", err.message);
}

static void set_ports(fx_t *fx, const char *billing, const char *senderid)
{
	assert_int_equal(num_ports_new(fx->ctx, billing, senderid, 500, &fx->s->ports), 0);
}

static int fx_open(fx_t *fx, gh_test_backend_t b)
{
	memset(fx, 0, sizeof(*fx));
	fx->b = b;
	fx->ctx = talloc_new(NULL);
	if (gh_test_num_db_open(fx->ctx, b, &(gh_store_opts_t){.pool_size = 8}, &fx->dir, &fx->url,
	                        &fx->store) < 0) {
		talloc_free(fx->ctx);
		return -1;
	}
	fx->metrics = gh_metrics_new(fx->ctx);
	assert_int_equal(num_repo_open(fx->ctx, fx->store,
	                               &(num_repo_opts_t){.metrics = fx->metrics}, &fx->repo),
	                 0);
	gh_err_t err = {0};
	assert_int_equal(num_repo_seed_operators(fx->repo, T0, &err), 0);
	put_pool(fx->store, fx->repo, "t1",
	         "{\"quotas\":{\"MSISDN\":100,\"SHORT_CODE\":10,\"ALPHA\":10},"
	         "\"max_reservations\":100,\"direct_assign\":true,\"lease_term_days\":30}");
	assert_int_equal(num_index_new(fx->ctx, 1000, 64, &fx->ix), 0);
	assert_int_equal(num_svc_new(fx->ctx, fx->ix, fx->repo, NULL, fx->metrics, NULL, &fx->s),
	                 0);
	set_ports(fx, url_approve, url_senderid);
	return 0;
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->ctx);
	gh_test_num_db_free(fx->dir, fx->url);
}

#define BOTH(name) GH_TEST_NUM_BOTH(name, fx_t, fx_open, fx_close)

static uint64_t key_of(const char *ident)
{
	gh_ident_t id;
	assert_int_equal(gh_ident_normalize(NULL, GH_IDENT_AUTO, ident, strlen(ident), &id, NULL),
	                 0);
	return id.key;
}

static void add_number(fx_t *fx, const char *ident, const char *op)
{
	gh_err_t err = {0};
	num_new_t n = {ident, GH_IDENT_AUTO, op, 0};
	if (num_repo_add(fx->repo, &n, 1, "admin:test", T0, &err) != 0)
		fail_msg("add %s: %s", ident, err.message);
}

/* Admin assigns ident (AVAILABLE) to t1 at now with term_days and auto_renew. */
static num_number_t assign(fx_t *fx, const char *ident, int64_t term_days, int auto_renew,
                           int64_t now)
{
	gh_err_t err = {0};
	num_number_t out;
	num_tx_req_t req = {.key = key_of(ident),
	                    .action = NUM_ACT_ASSIGN,
	                    .role = NUM_ROLE_ADMIN,
	                    .tenant_id = "t1",
	                    .actor = "admin:test",
	                    .expected_version = -1,
	                    .term_days = term_days,
	                    .auto_renew = auto_renew,
	                    .now_ms = now};
	if (num_repo_transition(fx->repo, &req, &out, &err) != 0)
		fail_msg("assign %s: %s", ident, err.message);
	return out;
}

static num_number_t get(fx_t *fx, const char *ident)
{
	gh_err_t err = {0};
	num_number_t n;
	assert_int_equal(num_repo_get(fx->repo, key_of(ident), NULL, &n, &err), 0);
	return n;
}

static int64_t q_i64(gh_store_t *st, const char *sql, const char *arg)
{
	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(st, 5000, &c), 0);
	int rc = gh_conn_query_one(c, sql, (gh_val_t[]){GH_TEXT(arg)}, arg ? 1 : 0, &r);
	int64_t v = -1;
	if (rc == 0) {
		v = gh_rows_i64(r, 0);
		gh_rows_close(r);
	}
	gh_store_release(c);
	if (rc < 0)
		fail_msg("query %s: %d", sql, rc);
	return v;
}

/* The data of the last outbox event of subject type (new reference), NULL when none. */
static json_t *last_event(gh_store_t *st, const char *type)
{
	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(st, 5000, &c), 0);
	int rc = gh_conn_query_one(
	    c, "SELECT envelope FROM gh_outbox WHERE subject = $1 ORDER BY id DESC LIMIT 1",
	    (gh_val_t[]){GH_TEXT(type)}, 1, &r);
	json_t *data = NULL;
	if (rc == 0) {
		json_t *env = json_loads(gh_rows_text(r, 0), 0, NULL);
		data = json_incref(json_object_get(env, "data"));
		json_decref(env);
		gh_rows_close(r);
	}
	gh_store_release(c);
	return data;
}

static int64_t count_events(gh_store_t *st, const char *type)
{
	return q_i64(st, "SELECT COUNT(*) FROM gh_outbox WHERE subject = $1", type);
}

static int64_t count_audit(gh_store_t *st, const char *action)
{
	return q_i64(st, "SELECT COUNT(*) FROM gh_audit WHERE action = $1", action);
}

/* ---- renewal ----------------------------------------------------------------------------- */

static void test_renewal_on(fx_t *fx)
{
	print_message("renewal on %s\n", bname(fx->b));
	add_number(fx, "+93701000001", "awcc");
	add_number(fx, "+93701000002", "awcc");
	add_number(fx, "+93701000003", "awcc");
	add_number(fx, "+93701000004", "awcc");
	num_number_t a = assign(fx, "+93701000001", 2, 1, T0);
	assign(fx, "+93701000002", 2, 0, T0); /* no auto_renew: never looked at */
	const int64_t ends = a.lease_ends_ms; /* T0 + 2 d */
	assert_int_equal(ends, T0 + 2 * DAY_MS);

	/* not yet within 24 h: nothing asked, nothing emitted */
	billing_calls = 0;
	assert_int_equal(num_job_renewal(fx->s, ends - DAY_MS - 1000), 0);
	assert_int_equal(billing_calls, 0);

	/* approved: ends_at + the pool's term (30 d), version +1, event, audit */
	int64_t now = ends - 3600 * 1000;
	assert_int_equal(num_job_renewal(fx->s, now), 0);
	assert_int_equal(billing_calls, 1);
	pthread_mutex_lock(&fake_mu);
	assert_string_equal(gh_json_get_str(billing_last, "operation", ""), "PreviewCharge");
	assert_string_equal(gh_json_get_str(billing_last, "tenant_id", ""), "t1");
	assert_string_equal(gh_json_get_str(billing_last, "number", ""), "+93701000001");
	assert_int_equal(gh_json_get_int(billing_last, "term_days", 0), 30);
	assert_string_equal(gh_json_get_str(billing_last, "lease_id", ""), a.lease_id);
	pthread_mutex_unlock(&fake_mu);
	num_number_t n = get(fx, "+93701000001");
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_string_equal(n.lease_id, a.lease_id);
	assert_int_equal(n.lease_ends_ms, ends + 30 * DAY_MS);
	assert_int_equal(n.version, a.version + 1);
	json_t *ev = last_event(fx->store, "number.renewed.v1");
	assert_non_null(ev);
	assert_string_equal(gh_json_get_str(ev, "identifier", ""), "+93701000001");
	assert_string_equal(gh_json_get_str(ev, "actor", ""), "system:renewal");
	json_decref(ev);
	assert_int_equal(count_audit(fx->store, "number.renew"), 1);
	/* the renewal moved the lease out of the window: the same run again asks nothing */
	assert_int_equal(num_job_renewal(fx->s, now), 0);
	assert_int_equal(billing_calls, 1);

	/* refused: the lease is left to end, the event names the reason, nothing suspended */
	num_number_t r = assign(fx, "+93701000003", 1, 1, T0);
	set_ports(fx, url_refuse, url_senderid);
	now = r.lease_ends_ms - 1000;
	assert_int_equal(num_job_renewal(fx->s, now), 0);
	n = get(fx, "+93701000003");
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_int_equal(n.lease_status, NUM_LEASE_ACTIVE);
	assert_int_equal(n.lease_ends_ms, r.lease_ends_ms);
	assert_int_equal(n.version, r.version);
	ev = last_event(fx->store, "number.renewal_failed.v1");
	assert_non_null(ev);
	assert_string_equal(gh_json_get_str(ev, "identifier", ""), "+93701000003");
	assert_string_equal(gh_json_get_str(ev, "reason", ""),
	                    "billing_refused:insufficient_funds");
	assert_string_equal(gh_json_get_str(ev, "lease_id", ""), r.lease_id);
	json_decref(ev);
	assert_int_equal(count_events(fx->store, "number.suspended.v1"), 0);

	/* unreachable billing: same, reason billing_unavailable */
	num_number_t u = assign(fx, "+93701000004", 1, 1, T0);
	set_ports(fx, url_closed, url_senderid);
	int64_t failed_before = count_events(fx->store, "number.renewal_failed.v1");
	assert_int_equal(num_job_renewal(fx->s, u.lease_ends_ms - 1000), 0);
	assert_int_equal(count_events(fx->store, "number.renewal_failed.v1"), failed_before + 2);
	ev = last_event(fx->store, "number.renewal_failed.v1");
	assert_string_equal(gh_json_get_str(ev, "reason", ""), "billing_unavailable");
	json_decref(ev);
	n = get(fx, "+93701000004");
	assert_int_equal(n.state, NUM_ST_ASSIGNED);
	assert_int_equal(n.lease_ends_ms, u.lease_ends_ms);
	assert_int_equal(count_audit(fx->store, "number.renewal_failed"), 3);
	assert_int_equal(count_events(fx->store, "number.suspended.v1"), 0);

	/* no billing configured at all: never renews either */
	set_ports(fx, NULL, url_senderid);
	assert_int_equal(num_job_renewal(fx->s, u.lease_ends_ms - 1000), 0);
	ev = last_event(fx->store, "number.renewal_failed.v1");
	assert_string_equal(gh_json_get_str(ev, "reason", ""), "billing_not_configured");
	json_decref(ev);

	/* lease end: not a millisecond early, then QUARANTINED TENANT_RELEASE, held counter back */
	int64_t held =
	    q_i64(fx->store, "SELECT held_msisdn FROM num_pools WHERE tenant_id = $1", "t1");
	assert_int_equal(num_job_lease_end(fx->s, r.lease_ends_ms - 1), 0);
	assert_int_equal(get(fx, "+93701000003").state, NUM_ST_ASSIGNED);
	assert_int_equal(num_job_lease_end(fx->s, r.lease_ends_ms), 0);
	n = get(fx, "+93701000003");
	assert_int_equal(n.state, NUM_ST_QUARANTINED);
	assert_true(n.has_quarantine);
	assert_int_equal(n.quarantine_reason, NUM_QR_TENANT_RELEASE);
	assert_string_equal(n.previous_tenant_id, "t1");
	assert_int_equal(n.quarantine_until_ms, r.lease_ends_ms + 90 * DAY_MS);
	assert_false(n.has_lease);
	assert_string_equal(n.tenant_id, "");
	/* +93701000004 ends at the same moment; +...0002 (2 d, no auto_renew) ends later */
	assert_int_equal(get(fx, "+93701000004").state, NUM_ST_QUARANTINED);
	assert_int_equal(get(fx, "+93701000002").state, NUM_ST_ASSIGNED);
	assert_int_equal(
	    q_i64(fx->store, "SELECT held_msisdn FROM num_pools WHERE tenant_id = $1", "t1"),
	    held - 2);
	assert_int_equal(q_i64(fx->store,
	                       "SELECT COUNT(*) FROM gh_audit WHERE action = 'number.expire' AND "
	                       "actor = $1",
	                       "system:lease-end"),
	                 2);
	ev = last_event(fx->store, "number.quarantined.v1");
	assert_non_null(ev);
	json_decref(ev);
	/* the renewed one (ends 32 d after T0) is still held after the others ended */
	assert_int_equal(num_job_lease_end(fx->s, ends + DAY_MS), 0);
	assert_int_equal(get(fx, "+93701000001").state, NUM_ST_ASSIGNED);
	assert_int_equal(get(fx, "+93701000002").state, NUM_ST_QUARANTINED);
	assert_int_equal(count_audit(fx->store, "number.transition_refused"), 0);
	/* a suspended lease is not charged: renewal_failed lease_suspended */
	gh_err_t err = {0};
	num_number_t s1 = get(fx, "+93701000001");
	num_tx_req_t sus = {.key = s1.key,
	                    .action = NUM_ACT_SUSPEND,
	                    .role = NUM_ROLE_SYSTEM,
	                    .actor = "system:test",
	                    .expected_version = -1,
	                    .now_ms = s1.lease_ends_ms - DAY_MS};
	assert_int_equal(num_repo_transition(fx->repo, &sus, NULL, &err), 0);
	set_ports(fx, url_approve, url_senderid);
	billing_calls = 0;
	assert_int_equal(num_job_renewal(fx->s, s1.lease_ends_ms - 1000), 0);
	assert_int_equal(billing_calls, 0);
	ev = last_event(fx->store, "number.renewal_failed.v1");
	assert_string_equal(gh_json_get_str(ev, "reason", ""), "lease_suspended");
	json_decref(ev);
}
BOTH(test_renewal)

/* ---- the ALPHA gate ---------------------------------------------------------------------- */

static void test_alpha_gate_on(fx_t *fx)
{
	print_message("alpha gate on %s\n", bname(fx->b));
	add_number(fx, "MyBank", NULL);
	add_number(fx, "Other", NULL);
	add_number(fx, "+93701000009", "awcc");
	gh_err_t err = {0};
	num_tx_req_t req = {.key = key_of("MYBANK"),
	                    .action = NUM_ACT_ASSIGN,
	                    .role = NUM_ROLE_TENANT,
	                    .tenant_id = "t1",
	                    .expected_version = -1};
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), 0);
	/* another tenant, another alpha: not verified */
	req.tenant_id = "t2";
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), -EPROTO);
	assert_int_equal(err.code, GH_E_FAILED_PRECONDITION);
	assert_string_equal(gh_json_get_str(err.details, "reason", ""), "senderid_not_verified");
	req.tenant_id = "t1";
	req.key = key_of("OTHER");
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), -EPROTO);
	/* an admin assign of a reserved alpha asks for its holder */
	num_tx_req_t res = {.key = key_of("MYBANK"),
	                    .action = NUM_ACT_RESERVE,
	                    .role = NUM_ROLE_TENANT,
	                    .tenant_id = "t1",
	                    .actor = "tenant:t1",
	                    .expected_version = -1,
	                    .now_ms = T0};
	assert_int_equal(num_repo_transition(fx->repo, &res, NULL, &err), 0);
	num_tx_req_t adm = {.key = key_of("MYBANK"),
	                    .action = NUM_ACT_ASSIGN,
	                    .role = NUM_ROLE_ADMIN,
	                    .expected_version = -1};
	assert_int_equal(num_svc_senderid_gate(fx->s, &adm, &err), 0);
	/* unreachable and unconfigured registries fail closed */
	set_ports(fx, url_approve, url_closed);
	req.key = key_of("MYBANK");
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), -EIO);
	assert_int_equal(err.code, GH_E_UNAVAILABLE);
	assert_string_equal(gh_json_get_str(err.details, "reason", ""), "senderid_unavailable");
	set_ports(fx, url_approve, NULL);
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), -EIO);
	/* not an ALPHA id, or not an assignment: no call, no refusal */
	req.key = key_of("+93701000009");
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), 0);
	req.key = key_of("MYBANK");
	req.action = NUM_ACT_RELEASE;
	assert_int_equal(num_svc_senderid_gate(fx->s, &req, &err), 0);
	gh_err_clear(&err);
}
BOTH(test_alpha_gate)

/* ---- audit verify ------------------------------------------------------------------------ */

static void test_audit_verify_on(fx_t *fx)
{
	print_message("audit verify on %s\n", bname(fx->b));
	add_number(fx, "+93701000011", "awcc");
	assign(fx, "+93701000011", 30, 1, T0);
	gh_gauge_set(fx->s->g_audit_broken, 1); /* a clean run clears it */
	assert_int_equal(num_job_audit_verify(fx->s, T0), 0);
	assert_int_equal(gh_gauge_value(fx->s->g_audit_broken), 0);
	assert_int_equal(count_events(fx->store, "numbering.audit.chain_broken.v1"), 0);
	int64_t rows =
	    q_i64(fx->store, "SELECT COUNT(*) FROM gh_audit WHERE chain = $1", "numbering");
	assert_true(rows >= 3);
	/* an edit of row 2 that leaves its hash as it was */
	gh_test_exec(fx->store, "UPDATE gh_audit SET actor = 'admin:mallory' WHERE chain = "
	                        "'numbering' AND seq = 2");
	assert_int_equal(num_job_audit_verify(fx->s, T0 + 1000), 0);
	assert_int_equal(gh_gauge_value(fx->s->g_audit_broken), 1);
	json_t *ev = last_event(fx->store, "numbering.audit.chain_broken.v1");
	assert_non_null(ev);
	assert_int_equal(gh_json_get_int(ev, "first_bad_seq", 0), 2);
	assert_string_equal(gh_json_get_str(ev, "chain", ""), "numbering");
	assert_true(gh_json_get_int(ev, "rows_checked", -1) >= 1);
	json_decref(ev);
	/* the exposition shows it */
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(gh_metrics_render(fx->metrics, fx->ctx, &text, &len), 0);
	assert_non_null(strstr(text, "numbering_audit_chain_broken 1"));
}
BOTH(test_audit_verify)

/* ---- expiry precision through `ghasi serve` ---------------------------------------------- */

typedef gh_test_ghasi_t srv_t;

static void srv_start(srv_t *s, const char *dir, const char *store, const char *bus,
                      const char *stream)
{
	void *tmp = talloc_new(NULL);
	const char *env[] = {
	    talloc_asprintf(tmp, "GHASI_STORE_URL=%s", store),
	    talloc_asprintf(tmp, "GHASI_BUS_URL=%s", bus && *bus ? bus : "inproc://"),
	    talloc_asprintf(tmp, "GHASI_BUS_STREAM=%s", stream), "GHASI_LOG_LEVEL=warn",
	    "GHASI_NUMBERING_INDEX_CAPACITY=100000", "GHASI_NUMBERING_SEED_DEMO=false",
	    /* the sweep out of the way: the timers alone must keep the +-2 s */
	    "GHASI_NUMBERING_RESERVATION_SWEEP=@every 1h",
	    talloc_asprintf(tmp, "GHASI_NUMBERING_SENDERID_URL=%s", url_senderid), NULL};
	gh_test_ghasi_start(s, dir, env, NULL);
	talloc_free(tmp);
}

static void reserve(num_repo_t *repo, const char *ident, int64_t ttl_s)
{
	gh_err_t err = {0};
	num_tx_req_t req = {.key = key_of(ident),
	                    .action = NUM_ACT_RESERVE,
	                    .role = NUM_ROLE_TENANT,
	                    .tenant_id = "tx",
	                    .actor = "tenant:tx",
	                    .expected_version = -1,
	                    .ttl_s = ttl_s,
	                    .now_ms = gh_test_wall_ms()};
	if (num_repo_transition(repo, &req, NULL, &err) != 0)
		fail_msg("reserve %s: %s", ident, err.message);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Sum of the samples in the /metrics page whose line starts with prefix (the page is read to
 * the end with Connection: close: it can outgrow the test client's buffer). */
static int64_t metric_sum(uint16_t port, const char *prefix)
{
	int fd = gh_test_http_connect(port);
	assert_true(fd >= 0);
	const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t k = read(fd, buf + len, cap - len - 1);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	int64_t sum = 0;
	size_t pl = strlen(prefix);
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, prefix, pl) == 0) {
			char *sp = strrchr(line, ' ');
			if (sp)
				sum += strtoll(sp + 1, NULL, 10);
		}
		line = nl ? nl + 1 : NULL;
	}
	free(buf);
	return sum;
}

#define N_RES    1000
#define N_BEFORE 300

static void test_expiry_precision_on(gh_test_backend_t b)
{
	char *dir = gh_test_tmpdir();
	char *url = gh_test_store_url(b, dir);
	if (!url) {
		gh_test_rmtree(dir);
		free(dir);
		return;
	}
	const char *nats = b == GH_TEST_PG ? gh_test_nats_url() : NULL;
	if (b == GH_TEST_PG && !nats) {
		GH_TEST_NEED(nats);
		return;
	}
	void *ctx = talloc_new(NULL);
	gh_store_t *st;
	assert_int_equal(gh_store_open(ctx, url, &(gh_store_opts_t){.pool_size = 4}, &st), 0);
	migrate(st);
	num_repo_t *repo;
	assert_int_equal(num_repo_open(ctx, st, NULL, &repo), 0);
	gh_err_t err = {0};
	assert_int_equal(num_repo_seed_operators(repo, T0, &err), 0);
	put_pool(st, repo, "tx",
	         "{\"quotas\":{\"MSISDN\":2000,\"SHORT_CODE\":10,\"ALPHA\":10},"
	         "\"max_reservations\":2000,\"direct_assign\":true}");
	put_pool(st, repo, "t1",
	         "{\"quotas\":{\"MSISDN\":10,\"SHORT_CODE\":10,\"ALPHA\":10},"
	         "\"max_reservations\":10,\"direct_assign\":true}");
	num_new_t *nums = talloc_array(ctx, num_new_t, N_RES + 2);
	typedef char ident_buf_t[16];
	ident_buf_t *ids = talloc_array(ctx, ident_buf_t, N_RES);
	for (int i = 0; i < N_RES; i++) {
		snprintf(ids[i], sizeof ids[i], "+93702%06d", i);
		nums[i] = (num_new_t){ids[i], GH_IDENT_AUTO, "awcc", 0};
	}
	nums[N_RES] = (num_new_t){"MyBank", GH_IDENT_AUTO, NULL, 0};
	nums[N_RES + 1] = (num_new_t){"Other", GH_IDENT_AUTO, NULL, 0};
	if (num_repo_add(repo, nums, N_RES + 2, "admin:test", T0, &err) != 0)
		fail_msg("add: %s", err.message);

	/* made before any server runs: armed from the database at start */
	for (int i = 0; i < N_BEFORE; i++)
		reserve(repo, ids[i], 6 + i % 3);
	char stream[64];
	snprintf(stream, sizeof stream, "numjobs%d", (int)getpid());
	srv_t srv[2] = {0};
	int nsrv = b == GH_TEST_PG ? 2 : 1;
	for (int i = 0; i < nsrv; i++)
		srv_start(&srv[i], dir, url, nats, stream);
	/* made while they run, by this process: the servers learn them from the stream */
	for (int i = N_BEFORE; i < N_RES; i++)
		reserve(repo, ids[i], 1 + i % 4);

	/* the ALPHA gate over HTTP while waiting */
	gh_test_http_resp_t *r = malloc(sizeof *r);
	gh_test_http_request(srv[0].port, "POST", "/v1/numbering/numbers/MYBANK:assign", NULL,
	                     "{\"tenant_id\":\"t1\"}", r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(srv[0].port, "POST", "/v1/numbering/numbers/OTHER:assign", NULL,
	                     "{\"tenant_id\":\"t1\"}", r);
	assert_int_equal(r->status, 422);
	assert_non_null(strstr(r->body, "senderid_not_verified"));
	free(r);

	int64_t deadline = gh_test_now_ms() + 30000;
	while (q_i64(st, "SELECT COUNT(*) FROM num_reservations WHERE ended_ms IS NULL", NULL) >
	           0 &&
	       gh_test_now_ms() < deadline)
		usleep(100 * 1000);

	/* every reservation ended once, by expiry, within +-2 s of expires_at */
	gh_conn_t *c;
	gh_rows_t *rs;
	assert_int_equal(gh_store_acquire(st, 5000, &c), 0);
	assert_int_equal(gh_conn_query(c,
	                               "SELECT expires_ms, ended_ms, end_action FROM "
	                               "num_reservations ORDER BY id",
	                               NULL, 0, &rs),
	                 0);
	int64_t *d = talloc_array(ctx, int64_t, N_RES);
	size_t n = 0, live = 0, other = 0;
	while (gh_rows_next(rs) > 0 && n < N_RES) {
		if (gh_rows_isnull(rs, 1)) {
			live++;
			continue;
		}
		if (strcmp(gh_rows_text(rs, 2), "expire") != 0)
			other++;
		d[n++] = gh_rows_i64(rs, 1) - gh_rows_i64(rs, 0);
	}
	gh_rows_close(rs);
	gh_store_release(c);
	assert_int_equal(live, 0);
	assert_int_equal(other, 0);
	assert_int_equal(n, N_RES);
	qsort(d, n, sizeof d[0], cmp_i64);
	int64_t p50 = d[n / 2], p99 = d[(n * 99) / 100], mx = d[n - 1], mn = d[0];
	long long mean = 0;
	for (size_t i = 0; i < n; i++)
		mean += d[i];
	mean /= (long long)n;
	int64_t expired = 0, conflicts = 0;
	for (int i = 0; i < nsrv; i++) {
		expired += metric_sum(srv[i].port, "numbering_reservations_expired_total");
		conflicts +=
		    metric_sum(srv[i].port, "numbering_transitions_total{action=\"expire\","
		                            "result=\"conflict\"}");
	}
	print_message("expiry precision %s: n=%zu replicas=%d (ended_ms - expires_at, ms) "
	              "min=%lld p50=%lld mean=%lld p99=%lld max=%lld; expired by timers=%lld, "
	              "losing replicas' CONFLICTs=%lld\n",
	              bname(b), n, nsrv, (long long)mn, (long long)p50, mean, (long long)p99,
	              (long long)mx, (long long)expired, (long long)conflicts);
	assert_true(mn >= 0); /* never early: the transition's own guard */
	assert_true(mx <= 2000);
	assert_int_equal(count_audit(st, "number.expire"), N_RES);
	assert_int_equal(count_audit(st, "number.transition_refused"), 0);
	assert_int_equal(count_events(st, "number.reservation_expired.v1"), N_RES);
	assert_int_equal(expired, N_RES);
	assert_int_equal(q_i64(st, "SELECT reservations FROM num_pools WHERE tenant_id = $1", "tx"),
	                 0);
	for (int i = 0; i < nsrv; i++)
		gh_test_ghasi_stop(&srv[i]);
	if (nats)
		gh_test_nats_delete_stream(nats, stream);
	talloc_free(ctx);
	gh_test_rmtree(dir);
	free(dir);
	free(url);
}

static void test_expiry_precision(void **state)
{
	(void)state;
	test_expiry_precision_on(GH_TEST_SQLITE);
	test_expiry_precision_on(GH_TEST_PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_renewal),
	    cmocka_unit_test(test_alpha_gate),
	    cmocka_unit_test(test_audit_verify),
	    cmocka_unit_test(test_expiry_precision),
	};
	return cmocka_run_group_tests(tests, fake_setup, fake_teardown);
}
