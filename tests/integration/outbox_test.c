/* outbox: events leave with their transaction only, in per-aggregate order, exactly once to
 * consumers even when the relay crashes between publish and mark; on SQLite and PostgreSQL,
 * with the in-process bus and with a real nats-server. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "bus.h"
#include "outbox.h"
#include "store.h"
#include "storefx.h"
#include "testutil.h"
#include "uuid.h"

typedef struct {
	pthread_mutex_t mu;
	json_t *got; /* array of envelopes */
} sink_t;

static int collect(const gh_bus_msg_t *msg, void *ud, char *reason, size_t n)
{
	sink_t *s = ud;
	json_t *env = json_loadb(msg->data, msg->len, 0, NULL);
	if (!env) {
		snprintf(reason, n, "not JSON");
		return GH_BUS_REJECT;
	}
	pthread_mutex_lock(&s->mu);
	json_array_append_new(s->got, env);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static size_t sink_count(sink_t *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = json_array_size(s->got);
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* Poll until the sink holds want messages (or 10 s pass); then 300 ms more to catch extras. */
static size_t sink_wait(sink_t *s, size_t want)
{
	for (int i = 0; i < 1000 && sink_count(s) < want; i++)
		nanosleep(&(struct timespec){0, 10000000}, NULL);
	nanosleep(&(struct timespec){0, 300000000}, NULL);
	return sink_count(s);
}

typedef struct {
	void *ctx;
	char *dir;
	gh_store_t *store;
	gh_bus_t *bus;
	gh_bus_sub_t *sub;
	sink_t sink;
	char prefix[16];
	char stream[32];
	int nats;
	char type_a[64], type_b[64];
} fx_t;

static int fx_open(fx_t *fx, gh_test_backend_t sb, int nats)
{
	memset(fx, 0, sizeof(*fx));
	fx->ctx = talloc_new(NULL);
	fx->dir = gh_test_tmpdir();
	const char *bus_url = nats ? gh_test_nats_url() : "inproc://";
	if (!bus_url) {
		if (gh_test_required())
			fail_msg("GH_TEST_NATS_URL missing");
		return -1;
	}
	fx->store = gh_test_store_open_core(fx->ctx, sb, fx->dir, NULL);
	if (!fx->store)
		return -1;

	char id[37], subj[32];
	fx->nats = nats;
	gh_uuid_v4(id);
	snprintf(fx->prefix, sizeof(fx->prefix), "ob%.8s", id);
	snprintf(fx->stream, sizeof(fx->stream), "OB%.8s", id);
	snprintf(subj, sizeof(subj), "%s.>", fx->prefix);
	snprintf(fx->type_a, sizeof(fx->type_a), "%s.thing.created.v1", fx->prefix);
	snprintf(fx->type_b, sizeof(fx->type_b), "%s.thing.changed.v1", fx->prefix);
	const char *subjects[] = {subj};
	gh_bus_opts_t bo = {
	    .stream = fx->stream, .subjects = subjects, .n_subjects = 1, .memory_storage = 1};
	assert_int_equal(gh_bus_open(fx->ctx, bus_url, &bo, &fx->bus), 0);
	pthread_mutex_init(&fx->sink.mu, NULL);
	fx->sink.got = json_array();
	assert_int_equal(
	    gh_bus_subscribe(fx->bus, subj, "outbox-test", collect, &fx->sink, NULL, &fx->sub), 0);
	return 0;
}

static void fx_close(fx_t *fx)
{
	if (fx->bus)
		gh_bus_close(fx->bus);
	talloc_free(fx->ctx);
	if (fx->nats && fx->stream[0])
		gh_test_nats_delete_stream(gh_test_nats_url(), fx->stream);
	json_decref(fx->sink.got);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
}

typedef struct {
	fx_t *fx;
	const char *aggregate;
	int n;
	int fail; /* return an error after adding: the transaction must roll back */
} add_arg_t;

static int add_tx(gh_conn_t *c, void *ud)
{
	add_arg_t *a = ud;
	for (int i = 0; i < a->n; i++) {
		json_t *data = json_pack("{s:s, s:i}", "agg", a->aggregate, "i", i);
		gh_event_t ev = {.type = i == 0 ? a->fx->type_a : a->fx->type_b,
		                 .source = "ghasi/test",
		                 .tenant_id = "t-1",
		                 .aggregate_id = a->aggregate,
		                 .traceparent =
		                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		                 .time_ms = 1763791200000LL + i,
		                 .data = data};
		int rc = gh_outbox_add(c, &ev, NULL, NULL);
		json_decref(data);
		if (rc < 0)
			return rc;
	}
	return a->fail ? -EPROTO : 0;
}

static void add(fx_t *fx, const char *agg, int n, int fail)
{
	add_arg_t a = {fx, agg, n, fail};
	int rc = gh_store_tx(fx->store, add_tx, &a, &(gh_tx_opts_t){.flags = GH_TX_WRITE});
	assert_int_equal(rc, fail ? -EPROTO : 0);
}

#define EACH(...)                                                               \
	for (int sb_ = GH_TEST_SQLITE; sb_ <= GH_TEST_PG; sb_++)                \
		for (int nats_ = 0; nats_ <= 1; nats_++) {                      \
			fx_t fx;                                                \
			if (fx_open(&fx, (gh_test_backend_t)sb_, nats_) == 0) { \
				__VA_ARGS__;                                    \
			}                                                       \
			fx_close(&fx);                                          \
		}

static void test_events_published_in_aggregate_order(void **state)
{
	EACH({
		gh_outbox_relay_t *r;
		assert_int_equal(gh_outbox_relay_new(fx.ctx, fx.store, fx.bus, NULL, &r), 0);
		add(&fx, "thing/A", 3, 0);
		add(&fx, "thing/B", 2, 0);
		add(&fx, "thing/A", 2, 0);
		add(&fx, "thing/C", 1, 1); /* rolled back: never published */
		size_t published;
		assert_int_equal(gh_outbox_relay_round(r, 1, &published), 0);
		assert_int_equal(published, 7);
		assert_int_equal(gh_outbox_relay_round(r, 1, &published), 0);
		assert_int_equal(published, 0);
		assert_int_equal(sink_wait(&fx.sink, 7), 7);
		int64_t next_a = 1, next_b = 1;
		size_t i;
		json_t *env;
		json_array_foreach(fx.sink.got, i, env)
		{
			const char *agg = json_string_value(json_object_get(env, "aggregate_id"));
			int64_t seq = json_integer_value(json_object_get(env, "aggregate_seq"));
			assert_true(strcmp(agg, "thing/C") != 0);
			if (strcmp(agg, "thing/A") == 0)
				assert_int_equal(seq, next_a++);
			else
				assert_int_equal(seq, next_b++);
			assert_true(gh_uuid_valid(json_string_value(json_object_get(env, "id"))));
			assert_string_equal(json_string_value(json_object_get(env, "source")),
			                    "ghasi/test");
			assert_string_equal(json_string_value(json_object_get(env, "tenant_id")),
			                    "t-1");
			assert_non_null(json_object_get(env, "traceparent"));
			assert_string_equal(
			    json_string_value(json_object_get(json_object_get(env, "data"), "agg")),
			    agg);
			const char *ts = json_string_value(json_object_get(env, "time"));
			assert_int_equal(strlen(ts), 24);
		}
		assert_int_equal(next_a, 6);
		assert_int_equal(next_b, 3);
		int64_t count, age;
		assert_int_equal(gh_outbox_pending(fx.store, 1763791200000LL, &count, &age), 0);
		assert_int_equal(count, 0);
	});
}

static void test_crash_between_publish_and_mark_delivers_once(void **state)
{
	EACH({
		gh_outbox_relay_t *r;
		assert_int_equal(gh_outbox_relay_new(fx.ctx, fx.store, fx.bus, NULL, &r), 0);
		add(&fx, "thing/A", 5, 0);
		size_t published;
		/* publish, then "crash" before marking */
		assert_int_equal(gh_outbox_relay_round(r, 0, &published), 0);
		assert_int_equal(published, 5);
		int64_t count, age;
		assert_int_equal(gh_outbox_pending(fx.store, 1763791200100LL, &count, &age), 0);
		assert_int_equal(count, 5);
		assert_int_equal(age, 100);
		/* a new relay (the restarted process) publishes the same ids again */
		gh_outbox_relay_t *r2;
		assert_int_equal(gh_outbox_relay_new(fx.ctx, fx.store, fx.bus, NULL, &r2), 0);
		assert_int_equal(gh_outbox_relay_round(r2, 1, &published), 0);
		assert_int_equal(published, 5);
		assert_int_equal(sink_wait(&fx.sink, 5), 5);
		assert_int_equal(gh_outbox_pending(fx.store, 0, &count, &age), 0);
		assert_int_equal(count, 0);
	});
}

static void test_relay_thread_kick_and_flush_on_stop(void **state)
{
	EACH({
		gh_outbox_relay_t *r;
		gh_outbox_relay_opts_t o = {
		    .poll_ms = 5000, .batch = 7, .lease_name = "relay:test", .holder = "replica-1"};
		assert_int_equal(gh_outbox_relay_new(fx.ctx, fx.store, fx.bus, &o, &r), 0);
		assert_int_equal(gh_outbox_relay_start(r), 0);
		add(&fx, "thing/A", 3, 0);
		gh_outbox_relay_kick(r); /* well before the 5 s poll */
		assert_int_equal(sink_wait(&fx.sink, 3), 3);
		/* 20 more, then stop: the stop flushes them all (batches of 7) */
		for (int i = 0; i < 4; i++)
			add(&fx, "thing/B", 5, 0);
		assert_int_equal(gh_outbox_relay_stop(r, 10000), 0);
		assert_int_equal(sink_wait(&fx.sink, 23), 23);
	});
}

typedef struct {
	fx_t *fx;
	const char *const *aggs;
	size_t n;
	int fail;
	char ids[8][37];
	int64_t seqs[8];
} many_arg_t;

static int add_many_tx(gh_conn_t *c, void *ud)
{
	many_arg_t *a = ud;
	gh_event_t evs[8];
	json_t *data[8];
	for (size_t i = 0; i < a->n; i++) {
		data[i] = json_pack("{s:s, s:i}", "agg", a->aggs[i], "i", (int)i);
		evs[i] = (gh_event_t){.type = a->fx->type_b,
		                      .source = "ghasi/test",
		                      .aggregate_id = a->aggs[i],
		                      .time_ms = 1763791200000LL + (int64_t)i,
		                      .data = data[i]};
	}
	int rc = gh_outbox_add_many(c, evs, a->n, a->ids, a->seqs);
	for (size_t i = 0; i < a->n; i++)
		json_decref(data[i]);
	return rc < 0 ? rc : a->fail ? -EPROTO : 0;
}

static int bad_many_tx(gh_conn_t *c, void *ud)
{
	fx_t *fx = ud;
	gh_event_t evs[2] = {
	    {.type = fx->type_a, .source = "ghasi/test", .aggregate_id = "thing/A"},
	    {.type = fx->type_a, .source = "ghasi/test", .aggregate_id = ""},
	};
	return gh_outbox_add_many(c, evs, 2, NULL, NULL);
}

/* gh_outbox_add_many numbers each aggregate's events as single adds would, runs of one
 * aggregate or not, continues the sequence of earlier adds and leaves nothing behind when the
 * transaction rolls back or an event is invalid. */
static void test_add_many_sequences_like_single_adds(void **state)
{
	EACH({
		const gh_tx_opts_t w = {.flags = GH_TX_WRITE};
		add(&fx, "thing/A", 1, 0);
		static const char *const aggs[] = {"thing/A", "thing/A", "thing/B",
		                                   "thing/A", "thing/B", "thing/B"};
		static const int64_t want[] = {2, 3, 1, 4, 2, 3};
		many_arg_t m = {.fx = &fx, .aggs = aggs, .n = 6};
		assert_int_equal(gh_store_tx(fx.store, add_many_tx, &m, &w), 0);
		for (size_t i = 0; i < 6; i++) {
			assert_int_equal(m.seqs[i], want[i]);
			assert_true(gh_uuid_valid(m.ids[i]));
			for (size_t j = 0; j < i; j++)
				assert_string_not_equal(m.ids[i], m.ids[j]);
		}
		many_arg_t rolled = {.fx = &fx, .aggs = aggs, .n = 3, .fail = 1};
		assert_int_equal(gh_store_tx(fx.store, add_many_tx, &rolled, &w), -EPROTO);
		assert_int_equal(gh_store_tx(fx.store, bad_many_tx, &fx, &w), -EINVAL);
		add(&fx, "thing/B", 1, 0); /* seq 4: the rolled-back ones left no gap */

		gh_outbox_relay_t *r;
		assert_int_equal(gh_outbox_relay_new(fx.ctx, fx.store, fx.bus, NULL, &r), 0);
		size_t published;
		assert_int_equal(gh_outbox_relay_round(r, 1, &published), 0);
		assert_int_equal(published, 8);
		assert_int_equal(sink_wait(&fx.sink, 8), 8);
		/* published in insertion order, each envelope carrying the returned id and seq */
		static const char *const order_agg[] = {"thing/A", "thing/A", "thing/A", "thing/B",
		                                        "thing/A", "thing/B", "thing/B", "thing/B"};
		static const int64_t order_seq[] = {1, 2, 3, 1, 4, 2, 3, 4};
		for (size_t i = 0; i < 8; i++) {
			json_t *env = json_array_get(fx.sink.got, i);
			assert_string_equal(json_string_value(json_object_get(env, "aggregate_id")),
			                    order_agg[i]);
			assert_int_equal(json_integer_value(json_object_get(env, "aggregate_seq")),
			                 order_seq[i]);
			if (i >= 1 && i <= 6) {
				assert_string_equal(json_string_value(json_object_get(env, "id")),
				                    m.ids[i - 1]);
				assert_int_equal(json_integer_value(json_object_get(
				                     json_object_get(env, "data"), "i")),
				                 (json_int_t)(i - 1));
			}
		}
	});
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_events_published_in_aggregate_order),
	    cmocka_unit_test(test_crash_between_publish_and_mark_delivers_once),
	    cmocka_unit_test(test_relay_thread_kick_and_flush_on_stop),
	    cmocka_unit_test(test_add_many_sequences_like_single_adds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
