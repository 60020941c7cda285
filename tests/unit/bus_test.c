/* bus: subject rules and the in-process backend (the NATS backend runs the same scenarios in
 * tests/integration/bus_test.c). Success conditions are polled with a deadline, never slept. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "clock.h"
#include "testutil.h"

#define MAX_GOT 4096

typedef enum { H_OK, H_FAIL_BEFORE, H_FAIL_ALWAYS, H_REJECT, H_ABANDON_FIRST } behaviour_t;

typedef struct got_s {
	char subject[128];
	char msg_id[64];
	char data[64];
	char reason[256];
	char dlq_deliveries[16];
	char hdr_x[32];
	uint32_t delivery;
} got_t;

typedef struct rec_s {
	pthread_mutex_t lock;
	behaviour_t how;
	uint32_t fail_before; /* H_FAIL_BEFORE: fail while delivery < this */
	int calls;
	int n;
	got_t got[MAX_GOT];
} rec_t;

static void rec_init(rec_t *r, behaviour_t how)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->how = how;
}

static void copy(char *dst, size_t n, const char *src, size_t len)
{
	if (!src)
		src = "", len = 0;
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static int handler(const gh_bus_msg_t *m, void *ud, char *reason, size_t reason_len)
{
	rec_t *r = ud;
	pthread_mutex_lock(&r->lock);
	r->calls++;
	int rc = 0;
	switch (r->how) {
	case H_OK: break;
	case H_FAIL_BEFORE: rc = m->delivery < r->fail_before ? -EIO : 0; break;
	case H_FAIL_ALWAYS: rc = -EIO; break;
	case H_REJECT: rc = GH_BUS_REJECT; break;
	case H_ABANDON_FIRST: rc = m->delivery == 1 ? GH_BUS_ABANDON : 0; break;
	}
	if (rc == -EIO)
		snprintf(reason, reason_len, "database unavailable");
	if (rc == GH_BUS_REJECT)
		snprintf(reason, reason_len, "schema: /data/number missing");
	if (rc == 0 && r->n < MAX_GOT) {
		got_t *g = &r->got[r->n++];
		copy(g->subject, sizeof(g->subject), m->subject, strlen(m->subject));
		copy(g->msg_id, sizeof(g->msg_id), m->msg_id, m->msg_id ? strlen(m->msg_id) : 0);
		copy(g->data, sizeof(g->data), m->data, m->len);
		const char *v = gh_bus_msg_header(m, GH_BUS_HDR_DLQ_REASON);
		copy(g->reason, sizeof(g->reason), v, v ? strlen(v) : 0);
		v = gh_bus_msg_header(m, GH_BUS_HDR_DLQ_DELIVERIES);
		copy(g->dlq_deliveries, sizeof(g->dlq_deliveries), v, v ? strlen(v) : 0);
		v = gh_bus_msg_header(m, "X-Test");
		copy(g->hdr_x, sizeof(g->hdr_x), v, v ? strlen(v) : 0);
		g->delivery = m->delivery;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll until r has at least n recorded messages or the deadline passes. */
static int wait_n(rec_t *r, int n, int64_t timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		int have = r->n;
		pthread_mutex_unlock(&r->lock);
		if (have >= n)
			return have;
		if (now_ms() > end)
			return have;
		usleep(2000);
	}
}

static int pub(gh_bus_t *b, const char *subj, const char *id, const char *data)
{
	return gh_bus_publish(b, subj, id, data, strlen(data), NULL, 0);
}

static gh_bus_t *open_bus(void *ctx, const gh_bus_opts_t *o)
{
	gh_bus_t *b = NULL;
	assert_int_equal(gh_bus_open(ctx, "inproc://test", o, &b), 0);
	assert_string_equal(gh_bus_backend(b), "inproc");
	return b;
}

static const gh_bus_sub_opts_t fast = {.ack_wait_ms = 100, .backoff_ms = 5, .max_deliver = 3};

static void test_subject_rules(void **state)
{
	assert_true(gh_bus_subject_match("number.assigned.v1", "number.assigned.v1"));
	assert_true(gh_bus_subject_match("number.*.v1", "number.assigned.v1"));
	assert_false(gh_bus_subject_match("number.*.v1", "number.assigned.v2"));
	assert_false(gh_bus_subject_match("number.*", "number.assigned.v1"));
	assert_true(gh_bus_subject_match("number.>", "number.assigned.v1"));
	assert_true(gh_bus_subject_match("number.>", "number.x"));
	assert_false(gh_bus_subject_match("number.>", "number"));
	assert_false(gh_bus_subject_match("number.*.*", "number.x"));
	assert_true(gh_bus_subject_match("number.*.*", "number.a.b"));
	assert_true(gh_bus_subject_match(">", "a"));
	assert_true(gh_bus_subject_match("*.*.*", "cdr.generated.v1"));
	assert_false(gh_bus_subject_match("*.*.*", "dlq.cdr.generated.v1"));
	assert_false(gh_bus_subject_match("number.assigned", "number.assigned.v1"));
	assert_false(gh_bus_subject_match("numbers.>", "number.assigned"));
	assert_true(gh_bus_subject_valid("number.assigned.v1"));
	assert_false(gh_bus_subject_valid("number.*.v1"));
	assert_false(gh_bus_subject_valid("number..v1"));
	assert_false(gh_bus_subject_valid(".x"));
	assert_false(gh_bus_subject_valid("x."));
	assert_false(gh_bus_subject_valid("a b"));
	assert_false(gh_bus_subject_valid(""));
}

static void test_bad_arguments_refused(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = NULL;
	gh_bus_sub_t *s = NULL;
	rec_t r;
	rec_init(&r, H_OK);
	assert_int_equal(gh_bus_open(ctx, "kafka://x", NULL, &b), -EINVAL);
	const char *bad[] = {"a.>.b"};
	gh_bus_opts_t o = {.subjects = bad, .n_subjects = 1};
	assert_int_equal(gh_bus_open(ctx, "inproc://", &o, &b), -EINVAL);
	b = open_bus(ctx, NULL);
	assert_int_equal(pub(b, "a.*.c", NULL, "x"), -EINVAL);
	assert_int_equal(pub(b, "", NULL, "x"), -EINVAL);
	assert_int_equal(gh_bus_subscribe(b, "a..b", "d1", handler, &r, NULL, &s), -EINVAL);
	assert_int_equal(gh_bus_subscribe(b, "a.*.*", "bad name", handler, &r, NULL, &s), -EINVAL);
	/* Outside the default stream subjects "*.*.*" (JetStream's rule, kept by both). */
	assert_int_equal(gh_bus_subscribe(b, "a.>", "d1", handler, &r, NULL, &s), -EINVAL);
	assert_int_equal(pub(b, "a.b", NULL, "x"), -EIO);
	assert_int_equal(pub(b, "a.b.c.d", NULL, "x"), -EIO);
	assert_int_equal(gh_bus_subscribe(b, "a.*.*", "d1", handler, &r, NULL, &s), 0);
	/* One durable, one filter. */
	gh_bus_sub_t *s2 = NULL;
	assert_int_equal(gh_bus_subscribe(b, "b.*.*", "d1", handler, &r, NULL, &s2), -EEXIST);
	char why[64];
	assert_int_equal(gh_bus_ready(b, why, sizeof(why)), 0);
	assert_int_equal(gh_bus_ready(NULL, why, sizeof(why)), -EIO);
	talloc_free(ctx); /* closes the bus with a live subscription */
}

static void test_publish_consume_ack(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t r;
	rec_init(&r, H_OK);
	gh_bus_hdr_t h[] = {{"X-Test", "yes"}, {"traceparent", "00-abc-def-01"}};
	/* Published before the subscription exists: a new durable starts at the beginning. */
	assert_int_equal(gh_bus_publish(b, "number.assigned.v1", "e1", "one", 3, h, 2), 0);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "num", handler, &r, &fast, &s), 0);
	assert_int_equal(pub(b, "number.released.v1", "e2", "two"), 0);
	assert_int_equal(wait_n(&r, 2, 5000), 2);
	assert_string_equal(r.got[0].subject, "number.assigned.v1");
	assert_string_equal(r.got[0].msg_id, "e1");
	assert_string_equal(r.got[0].data, "one");
	assert_string_equal(r.got[0].hdr_x, "yes");
	assert_int_equal(r.got[0].delivery, 1);
	assert_string_equal(r.got[1].data, "two");
	/* Acked messages are not redelivered, even after ack_wait: a later marker arrives
	 * third, with nothing in between. */
	gh_bus_unsubscribe(s);
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "num", handler, &r, &fast, &s), 0);
	usleep(150 * 1000); /* past ack_wait, so that a missing ack would show */
	assert_int_equal(pub(b, "number.marker.v1", "e3", "marker"), 0);
	assert_int_equal(wait_n(&r, 3, 5000), 3);
	assert_string_equal(r.got[2].data, "marker");
	assert_int_equal(r.calls, 3);
	talloc_free(ctx);
}

static void test_duplicate_msg_id_delivered_once(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *clk = gh_clock_test_new(ctx, 1000000);
	gh_bus_opts_t o = {.clock = clk, .duplicate_window_ms = 60000};
	gh_bus_t *b = open_bus(ctx, &o);
	rec_t r;
	rec_init(&r, H_OK);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "cdr.*.*", "c", handler, &r, &fast, &s), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "first"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "second"), 0);
	gh_clock_test_advance(clk, 59000);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "third"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "m-1", "marker"), 0);
	assert_int_equal(wait_n(&r, 2, 5000), 2);
	assert_string_equal(r.got[0].data, "first");
	assert_string_equal(r.got[1].data, "marker");
	/* Past the window the id is new again. */
	gh_clock_test_advance(clk, 2000);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "fourth"), 0);
	assert_int_equal(wait_n(&r, 3, 5000), 3);
	assert_string_equal(r.got[2].data, "fourth");
	/* A batch is de-duplicated too, and counts a duplicate as accepted. */
	gh_bus_msg_t batch[] = {
	    {.subject = "cdr.generated.v1", .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = "cdr.generated.v1", .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = "cdr.generated.v1", .msg_id = "b-2", .data = "b2", .len = 2},
	};
	size_t acked = 99;
	assert_int_equal(gh_bus_publish_batch(b, batch, 3, &acked), 0);
	assert_int_equal(acked, 3);
	assert_int_equal(wait_n(&r, 5, 5000), 5);
	assert_string_equal(r.got[3].data, "b1");
	assert_string_equal(r.got[4].data, "b2");
	talloc_free(ctx);
}

static void test_failure_redelivered_then_succeeds(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t r;
	rec_init(&r, H_FAIL_BEFORE);
	r.fail_before = 3;
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "n", handler, &r, &fast, &s), 0);
	assert_int_equal(pub(b, "number.assigned.v1", "f1", "x"), 0);
	assert_int_equal(wait_n(&r, 1, 5000), 1);
	assert_int_equal(r.got[0].delivery, 3);
	assert_int_equal(r.calls, 3);
	talloc_free(ctx);
}

static void test_consumer_dies_before_ack_redelivered_to_same_durable(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t r1, r2;
	rec_init(&r1, H_ABANDON_FIRST);
	rec_init(&r2, H_OK);
	gh_bus_sub_t *s1 = NULL, *s2 = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "dur", handler, &r1, &fast, &s1), 0);
	assert_int_equal(pub(b, "number.assigned.v1", "a1", "x"), 0);
	/* Poll until the first consumer has taken the message and "died" with it. */
	int64_t end = now_ms() + 5000;
	for (;;) {
		pthread_mutex_lock(&r1.lock);
		int c = r1.calls;
		pthread_mutex_unlock(&r1.lock);
		if (c >= 1 || now_ms() > end)
			break;
		usleep(1000);
	}
	gh_bus_unsubscribe(s1);
	assert_int_equal(r1.calls, 1);
	assert_int_equal(r1.n, 0);
	/* A new subscription on the same durable gets it after ack_wait, as its second delivery. */
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "dur", handler, &r2, &fast, &s2), 0);
	assert_int_equal(wait_n(&r2, 1, 5000), 1);
	assert_string_equal(r2.got[0].msg_id, "a1");
	assert_int_equal(r2.got[0].delivery, 2);
	talloc_free(ctx);
}

/* Collects what reaches the dead-letter subjects. */
static void test_max_deliver_exceeded_dead_lettered_with_reason(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t r, dlq;
	rec_init(&r, H_FAIL_ALWAYS);
	rec_init(&dlq, H_OK);
	gh_bus_sub_t *s = NULL, *d = NULL;
	assert_int_equal(gh_bus_subscribe(b, "dlq.*.*.*", "dlq", handler, &dlq, &fast, &d), 0);
	assert_int_equal(gh_bus_subscribe(b, "number.*.v1", "n", handler, &r, &fast, &s), 0);
	assert_int_equal(pub(b, "number.assigned.v1", "m1", "payload"), 0);
	assert_int_equal(wait_n(&dlq, 1, 5000), 1);
	assert_int_equal(r.calls, 3);
	assert_string_equal(dlq.got[0].subject, "dlq.number.assigned.v1");
	assert_string_equal(dlq.got[0].data, "payload");
	assert_string_equal(dlq.got[0].dlq_deliveries, "3");
	assert_non_null(strstr(dlq.got[0].reason, "database unavailable"));
	assert_non_null(strstr(dlq.got[0].reason, "max_deliver 3"));
	talloc_free(ctx);
}

static void test_reject_dead_lettered_at_once(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t r, dlq;
	rec_init(&r, H_REJECT);
	rec_init(&dlq, H_OK);
	gh_bus_sub_t *s = NULL, *d = NULL;
	assert_int_equal(gh_bus_subscribe(b, "dlq.*.*.*", "dlq", handler, &dlq, &fast, &d), 0);
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "n", handler, &r, &fast, &s), 0);
	gh_bus_hdr_t h[] = {{"X-Test", "kept"}};
	assert_int_equal(gh_bus_publish(b, "number.assigned.v1", "bad-1", "{}", 2, h, 1), 0);
	assert_int_equal(wait_n(&dlq, 1, 5000), 1);
	assert_int_equal(r.calls, 1);
	assert_string_equal(dlq.got[0].dlq_deliveries, "1");
	assert_string_equal(dlq.got[0].hdr_x, "kept");
	assert_non_null(strstr(dlq.got[0].reason, "schema: /data/number missing"));
	talloc_free(ctx);
}

static void test_single_publisher_order_preserved(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	rec_t *r = malloc(sizeof(*r));
	rec_init(r, H_OK);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "o", handler, r, &fast, &s), 0);
	char id[32], data[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "o-%d", i);
		snprintf(data, sizeof(data), "%d", i);
		assert_int_equal(pub(b, "number.assigned.v1", id, data), 0);
	}
	assert_int_equal(wait_n(r, 2000, 10000), 2000);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(atoi(r->got[i].data), i);
	talloc_free(ctx);
	free(r);
}

static void test_wildcard_filters_select_subjects(void **state)
{
	void *ctx = talloc_new(NULL);
	const char *subjects[] = {"number.>", "cdr.>"};
	gh_bus_opts_t o = {.subjects = subjects, .n_subjects = 2};
	gh_bus_t *b = open_bus(ctx, &o);
	rec_t star, tail, other;
	rec_init(&star, H_OK);
	rec_init(&tail, H_OK);
	rec_init(&other, H_OK);
	gh_bus_sub_t *s1, *s2, *s3;
	assert_int_equal(gh_bus_subscribe(b, "number.*.v1", "star", handler, &star, &fast, &s1), 0);
	assert_int_equal(gh_bus_subscribe(b, "number.>", "tail", handler, &tail, &fast, &s2), 0);
	assert_int_equal(gh_bus_subscribe(b, "cdr.generated.v1", "o", handler, &other, &fast, &s3),
	                 0);
	assert_int_equal(pub(b, "number.assigned.v1", "w1", "1"), 0);
	assert_int_equal(pub(b, "number.assigned.v2", "w2", "2"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "w3", "3"), 0);
	assert_int_equal(pub(b, "number.released.v1", "w4", "4"), 0);
	assert_int_equal(pub(b, "number.x.y.z", "w5", "5"), 0);
	assert_int_equal(wait_n(&star, 2, 5000), 2);
	assert_int_equal(wait_n(&tail, 4, 5000), 4);
	assert_string_equal(tail.got[3].data, "5");
	assert_int_equal(wait_n(&other, 1, 5000), 1);
	assert_string_equal(star.got[0].data, "1");
	assert_string_equal(star.got[1].data, "4");
	assert_string_equal(tail.got[1].data, "2");
	assert_string_equal(other.got[0].data, "3");
	/* Fan-out: each durable got its own copy; nothing else arrives after a marker. */
	assert_int_equal(pub(b, "cdr.generated.v1", "w6", "6"), 0);
	assert_int_equal(wait_n(&other, 2, 5000), 2);
	assert_int_equal(star.n, 2);
	assert_int_equal(tail.n, 4);
	talloc_free(ctx);
}

static void test_retention_limit_trims_oldest(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_opts_t o = {.max_msgs = 3};
	gh_bus_t *b = open_bus(ctx, &o);
	rec_t r;
	rec_init(&r, H_OK);
	for (int i = 0; i < 5; i++) {
		char d[8];
		snprintf(d, sizeof(d), "%d", i);
		assert_int_equal(pub(b, "number.assigned.v1", NULL, d), 0);
	}
	gh_bus_sub_t *s;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "late", handler, &r, &fast, &s), 0);
	assert_int_equal(wait_n(&r, 3, 5000), 3);
	assert_string_equal(r.got[0].data, "2");
	assert_string_equal(r.got[2].data, "4");
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_subject_rules),
	    cmocka_unit_test(test_bad_arguments_refused),
	    cmocka_unit_test(test_publish_consume_ack),
	    cmocka_unit_test(test_duplicate_msg_id_delivered_once),
	    cmocka_unit_test(test_failure_redelivered_then_succeeds),
	    cmocka_unit_test(test_consumer_dies_before_ack_redelivered_to_same_durable),
	    cmocka_unit_test(test_max_deliver_exceeded_dead_lettered_with_reason),
	    cmocka_unit_test(test_reject_dead_lettered_at_once),
	    cmocka_unit_test(test_single_publisher_order_preserved),
	    cmocka_unit_test(test_wildcard_filters_select_subjects),
	    cmocka_unit_test(test_retention_limit_trims_oldest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
