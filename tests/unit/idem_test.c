/* idem: Idempotency-Key semantics through a real HTTP server (ephemeral port, raw client) on
 * SQLite and PostgreSQL: replay, reuse, scopes, bad keys, expiry, which errors are stored, 32
 * concurrent twins executing once, and the purge. The schema is the real core migration, read
 * from the source tree. */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "clock.h"
#include "http.h"
#include "httpc.h"
#include "idem.h"
#include "log.h"
#include "migrate.h"
#include "store.h"
#include "storefx.h"
#include "testutil.h"

#define TTL_MS 60000
#define T0_MS  1790000000000LL

typedef gh_test_http_resp_t resp_t;

enum { MODE_OK, MODE_CONFLICT, MODE_RATE, MODE_UNAVAILABLE, MODE_INTERNAL };

typedef struct {
	void *ctx;
	char *dir;
	gh_store_t *store;
	gh_clock_t *clock;
	gh_http_server_t *srv;
	uint16_t port;
	atomic_int calls; /* runs of the mutation */
	atomic_int mode;
} fx_t;

/* ---- the application: POST creates a thing, idempotently ---- */

static const gh_json_field_t thing_fields[] = {
    {"name", GH_JSON_STRING, .required = 1},
    {"sleep_ms", GH_JSON_INTEGER},
    {NULL},
};

static int64_t count_things(gh_conn_t *c)
{
	gh_rows_t *rows;
	if (gh_conn_query_one(c, "SELECT count(*) FROM things", NULL, 0, &rows) < 0)
		return -1;
	int64_t n = gh_rows_i64(rows, 0);
	gh_rows_close(rows);
	return n;
}

/* The mutation: one row, then (per fx->mode) success or a failure after the write, so a
 * failure that was not rolled back shows in the row count. The body carries the run number,
 * so a replay and a second execution tell apart. */
static int create_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **out)
{
	fx_t *fx = ud;
	json_t *body;
	if (gh_http_json_body(req, thing_fields, &body) < 0)
		return -EINVAL;
	int run = atomic_fetch_add(&fx->calls, 1) + 1;
	const char *tenant = gh_http_header(req, "X-Tenant");
	int rc = gh_conn_exec(c, "INSERT INTO things (name, tenant) VALUES ($1, $2)",
	                      (gh_val_t[]){GH_TEXT(gh_json_get_str(body, "name", "")),
	                                   GH_TEXT(tenant ? tenant : "t1")},
	                      2, NULL);
	if (rc < 0)
		return rc;
	int64_t sleep_ms = gh_json_get_int(body, "sleep_ms", 0);
	if (sleep_ms > 0)
		nanosleep(&(struct timespec){0, sleep_ms * 1000000L}, NULL);
	gh_err_t *e = gh_http_err(req);
	switch (atomic_load(&fx->mode)) {
	case MODE_CONFLICT:
		gh_err_set(e, GH_E_CONFLICT, NULL, "version mismatch");
		gh_err_detail(e, "current_version", json_integer(7));
		return -ESTALE;
	case MODE_RATE: return gh_err_set(e, GH_E_RATE_LIMITED, NULL, "slow down"); /* -EAGAIN */
	case MODE_UNAVAILABLE: return gh_err_set(e, GH_E_UNAVAILABLE, NULL, "ledger down");
	case MODE_INTERNAL: return -EPROTO; /* a bug, not the database: 500 */
	default: break;
	}
	*status = 201;
	*out = json_pack("{s:s, s:i, s:I}", "name", gh_json_get_str(body, "name", ""), "run", run,
	                 "rows", (json_int_t)count_things(c));
	return 0;
}

static int h_create(gh_http_req_t *req, void *ud)
{
	fx_t *fx = ud;
	const char *tenant = gh_http_header(req, "X-Tenant");
	char *scope = talloc_asprintf(gh_http_ctx(req), "tenant:%s", tenant ? tenant : "t1");
	return gh_idem_handle(req, fx->store, scope, TTL_MS, fx->clock, create_fn, fx);
}

/* ---- fixture: a store with the core schema, a test clock and a server, per backend ---- */

static int fx_open(fx_t *fx, gh_test_backend_t b)
{
	memset(fx, 0, sizeof(*fx));
	fx->ctx = talloc_new(NULL);
	fx->dir = gh_test_tmpdir();
	fx->store =
	    gh_test_store_open_core(fx->ctx, b, fx->dir, &(gh_store_opts_t){.pool_size = 8});
	if (!fx->store)
		return -1;
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	assert_int_equal(
	    gh_conn_exec(c, "CREATE TABLE things (name TEXT NOT NULL, tenant TEXT NOT NULL)", NULL,
	                 0, NULL),
	    0);
	gh_store_release(c);
	fx->clock = gh_clock_test_new(fx->ctx, T0_MS);
	fx->srv = gh_http_server_new(fx->ctx, &(gh_http_config_t){.threads = 8});
	assert_non_null(fx->srv);
	assert_int_equal(gh_http_route(fx->srv, "POST", "/v1/t/things", h_create, fx), 0);
	assert_int_equal(gh_http_route(fx->srv, "POST", "/v1/t/others", h_create, fx), 0);
	assert_int_equal(gh_http_server_start(fx->srv), 0);
	fx->port = gh_http_server_port(fx->srv);
	return 0;
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->srv); /* stop serving before the store goes */
	talloc_free(fx->ctx);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
}

#define EACH_BACKEND(...)                                       \
	for (int b_ = GH_TEST_SQLITE; b_ <= GH_TEST_PG; b_++) { \
		fx_t fx_, *fx = &fx_;                           \
		if (fx_open(fx, (gh_test_backend_t)b_) < 0) {   \
			fx_close(fx);                           \
			continue;                               \
		}                                               \
		__VA_ARGS__;                                    \
		fx_close(fx);                                   \
	}

static int64_t rows(fx_t *fx)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	int64_t n = count_things(c);
	gh_store_release(c);
	assert_true(n >= 0);
	return n;
}

static int64_t idem_rows(fx_t *fx)
{
	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	assert_int_equal(gh_conn_query_one(c, "SELECT count(*) FROM gh_idem", NULL, 0, &r), 0);
	int64_t n = gh_rows_i64(r, 0);
	gh_rows_close(r);
	gh_store_release(c);
	return n;
}

/* POST with an optional key and tenant. */
static void post(fx_t *fx, const char *path, const char *key, const char *tenant, const char *body,
                 resp_t *r)
{
	char extra[1024] = "";
	if (key)
		snprintf(extra, sizeof(extra), "Idempotency-Key: %s\r\n", key);
	if (tenant)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "X-Tenant: %s\r\n",
		         tenant);
	gh_test_http_request(fx->port, "POST", path, extra, body, r);
}

static int replayed(const resp_t *r)
{
	char v[16];
	const char *h = gh_test_http_header(r, GH_IDEM_REPLAYED_HEADER, v, sizeof(v));
	if (h)
		assert_string_equal(h, "true");
	return h != NULL;
}

static void assert_code(const resp_t *r, int status, const char *code)
{
	assert_int_equal(r->status, status);
	json_t *j = gh_test_http_json(r);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
	                    code);
	json_decref(j);
}

static int run_of(const resp_t *r)
{
	json_t *j = gh_test_http_json(r);
	int run = (int)json_integer_value(json_object_get(j, "run"));
	json_decref(j);
	return run;
}

static const char BODY_A[] = "{\"name\":\"a\"}";
static const char BODY_B[] = "{\"name\":\"b\"}";

/* ---- tests ---- */

static void test_hash_covers_method_path_and_body(void **state)
{
	char h[65], h2[65];
	assert_int_equal(gh_idem_hash("POST", "/v1/t/things", BODY_A, strlen(BODY_A), h), 0);
	assert_string_equal(h, "e85ec13e2694987daa1a9af7b36e4b61868283ff7332aed9d45d86a421821a0e");
	assert_int_equal(gh_idem_hash("PUT", "/v1/t/things", BODY_A, strlen(BODY_A), h2), 0);
	assert_string_not_equal(h, h2);
	assert_int_equal(gh_idem_hash("POST", "/v1/t/thing", BODY_A, strlen(BODY_A), h2), 0);
	assert_string_not_equal(h, h2);
	/* the separator keeps path and body apart */
	assert_int_equal(gh_idem_hash("POST", "/v1/t/things\n{", "\"name\":\"a\"}", 11, h2), 0);
	assert_string_not_equal(h, h2);
}

static void test_replay_returns_the_stored_response(void **state)
{
	EACH_BACKEND({
		resp_t r1, r2;
		char ct[64];
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r1);
		assert_int_equal(r1.status, 201);
		assert_false(replayed(&r1));
		assert_int_equal(run_of(&r1), 1);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r2);
		assert_int_equal(r2.status, 201);
		assert_true(replayed(&r2));
		assert_string_equal(r2.body, r1.body);
		assert_string_equal(gh_test_http_header(&r2, "Content-Type", ct, sizeof(ct)),
		                    "application/json");
		assert_int_equal(atomic_load(&fx->calls), 1);
		assert_int_equal(rows(fx), 1);
		/* without a key every request executes, and nothing is stored */
		post(fx, "/v1/t/things", NULL, NULL, BODY_A, &r1);
		post(fx, "/v1/t/things", NULL, NULL, BODY_A, &r2);
		assert_int_equal(r1.status, 201);
		assert_false(replayed(&r2));
		assert_int_equal(run_of(&r2), 3);
		assert_int_equal(rows(fx), 3);
		assert_int_equal(idem_rows(fx), 1);
	});
}

static void test_same_key_other_request_is_422(void **state)
{
	EACH_BACKEND({
		resp_t r, first;
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &first);
		assert_int_equal(first.status, 201);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_B, &r);
		assert_code(&r, 422, "IDEMPOTENCY_KEY_REUSED");
		assert_false(replayed(&r));
		/* the same body on another route is another request */
		post(fx, "/v1/t/others", "k-1", NULL, BODY_A, &r);
		assert_code(&r, 422, "IDEMPOTENCY_KEY_REUSED");
		assert_int_equal(atomic_load(&fx->calls), 1);
		assert_int_equal(rows(fx), 1);
		/* the refusals did not disturb the record */
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r);
		assert_true(replayed(&r));
		assert_string_equal(r.body, first.body);
	});
}

static void test_keys_are_per_scope(void **state)
{
	EACH_BACKEND({
		resp_t a, b, r;
		post(fx, "/v1/t/things", "k-1", "acme", BODY_A, &a);
		post(fx, "/v1/t/things", "k-1", "globex", BODY_A, &b);
		assert_int_equal(a.status, 201);
		assert_int_equal(b.status, 201);
		assert_false(replayed(&b));
		assert_int_equal(run_of(&a), 1);
		assert_int_equal(run_of(&b), 2);
		/* a different body is fine in a third scope */
		post(fx, "/v1/t/things", "k-1", "initech", BODY_B, &r);
		assert_int_equal(r.status, 201);
		assert_int_equal(rows(fx), 3);
		post(fx, "/v1/t/things", "k-1", "globex", BODY_A, &r);
		assert_true(replayed(&r));
		assert_string_equal(r.body, b.body);
		post(fx, "/v1/t/things", "k-1", "acme", BODY_A, &r);
		assert_string_equal(r.body, a.body);
	});
}

static void test_malformed_key_is_400(void **state)
{
	EACH_BACKEND({
		resp_t r;
		char key[300];
		memset(key, 'k', 256);
		key[256] = '\0';
		post(fx, "/v1/t/things", key, NULL, BODY_A, &r);
		assert_code(&r, 400, "INVALID_ARGUMENT");
		json_t *j = gh_test_http_json(&r);
		assert_string_equal(
		    json_string_value(json_object_get(
		        json_object_get(json_object_get(j, "error"), "details"), "field")),
		    "Idempotency-Key");
		json_decref(j);
		post(fx, "/v1/t/things", "caf\xc3\xa9", NULL, BODY_A, &r);
		assert_code(&r, 400, "INVALID_ARGUMENT");
		/* 255 printable characters are a key */
		key[255] = '\0';
		key[0] = ' ';
		key[1] = '~';
		post(fx, "/v1/t/things", key, NULL, BODY_A, &r);
		assert_int_equal(r.status, 201);
		assert_int_equal(atomic_load(&fx->calls), 1);
		assert_int_equal(rows(fx), 1);
	});
}

static void test_expired_key_acts_as_new(void **state)
{
	EACH_BACKEND({
		resp_t r;
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r);
		assert_int_equal(r.status, 201);
		gh_clock_test_advance(fx->clock, TTL_MS - 1);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_B, &r);
		assert_code(&r, 422, "IDEMPOTENCY_KEY_REUSED"); /* still live */
		gh_clock_test_advance(fx->clock, 1);
		/* expired: a new request under the key executes and takes the key over */
		post(fx, "/v1/t/things", "k-1", NULL, BODY_B, &r);
		assert_int_equal(r.status, 201);
		assert_false(replayed(&r));
		assert_int_equal(run_of(&r), 2);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_B, &r);
		assert_true(replayed(&r));
		assert_int_equal(run_of(&r), 2);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r);
		assert_code(&r, 422, "IDEMPOTENCY_KEY_REUSED");
		assert_int_equal(rows(fx), 2);
		assert_int_equal(idem_rows(fx), 1);
	});
}

static void test_domain_error_is_stored_and_replayed(void **state)
{
	EACH_BACKEND({
		resp_t r1, r2;
		atomic_store(&fx->mode, MODE_CONFLICT);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r1);
		assert_code(&r1, 409, "CONFLICT");
		assert_false(replayed(&r1));
		assert_int_equal(rows(fx), 0); /* the mutation was rolled back */
		/* the same request again gets the same answer, even though it would now succeed */
		atomic_store(&fx->mode, MODE_OK);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r2);
		assert_int_equal(r2.status, 409);
		assert_true(replayed(&r2));
		assert_string_equal(r2.body, r1.body);
		assert_int_equal(atomic_load(&fx->calls), 1);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_B, &r2);
		assert_code(&r2, 422, "IDEMPOTENCY_KEY_REUSED");
		/* a bad body is a domain error too */
		post(fx, "/v1/t/things", "k-2", NULL, "{\"nmae\":\"a\"}", &r1);
		assert_code(&r1, 400, "INVALID_ARGUMENT");
		post(fx, "/v1/t/things", "k-2", NULL, "{\"nmae\":\"a\"}", &r2);
		assert_true(replayed(&r2));
		assert_string_equal(r2.body, r1.body);
		assert_int_equal(rows(fx), 0);
	});
}

static void test_rate_limit_and_server_errors_are_not_stored(void **state)
{
	EACH_BACKEND({
		resp_t r;
		int calls = 0;
		static const struct {
			int mode, status;
			const char *code;
		} fails[] = {
		    {MODE_RATE, 429, "RATE_LIMITED"},
		    {MODE_UNAVAILABLE, 503, "UNAVAILABLE"},
		    {MODE_INTERNAL, 500, "INTERNAL"},
		};
		for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++) {
			atomic_store(&fx->mode, fails[i].mode);
			post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r);
			assert_code(&r, fails[i].status, fails[i].code);
			assert_false(replayed(&r));
			/* one run each: RATE_LIMITED's -EAGAIN is not a serialization retry */
			assert_int_equal(atomic_load(&fx->calls), ++calls);
			assert_int_equal(rows(fx), 0);
			assert_int_equal(idem_rows(fx), 0);
		}
		atomic_store(&fx->mode, MODE_OK);
		post(fx, "/v1/t/things", "k-1", NULL, BODY_A, &r);
		assert_int_equal(r.status, 201);
		assert_false(replayed(&r));
		assert_int_equal(run_of(&r), calls + 1);
		assert_int_equal(rows(fx), 1);
	});
}

typedef struct {
	fx_t *fx;
	pthread_barrier_t *go;
	resp_t r;
} twin_t;

static void *twin(void *arg)
{
	twin_t *t = arg;
	gh_test_http_conn_t *c = gh_test_http_open(t->fx->port);
	pthread_barrier_wait(t->go);
	gh_test_http_exchange(c, "POST", "/v1/t/things", "Idempotency-Key: twin\r\n",
	                      "{\"name\":\"t\",\"sleep_ms\":50}", &t->r);
	gh_test_http_close(c);
	return NULL;
}

static void test_concurrent_twins_execute_once(void **state)
{
	EACH_BACKEND({
		enum { N = 32 };
		twin_t *t = calloc(N, sizeof(*t)); /* responses are large: not on the stack */
		assert_non_null(t);
		pthread_t th[N];
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, N);
		for (int i = 0; i < N; i++) {
			t[i] = (twin_t){.fx = fx, .go = &go};
			assert_int_equal(pthread_create(&th[i], NULL, twin, &t[i]), 0);
		}
		for (int i = 0; i < N; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		int fresh = 0;
		for (int i = 0; i < N; i++) {
			assert_int_equal(t[i].r.status, 201);
			assert_string_equal(t[i].r.body, t[0].r.body);
			fresh += !replayed(&t[i].r);
		}
		assert_int_equal(fresh, 1);
		assert_int_equal(run_of(&t[0].r), 1);
		/* the twins waited on the claim, so the mutation ran once, not once per twin */
		assert_int_equal(atomic_load(&fx->calls), 1);
		assert_int_equal(rows(fx), 1);
		free(t);
	});
}

static void test_purge_deletes_expired_records_only(void **state)
{
	EACH_BACKEND({
		enum { OLD = 2500 };
		resp_t r;
		post(fx, "/v1/t/things", "live-1", NULL, BODY_A, &r);
		post(fx, "/v1/t/things", "live-2", NULL, BODY_A, &r);
		/* a backlog of expired records, more than one purge batch */
		gh_val_t *v = talloc_array(fx->ctx, gh_val_t, OLD * 4);
		char *keys = talloc_array(fx->ctx, char, OLD * 16);
		for (int i = 0; i < OLD; i++) {
			snprintf(keys + i * 16, 16, "old-%d", i);
			v[i * 4] = GH_TEXT("tenant:t1");
			v[i * 4 + 1] = GH_TEXT(keys + i * 16);
			v[i * 4 + 2] = GH_I64(T0_MS - 1000 - i);
			v[i * 4 + 3] = GH_I64(T0_MS - i);
		}
		gh_conn_t *c;
		assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
		assert_int_equal(
		    gh_conn_exec_batch(c,
		                       "INSERT INTO gh_idem (scope, idem_key, request_hash,"
		                       " status, content_type, body, created_ms,"
		                       " expires_ms) VALUES ($1, $2, 'h', 200,"
		                       " 'application/json', '{}', $3, $4)",
		                       v, 4, OLD, NULL),
		    0);
		gh_store_release(c);
		assert_int_equal(idem_rows(fx), OLD + 2);
		assert_int_equal(gh_idem_purge(fx->store, T0_MS), OLD);
		assert_int_equal(idem_rows(fx), 2);
		assert_int_equal(gh_idem_purge(fx->store, T0_MS), 0);
		post(fx, "/v1/t/things", "live-1", NULL, BODY_A, &r);
		assert_true(replayed(&r));
		/* at the expiry instant a record is gone */
		assert_int_equal(gh_idem_purge(fx->store, T0_MS + TTL_MS), 2);
		assert_int_equal(idem_rows(fx), 0);
	});
}

int main(void)
{
	gh_log_init("idem-test", GH_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash_covers_method_path_and_body),
	    cmocka_unit_test(test_replay_returns_the_stored_response),
	    cmocka_unit_test(test_same_key_other_request_is_422),
	    cmocka_unit_test(test_keys_are_per_scope),
	    cmocka_unit_test(test_malformed_key_is_400),
	    cmocka_unit_test(test_expired_key_acts_as_new),
	    cmocka_unit_test(test_domain_error_is_stored_and_replayed),
	    cmocka_unit_test(test_rate_limit_and_server_errors_are_not_stored),
	    cmocka_unit_test(test_concurrent_twins_execute_once),
	    cmocka_unit_test(test_purge_deletes_expired_records_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
