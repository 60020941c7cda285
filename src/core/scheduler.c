/* scheduler: timer heap, cron parser and next-fire computation, the scheduler thread.
 * See scheduler.h. */
#include "scheduler.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <talloc.h>
#include <time.h>

#include "log.h"

/* ---- cron ---- */

typedef struct {
	const char *what;
	int lo, hi;
	const char *const *names; /* names[i] stands for lo + i */
} cron_field_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};
static const cron_field_t cron_fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, dow_names},
};

static void why_set(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t n, const char *fmt, ...)
{
	if (!why || !n)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
}

/* A number or a name of the field; advances *p. */
static int cron_value(const cron_field_t *f, const char **p, int *out)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		int v = 0;
		while (isdigit((unsigned char)*s) && v < 1000)
			v = v * 10 + (*s++ - '0');
		*out = v;
		*p = s;
		return v >= f->lo && v <= f->hi ? 0 : -ERANGE;
	}
	for (int i = 0; f->names && f->names[i]; i++) {
		if (strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
			*out = f->lo + i;
			*p = s + 3;
			return 0;
		}
	}
	return -EINVAL;
}

/* One field: comma-separated items, each '*', v, a-b, optionally "/step". */
static int cron_parse_field(const cron_field_t *f, const char *s, uint64_t *bits, bool *star,
                            char *why, size_t wn)
{
	*bits = 0;
	*star = *s == '*';
	for (;;) {
		int lo, hi, step = 1, rc;
		bool single = false;
		if (*s == '*') {
			lo = f->lo, hi = f->hi;
			s++;
		} else {
			if ((rc = cron_value(f, &s, &lo)))
				goto bad;
			hi = lo;
			single = *s != '-';
			if (*s == '-') {
				s++;
				if ((rc = cron_value(f, &s, &hi)))
					goto bad;
				if (hi < lo) {
					why_set(why, wn, "%s: range %d-%d runs backwards", f->what,
					        lo, hi);
					return -EINVAL;
				}
			}
		}
		if (*s == '/') {
			const char *p = ++s;
			step = 0;
			while (isdigit((unsigned char)*s) && step <= 1000)
				step = step * 10 + (*s++ - '0');
			if (s == p || step < 1 || step > f->hi) {
				why_set(why, wn, "%s: bad step", f->what);
				return -EINVAL;
			}
			if (single) /* "a/n": from a to the end of the range */
				hi = f->hi;
		}
		for (int v = lo; v <= hi; v += step)
			*bits |= 1ull << v;
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == '\0')
			return 0;
		why_set(why, wn, "%s: unexpected '%c'", f->what, *s);
		return -EINVAL;
	bad:
		if (rc == -ERANGE)
			why_set(why, wn, "%s: value out of range %d..%d", f->what, f->lo, f->hi);
		else
			why_set(why, wn, "%s: expected a number%s, '*', a range or a list", f->what,
			        f->names ? " or name" : "");
		return -EINVAL;
	}
}

static int parse_every(const char *s, int64_t *out, char *why, size_t wn)
{
	int64_t total = 0;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		goto bad;
	while (*s) {
		if (!isdigit((unsigned char)*s))
			goto bad;
		int64_t v = 0;
		while (isdigit((unsigned char)*s)) {
			v = v * 10 + (*s++ - '0');
			if (v > 10LL * 365 * 86400 * 1000)
				goto bad;
		}
		int64_t unit;
		if (strncmp(s, "ms", 2) == 0)
			unit = 1, s += 2;
		else if (*s == 's')
			unit = 1000, s++;
		else if (*s == 'm')
			unit = 60000, s++;
		else if (*s == 'h')
			unit = 3600000, s++;
		else if (*s == 'd')
			unit = 86400000, s++;
		else
			goto bad;
		total += v * unit;
		if (total > 10LL * 365 * 86400 * 1000)
			goto bad;
	}
	if (total <= 0)
		goto bad;
	*out = total;
	return 0;
bad:
	why_set(why, wn, "@every: expected a duration such as 500ms, 30s, 5m, 1h30m, 1d");
	return -EINVAL;
}

int gh_cron_parse(const char *expr, gh_cron_t *out, char *why, size_t why_len)
{
	static const struct {
		const char *name, *expr;
	} macros[] = {
	    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
	    {"@hourly", "0 * * * *"},
	};
	gh_cron_t c = {0};
	if (!expr) {
		why_set(why, why_len, "empty schedule");
		return -EINVAL;
	}
	while (isspace((unsigned char)*expr))
		expr++;
	if (strncmp(expr, "@every", 6) == 0 && (isspace((unsigned char)expr[6]) || !expr[6])) {
		int rc = parse_every(expr + 6, &c.every_ms, why, why_len);
		if (rc == 0)
			*out = c;
		return rc;
	}
	if (*expr == '@') {
		for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
			if (strcmp(expr, macros[i].name) == 0)
				return gh_cron_parse(macros[i].expr, out, why, why_len);
		why_set(why, why_len, "unknown macro '%s'", expr);
		return -EINVAL;
	}
	char buf[256], *fields[6], *save = NULL;
	int n = 0;
	snprintf(buf, sizeof buf, "%s", expr);
	for (char *t = strtok_r(buf, " \t", &save); t && n < 6; t = strtok_r(NULL, " \t", &save))
		fields[n++] = t;
	if (n != 5) {
		why_set(why, why_len,
		        "expected 5 fields (minute hour day-of-month month day-of-week)");
		return -EINVAL;
	}
	uint64_t bits[5];
	bool star[5];
	for (int i = 0; i < 5; i++)
		if (cron_parse_field(&cron_fields[i], fields[i], &bits[i], &star[i], why, why_len))
			return -EINVAL;
	c.minute = bits[0];
	c.hour = (uint32_t)bits[1];
	c.dom = (uint32_t)bits[2];
	c.month = (uint16_t)bits[3];
	c.dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
	c.dom_star = star[2];
	c.dow_star = star[4];
	/* 2000-01-01: any expression that can fire does so within 10 years of any date */
	if (gh_cron_next(&c, 946684800000LL) < 0) {
		why_set(why, why_len, "never fires");
		return -EINVAL;
	}
	*out = c;
	return 0;
}

static bool cron_day_matches(const gh_cron_t *c, const struct tm *tm)
{
	bool dom = c->dom >> tm->tm_mday & 1, dow = c->dow >> tm->tm_wday & 1;
	return c->dom_star || c->dow_star ? dom && dow : dom || dow;
}

int64_t gh_cron_next(const gh_cron_t *c, int64_t after_ms)
{
	if (c->every_ms > 0)
		return after_ms + c->every_ms;
	int64_t min = after_ms >= 0 ? after_ms / 60000 : -((-after_ms + 59999) / 60000);
	time_t t = (time_t)((min + 1) * 60);
	struct tm tm;
	gmtime_r(&t, &tm);
	int limit_year = tm.tm_year + 10;
	/* Move to the next candidate of the coarsest field that does not match; timegm()
	 * normalises overflow (month 12 -> January of the next year, day 32 -> next month). */
	while (tm.tm_year <= limit_year) {
		if (!(c->month >> (tm.tm_mon + 1) & 1)) {
			tm.tm_mon++, tm.tm_mday = 1, tm.tm_hour = 0, tm.tm_min = 0;
		} else if (!cron_day_matches(c, &tm)) {
			tm.tm_mday++, tm.tm_hour = 0, tm.tm_min = 0;
		} else if (!(c->hour >> tm.tm_hour & 1)) {
			tm.tm_hour++, tm.tm_min = 0;
		} else if (!(c->minute >> tm.tm_min & 1)) {
			tm.tm_min++;
		} else {
			return (int64_t)timegm(&tm) * 1000;
		}
		tm.tm_sec = 0;
		t = timegm(&tm);
		gmtime_r(&t, &tm);
	}
	return -1;
}

/* ---- scheduler ---- */

#define NO_SLOT UINT32_MAX

typedef struct {
	int64_t at;
	uint64_t seq;
	uint32_t slot;
} heap_ent_t;

typedef struct {
	gh_sched_timer_fn fn;
	void *ud;
	uint32_t gen;
	uint32_t heap_idx; /* NO_SLOT when not in the heap */
	uint32_t next_free;
	int32_t job; /* index into jobs, -1 for a timer */
} slot_t;

typedef struct {
	char *name;
	gh_cron_t cron;
	gh_sched_job_fn fn;
	void *ud;
	unsigned flags;
	int64_t lease_ttl_ms;
	uint32_t slot;
	gh_sched_job_stats_t st;
} job_t;

struct gh_sched_s {
	gh_clock_t *clock;
	pthread_mutex_t mu;
	pthread_cond_t cond; /* work added, stop requested, thread exited */
	heap_ent_t *heap;
	uint32_t n, cap;
	slot_t *slots;
	uint32_t n_slots, free_head;
	uint64_t seq;
	job_t **jobs;
	size_t n_jobs;
	gh_sched_lease_fn lease;
	void *lease_ud;
	pthread_t thread;
	bool started, stopping, exited;
	gh_sched_stats_t st;
};

static bool ent_less(const heap_ent_t *a, const heap_ent_t *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_put(gh_sched_t *s, uint32_t i, heap_ent_t e)
{
	s->heap[i] = e;
	s->slots[e.slot].heap_idx = i;
}

static void heap_up(gh_sched_t *s, uint32_t i)
{
	heap_ent_t e = s->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!ent_less(&e, &s->heap[p]))
			break;
		heap_put(s, i, s->heap[p]);
		i = p;
	}
	heap_put(s, i, e);
}

static void heap_down(gh_sched_t *s, uint32_t i)
{
	heap_ent_t e = s->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= s->n)
			break;
		if (c + 1 < s->n && ent_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ent_less(&s->heap[c], &e))
			break;
		heap_put(s, i, s->heap[c]);
		i = c;
	}
	heap_put(s, i, e);
}

static void heap_remove(gh_sched_t *s, uint32_t i)
{
	s->slots[s->heap[i].slot].heap_idx = NO_SLOT;
	if (--s->n == i)
		return;
	heap_put(s, i, s->heap[s->n]);
	if (i > 0 && ent_less(&s->heap[i], &s->heap[(i - 1) / 2]))
		heap_up(s, i);
	else
		heap_down(s, i);
}

/* Push slot at `at`; returns true when it became the earliest deadline. */
static bool heap_push(gh_sched_t *s, uint32_t slot, int64_t at)
{
	s->heap[s->n] = (heap_ent_t){at, s->seq++, slot};
	s->slots[slot].heap_idx = s->n;
	heap_up(s, s->n++);
	return s->slots[slot].heap_idx == 0;
}

/* A free slot with room for it in the heap; grows both by doubling. */
static int slot_alloc(gh_sched_t *s, uint32_t *out)
{
	if (s->free_head == NO_SLOT) {
		uint32_t cap = s->n_slots ? s->n_slots * 2 : 64;
		if (cap >= NO_SLOT / 2)
			return -ENOMEM;
		slot_t *sl = talloc_realloc(s, s->slots, slot_t, cap);
		if (!sl)
			return -ENOMEM;
		s->slots = sl;
		for (uint32_t i = s->n_slots; i < cap; i++)
			sl[i] = (slot_t){.gen = 1,
			                 .heap_idx = NO_SLOT,
			                 .next_free = i + 1 < cap ? i + 1 : NO_SLOT,
			                 .job = -1};
		s->free_head = s->n_slots;
		s->n_slots = cap;
	}
	if (s->cap < s->n_slots) {
		heap_ent_t *h = talloc_realloc(s, s->heap, heap_ent_t, s->n_slots);
		if (!h)
			return -ENOMEM;
		s->heap = h;
		s->cap = s->n_slots;
	}
	*out = s->free_head;
	s->free_head = s->slots[*out].next_free;
	return 0;
}

static void slot_free(gh_sched_t *s, uint32_t i)
{
	slot_t *sl = &s->slots[i];
	sl->gen++;
	sl->fn = NULL;
	sl->ud = NULL;
	sl->job = -1;
	sl->heap_idx = NO_SLOT;
	sl->next_free = s->free_head;
	s->free_head = i;
}

static int sched_destructor(gh_sched_t *s)
{
	gh_sched_stop(s, -1);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	return 0;
}

gh_sched_t *gh_sched_new(void *ctx, gh_clock_t *clock)
{
	gh_sched_t *s = talloc_zero(ctx, gh_sched_t);
	if (!s)
		return NULL;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&s->mu, NULL) || pthread_cond_init(&s->cond, &ca)) {
		pthread_condattr_destroy(&ca);
		talloc_free(s);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	s->clock = clock;
	s->free_head = NO_SLOT;
	talloc_set_destructor(s, sched_destructor);
	return s;
}

void gh_sched_set_lease(gh_sched_t *s, gh_sched_lease_fn try_lease, void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->lease = try_lease;
	s->lease_ud = ud;
	pthread_mutex_unlock(&s->mu);
}

int gh_sched_timer_at(gh_sched_t *s, int64_t at_ms, gh_sched_timer_fn fn, void *ud,
                      gh_sched_timer_t *out)
{
	uint32_t i;
	if (!fn)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	int rc = slot_alloc(s, &i);
	if (rc == 0) {
		s->slots[i].fn = fn;
		s->slots[i].ud = ud;
		s->slots[i].job = -1;
		if (heap_push(s, i, at_ms))
			pthread_cond_broadcast(&s->cond);
		s->st.timers_pending++;
		if (out)
			*out = (uint64_t)s->slots[i].gen << 32 | (i + 1);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gh_sched_timer_cancel(gh_sched_t *s, gh_sched_timer_t t)
{
	uint32_t i = (uint32_t)(t & 0xffffffffu) - 1, gen = (uint32_t)(t >> 32);
	int rc = -ENOENT;
	pthread_mutex_lock(&s->mu);
	if (t && i < s->n_slots && s->slots[i].gen == gen && s->slots[i].job < 0 &&
	    s->slots[i].heap_idx != NO_SLOT) {
		heap_remove(s, s->slots[i].heap_idx);
		slot_free(s, i);
		s->st.timers_pending--;
		s->st.timers_cancelled++;
		rc = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gh_sched_job_add(gh_sched_t *s, const gh_sched_job_def_t *def)
{
	char why[160];
	gh_cron_t cron;
	if (!def || !def->name || !*def->name || !def->fn)
		return -EINVAL;
	if (gh_cron_parse(def->schedule, &cron, why, sizeof why)) {
		gh_log(GH_LOG_ERROR, "job schedule refused", "job", def->name, "schedule",
		       def->schedule, "reason", why, NULL);
		return -EINVAL;
	}
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t k = 0; k < s->n_jobs; k++) {
		if (strcmp(s->jobs[k]->name, def->name) == 0) {
			rc = -EEXIST;
			goto out;
		}
	}
	job_t **jobs = talloc_realloc(s, s->jobs, job_t *, s->n_jobs + 1);
	job_t *j = talloc_zero(s, job_t);
	uint32_t i;
	if (jobs)
		s->jobs = jobs;
	if (!jobs || !j || !(j->name = talloc_strdup(j, def->name)) || slot_alloc(s, &i)) {
		talloc_free(j);
		rc = -ENOMEM;
		goto out;
	}
	j->cron = cron;
	j->fn = def->fn;
	j->ud = def->ud;
	j->flags = def->flags;
	j->lease_ttl_ms = def->lease_ttl_ms;
	j->slot = i;
	j->st.next_run_ms = gh_cron_next(&cron, gh_clock_now_ms(s->clock));
	s->slots[i].job = (int32_t)s->n_jobs;
	s->jobs[s->n_jobs++] = j;
	if (heap_push(s, i, j->st.next_run_ms))
		pthread_cond_broadcast(&s->cond);
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gh_sched_job_stats(gh_sched_t *s, const char *name, gh_sched_job_stats_t *out)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&s->mu);
	for (size_t k = 0; k < s->n_jobs; k++) {
		if (strcmp(s->jobs[k]->name, name) == 0) {
			*out = s->jobs[k]->st;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void gh_sched_stats(gh_sched_t *s, gh_sched_stats_t *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}

int64_t gh_sched_next_deadline(gh_sched_t *s)
{
	pthread_mutex_lock(&s->mu);
	int64_t at = s->n ? s->heap[0].at : INT64_MAX;
	pthread_mutex_unlock(&s->mu);
	return at;
}

bool gh_sched_stopping(gh_sched_t *s)
{
	pthread_mutex_lock(&s->mu);
	bool v = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return v;
}

/* Called unlocked. Returns whether fn ran, the lease counters and fn's rc through j->st
 * (updated under the lock by the caller). */
static void job_run(gh_sched_t *s, job_t *j, int64_t scheduled, gh_sched_lease_fn lease,
                    void *lease_ud, int *ran, int *lease_rc, int *rc)
{
	int64_t now = gh_clock_now_ms(s->clock);
	*ran = 0;
	*lease_rc = 0;
	*rc = 0;
	if ((j->flags & GH_SCHED_LEASED) && lease) {
		int64_t ttl = j->lease_ttl_ms;
		if (ttl <= 0) {
			int64_t next = gh_cron_next(&j->cron, scheduled);
			ttl = next > now + 1000 ? next - now : 1000;
		}
		*lease_rc = lease(lease_ud, j->name, now, ttl);
		if (*lease_rc == -EBUSY) {
			gh_log(GH_LOG_DEBUG, "job left to the lease holder", "job", j->name, NULL);
			return;
		}
		if (*lease_rc < 0) {
			gh_log(GH_LOG_WARN, "job skipped: lease unavailable", "job", j->name,
			       "error", strerrorname_np(-*lease_rc), NULL);
			return;
		}
	}
	*ran = 1;
	*rc = j->fn(j->ud, now);
	if (*rc < 0)
		gh_log(GH_LOG_WARN, "job failed", "job", j->name, "error", strerrorname_np(-*rc),
		       NULL);
}

/* With s->mu held: pop and run the earliest entry if due. Returns 1 when something ran. */
static int run_one_locked(gh_sched_t *s)
{
	int64_t now = gh_clock_now_ms(s->clock);
	if (s->n == 0 || s->heap[0].at > now)
		return 0;
	heap_ent_t e = s->heap[0];
	slot_t *sl = &s->slots[e.slot];
	if (sl->job < 0) {
		gh_sched_timer_fn fn = sl->fn;
		void *ud = sl->ud;
		heap_remove(s, 0);
		slot_free(s, e.slot);
		s->st.timers_pending--;
		s->st.timers_fired++;
		pthread_mutex_unlock(&s->mu);
		fn(ud);
		pthread_mutex_lock(&s->mu);
		return 1;
	}
	job_t *j = s->jobs[sl->job];
	gh_sched_lease_fn lease = s->lease;
	void *lease_ud = s->lease_ud;
	int ran, lease_rc, rc;
	heap_remove(s, 0);
	pthread_mutex_unlock(&s->mu);
	job_run(s, j, e.at, lease, lease_ud, &ran, &lease_rc, &rc);
	int64_t after = gh_clock_now_ms(s->clock);
	/* Skip occurrences that passed while the job ran (or the process was away): the job runs
	 * once now, not once per missed occurrence. */
	int64_t next = gh_cron_next(&j->cron, e.at);
	uint64_t missed = 0;
	if (next >= 0 && next <= after) {
		if (j->cron.every_ms > 0) {
			missed = (uint64_t)((after - next) / j->cron.every_ms) + 1;
			next += (int64_t)missed * j->cron.every_ms;
		} else {
			while (next >= 0 && next <= after && missed < 100000)
				next = gh_cron_next(&j->cron, next), missed++;
			if (next >= 0 && next <= after)
				next = gh_cron_next(&j->cron, after);
		}
		char at[25], nx[25];
		gh_time_format(e.at, at);
		gh_time_format(next, nx);
		char n[24];
		snprintf(n, sizeof n, "%llu", (unsigned long long)missed);
		gh_log(GH_LOG_WARN, "job overran: skipped missed runs", "job", j->name, "scheduled",
		       at, "skipped", n, "next", nx, NULL);
	}
	pthread_mutex_lock(&s->mu);
	if (ran) {
		j->st.runs++;
		j->st.last_rc = rc;
		j->st.last_run_ms = now;
		s->st.job_runs++;
		if (rc < 0) {
			j->st.failures++;
			s->st.job_failures++;
		}
	} else if (lease_rc == -EBUSY) {
		j->st.lease_busy++;
	} else {
		j->st.lease_errors++;
	}
	j->st.missed += missed;
	j->st.next_run_ms = next;
	if (next >= 0)
		heap_push(s, j->slot, next);
	return 1;
}

int gh_sched_run_due(gh_sched_t *s)
{
	int n = 0;
	pthread_mutex_lock(&s->mu);
	while (run_one_locked(s))
		n++;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static void mono_deadline(int64_t in_ms, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	int64_t ns = ts->tv_nsec + (in_ms % 1000) * 1000000;
	ts->tv_sec += (time_t)(in_ms / 1000 + ns / 1000000000);
	ts->tv_nsec = (long)(ns % 1000000000);
}

static void *sched_thread(void *arg)
{
	gh_sched_t *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!s->stopping) {
		if (run_one_locked(s))
			continue;
		/* Sleep until the earliest deadline, at most a minute so that a step of the wall
		 * clock is noticed; an earlier timer or a stop broadcasts the condition. */
		int64_t wait = 60000;
		if (s->n) {
			int64_t d = s->heap[0].at - gh_clock_now_ms(s->clock);
			wait = d < wait ? d : wait;
		}
		if (wait <= 0)
			continue;
		struct timespec ts;
		mono_deadline(wait, &ts);
		pthread_cond_timedwait(&s->cond, &s->mu, &ts);
	}
	s->exited = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int gh_sched_start(gh_sched_t *s)
{
	if (gh_clock_is_test(s->clock))
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	int rc = s->started ? -EALREADY : 0;
	if (rc == 0) {
		s->stopping = false;
		s->exited = false;
		rc = -pthread_create(&s->thread, NULL, sched_thread, s);
		s->started = rc == 0;
		if (s->started)
			pthread_setname_np(s->thread, "gh-sched");
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int gh_sched_stop(gh_sched_t *s, int64_t grace_ms)
{
	struct timespec ts;
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	if (!s->started) {
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	if (pthread_equal(pthread_self(), s->thread)) {
		/* from a callback: the thread exits when the callback returns */
		pthread_mutex_unlock(&s->mu);
		return -EDEADLK;
	}
	if (grace_ms >= 0)
		mono_deadline(grace_ms, &ts);
	while (!s->exited && rc == 0)
		rc = grace_ms >= 0 ? pthread_cond_timedwait(&s->cond, &s->mu, &ts)
		                   : pthread_cond_wait(&s->cond, &s->mu);
	bool exited = s->exited;
	if (exited)
		s->started = false;
	pthread_mutex_unlock(&s->mu);
	if (!exited) {
		gh_log(GH_LOG_WARN, "scheduler stop: a job is still running after the grace period",
		       NULL);
		return -ETIMEDOUT;
	}
	pthread_join(s->thread, NULL);
	return 0;
}
