/* lease: named, expiring leases in the database, so that a job meant to run once per
 * deployment (daily export, outbox relay, sweeps) runs on one replica at a time.
 *
 * A lease is (name, holder, expires_ms) in gh_lease. Taking it is one upsert that succeeds only
 * when the lease is free, expired, or already ours; the database serialises competing replicas,
 * so at most one holder is valid at any time (given clocks agree within the ttl margin). */
#ifndef GH_LEASE_H
#define GH_LEASE_H

#include <stdint.h>

#include "store.h"

/* Take or renew lease name for holder until now_ms + ttl_ms. Returns 0 when holder has it,
 * -EBUSY when another holder's lease is still valid, or the store's error. */
int gh_lease_try(gh_store_t *s, const char *name, const char *holder, int64_t now_ms,
                 int64_t ttl_ms);
/* Give the lease up (only when holder has it). Returns 0 or the store's error. */
int gh_lease_release(gh_store_t *s, const char *name, const char *holder);

/* Adapter for the scheduler's try_lease hook: ud is a gh_lease_ctx_t. */
typedef struct gh_lease_ctx_s {
	gh_store_t *store;
	const char *holder; /* this replica's id */
} gh_lease_ctx_t;
int gh_lease_sched_hook(void *ud, const char *job_name, int64_t now_ms, int64_t ttl_ms);

#endif
