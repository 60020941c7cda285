/* store: the SQL API on SQLite and PostgreSQL (each case runs on both; PostgreSQL cases skip
 * without scripts/testenv.sh, or fail under GH_TEST_REQUIRE=1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "store.h"
#include "storefx.h"
#include "testutil.h"

static int64_t count_rows(gh_conn_t *c, const char *table)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, sql, NULL, 0, &r), 0);
	int64_t n = gh_rows_i64(r, 0);
	gh_rows_close(r);
	return n;
}

#define TYPES_TABLE \
	"CREATE TABLE t (id BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, s TEXT, b BYTEA)"

static void test_params_of_every_type_round_trip(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c, TYPES_TABLE, NULL, 0, NULL), 0);
	static const unsigned char blob[] = {0, 'a', 0, 'b', 0, 0xff};
	const char *text = "Kabul \xda\xa9\xd8\xa7\xd8\xa8\xd9\x84 'q' \"dq\" \\";
	struct {
		int64_t i;
		double d;
	} rows[] = {{INT64_MAX, 3.25}, {INT64_MIN, -1e-300}, {0, 1.0 / 3.0}};
	for (int k = 0; k < 3; k++) {
		int64_t n = -1;
		assert_int_equal(
		    gh_conn_exec(c,
		                 "INSERT INTO t (id, i, d, s, b) VALUES ($1, $2, $3, "
		                 "$4, $5)",
		                 (gh_val_t[]){GH_I64(k), GH_I64(rows[k].i), GH_DOUBLE(rows[k].d),
		                              GH_TEXT(text), GH_BLOB(blob, sizeof(blob))},
		                 5, &n),
		    0);
		assert_int_equal(n, 1);
	}
	gh_rows_t *r;
	assert_int_equal(gh_conn_query(c, "SELECT id, i, d, s, b FROM t WHERE id >= $1 ORDER BY id",
	                               (gh_val_t[]){GH_I64(0)}, 1, &r),
	                 0);
	assert_int_equal(gh_rows_ncols(r), 5);
	assert_string_equal(gh_rows_colname(r, 3), "s");
	for (int k = 0; k < 3; k++) {
		assert_int_equal(gh_rows_next(r), 1);
		assert_int_equal(gh_rows_i64(r, 0), k);
		assert_true(gh_rows_i64(r, 1) == rows[k].i);
		assert_true(gh_rows_double(r, 2) == rows[k].d);
		assert_string_equal(gh_rows_text(r, 3), text);
		size_t n;
		const void *p = gh_rows_blob(r, 4, &n);
		assert_int_equal(n, sizeof(blob));
		assert_memory_equal(p, blob, sizeof(blob));
		assert_false(gh_rows_isnull(r, 4));
	}
	assert_int_equal(gh_rows_next(r), 0);
	/* a finished cursor stays finished (SQLite would otherwise start the query again) */
	assert_int_equal(gh_rows_next(r), 0);
	gh_rows_close(r);
}

static void test_nulls_and_empty_values_are_distinct(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c, TYPES_TABLE, NULL, 0, NULL), 0);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO t VALUES ($1, $2, $3, $4, $5)",
	                 (gh_val_t[]){GH_I64(1), GH_NULLV, GH_NULLV, GH_TEXT(NULL), GH_NULLV}, 5,
	                 NULL),
	    0);
	assert_int_equal(gh_conn_exec(c, "INSERT INTO t VALUES ($1, $2, $3, $4, $5)",
	                              (gh_val_t[]){GH_I64(2), GH_I64(0), GH_DOUBLE(0), GH_TEXT(""),
	                                           GH_BLOB(NULL, 0)},
	                              5, NULL),
	                 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "SELECT i, d, s, b FROM t WHERE id = $1",
	                                   (gh_val_t[]){GH_I64(1)}, 1, &r),
	                 0);
	for (int col = 0; col < 4; col++)
		assert_true(gh_rows_isnull(r, col));
	assert_null(gh_rows_text(r, 2));
	size_t n = 7;
	assert_null(gh_rows_blob(r, 3, &n));
	assert_int_equal(n, 0);
	gh_rows_close(r);

	assert_int_equal(gh_conn_query_one(c, "SELECT i, d, s, b FROM t WHERE id = $1",
	                                   (gh_val_t[]){GH_I64(2)}, 1, &r),
	                 0);
	for (int col = 0; col < 4; col++)
		assert_false(gh_rows_isnull(r, col));
	assert_string_equal(gh_rows_text(r, 2), "");
	assert_non_null(gh_rows_blob(r, 3, &n));
	assert_int_equal(n, 0);
	gh_rows_close(r);
	/* IS NULL sees the NULLs we bound */
	assert_int_equal(count_rows(c, "t WHERE s IS NULL AND b IS NULL"), 1);
}

static void test_placeholders_reused_and_out_of_order(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "SELECT $2 + 10 * $1 + 100 * $2, $1",
	                                   (gh_val_t[]){GH_I64(3), GH_I64(4)}, 2, &r),
	                 0);
	assert_int_equal(gh_rows_i64(r, 0), 434);
	assert_int_equal(gh_rows_i64(r, 1), 3);
	gh_rows_close(r);
	/* a missing parameter is refused on both; a surplus one only on SQLite (PostgreSQL takes
	 * the declared type of an unused parameter), which the tests on both backends catch */
	int surplus = gh_conn_query(c, "SELECT $1", (gh_val_t[]){GH_I64(1), GH_I64(2)}, 2, &r);
	if (gh_conn_backend(c) == GH_STORE_SQLITE) {
		assert_int_equal(surplus, -EINVAL);
		assert_true(strlen(gh_conn_errmsg(c)) > 0);
	} else {
		assert_int_equal(surplus, 0);
		gh_rows_close(r);
	}
	assert_int_equal(gh_conn_query(c, "SELECT $1, $2", (gh_val_t[]){GH_I64(1)}, 1, &r),
	                 -EINVAL);
}

static void test_unique_violation_is_eexist(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(
	    gh_conn_exec(c, "CREATE TABLE u (k TEXT PRIMARY KEY, v TEXT UNIQUE)", NULL, 0, NULL),
	    0);
	const char *ins = "INSERT INTO u (k, v) VALUES ($1, $2)";
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_TEXT("a"), GH_TEXT("x")}, 2, NULL),
	                 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_TEXT("a"), GH_TEXT("y")}, 2, NULL),
	                 -EEXIST);
	assert_true(strlen(gh_conn_errmsg(c)) > 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_TEXT("b"), GH_TEXT("x")}, 2, NULL),
	                 -EEXIST);
	/* the connection stays usable and the error message is cleared by the next call */
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_TEXT("b"), GH_TEXT("y")}, 2, NULL),
	                 0);
	assert_string_equal(gh_conn_errmsg(c), "");
	assert_int_equal(count_rows(c, "u"), 2);
}

static void test_other_errors_are_mapped(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c, "SELEC nonsense", NULL, 0, NULL), -EINVAL);
	assert_int_equal(gh_conn_exec(c, "SELECT * FROM no_such_table", NULL, 0, NULL), -EINVAL);
	assert_int_equal(gh_conn_exec(c, "CREATE TABLE n (a TEXT NOT NULL)", NULL, 0, NULL), 0);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO n (a) VALUES ($1)", (gh_val_t[]){GH_NULLV}, 1, NULL),
	    -EINVAL);
	/* $n only: other placeholder styles would not work on PostgreSQL */
	if (gh_conn_backend(c) == GH_STORE_SQLITE)
		assert_int_equal(gh_conn_exec(c, "INSERT INTO n (a) VALUES (?)",
		                              (gh_val_t[]){GH_TEXT("x")}, 1, NULL),
		                 -EINVAL);
	gh_store_t *bad;
	assert_int_equal(gh_store_open(NULL, "mysql://x", NULL, &bad), -EINVAL);
	assert_null(bad);
}

static void test_cas_update_counts_rows(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c,
	                              "CREATE TABLE numbers (id BIGINT PRIMARY KEY, state TEXT, "
	                              "version BIGINT NOT NULL)",
	                              NULL, 0, NULL),
	                 0);
	assert_int_equal(gh_conn_exec(c, "INSERT INTO numbers VALUES ($1, $2, $3)",
	                              (gh_val_t[]){GH_I64(7), GH_TEXT("free"), GH_I64(1)}, 3, NULL),
	                 0);
	const char *cas =
	    "UPDATE numbers SET state=$1, version=version+1 WHERE id=$2 AND version=$3";
	int64_t n = -1;
	assert_int_equal(
	    gh_conn_exec(c, cas, (gh_val_t[]){GH_TEXT("reserved"), GH_I64(7), GH_I64(1)}, 3, &n),
	    0);
	assert_int_equal(n, 1);
	/* the same expected version again: somebody (we) already moved it on */
	assert_int_equal(
	    gh_conn_exec(c, cas, (gh_val_t[]){GH_TEXT("assigned"), GH_I64(7), GH_I64(1)}, 3, &n),
	    0);
	assert_int_equal(n, 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "SELECT state, version FROM numbers WHERE id=$1",
	                                   (gh_val_t[]){GH_I64(7)}, 1, &r),
	                 0);
	assert_string_equal(gh_rows_text(r, 0), "reserved");
	assert_int_equal(gh_rows_i64(r, 1), 2);
	gh_rows_close(r);
	assert_int_equal(gh_conn_query_one(c, "SELECT state FROM numbers WHERE id=$1",
	                                   (gh_val_t[]){GH_I64(8)}, 1, &r),
	                 -ENOENT);
	assert_null(r);
}

static void test_rollback_discards_commit_keeps(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	gh_test_fx_t *fx = *state;
	assert_int_equal(gh_conn_exec(c, "CREATE TABLE k (v BIGINT)", NULL, 0, NULL), 0);
	const char *ins = "INSERT INTO k (v) VALUES ($1)";
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_true(gh_conn_in_tx(c));
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_I64(1)}, 1, NULL), 0);
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(count_rows(c, "k"), 0);

	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_I64(2)}, 1, NULL), 0);
	assert_int_equal(gh_conn_commit(c), 0);
	assert_int_equal(count_rows(c, "k"), 1);

	/* a transaction left open at release is rolled back, not leaked into the next user */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_I64(3)}, 1, NULL), 0);
	gh_store_release(c);
	assert_int_equal(gh_store_acquire(fx->store, 1000, &fx->conn), 0);
	c = fx->conn;
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(count_rows(c, "k"), 1);
}

static void test_failed_statement_in_tx_cannot_commit(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c, "CREATE TABLE f (v BIGINT PRIMARY KEY)", NULL, 0, NULL),
	                 0);
	const char *ins = "INSERT INTO f (v) VALUES ($1)";
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_I64(1)}, 1, NULL), 0);
	assert_int_equal(gh_conn_exec(c, ins, (gh_val_t[]){GH_I64(1)}, 1, NULL), -EEXIST);
	/* PostgreSQL aborts the whole transaction; SQLite only the statement. Either way the
	 * caller rolls back on error; a commit regardless must not report success on PG. */
	if (gh_conn_backend(c) == GH_STORE_PG) {
		assert_int_equal(gh_conn_commit(c), -EINVAL);
		assert_int_equal(count_rows(c, "f"), 0);
	} else {
		assert_int_equal(gh_conn_rollback(c), 0);
	}
	assert_false(gh_conn_in_tx(c));
}

static void test_batch_inserts_many_rows_atomically(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec(c, "CREATE TABLE b (id BIGINT PRIMARY KEY, s TEXT, x BYTEA)",
	                              NULL, 0, NULL),
	                 0);
	enum { N = 2500 };
	gh_val_t *p = calloc(N * 3, sizeof(*p));
	char(*txt)[16] = calloc(N, 16);
	for (int i = 0; i < N; i++) {
		snprintf(txt[i], 16, "row%d", i);
		p[i * 3] = GH_I64(i);
		p[i * 3 + 1] = i % 2 ? GH_TEXT(txt[i]) : GH_NULLV;
		p[i * 3 + 2] = GH_BLOB(txt[i], 3);
	}
	const char *ins = "INSERT INTO b (id, s, x) VALUES ($1, $2, $3)";
	int64_t n = 0;
	assert_int_equal(gh_conn_exec_batch(c, ins, p, 3, N, &n), 0);
	assert_int_equal(n, N);
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(count_rows(c, "b"), N);
	assert_int_equal(count_rows(c, "b WHERE s IS NULL"), N / 2);

	/* a duplicate in the middle fails the batch and leaves nothing of it */
	for (int i = 0; i < N; i++)
		p[i * 3] = GH_I64(i == N / 2 ? 0 : N + i);
	assert_int_equal(gh_conn_exec_batch(c, ins, p, 3, N, &n), -EEXIST);
	assert_int_equal(n, 0);
	assert_true(strlen(gh_conn_errmsg(c)) > 0);
	assert_int_equal(count_rows(c, "b"), N);

	/* inside the caller's transaction the batch joins it */
	for (int i = 0; i < N; i++)
		p[i * 3] = GH_I64(2 * N + i);
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec_batch(c, ins, p, 3, 10, &n), 0);
	assert_int_equal(n, 10);
	assert_true(gh_conn_in_tx(c));
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(count_rows(c, "b"), N);

	/* a column may not change type within one batch */
	p[3 * 1] = GH_TEXT("x");
	assert_int_equal(gh_conn_exec_batch(c, ins, p, 3, 2, &n),
	                 gh_conn_backend(c) == GH_STORE_PG ? -EINVAL : 0);
	free(p);
	free(txt);
}

static void test_nested_cursors_on_one_statement(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	assert_int_equal(gh_conn_exec_script(c, "CREATE TABLE n (v BIGINT);"
	                                        "INSERT INTO n VALUES (1);"
	                                        "INSERT INTO n VALUES (2);"),
	                 0);
	const char *q = "SELECT v FROM n WHERE v >= $1 ORDER BY v";
	gh_rows_t *outer, *inner;
	int64_t sum = 0;
	assert_int_equal(gh_conn_query(c, q, (gh_val_t[]){GH_I64(1)}, 1, &outer), 0);
	while (gh_rows_next(outer) == 1) {
		/* the same SQL while its cached statement is being read */
		assert_int_equal(
		    gh_conn_query(c, q, (gh_val_t[]){GH_I64(gh_rows_i64(outer, 0))}, 1, &inner), 0);
		while (gh_rows_next(inner) == 1)
			sum += gh_rows_i64(outer, 0) * 10 + gh_rows_i64(inner, 0);
		gh_rows_close(inner);
	}
	gh_rows_close(outer);
	assert_int_equal(sum, 11 + 12 + 22);
}

static void test_ping_and_pool_reuse(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, &(gh_store_opts_t){.pool_size = 2});
	gh_test_fx_t *fx = *state;
	assert_int_equal(gh_store_ping(fx->store, 1000), 0);
	gh_conn_t *c2;
	assert_int_equal(gh_store_acquire(fx->store, 1000, &c2), 0);
	assert_ptr_not_equal(c, c2);
	assert_ptr_equal(gh_conn_store(c2), fx->store);
	/* both connections are taken: ping cannot get one */
	assert_int_equal(gh_store_ping(fx->store, 20), -ETIMEDOUT);
	gh_store_release(c2);
	assert_int_equal(gh_store_ping(fx->store, 20), 0);
}

static void test_memory_database_is_shared_by_the_pool(void **state)
{
	gh_store_t *s;
	assert_int_equal(gh_store_open(NULL, "sqlite::memory:", NULL, &s), 0);
	gh_conn_t *a, *b;
	assert_int_equal(gh_store_acquire(s, 100, &a), 0);
	assert_int_equal(gh_store_acquire(s, 100, &b), 0);
	assert_int_equal(gh_conn_exec(a, "CREATE TABLE m (v BIGINT)", NULL, 0, NULL), 0);
	assert_int_equal(
	    gh_conn_exec(a, "INSERT INTO m VALUES ($1)", (gh_val_t[]){GH_I64(5)}, 1, NULL), 0);
	assert_int_equal(count_rows(b, "m"), 1);
	gh_store_release(a);
	gh_store_release(b);
	/* another store's memory database is another database */
	gh_store_t *s2;
	assert_int_equal(gh_store_open(NULL, "sqlite::memory:", NULL, &s2), 0);
	assert_int_equal(gh_store_acquire(s2, 100, &a), 0);
	assert_int_equal(gh_conn_exec(a, "SELECT * FROM m", NULL, 0, NULL), -EINVAL);
	gh_store_release(a);
	gh_store_close(s2);
	gh_store_close(s);
}

static void test_sqlite_relative_path_and_wal(void **state)
{
	gh_test_fx_t *fx = *state;
	char *cwd = getcwd(NULL, 0);
	assert_int_equal(chdir(fx->tmpdir), 0);
	gh_store_t *s;
	int rc = gh_store_open(NULL, "sqlite://rel.db", NULL, &s);
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
	assert_int_equal(rc, 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/rel.db", fx->tmpdir);
	assert_int_equal(access(path, F_OK), 0);
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(s, 100, &c), 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "PRAGMA journal_mode", NULL, 0, &r), 0);
	assert_string_equal(gh_rows_text(r, 0), "wal");
	gh_rows_close(r);
	assert_int_equal(gh_conn_query_one(c, "PRAGMA foreign_keys", NULL, 0, &r), 0);
	assert_int_equal(gh_rows_i64(r, 0), 1);
	gh_rows_close(r);
	gh_store_release(c);
	gh_store_close(s);
	/* missing parent directories are created (an embedded deployment starts empty) */
	char url[600];
	snprintf(url, sizeof(url), "sqlite://%s/a/b/c.db", fx->tmpdir);
	assert_int_equal(gh_store_open(NULL, url, NULL, &s), 0);
	gh_store_close(s);
	snprintf(path, sizeof(path), "%s/a/b/c.db", fx->tmpdir);
	assert_int_equal(access(path, F_OK), 0);
	/* a path below a regular file cannot hold a database */
	snprintf(url, sizeof(url), "sqlite://%s/rel.db/x/y.db", fx->tmpdir);
	assert_int_equal(gh_store_open(NULL, url, NULL, &s), -EIO);
}

static void test_pg_boolean_and_server_types(void **state)
{
	gh_conn_t *c = gh_test_fx_conn(state, NULL);
	if (gh_conn_backend(c) != GH_STORE_PG)
		return;
	gh_rows_t *r;
	/* TEXT parameters take the type the context asks for */
	assert_int_equal(
	    gh_conn_query_one(c, "SELECT $1 < now(), true, false, $2::uuid",
	                      (gh_val_t[]){GH_TEXT("2020-01-01T00:00:00Z"),
	                                   GH_TEXT("0190a4e2-7c3b-7f00-8000-000000000001")},
	                      2, &r),
	    0);
	assert_int_equal(gh_rows_i64(r, 0), 1);
	assert_int_equal(gh_rows_i64(r, 1), 1);
	assert_int_equal(gh_rows_i64(r, 2), 0);
	assert_string_equal(gh_rows_text(r, 3), "0190a4e2-7c3b-7f00-8000-000000000001");
	gh_rows_close(r);
	assert_int_equal(gh_conn_exec(c, "SELECT $1::int4", (gh_val_t[]){GH_TEXT("x")}, 1, NULL),
	                 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    GH_TEST_FX_BOTH(test_params_of_every_type_round_trip),
	    GH_TEST_FX_BOTH(test_nulls_and_empty_values_are_distinct),
	    GH_TEST_FX_BOTH(test_placeholders_reused_and_out_of_order),
	    GH_TEST_FX_BOTH(test_unique_violation_is_eexist),
	    GH_TEST_FX_BOTH(test_other_errors_are_mapped),
	    GH_TEST_FX_BOTH(test_cas_update_counts_rows),
	    GH_TEST_FX_BOTH(test_rollback_discards_commit_keeps),
	    GH_TEST_FX_BOTH(test_failed_statement_in_tx_cannot_commit),
	    GH_TEST_FX_BOTH(test_batch_inserts_many_rows_atomically),
	    GH_TEST_FX_BOTH(test_nested_cursors_on_one_statement),
	    GH_TEST_FX_BOTH(test_ping_and_pool_reuse),
	    GH_TEST_FX(test_memory_database_is_shared_by_the_pool, sqlite),
	    GH_TEST_FX(test_sqlite_relative_path_and_wal, sqlite),
	    GH_TEST_FX(test_pg_boolean_and_server_types, pg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
