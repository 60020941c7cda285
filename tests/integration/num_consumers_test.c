/* num_consumers: the numbering service's event consumers and anomaly signals in a real app
 * (gh_app_open + num_service, as `ghasi serve` runs them), on SQLite with the in-process bus and
 * on PostgreSQL with NATS JetStream:
 *   - each consumed event applied (tenant suspended, tenant deleted, sender id revoked, billing
 *     delinquent then paid, and an older delinquent after a newer paid ignored);
 *   - a duplicated event (same event id, new message id) applied once, and a delivery abandoned
 *     mid-bulk (a consumer dying before its ack) resumed on redelivery: every number recalled,
 *     each exactly once;
 *   - invalid events (schema, malformed JSON, envelope/data tenant mismatch) dead-lettered with
 *     the reason, nothing applied;
 *   - a bulk recall of 10,000 numbers while a thread hammers ValidateLease over HTTP: validates
 *     keep answering (p99 measured and printed), and the tenant's validates read
 *     TENANT_SUSPENDED before the recall reaches the last number;
 *   - anomaly signals (numbering.anomaly.v1) above their thresholds and not below. */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "busrec.h"
#include "gh-core.h"
#include "ghasiproc.h"
#include "httpc.h"
#include "numbering/service.h"
#include "storefx.h"
#include "testutil.h"

#define T_BULK   "t-bulk"   /* 10,000 numbers: tenant.suspended under validate load */
#define T_DEL    "t-del"    /* tenant.deleted, duplicated */
#define T_CRASH  "t-crash"  /* tenant.suspended abandoned mid-bulk */
#define T_BILL   "t-bill"   /* billing */
#define T_ALPHA  "t-alpha"  /* senderid.revoked */
#define T_OTHER  "t-other"  /* holds an alpha of the same name space, never touched */
#define T_SPOOFA "t-spoofa" /* WRONG_TENANT below the threshold */
#define T_SPOOFB "t-spoofb" /* WRONG_TENANT above */
#define T_CHURNA "t-churna" /* churn below */
#define T_CHURNB "t-churnb" /* churn above */
#define T_QUAR   "t-quar"   /* first send after quarantine */

#define N_BULK     10000
#define N_DEL      50
#define N_CRASH    120
#define N_BILL     100
#define WRONG_THR  6
#define LOOKUP_THR 60
#define CHURN_THR  10

typedef struct {
	void *ctx;
	char *dir;
	const char *nats;
	char stream[48];
	gh_config_t *cfg;
	gh_app_t *app;
	gh_store_t *store;
	num_repo_t *repo;
	uint16_t port;
	const gh_operator_t *op;
	gh_operator_t ops[64];
	size_t n_ops;
	gh_test_rec_t *dlq;
	gh_bus_sub_t *dlq_sub;
	pthread_mutex_t mu;
	json_t *anomalies; /* data objects of numbering.anomaly.v1 */
	gh_bus_sub_t *an_sub;
	uint32_t next_msisdn;
} fx_t;

/* ---- helpers ----------------------------------------------------------------------------- */

static int64_t q64(fx_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t q64(fx_t *f, const char *fmt, ...)
{
	char sql[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	return gh_test_query_i64(f->store, sql);
}

/* Poll until q64(sql) == want or timeout; returns the last value. */
#define WAIT_EQ(f, want, timeout_ms, ...)                                               \
	({                                                                              \
		int64_t v_ = -1, end_ = gh_test_now_ms() + (timeout_ms);                \
		while ((v_ = q64(f, __VA_ARGS__)) != (want) && gh_test_now_ms() < end_) \
			usleep(20 * 1000);                                              \
		v_;                                                                     \
	})

static int anomaly_handler(const gh_bus_msg_t *m, void *ud, char *reason, size_t n)
{
	(void)reason;
	(void)n;
	fx_t *f = ud;
	json_t *env = json_loadb(m->data, m->len, 0, NULL);
	if (env) {
		pthread_mutex_lock(&f->mu);
		json_array_append(f->anomalies, json_object_get(env, "data"));
		pthread_mutex_unlock(&f->mu);
		json_decref(env);
	}
	return 0;
}

/* Anomalies of kind (and tenant, NULL any) received so far. */
static int anomalies(fx_t *f, const char *kind, const char *tenant, json_t **last)
{
	int n = 0;
	pthread_mutex_lock(&f->mu);
	size_t i;
	json_t *d;
	json_array_foreach(f->anomalies, i, d)
	{
		const char *t = json_string_value(json_object_get(d, "tenant_id"));
		if (strcmp(json_string_value(json_object_get(d, "kind")), kind) == 0 &&
		    (!tenant || (t && strcmp(t, tenant) == 0))) {
			n++;
			if (last) {
				json_decref(*last);
				*last = json_incref(d);
			}
		}
	}
	pthread_mutex_unlock(&f->mu);
	return n;
}

static int wait_anomaly(fx_t *f, const char *kind, const char *tenant, int64_t timeout_ms,
                        json_t **last)
{
	int64_t end = gh_test_now_ms() + timeout_ms;
	int n;
	while ((n = anomalies(f, kind, tenant, last)) == 0 && gh_test_now_ms() < end)
		usleep(50 * 1000);
	return n;
}

/* Publish an event envelope around data (JSON text) on subject. */
static void publish(fx_t *f, const char *subject, const char *event_id, int64_t time_ms,
                    const char *data)
{
	char t[25], msg_id[37], *body;
	gh_time_format(time_ms, t);
	gh_uuid_v4(msg_id); /* a new message id every time: the bus must not de-duplicate */
	body = talloc_asprintf(f->ctx,
	                       "{\"id\":\"%s\",\"type\":\"%s\",\"source\":\"test/producer\","
	                       "\"time\":\"%s\",\"data\":%s}",
	                       event_id, subject, t, data);
	assert_int_equal(gh_bus_publish(f->app->bus, subject, msg_id, body, strlen(body), NULL, 0),
	                 0);
	talloc_free(body);
}

static void publish_raw(fx_t *f, const char *subject, const char *body)
{
	char msg_id[37];
	gh_uuid_v4(msg_id);
	assert_int_equal(gh_bus_publish(f->app->bus, subject, msg_id, body, strlen(body), NULL, 0),
	                 0);
}

/* ValidateLease over HTTP on c; the reason, "HTTP <status>" otherwise. */
static const char *validate(gh_test_http_conn_t *c, gh_test_http_resp_t *r, const char *ident,
                            const char *tenant, char *out, size_t n)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/numbering/validate-lease?identifier=%%2B%s&tenant_id=%s",
	         ident + 1, tenant);
	gh_test_http_exchange(c, "GET", path, NULL, NULL, r);
	if (r->status != 200) {
		snprintf(out, n, "HTTP %d", r->status);
		return out;
	}
	json_t *j = gh_test_http_json(r);
	snprintf(out, n, "%s", json_string_value(json_object_get(j, "reason")));
	json_decref(j);
	return out;
}

static void msisdn(uint32_t i, char out[16]) { snprintf(out, 16, "+937%08u", i); }

/* ---- seeding (before the service starts, so its index loads it) ------------------------- */

static void pool(fx_t *f, const char *tenant)
{
	json_t *body =
	    json_pack("{s:{s:i, s:i, s:i}, s:b, s:i}", "quotas", "MSISDN", 20000, "SHORT_CODE", 10,
	              "ALPHA", 10, "direct_assign", 1, "max_reservations", 1000);
	json_t *out = NULL;
	gh_err_t err = {0};
	int rc =
	    num_repo_pool_put(f->repo, tenant, body, -1, "test", gh_test_wall_ms(), &out, &err);
	if (rc != 0)
		fail_msg("pool %s: %s", tenant, err.message);
	json_decref(body);
	json_decref(out);
}

typedef struct {
	fx_t *f;
	const char *tenant;
	const uint64_t *keys;
	size_t n;
	int kind;
} assign_tx_t;

static int assign_fn(gh_conn_t *c, void *ud)
{
	assign_tx_t *a = ud;
	int64_t now = gh_test_wall_ms();
	for (size_t i = 0; i < a->n; i++) {
		char lease[37];
		gh_uuid_v4(lease);
		int rc = gh_conn_exec(c,
		                      "UPDATE num_numbers SET state = 'ASSIGNED', tenant_id = $1, "
		                      "version = version + 1 WHERE key = $2",
		                      (gh_val_t[]){GH_TEXT(a->tenant), GH_I64((int64_t)a->keys[i])},
		                      2, NULL);
		if (rc == 0)
			rc = gh_conn_exec(c,
			                  "INSERT INTO num_leases (lease_id, number_key, "
			                  "tenant_id, starts_ms, ends_ms, "
			                  "auto_renew, status, created_ms, updated_ms) VALUES ($1, "
			                  "$2, $3, $4, $5, 1, "
			                  "'ACTIVE', $4, $4)",
			                  (gh_val_t[]){GH_TEXT(lease), GH_I64((int64_t)a->keys[i]),
			                               GH_TEXT(a->tenant), GH_I64(now),
			                               GH_I64(now + 30 * 86400000LL)},
			                  5, NULL);
		if (rc < 0)
			return rc;
	}
	const char *col = a->kind == NUM_KIND_ALPHA ? "held_alpha" : "held_msisdn";
	char sql[128];
	snprintf(sql, sizeof sql, "UPDATE num_pools SET %s = %s + $1 WHERE tenant_id = $2", col,
	         col);
	return gh_conn_exec(c, sql, (gh_val_t[]){GH_I64((int64_t)a->n), GH_TEXT(a->tenant)}, 2,
	                    NULL);
}

/* Add n MSISDNs (or the given alpha ids) and, when tenant is set, assign them to it with an
 * ACTIVE lease (direct SQL: the fixture, not the code under test). first gets the first
 * MSISDN's index. */
static void add_numbers(fx_t *f, const char *tenant, size_t n, const char *const *alphas,
                        uint32_t *first)
{
	num_new_t *nn = talloc_array(f->ctx, num_new_t, n);
	uint64_t *keys = talloc_array(f->ctx, uint64_t, n);
	if (first)
		*first = f->next_msisdn;
	for (size_t i = 0; i < n; i++) {
		char *id = talloc_size(nn, 16);
		if (alphas)
			snprintf(id, 16, "%s", alphas[i]);
		else
			msisdn(f->next_msisdn++, id);
		gh_ident_t gi;
		assert_int_equal(gh_ident_normalize(NULL, alphas ? GH_IDENT_ALPHA : GH_IDENT_MSISDN,
		                                    id, strlen(id), &gi, NULL),
		                 0);
		keys[i] = gi.key;
		nn[i] = (num_new_t){id, alphas ? GH_IDENT_ALPHA : GH_IDENT_MSISDN,
		                    alphas ? NULL : f->op->id, 0};
	}
	gh_err_t err = {0};
	if (num_repo_add(f->repo, nn, n, "test", gh_test_wall_ms(), &err) != 0)
		fail_msg("add: %s", err.message);
	if (tenant) {
		assign_tx_t a = {f, tenant, keys, n, alphas ? NUM_KIND_ALPHA : NUM_KIND_MSISDN};
		gh_tx_opts_t o = {.flags = GH_TX_WRITE};
		assert_int_equal(gh_store_tx(f->store, assign_fn, &a, &o), 0);
	}
	talloc_free(nn);
	talloc_free(keys);
}

static fx_t *fx_open(gh_test_backend_t b)
{
	fx_t *f = talloc_zero(NULL, fx_t);
	f->ctx = f;
	f->dir = gh_test_tmpdir();
	f->next_msisdn = 1000000;
	char *store = gh_test_store_url(b, f->dir);
	if (!store) {
		gh_test_rmtree(f->dir);
		free(f->dir);
		talloc_free(f);
		return NULL;
	}
	const char *bus = "inproc://";
	if (b == GH_TEST_PG) {
		f->nats = gh_test_nats_url();
		if (!f->nats) {
			free(store);
			gh_test_rmtree(f->dir);
			free(f->dir);
			talloc_free(f);
			return NULL;
		}
		bus = f->nats;
	}
	pthread_mutex_init(&f->mu, NULL);
	f->anomalies = json_array();
	snprintf(f->stream, sizeof f->stream, "numcons%d", (int)getpid());
	if (f->nats)
		gh_test_nats_delete_stream(f->nats, f->stream);
	char port[16];
	snprintf(port, sizeof port, "%u", gh_test_free_port());
	char *env[] = {
	    talloc_asprintf(f, "GHASI_STORE_URL=%s", store),
	    talloc_asprintf(f, "GHASI_BUS_URL=%s", bus),
	    talloc_asprintf(f, "GHASI_BUS_STREAM=%s", f->stream),
	    talloc_asprintf(f, "GHASI_HTTP_PORT=%s", port),
	    "GHASI_BUS_ACK_WAIT_MS=1500",
	    "GHASI_STORE_POOL_SIZE=8",
	    getenv("NUM_TEST_KEEP") ? "GHASI_LOG_LEVEL=info" : "GHASI_LOG_LEVEL=error",
	    "GHASI_NUMBERING_SEED_DEMO=false",
	    "GHASI_NUMBERING_INDEX_CAPACITY=100000",
	    talloc_asprintf(f, "GHASI_NUMBERING_ANOMALY_WRONG_TENANT_PER_MIN=%d", WRONG_THR),
	    talloc_asprintf(f, "GHASI_NUMBERING_ANOMALY_LOOKUP_UNKNOWN_PER_MIN=%d", LOOKUP_THR),
	    talloc_asprintf(f, "GHASI_NUMBERING_ANOMALY_CHURN_PER_HOUR=%d", CHURN_THR),
	    "GHASI_NUMBERING_ANOMALY_FLUSH=@every 1s",
	    "GHASI_NUMBERING_ANOMALY_CHURN_CHECK=@every 1s",
	    NULL};
	free(store);
	gh_err_t err = {0};
	num_config_register();
	if (gh_config_load(f, NULL, env, &f->cfg, &err) != 0)
		fail_msg("config: %s", err.message);
	const gh_service_t *svcs[] = {&num_service};
	if (gh_app_open(f, f->cfg, NULL, svcs, 1, &f->app, &err) != 0)
		fail_msg("app: %s", err.message);
	assert_int_equal(gh_app_migrate(f->app, &num_service, &err), 0);
	f->store = f->app->store;
	assert_int_equal(num_repo_open(f, f->store, NULL, &f->repo), 0);
	assert_int_equal(num_repo_seed_operators(f->repo, gh_test_wall_ms(), &err), 0);
	assert_int_equal(num_repo_operator_table(f->repo, f->ops, 64, &f->n_ops), 0);
	char first[16];
	msisdn(f->next_msisdn, first);
	f->op = gh_operator_for_msisdn(f->ops, f->n_ops, first, gh_test_wall_ms());
	assert_non_null(f->op);

	static const char *const tenants[] = {T_BULK,   T_DEL,    T_CRASH,  T_BILL,
	                                      T_ALPHA,  T_OTHER,  T_SPOOFA, T_SPOOFB,
	                                      T_CHURNA, T_CHURNB, T_QUAR};
	for (size_t i = 0; i < sizeof tenants / sizeof tenants[0]; i++)
		pool(f, tenants[i]);
	int64_t t0 = gh_test_now_ms();
	add_numbers(f, T_BULK, N_BULK, NULL, NULL);
	print_message("[ seed     ] %d numbers assigned to %s in %lld ms (%s)\n", N_BULK, T_BULK,
	              (long long)(gh_test_now_ms() - t0), b == GH_TEST_PG ? "pg" : "sqlite");
	add_numbers(f, T_DEL, N_DEL, NULL, NULL);
	add_numbers(f, T_CRASH, N_CRASH, NULL, NULL);
	add_numbers(f, T_BILL, N_BILL, NULL, NULL);
	static const char *const a1[] = {"MyBank", "MyShop"}, *const a2[] = {"Other"};
	add_numbers(f, T_ALPHA, 2, a1, NULL);
	add_numbers(f, T_OTHER, 1, a2, NULL);

	if (gh_app_mount(f->app, &num_service, &err) != 0)
		fail_msg("mount: %s", err.message);
	f->dlq = gh_test_rec_new(GH_REC_OK);
	assert_int_equal(gh_bus_subscribe(f->app->bus, "dlq.compliance.tenant.suspended.v1",
	                                  "test-dlq", gh_test_rec_handler, f->dlq, NULL,
	                                  &f->dlq_sub),
	                 0);
	gh_bus_sub_opts_t po = {.per_process = 1};
	assert_int_equal(gh_bus_subscribe(f->app->bus, "numbering.anomaly.v1", "test-anomaly",
	                                  anomaly_handler, f, &po, &f->an_sub),
	                 0);
	if (gh_app_start(f->app, &err) != 0)
		fail_msg("start: %s", err.message);
	f->port = gh_http_server_port(f->app->http);
	return f;
}

static void fx_close(fx_t *f)
{
	gh_bus_unsubscribe(f->dlq_sub);
	gh_bus_unsubscribe(f->an_sub);
	gh_app_shutdown(f->app);
	if (f->nats)
		gh_test_nats_delete_stream(f->nats, f->stream);
	gh_test_rec_free(f->dlq);
	json_decref(f->anomalies);
	gh_test_rmtree(f->dir);
	free(f->dir);
	pthread_mutex_destroy(&f->mu);
	talloc_free(f);
}

/* ---- the cases --------------------------------------------------------------------------- */

static const char *held(fx_t *f, const char *tenant, char *buf)
{
	snprintf(buf, 128, "SELECT COUNT(*) FROM num_numbers WHERE tenant_id = '%s'", tenant);
	return buf;
}

static void case_invalid_dead_lettered(fx_t *f)
{
	const char *subj = "compliance.tenant.suspended.v1";
	char id[37];
	gh_uuid_v4(id);
	publish(f, subj, id, gh_test_wall_ms(), "{\"reason\":\"no tenant\"}"); /* schema */
	publish_raw(f, subj, "{\"id\": \"x\", ");                              /* malformed */
	publish(f, subj, "not-a-uuid", gh_test_wall_ms(),
	        "{\"tenant_id\":\"" T_DEL "\"}"); /* format */
	char t[25], body[512];
	gh_time_format(gh_test_wall_ms(), t);
	gh_uuid_v4(id);
	snprintf(body, sizeof body,
	         "{\"id\":\"%s\",\"type\":\"%s\",\"source\":\"x\",\"time\":\"%s\",\"tenant_id\":"
	         "\"" T_OTHER "\",\"data\":{\"tenant_id\":\"" T_DEL "\"}}",
	         id, subj, t);
	publish_raw(f, subj, body); /* envelope tenant differs from data */
	assert_int_equal(gh_test_rec_wait_n(f->dlq, 4, 15000), 4);
	pthread_mutex_lock(&f->dlq->lock);
	assert_non_null(strstr(f->dlq->got[0].reason, "/data: required"));
	assert_non_null(strstr(f->dlq->got[0].reason, "tenant_id"));
	assert_non_null(strstr(f->dlq->got[1].reason, "malformed"));
	assert_non_null(strstr(f->dlq->got[2].reason, "/id: format"));
	assert_non_null(strstr(f->dlq->got[3].reason, "tenant_id differs"));
	assert_string_equal(f->dlq->got[0].dlq_subject, subj);
	pthread_mutex_unlock(&f->dlq->lock);
	char q[128];
	/* nothing applied: the tenant named in the rejected events still holds everything */
	assert_int_equal(q64(f, "%s", held(f, T_DEL, q)), N_DEL);
	assert_int_equal(q64(f, "SELECT COUNT(*) FROM num_pools WHERE status = 'SUSPENDED'"), 0);
}

static void case_deleted_duplicate_applied_once(fx_t *f)
{
	char id[37], q[128];
	gh_uuid_v4(id);
	publish(f, "tenant.deleted.v1", id, gh_test_wall_ms(), "{\"tenant_id\":\"" T_DEL "\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", id), 1);
	assert_int_equal(q64(f, "%s", held(f, T_DEL, q)), 0);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_quarantines WHERE previous_tenant_id = '%s' "
	                     "AND reason = 'RECALL_ADMIN'",
	                     T_DEL),
	                 N_DEL);
	/* the tenant comes back and gets a number; the duplicate must not take it */
	json_t *body = json_pack("{ss}", "status", "ACTIVE"), *out = NULL;
	gh_err_t err = {0};
	assert_int_equal(
	    num_repo_pool_patch(f->repo, T_DEL, body, -1, "test", gh_test_wall_ms(), &out, &err),
	    0);
	json_decref(body);
	json_decref(out);
	add_numbers(f, T_DEL, 1, NULL, NULL);
	publish(f, "tenant.deleted.v1", id, gh_test_wall_ms(), "{\"tenant_id\":\"" T_DEL "\"}");
	/* a later event on the same durable proves the duplicate was handled */
	char marker[37];
	gh_uuid_v4(marker);
	publish(f, "tenant.deleted.v1", marker, gh_test_wall_ms(), "{\"tenant_id\":\"t-nobody\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", marker),
	    1);
	assert_int_equal(q64(f, "%s", held(f, T_DEL, q)), 1);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_pools WHERE tenant_id = '%s' AND status "
	                     "= 'ACTIVE'",
	                     T_DEL),
	                 1);
}

static void case_abandoned_bulk_resumes(fx_t *f)
{
	char id[37], q[128];
	gh_uuid_v4(id);
	num_consumers_fault_abandon_after(N_CRASH / 3);
	publish(f, "compliance.tenant.suspended.v1", id, gh_test_wall_ms(),
	        "{\"tenant_id\":\"" T_CRASH "\",\"reason\":\"KYC hold\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 30000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", id), 1);
	assert_int_equal(q64(f, "%s", held(f, T_CRASH, q)), 0);
	/* each number recalled exactly once: one quarantine record and one recall audit row */
	assert_int_equal(
	    q64(f, "SELECT COUNT(*) FROM num_quarantines WHERE previous_tenant_id = '%s'", T_CRASH),
	    N_CRASH);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM gh_audit WHERE action = 'number.recall' AND "
	                     "tenant_id = '%s'",
	                     T_CRASH),
	                 N_CRASH);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_pools WHERE tenant_id = '%s' AND status "
	                     "= 'SUSPENDED'",
	                     T_CRASH),
	                 1);
}

static void case_senderid_revoked(fx_t *f)
{
	char id[37], id2[37];
	gh_uuid_v4(id);
	gh_uuid_v4(id2);
	/* revoking "OTHER" for T_ALPHA must not touch T_OTHER's sender id */
	publish(f, "senderid.revoked.v1", id, gh_test_wall_ms(),
	        "{\"alpha\":\"mybank\",\"tenant_id\":\"" T_ALPHA "\"}");
	publish(f, "senderid.revoked.v1", id, gh_test_wall_ms(), /* duplicate */
	        "{\"alpha\":\"mybank\",\"tenant_id\":\"" T_ALPHA "\"}");
	publish(f, "senderid.revoked.v1", id2, gh_test_wall_ms(),
	        "{\"alpha\":\"Other\",\"tenant_id\":\"" T_ALPHA "\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", id2), 1);
	assert_int_equal(q64(f, "SELECT COUNT(*) FROM num_quarantines q JOIN num_numbers n ON "
	                        "n.key = q.number_key WHERE n.identifier = 'MYBANK' AND q.reason "
	                        "= 'RECALL_ABUSE'"),
	                 1);
	assert_int_equal(q64(f, "SELECT COUNT(*) FROM num_numbers WHERE identifier = 'MYSHOP' AND "
	                        "state = 'ASSIGNED'"),
	                 1);
	assert_int_equal(q64(f, "SELECT COUNT(*) FROM num_numbers WHERE identifier = 'OTHER' AND "
	                        "tenant_id = '" T_OTHER "' AND state = 'ASSIGNED'"),
	                 1);
	/* validate answers at once on this replica */
	gh_test_http_conn_t *c = gh_test_http_open(f->port);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	char buf[64];
	gh_test_http_exchange(c, "GET",
	                      "/v1/numbering/validate-lease?identifier=MYBANK&tenant_id=" T_ALPHA,
	                      NULL, NULL, r);
	json_t *j = gh_test_http_json(r);
	snprintf(buf, sizeof buf, "%s", json_string_value(json_object_get(j, "reason")));
	json_decref(j);
	assert_string_equal(buf, "QUARANTINE_ACTIVE");
	free(r);
	gh_test_http_close(c);
}

static void case_billing(fx_t *f)
{
	char d1[37], p1[37], d0[37];
	gh_uuid_v4(d1);
	gh_uuid_v4(p1);
	gh_uuid_v4(d0);
	int64_t now = gh_test_wall_ms();
	char first[16];
	uint32_t base = 0;
	/* T_BILL's numbers were added after T_BULK, T_DEL, T_CRASH */
	base = 1000000 + N_BULK + N_DEL + N_CRASH;
	msisdn(base, first);
	publish(f, "billing.account.delinquent.v1", d1, now,
	        "{\"tenant_id\":\"" T_BILL "\",\"account_id\":\"acc-1\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", d1), 1);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_numbers n JOIN num_leases l ON l.number_key "
	                     "= n.key WHERE n.tenant_id = '%s' AND n.state = 'SUSPENDED' AND "
	                     "l.status = 'SUSPENDED'",
	                     T_BILL),
	                 N_BILL);
	gh_test_http_conn_t *c = gh_test_http_open(f->port);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	char buf[64];
	assert_string_equal(validate(c, r, first, T_BILL, buf, sizeof buf), "LEASE_SUSPENDED");
	publish(f, "billing.account.paid.v1", p1, now + 1000, "{\"tenant_id\":\"" T_BILL "\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", p1), 1);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_numbers WHERE tenant_id = '%s' AND state = "
	                     "'ASSIGNED'",
	                     T_BILL),
	                 N_BILL);
	assert_string_equal(validate(c, r, first, T_BILL, buf, sizeof buf), "ALLOWED");
	/* a delinquent event older than the paid one arrives late: ignored */
	publish(f, "billing.account.delinquent.v1", d0, now - 5000,
	        "{\"tenant_id\":\"" T_BILL "\"}");
	assert_int_equal(
	    WAIT_EQ(f, 1, 20000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", d0), 1);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_numbers WHERE tenant_id = '%s' AND state = "
	                     "'ASSIGNED'",
	                     T_BILL),
	                 N_BILL);
	assert_string_equal(validate(c, r, first, T_BILL, buf, sizeof buf), "ALLOWED");
	free(r);
	gh_test_http_close(c);
}

/* The hammer: validates of T_BULK's numbers (the last one in key order first, as the recall
 * reaches it last) on one keep-alive connection, recording latencies and when the answers
 * changed. */
typedef struct {
	fx_t *f;
	atomic_int stop;
	int64_t *lat_us;
	size_t n, cap;
	int64_t t_suspended, t_last_quarantined; /* ms, monotonic; 0 = not seen */
	int errors, allowed_after_flip;
	int64_t t_publish;
} hammer_t;

static void *hammer_main(void *arg)
{
	hammer_t *h = arg;
	gh_test_http_conn_t *c = gh_test_http_open(h->f->port);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	char last[16], other[16], buf[64];
	msisdn(1000000 + N_BULK - 1, last);
	for (uint32_t i = 0; !atomic_load(&h->stop); i++) {
		const char *ident = last;
		if (i & 1) {
			msisdn(1000000 + (i * 7919u) % N_BULK, other);
			ident = other;
		}
		int64_t t0 = gh_clock_mono_ns(gh_clock_real());
		validate(c, r, ident, T_BULK, buf, sizeof buf);
		int64_t dt = (gh_clock_mono_ns(gh_clock_real()) - t0) / 1000;
		if (h->n < h->cap)
			h->lat_us[h->n++] = dt;
		int64_t now = gh_test_now_ms();
		if (strncmp(buf, "HTTP", 4) == 0)
			h->errors++;
		else if (strcmp(buf, "TENANT_SUSPENDED") == 0 && !h->t_suspended)
			h->t_suspended = now;
		else if (strcmp(buf, "ALLOWED") == 0 && h->t_suspended)
			h->allowed_after_flip++;
		if (ident == last && strcmp(buf, "QUARANTINE_ACTIVE") == 0 &&
		    !h->t_last_quarantined)
			h->t_last_quarantined = now;
	}
	free(r);
	gh_test_http_close(c);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void case_bulk_recall_under_validate_load(fx_t *f, const char *backend)
{
	hammer_t h = {.f = f, .cap = 2000000};
	h.lat_us = malloc(h.cap * sizeof *h.lat_us);
	pthread_t th;
	/* a baseline second of validates: all ALLOWED */
	assert_int_equal(pthread_create(&th, NULL, hammer_main, &h), 0);
	usleep(1000 * 1000);
	size_t n_before = h.n;
	assert_int_equal(h.t_suspended, 0);
	char id[37], q[128];
	gh_uuid_v4(id);
	h.t_publish = gh_test_now_ms();
	publish(f, "compliance.tenant.suspended.v1", id, gh_test_wall_ms(),
	        "{\"tenant_id\":\"" T_BULK "\",\"reason\":\"fraud\"}");
	int64_t v =
	    WAIT_EQ(f, 1, 300000, "SELECT COUNT(*) FROM gh_consumed WHERE event_id = '%s'", id);
	int64_t t_done = gh_test_now_ms();
	usleep(300 * 1000);
	atomic_store(&h.stop, 1);
	pthread_join(th, NULL);
	assert_int_equal(v, 1);
	assert_int_equal(q64(f, "%s", held(f, T_BULK, q)), 0);
	assert_int_equal(q64(f,
	                     "SELECT COUNT(*) FROM num_quarantines WHERE previous_tenant_id = '%s' "
	                     "AND reason = 'RECALL_ADMIN'",
	                     T_BULK),
	                 N_BULK);

	size_t during = h.n - n_before;
	qsort(h.lat_us + n_before, during, sizeof *h.lat_us, cmp_i64);
	int64_t p50 = h.lat_us[n_before + during / 2];
	int64_t p99 = h.lat_us[n_before + (during * 99) / 100];
	int64_t max = h.lat_us[n_before + during - 1];
	print_message("[ figures  ] %s: recall of %d numbers in %lld ms; %zu validates meanwhile "
	              "(%.0f/s), p50 %lld us, p99 %lld us, max %lld us; TENANT_SUSPENDED after "
	              "%lld ms, last number QUARANTINE_ACTIVE after %lld ms\n",
	              backend, N_BULK, (long long)(t_done - h.t_publish), during,
	              (double)during * 1000.0 / (double)(t_done - h.t_publish + 300),
	              (long long)p50, (long long)p99, (long long)max,
	              (long long)(h.t_suspended - h.t_publish),
	              (long long)(h.t_last_quarantined - h.t_publish));
	assert_int_equal(h.errors, 0);
	assert_int_equal(h.allowed_after_flip, 0);
	assert_true(h.t_suspended > 0);
	assert_true(h.t_last_quarantined > 0);
	/* the flip came first, well before the recall reached the last number */
	assert_true(h.t_suspended < h.t_last_quarantined);
	assert_true(h.t_suspended - h.t_publish < 2000);
	assert_true(during > 100);     /* validates kept being answered */
	assert_true(p99 < 200 * 1000); /* and none waited on the recall */
	free(h.lat_us);
}

static void case_anomalies(fx_t *f)
{
	gh_test_http_conn_t *c = gh_test_http_open(f->port);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	char buf[64], num[16];
	uint32_t base = 1000000 + N_BULK + N_DEL + N_CRASH; /* T_BILL's, ASSIGNED */
	json_t *last = NULL;
	/* keep each per-minute phase inside one minute */
	while (gh_test_wall_ms() % 60000 > 45000)
		usleep(200 * 1000);
	/* Lookup enumeration: distinct unknown identifiers from one caller, below then above */
	for (int i = 0; i < LOOKUP_THR / 2; i++) {
		char path[96];
		snprintf(path, sizeof path, "/v1/numbering/lookup/%%2B93799%06d", i);
		gh_test_http_exchange(c, "GET", path, NULL, NULL, r);
		assert_int_equal(r->status, 404);
	}
	usleep(2200 * 1000); /* two flushes */
	assert_int_equal(anomalies(f, "LOOKUP_ENUMERATION", NULL, NULL), 0);
	for (int i = LOOKUP_THR / 2; i < LOOKUP_THR + 20; i++) {
		char path[96];
		snprintf(path, sizeof path, "/v1/numbering/lookup/%%2B93799%06d", i);
		gh_test_http_exchange(c, "GET", path, NULL, NULL, r);
		assert_int_equal(r->status, 404);
	}
	assert_int_equal(wait_anomaly(f, "LOOKUP_ENUMERATION", NULL, 10000, &last), 1);
	json_t *ev = json_object_get(last, "evidence");
	assert_string_equal(json_string_value(json_object_get(ev, "caller")), "127.0.0.1");
	json_int_t est = json_integer_value(json_object_get(ev, "distinct_unknown_estimate"));
	print_message("[ figures  ] lookup enumeration: %d distinct unknown identifiers, "
	              "estimated %lld\n",
	              LOOKUP_THR + 20, (long long)est);
	assert_true(est >= LOOKUP_THR && est <= LOOKUP_THR + 25);

	while (gh_test_wall_ms() % 60000 > 55000)
		usleep(200 * 1000);

	/* WRONG_TENANT: A below, B above the threshold */
	for (int i = 0; i < WRONG_THR - 2; i++) {
		msisdn(base + (uint32_t)i, num);
		assert_string_equal(validate(c, r, num, T_SPOOFA, buf, sizeof buf), "WRONG_TENANT");
	}
	for (int i = 0; i < WRONG_THR + 1; i++) {
		msisdn(base + (uint32_t)i, num);
		assert_string_equal(validate(c, r, num, T_SPOOFB, buf, sizeof buf), "WRONG_TENANT");
	}

	/* churn: reserve + release by admin for the tenant; A below, B above */
	uint32_t first_a = 0, first_b = 0;
	add_numbers(f, NULL, 4, NULL, &first_a);
	add_numbers(f, NULL, 6, NULL, &first_b);
	for (int t = 0; t < 2; t++) {
		int n = t ? 6 : 4;
		for (int i = 0; i < n; i++) {
			gh_ident_t gi;
			msisdn((t ? first_b : first_a) + (uint32_t)i, num);
			gh_ident_normalize(NULL, GH_IDENT_MSISDN, num, strlen(num), &gi, NULL);
			gh_err_t err = {0};
			num_tx_req_t rq = {.key = gi.key,
			                   .action = NUM_ACT_RESERVE,
			                   .role = NUM_ROLE_TENANT,
			                   .tenant_id = t ? T_CHURNB : T_CHURNA,
			                   .actor = "test",
			                   .expected_version = -1,
			                   .auto_renew = -1,
			                   .now_ms = gh_test_wall_ms()};
			if (num_repo_transition(f->repo, &rq, NULL, &err) != 0)
				fail_msg("reserve: %s", err.message);
			rq.action = NUM_ACT_RELEASE;
			if (num_repo_transition(f->repo, &rq, NULL, &err) != 0)
				fail_msg("release: %s", err.message);
		}
	}

	/* first send after quarantine: assign, release (TENANT_RELEASE), override, assign */
	uint32_t qn = 0;
	add_numbers(f, NULL, 1, NULL, &qn);
	msisdn(qn, num);
	gh_ident_t gq;
	gh_ident_normalize(NULL, GH_IDENT_MSISDN, num, strlen(num), &gq, NULL);
	static const num_action_t steps[] = {NUM_ACT_ASSIGN, NUM_ACT_RELEASE, NUM_ACT_OVERRIDE,
	                                     NUM_ACT_ASSIGN};
	for (size_t i = 0; i < 4; i++) {
		gh_err_t err = {0};
		num_tx_req_t rq = {.key = gq.key,
		                   .action = steps[i],
		                   .role = NUM_ROLE_ADMIN,
		                   .tenant_id = T_QUAR,
		                   .actor = "test",
		                   .expected_version = -1,
		                   .auto_renew = -1,
		                   .justification = "customer error, verified by support ticket 42",
		                   .now_ms = gh_test_wall_ms()};
		num_number_t out;
		if (num_repo_transition(f->repo, &rq, &out, &err) != 0)
			fail_msg("step %zu: %s", i, err.message);
		/* the service learns of these through num.cache.invalidate.v1 */
		usleep(5 * 1000); /* a quarantine closed in the ms it opened is no exit */
	}
	char other[16];
	msisdn(base + 50, other); /* ASSIGNED to T_BILL all along: no signal */

	assert_true(wait_anomaly(f, "WRONG_TENANT", T_SPOOFB, 10000, &last) == 1);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(last, "evidence"), "count")),
	    WRONG_THR + 1);
	assert_true(wait_anomaly(f, "RESERVE_RELEASE_CHURN", T_CHURNB, 10000, &last) == 1);
	/* the churn job may run while the 12 operations are still being made (slow sanitizer
	 * builds): it signals once per hour, at whatever total first reached the threshold */
	json_int_t churn =
	    json_integer_value(json_object_get(json_object_get(last, "evidence"), "total"));
	assert_true(churn >= CHURN_THR && churn <= 12);

	/* validates of the re-assigned number until the flush has loaded its exit and signalled */
	int64_t end = gh_test_now_ms() + 15000;
	while (anomalies(f, "FIRST_SEND_AFTER_QUARANTINE", T_QUAR, NULL) == 0 &&
	       gh_test_now_ms() < end) {
		validate(c, r, num, T_QUAR, buf, sizeof buf);
		validate(c, r, other, T_BILL, buf, sizeof buf);
		usleep(100 * 1000);
	}
	assert_string_equal(validate(c, r, num, T_QUAR, buf, sizeof buf), "ALLOWED");
	assert_int_equal(anomalies(f, "FIRST_SEND_AFTER_QUARANTINE", T_QUAR, &last), 1);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(last, "evidence"), "identifier")),
	    num);

	/* two more flushes: the below-threshold tenants never signalled, nothing repeated */
	usleep(2500 * 1000);
	assert_int_equal(anomalies(f, "WRONG_TENANT", T_SPOOFA, NULL), 0);
	assert_int_equal(anomalies(f, "WRONG_TENANT", T_SPOOFB, NULL), 1);
	assert_int_equal(anomalies(f, "RESERVE_RELEASE_CHURN", T_CHURNA, NULL), 0);
	assert_int_equal(anomalies(f, "RESERVE_RELEASE_CHURN", T_CHURNB, NULL), 1);
	assert_int_equal(anomalies(f, "FIRST_SEND_AFTER_QUARANTINE", NULL, NULL), 1);
	assert_int_equal(anomalies(f, "LOOKUP_ENUMERATION", NULL, NULL), 1);
	json_decref(last);
	free(r);
	gh_test_http_close(c);
}

static void run(gh_test_backend_t b)
{
	fx_t *f = fx_open(b);
	if (!f) {
		GH_TEST_NEED(NULL);
		return;
	}
	const char *name = b == GH_TEST_PG ? "pg+nats" : "sqlite+inproc";
	case_invalid_dead_lettered(f);
	case_deleted_duplicate_applied_once(f);
	case_abandoned_bulk_resumes(f);
	case_senderid_revoked(f);
	case_billing(f);
	case_anomalies(f);
	case_bulk_recall_under_validate_load(f, name);
	fx_close(f);
}

static void test_consumers_sqlite(void **state)
{
	(void)state;
	run(GH_TEST_SQLITE);
}

static void test_consumers_pg_nats(void **state)
{
	(void)state;
	run(GH_TEST_PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_consumers_sqlite),
	    cmocka_unit_test(test_consumers_pg_nats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
