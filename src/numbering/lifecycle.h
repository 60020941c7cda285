/* lifecycle: the number lifecycle of the numbering spec ("Lifecycle") as one declarative table.
 *
 * Every transition the spec allows is a row: (from, action) -> to, the roles that may ask for it,
 * the runtime guard it needs, the quarantine reason it records, its side effects on reservations,
 * leases and quarantine records, and the event it emits. num_lifecycle_step() is the only way
 * to ask "may this happen, and what happens then"; any pair that is not a row is
 * INVALID_TRANSITION. The same table renders the docs (docs/numbering-lifecycle.md).
 *
 * Pure and in-memory: the repository applies the transition (compare-and-swap on `version`,
 * audit row, outbox event) in one transaction. Nothing here allocates except the renderer. */
#ifndef NUM_LIFECYCLE_H
#define NUM_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Identifier kinds. Values equal gh_ident_kind_t of core e164.h (MSISDN 0, SHORT_CODE 1,
 * ALPHA 2) and the kind tag of its 64-bit keys (bits 63-62 = kind + 1). */
typedef enum {
	NUM_KIND_MSISDN = 0,
	NUM_KIND_SHORT_CODE,
	NUM_KIND_ALPHA,
	NUM_KIND__COUNT,
} num_kind_t;

typedef enum {
	NUM_ST_AVAILABLE = 0,
	NUM_ST_RESERVED,
	NUM_ST_ASSIGNED,
	NUM_ST_SUSPENDED,
	NUM_ST_QUARANTINED,
	NUM_ST_RETIRED,
	NUM_ST__COUNT,
} num_state_t;

typedef enum {
	NUM_ACT_RESERVE = 0,
	NUM_ACT_ASSIGN,
	NUM_ACT_RELEASE,
	NUM_ACT_EXPIRE, /* reservation TTL elapsed; from ASSIGNED/SUSPENDED: lease term elapsed */
	NUM_ACT_SUSPEND,
	NUM_ACT_RESUME,
	NUM_ACT_RECALL,
	NUM_ACT_SWEEP, /* quarantine cool-off elapsed */
	NUM_ACT_RECLAIM,
	NUM_ACT_OVERRIDE, /* override-quarantine with a written justification */
	NUM_ACT_RETIRE,
	NUM_ACT__COUNT,
} num_action_t;

/* Who asks. The service derives the tenant roles by comparing the caller's tenant with the
 * number's: HOLDER holds its reservation or lease, PREV_TENANT is previous_tenant_id of its open
 * quarantine record, TENANT is any other tenant. SYSTEM is the service itself: jobs (expiry,
 * sweep, renewal) and event consumers (billing suspend/resume, bulk recall). */
typedef enum {
	NUM_ROLE_TENANT = 0,
	NUM_ROLE_HOLDER,
	NUM_ROLE_PREV_TENANT,
	NUM_ROLE_ADMIN, /* platform-admin */
	NUM_ROLE_COMPLIANCE,
	NUM_ROLE_SYSTEM,
	NUM_ROLE__COUNT,
} num_role_t;
#define NUM_ROLE_BIT(r) (1u << (r))

typedef enum {
	NUM_QR_NONE = 0,
	NUM_QR_RESERVATION_EXPIRED,
	NUM_QR_TENANT_RELEASE,
	NUM_QR_RECALL_ADMIN,
	NUM_QR_RECALL_ABUSE,
	NUM_QR__COUNT,
} num_qreason_t;

/* Lease status (spec "Leases"); NONE when the number has no lease. */
typedef enum {
	NUM_LEASE_NONE = 0,
	NUM_LEASE_ACTIVE,
	NUM_LEASE_SUSPENDED,
	NUM_LEASE_ENDED,
	NUM_LEASE__COUNT,
} num_lease_status_t;

/* Tenant pool status (spec "Tenant pools"); UNKNOWN only inside the index: not loaded yet. */
typedef enum {
	NUM_POOL_UNKNOWN = 0,
	NUM_POOL_ACTIVE,
	NUM_POOL_SUSPENDED,
	NUM_POOL__COUNT,
} num_pool_status_t;

/* Stable upper-case names ("AVAILABLE", "reserve" for actions as in the HTTP paths, ...) for
 * JSON, SQL and logs; "UNKNOWN" / "unknown" out of range. The parsers are exact inverses and
 * return 0 or -EINVAL. */
const char *num_kind_name(num_kind_t k);
const char *num_state_name(num_state_t s);
const char *num_action_name(num_action_t a);
const char *num_role_name(num_role_t r);
const char *num_qreason_name(num_qreason_t q);
const char *num_lease_status_name(num_lease_status_t s);
const char *num_pool_status_name(num_pool_status_t s);
int num_kind_parse(const char *name, num_kind_t *out);
int num_state_parse(const char *name, num_state_t *out);
int num_action_parse(const char *name, num_action_t *out);
int num_qreason_parse(const char *name, num_qreason_t *out);
int num_lease_status_parse(const char *name, num_lease_status_t *out);
int num_pool_status_parse(const char *name, num_pool_status_t *out);

/* Policy numbers legal and product tune (spec: "configurable; legal will tune them"). */
typedef struct num_lifecycle_cfg_s {
	int64_t cooloff_s[NUM_QR__COUNT]
	                 [NUM_KIND__COUNT]; /* quarantine cool-off per reason, kind */
	int64_t reserve_ttl_default_s;      /* 900 */
	int64_t reserve_ttl_max_s;          /* 7 d */
	uint32_t justification_min;         /* override: at least 20 bytes */
} num_lifecycle_cfg_t;

/* TENANT_RELEASE 90 d MSISDN / 30 d SHORT_CODE and ALPHA; RECALL_ADMIN 90 d; RECALL_ABUSE
 * 365 d; RESERVATION_EXPIRED 0 d; reservations 900 s by default, 7 d at most. */
extern const num_lifecycle_cfg_t num_lifecycle_cfg_default;

/* Every cool-off and TTL within [0, 10 y], default TTL in [1, max]. 0 or -EINVAL. */
int num_lifecycle_cfg_check(const num_lifecycle_cfg_t *cfg);

/* Runtime guard a row needs besides the role. */
typedef enum {
	NUM_GUARD_NONE = 0,
	NUM_GUARD_POOL_DIRECT_ASSIGN, /* tenants only when their pool allows direct assignment */
	NUM_GUARD_COOLOFF_ELAPSED,    /* now >= quarantine_until */
	NUM_GUARD_TENANT_RELEASE,     /* open quarantine record has reason TENANT_RELEASE */
	NUM_GUARD_JUSTIFICATION,      /* justification of at least cfg->justification_min bytes */
	NUM_GUARD_TERM_ELAPSED,       /* now >= term_ends_ms (the reservation's or lease's end) */
	NUM_GUARD__COUNT,
} num_guard_t;

/* Side effects the repository applies with the state change (the rows' on-transition actions). */
enum {
	NUM_TF_RESERVATION_OPEN = 1u << 0,  /* insert reservation, expires_at = now + TTL */
	NUM_TF_RESERVATION_CLOSE = 1u << 1, /* the live reservation ends */
	NUM_TF_LEASE_OPEN = 1u << 2,        /* insert an ACTIVE lease for the tenant */
	NUM_TF_LEASE_SUSPEND = 1u << 3,     /* live lease -> SUSPENDED */
	NUM_TF_LEASE_RESUME = 1u << 4,      /* live lease -> ACTIVE */
	NUM_TF_LEASE_END = 1u << 5,         /* live lease -> ENDED */
	NUM_TF_QUARANTINE_OPEN = 1u << 6,   /* insert quarantine record (reason, at, until, prev) */
	NUM_TF_QUARANTINE_CLOSE = 1u << 7,  /* the open quarantine record is closed */
	/* The row goes to `to` only when the cool-off for its reason is 0; with a positive
	 * cool-off (legal may configure one) it goes to QUARANTINED instead. */
	NUM_TF_QUARANTINE_IF_COOLOFF = 1u << 8,
};

/* One row of the table. */
typedef struct num_rule_s {
	num_state_t from;
	num_action_t action;
	num_state_t to;
	uint32_t roles; /* NUM_ROLE_BIT mask */
	num_guard_t guard;
	num_qreason_t reason; /* recorded quarantine reason; for recall the default of two */
	uint32_t reasons_ok;  /* 1u << reason values the caller may choose (recall), else 0 */
	uint32_t flags;       /* NUM_TF_* */
	const char *event;    /* outbox event of the transition, or NULL */
} num_rule_t;

/* The table, in spec order; n_out gets its length. */
const num_rule_t *num_lifecycle_rules(size_t *n_out);
/* Event emitted on entering a state ("number.quarantined.v1" for QUARANTINED), or NULL. */
const char *num_state_enter_event(num_state_t s);

/* What the caller knows when it asks for a transition. */
typedef struct num_step_s {
	num_role_t role;
	num_kind_t kind;
	int64_t now_ms;
	const num_lifecycle_cfg_t *cfg; /* NULL = num_lifecycle_cfg_default */
	bool pool_direct_assign;        /* assign from AVAILABLE by a tenant */
	int64_t ttl_s;                  /* reserve: requested TTL, 0 = default */
	num_qreason_t recall_reason;    /* recall: RECALL_ADMIN (also for NONE) or RECALL_ABUSE */
	num_qreason_t open_reason;      /* QUARANTINED: reason of the open quarantine record */
	int64_t quarantine_until_ms;    /* QUARANTINED: end of its cool-off */
	size_t justification_len;       /* override */
	int64_t term_ends_ms; /* expire: expires_at of the live reservation (RESERVED) or ends_at
	                       * of the live lease (ASSIGNED, SUSPENDED) */
} num_step_t;

/* The decided transition. */
typedef struct num_transition_s {
	const num_rule_t *rule;
	num_state_t from, to;
	num_action_t action;
	uint32_t flags;
	num_qreason_t reason;              /* NONE unless NUM_TF_QUARANTINE_OPEN */
	int64_t quarantine_until_ms;       /* reason set: now + cool-off (== now for 0 d) */
	int64_t reservation_expires_at_ms; /* NUM_TF_RESERVATION_OPEN: now + TTL */
	const char *events[2];             /* transition event, then the state's enter event */
} num_transition_t;

/* Decide (from, action) for in. Returns 0 and fills *out, or
 *   -EBUSY  no such row (INVALID_TRANSITION), or its state guard fails (cool-off not elapsed,
 *           reclaim of a quarantine that is not TENANT_RELEASE);
 *   -EPERM  the row exists but in->role may not take it (or a tenant's pool forbids direct
 *           assignment);
 *   -EINVAL an argument out of range, TTL above the maximum, recall reason not RECALL_*,
 *           justification too short.
 * Checked in that order, so a wrong role never learns more than "invalid transition" from a
 * guard. On error *out still carries from and action (for the 409 details). */
int num_lifecycle_step(num_state_t from, num_action_t action, const num_step_t *in,
                       num_transition_t *out);

/* The table as Markdown: the rows, the state x action matrix and the cool-offs of cfg (NULL =
 * defaults). Talloc string on ctx, NULL on allocation failure. */
char *num_lifecycle_markdown(void *ctx, const num_lifecycle_cfg_t *cfg);

#endif
