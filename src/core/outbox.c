/* outbox: transactional outbox and relay. See outbox.h for ordering and crash guarantees. */
#include "outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "lease.h"
#include "log.h"
#include "uuid.h"

static bool event_ok(const gh_event_t *ev)
{
	return ev->type && gh_bus_subject_valid(ev->type) && ev->aggregate_id &&
	       *ev->aggregate_id && ev->source;
}

/* The envelope of ev as compact JSON (free()), or NULL: a string that is not UTF-8 dropped a key,
 * or no memory. */
static char *envelope(const gh_event_t *ev, const char *id, int64_t seq)
{
	char ts[25];
	gh_time_format(ev->time_ms, ts);
	json_t *env = json_object();
	json_object_set_new(env, "id", json_string(id));
	json_object_set_new(env, "type", json_string(ev->type));
	json_object_set_new(env, "source", json_string(ev->source));
	json_object_set_new(env, "time", json_string(ts));
	json_object_set_new(env, "tenant_id",
	                    ev->tenant_id ? json_string(ev->tenant_id) : json_null());
	json_object_set_new(env, "aggregate_id", json_string(ev->aggregate_id));
	json_object_set_new(env, "aggregate_seq", json_integer(seq));
	if (ev->traceparent)
		json_object_set_new(env, "traceparent", json_string(ev->traceparent));
	json_object_set_new(env, "data", ev->data ? json_deep_copy(ev->data) : json_object());
	char *text = json_dumps(env, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(env);
	return text;
}

#define INSERT_SQL                                                                          \
	"INSERT INTO gh_outbox (event_id, subject, aggregate_id, aggregate_seq, envelope, " \
	"created_ms) VALUES ($1, $2, $3, $4, $5, $6)"

/* Rows per gh_conn_exec_batch: bounds the memory of one call whatever n is. */
enum { ADD_CHUNK = 256, ADD_NCOLS = 6 };

/* Up to this many rows go in one multi-row INSERT; more in a batch. */
enum { MULTI_MAX = 8 };

/* INSERT_SQL with k rows of parameters: VALUES ($1, .. $6), ($7, .. $12), ... */
static void multi_insert_sql(char *out, size_t size, size_t k)
{
	const char *values = strstr(INSERT_SQL, "VALUES");
	int o = snprintf(out, size, "%.*sVALUES ", (int)(values - INSERT_SQL), INSERT_SQL);
	for (size_t r = 0; r < k && o > 0 && (size_t)o < size; r++) {
		int b = (int)r * ADD_NCOLS;
		o += snprintf(out + o, size - (size_t)o, "%s($%d, $%d, $%d, $%d, $%d, $%d)",
		              r ? ", " : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6);
	}
}

int gh_outbox_add_many(gh_conn_t *c, const gh_event_t *evs, size_t n, char (*event_ids)[37],
                       int64_t *aggregate_seqs)
{
	if (!gh_conn_in_tx(c) || (n > 0 && !evs))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!event_ok(&evs[i]))
			return -EINVAL;
	if (n == 0)
		return 0;
	int64_t *seqs = malloc(n * sizeof(*seqs));
	size_t chunk = n < ADD_CHUNK ? n : ADD_CHUNK;
	gh_val_t *p = malloc(chunk * ADD_NCOLS * sizeof(*p));
	char **texts = calloc(chunk, sizeof(*texts));
	char(*ids)[37] = malloc(chunk * sizeof(*ids));
	int rc = seqs && p && texts && ids ? 0 : -ENOMEM;

	/* One upsert per run of adjacent events of one aggregate: it adds the run's length and
	 * locks the aggregate's row until commit (see outbox.h on ordering). */
	for (size_t i = 0; i < n && rc == 0;) {
		size_t k = 1;
		while (i + k < n && strcmp(evs[i + k].aggregate_id, evs[i].aggregate_id) == 0)
			k++;
		gh_rows_t *r;
		rc = gh_conn_query_one(
		    c,
		    "INSERT INTO gh_outbox_agg (aggregate_id, seq) VALUES ($1, $2) "
		    "ON CONFLICT (aggregate_id) DO UPDATE SET seq = gh_outbox_agg.seq + "
		    "excluded.seq "
		    "RETURNING seq",
		    (gh_val_t[]){GH_TEXT(evs[i].aggregate_id), GH_I64(k)}, 2, &r);
		if (rc < 0) {
			rc = rc == -ENOENT ? -EIO : rc;
			break;
		}
		int64_t last = gh_rows_i64(r, 0);
		gh_rows_close(r);
		for (size_t j = 0; j < k; j++)
			seqs[i + j] = last - (int64_t)k + 1 + (int64_t)j;
		i += k;
	}

	/* The rows, a chunk per batch (one pipeline on PostgreSQL). */
	for (size_t i = 0; i < n && rc == 0; i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		for (size_t j = 0; j < k && rc == 0; j++) {
			const gh_event_t *ev = &evs[i + j];
			gh_uuid_v7(ev->time_ms, ids[j]);
			if (!(texts[j] = envelope(ev, ids[j], seqs[i + j]))) {
				rc = -EINVAL;
				break;
			}
			gh_val_t *v = &p[j * ADD_NCOLS];
			v[0] = GH_TEXT(ids[j]);
			v[1] = GH_TEXT(ev->type);
			v[2] = GH_TEXT(ev->aggregate_id);
			v[3] = GH_I64(seqs[i + j]);
			v[4] = GH_TEXT(texts[j]);
			v[5] = GH_I64(ev->time_ms);
		}
		if (rc == 0 && k <= MULTI_MAX) {
			/* a transition's few events: one multi-row INSERT, one statement */
			char sql[sizeof(INSERT_SQL) + MULTI_MAX * 48];
			multi_insert_sql(sql, sizeof sql, k);
			rc = gh_conn_exec(c, sql, p, (int)k * ADD_NCOLS, NULL);
		} else if (rc == 0) {
			rc = gh_conn_exec_batch(c, INSERT_SQL, p, ADD_NCOLS, k, NULL);
		}
		for (size_t j = 0; j < k; j++) {
			free(texts[j]);
			texts[j] = NULL;
		}
		if (rc == 0 && event_ids)
			memcpy(event_ids + i, ids, k * sizeof(*ids));
	}
	if (rc == 0 && aggregate_seqs)
		memcpy(aggregate_seqs, seqs, n * sizeof(*seqs));
	free(ids);
	free(texts);
	free(p);
	free(seqs);
	return rc;
}

int gh_outbox_add(gh_conn_t *c, const gh_event_t *ev, char event_id[37], int64_t *aggregate_seq)
{
	char ids[1][37];
	int rc = gh_outbox_add_many(c, ev, 1, ids, aggregate_seq);
	if (rc == 0 && event_id)
		memcpy(event_id, ids[0], 37);
	return rc;
}

int gh_outbox_pending(gh_store_t *s, int64_t now_ms, int64_t *count, int64_t *oldest_age_ms)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(s, 5000, &c);
	if (rc < 0)
		return rc;
	gh_rows_t *r;
	rc = gh_conn_query_one(c,
	                       "SELECT COUNT(*), MIN(created_ms) FROM gh_outbox "
	                       "WHERE published_ms IS NULL",
	                       NULL, 0, &r);
	if (rc == 0) {
		*count = gh_rows_i64(r, 0);
		*oldest_age_ms = gh_rows_isnull(r, 1) ? 0 : now_ms - gh_rows_i64(r, 1);
		gh_rows_close(r);
	}
	gh_store_release(c);
	return rc;
}

struct gh_outbox_relay_s {
	gh_store_t *store;
	gh_bus_t *bus;
	gh_outbox_relay_opts_t o;
	char *lease_name, *holder;
	int64_t lease_renew_ms; /* held until at least a third of the TTL from here: renew then */
	gh_counter_t *m_published, *m_errors;
	gh_gauge_t *m_pending, *m_lag_ms;
	int64_t last_cleanup_ms;

	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int kicked;
	int stopping;
	int64_t flush_deadline_ns;
	int flush_rc;
};

/* One pending row, copied out of the cursor. */
typedef struct {
	int64_t id;
	int64_t created_ms;
	char *subject;
	char *event_id;
	char *envelope;
	size_t len;
} row_t;

static int fetch(gh_outbox_relay_t *r, void *ctx, row_t **rows, size_t *n)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(r->store, 5000, &c);
	if (rc < 0)
		return rc;
	gh_rows_t *q;
	rc = gh_conn_query(c,
	                   "SELECT id, subject, event_id, envelope, created_ms FROM gh_outbox "
	                   "WHERE published_ms IS NULL ORDER BY id LIMIT $1",
	                   (gh_val_t[]){GH_I64(r->o.batch)}, 1, &q);
	if (rc < 0)
		goto out;
	row_t *v = talloc_array(ctx, row_t, (size_t)r->o.batch);
	size_t k = 0;
	while ((rc = gh_rows_next(q)) == 1 && k < (size_t)r->o.batch) {
		v[k].id = gh_rows_i64(q, 0);
		v[k].subject = talloc_strdup(v, gh_rows_text(q, 1));
		v[k].event_id = talloc_strdup(v, gh_rows_text(q, 2));
		v[k].envelope = talloc_strdup(v, gh_rows_text(q, 3));
		v[k].len = strlen(v[k].envelope);
		v[k].created_ms = gh_rows_i64(q, 4);
		k++;
	}
	gh_rows_close(q);
	*rows = v;
	*n = k;
out:
	gh_store_release(c);
	return rc < 0 ? rc : 0;
}

static int mark(gh_outbox_relay_t *r, const row_t *rows, size_t n, int64_t now_ms)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(r->store, 5000, &c);
	if (rc < 0)
		return rc;
	/* Exact ids, never a range (a row with a lower id may still be uncommitted), in one
	 * statement: a PostgreSQL array literal "{1,2}" or a JSON array "[1,2]" for SQLite. */
	bool pg = gh_conn_backend(c) == GH_STORE_PG;
	char *ids = malloc(n * 21 + 3), *o = ids;
	if (!ids) {
		gh_store_release(c);
		return -ENOMEM;
	}
	*o++ = pg ? '{' : '[';
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s%lld", i ? "," : "", (long long)rows[i].id);
	*o++ = pg ? '}' : ']';
	*o = '\0';
	rc = gh_conn_exec(c,
	                  pg ? "UPDATE gh_outbox SET published_ms = $1 WHERE id = ANY($2::bigint[])"
	                     : "UPDATE gh_outbox SET published_ms = $1 WHERE id IN "
	                       "(SELECT value FROM json_each($2))",
	                  (gh_val_t[]){GH_I64(now_ms), GH_TEXT(ids)}, 2, NULL);
	free(ids);
	if (rc == 0 && r->o.retention_ms >= 0 && now_ms - r->last_cleanup_ms > 60000) {
		r->last_cleanup_ms = now_ms;
		rc = gh_conn_exec(c,
		                  "DELETE FROM gh_outbox WHERE published_ms IS NOT NULL AND "
		                  "published_ms < $1",
		                  (gh_val_t[]){GH_I64(now_ms - r->o.retention_ms)}, 1, NULL);
	}
	gh_store_release(c);
	return rc;
}

int gh_outbox_relay_round(gh_outbox_relay_t *r, int do_mark, size_t *published)
{
	*published = 0;
	void *ctx = talloc_new(NULL);
	row_t *rows = NULL;
	size_t n = 0;
	int64_t now = gh_clock_now_ms(r->o.clock);
	int rc = fetch(r, ctx, &rows, &n);
	if (rc < 0 || n == 0) {
		if (rc == 0) {
			gh_gauge_set(r->m_pending, 0);
			gh_gauge_set(r->m_lag_ms, 0);
		}
		goto out;
	}
	gh_gauge_set(r->m_lag_ms, now - rows[0].created_ms);
	gh_bus_msg_t *msgs = talloc_zero_array(ctx, gh_bus_msg_t, n);
	for (size_t i = 0; i < n; i++) {
		msgs[i].subject = rows[i].subject;
		msgs[i].msg_id = rows[i].event_id;
		msgs[i].data = rows[i].envelope;
		msgs[i].len = rows[i].len;
	}
	size_t acked = 0;
	int prc = gh_bus_publish_batch(r->bus, msgs, n, &acked);
	if (prc < 0) {
		gh_counter_inc(r->m_errors);
		gh_log(GH_LOG_WARN, "outbox publish failed; will retry", "event_id",
		       rows[acked].event_id, "subject", rows[acked].subject, NULL);
	}
	if (acked > 0 && do_mark)
		rc = mark(r, rows, acked, now);
	if (rc == 0) {
		*published = acked;
		gh_counter_add(r->m_published, acked);
	}
	if (rc == 0)
		rc = prc;
	gh_gauge_set(r->m_pending, (int64_t)(n - acked));
out:
	talloc_free(ctx);
	return rc;
}

static void sleep_until_kick(gh_outbox_relay_t *r, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000)
		ts.tv_sec++, ts.tv_nsec -= 1000000000;
	pthread_mutex_lock(&r->mu);
	while (!r->kicked && !r->stopping)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
			break;
	r->kicked = 0;
	pthread_mutex_unlock(&r->mu);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *relay_main(void *arg)
{
	gh_outbox_relay_t *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		int stopping = r->stopping;
		pthread_mutex_unlock(&r->mu);
		if (stopping && mono_ns() >= r->flush_deadline_ns) {
			r->flush_rc = -ETIMEDOUT;
			break;
		}
		if (r->lease_name) {
			int64_t now = gh_clock_now_ms(r->o.clock);
			int64_t ttl = r->o.poll_ms * 20 > 5000 ? r->o.poll_ms * 20 : 5000;
			/* Renewed when a third of the TTL has passed, not every round: two thirds
			 * of it are still ours then, so no other replica can take it over. */
			int held = now < r->lease_renew_ms && now >= r->lease_renew_ms - ttl / 3;
			if (!held &&
			    gh_lease_try(r->store, r->lease_name, r->holder, now, ttl) == 0) {
				held = 1;
				r->lease_renew_ms = now + ttl / 3;
			}
			if (!held) {
				r->lease_renew_ms = 0;
				/* another replica relays and reports the lag; ours would be the
				 * frozen value of the last round this replica held the lease */
				gh_gauge_set(r->m_pending, 0);
				gh_gauge_set(r->m_lag_ms, 0);
				if (stopping)
					break; /* another replica relays; nothing of ours to flush
					        */
				sleep_until_kick(r, r->o.poll_ms);
				continue;
			}
		}
		size_t published = 0;
		int rc = gh_outbox_relay_round(r, 1, &published);
		if (stopping && rc == 0 && published < (size_t)r->o.batch) {
			r->flush_rc = 0; /* nothing left that was committed before the stop */
			break;
		}
		if (rc == 0 && published == (size_t)r->o.batch)
			continue; /* more is waiting */
		sleep_until_kick(r, rc < 0 ? r->o.poll_ms * 5 : r->o.poll_ms);
	}
	return NULL;
}

static int relay_destructor(gh_outbox_relay_t *r)
{
	gh_outbox_relay_stop(r, 0);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	return 0;
}

int gh_outbox_relay_new(void *ctx, gh_store_t *store, gh_bus_t *bus,
                        const gh_outbox_relay_opts_t *opts, gh_outbox_relay_t **out)
{
	gh_outbox_relay_t *r = talloc_zero(ctx, gh_outbox_relay_t);
	if (!r)
		return -ENOMEM;
	r->store = store;
	r->bus = bus;
	if (opts)
		r->o = *opts;
	if (r->o.poll_ms <= 0)
		r->o.poll_ms = 100;
	if (r->o.batch <= 0)
		r->o.batch = 500;
	if (r->o.retention_ms == 0)
		r->o.retention_ms = 24LL * 3600 * 1000;
	if (!r->o.clock)
		r->o.clock = gh_clock_real();
	if (r->o.lease_name) {
		r->lease_name = talloc_strdup(r, r->o.lease_name);
		r->holder = talloc_strdup(r, r->o.holder ? r->o.holder : "relay");
	}
	r->o.lease_name = r->o.holder = NULL; /* borrowed: use the copies */
	if (r->o.metrics) {
		r->m_published = gh_metrics_counter(r->o.metrics, "ghasi_outbox_published_total",
		                                    "Events published by the outbox relay", NULL);
		r->m_errors = gh_metrics_counter(r->o.metrics, "ghasi_outbox_publish_errors_total",
		                                 "Failed outbox publish rounds", NULL);
		r->m_pending =
		    gh_metrics_gauge(r->o.metrics, "ghasi_outbox_unacked",
		                     "Rows of the last round the bus did not accept", NULL);
		r->m_lag_ms = gh_metrics_gauge(r->o.metrics, "ghasi_outbox_lag_ms",
		                               "Age of the oldest pending outbox row at the last "
		                               "round (0 on replicas not holding the relay lease)",
		                               NULL);
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	talloc_set_destructor(r, relay_destructor);
	*out = r;
	return 0;
}

int gh_outbox_relay_start(gh_outbox_relay_t *r)
{
	if (r->started)
		return 0;
	if (pthread_create(&r->thread, NULL, relay_main, r) != 0)
		return -EAGAIN;
	pthread_setname_np(r->thread, "gh-relay");
	r->started = 1;
	return 0;
}

void gh_outbox_relay_kick(gh_outbox_relay_t *r)
{
	pthread_mutex_lock(&r->mu);
	r->kicked = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

int gh_outbox_relay_stop(gh_outbox_relay_t *r, int flush_ms)
{
	if (!r->started)
		return 0;
	pthread_mutex_lock(&r->mu);
	r->flush_deadline_ns = mono_ns() + (int64_t)flush_ms * 1000000;
	r->stopping = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	r->started = 0;
	if (r->lease_name)
		gh_lease_release(r->store, r->lease_name, r->holder);
	return r->flush_rc;
}
