/* service: gh_app_mount's consumers on the in-process bus and SQLite. A per-instance consumer
 * is subscribed before the service's init, so what init's snapshot could not see (published
 * while init runs) still arrives, yet its handler runs only after init returned, with the state;
 * it never runs when init fails. A shared consumer gets the state too. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "busrec.h"
#include "config.h"
#include "service.h"
#include "testutil.h"

typedef struct {
	atomic_int init_done;
	atomic_int fail_init;
	atomic_int early_calls; /* handler calls before init returned, or with another ud */
	gh_test_rec_t *cache, *shared;
} world_t;

static world_t W;

static int on_cache(const gh_bus_msg_t *m, void *ud, char *reason, size_t n)
{
	if (ud != &W || !atomic_load(&W.init_done))
		atomic_fetch_add(&W.early_calls, 1);
	return gh_test_rec_handler(m, W.cache, reason, n);
}

static int on_shared(const gh_bus_msg_t *m, void *ud, char *reason, size_t n)
{
	if (ud != &W)
		atomic_fetch_add(&W.early_calls, 1);
	return gh_test_rec_handler(m, W.shared, reason, n);
}

/* Publishes what a snapshot taken at the start of init would miss, then takes a while. */
static int svc_init(gh_app_t *app, void **state)
{
	assert_int_equal(
	    gh_bus_publish(app->bus, "svc.during.v1", "d1", "during-init", 11, NULL, 0), 0);
	usleep(200 * 1000);
	if (atomic_load(&W.fail_init))
		return -EIO;
	*state = &W;
	atomic_store(&W.init_done, 1);
	return 0;
}

static const char *const svc_subjects[] = {"svc.*.v1", NULL};
static const gh_service_consumer_t svc_consumers[] = {
    {"svc.*.v1", "cache", on_cache, .per_instance = 1},
    {"svc.*.v1", "shared", on_shared, .per_instance = 0},
    {NULL},
};
static const gh_service_t svc = {
    .name = "svc", .subjects = svc_subjects, .init = svc_init, .consumers = svc_consumers};

typedef struct {
	void *ctx;
	char *dir;
	gh_config_t *cfg;
	gh_app_t *app;
} fx_t;

static void fx_open(fx_t *fx)
{
	memset(fx, 0, sizeof *fx);
	memset(&W, 0, sizeof W);
	W.cache = gh_test_rec_new(GH_REC_OK);
	W.shared = gh_test_rec_new(GH_REC_OK);
	fx->ctx = talloc_new(NULL);
	fx->dir = gh_test_tmpdir();
	char *url = gh_test_store_url(GH_TEST_SQLITE, fx->dir);
	char *store = talloc_asprintf(fx->ctx, "GHASI_STORE_URL=%s", url);
	free(url);
	char *env[] = {store, "GHASI_BUS_URL=inproc://", "GHASI_LOG_LEVEL=error", NULL};
	gh_err_t err = {0};
	assert_int_equal(gh_config_load(fx->ctx, NULL, env, &fx->cfg, &err), 0);
	const gh_service_t *const svcs[] = {&svc};
	assert_int_equal(gh_app_open(fx->ctx, fx->cfg, NULL, svcs, 1, &fx->app, &err), 0);
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->ctx);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
	gh_test_rec_free(W.cache);
	gh_test_rec_free(W.shared);
}

static void test_per_instance_consumer_sees_what_init_missed(void **state)
{
	fx_t fx;
	fx_open(&fx);
	gh_bus_t *bus = fx.app->bus;
	assert_int_equal(gh_bus_publish(bus, "svc.before.v1", "b1", "before", 6, NULL, 0), 0);
	gh_err_t err = {0};
	assert_int_equal(gh_app_mount(fx.app, &svc, &err), 0);
	assert_int_equal(gh_bus_publish(bus, "svc.after.v1", "a1", "after", 5, NULL, 0), 0);
	assert_int_equal(gh_test_rec_wait_n(W.cache, 2, 5000), 2);
	assert_string_equal(W.cache->got[0].data, "during-init");
	assert_string_equal(W.cache->got[1].data, "after");
	/* The shared durable starts at the start of the stream, as before. */
	assert_int_equal(gh_test_rec_wait_n(W.shared, 3, 5000), 3);
	assert_string_equal(W.shared->got[0].data, "before");
	assert_int_equal(atomic_load(&W.early_calls), 0);
	usleep(100 * 1000);
	assert_int_equal(W.cache->calls, 2);
	fx_close(&fx);
}

static void test_init_failure_drops_per_instance_consumer(void **state)
{
	fx_t fx;
	fx_open(&fx);
	atomic_store(&W.fail_init, 1);
	gh_err_t err = {0};
	assert_true(gh_app_mount(fx.app, &svc, &err) < 0);
	assert_non_null(strstr(err.message, "failed to start"));
	gh_err_clear(&err);
	/* The consumer is gone: nothing reaches the handler, during init or after. */
	assert_int_equal(gh_bus_publish(fx.app->bus, "svc.after.v1", "a1", "after", 5, NULL, 0), 0);
	usleep(200 * 1000);
	assert_int_equal(W.cache->calls, 0);
	assert_int_equal(W.shared->calls, 0);
	fx_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_per_instance_consumer_sees_what_init_missed),
	    cmocka_unit_test(test_init_failure_drops_per_instance_consumer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
