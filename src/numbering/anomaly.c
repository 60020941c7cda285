/* anomaly: the anomaly signals of the numbering spec ("Anomaly signals (to fraud
 * intelligence)"; issue 4, item 8), published as numbering.anomaly.v1 through the outbox with
 * data {"tenant_id", "kind", "evidence": {...}, "detected_at"}:
 *
 *   RESERVE_RELEASE_CHURN        a tenant's reserves + releases over the last hour reach
 *                                anomaly_churn_per_hour; read from the database by one replica
 *                                (leased job), so it counts every replica's writes.
 *   WRONG_TENANT                 validates answered WRONG_TENANT for one calling tenant in one
 *                                minute reach anomaly_wrong_tenant_per_min (spoofing).
 *   LOOKUP_ENUMERATION           distinct unregistered identifiers one caller (certificate CN,
 *                                else peer address) looked up in one minute reach
 *                                anomaly_lookup_unknown_per_min (estimated).
 *   FIRST_SEND_AFTER_QUARANTINE  a validate ALLOWED for a number whose quarantine closed less
 *                                than 24 h ago; once per number and quarantine exit.
 *
 * The hot path (validate, lookup) only touches preallocated atomics: no lock, no allocation.
 * Per-minute counts live in words holding (minute << 32 | count), two per counter (minute
 * parity), so the flush job reads the minute just ended intact while the current one fills.
 * Distinct identifiers per caller are a 4096-bit linear-counting bitmap per minute parity
 * (about 2 % error up to a few thousand distinct keys), in a fixed table of callers (a caller
 * beyond its capacity is not tracked, and counted in the log). The quarantine exits of the last
 * 24 h are a fixed open-addressing table the flush job reloads from the database every run
 * under a seqlock; a validate that races the reload skips the check (a signal, not a decision).
 * Counters are per replica: thresholds hold per replica, as the config help says. Each replica
 * signals a counter at most once per window; a takeover of the churn lease may repeat a
 * tenant's signal within the hour (evidence carries the window, for consumers to de-duplicate). */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "service.h"

#define ANOMALY_SUBJECT "numbering.anomaly.v1"
#define SOURCE          "ghasi/numbering"
#define DAY_MS          86400000LL
#define HOUR_MS         3600000LL
#define CALLERS         256 /* power of two */
#define CALLER_PROBE    16
#define SKETCH_BITS     4096
#define SKETCH_WORDS    (SKETCH_BITS / 64)
#define CALLER_MAX      64

typedef struct {
	_Atomic uint64_t w[2]; /* minute << 32 | count, by minute parity */
	_Atomic uint64_t last_key;
} tcount_t;

typedef struct {
	_Atomic uint64_t hash; /* 0: free */
	_Atomic int ready;     /* name written */
	char name[CALLER_MAX];
	_Atomic uint32_t minute[2];
	_Atomic uint64_t bits[2][SKETCH_WORDS];
	int64_t signalled; /* job only: last minute signalled + 1 */
} caller_t;

/* Quarantine exits of the last 24 h. Slots are written only by the flush job under the seqlock;
 * flag is set by validates (0 new, 1 seen ALLOWED, 2 published). */
typedef struct {
	_Atomic uint64_t key;
	_Atomic int64_t closed_ms;
	_Atomic int flag;
} qexit_t;

typedef struct {
	uint64_t key;
	int64_t closed_ms;
	int flag;
} qexit_copy_t;

typedef struct churn_mark_s {
	struct churn_mark_s *next;
	char tenant[NUM_ID_MAX];
	int64_t at_ms;
} churn_mark_t;

struct num_anomaly_s {
	uint32_t n_tenants;
	tcount_t *wrong;       /* by caller tenant index; 0 = unknown tenant */
	int64_t *wrong_signal; /* job only: last minute signalled + 1 */
	caller_t *callers;     /* CALLERS */
	_Atomic uint64_t untracked_callers;
	size_t q_cap; /* power of two */
	qexit_t *q;
	_Atomic uint64_t q_seq; /* odd while the job rewrites q */
	/* A bit per hash of the keys in q (4 bits per slot, 64 KiB at the default size), checked
	 * first: an ALLOWED validate of a number without a recent quarantine exit (nearly all of
	 * them) reads one word of it, not a slot of the 3 MiB table. Rewritten with q. */
	_Atomic uint64_t *qbits;
	size_t qbits_mask;   /* bits - 1 */
	churn_mark_t *churn; /* job only */
};

static uint32_t minute_of(int64_t ms) { return (uint32_t)(ms / 60000); }

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h ? h : 1;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;
	while (p < n)
		p <<= 1;
	return p;
}

int num_anomaly_init(num_svc_t *s)
{
	struct num_anomaly_s *a = talloc_zero(s, struct num_anomaly_s);
	if (!a)
		return -ENOMEM;
	a->n_tenants = (uint32_t)s->cfg.index_tenants + 1;
	a->wrong = talloc_zero_array(a, tcount_t, a->n_tenants);
	a->wrong_signal = talloc_zero_array(a, int64_t, a->n_tenants);
	a->callers = talloc_zero_array(a, caller_t, CALLERS);
	a->q_cap = pow2_at_least((size_t)s->cfg.anomaly_recent_quarantines * 2);
	a->q = talloc_zero_array(a, qexit_t, a->q_cap);
	a->qbits_mask = a->q_cap * 4 - 1;
	a->qbits = talloc_zero_array(a, _Atomic uint64_t, (a->qbits_mask + 1) / 64);
	if (!a->wrong || !a->wrong_signal || !a->callers || !a->q || !a->qbits) {
		talloc_free(a);
		return -ENOMEM;
	}
	s->anomaly = a;
	return 0;
}

/* ---- hot path ---------------------------------------------------------------------------- */

static void win_inc(_Atomic uint64_t *w, uint32_t minute)
{
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
	uint64_t nv;
	do {
		nv = (uint32_t)(v >> 32) == minute ? v + 1 : ((uint64_t)minute << 32) | 1;
	} while (!atomic_compare_exchange_weak_explicit(w, &v, nv, memory_order_relaxed,
	                                                memory_order_relaxed));
}

/* The index of key in the exits table, or -1; lock-free (seqlock read). */
static size_t qbit(const struct num_anomaly_s *a, uint64_t h)
{
	return (size_t)(h >> 32) & a->qbits_mask;
}

static long qexit_find(const struct num_anomaly_s *a, uint64_t key, int64_t *closed_ms)
{
	uint64_t h = mix64(key);
	size_t b = qbit(a, h);
	if (!(atomic_load_explicit(&a->qbits[b / 64], memory_order_relaxed) & (1ULL << (b % 64))))
		return -1; /* not among the recent exits (a rewrite in progress may miss one) */
	uint64_t s1 = atomic_load_explicit(&a->q_seq, memory_order_acquire);
	if (s1 & 1)
		return -1;
	size_t mask = a->q_cap - 1;
	long found = -1;
	for (size_t i = h & mask, n = 0; n < a->q_cap; i = (i + 1) & mask, n++) {
		uint64_t k = atomic_load_explicit(&a->q[i].key, memory_order_relaxed);
		if (k == 0)
			break;
		if (k == key) {
			*closed_ms = atomic_load_explicit(&a->q[i].closed_ms, memory_order_relaxed);
			found = (long)i;
			break;
		}
	}
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&a->q_seq, memory_order_relaxed) != s1)
		return -1;
	return found;
}

void num_anomaly_on_validate(num_svc_t *s, uint32_t caller_tidx, const num_validate_t *v,
                             int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	if (!a)
		return;
	if (v->reason == NUM_VR_WRONG_TENANT) {
		uint32_t t = caller_tidx < a->n_tenants ? caller_tidx : NUM_TENANT_NONE;
		uint32_t m = minute_of(now_ms);
		win_inc(&a->wrong[t].w[m & 1], m);
		atomic_store_explicit(&a->wrong[t].last_key, v->entry.key, memory_order_relaxed);
	} else if (v->reason == NUM_VR_ALLOWED) {
		int64_t closed = 0;
		long i = qexit_find(a, v->entry.key, &closed);
		if (i >= 0 && now_ms - closed < DAY_MS) {
			int zero = 0;
			atomic_compare_exchange_strong(&a->q[i].flag, &zero, 1);
		}
	}
}

void num_anomaly_on_lookup_unknown(num_svc_t *s, const char *caller, uint64_t key, int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	if (!a || !caller)
		return;
	uint64_t h = hash_str(caller);
	caller_t *c = NULL;
	for (size_t i = h & (CALLERS - 1), n = 0; n < CALLER_PROBE;
	     i = (i + 1) & (CALLERS - 1), n++) {
		uint64_t cur = atomic_load_explicit(&a->callers[i].hash, memory_order_acquire);
		if (cur == h) {
			c = &a->callers[i];
			break;
		}
		if (cur == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&a->callers[i].hash, &zero, h)) {
				c = &a->callers[i];
				snprintf(c->name, sizeof c->name, "%s", caller);
				atomic_store_explicit(&c->ready, 1, memory_order_release);
				break;
			}
			if (zero == h) {
				c = &a->callers[i];
				break;
			}
		}
	}
	if (!c) {
		atomic_fetch_add_explicit(&a->untracked_callers, 1, memory_order_relaxed);
		return;
	}
	uint32_t m = minute_of(now_ms);
	int p = (int)(m & 1);
	uint32_t old = atomic_load_explicit(&c->minute[p], memory_order_relaxed);
	if (old != m && atomic_compare_exchange_strong_explicit(
	                    &c->minute[p], &old, m, memory_order_acq_rel, memory_order_relaxed))
		for (int w = 0; w < SKETCH_WORDS; w++)
			atomic_store_explicit(&c->bits[p][w], 0, memory_order_relaxed);
	uint64_t b = mix64(key) & (SKETCH_BITS - 1);
	atomic_fetch_or_explicit(&c->bits[p][b / 64], 1ULL << (b % 64), memory_order_relaxed);
}

/* ---- publishing -------------------------------------------------------------------------- */

typedef struct {
	const char *tenant; /* may be NULL */
	const char *kind;
	json_t *evidence; /* stolen */
	int64_t now_ms;
	const char *aggregate;
} signal_t;

static int signal_fn(gh_conn_t *c, void *ud)
{
	signal_t *sg = ud;
	char at[25];
	gh_time_format(sg->now_ms, at);
	json_t *data = json_pack("{s:o, s:s, s:O, s:s}", "tenant_id",
	                         sg->tenant ? json_string(sg->tenant) : json_null(), "kind",
	                         sg->kind, "evidence", sg->evidence, "detected_at", at);
	if (!data)
		return -ENOMEM;
	gh_event_t ev = {.type = ANOMALY_SUBJECT,
	                 .source = SOURCE,
	                 .tenant_id = sg->tenant,
	                 .aggregate_id = sg->aggregate,
	                 .time_ms = sg->now_ms,
	                 .data = data};
	int rc = gh_outbox_add(c, &ev, NULL, NULL);
	json_decref(data);
	return rc;
}

static int publish(num_svc_t *s, const char *tenant, const char *kind, json_t *evidence,
                   int64_t now_ms)
{
	if (!evidence)
		return -ENOMEM;
	char agg[160];
	snprintf(agg, sizeof agg, "numbering/anomaly/%s", tenant ? tenant : "-");
	signal_t sg = {tenant, kind, evidence, now_ms, agg};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	int rc = gh_store_tx(s->store, signal_fn, &sg, &o);
	json_decref(evidence);
	if (rc == 0) {
		if (s->app)
			gh_outbox_relay_kick(s->app->relay);
		gh_log(GH_LOG_WARN, "numbering: anomaly", "kind", kind, "tenant",
		       tenant ? tenant : "-", NULL);
	}
	return rc;
}

static json_t *window_json(uint32_t minute, int64_t span_ms)
{
	char from[25], to[25];
	gh_time_format((int64_t)minute * 60000, from);
	gh_time_format((int64_t)minute * 60000 + span_ms, to);
	return json_pack("{s:s, s:s}", "from", from, "to", to);
}

static int flush_wrong_tenant(num_svc_t *s, int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	int64_t thr = s->cfg.anomaly_wrong_tenant_per_min;
	num_index_stats_t st;
	num_index_stats(s->ix, &st);
	uint32_t n = st.tenants + 1 < a->n_tenants ? st.tenants + 1 : a->n_tenants;
	uint32_t cur = minute_of(now_ms);
	int rc = 0;
	for (uint32_t t = 0; thr > 0 && t < n; t++)
		for (uint32_t m = cur - 1; m <= cur; m++) {
			uint64_t v = atomic_load(&a->wrong[t].w[m & 1]);
			uint32_t count = (uint32_t)v;
			if ((uint32_t)(v >> 32) != m || count < (uint64_t)thr ||
			    a->wrong_signal[t] >= (int64_t)m + 1)
				continue;
			char ident[GH_IDENT_BUFSZ] = "";
			gh_ident_kind_t kind;
			uint64_t key = atomic_load(&a->wrong[t].last_key);
			if (key)
				gh_ident_key_format(key, &kind, ident);
			const char *tenant = num_index_tenant_id(s->ix, t);
			json_t *ev = json_pack("{s:I, s:I, s:o, s:s, s:b}", "count",
			                       (json_int_t)count, "threshold", (json_int_t)thr,
			                       "window", window_json(m, 60000), "last_identifier",
			                       ident, "caller_tenant_known", t != NUM_TENANT_NONE);
			int prc = publish(s, tenant, "WRONG_TENANT", ev, now_ms);
			if (prc == 0)
				a->wrong_signal[t] = (int64_t)m + 1;
			else
				rc = prc;
		}
	return rc;
}

static int flush_lookups(num_svc_t *s, int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	int64_t thr = s->cfg.anomaly_lookup_unknown_per_min;
	uint32_t cur = minute_of(now_ms);
	int rc = 0;
	for (int i = 0; thr > 0 && i < CALLERS; i++) {
		caller_t *c = &a->callers[i];
		if (!atomic_load_explicit(&c->ready, memory_order_acquire))
			continue;
		for (uint32_t m = cur - 1; m <= cur; m++) {
			int p = (int)(m & 1);
			if (atomic_load(&c->minute[p]) != m || c->signalled >= (int64_t)m + 1)
				continue;
			int ones = 0;
			for (int w = 0; w < SKETCH_WORDS; w++)
				ones += __builtin_popcountll(
				    atomic_load_explicit(&c->bits[p][w], memory_order_relaxed));
			int zeros = SKETCH_BITS - ones;
			/* linear counting: n = -m ln(V), V the share of zero bits */
			double est = zeros > 0 ? -(double)SKETCH_BITS *
			                             log((double)zeros / (double)SKETCH_BITS)
			                       : (double)SKETCH_BITS * log((double)SKETCH_BITS);
			if (est < (double)thr)
				continue;
			json_t *ev =
			    json_pack("{s:s, s:I, s:I, s:o, s:s}", "caller", c->name,
			              "distinct_unknown_estimate", (json_int_t)llround(est),
			              "threshold", (json_int_t)thr, "window", window_json(m, 60000),
			              "estimator", "linear counting, 4096 bits");
			int prc = publish(s, NULL, "LOOKUP_ENUMERATION", ev, now_ms);
			if (prc == 0)
				c->signalled = (int64_t)m + 1;
			else
				rc = prc;
		}
	}
	return rc;
}

/* Publish the first sends seen, then reload the exits of the last 24 h, keeping each one's
 * flag (a published exit is never signalled again). */
static int flush_first_sends(num_svc_t *s, int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	int rc = 0;
	for (size_t i = 0; i < a->q_cap; i++) {
		if (atomic_load(&a->q[i].flag) != 1)
			continue;
		uint64_t key = atomic_load(&a->q[i].key);
		int64_t closed = atomic_load(&a->q[i].closed_ms);
		num_index_entry_t e;
		const char *tenant = num_index_get(s->ix, key, &e) == 0
		                         ? num_index_tenant_id(s->ix, e.tenant)
		                         : NULL;
		char ident[GH_IDENT_BUFSZ] = "", left[25];
		gh_ident_kind_t kind;
		gh_ident_key_format(key, &kind, ident);
		gh_time_format(closed, left);
		json_t *ev =
		    json_pack("{s:s, s:s, s:I}", "identifier", ident, "quarantine_left_at", left,
		              "seconds_since", (json_int_t)((now_ms - closed) / 1000));
		int prc = publish(s, tenant, "FIRST_SEND_AFTER_QUARANTINE", ev, now_ms);
		if (prc == 0)
			atomic_store(&a->q[i].flag, 2);
		else
			rc = prc;
	}

	/* the database's exits of the last 24 h (a 0-day quarantine, closed when opened, is
	 * no exit: the number never sat in QUARANTINED) */
	void *tmp = talloc_new(NULL);
	size_t cap = (size_t)s->cfg.anomaly_recent_quarantines, n = 0;
	qexit_copy_t *rows = talloc_array(tmp, qexit_copy_t, cap);
	gh_conn_t *c = NULL;
	gh_rows_t *rs = NULL;
	int qrc = rows ? gh_store_acquire(s->store, 5000, &c) : -ENOMEM;
	if (qrc == 0)
		qrc = gh_conn_query(c,
		                    "SELECT number_key, MAX(closed_ms) FROM num_quarantines WHERE "
		                    "closed_ms >= $1 AND closed_ms > quarantined_ms GROUP BY "
		                    "number_key",
		                    (gh_val_t[]){GH_I64(now_ms - DAY_MS)}, 1, &rs);
	while (qrc == 0 && (qrc = gh_rows_next(rs)) == 1) {
		if (n == cap)
			continue; /* more exits than tracked: the oldest beyond capacity go unseen
			           */
		rows[n].key = (uint64_t)gh_rows_i64(rs, 0);
		rows[n].closed_ms = gh_rows_i64(rs, 1);
		long i = -1;
		int64_t old_closed = 0;
		/* only this thread writes q, so a plain probe is consistent here */
		for (size_t j = mix64(rows[n].key) & (a->q_cap - 1), k = 0; k < a->q_cap;
		     j = (j + 1) & (a->q_cap - 1), k++) {
			uint64_t kk = atomic_load(&a->q[j].key);
			if (!kk)
				break;
			if (kk == rows[n].key) {
				i = (long)j;
				old_closed = atomic_load(&a->q[j].closed_ms);
				break;
			}
		}
		rows[n].flag =
		    i >= 0 && old_closed == rows[n].closed_ms ? atomic_load(&a->q[i].flag) : 0;
		n++;
	}
	gh_rows_close(rs);
	if (c)
		gh_store_release(c);
	if (qrc < 0) {
		talloc_free(tmp);
		return qrc;
	}
	atomic_fetch_add_explicit(&a->q_seq, 1, memory_order_acq_rel); /* odd: readers skip */
	atomic_thread_fence(memory_order_release);
	for (size_t j = 0; j < a->q_cap; j++) {
		atomic_store_explicit(&a->q[j].key, 0, memory_order_relaxed);
		atomic_store_explicit(&a->q[j].flag, 0, memory_order_relaxed);
	}
	for (size_t w = 0; w <= a->qbits_mask / 64; w++)
		atomic_store_explicit(&a->qbits[w], 0, memory_order_relaxed);
	for (size_t r = 0; r < n; r++) {
		size_t b = qbit(a, mix64(rows[r].key));
		atomic_fetch_or_explicit(&a->qbits[b / 64], 1ULL << (b % 64), memory_order_relaxed);
	}
	for (size_t r = 0; r < n; r++)
		for (size_t j = mix64(rows[r].key) & (a->q_cap - 1);; j = (j + 1) & (a->q_cap - 1))
			if (!atomic_load_explicit(&a->q[j].key, memory_order_relaxed)) {
				atomic_store_explicit(&a->q[j].closed_ms, rows[r].closed_ms,
				                      memory_order_relaxed);
				atomic_store_explicit(&a->q[j].flag, rows[r].flag,
				                      memory_order_relaxed);
				atomic_store_explicit(&a->q[j].key, rows[r].key,
				                      memory_order_relaxed);
				break;
			}
	atomic_fetch_add_explicit(&a->q_seq, 1, memory_order_release); /* even again */
	talloc_free(tmp);
	return rc;
}

int num_anomaly_flush(num_svc_t *s, int64_t now_ms)
{
	if (!s->anomaly || !s->store)
		return 0;
	int r1 = flush_wrong_tenant(s, now_ms);
	int r2 = flush_lookups(s, now_ms);
	int r3 = flush_first_sends(s, now_ms);
	uint64_t lost = atomic_exchange(&s->anomaly->untracked_callers, 0);
	if (lost) {
		char buf[24];
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)lost);
		gh_log(GH_LOG_WARN,
		       "numbering: lookup callers beyond the anomaly table, not tracked", "lookups",
		       buf, NULL);
	}
	return r1 < 0 || r2 < 0 || r3 < 0 ? -EIO : 0;
}

int num_anomaly_churn(num_svc_t *s, int64_t now_ms)
{
	struct num_anomaly_s *a = s->anomaly;
	int64_t thr = s->cfg.anomaly_churn_per_hour;
	if (!a || !s->store || thr <= 0)
		return 0;
	int64_t from = now_ms - HOUR_MS;
	gh_conn_t *c;
	gh_rows_t *rs = NULL;
	int rc = gh_store_acquire(s->store, 5000, &c);
	if (rc < 0)
		return -EIO;
	/* reserves, releases of reservations, releases of leases (TENANT_RELEASE quarantines) */
	rc = gh_conn_query(
	    c,
	    "SELECT tenant_id, SUM(r), SUM(l) FROM ("
	    " SELECT tenant_id, COUNT(*) AS r, 0 AS l FROM num_reservations WHERE created_ms >= $1"
	    " GROUP BY tenant_id"
	    " UNION ALL SELECT tenant_id, 0, COUNT(*) FROM num_reservations WHERE ended_ms >= $1"
	    " AND end_action = 'release' GROUP BY tenant_id"
	    " UNION ALL SELECT previous_tenant_id, 0, COUNT(*) FROM num_quarantines WHERE"
	    " quarantined_ms >= $1 AND reason = 'TENANT_RELEASE' AND previous_tenant_id IS NOT NULL"
	    " GROUP BY previous_tenant_id"
	    ") x GROUP BY tenant_id HAVING SUM(r) + SUM(l) >= $2 ORDER BY tenant_id",
	    (gh_val_t[]){GH_I64(from), GH_I64(thr)}, 2, &rs);
	typedef struct {
		char tenant[NUM_ID_MAX];
		int64_t reserves, releases;
	} hit_t;
	hit_t hits[64];
	size_t n = 0;
	while (rc == 0 && (rc = gh_rows_next(rs)) == 1)
		if (n < sizeof hits / sizeof hits[0]) {
			snprintf(hits[n].tenant, sizeof hits[n].tenant, "%s", gh_rows_text(rs, 0));
			hits[n].reserves = gh_rows_i64(rs, 1);
			hits[n].releases = gh_rows_i64(rs, 2);
			n++;
		}
	gh_rows_close(rs);
	gh_store_release(c);
	if (rc < 0)
		return -EIO;
	int out = 0;
	for (size_t i = 0; i < n; i++) {
		churn_mark_t *m;
		for (m = a->churn; m; m = m->next)
			if (strcmp(m->tenant, hits[i].tenant) == 0)
				break;
		if (m && now_ms - m->at_ms < HOUR_MS)
			continue; /* signalled within the hour */
		char f[25], t[25];
		gh_time_format(from, f);
		gh_time_format(now_ms, t);
		json_t *ev = json_pack("{s:I, s:I, s:I, s:I, s:{s:s, s:s}}", "reserves",
		                       (json_int_t)hits[i].reserves, "releases",
		                       (json_int_t)hits[i].releases, "total",
		                       (json_int_t)(hits[i].reserves + hits[i].releases),
		                       "threshold", (json_int_t)thr, "window", "from", f, "to", t);
		if (publish(s, hits[i].tenant, "RESERVE_RELEASE_CHURN", ev, now_ms) < 0) {
			out = -EIO;
			continue;
		}
		if (!m && (m = talloc_zero(a, churn_mark_t)) != NULL) {
			memcpy(m->tenant, hits[i].tenant, sizeof m->tenant);
			m->next = a->churn;
			a->churn = m;
		}
		if (m)
			m->at_ms = now_ms;
	}
	return out;
}
