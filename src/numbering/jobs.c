/* jobs: reservation expiry timers and the numbering service's recurring jobs. See jobs.h. */
#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "ports.h"
#include "service.h"

#define NUM_SOURCE      "ghasi/numbering"
#define RENEW_PAGE      100
#define XNIL            UINT32_MAX
#define AUDIT_CHAIN     "numbering"
#define EV_CHAIN_BROKEN "numbering.audit.chain_broken.v1"

/* ---- expiry timers ----------------------------------------------------------------------- */

enum { XN_FREE, XN_ARMED, XN_QUEUED };

/* One watched reservation. Nodes live in a flat array sized at start; a node's address is the
 * timer's ud, so it must stay put and is only reused once neither the scheduler nor the worker
 * can still reach it: a node whose timer could not be cancelled (the callback is already on its
 * way) is marked dead and freed by that callback; a queued dead node by the worker. */
typedef struct xnode_s {
	num_expiry_t *x;
	uint64_t key;
	int64_t version, due_ms;
	gh_sched_timer_t timer;
	uint32_t hnext; /* hash chain, or the free list */
	uint32_t qnext; /* due queue */
	uint8_t state;
	bool dead;   /* dropped from the hash: nothing to do when it comes up */
	bool hashed; /* in the hash table */
} xnode_t;

struct num_expiry_s {
	num_svc_t *s;
	gh_sched_t *sched;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	xnode_t *nodes;
	uint32_t cap, free_head;
	uint32_t *buckets;
	uint32_t mask;
	uint32_t qhead, qtail; /* fired, waiting for the worker */
	size_t pending;
	bool stop, running, full_logged;
	pthread_t thread;
	_Atomic uint64_t fired;
};

static uint32_t bucket_of(const num_expiry_t *x, uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (uint32_t)key & x->mask;
}

static uint32_t idx_of(const num_expiry_t *x, const xnode_t *n) { return (uint32_t)(n - x->nodes); }

static xnode_t *hash_find(num_expiry_t *x, uint64_t key)
{
	for (uint32_t i = x->buckets[bucket_of(x, key)]; i != XNIL; i = x->nodes[i].hnext)
		if (x->nodes[i].key == key)
			return &x->nodes[i];
	return NULL;
}

static void hash_remove(num_expiry_t *x, xnode_t *n)
{
	if (!n->hashed)
		return;
	uint32_t *p = &x->buckets[bucket_of(x, n->key)], me = idx_of(x, n);
	while (*p != XNIL && *p != me)
		p = &x->nodes[*p].hnext;
	if (*p == me)
		*p = n->hnext;
	n->hashed = false;
	n->hnext = XNIL;
}

static void node_free(num_expiry_t *x, xnode_t *n)
{
	hash_remove(x, n);
	n->state = XN_FREE;
	n->dead = false;
	n->hnext = x->free_head;
	x->free_head = idx_of(x, n);
	x->pending--;
}

/* Scheduler thread, at due_ms: hand the node to the worker (the transition may take a few
 * milliseconds and must not hold up the other timers and jobs of the scheduler). */
static void on_timer(void *ud)
{
	xnode_t *n = ud;
	num_expiry_t *x = n->x;
	pthread_mutex_lock(&x->mu);
	if (n->state == XN_ARMED) {
		if (n->dead) {
			node_free(x, n);
		} else {
			n->state = XN_QUEUED;
			n->qnext = XNIL;
			if (x->qtail == XNIL)
				x->qhead = idx_of(x, n);
			else
				x->nodes[x->qtail].qnext = idx_of(x, n);
			x->qtail = idx_of(x, n);
			pthread_cond_signal(&x->cv);
		}
	}
	pthread_mutex_unlock(&x->mu);
}

/* Drop what the node watches: cancel its timer, or leave it to whoever holds it now. */
static void node_drop(num_expiry_t *x, xnode_t *n)
{
	hash_remove(x, n);
	if (n->state == XN_ARMED && gh_sched_timer_cancel(x->sched, n->timer) == 0)
		node_free(x, n);
	else
		n->dead = true;
}

void num_expiry_note(num_expiry_t *x, uint64_t key, int64_t version, num_state_t st,
                     int64_t expires_ms)
{
	if (!x)
		return;
	pthread_mutex_lock(&x->mu);
	if (x->stop)
		goto out;
	xnode_t *n = hash_find(x, key);
	if (n) {
		if (n->version >= version)
			goto out; /* older or repeated news */
		node_drop(x, n);
	}
	if (st != NUM_ST_RESERVED || expires_ms <= 0)
		goto out;
	if (x->free_head == XNIL) {
		if (!x->full_logged)
			gh_log(GH_LOG_WARN,
			       "numbering: expiry timers full; further reservations expire by the "
			       "database sweep (raise numbering.expiry_timers_max)",
			       NULL);
		x->full_logged = true;
		goto out;
	}
	n = &x->nodes[x->free_head];
	x->free_head = n->hnext;
	x->pending++;
	*n = (xnode_t){.x = x,
	               .key = key,
	               .version = version,
	               .due_ms = expires_ms,
	               .state = XN_ARMED,
	               .hnext = XNIL,
	               .qnext = XNIL};
	uint32_t b = bucket_of(x, key);
	n->hnext = x->buckets[b];
	x->buckets[b] = idx_of(x, n);
	n->hashed = true;
	/* the scheduler's callbacks run without its lock, so taking it under ours cannot invert */
	if (gh_sched_timer_at(x->sched, expires_ms, on_timer, n, &n->timer) < 0)
		node_free(x, n);
out:
	pthread_mutex_unlock(&x->mu);
}

static void expire_one(num_expiry_t *x, uint64_t key, int64_t version)
{
	num_svc_t *s = x->s;
	gh_err_t err = {0};
	num_number_t after;
	num_tx_req_t req = {.key = key,
	                    .action = NUM_ACT_EXPIRE,
	                    .role = NUM_ROLE_SYSTEM,
	                    .actor = "system:expiry",
	                    .expected_version = version,
	                    .now_ms = gh_clock_now_ms(s->clock)};
	int rc = num_repo_transition(s->repo, &req, &after, &err);
	if (rc == 0) {
		atomic_fetch_add(&x->fired, 1);
		gh_counter_inc(s->c_expired);
		num_svc_apply(s, &after);
	} else if (err.code == GH_E_UNAVAILABLE) {
		gh_log(GH_LOG_WARN, "numbering: reservation expiry failed; the sweep retries",
		       "detail", err.message, NULL);
	} else {
		/* CONFLICT: another replica (or the sweep) expired it first, or it changed */
		gh_log(GH_LOG_DEBUG, "numbering: reservation expiry skipped", "code",
		       gh_code_name(err.code), NULL);
	}
	gh_err_clear(&err);
}

static void *worker(void *arg)
{
	num_expiry_t *x = arg;
	pthread_mutex_lock(&x->mu);
	for (;;) {
		while (!x->stop && x->qhead == XNIL)
			pthread_cond_wait(&x->cv, &x->mu);
		if (x->stop)
			break;
		xnode_t *n = &x->nodes[x->qhead];
		x->qhead = n->qnext;
		if (x->qhead == XNIL)
			x->qtail = XNIL;
		bool dead = n->dead;
		uint64_t key = n->key;
		int64_t version = n->version;
		node_free(x, n);
		if (dead)
			continue;
		pthread_mutex_unlock(&x->mu);
		expire_one(x, key, version);
		pthread_mutex_lock(&x->mu);
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

void num_expiry_stop(num_expiry_t *x)
{
	if (!x)
		return;
	pthread_mutex_lock(&x->mu);
	bool was = x->running;
	x->stop = true;
	x->running = false;
	for (uint32_t i = 0; i < x->cap; i++)
		if (x->nodes[i].state == XN_ARMED && !x->nodes[i].dead &&
		    gh_sched_timer_cancel(x->sched, x->nodes[i].timer) == 0)
			node_free(x, &x->nodes[i]);
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	if (was)
		pthread_join(x->thread, NULL);
}

/* Freeing joins the worker but touches no scheduler (which may be gone by then): the owner
 * calls num_expiry_stop while the scheduler lives, as num_stop does. */
static int expiry_destroy(num_expiry_t *x)
{
	pthread_mutex_lock(&x->mu);
	bool was = x->running;
	x->stop = true;
	x->running = false;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	if (was)
		pthread_join(x->thread, NULL);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
	return 0;
}

int num_expiry_new(num_svc_t *s, gh_sched_t *sched, size_t capacity, num_expiry_t **out)
{
	if (!s || !sched || capacity < 1 || capacity >= XNIL / 2)
		return -EINVAL;
	num_expiry_t *x = talloc_zero(s, num_expiry_t);
	if (!x)
		return -ENOMEM;
	x->s = s;
	x->sched = sched;
	x->cap = (uint32_t)capacity;
	uint32_t nb = 16;
	while (nb < x->cap)
		nb <<= 1;
	x->mask = nb - 1;
	x->nodes = talloc_array(x, xnode_t, x->cap);
	x->buckets = talloc_array(x, uint32_t, nb);
	if (!x->nodes || !x->buckets) {
		talloc_free(x);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nb; i++)
		x->buckets[i] = XNIL;
	for (uint32_t i = 0; i < x->cap; i++)
		x->nodes[i] = (xnode_t){.hnext = i + 1 < x->cap ? i + 1 : XNIL, .qnext = XNIL};
	x->free_head = 0;
	x->qhead = x->qtail = XNIL;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	int rc = pthread_create(&x->thread, NULL, worker, x);
	if (rc != 0) {
		pthread_cond_destroy(&x->cv);
		pthread_mutex_destroy(&x->mu);
		talloc_free(x);
		return -rc;
	}
	pthread_setname_np(x->thread, "gh-expiry");
	x->running = true;
	talloc_set_destructor(x, expiry_destroy);
	*out = x;
	return 0;
}

int num_expiry_load(num_expiry_t *x)
{
	num_svc_t *s = x->s;
	if (!s->repo)
		return 0;
	void *tmp = talloc_new(NULL);
	num_due_t *rows;
	size_t n;
	int rc = num_repo_reservations_live(s->repo, (int)x->cap, tmp, &rows, &n);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			num_expiry_note(x, rows[i].key, rows[i].version, NUM_ST_RESERVED,
			                rows[i].due_ms);
		rc = (int)n;
	}
	talloc_free(tmp);
	return rc;
}

size_t num_expiry_pending(num_expiry_t *x)
{
	pthread_mutex_lock(&x->mu);
	size_t n = x->pending;
	pthread_mutex_unlock(&x->mu);
	return n;
}

uint64_t num_expiry_fired(num_expiry_t *x) { return atomic_load(&x->fired); }

/* ---- recurring jobs ---------------------------------------------------------------------- */

static void log_count(const char *msg, const char *k1, long long v1, const char *k2, long long v2)
{
	char a[24], b[24];
	snprintf(a, sizeof a, "%lld", v1);
	snprintf(b, sizeof b, "%lld", v2);
	gh_log(GH_LOG_INFO, msg, k1, a, k2, b, NULL);
}

int num_job_reservation_sweep(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	if (!s->repo)
		return -EIO;
	int n = num_repo_expire_due(s->repo, now_ms - s->cfg.expiry_sweep_grace_ms,
	                            (int)s->cfg.sweep_batch);
	if (n > 0) {
		gh_counter_add(s->c_expired, (uint64_t)n);
		log_count("numbering: reservations expired by the sweep", "count", n, "batch",
		          s->cfg.sweep_batch);
	}
	return n < 0 ? n : 0;
}

int num_job_lease_end(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	if (!s->repo)
		return -EIO;
	long long total = 0;
	int n;
	do {
		n = num_repo_end_leases_due(s->repo, now_ms, (int)s->cfg.sweep_batch);
		if (n > 0)
			total += n;
	} while (n == (int)s->cfg.sweep_batch && !(s->app && gh_sched_stopping(s->app->sched)));
	if (total > 0)
		log_count("numbering: leases ended at their term", "count", total, "batch",
		          s->cfg.sweep_batch);
	return n < 0 ? n : 0;
}

/* One lease of the renewal run: renew it, or say why not. Returns 1 renewed, 0 not renewed
 * (renewal_failed emitted, or skipped on a conflict), or -EIO when the database failed. */
static int renew_one(num_svc_t *s, const num_renewal_t *rw, int64_t now_ms)
{
	const num_number_t *nb = &rw->number;
	num_renew_req_t rq = {.key = nb->key,
	                      .expected_version = nb->version,
	                      .lease_id = nb->lease_id,
	                      .term_days = rw->term_days,
	                      .actor = "system:renewal",
	                      .now_ms = now_ms};
	char reason[96], why[64] = "";
	gh_err_t err = {0};
	int rc;
	if (nb->state != NUM_ST_ASSIGNED || nb->lease_status != NUM_LEASE_ACTIVE) {
		snprintf(reason, sizeof reason, "lease_suspended");
	} else if (rw->term_days < 1) {
		snprintf(reason, sizeof reason, "pool_missing");
	} else {
		rc = s->ports ? num_port_preview_charge(s->ports, nb->tenant_id, nb->identifier,
		                                        num_kind_name(nb->kind), rw->term_days,
		                                        nb->lease_id, NULL, why, sizeof why)
		              : NUM_PORT_UNSET;
		if (rc == NUM_PORT_YES) {
			num_number_t after;
			rc = num_repo_lease_renew(s->repo, &rq, &after, &err);
			if (rc == 0) {
				num_svc_apply(s, &after);
				gh_err_clear(&err);
				return 1;
			}
			int out = err.code == GH_E_UNAVAILABLE ? -EIO : 0;
			/* CONFLICT / lease_not_active: it changed since it was read (released,
			 * recalled, suspended); the next run sees its new state */
			gh_log(out ? GH_LOG_ERROR : GH_LOG_INFO,
			       "numbering: approved renewal not applied", "lease_id", nb->lease_id,
			       "code", gh_code_name(err.code), "detail", err.message, NULL);
			gh_err_clear(&err);
			return out;
		}
		if (rc == NUM_PORT_NO)
			snprintf(reason, sizeof reason, "billing_refused:%s", why);
		else
			snprintf(reason, sizeof reason, "%s", why);
	}
	rc = num_repo_renewal_failed(s->repo, &rq, reason, &err);
	gh_log(rc == 0 ? GH_LOG_WARN : GH_LOG_ERROR, "numbering: lease not renewed", "lease_id",
	       nb->lease_id, "tenant", nb->tenant_id, "reason", reason, "event",
	       rc == 0 ? "number.renewal_failed.v1" : err.message, NULL);
	gh_err_clear(&err);
	return rc == -EIO ? -EIO : 0;
}

int num_job_renewal(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	if (!s->repo)
		return -EIO;
	int64_t before = now_ms + s->cfg.renewal_window_s * 1000;
	uint64_t after_key = 0;
	long long renewed = 0, looked = 0;
	int rc = 0;
	for (;;) {
		void *tmp = talloc_new(NULL);
		num_renewal_t *rows;
		size_t n;
		rc = num_repo_renewals_due(s->repo, now_ms, before, after_key, RENEW_PAGE, tmp,
		                           &rows, &n);
		for (size_t i = 0; rc == 0 && i < n; i++) {
			after_key = rows[i].number.key;
			looked++;
			int r1 = renew_one(s, &rows[i], now_ms);
			if (r1 < 0)
				rc = r1; /* the database failed: stop; tomorrow's run retries */
			else
				renewed += r1;
		}
		talloc_free(tmp);
		if (rc < 0 || n < RENEW_PAGE || (s->app && gh_sched_stopping(s->app->sched)))
			break;
	}
	if (looked > 0)
		log_count("numbering: renewal run", "leases", looked, "renewed", renewed);
	return rc;
}

typedef struct {
	const gh_audit_verify_t *v;
	int64_t now_ms;
} broken_tx_t;

static int broken_fn(gh_conn_t *c, void *ud)
{
	broken_tx_t *b = ud;
	json_t *data =
	    json_pack("{s:s, s:I, s:I, s:s, s:s}", "chain", AUDIT_CHAIN, "first_bad_seq",
	              (json_int_t)b->v->first_bad_seq, "rows_checked", (json_int_t)b->v->rows,
	              "reason", b->v->reason, "head_hash", b->v->head_hash);
	if (!data)
		return -ENOMEM;
	gh_event_t ev = {.type = EV_CHAIN_BROKEN,
	                 .source = NUM_SOURCE,
	                 .aggregate_id = "numbering/audit",
	                 .time_ms = b->now_ms,
	                 .data = data};
	int rc = gh_outbox_add(c, &ev, NULL, NULL);
	json_decref(data);
	return rc;
}

int num_job_audit_verify(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	if (!s->store)
		return -EIO;
	gh_audit_verify_t v;
	int rc = gh_audit_verify(s->store, AUDIT_CHAIN, &v);
	if (rc < 0)
		return rc;
	char seq[24], rows[24];
	snprintf(seq, sizeof seq, "%lld", (long long)v.first_bad_seq);
	snprintf(rows, sizeof rows, "%lld", (long long)v.rows);
	gh_gauge_set(s->g_audit_broken, v.ok ? 0 : 1);
	if (v.ok) {
		gh_log(GH_LOG_INFO, "numbering: audit chain verified", "rows", rows, "head_hash",
		       v.head_hash, NULL);
		return 0;
	}
	gh_log(GH_LOG_ERROR, "numbering: audit chain broken", "first_bad_seq", seq, "rows", rows,
	       "reason", v.reason, NULL);
	broken_tx_t b = {&v, now_ms};
	rc = gh_store_tx(s->store, broken_fn, &b, &(gh_tx_opts_t){.flags = GH_TX_WRITE});
	if (rc < 0)
		return rc;
	if (s->app && s->app->relay)
		gh_outbox_relay_kick(s->app->relay);
	return 0;
}
