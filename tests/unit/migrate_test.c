/* migrate: forward-only runner on SQLite and PostgreSQL (each case runs on both). */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "migrate.h"
#include "storefx.h"
#include "testutil.h"

static bool table_exists(gh_store_t *s, const char *table)
{
	gh_conn_t *c;
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s", table);
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	int rc = gh_conn_exec(c, sql, NULL, 0, NULL);
	gh_store_release(c);
	return rc == 0;
}

static void sha256_hex(const char *text, char out[65])
{
	unsigned char md[32];
	unsigned int len;
	EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

#define M1 "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL);"
#define M2                                          \
	"ALTER TABLE items ADD COLUMN note TEXT;\n" \
	"CREATE INDEX items_name ON items (name);"
#define M3 "INSERT INTO items (id, name) VALUES (1, 'first');"

static const gh_sql_file_t two[] = {
    {"other", "0001_other", NULL, "CREATE TABLE other_t (x BIGINT);"},
    {"num", "0001_init", NULL, M1},
    {"num", "0002_note", NULL, M2},
    {NULL, NULL, NULL, NULL},
};

static void test_apply_then_rerun_is_noop(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	assert_int_equal(gh_migrate_run(s, "num", two, &fx->err), 0);
	assert_true(table_exists(s, "items"));
	assert_true(table_exists(s, "items WHERE note IS NULL"));
	/* other services' files are not applied */
	assert_false(table_exists(s, "other_t"));
	assert_int_equal(gh_test_query_i64(s,
	                                   "SELECT count(*) FROM schema_migrations WHERE service = "
	                                   "'num'"),
	                 2);

	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_query_one(c,
	                                   "SELECT name, checksum, applied_at FROM "
	                                   "schema_migrations WHERE service = $1 AND version = $2",
	                                   (gh_val_t[]){GH_TEXT("num"), GH_I64(2)}, 2, &r),
	                 0);
	char want[65];
	sha256_hex(M2, want);
	assert_string_equal(gh_rows_text(r, 0), "0002_note");
	assert_string_equal(gh_rows_text(r, 1), want);
	char applied_at[32];
	snprintf(applied_at, sizeof(applied_at), "%s", gh_rows_text(r, 2));
	assert_int_equal(strlen(applied_at), 24);
	gh_rows_close(r);
	gh_store_release(c);

	/* again: nothing to do, nothing rewritten */
	assert_int_equal(gh_migrate_run(s, "num", two, &fx->err), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM schema_migrations"), 2);

	/* a new file later: only it is applied */
	const gh_sql_file_t three[] = {two[1], two[2], {"num", "0003_seed", NULL, M3}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", three, &fx->err), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM items"), 1);
	assert_int_equal(gh_migrate_run(s, "num", three, &fx->err), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM items"), 1);

	/* another service shares the table */
	assert_int_equal(gh_migrate_run(s, "other", two, &fx->err), 0);
	assert_true(table_exists(s, "other_t"));
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM schema_migrations"), 4);
}

static void test_changed_applied_migration_is_refused(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	assert_int_equal(gh_migrate_run(s, "num", two, &fx->err), 0);
	const char *edited = "ALTER TABLE items ADD COLUMN note2 TEXT;";
	const gh_sql_file_t changed[] = {
	    two[1], {"num", "0002_note", NULL, edited}, {"num", "0003_seed", NULL, M3}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", changed, &fx->err), -EPROTO);
	assert_int_equal(fx->err.code, GH_E_FAILED_PRECONDITION);
	char old_sum[65], new_sum[65];
	sha256_hex(M2, old_sum);
	sha256_hex(edited, new_sum);
	assert_non_null(strstr(fx->err.message, "num/0002_note"));
	assert_non_null(strstr(fx->err.message, old_sum));
	assert_non_null(strstr(fx->err.message, new_sum));
	/* nothing after it was applied either */
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM items"), 0);
	assert_false(table_exists(s, "items WHERE note2 IS NULL"));

	gh_migration_t *st;
	size_t n;
	void *ctx = talloc_new(NULL);
	assert_int_equal(gh_migrate_status(s, "num", changed, ctx, &st, &n, &fx->err), 0);
	assert_int_equal(n, 3);
	assert_true(st[0].applied && !st[0].changed);
	assert_true(st[1].applied && st[1].changed);
	assert_false(st[2].applied);
	assert_string_equal(st[2].name, "0003_seed");
	assert_string_equal(st[2].applied_at, "");
	talloc_free(ctx);
}

static void test_status_before_and_after(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	gh_migration_t *st;
	size_t n;
	void *ctx = talloc_new(NULL);
	/* a database never migrated: all pending, and status does not create anything */
	assert_int_equal(gh_migrate_status(s, "num", two, ctx, &st, &n, &fx->err), 0);
	assert_int_equal(n, 2);
	assert_false(st[0].applied);
	assert_false(st[1].applied);
	assert_false(table_exists(s, "schema_migrations"));
	assert_int_equal(gh_migrate_run(s, "num", two, &fx->err), 0);
	assert_int_equal(gh_migrate_status(s, "num", two, ctx, &st, &n, &fx->err), 0);
	assert_int_equal(st[1].version, 2);
	assert_true(st[1].applied);
	assert_int_equal(strlen(st[1].applied_at), 24);
	talloc_free(ctx);
}

static void test_bad_file_sets_are_refused(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	const gh_sql_file_t gap[] = {{"num", "0001_a", NULL, M1}, {"num", "0003_c", NULL, M3}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", gap, &fx->err), -EINVAL);
	assert_non_null(strstr(fx->err.message, "0003_c"));
	const gh_sql_file_t dup[] = {{"num", "0001_a", NULL, M1}, {"num", "0001_b", NULL, M3}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", dup, &fx->err), -EINVAL);
	assert_non_null(strstr(fx->err.message, "duplicate"));
	const gh_sql_file_t both[] = {{"num", "0001_a", NULL, M1},
	                              {"num", "0001_a", "pg", M1},
	                              {"num", "0001_a", "sqlite", M1},
	                              {0}};
	assert_int_equal(gh_migrate_run(s, "num", both, &fx->err), -EINVAL);
	const gh_sql_file_t nostart[] = {{"num", "0002_a", NULL, M1}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", nostart, &fx->err), -EINVAL);
	const gh_sql_file_t badname[] = {{"num", "1_a", NULL, M1}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", badname, &fx->err), -EINVAL);
	const gh_sql_file_t other_only[] = {{"num", "0001_a", "mysql", M1}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", other_only, &fx->err), -EINVAL);
	/* a variant only for the other backend leaves this one without the migration */
	const char *other = gh_store_backend(s) == GH_STORE_PG ? "sqlite" : "pg";
	const gh_sql_file_t missing[] = {{"num", "0001_a", other, M1}, {0}};
	assert_int_equal(gh_migrate_run(s, "num", missing, &fx->err), -EINVAL);
	assert_non_null(strstr(fx->err.message, "no variant"));
	assert_false(table_exists(s, "items"));
	/* no files at all is fine */
	assert_int_equal(gh_migrate_run(s, "nothing", two, &fx->err), 0);
}

static void test_dialect_variant_follows_backend(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	const gh_sql_file_t files[] = {
	    {"num", "0001_init", NULL, "CREATE TABLE d (which TEXT);"},
	    {"num", "0002_fill", "pg", "INSERT INTO d VALUES ('pg');"},
	    {"num", "0002_fill", "sqlite", "INSERT INTO d VALUES ('sqlite');"},
	    {0},
	};
	assert_int_equal(gh_migrate_run(s, "num", files, &fx->err), 0);
	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_query_one(c, "SELECT which FROM d", NULL, 0, &r), 0);
	assert_string_equal(gh_rows_text(r, 0),
	                    gh_store_backend(s) == GH_STORE_PG ? "pg" : "sqlite");
	gh_rows_close(r);
	gh_store_release(c);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM schema_migrations"), 2);
}

static void test_failed_migration_leaves_no_trace(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	const gh_sql_file_t files[] = {
	    {"num", "0001_init", NULL, M1},
	    {"num", "0002_broken", NULL,
	     "CREATE TABLE half (x BIGINT);\nINSERT INTO nope VALUES (1);"},
	    {0},
	};
	int rc = gh_migrate_run(s, "num", files, &fx->err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(fx->err.message, "num/0002_broken"));
	assert_true(table_exists(s, "items"));
	assert_false(table_exists(s, "half"));
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM schema_migrations"), 1);
}

/* ---- concurrent runners ---- */

enum { RUNNERS = 4 };

static const gh_sql_file_t racing[] = {
    {"num", "0001_init", NULL, "CREATE TABLE once (x BIGINT);"},
    /* not idempotent: a second application would add a second row */
    {"num", "0002_seed", NULL, "INSERT INTO once VALUES (1);"},
    {"num", "0003_more", NULL, "INSERT INTO once VALUES (2);"},
    {0},
};

typedef struct runner_s {
	const char *url;
	int rc;
	gh_err_t err;
} runner_t;

static void *runner_main(void *arg)
{
	runner_t *r = arg;
	gh_store_t *s;
	/* one store per runner: separate processes in real life */
	r->rc = gh_store_open(NULL, r->url, NULL, &s);
	if (r->rc == 0) {
		r->rc = gh_migrate_run(s, "num", racing, &r->err);
		gh_store_close(s);
	}
	return NULL;
}

static void test_concurrent_runners_apply_once(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_fx_t *fx = *state;
	runner_t run[RUNNERS];
	pthread_t th[RUNNERS];
	for (int i = 0; i < RUNNERS; i++) {
		run[i] = (runner_t){.url = fx->url};
		assert_int_equal(pthread_create(&th[i], NULL, runner_main, &run[i]), 0);
	}
	for (int i = 0; i < RUNNERS; i++) {
		pthread_join(th[i], NULL);
		if (run[i].rc)
			print_message("runner %d: %s\n", i, run[i].err.message);
		assert_int_equal(run[i].rc, 0);
		gh_err_clear(&run[i].err);
	}
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM once"), 2);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM schema_migrations"), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    GH_TEST_FX_BOTH(test_apply_then_rerun_is_noop),
	    GH_TEST_FX_BOTH(test_changed_applied_migration_is_refused),
	    GH_TEST_FX_BOTH(test_status_before_and_after),
	    GH_TEST_FX_BOTH(test_bad_file_sets_are_refused),
	    GH_TEST_FX_BOTH(test_dialect_variant_follows_backend),
	    GH_TEST_FX_BOTH(test_failed_migration_leaves_no_trace),
	    GH_TEST_FX_BOTH(test_concurrent_runners_apply_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
