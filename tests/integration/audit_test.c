/* audit: chain appends and verification on SQLite and PostgreSQL, and the tamper cases:
 * edit, delete, insert, reorder and a truncated tail are each found at the right row. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "audit.h"
#include "store.h"
#include "storefx.h"
#include "testutil.h"

typedef struct {
	void *ctx;
	char *dir;
	gh_store_t *store;
} fx_t;

static int fx_open(fx_t *fx, gh_test_backend_t b)
{
	memset(fx, 0, sizeof(*fx));
	fx->ctx = talloc_new(NULL);
	fx->dir = gh_test_tmpdir();
	fx->store = gh_test_store_open_core(fx->ctx, b, fx->dir, NULL);
	return fx->store ? 0 : -1;
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->ctx);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
}

typedef struct {
	int first, n;
} append_arg_t;

static int append_tx(gh_conn_t *c, void *ud)
{
	append_arg_t *a = ud;
	gh_audit_rec_t recs[64];
	json_t *payloads[64];
	char ids[64][32];
	for (int i = 0; i < a->n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "+9370%07d", a->first + i);
		payloads[i] = json_pack("{s:i, s:s, s:[i,i]}", "i", a->first + i, "note",
		                        "\xd9\x86\xd9\x85\xd8\xa8\xd8\xb1 \"q\"", "arr", 1, 2);
		recs[i] = (gh_audit_rec_t){.ts_ms = 1700000000000LL + a->first + i,
		                           .actor = "user:alice",
		                           .action = "number.reserve",
		                           .entity_type = "number",
		                           .entity_id = ids[i],
		                           .tenant_id = (a->first + i) % 2 ? "t-1" : NULL,
		                           .request_id = "req-1",
		                           .payload = payloads[i]};
	}
	int rc = gh_audit_append(c, "numbering", recs, (size_t)a->n, NULL);
	for (int i = 0; i < a->n; i++)
		json_decref(payloads[i]);
	return rc;
}

/* 30 rows in 6 transactions of 5. */
static void build_chain(fx_t *fx)
{
	for (int t = 0; t < 6; t++) {
		append_arg_t a = {t * 5 + 1, 5};
		assert_int_equal(
		    gh_store_tx(fx->store, append_tx, &a, &(gh_tx_opts_t){.flags = GH_TX_WRITE}),
		    0);
	}
	gh_audit_verify_t v;
	assert_int_equal(gh_audit_verify(fx->store, "numbering", &v), 0);
	assert_true(v.ok);
	assert_int_equal(v.rows, 30);
	assert_int_equal(v.first_bad_seq, 0);
}

static void raw_sql(fx_t *fx, const char *sql)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	int rc = gh_conn_exec(c, sql, NULL, 0, NULL);
	if (rc < 0)
		fail_msg("%s: %s", sql, gh_conn_errmsg(c));
	gh_store_release(c);
}

static int64_t verify_bad(fx_t *fx)
{
	gh_audit_verify_t v;
	assert_int_equal(gh_audit_verify(fx->store, "numbering", &v), 0);
	assert_false(v.ok);
	assert_true(v.reason[0] != '\0');
	return v.first_bad_seq;
}

/* Runs body on each backend with a fresh 30-row chain. */
#define EACH_BACKEND(...)                                       \
	for (int b_ = GH_TEST_SQLITE; b_ <= GH_TEST_PG; b_++) { \
		fx_t fx;                                        \
		if (fx_open(&fx, (gh_test_backend_t)b_) < 0) {  \
			fx_close(&fx);                          \
			continue;                               \
		}                                               \
		build_chain(&fx);                               \
		__VA_ARGS__;                                    \
		fx_close(&fx);                                  \
	}

static void test_intact_chain_verifies(void **state) { EACH_BACKEND({}); }

static void test_edited_row_found(void **state)
{
	EACH_BACKEND({
		raw_sql(&fx, "UPDATE gh_audit SET actor = 'user:mallory' WHERE seq = 17");
		assert_int_equal(verify_bad(&fx), 17);
	});
	EACH_BACKEND({
		/* an equivalent-looking payload edit is still an edit of the stored bytes */
		raw_sql(&fx, "UPDATE gh_audit SET payload = payload || ' ' WHERE seq = 9");
		assert_int_equal(verify_bad(&fx), 9);
	});
}

static void test_deleted_row_found(void **state)
{
	EACH_BACKEND({
		raw_sql(&fx, "DELETE FROM gh_audit WHERE seq = 12");
		assert_int_equal(verify_bad(&fx), 12);
	});
}

static void test_truncated_tail_found(void **state)
{
	EACH_BACKEND({
		raw_sql(&fx, "DELETE FROM gh_audit WHERE seq >= 29");
		assert_int_equal(verify_bad(&fx), 29);
	});
}

static void test_reordered_rows_found(void **state)
{
	EACH_BACKEND({
		raw_sql(&fx, "UPDATE gh_audit SET seq = -1 WHERE seq = 10");
		raw_sql(&fx, "UPDATE gh_audit SET seq = 10 WHERE seq = 11");
		raw_sql(&fx, "UPDATE gh_audit SET seq = 11 WHERE seq = -1");
		assert_int_equal(verify_bad(&fx), 10);
	});
}

static void test_inserted_row_found(void **state)
{
	EACH_BACKEND({
		/* make room at 17 and insert a forged row whose own hash is right and which links
		 * to row 16: the chain breaks at the row after it */
		raw_sql(&fx, "UPDATE gh_audit SET seq = seq + 1000 WHERE seq >= 17");
		raw_sql(&fx, "UPDATE gh_audit SET seq = seq - 999 WHERE seq >= 1017");
		gh_conn_t *c;
		gh_rows_t *r;
		assert_int_equal(gh_store_acquire(fx.store, 5000, &c), 0);
		assert_int_equal(
		    gh_conn_query_one(c, "SELECT hash FROM gh_audit WHERE seq = 16", NULL, 0, &r),
		    0);
		char prev[65], hash[65];
		snprintf(prev, sizeof(prev), "%s", gh_rows_text(r, 0));
		gh_rows_close(r);
		gh_audit_rec_t rec = {.ts_ms = 1700000000016LL,
		                      .actor = "user:mallory",
		                      .action = "number.assign",
		                      .entity_type = "number",
		                      .entity_id = "+93709999999"};
		assert_int_equal(gh_audit_row_hash("numbering", 17, &rec, "{}", prev, hash), 0);
		assert_int_equal(
		    gh_conn_exec(
		        c,
		        "INSERT INTO gh_audit (chain, seq, ts_ms, actor, action, entity_type, "
		        "entity_id, payload, prev_hash, hash) VALUES ('numbering', 17, $1, $2, "
		        "$3, $4, $5, '{}', $6, $7)",
		        (gh_val_t[]){GH_I64(rec.ts_ms), GH_TEXT(rec.actor), GH_TEXT(rec.action),
		                     GH_TEXT(rec.entity_type), GH_TEXT(rec.entity_id),
		                     GH_TEXT(prev), GH_TEXT(hash)},
		        7, NULL),
		    0);
		gh_store_release(c);
		assert_int_equal(verify_bad(&fx), 18);
	});
}

static void test_append_outside_tx_refused(void **state)
{
	EACH_BACKEND({
		gh_conn_t *c;
		assert_int_equal(gh_store_acquire(fx.store, 5000, &c), 0);
		gh_audit_rec_t rec = {
		    .actor = "a", .action = "b", .entity_type = "c", .entity_id = "d"};
		assert_int_equal(gh_audit_append(c, "numbering", &rec, 1, NULL), -EINVAL);
		gh_store_release(c);
	});
}

/* Rows whose every string needs care (escapes, controls, multi-byte UTF-8, NULLs): on
 * PostgreSQL a one-row append is hashed by the database (audit.c, append_pg_one), and verify
 * recomputes each hash in C, so the two must agree byte for byte. */
static int odd_tx(gh_conn_t *c, void *ud)
{
	const char *s = ud;
	json_t *payload = json_pack("{s:s, s:[s,i]}", "text", s, "list", s, -1);
	gh_audit_rec_t rec = {.ts_ms = -1700000000000LL,
	                      .actor = s,
	                      .action = s[0] ? s : "x",
	                      .entity_type = s,
	                      .entity_id = s,
	                      .tenant_id = strlen(s) % 2 ? s : NULL,
	                      .request_id = strlen(s) % 2 ? NULL : s,
	                      .payload = payload};
	int rc = payload ? gh_audit_append(c, "odd", &rec, 1, NULL) : -ENOMEM;
	json_decref(payload);
	return rc;
}

static void test_database_hash_agrees_on_odd_strings(void **state)
{
	static const char *odd[] = {
	    "",
	    "quote \" backslash \\ slash / del \x7f",
	    "\b\f\n\r\t \x01\x1f",
	    "\xd9\x86\xd9\x85\xd8\xa8\xd8\xb1 \xd9\xbe\xda\x9a\xd8\xaa\xd9\x88", /* Arabic, Pashto
	                                                                          */
	    "\xe2\x82\xac \xef\xbf\xbf \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
	    "{\"a\":[1,2],\"b\":\"x\\\"y\"}",
	    "' OR 1=1; --",
	};
	EACH_BACKEND({
		for (size_t i = 0; i < sizeof(odd) / sizeof(*odd); i++)
			assert_int_equal(gh_store_tx(fx.store, odd_tx, (void *)odd[i],
			                             &(gh_tx_opts_t){.flags = GH_TX_WRITE}),
			                 0);
		gh_audit_verify_t v;
		assert_int_equal(gh_audit_verify(fx.store, "odd", &v), 0);
		if (!v.ok)
			fail_msg("row %lld: %s", (long long)v.first_bad_seq, v.reason);
		assert_int_equal(v.rows, (int64_t)(sizeof(odd) / sizeof(*odd)));
	});
}

/* Small appends are written at commit; a big one in the same transaction is written at once,
 * after what the transaction kept, so each chain keeps the order of the calls. */
typedef struct {
	bool fail; /* fail after the appends: they must vanish with the rollback */
} mixed_arg_t;

static int mixed_tx(gh_conn_t *c, void *ud)
{
	mixed_arg_t *m = ud;
	gh_audit_rec_t one = {
	    .ts_ms = 1, .actor = "a", .action = "first", .entity_type = "t", .entity_id = "1"};
	gh_audit_rec_t many[20];
	for (int i = 0; i < 20; i++)
		many[i] = (gh_audit_rec_t){.ts_ms = 2,
		                           .actor = "a",
		                           .action = "bulk",
		                           .entity_type = "t",
		                           .entity_id = "2"};
	gh_audit_rec_t last = {
	    .ts_ms = 3, .actor = "a", .action = "last", .entity_type = "t", .entity_id = "3"};
	int64_t seq = 0;
	int rc;
	if ((rc = gh_audit_append(c, "zz-second", &one, 1, NULL)) < 0 ||
	    (rc = gh_audit_append(c, "aa-first", &one, 1, NULL)) < 0 ||
	    (rc = gh_audit_append(c, "aa-first", many, 20, &seq)) < 0 ||
	    (rc = gh_audit_append(c, "aa-first", &last, 1, NULL)) < 0)
		return rc;
	if (seq != 21) /* the kept row went first: 1, then 2..21 */
		return -EPROTO;
	return m->fail ? -ECANCELED : 0;
}

static void test_kept_appends_keep_call_order_and_roll_back(void **state)
{
	EACH_BACKEND({
		gh_tx_opts_t w = {.flags = GH_TX_WRITE, .max_attempts = 1};
		mixed_arg_t m = {.fail = true};
		assert_int_equal(gh_store_tx(fx.store, mixed_tx, &m, &w), -ECANCELED);
		gh_audit_verify_t v;
		assert_int_equal(gh_audit_verify(fx.store, "aa-first", &v), 0);
		assert_int_equal(v.rows, 0);
		assert_int_equal(gh_audit_verify(fx.store, "zz-second", &v), 0);
		assert_int_equal(v.rows, 0);
		m.fail = false;
		assert_int_equal(gh_store_tx(fx.store, mixed_tx, &m, &w), 0);
		assert_int_equal(gh_audit_verify(fx.store, "aa-first", &v), 0);
		assert_true(v.ok);
		assert_int_equal(v.rows, 22);
		assert_int_equal(gh_audit_verify(fx.store, "zz-second", &v), 0);
		assert_true(v.ok);
		assert_int_equal(v.rows, 1);
		assert_int_equal(gh_test_query_i64(fx.store,
		                                   "SELECT seq FROM gh_audit WHERE chain = "
		                                   "'aa-first' AND action = 'last'"),
		                 22);
		assert_int_equal(gh_test_query_i64(fx.store,
		                                   "SELECT seq FROM gh_audit WHERE chain = "
		                                   "'aa-first' AND action = 'first'"),
		                 1);
	});
}

typedef struct {
	fx_t *fx;
	int base;
} thr_arg_t;

static void *appender(void *p)
{
	thr_arg_t *t = p;
	for (int i = 0; i < 40; i++) {
		append_arg_t a = {t->base + i, 1};
		int rc = gh_store_tx(t->fx->store, append_tx, &a,
		                     &(gh_tx_opts_t){.flags = GH_TX_WRITE, .max_attempts = 50});
		if (rc != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_appends_keep_one_chain(void **state)
{
	EACH_BACKEND({
		pthread_t th[4];
		thr_arg_t args[4];
		for (int i = 0; i < 4; i++) {
			args[i] = (thr_arg_t){&fx, 1000 * (i + 1)};
			pthread_create(&th[i], NULL, appender, &args[i]);
		}
		for (int i = 0; i < 4; i++) {
			void *res;
			pthread_join(th[i], &res);
			assert_null(res);
		}
		gh_audit_verify_t v;
		assert_int_equal(gh_audit_verify(fx.store, "numbering", &v), 0);
		assert_true(v.ok);
		assert_int_equal(v.rows, 30 + 160);
	});
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_intact_chain_verifies),
	    cmocka_unit_test(test_edited_row_found),
	    cmocka_unit_test(test_deleted_row_found),
	    cmocka_unit_test(test_truncated_tail_found),
	    cmocka_unit_test(test_reordered_rows_found),
	    cmocka_unit_test(test_inserted_row_found),
	    cmocka_unit_test(test_append_outside_tx_refused),
	    cmocka_unit_test(test_concurrent_appends_keep_one_chain),
	    cmocka_unit_test(test_kept_appends_keep_call_order_and_roll_back),
	    cmocka_unit_test(test_database_hash_agrees_on_odd_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
