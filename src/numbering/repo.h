/* repo: the numbering database (sql/numbering/). Every lifecycle transition is one transaction:
 * read the number (and its live reservation, lease, quarantine record), decide with
 * num_lifecycle_step, compare-and-swap the row on `version`, apply the transition's side effects
 * (reservation/lease/quarantine rows, the pool's held counters under its quota), append the audit
 * row (chain "numbering") and the outbox events (the transition's events plus
 * num.cache.invalidate.v1 carrying key and version) — all or nothing.
 *
 * Errors come back as negative errno with err filled with the API code:
 *   NOT_FOUND (-ENOENT)            no such number / operator / pool (for a tenant-scoped read: not
 *                                  theirs either, so existence never leaks)
 *   CONFLICT (-ESTALE)             expected_version mismatch, or a concurrent change won the CAS;
 *                                  details.current_version
 *   INVALID_TRANSITION (-EBUSY)    the lifecycle has no such step for this state/role (also
 *                                  audited, in its own transaction, and counted); details.from,
 *                                  details.action
 *   QUOTA_EXCEEDED (-EDQUOT)       the tenant's pool quota for the kind, or its concurrent
 *                                  reservation limit, is reached
 *   FAILED_PRECONDITION (-EPROTO)  pool missing or SUSPENDED, kind/operator not allowed by the
 *                                  pool, vanity number without vanity_allowed; details.reason
 *   INVALID_ARGUMENT (-EINVAL)     bad TTL, term, recall reason, justification; details.field
 *   UNAVAILABLE (-EIO)             the database failed
 * Thread-safe: each call checks its own connection out of the store's pool. */
#ifndef NUM_REPO_H
#define NUM_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "gh-core.h"
#include "index.h"
#include "lifecycle.h"

typedef struct num_repo_s num_repo_t;

#define NUM_ID_MAX 64 /* tenant ids, operator ids, lease ids fit in 63 bytes */

/* A number as the API shows it: the row plus its live reservation, lease and quarantine. */
typedef struct num_number_s {
	uint64_t key; /* gh_ident key */
	char identifier[GH_IDENT_BUFSZ];
	char display[GH_IDENT_BUFSZ];
	num_kind_t kind;
	num_state_t state;
	char operator_id[NUM_ID_MAX]; /* "" for ALPHA without operator */
	char tenant_id[NUM_ID_MAX];   /* holder of the reservation or lease; "" when none */
	int vanity_tier;              /* 0 = ordinary */
	int64_t version;
	int64_t created_ms, updated_ms;

	bool has_reservation;
	int64_t reservation_created_ms, reservation_expires_ms;

	bool has_lease;
	char lease_id[37];
	num_lease_status_t lease_status;
	int64_t lease_starts_ms, lease_ends_ms;
	bool auto_renew;

	bool has_quarantine; /* open quarantine record */
	num_qreason_t quarantine_reason;
	int64_t quarantined_ms, quarantine_until_ms;
	char previous_tenant_id[NUM_ID_MAX];
} num_number_t;

/* A transition request. */
typedef struct num_tx_req_s {
	uint64_t key;
	num_action_t action;
	/* Who asks: ADMIN, COMPLIANCE or SYSTEM as such; for a tenant caller pass NUM_ROLE_TENANT
	 * with tenant_id set and the repo refines it to HOLDER / PREV_TENANT from the row. */
	num_role_t role;
	const char *tenant_id;    /* the tenant acted for: the caller (tenant roles) or, for admin
	                           * reserve/assign, the tenant receiving the number */
	const char *actor;        /* audit actor: "tenant:<id>", "admin:<sub>", "system:expiry" */
	int64_t expected_version; /* < 0: none */
	int64_t ttl_s;            /* reserve: 0 = default */
	int64_t term_days;        /* assign: 0 = the pool's default lease term */
	int auto_renew;           /* assign: -1 = the pool's default, else 0/1 */
	num_qreason_t recall_reason; /* recall: RECALL_ADMIN (NONE) or RECALL_ABUSE */
	const char *justification;   /* recall / override */
	const char *request_id;      /* for audit and events; may be NULL */
	const char *traceparent;     /* for events; may be NULL */
	int64_t now_ms;
} num_tx_req_t;

typedef struct num_repo_opts_s {
	const num_lifecycle_cfg_t *lifecycle; /* NULL: defaults */
	gh_metrics_t *metrics;                /* transitions/conflicts counters; may be NULL */
	gh_outbox_relay_t *relay; /* kicked after each commit with events; may be NULL */
} num_repo_opts_t;

/* Open the repository over a migrated store (sql/numbering). 0 or -ENOMEM. */
int num_repo_open(void *ctx, gh_store_t *store, const num_repo_opts_t *opts, num_repo_t **out);
gh_store_t *num_repo_store(const num_repo_t *r);

/* A handle on r whose calls run on c, inside the caller's open write transaction (the
 * Idempotency-Key transaction of gh_idem_handle), instead of in transactions of their own:
 * nothing is committed or rolled back by the repository, -EAGAIN asks the caller to retry its
 * whole transaction, the relay is not kicked (the caller's commit is followed by the caller's
 * kick or the relay's poll), and a refused transition is returned without its audit row (the
 * caller rolls back, then calls num_repo_audit_refused). Talloc child of ctx; valid while c
 * is checked out. 0 or -ENOMEM. */
int num_repo_on_conn(void *ctx, num_repo_t *r, gh_conn_t *c, num_repo_t **out);

/* Confine the rest of c's open transaction to tenant_id: on PostgreSQL `SET LOCAL
 * ghasi.tenant_id` (set_config(..., true)), so row-level security (sql/numbering) hides other
 * tenants' rows from every following statement and refuses writes of them, a second wall
 * behind the repository's own tenant checks; a no-op on SQLite, which has no RLS. Use with
 * num_repo_on_conn for the portal's transactions. 0 or the store's negative errno. */
int num_repo_scope_tenant(gh_conn_t *c, const char *tenant_id);

/* The audit row of a refused transition (action "number.transition_refused", details of err:
 * from, action), in a transaction of its own: what num_repo_transition does itself. 0 or
 * negative errno. */
int num_repo_audit_refused(num_repo_t *r, const num_tx_req_t *req, const gh_err_t *err);

/* ---- numbers ---------------------------------------------------------------------------- */

/* Apply a lifecycle transition (see top). On success *out is the number after it. */
int num_repo_transition(num_repo_t *r, const num_tx_req_t *req, num_number_t *out, gh_err_t *err);

/* Read one number. tenant_scope non-NULL: only a number that tenant holds (or held, for its
 * open TENANT_RELEASE quarantine) is visible, others are NOT_FOUND. */
int num_repo_get(num_repo_t *r, uint64_t key, const char *tenant_scope, num_number_t *out,
                 gh_err_t *err);

/* Add numbers (AVAILABLE, version 1) in one transaction, with one audit row each and
 * number.available.v1 events. identifiers are raw strings normalised as kind (GH_IDENT_AUTO
 * allowed); operator_id must exist for MSISDN and SHORT_CODE and match the MSISDN's prefix.
 * -EEXIST / ALREADY_EXISTS when any is already registered (nothing added). */
typedef struct num_new_s {
	const char *identifier;
	int kind; /* gh_ident_kind_t or GH_IDENT_AUTO */
	const char *operator_id;
	int vanity_tier;
} num_new_t;
int num_repo_add(num_repo_t *r, const num_new_t *nums, size_t n, const char *actor, int64_t now_ms,
                 gh_err_t *err);

/* List with filters (NULL / -1 = any) in key order, keyset-paged: after_key 0 = from the
 * start; *next_key gets the key to continue after, or 0 on the last page. Key order is that of
 * the keys as signed 64-bit integers (how they are stored): short codes, alpha ids, MSISDNs.
 * limit 1..1000; prefix and pattern are upper-cased (alpha ids are stored upper-case). */
typedef struct num_filter_s {
	int kind;  /* num_kind_t or -1 */
	int state; /* num_state_t or -1 */
	const char *operator_id;
	const char *tenant_id;
	const char *prefix;  /* canonical identifier prefix ("+93799") */
	const char *pattern; /* digits with '*' wildcards ("*777*"), matched on the identifier */
	int vanity_min;      /* vanity_tier >= this; -1 any */
	bool ordinary_only;  /* vanity_tier = 0 only (a pool without vanity_allowed browsing) */
	bool leased;         /* only numbers with a live lease */
	/* Only numbers this tenant holds or may reclaim (its open TENANT_RELEASE quarantine): what
	 * num_repo_get's tenant_scope shows. NULL: any. */
	const char *visible_to;
} num_filter_t;
int num_repo_list(num_repo_t *r, const num_filter_t *f, uint64_t after_key, int limit, void *ctx,
                  num_number_t **rows, size_t *n, uint64_t *next_key, gh_err_t *err);

/* Audit rows of one number (chain "numbering", entity "number"), oldest first, as a JSON array
 * of {seq, ts, actor, action, tenant_id, request_id, payload}. New reference. */
int num_repo_history(num_repo_t *r, uint64_t key, json_t **out, gh_err_t *err);

/* ---- jobs ------------------------------------------------------------------------------- */

/* Expire up to limit reservations with expires_at <= now (action EXPIRE by SYSTEM), each in
 * its own transaction. Returns the number expired or a negative errno. */
int num_repo_expire_due(num_repo_t *r, int64_t now_ms, int limit);
/* Move up to limit quarantined numbers whose cool-off elapsed to AVAILABLE (action SWEEP). */
int num_repo_sweep_due(num_repo_t *r, int64_t now_ms, int limit);
/* End up to limit live leases whose ends_at <= now: action EXPIRE by SYSTEM (actor
 * "system:lease-end"), so the number goes to QUARANTINED TENANT_RELEASE. Returns the count.
 * These three pick (key, version) and transition with that expected_version: a number another
 * replica moved first is skipped as a quiet CONFLICT, never audited as refused. */
int num_repo_end_leases_due(num_repo_t *r, int64_t now_ms, int limit);

/* Something due at due_ms for the number key at version (a reservation's expiry). */
typedef struct num_due_s {
	uint64_t key;
	int64_t version;
	int64_t due_ms;
} num_due_t;
/* The live reservations, earliest expires_at first, at most limit: what the expiry timers of a
 * starting replica arm. *rows is a talloc array on ctx. 0 or the store's error. */
int num_repo_reservations_live(num_repo_t *r, int limit, void *ctx, num_due_t **rows, size_t *n);

/* A lease the renewal job looks at: the number (with its live lease) and the holder's pool
 * lease_term_days, the term a renewal adds (0 when the holder has no pool). */
typedef struct num_renewal_s {
	num_number_t number;
	int64_t term_days;
} num_renewal_t;
/* Live (ACTIVE or SUSPENDED) auto_renew leases with now < ends_at <= before_ms, in key order
 * after after_key (0: from the start), at most limit (1..1000). *rows is a talloc array on ctx.
 * 0, -EINVAL, or the store's error. */
int num_repo_renewals_due(num_repo_t *r, int64_t now_ms, int64_t before_ms, uint64_t after_key,
                          int limit, void *ctx, num_renewal_t **rows, size_t *n);

typedef struct num_renew_req_s {
	uint64_t key;
	int64_t expected_version; /* < 0: none */
	const char *lease_id;     /* the live lease being renewed */
	int64_t term_days;        /* 1..3650 */
	const char *actor;        /* "system:renewal" */
	const char *request_id;   /* may be NULL */
	int64_t now_ms;
} num_renew_req_t;
/* Renew: ends_at of the live ACTIVE lease req->lease_id += term_days, in one transaction with a
 * CAS on the number's version (+1, so every replica's index learns the new ends_at; the state
 * stays ASSIGNED), number.renewed.v1 + num.cache.invalidate.v1, and the audit row
 * "number.renew" {lease_id, ends_before, ends_after, term_days, version}. Errors: NOT_FOUND,
 * CONFLICT (version moved), FAILED_PRECONDITION reason lease_not_active (not ASSIGNED, or the
 * lease is not the live ACTIVE one), INVALID_ARGUMENT (term), UNAVAILABLE. */
int num_repo_lease_renew(num_repo_t *r, const num_renew_req_t *req, num_number_t *out,
                         gh_err_t *err);
/* A renewal that did not happen (billing refused or unreachable, lease suspended): emit
 * number.renewal_failed.v1 (data: the number resource + reason, lease_id, actor) and append the
 * audit row "number.renewal_failed" {lease_id, reason, ends_at, version}; the number and its
 * lease are left as they are (the lease ends at ends_at). Uses key, lease_id, actor,
 * request_id and now_ms of req. 0, NOT_FOUND, UNAVAILABLE. */
int num_repo_renewal_failed(num_repo_t *r, const num_renew_req_t *req, const char *reason,
                            gh_err_t *err);

/* ---- the index -------------------------------------------------------------------------- */

/* Load every number into ix (tenants interned with their pool status), in pages. Returns 0 or
 * a negative errno; *loaded gets the count. A holder without a pool row reads as SUSPENDED
 * (fail-closed). Entries' operator_idx is the operator's position in num_repo_operator_table
 * plus 1 (0 = no operator): operators get the next idx at creation and are never deleted. */
int num_repo_load_index(num_repo_t *r, num_index_t *ix, size_t *loaded);
/* The index entry of one number read from the database (the fallback on a miss); tenants are
 * interned into ix. 0, -ENOENT (not registered), or -EIO. */
int num_repo_index_entry(num_repo_t *r, num_index_t *ix, uint64_t key, num_index_entry_t *out);

/* ---- operators and pools ---------------------------------------------------------------- */

/* Operators as JSON objects {id, name, mcc, mncs[], prefixes[], valid_from, valid_to, version}.
 * num_repo_seed_operators inserts gh_operators_default() when the table is empty. */
int num_repo_seed_operators(num_repo_t *r, int64_t now_ms, gh_err_t *err);
int num_repo_operators_list(num_repo_t *r, json_t **out, gh_err_t *err);
int num_repo_operator_get(num_repo_t *r, const char *id, json_t **out, gh_err_t *err);
/* Create (ALREADY_EXISTS when taken) or patch (CAS with expected_version >= 0) an operator from
 * a checked JSON body; prefixes must not overlap another operator's in overlapping validity. */
int num_repo_operator_create(num_repo_t *r, const json_t *body, const char *actor, int64_t now_ms,
                             json_t **out, gh_err_t *err);
int num_repo_operator_patch(num_repo_t *r, const char *id, const json_t *body,
                            int64_t expected_version, const char *actor, int64_t now_ms,
                            json_t **out, gh_err_t *err);
/* The operator table currently in the database, for prefix checks (copy into ops[cap]), in
 * creation order: ops[i] is operator_idx i + 1 of the index entries. */
int num_repo_operator_table(num_repo_t *r, gh_operator_t *ops, size_t cap, size_t *n);

/* Pools: {tenant_id, status, segment, quotas{MSISDN,SHORT_CODE,ALPHA}, held{...},
 * max_reservations, reservations, allowed_operators[], allowed_kinds[], vanity_allowed,
 * direct_assign, lease_term_days, auto_renew, version}. put creates or replaces the policy
 * (held counters are the database's, never the caller's); patch changes the given fields. A
 * status change to SUSPENDED/ACTIVE emits an event and invalidates the tenant in every index.
 * Every field is optional; put's defaults: ACTIVE, "smb", quotas 0, max_reservations 100,
 * allowed_* null (= any), vanity_allowed and direct_assign false, 30 days, auto_renew true.
 * held, reservations, version and tenant_id (must match) are accepted and ignored, so a GET
 * body can be PUT back. expected_version 0 means "must not exist yet". */
int num_repo_pool_get(num_repo_t *r, const char *tenant_id, json_t **out, gh_err_t *err);
int num_repo_pool_put(num_repo_t *r, const char *tenant_id, const json_t *body,
                      int64_t expected_version, const char *actor, int64_t now_ms, json_t **out,
                      gh_err_t *err);
int num_repo_pool_patch(num_repo_t *r, const char *tenant_id, const json_t *body,
                        int64_t expected_version, const char *actor, int64_t now_ms, json_t **out,
                        gh_err_t *err);

/* ---- metrics ---------------------------------------------------------------------------- */

/* Called once per pool with its quotas and held counters per kind (num_kind_t order). */
typedef void (*num_pool_usage_fn)(void *ud, const char *tenant_id, const int64_t *quota,
                                  const int64_t *held);
/* Every pool's quotas and held counters, in tenant order. 0 or -EIO. */
int num_repo_pool_usage(num_repo_t *r, num_pool_usage_fn fn, void *ud);
/* Numbers in QUARANTINED. 0 or -EIO. */
int num_repo_quarantine_backlog(num_repo_t *r, int64_t *count);

/* The number resource as JSON (the HTTP body): {identifier, kind, state, operator_id,
 * tenant_id?, version, vanity_tier, reservation?, lease?, quarantine?}. New reference. */
json_t *num_number_json(const num_number_t *n);

#endif
