/* scheduler: one thread runs one-shot timers (reservation expiry, sweeps) and recurring jobs on
 * cron-like schedules (DESIGN.md, "Inside a process").
 *
 * Time comes from a gh_clock_t. With the real clock, gh_sched_start() runs a thread that sleeps
 * until the earliest deadline (pthread_cond_timedwait on CLOCK_MONOTONIC) and wakes early when
 * an earlier timer is added. With a test clock no thread is needed: tests move the clock and
 * call gh_sched_run_due(), which runs everything due, synchronously, in deadline order.
 *
 * Timers and job occurrences sit in one binary min-heap in a flat array, indexed by a slot
 * pool; the heap and pool only grow (doubling), so firing allocates nothing in steady state.
 * Callbacks run without the scheduler's lock held: they may add and cancel timers.
 *
 * Schedules (UTC):
 *   "*\/5 * * * *"   five fields: minute hour day-of-month month day-of-week, each '*', a value,
 *                    a range "a-b", a list "a,b,c", and steps "*\/n", "a-b/n", "a/n" (a to max);
 *                    months JAN-DEC and days SUN-SAT by name; day-of-week 0 or 7 is Sunday.
 *                    When both day fields are restricted a day matching either runs (Vixie cron).
 *   "@every 5m"      fixed interval from when the job was added: units ms, s, m, h, d, combinable
 *                    ("1h30m").
 *   "@hourly", "@daily" (= "@midnight"), "@weekly", "@monthly", "@yearly" (= "@annually").
 *
 * Jobs never pile up: a job that overruns its next occurrence(s) skips them, logs once and
 * counts them (missed). A failing job (negative return) is logged and counted; the thread goes
 * on. A job meant to run once per deployment (GH_SCHED_LEASED) first asks the lease hook; only
 * the replica that gets the lease runs that occurrence. */
#ifndef GH_SCHEDULER_H
#define GH_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* ---- cron expressions ---- */

typedef struct gh_cron_s {
	uint64_t minute; /* bit m set: minute m (0..59) matches */
	uint32_t hour;   /* bits 0..23 */
	uint32_t dom;    /* bits 1..31 */
	uint16_t month;  /* bits 1..12 */
	uint8_t dow;     /* bits 0..6, Sunday = 0 */
	bool dom_star, dow_star;
	int64_t every_ms; /* > 0: an "@every" interval; the fields above are unused */
} gh_cron_t;

/* Parse a schedule (see above). Returns 0, or -EINVAL with the reason in why (may be NULL).
 * An expression that can never fire ("0 0 30 2 *") is refused. */
int gh_cron_parse(const char *expr, gh_cron_t *out, char *why, size_t why_len);
/* The first fire time strictly after after_ms (ms since the epoch, UTC; whole minutes for
 * cron fields, after_ms + every_ms for @every), or -1 when none within 10 years. */
int64_t gh_cron_next(const gh_cron_t *c, int64_t after_ms);

/* ---- scheduler ---- */

typedef struct gh_sched_s gh_sched_t;
/* A pending timer; 0 is never a valid handle. Stale handles are detected (generation). */
typedef uint64_t gh_sched_timer_t;

typedef void (*gh_sched_timer_fn)(void *ud);
/* A job run. now_ms is the clock at the start of the run. Returns 0 or a negative errno (logged
 * and counted as a failure). */
typedef int (*gh_sched_job_fn)(void *ud, int64_t now_ms);
/* Lease hook for GH_SCHED_LEASED jobs: take the lease named job_name for ttl_ms. Returns 0 when
 * this replica got it, -EBUSY when another replica holds it, another negative errno when the
 * lease could not be asked (the run is skipped: fail closed). */
typedef int (*gh_sched_lease_fn)(void *ud, const char *job_name, int64_t now_ms, int64_t ttl_ms);

#define GH_SCHED_LEASED 0x1u /* run once per deployment: take the lease before each run */

typedef struct gh_sched_job_def_s {
	const char *name;     /* unique in the scheduler; also the lease name; copied */
	const char *schedule; /* cron or @every, see above; copied */
	gh_sched_job_fn fn;
	void *ud;
	unsigned flags;       /* GH_SCHED_LEASED */
	int64_t lease_ttl_ms; /* 0: until the next occurrence (at least 1 s) */
} gh_sched_job_def_t;

typedef struct gh_sched_job_stats_s {
	uint64_t runs;         /* times fn was called */
	uint64_t failures;     /* fn returned < 0 */
	uint64_t lease_busy;   /* occurrences left to another replica */
	uint64_t lease_errors; /* occurrences skipped because the lease hook failed */
	uint64_t missed;       /* occurrences skipped because the job (or process) overran */
	int last_rc;
	int64_t last_run_ms; /* 0: never */
	int64_t next_run_ms;
} gh_sched_job_stats_t;

typedef struct gh_sched_stats_s {
	uint64_t timers_pending;
	uint64_t timers_fired;
	uint64_t timers_cancelled;
	uint64_t job_runs;
	uint64_t job_failures;
} gh_sched_stats_t;

/* A scheduler on clock (talloc child of ctx; freeing it stops and joins the thread, waiting
 * for a running callback). NULL on allocation failure. */
gh_sched_t *gh_sched_new(void *ctx, gh_clock_t *clock);

/* Set the lease hook (before gh_sched_start). Without one, LEASED jobs run unconditionally:
 * correct for the embedded profile, where the process is the whole deployment. */
void gh_sched_set_lease(gh_sched_t *s, gh_sched_lease_fn try_lease, void *ud);

/* Run fn(ud) once at at_ms (wall ms since the epoch; a time in the past fires at the next
 * run). Timers with equal deadlines fire in the order they were added. *out (may be NULL)
 * receives the handle. Returns 0, -EINVAL (fn NULL), -ENOMEM. Thread-safe. */
int gh_sched_timer_at(gh_sched_t *s, int64_t at_ms, gh_sched_timer_fn fn, void *ud,
                      gh_sched_timer_t *out);
/* Cancel a pending timer. Returns 0 when it will not fire; -ENOENT when it already fired, is
 * firing, was cancelled, or the handle is not one of this scheduler's. Thread-safe. */
int gh_sched_timer_cancel(gh_sched_t *s, gh_sched_timer_t t);

/* Add a recurring job; its first occurrence is the schedule's first fire time after now.
 * Returns 0; -EINVAL (bad schedule, missing name or fn; reason logged); -EEXIST (name taken);
 * -ENOMEM. Thread-safe. */
int gh_sched_job_add(gh_sched_t *s, const gh_sched_job_def_t *def);
/* Counters of one job. Returns 0 or -ENOENT. */
int gh_sched_job_stats(gh_sched_t *s, const char *name, gh_sched_job_stats_t *out);
void gh_sched_stats(gh_sched_t *s, gh_sched_stats_t *out);

/* Run, on the calling thread, every timer and job occurrence due at the clock's current time,
 * in deadline order (including timers they add that are already due). Returns how many ran. */
int gh_sched_run_due(gh_sched_t *s);
/* The earliest pending deadline, or INT64_MAX when nothing is pending. */
int64_t gh_sched_next_deadline(gh_sched_t *s);

/* Start the scheduler thread. Returns 0; -EALREADY; -EINVAL for a test clock (drive it with
 * gh_sched_run_due); -errno from pthread_create. */
int gh_sched_start(gh_sched_t *s);
/* Stop the thread: nothing new starts; a callback in progress may finish within grace_ms
 * (< 0: wait as long as it takes). Returns 0 when the thread has exited, -ETIMEDOUT when a
 * callback is still running (the thread exits after it; freeing s waits for that). Pending
 * timers stay pending. Idempotent; 0 when never started. From a callback it only asks the
 * thread to stop and returns -EDEADLK (a thread cannot wait for itself). */
int gh_sched_stop(gh_sched_t *s, int64_t grace_ms);
/* True once gh_sched_stop was called: long jobs should check it and return early. */
bool gh_sched_stopping(gh_sched_t *s);

#endif
