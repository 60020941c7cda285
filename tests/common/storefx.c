/* storefx: see storefx.h. */
#include "storefx.h"

#include <stdlib.h>

#include "migrate.h"

gh_test_backend_t gh_test_fx_sqlite = GH_TEST_SQLITE, gh_test_fx_pg = GH_TEST_PG;

int gh_test_fx_setup(void **state)
{
	gh_test_fx_t *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	fx->backend = *(gh_test_backend_t *)*state;
	fx->tmpdir = gh_test_tmpdir();
	*state = fx;
	return fx->tmpdir ? 0 : -1;
}

int gh_test_fx_teardown(void **state)
{
	gh_test_fx_t *fx = *state;
	gh_store_release(fx->conn);
	gh_store_close(fx->store);
	gh_err_clear(&fx->err);
	gh_test_rmtree(fx->tmpdir);
	free(fx->tmpdir);
	free(fx->url);
	free(fx);
	return 0;
}

gh_store_t *gh_test_fx_store(void **state, const gh_store_opts_t *opts)
{
	gh_test_fx_t *fx = *state;
	fx->url = gh_test_store_url(fx->backend, fx->tmpdir);
	if (!fx->url)
		skip();
	assert_int_equal(gh_store_open(NULL, fx->url, opts, &fx->store), 0);
	assert_int_equal(gh_store_backend(fx->store),
	                 fx->backend == GH_TEST_PG ? GH_STORE_PG : GH_STORE_SQLITE);
	return fx->store;
}

gh_conn_t *gh_test_fx_conn(void **state, const gh_store_opts_t *opts)
{
	gh_test_fx_t *fx = *state;
	assert_int_equal(gh_store_acquire(gh_test_fx_store(state, opts), 1000, &fx->conn), 0);
	return fx->conn;
}

gh_store_t *gh_test_store_open_core(void *ctx, gh_test_backend_t b, const char *dir,
                                    const gh_store_opts_t *opts)
{
	char *url = gh_test_store_url(b, dir);
	if (!url)
		return NULL;
	gh_store_t *s;
	assert_int_equal(gh_store_open(ctx, url, opts, &s), 0);
	free(url);
	gh_err_t err = {0};
	assert_int_equal(gh_migrate_run(s, "core", gh_sql_files, &err), 0);
	return s;
}

void gh_test_exec(gh_store_t *s, const char *sql)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_exec_script(c, sql), 0);
	gh_store_release(c);
}

int64_t gh_test_query_i64(gh_store_t *s, const char *sql)
{
	gh_conn_t *c;
	gh_rows_t *r;
	assert_int_equal(gh_store_acquire(s, 1000, &c), 0);
	assert_int_equal(gh_conn_query_one(c, sql, NULL, 0, &r), 0);
	int64_t v = gh_rows_i64(r, 0);
	gh_rows_close(r);
	gh_store_release(c);
	return v;
}
