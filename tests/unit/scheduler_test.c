/* scheduler: timer order and cancel on a test clock, the heap under random load, cron parsing
 * and next-fire computation, @every, missed runs, the lease hook, failures, and on the real
 * clock: deadline precision and stop with a grace period. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "scheduler.h"
#include "testutil.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z, a Thursday */

static int64_t ts(const char *s)
{
	int64_t ms;
	if (gh_time_parse(s, &ms))
		fail_msg("bad time %s", s);
	return ms;
}

/* ---- timers ---- */

typedef struct {
	int order[64];
	int n;
} fired_t;

typedef struct {
	fired_t *f;
	int id;
} tctx_t;

static void record(void *ud)
{
	tctx_t *t = ud;
	t->f->order[t->f->n++] = t->id;
}

static void test_timers_fire_in_deadline_order(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	fired_t f = {0};
	/* id: added in this order; offsets shuffled, with ties (3 and 4 at +50, added 3 first) */
	static const int64_t off[] = {300, 100, 50, 50, 50, 200, 0, -10};
	tctx_t t[8];
	for (int i = 0; i < 8; i++) {
		t[i] = (tctx_t){&f, i};
		assert_int_equal(gh_sched_timer_at(s, T0 + off[i], record, &t[i], NULL), 0);
	}
	assert_int_equal(gh_sched_next_deadline(s), T0 - 10);
	assert_int_equal(gh_sched_run_due(s), 2); /* -10 and 0 */
	gh_clock_test_advance(c, 49);
	assert_int_equal(gh_sched_run_due(s), 0);
	gh_clock_test_advance(c, 1);
	assert_int_equal(gh_sched_run_due(s), 3);
	gh_clock_test_set(c, T0 + 1000);
	assert_int_equal(gh_sched_run_due(s), 3);
	static const int want[] = {7, 6, 2, 3, 4, 1, 5, 0};
	assert_int_equal(f.n, 8);
	assert_memory_equal(f.order, want, sizeof want);
	assert_int_equal(gh_sched_next_deadline(s), INT64_MAX);
	gh_sched_stats_t st;
	gh_sched_stats(s, &st);
	assert_int_equal(st.timers_fired, 8);
	assert_int_equal(st.timers_pending, 0);
	talloc_free(ctx);
}

static void test_cancelled_timer_never_fires(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	fired_t f = {0};
	tctx_t t[3] = {{&f, 0}, {&f, 1}, {&f, 2}};
	gh_sched_timer_t h[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(gh_sched_timer_at(s, T0 + 10 * (i + 1), record, &t[i], &h[i]), 0);
	assert_int_equal(gh_sched_timer_cancel(s, h[1]), 0);
	assert_int_equal(gh_sched_timer_cancel(s, h[1]), -ENOENT);
	assert_int_equal(gh_sched_timer_cancel(s, 0), -ENOENT);
	assert_int_equal(gh_sched_timer_cancel(s, (gh_sched_timer_t)1 << 40 | 9999), -ENOENT);
	gh_clock_test_advance(c, 100);
	assert_int_equal(gh_sched_run_due(s), 2);
	assert_int_equal(f.n, 2);
	assert_int_equal(f.order[0], 0);
	assert_int_equal(f.order[1], 2);
	/* fired: cancel is too late */
	assert_int_equal(gh_sched_timer_cancel(s, h[0]), -ENOENT);
	/* a reused slot does not answer to the old handle */
	gh_sched_timer_t h2;
	assert_int_equal(gh_sched_timer_at(s, T0 + 500, record, &t[0], &h2), 0);
	assert_int_equal(gh_sched_timer_cancel(s, h[0]), -ENOENT);
	assert_int_equal(gh_sched_timer_cancel(s, h[2]), -ENOENT);
	assert_int_equal(gh_sched_timer_cancel(s, h2), 0);
	gh_sched_stats_t st;
	gh_sched_stats(s, &st);
	assert_int_equal(st.timers_cancelled, 2);
	assert_int_equal(st.timers_pending, 0);
	assert_int_equal(gh_sched_timer_at(s, T0, NULL, NULL, NULL), -EINVAL);
	talloc_free(ctx);
}

typedef struct {
	gh_sched_t *s;
	gh_clock_t *c;
	int runs;
} chain_t;

static void chain_fire(void *ud)
{
	chain_t *ch = ud;
	if (++ch->runs < 3) /* re-arm at the current time: due within the same run */
		gh_sched_timer_at(ch->s, gh_clock_now_ms(ch->c), chain_fire, ch, NULL);
}

static void test_timer_added_by_a_callback_runs_when_due(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	chain_t ch = {s, c, 0};
	assert_int_equal(gh_sched_timer_at(s, T0, chain_fire, &ch, NULL), 0);
	assert_int_equal(gh_sched_run_due(s), 3);
	assert_int_equal(ch.runs, 3);
	talloc_free(ctx);
}

typedef struct {
	int64_t *fired_at;
	gh_clock_t *c;
	int64_t deadline;
	int count;
} heap_probe_t;

static void heap_fire(void *ud)
{
	heap_probe_t *p = ud;
	p->count++;
	assert_true(gh_clock_now_ms(p->c) >= p->deadline);
	*p->fired_at = p->deadline;
}

static void test_heap_keeps_order_under_random_adds_and_cancels(void **state)
{
	enum { N = 20000 };
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	heap_probe_t *p = talloc_zero_array(ctx, heap_probe_t, N);
	gh_sched_timer_t *h = talloc_array(ctx, gh_sched_timer_t, N);
	int64_t last = 0;
	srand(7);
	for (int i = 0; i < N; i++) {
		p[i] = (heap_probe_t){&last, c, T0 + rand() % 100000, 0};
		assert_int_equal(gh_sched_timer_at(s, p[i].deadline, heap_fire, &p[i], &h[i]), 0);
	}
	int cancelled = 0;
	for (int i = 0; i < N; i += 3) {
		assert_int_equal(gh_sched_timer_cancel(s, h[i]), 0);
		cancelled++;
	}
	int64_t prev = 0;
	int fired = 0;
	for (int64_t t = T0; t <= T0 + 100000; t += 777) {
		gh_clock_test_set(c, t);
		fired += gh_sched_run_due(s);
		assert_true(last >= prev); /* deadlines come out non-decreasing */
		prev = last;
	}
	gh_clock_test_set(c, T0 + 100000);
	fired += gh_sched_run_due(s);
	assert_int_equal(fired, N - cancelled);
	for (int i = 0; i < N; i++)
		assert_int_equal(p[i].count, i % 3 == 0 ? 0 : 1);
	talloc_free(ctx);
}

/* ---- cron ---- */

static void test_cron_parser_accepts_and_refuses(void **state)
{
	static const char *const good[] = {
	    "* * * * *",       "*/15 * * * *", "0 0 1 1 *",
	    "1-5/2 * * * *",   "5/20 * * * *", "0,30 8-18 * * MON-FRI",
	    "0 0 1 jan,Jul *", "0 0 * * 7",    "  0 0 * * 0  ",
	    "59 23 31 12 *",   "0 12 29 2 *",  "@daily",
	    "@hourly",         "@weekly",      "@monthly",
	    "@yearly",         "@annually",    "@midnight",
	    "@every 5m",       "@every 1h30m", "@every 500ms",
	    "@every 1d",
	};
	static const char *const bad[] = {
	    "",
	    "* * * *",
	    "* * * * * *",
	    "60 * * * *",
	    "* 24 * * *",
	    "* * 0 * *",
	    "* * 32 * *",
	    "* * * 13 *",
	    "* * * 0 *",
	    "* * * * 8",
	    "*/0 * * * *",
	    "5-1 * * * *",
	    "a * * * *",
	    "1,,2 * * * *",
	    "1, * * * *",
	    "*/ * * * *",
	    "0 0 30 2 *",
	    "0 0 31 4,6,9,11 *",
	    "@every",
	    "@every 5",
	    "@every 0s",
	    "@every 5x",
	    "@every -5m",
	    "@fortnightly",
	    "* * * jam *",
	};
	gh_cron_t cr;
	char why[160];
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (gh_cron_parse(good[i], &cr, why, sizeof why))
			fail_msg("'%s' refused: %s", good[i], why);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		if (gh_cron_parse(bad[i], &cr, why, sizeof why) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_true(why[0] != '\0');
	}
	assert_int_equal(gh_cron_parse(NULL, &cr, NULL, 0), -EINVAL);
	assert_int_equal(gh_cron_parse("0 0 30 2 *", &cr, why, sizeof why), -EINVAL);
	assert_string_equal(why, "never fires");
	assert_int_equal(gh_cron_parse("60 * * * *", &cr, why, sizeof why), -EINVAL);
	assert_string_equal(why, "minute: value out of range 0..59");

	assert_int_equal(gh_cron_parse("1-5/2 * * * *", &cr, NULL, 0), 0);
	assert_int_equal(cr.minute, (1u << 1) | (1u << 3) | (1u << 5));
	assert_int_equal(gh_cron_parse("5/20 * * * *", &cr, NULL, 0), 0);
	assert_int_equal(cr.minute, (1ull << 5) | (1ull << 25) | (1ull << 45));
	assert_int_equal(gh_cron_parse("0 0 * * 7", &cr, NULL, 0), 0);
	assert_int_equal(cr.dow, 1);
	assert_int_equal(gh_cron_parse("@every 1h30m", &cr, NULL, 0), 0);
	assert_int_equal(cr.every_ms, 5400000);
	assert_int_equal(gh_cron_parse("@every 500ms", &cr, NULL, 0), 0);
	assert_int_equal(cr.every_ms, 500);
}

static void expect_next(const char *expr, const char *after, const char *want)
{
	gh_cron_t cr;
	char why[160], got[25];
	if (gh_cron_parse(expr, &cr, why, sizeof why))
		fail_msg("'%s': %s", expr, why);
	int64_t n = gh_cron_next(&cr, ts(after));
	gh_time_format(n, got);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' after %s: got %s, want %s", expr, after, got, want);
}

static void test_cron_next_fire_times(void **state)
{
	expect_next("*/15 * * * *", "2026-03-10T10:07:30.000Z", "2026-03-10T10:15:00.000Z");
	/* strictly after: a fire time is not its own next */
	expect_next("*/15 * * * *", "2026-03-10T10:15:00.000Z", "2026-03-10T10:30:00.000Z");
	expect_next("* * * * *", "2026-03-10T10:15:59.999Z", "2026-03-10T10:16:00.000Z");
	/* hour and day roll over */
	expect_next("*/15 * * * *", "2026-03-10T23:50:00.000Z", "2026-03-11T00:00:00.000Z");
	/* month boundary, and a day that April lacks */
	expect_next("0 0 * * *", "2026-01-31T12:00:00.000Z", "2026-02-01T00:00:00.000Z");
	expect_next("30 2 31 * *", "2026-04-01T00:00:00.000Z", "2026-05-31T02:30:00.000Z");
	/* year boundary */
	expect_next("0 0 1 1 *", "2025-12-31T23:59:59.999Z", "2026-01-01T00:00:00.000Z");
	expect_next("59 23 31 12 *", "2026-12-31T23:59:00.000Z", "2027-12-31T23:59:00.000Z");
	expect_next("0 6 * 2 *", "2026-03-01T00:00:00.000Z", "2027-02-01T06:00:00.000Z");
	/* leap day */
	expect_next("0 12 29 2 *", "2025-03-01T00:00:00.000Z", "2028-02-29T12:00:00.000Z");
	/* day of week: 2026-01-02 is a Friday */
	expect_next("0 9 * * MON-FRI", "2026-01-02T10:00:00.000Z", "2026-01-05T09:00:00.000Z");
	expect_next("0 0 * * 7", "2026-01-01T00:00:00.000Z", "2026-01-04T00:00:00.000Z");
	expect_next("0 0 * * sun", "2026-01-01T00:00:00.000Z", "2026-01-04T00:00:00.000Z");
	expect_next("@weekly", "2026-01-04T00:00:00.000Z", "2026-01-11T00:00:00.000Z");
	/* both day fields restricted: either matches (Friday 2nd before the 13th) */
	expect_next("0 0 13 * FRI", "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z");
	/* day-of-week '*': only day-of-month counts */
	expect_next("0 0 13 * *", "2026-01-01T00:00:00.000Z", "2026-01-13T00:00:00.000Z");
	/* day-of-month '*' and a weekday: only the weekday counts */
	expect_next("0 0 * * 1", "2026-01-01T00:00:00.000Z", "2026-01-05T00:00:00.000Z");
	/* month names in a list */
	expect_next("0 8 1 JAN,JUL *", "2026-01-01T08:00:00.000Z", "2026-07-01T08:00:00.000Z");
	expect_next("@monthly", "2026-12-15T00:00:00.000Z", "2027-01-01T00:00:00.000Z");
	expect_next("@yearly", "2026-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z");
	expect_next("@every 90s", "2026-01-01T00:00:00.250Z", "2026-01-01T00:01:30.250Z");
}

/* ---- jobs ---- */

typedef struct {
	int runs;
	int rc;
	int64_t last_now;
	gh_clock_t *advance_clock; /* simulate a long run */
	int64_t advance_ms;
} job_probe_t;

static int probe_job(void *ud, int64_t now_ms)
{
	job_probe_t *p = ud;
	p->runs++;
	p->last_now = now_ms;
	if (p->advance_clock)
		gh_clock_test_advance(p->advance_clock, p->advance_ms);
	return p->rc;
}

static void test_every_job_runs_once_and_skips_missed(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	job_probe_t p = {0};
	gh_sched_job_def_t def = {
	    .name = "sweep", .schedule = "@every 5m", .fn = probe_job, .ud = &p};
	assert_int_equal(gh_sched_job_add(s, &def), 0);
	assert_int_equal(gh_sched_job_add(s, &def), -EEXIST);
	gh_sched_job_stats_t st;
	assert_int_equal(gh_sched_job_stats(s, "sweep", &st), 0);
	assert_int_equal(st.next_run_ms, T0 + 300000);
	gh_clock_test_advance(c, 299999);
	assert_int_equal(gh_sched_run_due(s), 0);
	gh_clock_test_advance(c, 1);
	assert_int_equal(gh_sched_run_due(s), 1);
	assert_int_equal(p.runs, 1);
	assert_int_equal(p.last_now, T0 + 300000);
	/* the process was away for 17 minutes: one run, not four */
	gh_clock_test_advance(c, 17 * 60000);
	assert_int_equal(gh_sched_run_due(s), 1);
	assert_int_equal(p.runs, 2);
	assert_int_equal(gh_sched_job_stats(s, "sweep", &st), 0);
	assert_int_equal(st.runs, 2);
	assert_int_equal(st.missed, 2); /* +15m and +20m */
	assert_int_equal(st.next_run_ms, T0 + 25 * 60000);
	assert_int_equal(gh_sched_job_stats(s, "nope", &st), -ENOENT);
	talloc_free(ctx);
}

static char *read_log(void *ctx, int fd)
{
	off_t end = lseek(fd, 0, SEEK_END);
	char *buf = talloc_zero_size(ctx, (size_t)end + 1);
	assert_int_equal(pread(fd, buf, (size_t)end, 0), end);
	return buf;
}

static int count_str(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_overrunning_cron_job_does_not_pile_up(void **state)
{
	void *ctx = talloc_new(NULL);
	FILE *logf = tmpfile();
	gh_log_set_fd(fileno(logf));
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	/* each run takes 3.5 minutes of a job scheduled every minute */
	job_probe_t p = {.advance_clock = c, .advance_ms = 210000};
	gh_sched_job_def_t def = {
	    .name = "slow", .schedule = "* * * * *", .fn = probe_job, .ud = &p};
	assert_int_equal(gh_sched_job_add(s, &def), 0);
	gh_clock_test_set(c, T0 + 60000);
	assert_int_equal(gh_sched_run_due(s), 1); /* ends at +4:30; +2, +3, +4 skipped */
	assert_int_equal(p.runs, 1);
	gh_sched_job_stats_t st;
	assert_int_equal(gh_sched_job_stats(s, "slow", &st), 0);
	assert_int_equal(st.missed, 3);
	assert_int_equal(st.next_run_ms, T0 + 5 * 60000);
	char *log = read_log(ctx, fileno(logf));
	assert_int_equal(count_str(log, "job overran"), 1);
	assert_non_null(strstr(log, "\"skipped\":\"3\""));
	gh_log_set_fd(2);
	fclose(logf);
	talloc_free(ctx);
}

static void test_failing_job_is_counted_and_keeps_its_schedule(void **state)
{
	void *ctx = talloc_new(NULL);
	FILE *logf = tmpfile();
	gh_log_set_fd(fileno(logf));
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	job_probe_t p = {.rc = -EIO};
	gh_sched_job_def_t def = {
	    .name = "flaky", .schedule = "@hourly", .fn = probe_job, .ud = &p};
	assert_int_equal(gh_sched_job_add(s, &def), 0);
	for (int h = 1; h <= 3; h++) {
		gh_clock_test_set(c, T0 + h * 3600000LL);
		assert_int_equal(gh_sched_run_due(s), 1);
	}
	gh_sched_job_stats_t st;
	assert_int_equal(gh_sched_job_stats(s, "flaky", &st), 0);
	assert_int_equal(st.runs, 3);
	assert_int_equal(st.failures, 3);
	assert_int_equal(st.last_rc, -EIO);
	assert_int_equal(st.next_run_ms, T0 + 4 * 3600000LL);
	gh_sched_stats_t all;
	gh_sched_stats(s, &all);
	assert_int_equal(all.job_failures, 3);
	char *log = read_log(ctx, fileno(logf));
	assert_int_equal(count_str(log, "job failed"), 3);
	assert_non_null(strstr(log, "EIO"));
	gh_log_set_fd(2);
	fclose(logf);
	/* a bad schedule or a missing function is refused */
	gh_sched_job_def_t bad = {.name = "bad", .schedule = "61 * * * *", .fn = probe_job};
	assert_int_equal(gh_sched_job_add(s, &bad), -EINVAL);
	bad.schedule = "@daily";
	bad.fn = NULL;
	assert_int_equal(gh_sched_job_add(s, &bad), -EINVAL);
	talloc_free(ctx);
}

typedef struct {
	int answers[8]; /* returned in turn */
	int calls;
	char name[32];
	int64_t now, ttl;
} lease_double_t;

static int lease_double(void *ud, const char *job_name, int64_t now_ms, int64_t ttl_ms)
{
	lease_double_t *l = ud;
	snprintf(l->name, sizeof l->name, "%s", job_name);
	l->now = now_ms;
	l->ttl = ttl_ms;
	return l->answers[l->calls++];
}

static void test_leased_job_runs_only_with_the_lease(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	lease_double_t l = {.answers = {-EBUSY, 0, -EIO, 0}};
	gh_sched_set_lease(s, lease_double, &l);
	job_probe_t once = {0}, local = {0};
	gh_sched_job_def_t d1 = {.name = "daily-export",
	                         .schedule = "@daily",
	                         .fn = probe_job,
	                         .ud = &once,
	                         .flags = GH_SCHED_LEASED};
	gh_sched_job_def_t d2 = {
	    .name = "local", .schedule = "@daily", .fn = probe_job, .ud = &local};
	assert_int_equal(gh_sched_job_add(s, &d1), 0);
	assert_int_equal(gh_sched_job_add(s, &d2), 0);
	gh_sched_job_stats_t st;

	gh_clock_test_set(c, T0 + 86400000); /* day 1: another replica holds the lease */
	assert_int_equal(gh_sched_run_due(s), 2);
	assert_int_equal(l.calls, 1); /* the unleased job never asks */
	assert_string_equal(l.name, "daily-export");
	assert_int_equal(l.now, T0 + 86400000);
	assert_int_equal(l.ttl, 86400000); /* until the next occurrence */
	assert_int_equal(once.runs, 0);
	assert_int_equal(local.runs, 1);
	assert_int_equal(gh_sched_job_stats(s, "daily-export", &st), 0);
	assert_int_equal(st.lease_busy, 1);
	assert_int_equal(st.runs, 0);
	assert_int_equal(st.missed, 0);
	assert_int_equal(st.next_run_ms, T0 + 2 * 86400000LL);

	gh_clock_test_set(c, T0 + 2 * 86400000LL); /* day 2: got it */
	assert_int_equal(gh_sched_run_due(s), 2);
	assert_int_equal(once.runs, 1);

	gh_clock_test_set(c, T0 + 3 * 86400000LL); /* day 3: the lease store fails: skip */
	assert_int_equal(gh_sched_run_due(s), 2);
	assert_int_equal(once.runs, 1);
	assert_int_equal(gh_sched_job_stats(s, "daily-export", &st), 0);
	assert_int_equal(st.lease_errors, 1);
	assert_int_equal(st.runs, 1);
	assert_int_equal(local.runs, 3);

	/* an explicit ttl is passed as is */
	gh_sched_job_def_t d3 = {.name = "fixed-ttl",
	                         .schedule = "@hourly",
	                         .fn = probe_job,
	                         .ud = &once,
	                         .flags = GH_SCHED_LEASED,
	                         .lease_ttl_ms = 60000};
	assert_int_equal(gh_sched_job_add(s, &d3), 0);
	gh_clock_test_advance(c, 3600000);
	assert_int_equal(gh_sched_run_due(s), 1);
	assert_int_equal(l.ttl, 60000);
	assert_int_equal(once.runs, 2);
	talloc_free(ctx);
}

static void test_leased_job_without_hook_runs(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, T0);
	gh_sched_t *s = gh_sched_new(ctx, c);
	job_probe_t p = {0};
	gh_sched_job_def_t d = {.name = "j",
	                        .schedule = "@every 1s",
	                        .fn = probe_job,
	                        .ud = &p,
	                        .flags = GH_SCHED_LEASED};
	assert_int_equal(gh_sched_job_add(s, &d), 0);
	gh_clock_test_advance(c, 1000);
	assert_int_equal(gh_sched_run_due(s), 1);
	assert_int_equal(p.runs, 1);
	assert_int_equal(gh_sched_start(s), -EINVAL); /* test clocks are driven by run_due */
	talloc_free(ctx);
}

/* ---- real clock ---- */

typedef struct {
	int64_t deadline;
	_Atomic int64_t fired;
	_Atomic int *left;
} rt_timer_t;

static void rt_fire(void *ud)
{
	rt_timer_t *t = ud;
	atomic_store(&t->fired, gh_clock_now_ms(gh_clock_real()));
	atomic_fetch_sub(t->left, 1);
}

static void test_real_clock_timers_fire_on_time(void **state)
{
	enum { N = 200 };
	void *ctx = talloc_new(NULL);
	gh_sched_t *s = gh_sched_new(ctx, gh_clock_real());
	rt_timer_t *t = talloc_zero_array(ctx, rt_timer_t, N);
	_Atomic int left = N;
	assert_int_equal(gh_sched_start(s), 0);
	assert_int_equal(gh_sched_start(s), -EALREADY);
	srand((unsigned)time(NULL));
	/* The thread goes to sleep until a far deadline; the timers below come while it sleeps,
	 * in random order, so each earlier one must wake it. */
	gh_sched_timer_t far;
	rt_timer_t far_t = {.left = &left};
	assert_int_equal(
	    gh_sched_timer_at(s, gh_clock_now_ms(gh_clock_real()) + 60000, rt_fire, &far_t, &far),
	    0);
	usleep(20000);
	int64_t base = gh_clock_now_ms(gh_clock_real()) + 50;
	for (int i = 0; i < N; i++) {
		t[i].deadline = base + rand() % 1000;
		t[i].left = &left;
		assert_int_equal(gh_sched_timer_at(s, t[i].deadline, rt_fire, &t[i], NULL), 0);
	}
	for (int i = 0; i < 300 && atomic_load(&left) > 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&left), 0);
	int64_t worst = 0;
	for (int i = 0; i < N; i++) {
		int64_t d = atomic_load(&t[i].fired) - t[i].deadline;
		assert_true(d >= 0); /* never early */
		if (d > worst)
			worst = d;
	}
	if (worst > 20)
		fail_msg("a timer fired %lld ms late", (long long)worst);
	assert_int_equal(gh_sched_timer_cancel(s, far), 0);
	assert_int_equal(gh_sched_stop(s, 1000), 0);
	assert_int_equal(gh_sched_stop(s, 1000), 0);
	talloc_free(ctx);
}

typedef struct {
	_Atomic int started, finished;
	int sleep_ms;
} slow_t;

static int slow_job(void *ud, int64_t now_ms)
{
	slow_t *sl = ud;
	atomic_store(&sl->started, 1);
	usleep((useconds_t)sl->sleep_ms * 1000);
	atomic_store(&sl->finished, 1);
	return 0;
}

static void wait_started(slow_t *sl)
{
	for (int i = 0; i < 500 && !atomic_load(&sl->started); i++)
		usleep(5000);
	assert_true(atomic_load(&sl->started));
}

static void test_stop_lets_a_running_job_finish(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_sched_t *s = gh_sched_new(ctx, gh_clock_real());
	slow_t sl = {.sleep_ms = 200};
	gh_sched_job_def_t d = {
	    .name = "slow", .schedule = "@every 20ms", .fn = slow_job, .ud = &sl};
	assert_int_equal(gh_sched_job_add(s, &d), 0);
	assert_int_equal(gh_sched_start(s), 0);
	wait_started(&sl);
	assert_false(atomic_load(&sl.finished));
	assert_int_equal(gh_sched_stop(s, 5000), 0);
	assert_true(atomic_load(&sl.finished));
	assert_true(gh_sched_stopping(s));
	gh_sched_job_stats_t st;
	assert_int_equal(gh_sched_job_stats(s, "slow", &st), 0);
	assert_int_equal(st.runs, 1); /* nothing new started after stop */
	talloc_free(ctx);

	/* grace shorter than the job: stop reports it; freeing waits for the job */
	ctx = talloc_new(NULL);
	s = gh_sched_new(ctx, gh_clock_real());
	slow_t sl2 = {.sleep_ms = 300};
	d.ud = &sl2;
	assert_int_equal(gh_sched_job_add(s, &d), 0);
	assert_int_equal(gh_sched_start(s), 0);
	wait_started(&sl2);
	assert_int_equal(gh_sched_stop(s, 10), -ETIMEDOUT);
	assert_false(atomic_load(&sl2.finished));
	talloc_free(ctx);
	assert_true(atomic_load(&sl2.finished));
}

typedef struct {
	gh_sched_t *s;
	_Atomic int rc, done;
} self_stop_t;

static void self_stop(void *ud)
{
	self_stop_t *ss = ud;
	atomic_store(&ss->rc, gh_sched_stop(ss->s, -1));
	atomic_store(&ss->done, 1);
}

static void test_stop_from_a_callback_does_not_deadlock(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_sched_t *s = gh_sched_new(ctx, gh_clock_real());
	self_stop_t ss = {.s = s};
	assert_int_equal(gh_sched_start(s), 0);
	assert_int_equal(gh_sched_timer_at(s, 0, self_stop, &ss, NULL), 0);
	for (int i = 0; i < 500 && !atomic_load(&ss.done); i++)
		usleep(2000);
	assert_true(atomic_load(&ss.done));
	assert_int_equal(atomic_load(&ss.rc), -EDEADLK);
	assert_true(gh_sched_stopping(s));
	assert_int_equal(gh_sched_stop(s, 1000), 0);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timers_fire_in_deadline_order),
	    cmocka_unit_test(test_cancelled_timer_never_fires),
	    cmocka_unit_test(test_timer_added_by_a_callback_runs_when_due),
	    cmocka_unit_test(test_heap_keeps_order_under_random_adds_and_cancels),
	    cmocka_unit_test(test_cron_parser_accepts_and_refuses),
	    cmocka_unit_test(test_cron_next_fire_times),
	    cmocka_unit_test(test_every_job_runs_once_and_skips_missed),
	    cmocka_unit_test(test_overrunning_cron_job_does_not_pile_up),
	    cmocka_unit_test(test_failing_job_is_counted_and_keeps_its_schedule),
	    cmocka_unit_test(test_leased_job_runs_only_with_the_lease),
	    cmocka_unit_test(test_leased_job_without_hook_runs),
	    cmocka_unit_test(test_real_clock_timers_fire_on_time),
	    cmocka_unit_test(test_stop_lets_a_running_job_finish),
	    cmocka_unit_test(test_stop_from_a_callback_does_not_deadlock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
