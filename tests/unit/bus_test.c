/* bus: subject rules and the in-process backend (the NATS backend runs the same scenarios in
 * tests/integration/bus_test.c). Success conditions are polled with a deadline, never slept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "bus.h"
#include "busrec.h"
#include "clock.h"
#include "testutil.h"

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
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	assert_int_equal(gh_bus_open(ctx, "kafka://x", NULL, &b), -EINVAL);
	const char *bad[] = {"a.>.b"};
	gh_bus_opts_t o = {.subjects = bad, .n_subjects = 1};
	assert_int_equal(gh_bus_open(ctx, "inproc://", &o, &b), -EINVAL);
	b = open_bus(ctx, NULL);
	assert_int_equal(pub(b, "a.*.c", NULL, "x"), -EINVAL);
	assert_int_equal(pub(b, "", NULL, "x"), -EINVAL);
	assert_int_equal(gh_bus_subscribe(b, "a..b", "d1", gh_test_rec_handler, r, NULL, &s),
	                 -EINVAL);
	assert_int_equal(gh_bus_subscribe(b, "a.*.*", "bad name", gh_test_rec_handler, r, NULL, &s),
	                 -EINVAL);
	/* Outside the default stream subjects "*.*.*" (JetStream's rule, kept by both). */
	assert_int_equal(gh_bus_subscribe(b, "a.>", "d1", gh_test_rec_handler, r, NULL, &s),
	                 -EINVAL);
	assert_int_equal(pub(b, "a.b", NULL, "x"), -EIO);
	assert_int_equal(pub(b, "a.b.c.d", NULL, "x"), -EIO);
	assert_int_equal(gh_bus_subscribe(b, "a.*.*", "d1", gh_test_rec_handler, r, NULL, &s), 0);
	/* One durable, one filter. */
	gh_bus_sub_t *s2 = NULL;
	assert_int_equal(gh_bus_subscribe(b, "b.*.*", "d1", gh_test_rec_handler, r, NULL, &s2),
	                 -EEXIST);
	char why[64];
	assert_int_equal(gh_bus_ready(b, why, sizeof(why)), 0);
	assert_int_equal(gh_bus_ready(NULL, why, sizeof(why)), -EIO);
	talloc_free(ctx); /* closes the bus with a live subscription */
	gh_test_rec_free(r);
}

static void test_publish_consume_ack(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_hdr_t h[] = {{"X-Test", "yes"}, {"traceparent", "00-abc-def-01"}};
	/* Published before the subscription exists: a new durable starts at the beginning. */
	assert_int_equal(gh_bus_publish(b, "number.assigned.v1", "e1", "one", 3, h, 2), 0);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.*", "num", gh_test_rec_handler, r, &fast, &s), 0);
	assert_int_equal(pub(b, "number.released.v1", "e2", "two"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 2, 5000), 2);
	assert_string_equal(r->got[0].subject, "number.assigned.v1");
	assert_string_equal(r->got[0].msg_id, "e1");
	assert_string_equal(r->got[0].data, "one");
	assert_string_equal(r->got[0].hdr_x, "yes");
	assert_int_equal(r->got[0].delivery, 1);
	assert_string_equal(r->got[1].data, "two");
	/* Acked messages are not redelivered, even after ack_wait: a later marker arrives
	 * third, with nothing in between. */
	gh_bus_unsubscribe(s);
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.*", "num", gh_test_rec_handler, r, &fast, &s), 0);
	usleep(150 * 1000); /* past ack_wait, so that a missing ack would show */
	assert_int_equal(pub(b, "number.marker.v1", "e3", "marker"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 3, 5000), 3);
	assert_string_equal(r->got[2].data, "marker");
	assert_int_equal(r->calls, 3);
	talloc_free(ctx);
	gh_test_rec_free(r);
}

static void test_duplicate_msg_id_delivered_once(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *clk = gh_clock_test_new(ctx, 1000000);
	gh_bus_opts_t o = {.clock = clk, .duplicate_window_ms = 60000};
	gh_bus_t *b = open_bus(ctx, &o);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "cdr.*.*", "c", gh_test_rec_handler, r, &fast, &s), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "first"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "second"), 0);
	gh_clock_test_advance(clk, 59000);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "third"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "m-1", "marker"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 2, 5000), 2);
	assert_string_equal(r->got[0].data, "first");
	assert_string_equal(r->got[1].data, "marker");
	/* Past the window the id is new again. */
	gh_clock_test_advance(clk, 2000);
	assert_int_equal(pub(b, "cdr.generated.v1", "dup-1", "fourth"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 3, 5000), 3);
	assert_string_equal(r->got[2].data, "fourth");
	/* A batch is de-duplicated too, and counts a duplicate as accepted. */
	gh_bus_msg_t batch[] = {
	    {.subject = "cdr.generated.v1", .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = "cdr.generated.v1", .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = "cdr.generated.v1", .msg_id = "b-2", .data = "b2", .len = 2},
	};
	size_t acked = 99;
	assert_int_equal(gh_bus_publish_batch(b, batch, 3, &acked), 0);
	assert_int_equal(acked, 3);
	assert_int_equal(gh_test_rec_wait_n(r, 5, 5000), 5);
	assert_string_equal(r->got[3].data, "b1");
	assert_string_equal(r->got[4].data, "b2");
	talloc_free(ctx);
	gh_test_rec_free(r);
}

static void test_failure_redelivered_then_succeeds(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_FAIL_BEFORE);
	r->fail_before = 3;
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "n", gh_test_rec_handler, r, &fast, &s),
	                 0);
	assert_int_equal(pub(b, "number.assigned.v1", "f1", "x"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 1, 5000), 1);
	assert_int_equal(r->got[0].delivery, 3);
	assert_int_equal(r->calls, 3);
	talloc_free(ctx);
	gh_test_rec_free(r);
}

static void test_consumer_dies_before_ack_redelivered_to_same_durable(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r1 = gh_test_rec_new(GH_REC_ABANDON_FIRST), *r2 = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_t *s1 = NULL, *s2 = NULL;
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.*", "dur", gh_test_rec_handler, r1, &fast, &s1), 0);
	assert_int_equal(pub(b, "number.assigned.v1", "a1", "x"), 0);
	/* Poll until the first consumer has taken the message and "died" with it. */
	gh_test_rec_wait_calls(r1, 1, 5000);
	gh_bus_unsubscribe(s1);
	assert_int_equal(r1->calls, 1);
	assert_int_equal(r1->n, 0);
	/* A new subscription on the same durable gets it after ack_wait, as its second delivery. */
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.*", "dur", gh_test_rec_handler, r2, &fast, &s2), 0);
	assert_int_equal(gh_test_rec_wait_n(r2, 1, 5000), 1);
	assert_string_equal(r2->got[0].msg_id, "a1");
	assert_int_equal(r2->got[0].delivery, 2);
	talloc_free(ctx);
	gh_test_rec_free(r1);
	gh_test_rec_free(r2);
}

/* A consumer on filter answering how, and a recorder on the dead-letter subjects. */
static void subscribe_with_dlq(gh_bus_t *b, const char *filter, gh_test_rec_how_t how,
                               gh_test_rec_t **r, gh_test_rec_t **dlq)
{
	*r = gh_test_rec_new(how);
	*dlq = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_t *s = NULL, *d = NULL;
	assert_int_equal(
	    gh_bus_subscribe(b, "dlq.*.*.*", "dlq", gh_test_rec_handler, *dlq, &fast, &d), 0);
	assert_int_equal(gh_bus_subscribe(b, filter, "n", gh_test_rec_handler, *r, &fast, &s), 0);
}

static void test_max_deliver_exceeded_dead_lettered_with_reason(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r, *dlq;
	subscribe_with_dlq(b, "number.*.v1", GH_REC_FAIL_ALWAYS, &r, &dlq);
	assert_int_equal(pub(b, "number.assigned.v1", "m1", "payload"), 0);
	assert_int_equal(gh_test_rec_wait_n(dlq, 1, 5000), 1);
	assert_int_equal(r->calls, 3);
	assert_string_equal(dlq->got[0].subject, "dlq.number.assigned.v1");
	assert_string_equal(dlq->got[0].data, "payload");
	assert_string_equal(dlq->got[0].dlq_deliveries, "3");
	assert_non_null(strstr(dlq->got[0].reason, "database unavailable"));
	assert_non_null(strstr(dlq->got[0].reason, "max_deliver 3"));
	talloc_free(ctx);
	gh_test_rec_free(r);
	gh_test_rec_free(dlq);
}

static void test_reject_dead_lettered_at_once(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r, *dlq;
	subscribe_with_dlq(b, "number.*.*", GH_REC_REJECT, &r, &dlq);
	gh_bus_hdr_t h[] = {{"X-Test", "kept"}};
	assert_int_equal(gh_bus_publish(b, "number.assigned.v1", "bad-1", "{}", 2, h, 1), 0);
	assert_int_equal(gh_test_rec_wait_n(dlq, 1, 5000), 1);
	assert_int_equal(r->calls, 1);
	assert_string_equal(dlq->got[0].dlq_deliveries, "1");
	assert_string_equal(dlq->got[0].hdr_x, "kept");
	assert_non_null(strstr(dlq->got[0].reason, "schema: /data/number missing"));
	talloc_free(ctx);
	gh_test_rec_free(r);
	gh_test_rec_free(dlq);
}

static void test_single_publisher_order_preserved(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "number.*.*", "o", gh_test_rec_handler, r, &fast, &s),
	                 0);
	char id[32], data[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "o-%d", i);
		snprintf(data, sizeof(data), "%d", i);
		assert_int_equal(pub(b, "number.assigned.v1", id, data), 0);
	}
	assert_int_equal(gh_test_rec_wait_n(r, 2000, 10000), 2000);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(atoi(r->got[i].data), i);
	talloc_free(ctx);
	gh_test_rec_free(r);
}

static void test_wildcard_filters_select_subjects(void **state)
{
	void *ctx = talloc_new(NULL);
	const char *subjects[] = {"number.>", "cdr.>"};
	gh_bus_opts_t o = {.subjects = subjects, .n_subjects = 2};
	gh_bus_t *b = open_bus(ctx, &o);
	gh_test_rec_t *star = gh_test_rec_new(GH_REC_OK), *tail = gh_test_rec_new(GH_REC_OK),
	              *other = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_t *s1, *s2, *s3;
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.v1", "star", gh_test_rec_handler, star, &fast, &s1), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "number.>", "tail", gh_test_rec_handler, tail, &fast, &s2), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "cdr.generated.v1", "o", gh_test_rec_handler, other, &fast, &s3),
	    0);
	assert_int_equal(pub(b, "number.assigned.v1", "w1", "1"), 0);
	assert_int_equal(pub(b, "number.assigned.v2", "w2", "2"), 0);
	assert_int_equal(pub(b, "cdr.generated.v1", "w3", "3"), 0);
	assert_int_equal(pub(b, "number.released.v1", "w4", "4"), 0);
	assert_int_equal(pub(b, "number.x.y.z", "w5", "5"), 0);
	assert_int_equal(gh_test_rec_wait_n(star, 2, 5000), 2);
	assert_int_equal(gh_test_rec_wait_n(tail, 4, 5000), 4);
	assert_string_equal(tail->got[3].data, "5");
	assert_int_equal(gh_test_rec_wait_n(other, 1, 5000), 1);
	assert_string_equal(star->got[0].data, "1");
	assert_string_equal(star->got[1].data, "4");
	assert_string_equal(tail->got[1].data, "2");
	assert_string_equal(other->got[0].data, "3");
	/* Fan-out: each durable got its own copy; nothing else arrives after a marker. */
	assert_int_equal(pub(b, "cdr.generated.v1", "w6", "6"), 0);
	assert_int_equal(gh_test_rec_wait_n(other, 2, 5000), 2);
	assert_int_equal(star->n, 2);
	assert_int_equal(tail->n, 4);
	talloc_free(ctx);
	gh_test_rec_free(star);
	gh_test_rec_free(tail);
	gh_test_rec_free(other);
}

static void test_retention_limit_trims_oldest(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_opts_t o = {.max_msgs = 3};
	gh_bus_t *b = open_bus(ctx, &o);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	for (int i = 0; i < 5; i++) {
		char d[8];
		snprintf(d, sizeof(d), "%d", i);
		assert_int_equal(pub(b, "number.assigned.v1", NULL, d), 0);
	}
	gh_bus_sub_t *s;
	assert_int_equal(
	    gh_bus_subscribe(b, "number.*.*", "late", gh_test_rec_handler, r, &fast, &s), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 3, 5000), 3);
	assert_string_equal(r->got[0].data, "2");
	assert_string_equal(r->got[2].data, "4");
	talloc_free(ctx);
	gh_test_rec_free(r);
}

/* Per-process subscriptions: start at the end of the log, each gets every message, unknown to
 * the durables (the same prefix as a durable name shares nothing), forgotten on unsubscribe. */
static void test_per_process_subscriptions(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r1 = gh_test_rec_new(GH_REC_OK), *r2 = gh_test_rec_new(GH_REC_OK);
	gh_test_rec_t *rd = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast;
	so.per_process = 1;
	gh_bus_sub_t *s1 = NULL, *s2 = NULL, *sd = NULL;
	assert_int_equal(pub(b, "num.cache.x", "old", "old"), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "num.cache.*", "cache", gh_test_rec_handler, r1, &so, &s1), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "num.cache.*", "cache", gh_test_rec_handler, r2, &so, &s2), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "num.cache.*", "cache", gh_test_rec_handler, rd, &fast, &sd), 0);
	assert_string_equal(gh_bus_sub_name(sd), "cache");
	assert_true(strncmp(gh_bus_sub_name(s1), "cache-", 6) == 0);
	assert_string_not_equal(gh_bus_sub_name(s1), gh_bus_sub_name(s2));
	assert_int_equal(pub(b, "num.cache.x", "n1", "new1"), 0);
	assert_int_equal(pub(b, "num.cache.y", "n2", "new2"), 0);
	assert_int_equal(gh_test_rec_wait_n(r1, 2, 5000), 2);
	assert_int_equal(gh_test_rec_wait_n(r2, 2, 5000), 2);
	assert_int_equal(gh_test_rec_wait_n(rd, 3, 5000), 3); /* the durable starts at the start */
	assert_string_equal(r1->got[0].data, "new1");
	assert_string_equal(r1->got[1].data, "new2");
	assert_string_equal(r2->got[0].data, "new1");
	assert_string_equal(r2->got[1].data, "new2");
	/* Forgotten on unsubscribe: what is published meanwhile never reaches a new one. */
	gh_bus_unsubscribe(s1);
	assert_int_equal(pub(b, "num.cache.x", "n3", "while-gone"), 0);
	assert_int_equal(
	    gh_bus_subscribe(b, "num.cache.*", "cache", gh_test_rec_handler, r1, &so, &s1), 0);
	assert_int_equal(pub(b, "num.cache.x", "n4", "back"), 0);
	assert_int_equal(gh_test_rec_wait_n(r1, 3, 5000), 3);
	assert_string_equal(r1->got[2].data, "back");
	assert_int_equal(gh_test_rec_wait_n(r2, 4, 5000), 4);
	assert_int_equal(r1->calls, 3);
	talloc_free(ctx);
	gh_test_rec_free(r1);
	gh_test_rec_free(r2);
	gh_test_rec_free(rd);
}

/* The handler contract holds on a per-process subscription: failures are redelivered. */
static void test_per_process_failure_redelivered(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = open_bus(ctx, NULL);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_FAIL_BEFORE);
	r->fail_before = 3;
	gh_bus_sub_opts_t so = fast;
	so.per_process = 1;
	gh_bus_sub_t *s = NULL;
	assert_int_equal(gh_bus_subscribe(b, "num.cache.*", "c", gh_test_rec_handler, r, &so, &s),
	                 0);
	assert_int_equal(pub(b, "num.cache.x", "f1", "x"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 1, 5000), 1);
	assert_int_equal(r->got[0].delivery, 3);
	talloc_free(ctx);
	gh_test_rec_free(r);
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
	    cmocka_unit_test(test_per_process_subscriptions),
	    cmocka_unit_test(test_per_process_failure_redelivered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
