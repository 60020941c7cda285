/* storefx: the store fixtures of the storage tests.
 *
 * The cmocka form: a case registered with GH_TEST_FX(f, sqlite|pg) or GH_TEST_FX_BOTH(f) gets a
 * gh_test_fx_t in *state with a fresh temp dir; it opens its store with gh_test_fx_store (or
 * gh_test_fx_conn), which skips the case when the backend is unavailable (fails under
 * GH_TEST_REQUIRE). Teardown releases the connection, closes the store, clears err and removes
 * the dir.
 *
 * The plain form, for tests with fixtures of their own: gh_test_store_open_core. */
#ifndef GH_STOREFX_H
#define GH_STOREFX_H

#include "err.h"
#include "store.h"
#include "testutil.h"

typedef struct gh_test_fx_s {
	gh_test_backend_t backend;
	char *tmpdir;
	char *url; /* set by gh_test_fx_store */
	gh_store_t *store;
	gh_conn_t *conn; /* checked out by gh_test_fx_conn; released at teardown */
	gh_err_t err;    /* for the case's calls that report one; cleared at teardown */
} gh_test_fx_t;

/* The prestates naming the backend; setup reads them. */
extern gh_test_backend_t gh_test_fx_sqlite, gh_test_fx_pg;
int gh_test_fx_setup(void **state);
int gh_test_fx_teardown(void **state);

#define GH_TEST_FX(f, backend)                                                             \
	cmocka_unit_test_prestate_setup_teardown(f, gh_test_fx_setup, gh_test_fx_teardown, \
	                                         &gh_test_fx_##backend)
#define GH_TEST_FX_BOTH(f) GH_TEST_FX(f, sqlite), GH_TEST_FX(f, pg)

/* Open the fixture's store on a fresh database of its backend (and check it is that backend);
 * skips the case when the backend is unavailable. */
gh_store_t *gh_test_fx_store(void **state, const gh_store_opts_t *opts);
/* gh_test_fx_store, then check out one connection (fx->conn). */
gh_conn_t *gh_test_fx_conn(void **state, const gh_store_opts_t *opts);

/* A store on backend b in dir with the core migrations (gh_sql_files "core") applied, owned by
 * ctx; NULL when the backend is unavailable (after GH_TEST_NEED semantics). */
gh_store_t *gh_test_store_open_core(void *ctx, gh_test_backend_t b, const char *dir,
                                    const gh_store_opts_t *opts);

/* On a connection checked out for the call: run a script, asserting success. */
void gh_test_exec(gh_store_t *s, const char *sql);
/* On a connection checked out for the call: the first column of the one row sql returns. */
int64_t gh_test_query_i64(gh_store_t *s, const char *sql);

#endif
