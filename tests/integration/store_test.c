/* store under load and failure, on SQLite and a real PostgreSQL: concurrent transactions with
 * the retry helper, pool exhaustion, a PostgreSQL backend killed under and between uses. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "storefx.h"
#include "testutil.h"

/* ---- concurrent increments ---- */

enum { THREADS = 8, INCREMENTS = 200 };

typedef struct worker_s {
	gh_store_t *store;
	int flags;
	bool cas; /* compare-and-swap on version; else plain read-modify-write */
	int failures;
	int attempts; /* runs of the transaction function */
} worker_t;

/* Read the counter, write it back plus one. With cas the write is conditional on the version
 * read and a lost race asks for a retry; without, correctness relies on the isolation level. */
static int increment(gh_conn_t *c, void *ud)
{
	worker_t *w = ud;
	w->attempts++;
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT n, version FROM counter WHERE id = $1",
	                           (gh_val_t[]){GH_I64(1)}, 1, &r);
	if (rc < 0)
		return rc;
	int64_t n = gh_rows_i64(r, 0), v = gh_rows_i64(r, 1);
	gh_rows_close(r);
	int64_t changed;
	if (w->cas) {
		rc = gh_conn_exec(c,
		                  "UPDATE counter SET n = $1, version = version + 1 WHERE id = $2 "
		                  "AND version = $3",
		                  (gh_val_t[]){GH_I64(n + 1), GH_I64(1), GH_I64(v)}, 3, &changed);
		if (rc == 0 && changed == 0)
			return -EAGAIN;
		return rc;
	}
	return gh_conn_exec(c, "UPDATE counter SET n = $1, version = version + 1 WHERE id = $2",
	                    (gh_val_t[]){GH_I64(n + 1), GH_I64(1)}, 2, &changed);
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	gh_tx_opts_t o = {.flags = w->flags, .max_attempts = 10000, .acquire_timeout_ms = 30000};
	for (int i = 0; i < INCREMENTS; i++)
		if (gh_store_tx(w->store, increment, w, &o) != 0)
			w->failures++;
	return NULL;
}

static void run_counter(gh_store_t *s, int flags, bool cas)
{
	gh_test_exec(s, "DROP TABLE IF EXISTS counter;"
	                "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, "
	                "version BIGINT NOT NULL);"
	                "INSERT INTO counter VALUES (1, 0, 0);");
	worker_t w[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (worker_t){.store = s, .flags = flags, .cas = cas};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	int attempts = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
		attempts += w[i].attempts;
	}
	assert_int_equal(gh_test_query_i64(s, "SELECT n FROM counter"), THREADS * INCREMENTS);
	assert_int_equal(gh_test_query_i64(s, "SELECT version FROM counter"), THREADS * INCREMENTS);
	print_message("counter: %d increments in %d attempts\n", THREADS * INCREMENTS, attempts);
}

static void test_concurrent_cas_increments_with_retry(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, &(gh_store_opts_t){.pool_size = THREADS});
	run_counter(s, GH_TX_WRITE, true);
}

/* SERIALIZABLE read-modify-write: PostgreSQL aborts the losers with 40001, which must come back
 * as -EAGAIN for gh_store_tx to retry; SQLite's BEGIN IMMEDIATE queues writers instead. */
static void test_concurrent_serializable_increments_with_retry(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, &(gh_store_opts_t){.pool_size = THREADS});
	run_counter(s, GH_TX_WRITE | GH_TX_SERIALIZABLE, false);
}

static int fail_einval(gh_conn_t *c, void *ud)
{
	(*(int *)ud)++;
	gh_conn_exec(c, "INSERT INTO counter VALUES (2, 0, 0)", NULL, 0, NULL);
	return -EINVAL;
}

static int always_again(gh_conn_t *c, void *ud)
{
	(*(int *)ud)++;
	return -EAGAIN;
}

static void test_tx_helper_bounds_retries_and_rolls_back(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_exec(s, "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT, version BIGINT)");
	int runs = 0;
	assert_int_equal(gh_store_tx(s, fail_einval, &runs, &(gh_tx_opts_t){.flags = GH_TX_WRITE}),
	                 -EINVAL);
	assert_int_equal(runs, 1);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM counter"), 0);
	runs = 0;
	assert_int_equal(gh_store_tx(s, always_again, &runs,
	                             &(gh_tx_opts_t){.flags = GH_TX_WRITE, .max_attempts = 3}),
	                 -EAGAIN);
	assert_int_equal(runs, 3);
}

/* ---- commit work and the one-round-trip commit ---- */

typedef struct hook_log_s {
	char order[8];
	int n;
	int fail_at;      /* hook number (1-based) that fails; 0 none */
	bool end_in_last; /* the last hook commits with gh_conn_exec_commit */
} hook_log_t;

static int hook_run(gh_conn_t *c, hook_log_t *h, char tag, bool last)
{
	h->order[h->n++] = tag;
	if (h->fail_at == h->n)
		return -EIO;
	char sql[64];
	snprintf(sql, sizeof sql, "INSERT INTO hooked (tag) VALUES ('%c')", tag);
	if (last && h->end_in_last)
		return gh_conn_exec_commit(c, sql, NULL, 0, NULL);
	return gh_conn_exec(c, sql, NULL, 0, NULL);
}

static int hook_a(gh_conn_t *c, void *data, bool last)
{
	return hook_run(c, *(hook_log_t **)data, 'a', last);
}

static int hook_b(gh_conn_t *c, void *data, bool last)
{
	return hook_run(c, *(hook_log_t **)data, 'b', last);
}

static int with_hooks(gh_conn_t *c, void *ud)
{
	hook_log_t **a = gh_conn_commit_data(c, hook_a, sizeof(*a));
	hook_log_t **b = gh_conn_commit_data(c, hook_b, sizeof(*b));
	if (!a || !b)
		return -ENOMEM;
	*a = *b = ud;
	/* the same hook again: the same data, registered once */
	if (gh_conn_commit_data(c, hook_a, sizeof(*a)) != a ||
	    gh_conn_commit_data(c, hook_a, 0) != a)
		return -EINVAL;
	return gh_conn_exec(c, "INSERT INTO hooked (tag) VALUES ('t')", NULL, 0, NULL);
}

static void test_commit_hooks_run_in_order_and_fail_closed(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_exec(s, "CREATE TABLE hooked (tag TEXT NOT NULL)");
	gh_tx_opts_t w = {.flags = GH_TX_WRITE, .max_attempts = 1};

	/* outside a transaction there is nothing to attach to */
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_null(gh_conn_commit_data(c, hook_a, 8));
	gh_store_release(c);

	/* both hooks, in registration order, after the transaction's own statement */
	hook_log_t h = {0};
	assert_int_equal(gh_store_tx(s, with_hooks, &h, &w), 0);
	assert_string_equal(h.order, "ab");
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM hooked"), 3);

	/* the last hook ends the transaction itself: statement and COMMIT together */
	h = (hook_log_t){.end_in_last = true};
	assert_int_equal(gh_store_tx(s, with_hooks, &h, &w), 0);
	assert_string_equal(h.order, "ab");
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM hooked"), 6);

	/* a failing hook fails the commit: nothing of the transaction remains */
	h = (hook_log_t){.fail_at = 2, .end_in_last = true};
	assert_int_equal(gh_store_tx(s, with_hooks, &h, &w), -EIO);
	assert_string_equal(h.order, "ab");
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM hooked"), 6);

	/* hooks end with their transaction: the next one on the connection runs none */
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_null(gh_conn_commit_data(c, hook_a, 0));
	assert_int_equal(gh_conn_exec(c, "INSERT INTO hooked (tag) VALUES ('x')", NULL, 0, NULL),
	                 0);
	assert_int_equal(gh_conn_commit(c), 0);
	gh_store_release(c);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM hooked"), 7);
}

static void test_exec_commit_and_deferred_begin(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_exec(s, "CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)");
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);

	/* not in a transaction: refused */
	assert_int_equal(gh_conn_exec_commit(c, "INSERT INTO kv VALUES (1, 1)", NULL, 0, NULL),
	                 -EINVAL);
	/* a whole transaction of one statement (on PostgreSQL BEGIN, it and COMMIT in one
	 * pipeline); the row count comes back */
	int64_t n = 0;
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_true(gh_conn_in_tx(c));
	assert_int_equal(
	    gh_conn_exec_commit(c, "INSERT INTO kv VALUES ($1, $2), ($3, $4)",
	                        (gh_val_t[]){GH_I64(1), GH_I64(10), GH_I64(2), GH_I64(20)}, 4, &n),
	    0);
	assert_int_equal(n, 2);
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(gh_test_query_i64(s, "SELECT sum(v) FROM kv"), 30);

	/* a failing statement leaves the transaction open and aborted; ROLLBACK undoes it all */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec(c, "UPDATE kv SET v = 0", NULL, 0, NULL), 0);
	assert_int_equal(gh_conn_exec_commit(c, "INSERT INTO kv VALUES (1, 1)", NULL, 0, NULL),
	                 -EEXIST);
	assert_true(gh_conn_in_tx(c));
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(gh_test_query_i64(s, "SELECT sum(v) FROM kv"), 30);

	/* a transaction that never ran a statement commits and rolls back as nothing */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_commit(c), 0);
	assert_int_equal(gh_conn_begin(c, GH_TX_READ), 0);
	assert_int_equal(gh_conn_rollback(c), 0);

	/* the first statement of a transaction is a query, a batch, a script: each carries the
	 * pending BEGIN, and the transaction really is one (rolled back as a whole) */
	gh_rows_t *r;
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_query_one(c, "SELECT v FROM kv WHERE k = 1", NULL, 0, &r), 0);
	assert_int_equal(gh_rows_i64(r, 0), 10);
	gh_rows_close(r);
	assert_int_equal(gh_conn_exec(c, "DELETE FROM kv", NULL, 0, NULL), 0);
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(
	    gh_conn_exec_batch(c, "INSERT INTO kv VALUES ($1, $2)",
	                       (gh_val_t[]){GH_I64(3), GH_I64(3), GH_I64(4), GH_I64(4)}, 2, 2, &n),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec_script(c, "DELETE FROM kv"), 0);
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM kv"), 2);
	gh_store_release(c);
}

/* Deferred statements: sent with the transaction's next round trip, failures reported there. */
static void test_deferred_statements(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, NULL);
	gh_test_exec(s, "CREATE TABLE kv (k BIGINT PRIMARY KEY, v TEXT NOT NULL)");
	gh_test_exec(s, gh_store_backend(s) == GH_STORE_PG ? "CREATE TABLE bl (b BYTEA NOT NULL)"
	                                                   : "CREATE TABLE bl (b BLOB NOT NULL)");
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_exec_deferred(c, "INSERT INTO kv VALUES (1, 'x')", NULL, 0),
	                 -EINVAL); /* outside a transaction */

	/* the parameters are copied: the caller's buffer may change at once */
	char buf[16] = "one";
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec_deferred(c, "INSERT INTO kv VALUES ($1, $2)",
	                                       (gh_val_t[]){GH_I64(1), GH_TEXT(buf)}, 2),
	                 0);
	strcpy(buf, "XXX");
	/* a blob too, and an empty one (not NULL) */
	assert_int_equal(
	    gh_conn_exec_deferred(c, "INSERT INTO bl VALUES ($1), ($2)",
	                          (gh_val_t[]){GH_BLOB("\x00\x01\xff", 3), GH_BLOB("", 0)}, 2),
	    0);
	assert_int_equal(gh_conn_exec_deferred(c, "INSERT INTO kv VALUES ($1, $2)",
	                                       (gh_val_t[]){GH_I64(2), GH_TEXT("two")}, 2),
	                 0);
	/* the next statement sees them (they went first, in order) */
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "SELECT count(*) FROM kv", NULL, 0, &r), 0);
	assert_int_equal(gh_rows_i64(r, 0), 2);
	gh_rows_close(r);
	/* queued then plain COMMIT */
	assert_int_equal(gh_conn_exec_deferred(c, "UPDATE kv SET v = $1 WHERE k = 2",
	                                       (gh_val_t[]){GH_TEXT("deux")}, 1),
	                 0);
	assert_int_equal(gh_conn_commit(c), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM kv WHERE v IN ('one', 'deux')"),
	                 2);
	assert_int_equal(gh_test_query_i64(s, "SELECT sum(length(b)) FROM bl"), 3);

	/* queued then rolled back: never applied */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec_deferred(c, "DELETE FROM kv", NULL, 0), 0);
	assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM kv"), 2);

	/* a failing queued statement fails the call it rides with; nothing is committed */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec(c, "INSERT INTO kv VALUES (3, 'three')", NULL, 0, NULL), 0);
	int rc = gh_conn_exec_deferred(c, "INSERT INTO kv VALUES (1, 'dup')", NULL, 0);
	if (rc == 0) /* PostgreSQL: reported by the next round trip, here the commit */
		rc = gh_conn_exec_commit(c, "INSERT INTO kv VALUES (4, 'four')", NULL, 0, NULL);
	assert_int_equal(rc, -EEXIST);
	if (gh_conn_in_tx(c))
		assert_int_equal(gh_conn_rollback(c), 0);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM kv"), 2);

	/* queued with BEGIN still pending, then exec_commit: all of it in one round trip */
	assert_int_equal(gh_conn_begin(c, GH_TX_WRITE), 0);
	assert_int_equal(gh_conn_exec_deferred(c, "INSERT INTO kv VALUES (5, 'five')", NULL, 0), 0);
	assert_int_equal(gh_conn_exec_commit(c, "INSERT INTO kv VALUES (6, 'six')", NULL, 0, NULL),
	                 0);
	assert_false(gh_conn_in_tx(c));
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM kv"), 4);
	gh_store_release(c);
}

/* ---- pool ---- */

typedef struct waiter_s {
	gh_store_t *store;
	int rc;
	int64_t waited_ms;
} waiter_t;

static void *waiter_main(void *arg)
{
	waiter_t *w = arg;
	int64_t t0 = gh_test_now_ms();
	gh_conn_t *c;
	w->rc = gh_store_acquire(w->store, 10000, &c);
	w->waited_ms = gh_test_now_ms() - t0;
	if (w->rc == 0)
		gh_store_release(c);
	return NULL;
}

static void test_pool_exhaustion_times_out_then_wakes_waiter(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, &(gh_store_opts_t){.pool_size = 2});
	gh_conn_t *a, *b, *x;
	assert_int_equal(gh_store_acquire(s, 100, &a), 0);
	assert_int_equal(gh_store_acquire(s, 100, &b), 0);
	int64_t t0 = gh_test_now_ms();
	assert_int_equal(gh_store_acquire(s, 150, &x), -ETIMEDOUT);
	assert_null(x);
	int64_t waited = gh_test_now_ms() - t0;
	assert_true(waited >= 140 && waited < 2000);
	/* a waiter blocks until a release hands it the connection */
	waiter_t w = {.store = s};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
	nanosleep(&ts, NULL);
	gh_store_release(a);
	pthread_join(th, NULL);
	assert_int_equal(w.rc, 0);
	assert_true(w.waited_ms >= 150 && w.waited_ms < 5000);
	gh_store_release(b);
}

/* ---- SQLite writer lock ---- */

static void test_sqlite_second_writer_gets_eagain_after_busy_timeout(void **state)
{
	gh_test_fx_t *fx = *state;
	gh_store_t *s = gh_test_fx_store(state, &(gh_store_opts_t){.busy_timeout_ms = 100});
	if (fx->backend != GH_TEST_SQLITE)
		return;
	gh_test_exec(s, "CREATE TABLE w (v BIGINT)");
	gh_conn_t *a, *b;
	assert_int_equal(gh_store_acquire(s, 100, &a), 0);
	assert_int_equal(gh_store_acquire(s, 100, &b), 0);
	assert_int_equal(gh_conn_begin(a, GH_TX_WRITE), 0);
	int64_t t0 = gh_test_now_ms();
	assert_int_equal(gh_conn_begin(b, GH_TX_WRITE), -EAGAIN);
	assert_true(gh_test_now_ms() - t0 >= 90);
	/* readers are not blocked by the writer (WAL) */
	assert_int_equal(gh_conn_begin(b, GH_TX_READ), 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(b, "SELECT count(*) FROM w", NULL, 0, &r), 0);
	gh_rows_close(r);
	assert_int_equal(gh_conn_commit(b), 0);
	assert_int_equal(gh_conn_commit(a), 0);
	gh_store_release(a);
	gh_store_release(b);
}

/* ---- PostgreSQL connection loss ---- */

static int64_t backend_pid(gh_conn_t *c)
{
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, "SELECT pg_backend_pid()", NULL, 0, &r), 0);
	int64_t pid = gh_rows_i64(r, 0);
	gh_rows_close(r);
	return pid;
}

/* Terminate backend pid from connection k. */
static void terminate(gh_conn_t *k, int64_t pid)
{
	gh_rows_t *r;
	/* the timeout makes the call wait until the backend is gone */
	assert_int_equal(gh_conn_query_one(k,
	                                   "SELECT pg_terminate_backend(CAST($1 AS integer), 5000)",
	                                   (gh_val_t[]){GH_I64(pid)}, 1, &r),
	                 0);
	assert_int_equal(gh_rows_i64(r, 0), 1);
	gh_rows_close(r);
}

static void test_pg_killed_connection_eio_then_reconnects(void **state)
{
	gh_store_t *s = gh_test_fx_store(state, &(gh_store_opts_t){.pool_size = 2});
	gh_test_exec(s, "CREATE TABLE k (v BIGINT)");
	/* a separate store for the killer, so the pool under test cannot hand out its conn */
	gh_store_t *ks;
	gh_conn_t *k, *c;
	assert_int_equal(gh_store_open(NULL, ((gh_test_fx_t *)*state)->url, NULL, &ks), 0);
	assert_int_equal(gh_store_acquire(ks, 1000, &k), 0);
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	int64_t pid = backend_pid(c);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO k VALUES ($1)", (gh_val_t[]){GH_I64(1)}, 1, NULL), 0);
	/* killed while checked out: the next statement fails with -EIO and the database message */
	terminate(k, pid);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO k VALUES ($1)", (gh_val_t[]){GH_I64(2)}, 1, NULL), -EIO);
	assert_true(strlen(gh_conn_errmsg(c)) > 0);
	/* the connection stays failed until it goes back to the pool */
	assert_int_equal(gh_conn_exec(c, "SELECT 1", NULL, 0, NULL), -EIO);
	gh_store_release(c);
	/* the next checkout gets a working connection (to a new backend) */
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_not_equal(backend_pid(c), pid);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO k VALUES ($1)", (gh_val_t[]){GH_I64(3)}, 1, NULL), 0);
	/* killed while idle in the pool: the checkout notices, callers see no error */
	pid = backend_pid(c);
	gh_store_release(c);
	terminate(k, pid);
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(
	    gh_conn_exec(c, "INSERT INTO k VALUES ($1)", (gh_val_t[]){GH_I64(4)}, 1, NULL), 0);
	gh_store_release(c);
	assert_int_equal(gh_test_query_i64(s, "SELECT count(*) FROM k"), 3);
	assert_int_equal(gh_store_ping(s, 1000), 0);
	gh_store_release(k);
	gh_store_close(ks);
}

static void test_pg_unreachable_is_eio(void **state)
{
	gh_test_fx_t *fx = *state;
	fx->url = gh_test_store_url(fx->backend, fx->tmpdir);
	if (!fx->url)
		skip();
	gh_store_t *s = NULL;
	/* a port nothing listens on (the test server's port plus one would race; 1 is privileged)
	 */
	int64_t t0 = gh_test_now_ms();
	assert_int_equal(gh_store_open(NULL, "postgresql://postgres@127.0.0.1:1/x", NULL, &s),
	                 -EIO);
	assert_null(s);
	assert_true(gh_test_now_ms() - t0 < 6000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    GH_TEST_FX_BOTH(test_concurrent_cas_increments_with_retry),
	    GH_TEST_FX_BOTH(test_concurrent_serializable_increments_with_retry),
	    GH_TEST_FX_BOTH(test_tx_helper_bounds_retries_and_rolls_back),
	    GH_TEST_FX_BOTH(test_pool_exhaustion_times_out_then_wakes_waiter),
	    GH_TEST_FX_BOTH(test_commit_hooks_run_in_order_and_fail_closed),
	    GH_TEST_FX_BOTH(test_exec_commit_and_deferred_begin),
	    GH_TEST_FX_BOTH(test_deferred_statements),
	    GH_TEST_FX(test_sqlite_second_writer_gets_eagain_after_busy_timeout, sqlite),
	    GH_TEST_FX(test_pg_killed_connection_eio_then_reconnects, pg),
	    GH_TEST_FX(test_pg_unreachable_is_eio, pg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
