/* store under load and failure, on SQLite and a real PostgreSQL: concurrent transactions with
 * the retry helper, pool exhaustion, a PostgreSQL backend killed under and between uses. */
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
	    GH_TEST_FX(test_sqlite_second_writer_gets_eagain_after_busy_timeout, sqlite),
	    GH_TEST_FX(test_pg_killed_connection_eio_then_reconnects, pg),
	    GH_TEST_FX(test_pg_unreachable_is_eio, pg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
