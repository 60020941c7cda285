/* index: the in-process number index that answers ValidateLease and Lookup without the database
 * (numbering spec, "ValidateLease (hot path)"; issue 3, item 4).
 *
 * One flat open-addressing table of 64-byte slots (one cache line each), sized at start for a
 * maximum number count at <= 75 % load, keyed by the 64-bit identifier key of core e164
 * (gh_ident_t.key: never 0, kind in bits 63-62, injective, so no two identifiers share a key
 * and no hash collision can answer for the wrong number). Readers take no lock and write
 * nothing: each slot carries its own sequence counter (seqlock), so a reader copies the slot and
 * retries if a writer touched it meanwhile, and never sees half an update. Writers (local
 * commits, the invalidation consumer, DB fallback fills) serialise on one mutex; they never move
 * a slot, so a reader's probe is never invalidated under it.
 *
 * The database is the authority; the index is a cache of it. A miss (-ENOENT) means "unknown to
 * the index": the caller asks the database and fills the index. Keys never leave the table
 * (numbers are retired, not deleted); an invalidation without data leaves a marker carrying the
 * version it announced, so that a fill racing with it cannot put an older row back.
 *
 * Tenants are interned in a small insert-only table (index 0 = none); a slot stores the 32-bit
 * tenant index of its holder. The pool status is one word per tenant: suspending a tenant flips
 * every validate of its numbers to TENANT_SUSPENDED with one store. */
#ifndef NUM_INDEX_H
#define NUM_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lifecycle.h"

typedef struct num_index_s num_index_t;

#define NUM_TENANT_NONE   0u
#define NUM_TENANT_ID_MAX 59 /* bytes of a tenant id (a UUID is 36) */

/* What the index knows of one number; also what load/upsert take. */
typedef struct num_index_entry_s {
	uint64_t key;     /* gh_ident key, != 0; the kind is (key >> 62) - 1 */
	uint64_t version; /* numbers.version */
	int64_t lease_ends_at_ms;
	uint8_t lease_id[16]; /* live lease, all zero when none */
	uint32_t tenant;      /* holder of the reservation or lease, NUM_TENANT_NONE when none */
	uint16_t operator_idx;
	uint8_t state;        /* num_state_t */
	uint8_t lease_status; /* num_lease_status_t */
	uint8_t vanity_tier;
} num_index_entry_t;

/* An index for up to max_numbers keys (>= 1) and max_tenants tenants (1..2^24), owned by ctx.
 * Memory is reserved at once (about 85 bytes per number) and never grows. 0, -EINVAL, -ENOMEM. */
int num_index_new(void *ctx, size_t max_numbers, uint32_t max_tenants, num_index_t **out);

/* The kind of a key (NUM_KIND__COUNT when the tag is not a kind). */
num_kind_t num_key_kind(uint64_t key);

/* ---- tenants ---------------------------------------------------------------------------- */

/* Index of tenant_id (1..NUM_TENANT_ID_MAX bytes), added with pool status UNKNOWN when new.
 * Writer side (takes the writer lock). 0, -EINVAL, -ENOSPC (max_tenants reached). */
int num_index_tenant_intern(num_index_t *ix, const char *tenant_id, uint32_t *tidx);
/* Index of a known tenant. Lock-free, allocation-free: the hot path. 0 or -ENOENT. */
int num_index_tenant_find(const num_index_t *ix, const char *tenant_id, uint32_t *tidx);
/* Pool status of a tenant: one atomic store, seen by every following validate. 0 or -EINVAL. */
int num_index_tenant_set_status(num_index_t *ix, uint32_t tidx, num_pool_status_t st);
num_pool_status_t num_index_tenant_status(const num_index_t *ix, uint32_t tidx);
/* The id of an interned tenant, NULL for NONE or out of range. Valid while ix lives. */
const char *num_index_tenant_id(const num_index_t *ix, uint32_t tidx);

/* ---- writers ---------------------------------------------------------------------------- */

/* Insert or replace e, if it is not older than what the index holds: returns 0 when applied or
 * when the index already holds this version (replays are harmless), -ESTALE when it holds a
 * newer one (or an invalidation announced one), -ENOSPC when the key is new and the index full,
 * -EINVAL for a bad entry (key 0, state/lease status out of range, unknown tenant index). */
int num_index_upsert(num_index_t *ix, const num_index_entry_t *e);

/* Bulk load at start: upsert of each entry under one lock hold. *done (may be NULL) gets the
 * number of entries processed. 0, or the first error of num_index_upsert other than -ESTALE
 * (stale entries are skipped), processing stopping there. */
int num_index_load(num_index_t *ix, const num_index_entry_t *e, size_t n, size_t *done);

/* A change to key at `version` happened elsewhere (num.cache.invalidate.v1 without data): the
 * key reads as a miss until a fill with version >= `version` arrives. No-op when the index
 * already holds that version or newer. 0, -EINVAL (key 0), -ENOSPC. */
int num_index_invalidate(num_index_t *ix, uint64_t key, uint64_t version);

/* ---- freshness -------------------------------------------------------------------------- */

/* Record that every change committed anywhere up to now_ms has been applied: the caller calls
 * it on each heartbeat of the invalidation stream (and, with a single replica, on its own
 * schedule). A local commit alone does not prove it: other replicas' changes may still be in
 * flight. Monotonic: an older time is ignored. */
void num_index_touch(num_index_t *ix, int64_t now_ms);
/* true when the last touch is at most bound_ms before now_ms. Never touched: false. */
bool num_index_fresh(const num_index_t *ix, int64_t now_ms, int64_t bound_ms);

/* After a complete preload the caller may declare the index complete: every number the
 * database holds is in it (or announced by an invalidation marker). A complete index answers
 * NOT_REGISTERED itself for keys it has never seen, instead of -ENOENT, sparing the database
 * enumeration traffic; the answer is a "no", so a number added on another replica and not yet
 * announced is refused (fail-closed), within the staleness bound. Cleared by -ENOSPC. */
void num_index_set_complete(num_index_t *ix, bool complete);
bool num_index_is_complete(const num_index_t *ix);

/* ---- readers: lock-free, allocation-free ------------------------------------------------ */

/* Consistent copy of the entry of key. 0, or -ENOENT (unknown to the index, or invalidated). */
int num_index_get(const num_index_t *ix, uint64_t key, num_index_entry_t *out);

typedef enum {
	NUM_VR_ALLOWED = 0,
	NUM_VR_NOT_REGISTERED,
	NUM_VR_NOT_LEASED,
	NUM_VR_WRONG_TENANT,
	NUM_VR_LEASE_SUSPENDED,
	NUM_VR_LEASE_EXPIRED,
	NUM_VR_QUARANTINE_ACTIVE,
	NUM_VR_TENANT_SUSPENDED,
	NUM_VR__COUNT,
} num_vreason_t;

/* "ALLOWED", "NOT_REGISTERED", ... as in the API; "UNKNOWN" out of range. */
const char *num_vreason_name(num_vreason_t r);

/* The ValidateLease rule on known facts, shared by the index and the database fallback.
 * e NULL = the identifier is not registered. same_tenant: e's holder is the caller. pool: the
 * holder's pool status. Precedence, first match wins:
 *   1. not registered                          NOT_REGISTERED
 *   2. AVAILABLE, RESERVED, RETIRED             NOT_LEASED
 *   3. QUARANTINED                              QUARANTINE_ACTIVE
 *   4. ASSIGNED/SUSPENDED held by another       WRONG_TENANT
 *   5. holder's pool SUSPENDED                  TENANT_SUSPENDED
 *   6. no lease (inconsistent row)              NOT_LEASED
 *   7. state SUSPENDED or lease SUSPENDED       LEASE_SUSPENDED
 *   8. lease ENDED or now >= ends_at            LEASE_EXPIRED
 *   9. otherwise (ASSIGNED, ACTIVE, in term)    ALLOWED
 * States without a lease answer by state alone: their holder, if any, has no right to send, and
 * a caller learns nothing about another tenant's reservation. The tenant check comes before the
 * pool and lease checks: the pool that matters is the lease tenant's, a caller must not learn
 * the state of another tenant's pool or lease, and WRONG_TENANT is the spoofing signal that must
 * be counted as such. A suspended pool outranks lease status because it is the broader cause.
 * Returns NUM_VR__COUNT when the decision needs the pool status and pool is UNKNOWN. */
num_vreason_t num_validate_rule(const num_index_entry_t *e, bool same_tenant,
                                num_pool_status_t pool, int64_t now_ms);

typedef struct num_validate_s {
	num_vreason_t reason;
	bool allowed;            /* reason == NUM_VR_ALLOWED */
	num_index_entry_t entry; /* the entry decided on (zero for NOT_REGISTERED) */
} num_validate_t;

/* ValidateLease for the caller `tenant` (from num_index_tenant_find; NUM_TENANT_NONE for a
 * tenant the index does not know, which then holds nothing) at now_ms. Returns 0 with *out
 * decided, or -ENOENT when the index cannot decide: key unknown (and the index not complete),
 * invalidated, the holder's pool status unknown, or the slot under continuous rewrite. The
 * caller must also check num_index_fresh: a decision from a stale index is not an answer. */
int num_validate(const num_index_t *ix, uint64_t key, uint32_t tenant, int64_t now_ms,
                 num_validate_t *out);

typedef struct num_index_stats_s {
	size_t numbers;          /* keys held (including invalidation markers) */
	size_t max_numbers;      /* capacity */
	size_t slots;            /* table slots (64 bytes each) */
	uint32_t tenants;        /* interned */
	size_t bytes;            /* memory reserved by the index */
	double bytes_per_number; /* bytes / max(numbers, 1) */
} num_index_stats_t;
void num_index_stats(const num_index_t *ix, num_index_stats_t *st);

#endif
