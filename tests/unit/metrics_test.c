/* metrics: exact exposition text, concurrency, quantiles, label escaping and validation, dedup,
 * type clashes. */
#include <pthread.h>
#include <string.h>
#include <talloc.h>

#include "log.h"
#include "metrics.h"
#include "testutil.h"

static char *render(gh_metrics_t *m, void *ctx)
{
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(gh_metrics_render(m, ctx, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(len, strlen(out));
	return out;
}

static double queue_depth(void *ud) { return *(double *)ud; }

static void test_render_exact_text(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	double depth = 2.5;

	gh_counter_t *ok = gh_metrics_counter(m, "http_requests_total", "Requests served.",
	                                      "route=\"/v1/x\",code=\"200\"");
	gh_counter_t *nf = gh_metrics_counter(m, "http_requests_total", "ignored: first help wins",
	                                      "code=\"404\",route=\"/v1/x\"");
	gh_gauge_t *g = gh_metrics_gauge(m, "outbox_pending", "Rows\\waiting\nto relay.", NULL);
	assert_int_equal(gh_metrics_gauge_fn(m, "bus_queue_depth", "Queue depth.", "queue=\"cdr\"",
	                                     queue_depth, &depth),
	                 0);
	gh_histogram_t *h = gh_metrics_histogram(m, "http_request_duration_seconds",
	                                         "Request latency.", "route=\"/v1/x\"");
	gh_counter_t *ok2 =
	    gh_metrics_counter(m, "http_requests_total", NULL, "code=\"200\",route=\"/v1/x\"");
	assert_ptr_equal(ok, ok2);
	gh_counter_add(ok, 41);
	gh_counter_inc(ok2);
	gh_counter_inc(nf);
	gh_gauge_set(g, 10);
	gh_gauge_add(g, -13);
	gh_histogram_observe_ns(h, 30000);         /* 30 us */
	gh_histogram_observe_ns(h, 2000000);       /* 2 ms */
	gh_histogram_observe_ns(h, 20000000000LL); /* 20 s: only +Inf */

	const char *want =
	    "# HELP http_requests_total Requests served.\n"
	    "# TYPE http_requests_total counter\n"
	    "http_requests_total{code=\"200\",route=\"/v1/x\"} 42\n"
	    "http_requests_total{code=\"404\",route=\"/v1/x\"} 1\n"
	    "# HELP outbox_pending Rows\\\\waiting\\nto relay.\n"
	    "# TYPE outbox_pending gauge\n"
	    "outbox_pending -3\n"
	    "# HELP bus_queue_depth Queue depth.\n"
	    "# TYPE bus_queue_depth gauge\n"
	    "bus_queue_depth{queue=\"cdr\"} 2.5\n"
	    "# HELP http_request_duration_seconds Request latency.\n"
	    "# TYPE http_request_duration_seconds histogram\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.00005\"} 1\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.0001\"} 1\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.00025\"} 1\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.0005\"} 1\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.001\"} 1\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.0025\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.005\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.01\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.025\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.05\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.1\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.25\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.5\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"1\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"2.5\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"5\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"10\"} 2\n"
	    "http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"+Inf\"} 3\n"
	    "http_request_duration_seconds_sum{route=\"/v1/x\"} 20.00203\n"
	    "http_request_duration_seconds_count{route=\"/v1/x\"} 3\n";
	assert_string_equal(render(m, ctx), want);

	/* the callback is read at each render */
	depth = 0.1;
	assert_non_null(strstr(render(m, ctx), "\nbus_queue_depth{queue=\"cdr\"} 0.1\n"));
	talloc_free(ctx);
}

static void test_empty_registry_and_unlabelled_histogram(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	assert_string_equal(render(m, ctx), "");
	gh_histogram_t *h = gh_metrics_histogram(m, "job_seconds", "", NULL);
	gh_histogram_observe_ns(h, 1000000000);
	char *out = render(m, ctx);
	assert_non_null(strstr(out, "# HELP job_seconds\n# TYPE job_seconds histogram\n"));
	assert_non_null(strstr(out, "\njob_seconds_bucket{le=\"0.5\"} 0\n"));
	assert_non_null(strstr(out, "\njob_seconds_bucket{le=\"1\"} 1\n"));
	assert_non_null(strstr(out, "\njob_seconds_sum 1\njob_seconds_count 1\n"));
	talloc_free(ctx);
}

enum { THREADS = 4, PER_THREAD = 200000 };

typedef struct {
	gh_counter_t *c;
	gh_gauge_t *g;
	gh_histogram_t *h;
} hot_t;

static void *hot_worker(void *arg)
{
	hot_t *t = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		gh_counter_inc(t->c);
		gh_gauge_add(t->g, 1);
		gh_histogram_observe_ns(t->h, 1000 + i % 1000);
		gh_gauge_add(t->g, -1);
	}
	return NULL;
}

static void test_concurrent_updates_exact(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	hot_t t = {gh_metrics_counter(m, "hits_total", "Hits.", NULL),
	           gh_metrics_gauge(m, "in_flight", "In flight.", NULL),
	           gh_metrics_histogram(m, "op_seconds", "Op latency.", NULL)};
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hot_worker, &t), 0);
	/* render while writers run: must not block them or crash */
	for (int i = 0; i < 20; i++)
		render(m, ctx);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(gh_counter_value(t.c), (uint64_t)THREADS * PER_THREAD);
	assert_int_equal(gh_gauge_value(t.g), 0);
	assert_int_equal(gh_histogram_count(t.h), (uint64_t)THREADS * PER_THREAD);
	char *out = render(m, ctx);
	assert_non_null(strstr(out, "\nhits_total 800000\n"));
	assert_non_null(strstr(out, "\nop_seconds_count 800000\n"));
	talloc_free(ctx);
}

static void test_histogram_quantile(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	gh_histogram_t *h = gh_metrics_histogram(m, "lat_seconds", "Latency.", NULL);
	assert_int_equal(gh_histogram_quantile_ns(h, 0.5), 0);
	for (int64_t us = 1; us <= 10000; us++)
		gh_histogram_observe_ns(h, us * 1000);
	const struct {
		double q;
		int64_t exact;
	} c[] = {{0.5, 5000000}, {0.9, 9000000}, {0.99, 9900000}, {0.999, 9990000}};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int64_t got = gh_histogram_quantile_ns(h, c[i].q);
		assert_true(got >= c[i].exact);
		assert_true(got - c[i].exact <= c[i].exact / 64);
	}
	assert_int_equal(gh_histogram_quantile_ns(h, 1.0), 10000000);
	talloc_free(ctx);
}

static void test_label_escaping(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	char *l = gh_metrics_labels(ctx, "path", "C:\\tmp\\\"q\"\nx", "op", "plain", NULL);
	assert_string_equal(l, "path=\"C:\\\\tmp\\\\\\\"q\\\"\\nx\",op=\"plain\"");
	gh_counter_t *c = gh_metrics_counter(m, "files_total", "Files.", l);
	assert_non_null(c);
	gh_counter_inc(c);
	assert_non_null(strstr(
	    render(m, ctx), "\nfiles_total{op=\"plain\",path=\"C:\\\\tmp\\\\\\\"q\\\"\\nx\"} 1\n"));
	assert_string_equal(gh_metrics_labels(ctx, NULL), "");
	assert_null(gh_metrics_labels(ctx, "a", (const char *)NULL, NULL));
	talloc_free(ctx);
}

static void test_names_and_labels_validated(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", NULL};
	for (int i = 0; bad_names[i]; i++)
		assert_null(gh_metrics_counter(m, bad_names[i], "h", NULL));
	assert_null(gh_metrics_counter(m, NULL, "h", NULL));
	assert_non_null(gh_metrics_counter(m, "ns:sub_total1", "h", NULL));
	assert_non_null(gh_metrics_counter(m, "_x", "h", NULL));

	const char *bad_labels[] = {
	    "a=1",
	    "a=\"1\",",
	    "a=\"1\"b=\"2\"",
	    ",a=\"1\"",
	    "__a=\"1\"",
	    "a=\"x\\ty\"",
	    "a=\"x\ny\"",
	    "a=\"1\",a=\"2\"",
	    "1a=\"x\"",
	    "a=\"open",
	    "a=\"\xff\"",
	    "a=\"\xc0\xaf\"",
	    "a =\"1\"",
	    "a=\"1\" ",
	    "a-b=\"1\"",
	    "a=\"x\\\"",
	    "a0=\"\",a1=\"\",a2=\"\",a3=\"\",a4=\"\",a5=\"\",a6=\"\",a7=\"\",a8=\"\",a9=\"\","
	    "b0=\"\",b1=\"\",b2=\"\",b3=\"\",b4=\"\",b5=\"\",b6=\"\"",
	    NULL};
	for (int i = 0; bad_labels[i]; i++)
		assert_null(gh_metrics_counter(m, "c_total", "h", bad_labels[i]));
	assert_null(gh_metrics_histogram(m, "h_seconds", "h", "le=\"1\""));
	assert_non_null(gh_metrics_counter(m, "c_total", "h", "le=\"1\""));
	assert_non_null(gh_metrics_counter(m, "c_total", "h", "a=\"é \\\\ \\\" \\n\",b=\"\""));
	talloc_free(ctx);
}

static void test_dedup_same_name_and_labels(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	gh_counter_t *a = gh_metrics_counter(m, "x_total", "X.", NULL);
	assert_ptr_equal(gh_metrics_counter(m, "x_total", "X.", ""), a);
	gh_counter_t *b = gh_metrics_counter(m, "x_total", "X.", "k=\"1\",j=\"2\"");
	assert_ptr_equal(gh_metrics_counter(m, "x_total", "X.", "j=\"2\",k=\"1\""), b);
	assert_ptr_not_equal(a, b);
	gh_gauge_t *g = gh_metrics_gauge(m, "g", "G.", NULL);
	assert_ptr_equal(gh_metrics_gauge(m, "g", "G.", NULL), g);
	gh_histogram_t *h = gh_metrics_histogram(m, "h_seconds", "H.", NULL);
	assert_ptr_equal(gh_metrics_histogram(m, "h_seconds", "H.", NULL), h);
	char *out = render(m, ctx);
	const char *p = strstr(out, "# TYPE x_total counter\n");
	assert_non_null(p);
	assert_null(strstr(p + 1, "# TYPE x_total"));
	talloc_free(ctx);
}

static void test_type_clash_rejected(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_metrics_t *m = gh_metrics_new(ctx);
	double v = 1;
	assert_non_null(gh_metrics_counter(m, "x", "X.", NULL));
	assert_null(gh_metrics_gauge(m, "x", "X.", NULL));
	assert_null(gh_metrics_gauge(m, "x", "X.", "other=\"labels\""));
	assert_null(gh_metrics_histogram(m, "x", "X.", NULL));
	assert_int_equal(gh_metrics_gauge_fn(m, "x", "X.", NULL, queue_depth, &v), -EINVAL);
	/* a histogram's generated series names are taken, in both registration orders */
	assert_non_null(gh_metrics_histogram(m, "lat", "L.", NULL));
	assert_null(gh_metrics_counter(m, "lat_count", "C.", NULL));
	assert_null(gh_metrics_gauge(m, "lat_bucket", "C.", NULL));
	assert_non_null(gh_metrics_counter(m, "req_sum", "S.", NULL));
	assert_null(gh_metrics_histogram(m, "req", "R.", NULL));
	/* a callback gauge is registered once and is not a settable gauge */
	assert_int_equal(gh_metrics_gauge_fn(m, "depth", "D.", NULL, queue_depth, &v), 0);
	assert_int_equal(gh_metrics_gauge_fn(m, "depth", "D.", NULL, queue_depth, &v), -EEXIST);
	assert_null(gh_metrics_gauge(m, "depth", "D.", NULL));
	assert_int_equal(gh_metrics_gauge_fn(m, "depth", "D.", "q=\"a\"", NULL, &v), -EINVAL);
	assert_int_equal(gh_metrics_gauge_fn(m, "bad name", "D.", NULL, queue_depth, &v), -EINVAL);
	/* failed registrations leave nothing behind */
	char *out = render(m, ctx);
	assert_null(strstr(out, "# TYPE lat_count"));
	assert_null(strstr(out, "# TYPE lat_bucket"));
	assert_null(strstr(out, "TYPE req "));
	assert_null(strstr(out, "bad name"));
	talloc_free(ctx);
}

static void test_null_metric_updates_ignored(void **state)
{
	gh_counter_inc(NULL);
	gh_gauge_set(NULL, 3);
	gh_gauge_add(NULL, 3);
	gh_histogram_observe_ns(NULL, 3);
	assert_int_equal(gh_counter_value(NULL), 0);
	assert_int_equal(gh_gauge_value(NULL), 0);
	assert_int_equal(gh_histogram_quantile_ns(NULL, 0.5), 0);
}

static int quiet_log(void **state)
{
	/* the rejection tests log each failed registration; keep the test output readable */
	gh_log_set_level(GH_LOG_ERROR + 1);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_exact_text),
	    cmocka_unit_test(test_empty_registry_and_unlabelled_histogram),
	    cmocka_unit_test(test_concurrent_updates_exact),
	    cmocka_unit_test(test_histogram_quantile),
	    cmocka_unit_test(test_label_escaping),
	    cmocka_unit_test(test_names_and_labels_validated),
	    cmocka_unit_test(test_dedup_same_name_and_labels),
	    cmocka_unit_test(test_type_clash_rejected),
	    cmocka_unit_test(test_null_metric_updates_ignored),
	};
	return cmocka_run_group_tests(tests, quiet_log, NULL);
}
