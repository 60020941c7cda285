/* jobs: the numbering service's timed work (numbering spec, "Jobs"; issue 4, item 4).
 *
 * Reservation expiry, within +-2 s of expires_at: every replica keeps one scheduler timer per
 * live reservation it knows of (num_expiry_note: armed from the invalidation stream - which
 * carries every commit, this replica's own included - and, at start, from the database), and
 * at expires_at a worker thread runs the EXPIRE transition (role SYSTEM) with the version the
 * timer was armed for. All replicas fire; the transition is a CAS, so one wins and the others
 * get a quiet CONFLICT (counted, not logged above debug, not audited). A change of the number
 * (assign, release, recall, another replica's expiry) cancels the timer. The database sweep
 * (num_job_reservation_sweep, every second on one replica) is the safety net for what no timer
 * holds: reservations beyond expiry_timers_max, a bus outage, a replica that died. It only
 * takes reservations due for more than numbering.expiry_sweep_grace_ms, so it does not race
 * the timers in the normal case.
 *
 * The recurring jobs (scheduler, GH_SCHED_LEASED: one replica at a time), each taking its now
 * from the scheduler, which tests pass explicitly:
 *   num_job_renewal       daily: auto_renew leases ending within renewal_window_s: billing
 *                         PreviewCharge, then renew (number.renewed.v1) or emit
 *                         number.renewal_failed.v1 with the reason - never a silent suspension;
 *   num_job_lease_end     leases past ends_at -> QUARANTINED TENANT_RELEASE;
 *   num_job_audit_verify  daily gh_audit_verify of chain "numbering": a break sets
 *                         numbering_audit_chain_broken to 1, logs at error and emits
 *                         numbering.audit.chain_broken.v1 {first_bad_seq, ...}. */
#ifndef NUM_JOBS_H
#define NUM_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "gh-core.h"
#include "lifecycle.h"

struct num_svc_s;
typedef struct num_expiry_s num_expiry_t;

/* Expiry timers for s on sched, holding at most capacity reservations (the rest is left to the
 * sweep), talloc child of s. Starts the worker thread; freeing it (or num_expiry_stop) stops
 * and joins it. 0, -EINVAL, -ENOMEM, or -errno of pthread_create. */
int num_expiry_new(struct num_svc_s *s, gh_sched_t *sched, size_t capacity, num_expiry_t **out);
/* Stop the worker after the transition in progress; pending timers are cancelled. Idempotent. */
void num_expiry_stop(num_expiry_t *x);
/* The number key is now at version in state st; expires_ms is its reservation's expires_at
 * (RESERVED) or 0. Arms a timer for a RESERVED number, cancels the timer of an older version.
 * Older or repeated news are ignored. Thread-safe, cheap; never blocks on the database. */
void num_expiry_note(num_expiry_t *x, uint64_t key, int64_t version, num_state_t st,
                     int64_t expires_ms);
/* Arm timers for the live reservations in the database (at start). Returns how many were armed
 * or a negative errno. */
int num_expiry_load(num_expiry_t *x);
/* Timers pending, and reservations expired by timers so far. */
size_t num_expiry_pending(num_expiry_t *x);
uint64_t num_expiry_fired(num_expiry_t *x);

/* The jobs; ud is the num_svc_t. 0 or a negative errno (the scheduler logs and counts it). */
int num_job_reservation_sweep(void *ud, int64_t now_ms);
int num_job_renewal(void *ud, int64_t now_ms);
int num_job_lease_end(void *ud, int64_t now_ms);
int num_job_audit_verify(void *ud, int64_t now_ms);

#endif
