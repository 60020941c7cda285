/* bus on both backends: every scenario runs on inproc:// and on a real nats-server with
 * JetStream (GH_TEST_NATS_URL from scripts/testenv.sh). Each case gets its own subject prefix,
 * stream and dead-letter prefix, and deletes its stream afterwards, so cases never see each
 * other. Success conditions are polled with a deadline. */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "bus.h"
#include "busrec.h"
#include "testutil.h"

/* One case's world: the bus, its unique prefix and how to name subjects under it. */
typedef struct env_s {
	void *ctx;
	int nats;
	const char *url;
	char pfx[48];
	char stream[64];
	char dlq[64];
	char subj_filter[64];
	const char *subjects[1];
	gh_bus_t *bus;
} env_t;

static int case_no;

/* Stream subjects "<prefix>.*.*.*", or "<prefix>.>" when tail is set. */
static void env_open_with(env_t *e, int nats, int tail)
{
	memset(e, 0, sizeof(*e));
	e->ctx = talloc_new(NULL);
	e->nats = nats;
	e->url = nats ? gh_test_nats_url() : "inproc://integration";
	snprintf(e->pfx, sizeof(e->pfx), "t%d-%d", (int)getpid(), ++case_no);
	snprintf(e->stream, sizeof(e->stream), "S%s", e->pfx);
	snprintf(e->dlq, sizeof(e->dlq), "%sdlq", e->pfx);
	/* Four tokens: never overlaps the default stream's "*.*.*" and "dlq.*.*.*". A tail
	 * wildcard would, so such a case must not run while the default stream exists. */
	snprintf(e->subj_filter, sizeof(e->subj_filter), tail ? "%s.>" : "%s.*.*.*", e->pfx);
	e->subjects[0] = e->subj_filter;
	gh_bus_opts_t o = {.stream = e->stream,
	                   .subjects = e->subjects,
	                   .n_subjects = 1,
	                   .dlq_prefix = e->dlq,
	                   .memory_storage = 0,
	                   .name = "ghasi-bus-test"};
	assert_int_equal(gh_bus_open(e->ctx, e->url, &o, &e->bus), 0);
	assert_string_equal(gh_bus_backend(e->bus), nats ? "nats" : "inproc");
}

static void env_open(env_t *e, int nats) { env_open_with(e, nats, 0); }

static void env_close(env_t *e)
{
	talloc_free(e->ctx);
	if (e->nats)
		gh_test_nats_delete_stream(e->url, e->stream);
}

/* "<prefix>.<rest>" in a static rotating buffer. */
static const char *S(env_t *e, const char *rest)
{
	static char buf[8][128];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 128, "%s.%s", e->pfx, rest);
	return b;
}

static const char *D(env_t *e, const char *rest)
{
	static char buf[4][256];
	static int k;
	char *b = buf[k++ % 4];
	snprintf(b, 256, "%s.%s.%s", e->dlq, e->pfx, rest);
	return b;
}

static int pub(env_t *e, const char *rest, const char *id, const char *data)
{
	return gh_bus_publish(e->bus, S(e, rest), id, data, strlen(data), NULL, 0);
}

static gh_bus_sub_opts_t fast_opts(const env_t *e)
{
	/* JetStream redelivers an unacked message after ack_wait; keep it short but above the
	 * server's scheduling granularity. */
	return (gh_bus_sub_opts_t){
	    .ack_wait_ms = e->nats ? 1000 : 100, .backoff_ms = 5, .max_deliver = 3};
}

#define NEED_BACKEND(nats)                                \
	do {                                              \
		if (nats)                                 \
			GH_TEST_NEED(gh_test_nats_url()); \
	} while (0)

static void publish_consume_ack(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_hdr_t h[] = {{"X-Test", "yes"}, {"traceparent", "00-abc-def-01"}};
	assert_int_equal(gh_bus_publish(e.bus, S(&e, "number.assigned.v1"), "e1", "one", 3, h, 2),
	                 0);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "num", gh_test_rec_handler, r, &so, &s),
	    0);
	assert_int_equal(pub(&e, "number.released.v1", "e2", "two"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 2, 10000), 2);
	assert_string_equal(r->got[0].subject, S(&e, "number.assigned.v1"));
	assert_string_equal(r->got[0].msg_id, "e1");
	assert_string_equal(r->got[0].data, "one");
	assert_string_equal(r->got[0].hdr_x, "yes");
	assert_int_equal(r->got[0].delivery, 1);
	assert_string_equal(r->got[1].data, "two");
	/* The durable survives the subscription and keeps its acked position: after ack_wait a
	 * new subscription sees only the marker published later. */
	gh_bus_unsubscribe(s);
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "num", gh_test_rec_handler, r, &so, &s),
	    0);
	usleep((useconds_t)(so.ack_wait_ms + 200) * 1000); /* so that a lost ack would show */
	assert_int_equal(pub(&e, "number.marker.v1", "e3", "marker"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 3, 10000), 3);
	assert_string_equal(r->got[2].data, "marker");
	assert_int_equal(r->calls, 3);
	char why[128];
	assert_int_equal(gh_bus_ready(e.bus, why, sizeof(why)), 0);
	env_close(&e);
	gh_test_rec_free(r);
}

static void duplicate_delivered_once(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "cdr.*.*"), "c", gh_test_rec_handler, r, &so, &s), 0);
	assert_int_equal(pub(&e, "cdr.generated.v1", "dup-1", "first"), 0);
	assert_int_equal(pub(&e, "cdr.generated.v1", "dup-1", "second"), 0);
	gh_bus_msg_t batch[] = {
	    {.subject = S(&e, "cdr.generated.v1"), .msg_id = "dup-1", .data = "third", .len = 5},
	    {.subject = S(&e, "cdr.generated.v1"), .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = S(&e, "cdr.generated.v1"), .msg_id = "b-1", .data = "b1", .len = 2},
	    {.subject = S(&e, "cdr.generated.v1"), .msg_id = "m-1", .data = "marker", .len = 6},
	};
	size_t acked = 99;
	assert_int_equal(gh_bus_publish_batch(e.bus, batch, 4, &acked), 0);
	assert_int_equal(acked, 4);
	assert_int_equal(gh_test_rec_wait_n(r, 3, 10000), 3);
	assert_string_equal(r->got[0].data, "first");
	assert_string_equal(r->got[1].data, "b1");
	assert_string_equal(r->got[2].data, "marker");
	env_close(&e);
	gh_test_rec_free(r);
}

static void failure_redelivered_then_succeeds(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_FAIL_BEFORE);
	r->fail_before = 3;
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s = NULL;
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "n", gh_test_rec_handler, r, &so, &s), 0);
	assert_int_equal(pub(&e, "number.assigned.v1", "f1", "x"), 0);
	assert_int_equal(gh_test_rec_wait_n(r, 1, 10000), 1);
	assert_int_equal(r->got[0].delivery, 3);
	assert_int_equal(r->calls, 3);
	env_close(&e);
	gh_test_rec_free(r);
}

static void consumer_abandons_then_new_consumer_gets_it(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r1 = gh_test_rec_new(GH_REC_ABANDON_FIRST), *r2 = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s1 = NULL, *s2 = NULL;
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "dur", gh_test_rec_handler, r1, &so, &s1),
	    0);
	assert_int_equal(pub(&e, "number.assigned.v1", "a1", "x"), 0);
	assert_int_equal(gh_test_rec_wait_calls(r1, 1, 10000), 1);
	gh_bus_unsubscribe(s1);
	assert_int_equal(r1->n, 0);
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "dur", gh_test_rec_handler, r2, &so, &s2),
	    0);
	assert_int_equal(gh_test_rec_wait_n(r2, 1, 10000), 1);
	assert_string_equal(r2->got[0].msg_id, "a1");
	assert_int_equal(r2->got[0].delivery, 2);
	env_close(&e);
	gh_test_rec_free(r1);
	gh_test_rec_free(r2);
}

/* A consumer on "<prefix>.<rest>" answering how, and a recorder on the case's dead-letter
 * subjects. */
static void subscribe_with_dlq(env_t *e, const gh_bus_sub_opts_t *so, const char *rest,
                               gh_test_rec_how_t how, gh_test_rec_t **r, gh_test_rec_t **dlq)
{
	*r = gh_test_rec_new(how);
	*dlq = gh_test_rec_new(GH_REC_OK);
	char dlq_filter[160];
	snprintf(dlq_filter, sizeof(dlq_filter), "%s.%s.*.*.*", e->dlq, e->pfx);
	gh_bus_sub_t *s = NULL, *d = NULL;
	assert_int_equal(
	    gh_bus_subscribe(e->bus, dlq_filter, "dlq", gh_test_rec_handler, *dlq, so, &d), 0);
	assert_int_equal(gh_bus_subscribe(e->bus, S(e, rest), "n", gh_test_rec_handler, *r, so, &s),
	                 0);
}

static void max_deliver_dead_lettered_with_reason(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_test_rec_t *r, *dlq;
	subscribe_with_dlq(&e, &so, "number.*.v1", GH_REC_FAIL_ALWAYS, &r, &dlq);
	assert_int_equal(pub(&e, "number.assigned.v1", "m1", "payload"), 0);
	assert_int_equal(gh_test_rec_wait_n(dlq, 1, 10000), 1);
	assert_int_equal(r->calls, 3);
	assert_string_equal(dlq->got[0].subject, D(&e, "number.assigned.v1"));
	assert_string_equal(dlq->got[0].dlq_subject, S(&e, "number.assigned.v1"));
	assert_string_equal(dlq->got[0].data, "payload");
	assert_string_equal(dlq->got[0].dlq_deliveries, "3");
	assert_non_null(strstr(dlq->got[0].reason, "database unavailable"));
	assert_non_null(strstr(dlq->got[0].reason, "max_deliver 3"));
	env_close(&e);
	gh_test_rec_free(r);
	gh_test_rec_free(dlq);
}

static void reject_dead_lettered_at_once(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_test_rec_t *r, *dlq;
	subscribe_with_dlq(&e, &so, "number.*.*", GH_REC_REJECT, &r, &dlq);
	gh_bus_hdr_t h[] = {{"X-Test", "kept"}};
	assert_int_equal(gh_bus_publish(e.bus, S(&e, "number.assigned.v1"), "bad-1", "{}", 2, h, 1),
	                 0);
	assert_int_equal(gh_test_rec_wait_n(dlq, 1, 10000), 1);
	assert_int_equal(r->calls, 1);
	assert_string_equal(dlq->got[0].dlq_deliveries, "1");
	assert_string_equal(dlq->got[0].hdr_x, "kept");
	assert_string_equal(dlq->got[0].msg_id, "dlq:bad-1");
	assert_non_null(strstr(dlq->got[0].reason, "schema: /data/number missing"));
	env_close(&e);
	gh_test_rec_free(r);
	gh_test_rec_free(dlq);
}

static void single_publisher_order_preserved(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s = NULL;
	enum { N = 3000 };
	/* Half one by one, half in batches. */
	static char ids[N][16], data[N][16];
	gh_bus_msg_t *batch = calloc(N, sizeof(*batch));
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "o-%d", i);
		snprintf(data[i], sizeof(data[i]), "%d", i);
		batch[i] = (gh_bus_msg_t){.subject = S(&e, "number.assigned.v1"),
		                          .msg_id = ids[i],
		                          .data = data[i],
		                          .len = strlen(data[i])};
		batch[i].subject = talloc_strdup(e.ctx, batch[i].subject);
	}
	for (int i = 0; i < N / 2; i++)
		assert_int_equal(pub(&e, "number.assigned.v1", ids[i], data[i]), 0);
	for (int i = N / 2; i < N; i += 500) {
		size_t acked = 0;
		assert_int_equal(gh_bus_publish_batch(e.bus, &batch[i], 500, &acked), 0);
		assert_int_equal(acked, 500);
	}
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "o", gh_test_rec_handler, r, &so, &s), 0);
	assert_int_equal(gh_test_rec_wait_n(r, N, 20000), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(atoi(r->got[i].data), i);
	env_close(&e);
	free(batch);
	gh_test_rec_free(r);
}

static void wildcard_filters_select_subjects(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open_with(&e, nats, 1);
	gh_test_rec_t *star = gh_test_rec_new(GH_REC_OK), *tail = gh_test_rec_new(GH_REC_OK),
	              *other = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s1, *s2, *s3;
	assert_int_equal(gh_bus_subscribe(e.bus, S(&e, "number.*.v1"), "star", gh_test_rec_handler,
	                                  star, &so, &s1),
	                 0);
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.>"), "tail", gh_test_rec_handler, tail, &so, &s2),
	    0);
	assert_int_equal(gh_bus_subscribe(e.bus, S(&e, "cdr.generated.v1"), "o",
	                                  gh_test_rec_handler, other, &so, &s3),
	                 0);
	assert_int_equal(pub(&e, "number.assigned.v1", "w1", "1"), 0);
	assert_int_equal(pub(&e, "number.assigned.v2", "w2", "2"), 0);
	assert_int_equal(pub(&e, "cdr.generated.v1", "w3", "3"), 0);
	assert_int_equal(pub(&e, "number.released.v1", "w4", "4"), 0);
	assert_int_equal(pub(&e, "number.x.y.z", "w5", "5"), 0);
	assert_int_equal(gh_test_rec_wait_n(star, 2, 10000), 2);
	assert_int_equal(gh_test_rec_wait_n(tail, 4, 10000), 4);
	assert_string_equal(tail->got[3].data, "5");
	assert_int_equal(gh_test_rec_wait_n(other, 1, 10000), 1);
	assert_string_equal(star->got[0].data, "1");
	assert_string_equal(star->got[1].data, "4");
	assert_string_equal(tail->got[1].data, "2");
	assert_string_equal(other->got[0].data, "3");
	env_close(&e);
	gh_test_rec_free(star);
	gh_test_rec_free(tail);
	gh_test_rec_free(other);
}

/* 1 when the stream has a consumer of that name (asked with a connection of its own). */
static int nats_consumer_exists(env_t *e, const char *name, int64_t *inactive_ns)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	assert_int_equal(natsConnection_ConnectTo(&nc, e->url), NATS_OK);
	assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	natsStatus s = js_GetConsumerInfo(&ci, js, e->stream, name, NULL, &jerr);
	if (s == NATS_OK && inactive_ns)
		*inactive_ns = ci->Config->InactiveThreshold;
	if (s != NATS_OK)
		assert_true(s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr);
	jsConsumerInfo_Destroy(ci);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return s == NATS_OK;
}

/* Per-process subscriptions: only messages published after they started, each one gets every
 * message, the handler contract (redelivery) holds, and unsubscribing forgets them (nats: the
 * consumer is deleted). */
static void per_process_broadcast(int nats)
{
	NEED_BACKEND(nats);
	env_t e;
	env_open(&e, nats);
	gh_test_rec_t *r1 = gh_test_rec_new(GH_REC_OK);
	gh_test_rec_t *r2 = gh_test_rec_new(GH_REC_FAIL_BEFORE);
	r2->fail_before = 2;
	gh_bus_sub_opts_t so = fast_opts(&e);
	so.per_process = 1;
	so.inactive_ms = 20000;
	gh_bus_sub_t *s1 = NULL, *s2 = NULL;
	assert_int_equal(pub(&e, "num.cache.x", "old", "old"), 0);
	assert_int_equal(gh_bus_subscribe(e.bus, S(&e, "num.cache.*"), "cache", gh_test_rec_handler,
	                                  r1, &so, &s1),
	                 0);
	assert_int_equal(gh_bus_subscribe(e.bus, S(&e, "num.cache.*"), "cache", gh_test_rec_handler,
	                                  r2, &so, &s2),
	                 0);
	char name1[128];
	snprintf(name1, sizeof name1, "%s", gh_bus_sub_name(s1));
	assert_true(strncmp(name1, "cache-", 6) == 0);
	assert_string_not_equal(name1, gh_bus_sub_name(s2));
	assert_int_equal(pub(&e, "num.cache.x", "n1", "new1"), 0);
	assert_int_equal(pub(&e, "num.cache.y", "n2", "new2"), 0);
	assert_int_equal(gh_test_rec_wait_n(r1, 2, 10000), 2);
	assert_int_equal(gh_test_rec_wait_n(r2, 2, 10000), 2);
	assert_string_equal(r1->got[0].data, "new1");
	assert_string_equal(r1->got[1].data, "new2");
	assert_string_equal(r2->got[0].data, "new1");
	assert_int_equal(r2->got[0].delivery, 2); /* failed once, redelivered */
	assert_string_equal(r2->got[1].data, "new2");
	if (nats) {
		int64_t inactive = 0;
		assert_true(nats_consumer_exists(&e, name1, &inactive));
		assert_int_equal(inactive, 20000 * 1000000LL);
	}
	gh_bus_unsubscribe(s1);
	if (nats)
		assert_false(nats_consumer_exists(&e, name1, NULL));
	/* Nothing of the old one comes back to a new subscription with the same prefix. */
	assert_int_equal(pub(&e, "num.cache.x", "n3", "while-gone"), 0);
	assert_int_equal(gh_bus_subscribe(e.bus, S(&e, "num.cache.*"), "cache", gh_test_rec_handler,
	                                  r1, &so, &s1),
	                 0);
	assert_int_equal(pub(&e, "num.cache.x", "n4", "back"), 0);
	assert_int_equal(gh_test_rec_wait_n(r1, 3, 10000), 3);
	assert_string_equal(r1->got[2].data, "back");
	assert_int_equal(gh_test_rec_wait_n(r2, 4, 10000), 4);
	snprintf(name1, sizeof name1, "%s", gh_bus_sub_name(s1));
	/* Closing the bus deletes what is left. */
	talloc_free(e.ctx);
	e.ctx = NULL;
	if (nats)
		assert_false(nats_consumer_exists(&e, name1, NULL));
	assert_int_equal(r1->calls, 3);
	env_close(&e);
	gh_test_rec_free(r1);
	gh_test_rec_free(r2);
}

#define BOTH(name)                                                \
	static void test_inproc_##name(void **state) { name(0); } \
	static void test_nats_##name(void **state) { name(1); }

BOTH(publish_consume_ack)
BOTH(duplicate_delivered_once)
BOTH(failure_redelivered_then_succeeds)
BOTH(consumer_abandons_then_new_consumer_gets_it)
BOTH(max_deliver_dead_lettered_with_reason)
BOTH(reject_dead_lettered_at_once)
BOTH(single_publisher_order_preserved)
BOTH(wildcard_filters_select_subjects)
BOTH(per_process_broadcast)

/* A consumer process that fetched a message and died without a word (its connection simply
 * went away): the same durable, subscribed anew, gets the message after ack_wait. */
static void test_nats_killed_consumer_message_redelivered(void **state)
{
	GH_TEST_NEED(gh_test_nats_url());
	env_t e;
	env_open(&e, 1);
	gh_test_rec_t *r = gh_test_rec_new(GH_REC_OK);
	gh_bus_sub_opts_t so = fast_opts(&e);
	gh_bus_sub_t *s = NULL;
	/* Create the durable, then let it go idle. */
	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "crash", gh_test_rec_handler, r, &so, &s),
	    0);
	gh_bus_unsubscribe(s);
	assert_int_equal(pub(&e, "number.assigned.v1", "k1", "lost?"), 0);

	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsSubscription *raw = NULL;
	natsMsgList list = {0};
	jsSubOptions o;
	jsSubOptions_Init(&o);
	o.Stream = e.stream;
	o.Consumer = "crash";
	assert_int_equal(natsConnection_ConnectTo(&nc, e.url), NATS_OK);
	assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	assert_int_equal(js_PullSubscribe(&raw, js, S(&e, "number.*.*"), "crash", NULL, &o, NULL),
	                 NATS_OK);
	assert_int_equal(natsSubscription_Fetch(&list, raw, 1, 5000, NULL), NATS_OK);
	assert_int_equal(list.Count, 1);
	natsMsgList_Destroy(&list); /* no ack */
	natsSubscription_Destroy(raw);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);

	assert_int_equal(
	    gh_bus_subscribe(e.bus, S(&e, "number.*.*"), "crash", gh_test_rec_handler, r, &so, &s),
	    0);
	assert_int_equal(gh_test_rec_wait_n(r, 1, 10000), 1);
	assert_string_equal(r->got[0].msg_id, "k1");
	assert_int_equal(r->got[0].delivery, 2);
	env_close(&e);
	gh_test_rec_free(r);
}

/* Default options: stream GHASI over `*.*.*` plus `dlq.*.*.*`, file storage. */
static void test_nats_default_stream_accepts_events_and_dead_letters(void **state)
{
	GH_TEST_NEED(gh_test_nats_url());
	void *ctx = talloc_new(NULL);
	gh_bus_t *b = NULL;
	assert_int_equal(gh_bus_open(ctx, gh_test_nats_url(), NULL, &b), 0);
	assert_int_equal(gh_bus_publish(b, "number.assigned.v1", "d1", "x", 1, NULL, 0), 0);
	assert_int_equal(gh_bus_publish(b, "dlq.number.assigned.v1", "d2", "x", 1, NULL, 0), 0);
	/* Outside the stream: nobody acknowledges it. */
	assert_int_equal(gh_bus_publish(b, "not.an.event.subject", "d3", "x", 1, NULL, 0), -EIO);
	talloc_free(ctx);
	/* Opening again updates the existing stream instead of failing. */
	ctx = talloc_new(NULL);
	assert_int_equal(gh_bus_open(ctx, gh_test_nats_url(), NULL, &b), 0);
	talloc_free(ctx);
	gh_test_nats_delete_stream(gh_test_nats_url(), "GHASI");
}

static void test_nats_unreachable_server_refused(void **state)
{
	GH_TEST_NEED(gh_test_nats_url());
	gh_bus_t *b = NULL;
	assert_int_equal(gh_bus_open(NULL, "nats://127.0.0.1:1", NULL, &b), -ECONNREFUSED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inproc_publish_consume_ack),
	    cmocka_unit_test(test_nats_publish_consume_ack),
	    cmocka_unit_test(test_inproc_duplicate_delivered_once),
	    cmocka_unit_test(test_nats_duplicate_delivered_once),
	    cmocka_unit_test(test_inproc_failure_redelivered_then_succeeds),
	    cmocka_unit_test(test_nats_failure_redelivered_then_succeeds),
	    cmocka_unit_test(test_inproc_consumer_abandons_then_new_consumer_gets_it),
	    cmocka_unit_test(test_nats_consumer_abandons_then_new_consumer_gets_it),
	    cmocka_unit_test(test_nats_killed_consumer_message_redelivered),
	    cmocka_unit_test(test_inproc_max_deliver_dead_lettered_with_reason),
	    cmocka_unit_test(test_nats_max_deliver_dead_lettered_with_reason),
	    cmocka_unit_test(test_inproc_reject_dead_lettered_at_once),
	    cmocka_unit_test(test_nats_reject_dead_lettered_at_once),
	    cmocka_unit_test(test_inproc_single_publisher_order_preserved),
	    cmocka_unit_test(test_nats_single_publisher_order_preserved),
	    cmocka_unit_test(test_inproc_wildcard_filters_select_subjects),
	    cmocka_unit_test(test_nats_wildcard_filters_select_subjects),
	    cmocka_unit_test(test_inproc_per_process_broadcast),
	    cmocka_unit_test(test_nats_per_process_broadcast),
	    cmocka_unit_test(test_nats_default_stream_accepts_events_and_dead_letters),
	    cmocka_unit_test(test_nats_unreachable_server_refused),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	nats_Close();
	return rc;
}
