/* repo: the numbering database. See repo.h for the contract; sql/numbering/ for the tables.
 *
 * A transition runs as one gh_store_tx: read the number with its live reservation, lease and
 * quarantine record (and, for reserve/assign/reclaim, the receiving tenant's pool, in the same
 * query); check expected_version; refine a tenant caller's role from the row; decide with
 * num_lifecycle_step; then write in a fixed order (number row CAS first, then the pool row,
 * then the side tables, the outbox rows, the audit chain head last), so that two transactions
 * never take the same two row locks in opposite orders, the CAS decides a race before any
 * unique index on reservations or leases could, and the chain head, which every transition
 * locks, is held for the fewest round trips. The number after is built in memory from what was
 * written, not read back. docs/numbering.md counts the statements. */
#include "repo.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "uuid.h"

#define SOURCE          "ghasi/numbering"
#define CHAIN           "numbering"
#define EV_INVALIDATE   "num.cache.invalidate.v1"
#define LOAD_PAGE       50000
#define OPS_MAX         256
#define TERM_DAYS_MAX   3650
#define LIST_LIMIT_MAX  1000
#define VANITY_TIER_MAX 255

/* Metric results of numbering_transitions_total. */
enum {
	RS_OK,
	RS_CONFLICT,
	RS_INVALID,
	RS_QUOTA,
	RS_PRECOND,
	RS_ARG,
	RS_NOTFOUND,
	RS_UNAVAIL,
	RS__N
};
static const char *const result_names[RS__N] = {
    "ok",
    "conflict",
    "invalid_transition",
    "quota_exceeded",
    "failed_precondition",
    "invalid_argument",
    "not_found",
    "unavailable",
};

struct num_repo_s {
	gh_store_t *store;
	num_lifecycle_cfg_t cfg;
	gh_outbox_relay_t *relay;
	gh_counter_t *transitions[NUM_ACT__COUNT][RS__N];
	gh_counter_t *conflicts;
	gh_conn_t *conn; /* num_repo_on_conn: run on the caller's transaction */
};

static const gh_tx_opts_t tx_write = {.flags = GH_TX_WRITE};

/* A write transaction of its own, or the caller's (num_repo_on_conn). */
static int repo_tx(num_repo_t *r, gh_tx_fn fn, void *ud)
{
	return r->conn ? fn(r->conn, ud) : gh_store_tx(r->store, fn, ud, &tx_write);
}

static int repo_acquire(num_repo_t *r, gh_conn_t **c)
{
	if (r->conn) {
		*c = r->conn;
		return 0;
	}
	return gh_store_acquire(r->store, 5000, c);
}

static void repo_release(num_repo_t *r, gh_conn_t *c)
{
	if (c != r->conn)
		gh_store_release(c);
}

/* ---- helpers -------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static bool str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* A store failure as UNAVAILABLE (-EIO); an error the caller already set is kept. */
static int db_fail(gh_err_t *err, int rc)
{
	if (err && err->code != GH_OK)
		return gh_code_errno(err->code);
	gh_log(GH_LOG_ERROR, "numbering: database failure", "errno", strerror(-rc), NULL);
	return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "the numbering database failed");
}

static bool holder_state(num_state_t s)
{
	return s == NUM_ST_RESERVED || s == NUM_ST_ASSIGNED || s == NUM_ST_SUSPENDED;
}

static json_t *time_json(int64_t ms)
{
	char buf[25];
	gh_time_format(ms, buf);
	return json_string(buf);
}

/* Space-separated list <-> JSON array of strings. */
static json_t *list_json(const char *s)
{
	json_t *a = json_array();
	while (s && *s) {
		while (*s == ' ')
			s++;
		size_t n = strcspn(s, " ");
		if (n)
			json_array_append_new(a, json_stringn(s, n));
		s += n;
	}
	return a;
}

static bool list_has(const char *list, const char *item)
{
	size_t n = strlen(item);
	for (const char *s = list; s && *s;) {
		while (*s == ' ')
			s++;
		size_t m = strcspn(s, " ");
		if (m == n && memcmp(s, item, n) == 0)
			return true;
		s += m;
	}
	return false;
}

/* ---- numbers: reading ----------------------------------------------------------------- */

#define NUMBER_COLS                                                                          \
	"n.key, n.identifier, n.display, n.kind, n.state, n.operator_id, n.tenant_id, "      \
	"n.vanity_tier, n.version, n.created_ms, n.updated_ms, r.created_ms, r.expires_ms, " \
	"l.lease_id, l.status, l.starts_ms, l.ends_ms, l.auto_renew, q.reason, "             \
	"q.quarantined_ms, q.until_ms, q.previous_tenant_id"
#define NUMBER_NCOLS 22
#define NUMBER_FROM                                                                    \
	" FROM num_numbers n"                                                          \
	" LEFT JOIN num_reservations r ON r.number_key = n.key AND r.ended_ms IS NULL" \
	" LEFT JOIN num_leases l ON l.number_key = n.key AND l.status <> 'ENDED'"      \
	" LEFT JOIN num_quarantines q ON q.number_key = n.key AND q.closed_ms IS NULL"

static void row_number(gh_rows_t *r, num_number_t *n)
{
	memset(n, 0, sizeof(*n));
	n->key = (uint64_t)gh_rows_i64(r, 0);
	copy_str(n->identifier, sizeof(n->identifier), gh_rows_text(r, 1));
	copy_str(n->display, sizeof(n->display), gh_rows_text(r, 2));
	num_kind_t k = NUM_KIND_MSISDN;
	num_state_t s = NUM_ST_RETIRED; /* an unreadable state reads as the inert one */
	num_kind_parse(gh_rows_text(r, 3), &k);
	num_state_parse(gh_rows_text(r, 4), &s);
	n->kind = k;
	n->state = s;
	copy_str(n->operator_id, sizeof(n->operator_id), gh_rows_text(r, 5));
	copy_str(n->tenant_id, sizeof(n->tenant_id), gh_rows_text(r, 6));
	n->vanity_tier = (int)gh_rows_i64(r, 7);
	n->version = gh_rows_i64(r, 8);
	n->created_ms = gh_rows_i64(r, 9);
	n->updated_ms = gh_rows_i64(r, 10);
	if (!gh_rows_isnull(r, 11)) {
		n->has_reservation = true;
		n->reservation_created_ms = gh_rows_i64(r, 11);
		n->reservation_expires_ms = gh_rows_i64(r, 12);
	}
	if (!gh_rows_isnull(r, 13)) {
		n->has_lease = true;
		copy_str(n->lease_id, sizeof(n->lease_id), gh_rows_text(r, 13));
		num_lease_status_t ls = NUM_LEASE_ENDED;
		num_lease_status_parse(gh_rows_text(r, 14), &ls);
		n->lease_status = ls;
		n->lease_starts_ms = gh_rows_i64(r, 15);
		n->lease_ends_ms = gh_rows_i64(r, 16);
		n->auto_renew = gh_rows_i64(r, 17) != 0;
	}
	if (!gh_rows_isnull(r, 18)) {
		n->has_quarantine = true;
		num_qreason_t q = NUM_QR_NONE;
		num_qreason_parse(gh_rows_text(r, 18), &q);
		n->quarantine_reason = q;
		n->quarantined_ms = gh_rows_i64(r, 19);
		n->quarantine_until_ms = gh_rows_i64(r, 20);
		copy_str(n->previous_tenant_id, sizeof(n->previous_tenant_id), gh_rows_text(r, 21));
	}
}

/* 0, -ENOENT, or the store's error. */
static int load_number(gh_conn_t *c, uint64_t key, num_number_t *out)
{
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT " NUMBER_COLS NUMBER_FROM " WHERE n.key = $1",
	                           (gh_val_t[]){GH_I64((int64_t)key)}, 1, &r);
	if (rc < 0)
		return rc;
	row_number(r, out);
	gh_rows_close(r);
	return 0;
}

json_t *num_number_json(const num_number_t *n)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "identifier", json_string(n->identifier));
	json_object_set_new(o, "display", json_string(n->display));
	json_object_set_new(o, "kind", json_string(num_kind_name(n->kind)));
	json_object_set_new(o, "state", json_string(num_state_name(n->state)));
	json_object_set_new(o, "operator_id",
	                    n->operator_id[0] ? json_string(n->operator_id) : json_null());
	if (n->tenant_id[0])
		json_object_set_new(o, "tenant_id", json_string(n->tenant_id));
	json_object_set_new(o, "version", json_integer(n->version));
	json_object_set_new(o, "vanity_tier", json_integer(n->vanity_tier));
	if (n->has_reservation)
		json_object_set_new(o, "reservation",
		                    json_pack("{s:o, s:o}", "created_at",
		                              time_json(n->reservation_created_ms), "expires_at",
		                              time_json(n->reservation_expires_ms)));
	if (n->has_lease)
		json_object_set_new(o, "lease",
		                    json_pack("{s:s, s:s, s:o, s:o, s:b}", "lease_id", n->lease_id,
		                              "status", num_lease_status_name(n->lease_status),
		                              "starts_at", time_json(n->lease_starts_ms), "ends_at",
		                              time_json(n->lease_ends_ms), "auto_renew",
		                              n->auto_renew));
	if (n->has_quarantine) {
		json_t *q =
		    json_pack("{s:s, s:o, s:o}", "reason", num_qreason_name(n->quarantine_reason),
		              "quarantined_at", time_json(n->quarantined_ms), "quarantine_until",
		              time_json(n->quarantine_until_ms));
		if (q && n->previous_tenant_id[0])
			json_object_set_new(q, "previous_tenant_id",
			                    json_string(n->previous_tenant_id));
		json_object_set_new(o, "quarantine", q);
	}
	return o;
}

static bool visible_to(const num_number_t *n, const char *tenant)
{
	if (str_eq(n->tenant_id, tenant))
		return true;
	return n->has_quarantine && n->quarantine_reason == NUM_QR_TENANT_RELEASE &&
	       str_eq(n->previous_tenant_id, tenant);
}

int num_repo_get(num_repo_t *r, uint64_t key, const char *tenant_scope, num_number_t *out,
                 gh_err_t *err)
{
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return db_fail(err, rc);
	rc = load_number(c, key, out);
	repo_release(r, c);
	if (rc == -ENOENT || (rc == 0 && tenant_scope && !visible_to(out, tenant_scope)))
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "number not found");
	return rc < 0 ? db_fail(err, rc) : 0;
}

/* ---- pools ---------------------------------------------------------------------------- */

static const char *const kind_col[NUM_KIND__COUNT] = {"msisdn", "short_code", "alpha"};

typedef struct pool_s {
	bool exists;
	char tenant_id[NUM_ID_MAX];
	num_pool_status_t status;
	char segment[32];
	int64_t quota[NUM_KIND__COUNT], held[NUM_KIND__COUNT];
	int64_t max_reservations, reservations;
	bool any_operator, any_kind;
	char allowed_operators[1024];
	char allowed_kinds[64];
	bool vanity_allowed, direct_assign, auto_renew;
	int64_t lease_term_days;
	int64_t version, created_ms, updated_ms;
} pool_t;

#define POOL_COLS                                                                                \
	"tenant_id, status, segment, quota_msisdn, quota_short_code, quota_alpha, held_msisdn, " \
	"held_short_code, held_alpha, max_reservations, reservations, allowed_operators, "       \
	"allowed_kinds, vanity_allowed, direct_assign, lease_term_days, auto_renew, version, "   \
	"created_ms, updated_ms"
#define POOL_COLS_P                                                                             \
	"p.tenant_id, p.status, p.segment, p.quota_msisdn, p.quota_short_code, p.quota_alpha, " \
	"p.held_msisdn, p.held_short_code, p.held_alpha, p.max_reservations, p.reservations, "  \
	"p.allowed_operators, p.allowed_kinds, p.vanity_allowed, p.direct_assign, "             \
	"p.lease_term_days, p.auto_renew, p.version, p.created_ms, p.updated_ms"

/* The pool columns of the current row from column off; a NULL tenant_id is no pool. */
static void row_pool(gh_rows_t *r, int off, pool_t *p)
{
	memset(p, 0, sizeof(*p));
	if (gh_rows_isnull(r, off))
		return;
	p->exists = true;
	copy_str(p->tenant_id, sizeof(p->tenant_id), gh_rows_text(r, off));
	num_pool_status_t st = NUM_POOL_SUSPENDED;
	num_pool_status_parse(gh_rows_text(r, off + 1), &st);
	p->status = st;
	copy_str(p->segment, sizeof(p->segment), gh_rows_text(r, off + 2));
	for (int k = 0; k < NUM_KIND__COUNT; k++) {
		p->quota[k] = gh_rows_i64(r, off + 3 + k);
		p->held[k] = gh_rows_i64(r, off + 6 + k);
	}
	p->max_reservations = gh_rows_i64(r, off + 9);
	p->reservations = gh_rows_i64(r, off + 10);
	p->any_operator = gh_rows_isnull(r, off + 11);
	copy_str(p->allowed_operators, sizeof(p->allowed_operators), gh_rows_text(r, off + 11));
	p->any_kind = gh_rows_isnull(r, off + 12);
	copy_str(p->allowed_kinds, sizeof(p->allowed_kinds), gh_rows_text(r, off + 12));
	p->vanity_allowed = gh_rows_i64(r, off + 13) != 0;
	p->direct_assign = gh_rows_i64(r, off + 14) != 0;
	p->lease_term_days = gh_rows_i64(r, off + 15);
	p->auto_renew = gh_rows_i64(r, off + 16) != 0;
	p->version = gh_rows_i64(r, off + 17);
	p->created_ms = gh_rows_i64(r, off + 18);
	p->updated_ms = gh_rows_i64(r, off + 19);
}

/* 0 (p->exists says whether there is one) or the store's error. */
static int load_pool(gh_conn_t *c, const char *tenant, pool_t *p)
{
	memset(p, 0, sizeof(*p));
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT " POOL_COLS " FROM num_pools WHERE tenant_id = $1",
	                           (gh_val_t[]){GH_TEXT(tenant)}, 1, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	row_pool(r, 0, p);
	gh_rows_close(r);
	return 0;
}

/* The number and, in the same round trip, the pool of the tenant receiving or keeping it: its
 * holder, else `asker` (may be NULL: no pool). 0, -ENOENT, or the store's error. */
static int load_number_pool(gh_conn_t *c, uint64_t key, const char *asker, num_number_t *n,
                            pool_t *p)
{
	gh_rows_t *r;
	int rc =
	    gh_conn_query_one(c,
	                      "SELECT " NUMBER_COLS ", " POOL_COLS_P NUMBER_FROM
	                      " LEFT JOIN num_pools p ON p.tenant_id = "
	                      "COALESCE(n.tenant_id, $2) WHERE n.key = $1",
	                      (gh_val_t[]){GH_I64((int64_t)key), GH_TEXT_OR_NULL(asker)}, 2, &r);
	if (rc < 0)
		return rc;
	row_number(r, n);
	row_pool(r, NUMBER_NCOLS, p);
	gh_rows_close(r);
	return 0;
}

static json_t *pool_json(const pool_t *p)
{
	json_t *quotas = json_object(), *held = json_object();
	for (int k = 0; k < NUM_KIND__COUNT; k++) {
		json_object_set_new(quotas, num_kind_name(k), json_integer(p->quota[k]));
		json_object_set_new(held, num_kind_name(k), json_integer(p->held[k]));
	}
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o, s:o, s:b, s:b, s:I, s:b, s:I}",
	                 "tenant_id", p->tenant_id, "status", num_pool_status_name(p->status),
	                 "segment", p->segment, "quotas", quotas, "held", held, "max_reservations",
	                 (json_int_t)p->max_reservations, "reservations",
	                 (json_int_t)p->reservations, "allowed_operators",
	                 p->any_operator ? json_null() : list_json(p->allowed_operators),
	                 "allowed_kinds", p->any_kind ? json_null() : list_json(p->allowed_kinds),
	                 "vanity_allowed", p->vanity_allowed, "direct_assign", p->direct_assign,
	                 "lease_term_days", (json_int_t)p->lease_term_days, "auto_renew",
	                 p->auto_renew, "version", (json_int_t)p->version);
}

/* ---- open ----------------------------------------------------------------------------- */

int num_repo_open(void *ctx, gh_store_t *store, const num_repo_opts_t *opts, num_repo_t **out)
{
	num_repo_t *r = talloc_zero(ctx, num_repo_t);
	if (!r)
		return -ENOMEM;
	r->store = store;
	r->cfg = opts && opts->lifecycle ? *opts->lifecycle : num_lifecycle_cfg_default;
	r->relay = opts ? opts->relay : NULL;
	gh_metrics_t *m = opts ? opts->metrics : NULL;
	if (m) {
		for (int a = 0; a < NUM_ACT__COUNT; a++)
			for (int s = 0; s < RS__N; s++) {
				char *l = gh_metrics_labels(r, "action", num_action_name(a),
				                            "result", result_names[s], NULL);
				r->transitions[a][s] = gh_metrics_counter(
				    m, "numbering_transitions_total",
				    "Lifecycle transitions asked for, by action and result", l);
				talloc_free(l);
			}
		r->conflicts =
		    gh_metrics_counter(m, "numbering_conflicts_total",
		                       "Transitions refused by a version conflict", NULL);
	}
	*out = r;
	return 0;
}

gh_store_t *num_repo_store(const num_repo_t *r) { return r->store; }

/* ---- events and audit ----------------------------------------------------------------- */

static void aggregate_of(const char *identifier, char buf[GH_IDENT_BUFSZ + 8])
{
	snprintf(buf, GH_IDENT_BUFSZ + 8, "number/%s", identifier);
}

/* The transition's events (names NULL are skipped) and the cache invalidation, in order, with
 * one gh_outbox_add_many: one aggregate upsert and one batch of rows. */
static int add_events(gh_conn_t *c, const num_number_t *n, const char *const *events, size_t nev,
                      const char *tenant, const char *actor, const char *request_id,
                      const char *traceparent, int64_t now_ms)
{
	enum { EV_MAX = 4 };
	char agg[GH_IDENT_BUFSZ + 8];
	aggregate_of(n->identifier, agg);
	gh_event_t evs[EV_MAX];
	size_t k = 0;
	json_t *data = NULL, *inv = NULL;
	int rc = 0;
	for (size_t i = 0; i < nev && k < EV_MAX - 1; i++) {
		if (!events[i])
			continue;
		if (!data) {
			data = num_number_json(n);
			if (!data)
				return -ENOMEM;
			json_object_set_new(data, "actor", json_string(actor ? actor : ""));
			json_object_set_new(data, "request_id",
			                    request_id ? json_string(request_id) : json_null());
		}
		evs[k++] = (gh_event_t){.type = events[i], .data = data};
	}
	char keybuf[24];
	snprintf(keybuf, sizeof(keybuf), "%llu", (unsigned long long)n->key);
	/* state and the reservation's end let every replica arm (or drop) its expiry timer */
	inv = json_pack("{s:s, s:s, s:I, s:s}", "key", keybuf, "identifier", n->identifier,
	                "version", (json_int_t)n->version, "state", num_state_name(n->state));
	if (!inv) {
		rc = -ENOMEM;
		goto out;
	}
	if (n->has_reservation)
		json_object_set_new(inv, "reservation_expires_ms",
		                    json_integer(n->reservation_expires_ms));
	evs[k++] = (gh_event_t){.type = EV_INVALIDATE, .data = inv};
	for (size_t i = 0; i < k; i++) {
		evs[i].source = SOURCE;
		evs[i].tenant_id = tenant;
		evs[i].aggregate_id = agg;
		evs[i].traceparent = traceparent;
		evs[i].time_ms = now_ms;
	}
	rc = gh_outbox_add_many(c, evs, k, NULL, NULL);
out:
	json_decref(data);
	json_decref(inv);
	return rc;
}

static int audit_one(gh_conn_t *c, const char *actor, const char *action, const char *etype,
                     const char *eid, const char *tenant, const json_t *payload, int64_t now_ms);

static void kick(num_repo_t *r)
{
	if (r->relay && !r->conn)
		gh_outbox_relay_kick(r->relay);
}

/* ---- transitions ---------------------------------------------------------------------- */

typedef struct tx_s {
	num_repo_t *r;
	const num_tx_req_t *req;
	gh_err_t *err;
	num_number_t cur, after;
	num_role_t role;
	bool refused; /* the lifecycle refused: audit it after the rollback */
	int result;
} tx_t;

static int conflict(tx_t *t, gh_conn_t *c, int64_t current)
{
	if (current < 0) {
		gh_rows_t *rw;
		if (gh_conn_query_one(c, "SELECT version FROM num_numbers WHERE key = $1",
		                      (gh_val_t[]){GH_I64((int64_t)t->req->key)}, 1, &rw) == 0) {
			current = gh_rows_i64(rw, 0);
			gh_rows_close(rw);
		}
	}
	t->result = RS_CONFLICT;
	int rc = gh_err_set(t->err, GH_E_CONFLICT, "/expected_version",
	                    "the number changed meanwhile (version %lld)", (long long)current);
	gh_err_detail(t->err, "current_version", json_integer(current));
	return rc;
}

static int precondition(tx_t *t, const char *reason, const char *msg)
{
	t->result = RS_PRECOND;
	int rc = gh_err_set(t->err, GH_E_FAILED_PRECONDITION, NULL, "%s", msg);
	gh_err_detail(t->err, "reason", json_string(reason));
	return rc;
}

static int quota_exceeded(tx_t *t, const char *what, int64_t limit)
{
	t->result = RS_QUOTA;
	int rc = gh_err_set(t->err, GH_E_QUOTA_EXCEEDED, NULL, "the tenant's %s is reached", what);
	gh_err_detail(t->err, "limit", json_string(what));
	gh_err_detail(t->err, "max", json_integer(limit));
	return rc;
}

static int bad_arg(tx_t *t, const char *field, const char *msg)
{
	t->result = RS_ARG;
	return gh_err_set(t->err, GH_E_INVALID_ARGUMENT, field, "%s", msg);
}

/* The pool policy for `tenant` receiving number n. */
static int pool_allows(tx_t *t, const pool_t *p, const num_number_t *n)
{
	if (!p->exists)
		return precondition(t, "pool_missing", "the tenant has no number pool");
	if (p->status != NUM_POOL_ACTIVE)
		return precondition(t, "pool_suspended", "the tenant's pool is suspended");
	if (!p->any_kind && !list_has(p->allowed_kinds, num_kind_name(n->kind)))
		return precondition(t, "kind_not_allowed", "the pool does not allow this kind");
	if (!p->any_operator && n->operator_id[0] &&
	    !list_has(p->allowed_operators, n->operator_id))
		return precondition(t, "operator_not_allowed",
		                    "the pool does not allow this operator");
	if (n->vanity_tier > 0 && !p->vanity_allowed)
		return precondition(t, "vanity_not_allowed",
		                    "the pool does not allow vanity numbers");
	return 0;
}

/* Add $2 to the kind's held counter and $3 to the live reservations of pool $1, neither below 0,
 * and only when an increase stays within its limit: 0 rows is a quota reached (or no pool). */
#define POOL_DELTA(k)                                                                              \
	"UPDATE num_pools SET held_" k " = CASE WHEN held_" k " + $2 < 0 THEN 0 ELSE held_" k      \
	" + $2 END, reservations = CASE WHEN reservations + $3 < 0 THEN 0 ELSE reservations + $3 " \
	"END WHERE tenant_id = $1 AND ($2 <= 0 OR held_" k " + $2 <= quota_" k ") AND ($3 <= 0 "   \
	"OR reservations + $3 <= max_reservations)"
static const char *const pool_delta_sql[NUM_KIND__COUNT] = {
    POOL_DELTA("msisdn"),
    POOL_DELTA("short_code"),
    POOL_DELTA("alpha"),
};

static int transition_fn(gh_conn_t *c, void *ud)
{
	tx_t *t = ud;
	const num_tx_req_t *req = t->req;
	num_repo_t *r = t->r;
	gh_err_clear(t->err);
	t->refused = false;
	t->result = RS_UNAVAIL;

	bool wants_pool = req->action == NUM_ACT_RESERVE || req->action == NUM_ACT_ASSIGN ||
	                  req->action == NUM_ACT_RECLAIM;
	const char *asker = req->tenant_id && *req->tenant_id ? req->tenant_id : NULL;
	pool_t pool = {0};
	int rc = wants_pool ? load_number_pool(c, req->key, asker, &t->cur, &pool)
	                    : load_number(c, req->key, &t->cur);
	if (rc == -ENOENT) {
		t->result = RS_NOTFOUND;
		return gh_err_set(t->err, GH_E_NOT_FOUND, NULL, "number not found");
	}
	if (rc < 0)
		return rc;
	const num_number_t *cur = &t->cur;
	if (req->expected_version >= 0 && req->expected_version != cur->version)
		return conflict(t, c, cur->version);

	/* who asks */
	t->role = req->role;
	const char *holder = cur->tenant_id[0] ? cur->tenant_id : NULL;
	if (req->role == NUM_ROLE_TENANT || req->role == NUM_ROLE_HOLDER ||
	    req->role == NUM_ROLE_PREV_TENANT) {
		if (!req->tenant_id || !*req->tenant_id)
			return bad_arg(t, "/tenant_id", "tenant_id is required");
		if (str_eq(holder, req->tenant_id))
			t->role = NUM_ROLE_HOLDER;
		else if (cur->has_quarantine && str_eq(cur->previous_tenant_id, req->tenant_id))
			t->role = NUM_ROLE_PREV_TENANT;
		else
			t->role = NUM_ROLE_TENANT;
	}
	/* the tenant receiving or keeping the number */
	const char *target = holder ? holder : req->tenant_id;
	if (target && !*target)
		target = NULL;
	num_step_t in = {
	    .role = t->role,
	    .kind = cur->kind,
	    .now_ms = req->now_ms,
	    .cfg = &r->cfg,
	    .pool_direct_assign = pool.exists && pool.direct_assign,
	    .ttl_s = req->ttl_s,
	    .recall_reason = req->recall_reason,
	    .open_reason = cur->has_quarantine ? cur->quarantine_reason : NUM_QR_NONE,
	    .quarantine_until_ms = cur->quarantine_until_ms,
	    .justification_len = req->justification ? strlen(req->justification) : 0,
	    .term_ends_ms =
	        cur->state == NUM_ST_RESERVED ? cur->reservation_expires_ms : cur->lease_ends_ms,
	};
	num_transition_t tr;
	rc = num_lifecycle_step(cur->state, req->action, &in, &tr);
	if (rc == -EBUSY || rc == -EPERM) {
		t->refused = true;
		t->result = RS_INVALID;
		rc = gh_err_set(t->err, GH_E_INVALID_TRANSITION, NULL,
		                "cannot %s a number in state %s", num_action_name(req->action),
		                num_state_name(cur->state));
		gh_err_detail(t->err, "from", json_string(num_state_name(cur->state)));
		gh_err_detail(t->err, "action", json_string(num_action_name(req->action)));
		return rc;
	}
	if (rc < 0) {
		const char *field = req->action == NUM_ACT_RESERVE    ? "/ttl_seconds"
		                    : req->action == NUM_ACT_RECALL   ? "/reason"
		                    : req->action == NUM_ACT_OVERRIDE ? "/justification"
		                                                      : "";
		return bad_arg(t, field, "argument out of range for this transition");
	}

	bool entering = !holder && holder_state(tr.to);
	bool leaving = holder && !holder_state(tr.to);
	const char *new_holder = holder_state(tr.to) ? target : NULL;
	if (holder && req->action == NUM_ACT_ASSIGN && req->tenant_id && *req->tenant_id &&
	    !str_eq(req->tenant_id, holder))
		return precondition(t, "reserved_by_other_tenant",
		                    "the number is reserved by another tenant");
	if (holder_state(tr.to) && !target)
		return bad_arg(t, "/tenant_id", "tenant_id is required");
	if (wants_pool && (rc = pool_allows(t, &pool, cur)) < 0)
		return rc;
	int64_t term_days = 0;
	int auto_renew = 0;
	if (tr.flags & NUM_TF_LEASE_OPEN) {
		term_days = req->term_days ? req->term_days : pool.lease_term_days;
		if (term_days < 1 || term_days > TERM_DAYS_MAX)
			return bad_arg(t, "/term_days", "term_days must be 1..3650");
		auto_renew = req->auto_renew < 0 ? pool.auto_renew : req->auto_renew != 0;
	}

	/* 1. the number row: compare-and-swap on version */
	int64_t n;
	rc = gh_conn_exec(
	    c,
	    "UPDATE num_numbers SET state = $1, tenant_id = $2, version = version + 1, "
	    "updated_ms = $3 WHERE key = $4 AND version = $5",
	    (gh_val_t[]){GH_TEXT(num_state_name(tr.to)), GH_TEXT_OR_NULL(new_holder),
	                 GH_I64(req->now_ms), GH_I64((int64_t)req->key), GH_I64(cur->version)},
	    5, &n);
	if (rc < 0)
		return rc;
	if (n == 0)
		return conflict(t, c, -1);

	/* 2. reservations, leases, quarantine records */
	const int64_t now = req->now_ms, key = (int64_t)req->key;
	const char *act = num_action_name(req->action);
	if (tr.flags & NUM_TF_RESERVATION_CLOSE &&
	    (rc = gh_conn_exec(c,
	                       "UPDATE num_reservations SET ended_ms = $1, end_action = $2 WHERE "
	                       "number_key = $3 AND ended_ms IS NULL",
	                       (gh_val_t[]){GH_I64(now), GH_TEXT(act), GH_I64(key)}, 3, NULL)) < 0)
		return rc;
	if (tr.flags & NUM_TF_RESERVATION_OPEN &&
	    (rc = gh_conn_exec(c,
	                       "INSERT INTO num_reservations (number_key, tenant_id, created_ms, "
	                       "expires_ms) VALUES ($1, $2, $3, $4)",
	                       (gh_val_t[]){GH_I64(key), GH_TEXT(target), GH_I64(now),
	                                    GH_I64(tr.reservation_expires_at_ms)},
	                       4, NULL)) < 0)
		return rc;
	const char *lease_status = (tr.flags & NUM_TF_LEASE_SUSPEND)  ? "SUSPENDED"
	                           : (tr.flags & NUM_TF_LEASE_RESUME) ? "ACTIVE"
	                           : (tr.flags & NUM_TF_LEASE_END)    ? "ENDED"
	                                                              : NULL;
	if (lease_status &&
	    (rc = gh_conn_exec(c,
	                       "UPDATE num_leases SET status = $1, updated_ms = $2, ended_ms = "
	                       "CASE WHEN $1 = 'ENDED' THEN $2 ELSE ended_ms END WHERE "
	                       "number_key = $3 AND status <> 'ENDED'",
	                       (gh_val_t[]){GH_TEXT(lease_status), GH_I64(now), GH_I64(key)}, 3,
	                       NULL)) < 0)
		return rc;
	if (tr.flags & NUM_TF_QUARANTINE_CLOSE &&
	    (rc = gh_conn_exec(c,
	                       "UPDATE num_quarantines SET closed_ms = $1, close_action = $2 WHERE "
	                       "number_key = $3 AND closed_ms IS NULL",
	                       (gh_val_t[]){GH_I64(now), GH_TEXT(act), GH_I64(key)}, 3, NULL)) < 0)
		return rc;
	char lease_id[37] = "";
	if (tr.flags & NUM_TF_LEASE_OPEN) {
		gh_uuid_v4(lease_id);
		rc = gh_conn_exec(
		    c,
		    "INSERT INTO num_leases (lease_id, number_key, tenant_id, starts_ms, "
		    "ends_ms, auto_renew, status, created_ms, updated_ms) VALUES ($1, $2, "
		    "$3, $4, $5, $6, 'ACTIVE', $4, $4)",
		    (gh_val_t[]){GH_TEXT(lease_id), GH_I64(key), GH_TEXT(target), GH_I64(now),
		                 GH_I64(now + term_days * 86400000LL), GH_I64(auto_renew)},
		    6, NULL);
		if (rc < 0)
			return rc;
	}
	if (tr.flags & NUM_TF_QUARANTINE_OPEN) {
		/* closed at once when the number does not stay QUARANTINED (a 0-day cool-off) */
		rc = gh_conn_exec(
		    c,
		    "INSERT INTO num_quarantines (number_key, reason, quarantined_ms, "
		    "until_ms, previous_tenant_id, closed_ms, close_action) VALUES ($1, "
		    "$2, $3, $4, $5, $6, $7)",
		    (gh_val_t[]){GH_I64(key), GH_TEXT(num_qreason_name(tr.reason)), GH_I64(now),
		                 GH_I64(tr.quarantine_until_ms), GH_TEXT_OR_NULL(holder),
		                 tr.to == NUM_ST_QUARANTINED ? GH_NULLV : GH_I64(now),
		                 tr.to == NUM_ST_QUARANTINED ? GH_NULLV : GH_TEXT(act)},
		    7, NULL);
		if (rc < 0)
			return rc;
	}

	/* 3. the number after, built from what was written (no read-back) */
	num_number_t *after = &t->after;
	*after = *cur;
	after->state = tr.to;
	copy_str(after->tenant_id, sizeof(after->tenant_id), new_holder ? new_holder : "");
	after->version = cur->version + 1;
	after->updated_ms = now;
	if (tr.flags & NUM_TF_RESERVATION_CLOSE)
		after->has_reservation = false;
	if (tr.flags & NUM_TF_RESERVATION_OPEN) {
		after->has_reservation = true;
		after->reservation_created_ms = now;
		after->reservation_expires_ms = tr.reservation_expires_at_ms;
	}
	if (after->has_lease && lease_status) {
		if (tr.flags & NUM_TF_LEASE_END)
			after->has_lease = false;
		else
			after->lease_status = (tr.flags & NUM_TF_LEASE_SUSPEND)
			                          ? NUM_LEASE_SUSPENDED
			                          : NUM_LEASE_ACTIVE;
	}
	if (tr.flags & NUM_TF_LEASE_OPEN) {
		after->has_lease = true;
		copy_str(after->lease_id, sizeof(after->lease_id), lease_id);
		after->lease_status = NUM_LEASE_ACTIVE;
		after->lease_starts_ms = now;
		after->lease_ends_ms = now + term_days * 86400000LL;
		after->auto_renew = auto_renew != 0;
	}
	if (tr.flags & NUM_TF_QUARANTINE_CLOSE)
		after->has_quarantine = false;
	if ((tr.flags & NUM_TF_QUARANTINE_OPEN) && tr.to == NUM_ST_QUARANTINED) {
		after->has_quarantine = true;
		after->quarantine_reason = tr.reason;
		after->quarantined_ms = now;
		after->quarantine_until_ms = tr.quarantine_until_ms;
		copy_str(after->previous_tenant_id, sizeof(after->previous_tenant_id),
		         holder ? holder : "");
	}
	if (!after->has_reservation)
		after->reservation_created_ms = after->reservation_expires_ms = 0;
	if (!after->has_lease) {
		after->lease_id[0] = '\0';
		after->lease_status = 0;
		after->lease_starts_ms = after->lease_ends_ms = 0;
		after->auto_renew = false;
	}
	if (!after->has_quarantine) {
		after->quarantine_reason = 0;
		after->quarantined_ms = after->quarantine_until_ms = 0;
		after->previous_tenant_id[0] = '\0';
	}

	/* 4. events */
	const char *tenant = new_holder ? new_holder : holder;
	rc = add_events(c, after, tr.events, 2, tenant, req->actor, req->request_id,
	                req->traceparent, now);
	if (rc < 0)
		return rc;

	/* 5. the pool: held counters under the quota, live reservations under their limit, in one
	 * conditional UPDATE (target is the holder whenever there is one). Its row lock, held until
	 * commit, orders the transitions of one tenant and it tests the latest committed counters,
	 * so concurrent transactions cannot overrun a quota (no write skew). All of one tenant's
	 * transitions queue on that lock, so it is taken late: only the audit row comes after. */
	int64_t dh = entering ? 1 : leaving ? -1 : 0;
	int64_t dr = ((tr.flags & NUM_TF_RESERVATION_OPEN) ? 1 : 0) -
	             ((tr.flags & NUM_TF_RESERVATION_CLOSE) && holder ? 1 : 0);
	if ((dh || dr) && target) {
		int64_t n_pool;
		if ((rc = gh_conn_exec(c, pool_delta_sql[cur->kind],
		                       (gh_val_t[]){GH_TEXT(target), GH_I64(dh), GH_I64(dr)}, 3,
		                       &n_pool)) < 0)
			return rc;
		if (n_pool == 0 && (dh > 0 || dr > 0)) {
			/* which limit: read the pool as the UPDATE saw it (the failure path only)
			 */
			pool_t now_pool;
			if ((rc = load_pool(c, target, &now_pool)) < 0)
				return rc;
			if (!now_pool.exists)
				return precondition(t, "pool_missing",
				                    "the tenant has no number pool");
			if (dh > 0 && now_pool.held[cur->kind] + dh > now_pool.quota[cur->kind])
				return quota_exceeded(t, kind_col[cur->kind],
				                      now_pool.quota[cur->kind]);
			return quota_exceeded(t, "max_reservations", now_pool.max_reservations);
		}
	}

	/* 6. the audit row, kept for commit (gh_audit_append): the chain head's row lock
	 * serialises every transition of the repository; it is taken at commit, its row and the
	 * COMMIT in one round trip. */
	json_t *payload = json_pack("{s:s, s:s, s:s, s:I}", "from", num_state_name(cur->state),
	                            "to", num_state_name(tr.to), "role", num_role_name(t->role),
	                            "version", (json_int_t)after->version);
	if (!payload)
		return -ENOMEM;
	if (tr.flags & NUM_TF_QUARANTINE_OPEN)
		json_object_set_new(payload, "quarantine_reason",
		                    json_string(num_qreason_name(tr.reason)));
	if (after->has_lease)
		json_object_set_new(payload, "lease_id", json_string(after->lease_id));
	if (req->justification && *req->justification)
		json_object_set_new(payload, "justification", json_string(req->justification));
	/* the lease term too: the regulator export replays leases from the chain (export.c) */
	if (after->has_lease)
		json_object_set_new(payload, "lease_ends", time_json(after->lease_ends_ms));
	char action[40];
	snprintf(action, sizeof(action), "number.%s", act);
	rc = gh_audit_append(c, CHAIN,
	                     &(gh_audit_rec_t){.ts_ms = now,
	                                       .actor = req->actor ? req->actor : "system",
	                                       .action = action,
	                                       .entity_type = "number",
	                                       .entity_id = cur->identifier,
	                                       .tenant_id = tenant,
	                                       .request_id = req->request_id,
	                                       .payload = payload},
	                     1, NULL);
	json_decref(payload);
	if (rc < 0)
		return rc;
	t->result = RS_OK;
	return 0;
}

static int refused_fn(gh_conn_t *c, void *ud)
{
	tx_t *t = ud;
	json_t *payload = json_pack("{s:s, s:s, s:s, s:I}", "from", num_state_name(t->cur.state),
	                            "action", num_action_name(t->req->action), "role",
	                            num_role_name(t->role), "version", (json_int_t)t->cur.version);
	if (!payload)
		return -ENOMEM;
	int rc =
	    gh_audit_append(c, CHAIN,
	                    &(gh_audit_rec_t){.ts_ms = t->req->now_ms,
	                                      .actor = t->req->actor ? t->req->actor : "system",
	                                      .action = "number.transition_refused",
	                                      .entity_type = "number",
	                                      .entity_id = t->cur.identifier,
	                                      .tenant_id = t->req->tenant_id,
	                                      .request_id = t->req->request_id,
	                                      .payload = payload},
	                    1, NULL);
	json_decref(payload);
	return rc;
}

int num_repo_transition(num_repo_t *r, const num_tx_req_t *req, num_number_t *out, gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	tx_t t = {.r = r, .req = req, .err = err};
	int rc;
	if ((unsigned)req->action >= NUM_ACT__COUNT || (unsigned)req->role >= NUM_ROLE__COUNT) {
		t.result = RS_ARG;
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL, "unknown action or role");
		goto out;
	}
	rc = repo_tx(r, transition_fn, &t);
	if (rc < 0 && t.refused && !r->conn) {
		int arc = repo_tx(r, refused_fn, &t);
		if (arc < 0)
			gh_log(GH_LOG_ERROR, "numbering: refused transition not audited", "errno",
			       strerror(-arc), NULL);
	}
	if (rc < 0) {
		if (err->code == GH_OK) {
			t.result = RS_UNAVAIL;
			rc = db_fail(err, rc);
		}
		goto out;
	}
	if (out)
		*out = t.after;
	kick(r);
out:
	if ((unsigned)req->action < NUM_ACT__COUNT)
		gh_counter_inc(r->transitions[req->action][t.result]);
	if (t.result == RS_CONFLICT)
		gh_counter_inc(r->conflicts);
	gh_err_clear(&local);
	return rc;
}

int num_repo_on_conn(void *ctx, num_repo_t *r, gh_conn_t *c, num_repo_t **out)
{
	num_repo_t *v = talloc(ctx, num_repo_t);
	if (!v)
		return -ENOMEM;
	*v = *r; /* the counters are shared; they are atomics owned by the registry */
	v->conn = c;
	*out = v;
	return 0;
}

int num_repo_scope_tenant(gh_conn_t *c, const char *tenant_id)
{
	if (gh_conn_backend(c) != GH_STORE_PG)
		return 0;
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT set_config('ghasi.tenant_id', $1, true)",
	                           (gh_val_t[]){GH_TEXT(tenant_id)}, 1, &r);
	if (rc == 0)
		gh_rows_close(r);
	return rc;
}

int num_repo_audit_refused(num_repo_t *r, const num_tx_req_t *req, const gh_err_t *err)
{
	(void)err;
	tx_t t = {.r = r, .req = req, .role = req->role};
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return rc;
	rc = load_number(c, req->key, &t.cur);
	repo_release(r, c);
	if (rc < 0)
		return rc;
	if (!r->conn)
		return gh_store_tx(r->store, refused_fn, &t, &tx_write);
	return refused_fn(r->conn, &t);
}

/* ---- operators: reading --------------------------------------------------------------- */

#define OPERATOR_COLS "id, name, mcc, mncs, prefixes, valid_from_ms, valid_to_ms, version, idx"

static void split_into(const char *s, char *dst, size_t width, size_t count)
{
	memset(dst, 0, width * count);
	size_t i = 0;
	while (s && *s && i < count) {
		while (*s == ' ')
			s++;
		size_t n = strcspn(s, " ");
		if (n && n < width) {
			memcpy(dst + i * width, s, n);
			i++;
		}
		s += n;
	}
}

static void row_operator(gh_rows_t *r, gh_operator_t *o, int64_t *version, int64_t *idx)
{
	memset(o, 0, sizeof(*o));
	copy_str(o->id, sizeof(o->id), gh_rows_text(r, 0));
	copy_str(o->name, sizeof(o->name), gh_rows_text(r, 1));
	copy_str(o->mcc, sizeof(o->mcc), gh_rows_text(r, 2));
	split_into(gh_rows_text(r, 3), &o->mnc[0][0], sizeof(o->mnc[0]), GH_OPERATOR_MAX_MNC);
	split_into(gh_rows_text(r, 4), &o->prefixes[0][0], sizeof(o->prefixes[0]),
	           GH_OPERATOR_MAX_PREFIXES);
	o->valid_from_ms = gh_rows_i64(r, 5);
	o->valid_to_ms = gh_rows_i64(r, 6);
	if (version)
		*version = gh_rows_i64(r, 7);
	if (idx)
		*idx = gh_rows_i64(r, 8);
}

/* Every operator in idx order into ops[cap] (and their idx); 0 or the store's error. */
static int load_operators(gh_conn_t *c, gh_operator_t *ops, int64_t *idxs, size_t cap, size_t *n)
{
	gh_rows_t *r;
	*n = 0;
	int rc = gh_conn_query(c, "SELECT " OPERATOR_COLS " FROM num_operators ORDER BY idx", NULL,
	                       0, &r);
	if (rc < 0)
		return rc;
	while ((rc = gh_rows_next(r)) > 0 && *n < cap) {
		row_operator(r, &ops[*n], NULL, idxs ? &idxs[*n] : NULL);
		(*n)++;
	}
	gh_rows_close(r);
	return rc < 0 ? rc : 0;
}

static json_t *operator_json(const gh_operator_t *o, int64_t version)
{
	json_t *mncs = json_array(), *prefixes = json_array();
	for (int i = 0; i < GH_OPERATOR_MAX_MNC && o->mnc[i][0]; i++)
		json_array_append_new(mncs, json_string(o->mnc[i]));
	for (int i = 0; i < GH_OPERATOR_MAX_PREFIXES && o->prefixes[i][0]; i++)
		json_array_append_new(prefixes, json_string(o->prefixes[i]));
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I}", "id", o->id, "name", o->name,
	                 "mcc", o->mcc, "mncs", mncs, "prefixes", prefixes, "valid_from",
	                 o->valid_from_ms ? time_json(o->valid_from_ms) : json_null(), "valid_to",
	                 o->valid_to_ms ? time_json(o->valid_to_ms) : json_null(), "version",
	                 (json_int_t)version);
}

/* ---- numbers: adding ------------------------------------------------------------------ */

typedef struct add_s {
	num_repo_t *r;
	size_t n;
	gh_ident_t *ids;
	const num_new_t *nums;
	const char **op_ids;
	int64_t *op_idx;
	const char *actor;
	int64_t now_ms;
	gh_err_t *err;
} add_t;

static int add_fn(gh_conn_t *c, void *ud)
{
	add_t *a = ud;
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	int rc = -ENOMEM;
	enum { NP = 9 };
	gh_val_t *p = talloc_array(tmp, gh_val_t, a->n * NP);
	gh_audit_rec_t *recs = talloc_zero_array(tmp, gh_audit_rec_t, a->n);
	json_t **payloads = talloc_zero_array(tmp, json_t *, a->n);
	if (!p || !recs || !payloads)
		goto out;
	for (size_t i = 0; i < a->n; i++) {
		const gh_ident_t *id = &a->ids[i];
		gh_val_t *row = p + i * NP;
		row[0] = GH_I64((int64_t)id->key);
		row[1] = GH_TEXT(id->canonical);
		row[2] = GH_TEXT(id->display);
		row[3] = GH_TEXT(num_kind_name((num_kind_t)id->kind));
		row[4] = GH_TEXT_OR_NULL(a->op_ids[i]);
		row[5] = GH_I64(a->op_idx[i]);
		row[6] = GH_I64(a->nums[i].vanity_tier);
		row[7] = GH_I64(a->now_ms);
		row[8] = GH_I64(a->now_ms);
		payloads[i] =
		    json_pack("{s:s, s:o, s:i, s:i}", "kind", num_kind_name((num_kind_t)id->kind),
		              "operator_id", a->op_ids[i] ? json_string(a->op_ids[i]) : json_null(),
		              "vanity_tier", a->nums[i].vanity_tier, "version", 1);
		if (!payloads[i])
			goto out;
		recs[i] = (gh_audit_rec_t){.ts_ms = a->now_ms,
		                           .actor = a->actor ? a->actor : "system",
		                           .action = "number.add",
		                           .entity_type = "number",
		                           .entity_id = id->canonical,
		                           .payload = payloads[i]};
	}
	rc = gh_conn_exec_batch(c,
	                        "INSERT INTO num_numbers (key, identifier, display, kind, "
	                        "operator_id, operator_idx, state, vanity_tier, version, "
	                        "created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, "
	                        "'AVAILABLE', $7, 1, $8, $9)",
	                        p, NP, a->n, NULL);
	if (rc == -EEXIST) {
		rc = gh_err_set(a->err, GH_E_ALREADY_EXISTS, "/numbers",
		                "a number is already registered");
		goto out;
	}
	if (rc < 0 || (rc = gh_audit_append(c, CHAIN, recs, a->n, NULL)) < 0)
		goto out;
	static const char *const ev[1] = {"number.available.v1"};
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		num_number_t nn = {.key = a->ids[i].key,
		                   .kind = (num_kind_t)a->ids[i].kind,
		                   .state = NUM_ST_AVAILABLE,
		                   .vanity_tier = a->nums[i].vanity_tier,
		                   .version = 1,
		                   .created_ms = a->now_ms,
		                   .updated_ms = a->now_ms};
		copy_str(nn.identifier, sizeof(nn.identifier), a->ids[i].canonical);
		copy_str(nn.display, sizeof(nn.display), a->ids[i].display);
		copy_str(nn.operator_id, sizeof(nn.operator_id), a->op_ids[i]);
		rc = add_events(c, &nn, ev, 1, NULL, a->actor, NULL, NULL, a->now_ms);
	}
out:
	for (size_t i = 0; payloads && i < a->n; i++)
		json_decref(payloads[i]);
	talloc_free(tmp);
	return rc;
}

static int cmp_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int num_repo_add(num_repo_t *r, const num_new_t *nums, size_t n, const char *actor, int64_t now_ms,
                 gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	if (n == 0)
		return 0;
	void *tmp = talloc_new(NULL);
	gh_ident_t *ids = talloc_array(tmp, gh_ident_t, n);
	const char **op_ids = talloc_zero_array(tmp, const char *, n);
	int64_t *op_idx = talloc_zero_array(tmp, int64_t, n);
	uint64_t *keys = talloc_array(tmp, uint64_t, n);
	gh_operator_t *ops = talloc_array(tmp, gh_operator_t, OPS_MAX);
	int64_t *idxs = talloc_array(tmp, int64_t, OPS_MAX);
	int rc = -ENOMEM;
	if (!tmp || !ids || !op_ids || !op_idx || !keys || !ops || !idxs)
		goto out;
	size_t nops = 0;
	gh_conn_t *c;
	if ((rc = repo_acquire(r, &c)) < 0) {
		rc = db_fail(err, rc);
		goto out;
	}
	rc = load_operators(c, ops, idxs, OPS_MAX, &nops);
	repo_release(r, c);
	if (rc < 0) {
		rc = db_fail(err, rc);
		goto out;
	}
	char field[64];
	for (size_t i = 0; i < n; i++) {
		const num_new_t *nw = &nums[i];
		snprintf(field, sizeof(field), "/numbers/%zu/identifier", i);
		if (!nw->identifier || (nw->kind < GH_IDENT_AUTO || nw->kind >= GH_IDENT__COUNT)) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
			                "identifier or kind missing");
			goto out;
		}
		size_t len = strnlen(nw->identifier, GH_IDENT_INPUT_MAX + 1);
		if ((rc = gh_ident_normalize(NULL, (gh_ident_kind_t)nw->kind, nw->identifier, len,
		                             &ids[i], err)) < 0) {
			copy_str(err->field, sizeof(err->field), field);
			goto out;
		}
		keys[i] = ids[i].key;
		snprintf(field, sizeof(field), "/numbers/%zu/vanity_tier", i);
		if (nw->vanity_tier < 0 || nw->vanity_tier > VANITY_TIER_MAX) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
			                "vanity_tier must be 0..255");
			goto out;
		}
		snprintf(field, sizeof(field), "/numbers/%zu/operator_id", i);
		const char *opid = nw->operator_id && *nw->operator_id ? nw->operator_id : NULL;
		if (!opid && ids[i].kind != GH_IDENT_ALPHA) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
			                "operator_id is required for %s",
			                gh_ident_kind_name(ids[i].kind));
			goto out;
		}
		if (opid) {
			const gh_operator_t *o = gh_operator_find(ops, nops, opid);
			if (!o) {
				rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
				                "unknown operator");
				goto out;
			}
			if (ids[i].kind == GH_IDENT_MSISDN &&
			    gh_operator_for_msisdn(ops, nops, ids[i].canonical, now_ms) != o) {
				rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
				                "the number is not in the operator's prefixes");
				goto out;
			}
			op_ids[i] = o->id;
			op_idx[i] = idxs[o - ops];
		}
	}
	qsort(keys, n, sizeof(*keys), cmp_key);
	for (size_t i = 1; i < n; i++)
		if (keys[i] == keys[i - 1]) {
			rc = gh_err_set(err, GH_E_ALREADY_EXISTS, "/numbers",
			                "an identifier appears twice in the request");
			goto out;
		}
	add_t a = {.r = r,
	           .n = n,
	           .ids = ids,
	           .nums = nums,
	           .op_ids = op_ids,
	           .op_idx = op_idx,
	           .actor = actor,
	           .now_ms = now_ms,
	           .err = err};
	rc = repo_tx(r, add_fn, &a);
	if (rc < 0) {
		rc = db_fail(err, rc);
		goto out;
	}
	kick(r);
out:
	talloc_free(tmp);
	gh_err_clear(&local);
	return rc;
}

/* ---- numbers: listing and history ----------------------------------------------------- */

/* LIKE pattern from a prefix or a '*' pattern: upper-cased, [0-9A-Z +] only. */
static char *like_of(void *ctx, const char *s, bool prefix)
{
	size_t n = strlen(s);
	if (n == 0 || n > 32)
		return NULL;
	char *o = talloc_size(ctx, n + 2);
	if (!o)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '*' && !prefix)
			o[j++] = '%';
		else if (isdigit((unsigned char)ch) || isalpha((unsigned char)ch) || ch == ' ' ||
		         ch == '+')
			o[j++] = (char)toupper((unsigned char)ch);
		else
			return NULL;
	}
	if (prefix)
		o[j++] = '%';
	o[j] = '\0';
	return o;
}

int num_repo_list(num_repo_t *r, const num_filter_t *f, uint64_t after_key, int limit, void *ctx,
                  num_number_t **rows, size_t *n, uint64_t *next_key, gh_err_t *err)
{
	*rows = NULL;
	*n = 0;
	*next_key = 0;
	if (limit < 1 || limit > LIST_LIMIT_MAX)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/limit", "limit must be 1..1000");
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	gh_val_t p[12];
	int np = 0;
	p[np++] = GH_I64(after_key ? (int64_t)after_key : INT64_MIN);
	char *sql = talloc_strdup(tmp, "SELECT " NUMBER_COLS NUMBER_FROM " WHERE n.key > $1");
	int rc = 0;
	if (f && f->kind >= 0) {
		if (f->kind >= NUM_KIND__COUNT) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/kind", "unknown kind");
			goto out;
		}
		p[np++] = GH_TEXT(num_kind_name(f->kind));
		sql = talloc_asprintf_append(sql, " AND n.kind = $%d", np);
	}
	if (f && f->state >= 0) {
		if (f->state >= NUM_ST__COUNT) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/state", "unknown state");
			goto out;
		}
		p[np++] = GH_TEXT(num_state_name(f->state));
		sql = talloc_asprintf_append(sql, " AND n.state = $%d", np);
	}
	if (f && f->operator_id) {
		p[np++] = GH_TEXT(f->operator_id);
		sql = talloc_asprintf_append(sql, " AND n.operator_id = $%d", np);
	}
	if (f && f->tenant_id) {
		p[np++] = GH_TEXT(f->tenant_id);
		sql = talloc_asprintf_append(sql, " AND n.tenant_id = $%d", np);
	}
	if (f && f->prefix) {
		char *l = like_of(tmp, f->prefix, true);
		if (!l) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/prefix", "bad prefix");
			goto out;
		}
		p[np++] = GH_TEXT(l);
		sql = talloc_asprintf_append(sql, " AND n.identifier LIKE $%d", np);
	}
	if (f && f->pattern) {
		char *l = like_of(tmp, f->pattern, false);
		if (!l) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/pattern",
			                "pattern: digits and letters with '*' wildcards");
			goto out;
		}
		p[np++] = GH_TEXT(l);
		sql = talloc_asprintf_append(sql, " AND n.identifier LIKE $%d", np);
	}
	if (f && f->visible_to) {
		p[np++] = GH_TEXT(f->visible_to);
		sql = talloc_asprintf_append(sql,
		                             " AND (n.tenant_id = $%1$d OR (q.reason = "
		                             "'TENANT_RELEASE' AND q.previous_tenant_id = $%1$d))",
		                             np);
	}
	if (f && f->ordinary_only)
		sql = talloc_asprintf_append(sql, " AND n.vanity_tier = 0");
	if (f && f->leased)
		sql = talloc_asprintf_append(sql, " AND l.lease_id IS NOT NULL");
	if (f && f->vanity_min >= 0) {
		p[np++] = GH_I64(f->vanity_min);
		sql = talloc_asprintf_append(sql, " AND n.vanity_tier >= $%d", np);
	}
	p[np++] = GH_I64(limit + 1);
	sql = talloc_asprintf_append(sql, " ORDER BY n.key LIMIT $%d", np);
	if (!sql) {
		rc = -ENOMEM;
		goto out;
	}
	num_number_t *out = talloc_array(ctx, num_number_t, (size_t)limit);
	if (!out) {
		rc = -ENOMEM;
		goto out;
	}
	gh_conn_t *c;
	if ((rc = repo_acquire(r, &c)) < 0) {
		talloc_free(out);
		rc = db_fail(err, rc);
		goto out;
	}
	gh_rows_t *rs;
	size_t k = 0;
	bool more = false;
	if ((rc = gh_conn_query(c, sql, p, np, &rs)) == 0) {
		while ((rc = gh_rows_next(rs)) > 0) {
			if (k == (size_t)limit) {
				more = true;
				break;
			}
			row_number(rs, &out[k++]);
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc < 0) {
		talloc_free(out);
		rc = db_fail(err, rc);
		goto out;
	}
	rc = 0;
	*rows = out;
	*n = k;
	*next_key = more ? out[k - 1].key : 0;
out:
	talloc_free(tmp);
	return rc;
}

int num_repo_history(num_repo_t *r, uint64_t key, json_t **out, gh_err_t *err)
{
	*out = NULL;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return db_fail(err, rc);
	json_t *arr = json_array();
	gh_rows_t *rs;
	char ident[GH_IDENT_BUFSZ] = "";
	rc = gh_conn_query_one(c, "SELECT identifier FROM num_numbers WHERE key = $1",
	                       (gh_val_t[]){GH_I64((int64_t)key)}, 1, &rs);
	if (rc == 0) {
		copy_str(ident, sizeof(ident), gh_rows_text(rs, 0));
		gh_rows_close(rs);
		rc = gh_conn_query(
		    c,
		    "SELECT seq, ts_ms, actor, action, tenant_id, request_id, payload "
		    "FROM gh_audit WHERE chain = $1 AND entity_type = 'number' AND "
		    "entity_id = $2 ORDER BY seq",
		    (gh_val_t[]){GH_TEXT(CHAIN), GH_TEXT(ident)}, 2, &rs);
		if (rc == 0) {
			while ((rc = gh_rows_next(rs)) > 0) {
				json_t *payload = json_loads(gh_rows_text(rs, 6), 0, NULL);
				json_t *row = json_pack(
				    "{s:I, s:o, s:s, s:s, s:o, s:o, s:o}", "seq",
				    (json_int_t)gh_rows_i64(rs, 0), "ts",
				    time_json(gh_rows_i64(rs, 1)), "actor", gh_rows_text(rs, 2),
				    "action", gh_rows_text(rs, 3), "tenant_id",
				    gh_rows_isnull(rs, 4) ? json_null()
				                          : json_string(gh_rows_text(rs, 4)),
				    "request_id",
				    gh_rows_isnull(rs, 5) ? json_null()
				                          : json_string(gh_rows_text(rs, 5)),
				    "payload", payload ? payload : json_object());
				json_array_append_new(arr, row);
			}
			gh_rows_close(rs);
		}
	}
	repo_release(r, c);
	if (rc == -ENOENT) {
		json_decref(arr);
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "number not found");
	}
	if (rc < 0) {
		json_decref(arr);
		return db_fail(err, rc);
	}
	*out = arr;
	return 0;
}

/* ---- jobs ----------------------------------------------------------------------------- */

/* Apply action (by SYSTEM) to up to limit numbers selected by sql($1 = now, $2 = limit), which
 * returns (key, version): each transition sends that version as expected_version, so a number
 * another replica (or an expiry timer) moved meanwhile is a quiet CONFLICT - never an audited
 * INVALID_TRANSITION. */
static int run_due(num_repo_t *r, const char *sql, num_action_t action, const char *actor,
                   int64_t now_ms, int limit)
{
	if (limit < 1)
		return 0;
	int64_t *keys = talloc_array(NULL, int64_t, 2 * (size_t)limit);
	if (!keys)
		return -ENOMEM;
	size_t n = 0;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		goto out;
	gh_rows_t *rs;
	if ((rc = gh_conn_query(c, sql, (gh_val_t[]){GH_I64(now_ms), GH_I64(limit)}, 2, &rs)) ==
	    0) {
		while ((rc = gh_rows_next(rs)) > 0 && n < (size_t)limit) {
			keys[2 * n] = gh_rows_i64(rs, 0);
			keys[2 * n + 1] = gh_rows_i64(rs, 1);
			n++;
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc < 0)
		goto out;
	int done = 0;
	for (size_t i = 0; i < n; i++) {
		gh_err_t err = {0};
		num_tx_req_t req = {.key = (uint64_t)keys[2 * i],
		                    .action = action,
		                    .role = NUM_ROLE_SYSTEM,
		                    .actor = actor,
		                    .expected_version = keys[2 * i + 1],
		                    .now_ms = now_ms};
		int trc = num_repo_transition(r, &req, NULL, &err);
		gh_err_clear(&err);
		if (trc == 0)
			done++;
		else if (trc == -EIO) {
			rc = -EIO; /* the database failed: stop, the next run retries */
			break;
		}
		/* CONFLICT / INVALID_TRANSITION: someone else moved the number first */
	}
	if (rc >= 0)
		rc = done;
out:
	talloc_free(keys);
	return rc;
}

/* The (key, version) of the numbers whose open row (cond) in table (alias a) falls due at column
 * at <= $1, oldest first, at most $2. */
#define DUE_SQL(table, a, cond, at)                                                          \
	"SELECT " a ".number_key, n.version FROM " table " JOIN num_numbers n ON n.key = " a \
	".number_key WHERE " cond " AND " at " <= $1 ORDER BY " at " LIMIT $2"

int num_repo_expire_due(num_repo_t *r, int64_t now_ms, int limit)
{
	return run_due(r, DUE_SQL("num_reservations r", "r", "r.ended_ms IS NULL", "r.expires_ms"),
	               NUM_ACT_EXPIRE, "system:expiry", now_ms, limit);
}

int num_repo_sweep_due(num_repo_t *r, int64_t now_ms, int limit)
{
	return run_due(r, DUE_SQL("num_quarantines q", "q", "q.closed_ms IS NULL", "q.until_ms"),
	               NUM_ACT_SWEEP, "system:sweep", now_ms, limit);
}

int num_repo_end_leases_due(num_repo_t *r, int64_t now_ms, int limit)
{
	return run_due(r, DUE_SQL("num_leases l", "l", "l.status <> 'ENDED'", "l.ends_ms"),
	               NUM_ACT_EXPIRE, "system:lease-end", now_ms, limit);
}

int num_repo_reservations_live(num_repo_t *r, int limit, void *ctx, num_due_t **rows, size_t *n)
{
	*rows = NULL;
	*n = 0;
	if (limit < 1)
		return 0;
	num_due_t *out = talloc_array(ctx, num_due_t, (size_t)limit);
	if (!out)
		return -ENOMEM;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		goto fail;
	gh_rows_t *rs;
	size_t k = 0;
	rc = gh_conn_query(c,
	                   "SELECT r.number_key, n.version, r.expires_ms FROM num_reservations r "
	                   "JOIN num_numbers n ON n.key = r.number_key WHERE r.ended_ms IS NULL "
	                   "ORDER BY r.expires_ms LIMIT $1",
	                   (gh_val_t[]){GH_I64(limit)}, 1, &rs);
	if (rc == 0) {
		while ((rc = gh_rows_next(rs)) > 0 && k < (size_t)limit)
			out[k++] = (num_due_t){.key = (uint64_t)gh_rows_i64(rs, 0),
			                       .version = gh_rows_i64(rs, 1),
			                       .due_ms = gh_rows_i64(rs, 2)};
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc < 0)
		goto fail;
	*rows = out;
	*n = k;
	return 0;
fail:
	talloc_free(out);
	return rc;
}

/* ---- lease renewal -------------------------------------------------------------------- */

int num_repo_renewals_due(num_repo_t *r, int64_t now_ms, int64_t before_ms, uint64_t after_key,
                          int limit, void *ctx, num_renewal_t **rows, size_t *n)
{
	*rows = NULL;
	*n = 0;
	if (limit < 1 || limit > LIST_LIMIT_MAX)
		return -EINVAL;
	num_renewal_t *out = talloc_array(ctx, num_renewal_t, (size_t)limit);
	if (!out)
		return -ENOMEM;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		goto fail;
	gh_rows_t *rs;
	size_t k = 0;
	rc = gh_conn_query(c,
	                   "SELECT " NUMBER_COLS ", p.lease_term_days" NUMBER_FROM
	                   " LEFT JOIN num_pools p ON p.tenant_id = l.tenant_id WHERE l.auto_renew "
	                   "= 1 AND l.ends_ms > $1 AND l.ends_ms <= $2 AND n.key > $3 ORDER BY "
	                   "n.key LIMIT $4",
	                   (gh_val_t[]){GH_I64(now_ms), GH_I64(before_ms),
	                                GH_I64(after_key ? (int64_t)after_key : INT64_MIN),
	                                GH_I64(limit)},
	                   4, &rs);
	if (rc == 0) {
		while ((rc = gh_rows_next(rs)) > 0 && k < (size_t)limit) {
			row_number(rs, &out[k].number);
			out[k].term_days =
			    gh_rows_isnull(rs, NUMBER_NCOLS) ? 0 : gh_rows_i64(rs, NUMBER_NCOLS);
			k++;
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc < 0)
		goto fail;
	*rows = out;
	*n = k;
	return 0;
fail:
	talloc_free(out);
	return rc;
}

typedef struct renew_tx_s {
	const num_renew_req_t *req;
	const char *reason; /* renewal_failed */
	gh_err_t *err;
	num_number_t cur, after;
} renew_tx_t;

/* Both renewal transactions start by loading the number (t->cur) under the lock. */
static int renew_load(gh_conn_t *c, renew_tx_t *t)
{
	gh_err_clear(t->err);
	int rc = load_number(c, t->req->key, &t->cur);
	if (rc == -ENOENT)
		return gh_err_set(t->err, GH_E_NOT_FOUND, NULL, "number not found");
	return rc;
}

static int renew_fn(gh_conn_t *c, void *ud)
{
	renew_tx_t *t = ud;
	const num_renew_req_t *req = t->req;
	int rc = renew_load(c, t);
	if (rc < 0)
		return rc;
	const num_number_t *cur = &t->cur;
	if (req->expected_version >= 0 && req->expected_version != cur->version) {
		rc = gh_err_set(t->err, GH_E_CONFLICT, "/expected_version",
		                "the number changed meanwhile (version %lld)",
		                (long long)cur->version);
		gh_err_detail(t->err, "current_version", json_integer(cur->version));
		return rc;
	}
	if (cur->state != NUM_ST_ASSIGNED || !cur->has_lease ||
	    cur->lease_status != NUM_LEASE_ACTIVE || !str_eq(cur->lease_id, req->lease_id)) {
		rc = gh_err_set(t->err, GH_E_FAILED_PRECONDITION, NULL,
		                "the lease is not the number's live ACTIVE lease");
		gh_err_detail(t->err, "reason", json_string("lease_not_active"));
		return rc;
	}
	const int64_t now = req->now_ms, key = (int64_t)req->key;
	const int64_t ends = cur->lease_ends_ms + req->term_days * 86400000LL;
	int64_t n;
	/* the version moves so that every index learns the new ends_at (ValidateLease reads it) */
	if ((rc = gh_conn_exec(c,
	                       "UPDATE num_numbers SET version = version + 1, updated_ms = $1 "
	                       "WHERE key = $2 AND version = $3",
	                       (gh_val_t[]){GH_I64(now), GH_I64(key), GH_I64(cur->version)}, 3,
	                       &n)) < 0)
		return rc;
	if (n == 0) {
		rc = gh_err_set(t->err, GH_E_CONFLICT, "/expected_version",
		                "the number changed meanwhile");
		gh_err_detail(t->err, "current_version", json_integer(cur->version));
		return rc;
	}
	if ((rc = gh_conn_exec(c,
	                       "UPDATE num_leases SET ends_ms = $1, updated_ms = $2 WHERE lease_id "
	                       "= $3 AND status = 'ACTIVE'",
	                       (gh_val_t[]){GH_I64(ends), GH_I64(now), GH_TEXT(req->lease_id)}, 3,
	                       NULL)) < 0)
		return rc;
	t->after = *cur;
	t->after.version = cur->version + 1;
	t->after.updated_ms = now;
	t->after.lease_ends_ms = ends;
	const char *ev[] = {"number.renewed.v1"};
	if ((rc = add_events(c, &t->after, ev, 1, cur->tenant_id, req->actor, req->request_id, NULL,
	                     now)) < 0)
		return rc;
	json_t *payload =
	    json_pack("{s:s, s:o, s:o, s:I, s:I}", "lease_id", req->lease_id, "ends_before",
	              time_json(cur->lease_ends_ms), "ends_after", time_json(ends), "term_days",
	              (json_int_t)req->term_days, "version", (json_int_t)t->after.version);
	if (!payload)
		return -ENOMEM;
	rc = audit_one(c, req->actor, "number.renew", "number", cur->identifier, cur->tenant_id,
	               payload, now);
	json_decref(payload);
	return rc;
}

int num_repo_lease_renew(num_repo_t *r, const num_renew_req_t *req, num_number_t *out,
                         gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	int rc;
	if (!req->lease_id || req->term_days < 1 || req->term_days > TERM_DAYS_MAX) {
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/term_days",
		                "a lease id and term_days 1..3650 are required");
		goto out;
	}
	renew_tx_t t = {.req = req, .err = err};
	rc = repo_tx(r, renew_fn, &t);
	if (rc < 0) {
		if (err->code == GH_OK)
			rc = db_fail(err, rc);
		if (err->code == GH_E_CONFLICT)
			gh_counter_inc(r->conflicts);
		goto out;
	}
	if (out)
		*out = t.after;
	kick(r);
out:
	gh_err_clear(&local);
	return rc;
}

static int renewal_failed_fn(gh_conn_t *c, void *ud)
{
	renew_tx_t *t = ud;
	const num_renew_req_t *req = t->req;
	int rc = renew_load(c, t);
	if (rc < 0)
		return rc;
	const num_number_t *cur = &t->cur;
	json_t *data = num_number_json(cur);
	if (!data)
		return -ENOMEM;
	json_object_set_new(data, "reason", json_string(t->reason));
	json_object_set_new(data, "lease_id", json_string(req->lease_id ? req->lease_id : ""));
	json_object_set_new(data, "actor", json_string(req->actor ? req->actor : ""));
	json_object_set_new(data, "request_id",
	                    req->request_id ? json_string(req->request_id) : json_null());
	char agg[GH_IDENT_BUFSZ + 8];
	aggregate_of(cur->identifier, agg);
	gh_event_t ev = {.type = "number.renewal_failed.v1",
	                 .source = SOURCE,
	                 .tenant_id = cur->tenant_id[0] ? cur->tenant_id : NULL,
	                 .aggregate_id = agg,
	                 .time_ms = req->now_ms,
	                 .data = data};
	rc = gh_outbox_add(c, &ev, NULL, NULL);
	json_decref(data);
	if (rc < 0)
		return rc;
	json_t *payload =
	    json_pack("{s:s, s:s, s:o, s:I}", "lease_id", req->lease_id ? req->lease_id : "",
	              "reason", t->reason, "ends_at", time_json(cur->lease_ends_ms), "version",
	              (json_int_t)cur->version);
	if (!payload)
		return -ENOMEM;
	rc = audit_one(c, req->actor, "number.renewal_failed", "number", cur->identifier,
	               cur->tenant_id[0] ? cur->tenant_id : NULL, payload, req->now_ms);
	json_decref(payload);
	return rc;
}

int num_repo_renewal_failed(num_repo_t *r, const num_renew_req_t *req, const char *reason,
                            gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	renew_tx_t t = {.req = req, .reason = reason && *reason ? reason : "unknown", .err = err};
	int rc = repo_tx(r, renewal_failed_fn, &t);
	if (rc < 0 && err->code == GH_OK)
		rc = db_fail(err, rc);
	if (rc == 0)
		kick(r);
	gh_err_clear(&local);
	return rc;
}

/* ---- the index ------------------------------------------------------------------------ */

#define INDEX_COLS                                                                            \
	"n.key, n.version, n.state, n.tenant_id, n.operator_idx, n.vanity_tier, l.lease_id, " \
	"l.status, l.ends_ms"
#define INDEX_FROM                                                                            \
	" FROM num_numbers n LEFT JOIN num_leases l ON l.number_key = n.key AND l.status <> " \
	"'ENDED'"

typedef struct tcache_s {
	char id[NUM_ID_MAX];
	uint32_t tidx;
} tcache_t;

/* The index tenant of id: known, or interned with status `nopool` (what a tenant without a
 * pool row reads as). */
static int tenant_of(num_index_t *ix, tcache_t *tc, const char *id, num_pool_status_t nopool,
                     uint32_t *tidx)
{
	if (tc && tc->tidx && strcmp(tc->id, id) == 0) {
		*tidx = tc->tidx;
		return 0;
	}
	int rc = num_index_tenant_find(ix, id, tidx);
	if (rc == -ENOENT) {
		if ((rc = num_index_tenant_intern(ix, id, tidx)) < 0)
			return rc;
		num_index_tenant_set_status(ix, *tidx, nopool);
	}
	if (rc == 0 && tc) {
		copy_str(tc->id, sizeof(tc->id), id);
		tc->tidx = *tidx;
	}
	return rc;
}

static int row_entry(gh_rows_t *rs, num_index_t *ix, tcache_t *tc, num_index_entry_t *e)
{
	memset(e, 0, sizeof(*e));
	e->key = (uint64_t)gh_rows_i64(rs, 0);
	e->version = (uint64_t)gh_rows_i64(rs, 1);
	num_state_t st = NUM_ST_RETIRED;
	num_state_parse(gh_rows_text(rs, 2), &st);
	e->state = (uint8_t)st;
	if (!gh_rows_isnull(rs, 3)) {
		int rc = tenant_of(ix, tc, gh_rows_text(rs, 3), NUM_POOL_SUSPENDED, &e->tenant);
		if (rc < 0)
			return rc;
	}
	e->operator_idx = (uint16_t)gh_rows_i64(rs, 4);
	e->vanity_tier = (uint8_t)gh_rows_i64(rs, 5);
	if (!gh_rows_isnull(rs, 6)) {
		gh_uuid_parse(gh_rows_text(rs, 6), e->lease_id);
		num_lease_status_t ls = NUM_LEASE_ENDED;
		num_lease_status_parse(gh_rows_text(rs, 7), &ls);
		e->lease_status = (uint8_t)ls;
		e->lease_ends_at_ms = gh_rows_i64(rs, 8);
	}
	return 0;
}

int num_repo_load_index(num_repo_t *r, num_index_t *ix, size_t *loaded)
{
	*loaded = 0;
	num_index_entry_t *buf = talloc_array(NULL, num_index_entry_t, LOAD_PAGE);
	if (!buf)
		return -ENOMEM;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		goto out_free;
	/* every pool first, so numbers' tenants come with their status */
	gh_rows_t *rs;
	if ((rc = gh_conn_query(c, "SELECT tenant_id, status FROM num_pools", NULL, 0, &rs)) < 0)
		goto out;
	while ((rc = gh_rows_next(rs)) > 0) {
		uint32_t tidx;
		num_pool_status_t st = NUM_POOL_SUSPENDED;
		num_pool_status_parse(gh_rows_text(rs, 1), &st);
		if ((rc = num_index_tenant_intern(ix, gh_rows_text(rs, 0), &tidx)) < 0)
			break;
		num_index_tenant_set_status(ix, tidx, st);
	}
	gh_rows_close(rs);
	if (rc < 0)
		goto out;
	tcache_t tc = {0};
	int64_t after = INT64_MIN;
	for (;;) {
		rc = gh_conn_query(
		    c, "SELECT " INDEX_COLS INDEX_FROM " WHERE n.key > $1 ORDER BY n.key LIMIT $2",
		    (gh_val_t[]){GH_I64(after), GH_I64(LOAD_PAGE)}, 2, &rs);
		if (rc < 0)
			goto out;
		size_t n = 0;
		while ((rc = gh_rows_next(rs)) > 0) {
			if ((rc = row_entry(rs, ix, &tc, &buf[n])) < 0)
				break;
			n++;
		}
		gh_rows_close(rs);
		if (rc < 0)
			goto out;
		if (n == 0)
			break;
		size_t done = 0;
		if ((rc = num_index_load(ix, buf, n, &done)) < 0)
			goto out;
		*loaded += n;
		after = (int64_t)buf[n - 1].key;
		if (n < LOAD_PAGE)
			break;
	}
	rc = 0;
out:
	repo_release(r, c);
out_free:
	talloc_free(buf);
	return rc < 0 && rc != -ENOSPC && rc != -EINVAL ? -EIO : rc;
}

int num_repo_index_entry(num_repo_t *r, num_index_t *ix, uint64_t key, num_index_entry_t *out)
{
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return -EIO;
	gh_rows_t *rs;
	rc = gh_conn_query_one(
	    c,
	    "SELECT " INDEX_COLS ", p.status" INDEX_FROM
	    " LEFT JOIN num_pools p ON p.tenant_id = n.tenant_id WHERE n.key = $1",
	    (gh_val_t[]){GH_I64((int64_t)key)}, 1, &rs);
	if (rc == 0) {
		rc = row_entry(rs, ix, NULL, out);
		if (rc == 0 && out->tenant) {
			num_pool_status_t st = NUM_POOL_SUSPENDED;
			if (!gh_rows_isnull(rs, 9))
				num_pool_status_parse(gh_rows_text(rs, 9), &st);
			num_index_tenant_set_status(ix, out->tenant, st);
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc == -ENOENT)
		return -ENOENT;
	return rc < 0 ? -EIO : 0;
}

/* ---- operators ------------------------------------------------------------------------ */

static int audit_one(gh_conn_t *c, const char *actor, const char *action, const char *etype,
                     const char *eid, const char *tenant, const json_t *payload, int64_t now_ms)
{
	return gh_audit_append(c, CHAIN,
	                       &(gh_audit_rec_t){.ts_ms = now_ms,
	                                         .actor = actor ? actor : "system",
	                                         .action = action,
	                                         .entity_type = etype,
	                                         .entity_id = eid,
	                                         .tenant_id = tenant,
	                                         .payload = payload},
	                       1, NULL);
}

static char *joined(void *ctx, const char *base, size_t width, size_t count)
{
	char *s = talloc_strdup(ctx, "");
	for (size_t i = 0; s && i < count && base[i * width]; i++)
		s = talloc_asprintf_append(s, "%s%s", i ? " " : "", base + i * width);
	return s;
}

static int insert_operator(gh_conn_t *c, void *tmp, const gh_operator_t *o, int64_t now_ms)
{
	char *mncs = joined(tmp, &o->mnc[0][0], sizeof(o->mnc[0]), GH_OPERATOR_MAX_MNC);
	char *prefixes =
	    joined(tmp, &o->prefixes[0][0], sizeof(o->prefixes[0]), GH_OPERATOR_MAX_PREFIXES);
	if (!mncs || !prefixes)
		return -ENOMEM;
	return gh_conn_exec(c,
	                    "INSERT INTO num_operators (id, idx, name, mcc, mncs, prefixes, "
	                    "valid_from_ms, valid_to_ms, version, created_ms, updated_ms) VALUES "
	                    "($1, (SELECT COALESCE(MAX(idx), 0) + 1 FROM num_operators), $2, $3, "
	                    "$4, $5, $6, $7, 1, $8, $8)",
	                    (gh_val_t[]){GH_TEXT(o->id), GH_TEXT(o->name), GH_TEXT(o->mcc),
	                                 GH_TEXT(mncs), GH_TEXT(prefixes), GH_I64(o->valid_from_ms),
	                                 GH_I64(o->valid_to_ms), GH_I64(now_ms)},
	                    8, NULL);
}

typedef struct op_tx_s {
	const json_t *body;
	const char *id;
	int64_t expected_version;
	const char *actor;
	int64_t now_ms;
	gh_err_t *err;
	json_t *out;
} op_tx_t;

static int seed_fn(gh_conn_t *c, void *ud)
{
	op_tx_t *o = ud;
	gh_rows_t *rs;
	int rc = gh_conn_query_one(c, "SELECT COUNT(*) FROM num_operators", NULL, 0, &rs);
	if (rc < 0)
		return rc;
	int64_t count = gh_rows_i64(rs, 0);
	gh_rows_close(rs);
	if (count > 0)
		return 0;
	size_t n;
	const gh_operator_t *ops = gh_operators_default(&n);
	void *tmp = talloc_new(NULL);
	for (size_t i = 0; i < n && rc == 0; i++) {
		json_t *j = operator_json(&ops[i], 1);
		rc = insert_operator(c, tmp, &ops[i], o->now_ms);
		if (rc == 0)
			rc = audit_one(c, o->actor, "operator.create", "operator", ops[i].id, NULL,
			               j, o->now_ms);
		json_decref(j);
	}
	talloc_free(tmp);
	return rc;
}

int num_repo_seed_operators(num_repo_t *r, int64_t now_ms, gh_err_t *err)
{
	op_tx_t o = {.actor = "system:seed", .now_ms = now_ms, .err = err};
	int rc = repo_tx(r, seed_fn, &o);
	if (rc == -EEXIST)
		return 0; /* another replica seeded meanwhile */
	return rc < 0 ? db_fail(err, rc) : 0;
}

int num_repo_operators_list(num_repo_t *r, json_t **out, gh_err_t *err)
{
	*out = NULL;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return db_fail(err, rc);
	json_t *arr = json_array();
	gh_rows_t *rs;
	if ((rc = gh_conn_query(c, "SELECT " OPERATOR_COLS " FROM num_operators ORDER BY idx", NULL,
	                        0, &rs)) == 0) {
		while ((rc = gh_rows_next(rs)) > 0) {
			gh_operator_t op;
			int64_t v;
			row_operator(rs, &op, &v, NULL);
			json_array_append_new(arr, operator_json(&op, v));
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	if (rc < 0) {
		json_decref(arr);
		return db_fail(err, rc);
	}
	*out = arr;
	return 0;
}

static int get_operator(gh_conn_t *c, const char *id, gh_operator_t *op, int64_t *version)
{
	gh_rows_t *rs;
	int rc = gh_conn_query_one(c, "SELECT " OPERATOR_COLS " FROM num_operators WHERE id = $1",
	                           (gh_val_t[]){GH_TEXT(id)}, 1, &rs);
	if (rc < 0)
		return rc;
	row_operator(rs, op, version, NULL);
	gh_rows_close(rs);
	return 0;
}

int num_repo_operator_get(num_repo_t *r, const char *id, json_t **out, gh_err_t *err)
{
	*out = NULL;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return db_fail(err, rc);
	gh_operator_t op;
	int64_t v;
	rc = get_operator(c, id, &op, &v);
	repo_release(r, c);
	if (rc == -ENOENT)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "operator not found");
	if (rc < 0)
		return db_fail(err, rc);
	*out = operator_json(&op, v);
	return 0;
}

static const gh_json_field_t operator_fields[] = {
    {"id", GH_JSON_STRING, 0, 0, 0, NULL},
    {"name", GH_JSON_STRING, 0, 0, 0, NULL},
    {"mcc", GH_JSON_STRING, 0, 0, 0, NULL},
    {"mncs", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING, NULL},
    {"prefixes", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING, NULL},
    {"valid_from", GH_JSON_STRING, 0, 1, 0, NULL},
    {"valid_to", GH_JSON_STRING, 0, 1, 0, NULL},
    {"version", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* Copy a string array into fixed cells; -EINVAL (err on field) when it does not fit. */
static int cells_from(const json_t *a, char *dst, size_t width, size_t count, const char *field,
                      gh_err_t *err)
{
	if (json_array_size(a) > count)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, field, "at most %zu entries", count);
	memset(dst, 0, width * count);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		const char *s = json_string_value(v);
		if (!s || strlen(s) >= width || strchr(s, ' '))
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, field, "bad entry %zu", i);
		memcpy(dst + i * width, s, strlen(s));
	}
	return 0;
}

/* Apply body onto o (create: every identifying field required). */
static int operator_from_body(const json_t *body, bool create, gh_operator_t *o, gh_err_t *err)
{
	int rc = gh_json_check(body, operator_fields, "", err);
	if (rc < 0)
		return rc;
	static const char *const required[] = {"id", "name", "mcc", "mncs", "prefixes"};
	for (size_t i = 0; create && i < sizeof(required) / sizeof(*required); i++)
		if (!json_object_get(body, required[i])) {
			char f[32];
			snprintf(f, sizeof(f), "/%s", required[i]);
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, f, "%s is required",
			                  required[i]);
		}
	if (!create && json_object_get(body, "id") &&
	    strcmp(gh_json_get_str(body, "id", ""), o->id) != 0)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/id", "the id cannot change");
	const struct {
		const char *key;
		char *dst;
		size_t cap;
	} strs[] = {{"id", o->id, sizeof(o->id)},
	            {"name", o->name, sizeof(o->name)},
	            {"mcc", o->mcc, sizeof(o->mcc)}};
	for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++) {
		const char *s = gh_json_get_str(body, strs[i].key, NULL);
		if (!s)
			continue;
		if (strlen(s) >= strs[i].cap) {
			char f[32];
			snprintf(f, sizeof(f), "/%s", strs[i].key);
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, f, "too long");
		}
		copy_str(strs[i].dst, strs[i].cap, s);
	}
	const json_t *a;
	if ((a = json_object_get(body, "mncs")) &&
	    (rc = cells_from(a, &o->mnc[0][0], sizeof(o->mnc[0]), GH_OPERATOR_MAX_MNC, "/mncs",
	                     err)) < 0)
		return rc;
	if ((a = json_object_get(body, "prefixes")) &&
	    (rc = cells_from(a, &o->prefixes[0][0], sizeof(o->prefixes[0]),
	                     GH_OPERATOR_MAX_PREFIXES, "/prefixes", err)) < 0)
		return rc;
	const char *tkeys[2] = {"valid_from", "valid_to"};
	int64_t *tdst[2] = {&o->valid_from_ms, &o->valid_to_ms};
	for (int i = 0; i < 2; i++) {
		const json_t *v = json_object_get(body, tkeys[i]);
		if (!v)
			continue;
		if (json_is_null(v)) {
			*tdst[i] = 0;
			continue;
		}
		if (gh_time_parse(json_string_value(v), tdst[i]) < 0) {
			char f[32];
			snprintf(f, sizeof(f), "/%s", tkeys[i]);
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, f, "not an RFC 3339 time");
		}
	}
	return 0;
}

/* The table with o added (or replacing the entry of its id) must check. */
static int operator_table_ok(gh_conn_t *c, void *tmp, const gh_operator_t *o, gh_err_t *err)
{
	gh_operator_t *ops = talloc_array(tmp, gh_operator_t, OPS_MAX + 1);
	if (!ops)
		return -ENOMEM;
	size_t n;
	int rc = load_operators(c, ops, NULL, OPS_MAX, &n);
	if (rc < 0)
		return rc;
	size_t i = 0;
	while (i < n && strcmp(ops[i].id, o->id) != 0)
		i++;
	ops[i] = *o;
	if (i == n)
		n++;
	return gh_operator_table_check(ops, n, err);
}

static int op_create_fn(gh_conn_t *c, void *ud)
{
	op_tx_t *o = ud;
	gh_err_clear(o->err);
	json_decref(o->out);
	o->out = NULL;
	gh_operator_t op = {0};
	int rc = operator_from_body(o->body, true, &op, o->err);
	if (rc < 0)
		return rc;
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	if ((rc = operator_table_ok(c, tmp, &op, o->err)) < 0)
		goto out;
	gh_operator_t old;
	rc = get_operator(c, op.id, &old, NULL);
	if (rc == 0) {
		rc = gh_err_set(o->err, GH_E_ALREADY_EXISTS, "/id", "operator %s exists", op.id);
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	/* a unique violation aborts a PostgreSQL transaction: run again, the check above answers */
	rc = insert_operator(c, tmp, &op, o->now_ms);
	if (rc == -EEXIST)
		rc = -EAGAIN;
	if (rc < 0)
		goto out;
	o->out = operator_json(&op, 1);
	rc = audit_one(c, o->actor, "operator.create", "operator", op.id, NULL, o->out, o->now_ms);
out:
	talloc_free(tmp);
	return rc;
}

static int op_patch_fn(gh_conn_t *c, void *ud)
{
	op_tx_t *o = ud;
	gh_err_clear(o->err);
	json_decref(o->out);
	o->out = NULL;
	gh_operator_t op;
	int64_t version;
	int rc = get_operator(c, o->id, &op, &version);
	if (rc == -ENOENT)
		return gh_err_set(o->err, GH_E_NOT_FOUND, NULL, "operator not found");
	if (rc < 0)
		return rc;
	if (o->expected_version >= 0 && o->expected_version != version) {
		rc = gh_err_set(o->err, GH_E_CONFLICT, "/expected_version",
		                "the operator changed meanwhile");
		gh_err_detail(o->err, "current_version", json_integer(version));
		return rc;
	}
	if ((rc = operator_from_body(o->body, false, &op, o->err)) < 0)
		return rc;
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	if ((rc = operator_table_ok(c, tmp, &op, o->err)) < 0)
		goto out;
	char *mncs = joined(tmp, &op.mnc[0][0], sizeof(op.mnc[0]), GH_OPERATOR_MAX_MNC);
	char *prefixes =
	    joined(tmp, &op.prefixes[0][0], sizeof(op.prefixes[0]), GH_OPERATOR_MAX_PREFIXES);
	int64_t n;
	rc = gh_conn_exec(c,
	                  "UPDATE num_operators SET name = $1, mcc = $2, mncs = $3, prefixes = $4, "
	                  "valid_from_ms = $5, valid_to_ms = $6, version = version + 1, "
	                  "updated_ms = $7 WHERE id = $8 AND version = $9",
	                  (gh_val_t[]){GH_TEXT(op.name), GH_TEXT(op.mcc), GH_TEXT(mncs),
	                               GH_TEXT(prefixes), GH_I64(op.valid_from_ms),
	                               GH_I64(op.valid_to_ms), GH_I64(o->now_ms), GH_TEXT(op.id),
	                               GH_I64(version)},
	                  9, &n);
	if (rc < 0)
		goto out;
	if (n == 0) {
		rc = gh_err_set(o->err, GH_E_CONFLICT, "/expected_version",
		                "the operator changed meanwhile");
		gh_err_detail(o->err, "current_version", json_integer(version + 1));
		goto out;
	}
	o->out = operator_json(&op, version + 1);
	rc = audit_one(c, o->actor, "operator.update", "operator", op.id, NULL, o->out, o->now_ms);
out:
	talloc_free(tmp);
	return rc;
}

static int op_run(num_repo_t *r, gh_tx_fn fn, op_tx_t *o, json_t **out)
{
	gh_err_t local = {0};
	if (!o->err)
		o->err = &local;
	*out = NULL;
	int rc = repo_tx(r, fn, o);
	if (rc < 0) {
		json_decref(o->out);
		rc = db_fail(o->err, rc);
	} else {
		*out = o->out;
	}
	gh_err_clear(&local);
	return rc;
}

int num_repo_operator_create(num_repo_t *r, const json_t *body, const char *actor, int64_t now_ms,
                             json_t **out, gh_err_t *err)
{
	op_tx_t o = {.body = body, .actor = actor, .now_ms = now_ms, .err = err};
	return op_run(r, op_create_fn, &o, out);
}

int num_repo_operator_patch(num_repo_t *r, const char *id, const json_t *body,
                            int64_t expected_version, const char *actor, int64_t now_ms,
                            json_t **out, gh_err_t *err)
{
	op_tx_t o = {.body = body,
	             .id = id,
	             .expected_version = expected_version,
	             .actor = actor,
	             .now_ms = now_ms,
	             .err = err};
	return op_run(r, op_patch_fn, &o, out);
}

int num_repo_operator_table(num_repo_t *r, gh_operator_t *ops, size_t cap, size_t *n)
{
	*n = 0;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return -EIO;
	rc = load_operators(c, ops, NULL, cap, n);
	repo_release(r, c);
	return rc < 0 ? -EIO : 0;
}

/* ---- metrics --------------------------------------------------------------------------- */

int num_repo_pool_usage(num_repo_t *r, num_pool_usage_fn fn, void *ud)
{
	gh_conn_t *c;
	gh_rows_t *rs;
	if (repo_acquire(r, &c) < 0)
		return -EIO;
	int rc = gh_conn_query(c,
	                       "SELECT tenant_id, quota_msisdn, quota_short_code, quota_alpha, "
	                       "held_msisdn, held_short_code, held_alpha FROM num_pools "
	                       "ORDER BY tenant_id",
	                       NULL, 0, &rs);
	if (rc == 0) {
		while ((rc = gh_rows_next(rs)) > 0) {
			int64_t quota[NUM_KIND__COUNT], held[NUM_KIND__COUNT];
			for (int k = 0; k < NUM_KIND__COUNT; k++) {
				quota[k] = gh_rows_i64(rs, 1 + k);
				held[k] = gh_rows_i64(rs, 4 + k);
			}
			fn(ud, gh_rows_text(rs, 0), quota, held);
		}
		gh_rows_close(rs);
	}
	repo_release(r, c);
	return rc < 0 ? -EIO : 0;
}

int num_repo_quarantine_backlog(num_repo_t *r, int64_t *count)
{
	gh_conn_t *c;
	gh_rows_t *rs;
	if (repo_acquire(r, &c) < 0)
		return -EIO;
	/* num_numbers_state (state, key) answers it from the index. */
	int rc = gh_conn_query_one(
	    c, "SELECT COUNT(*) FROM num_numbers WHERE state = 'QUARANTINED'", NULL, 0, &rs);
	if (rc == 0) {
		*count = gh_rows_i64(rs, 0);
		gh_rows_close(rs);
	}
	repo_release(r, c);
	return rc < 0 ? -EIO : 0;
}

/* ---- pools ---------------------------------------------------------------------------- */

static const gh_json_field_t quota_fields[] = {
    {"MSISDN", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {"SHORT_CODE", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {"ALPHA", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* tenant_id, held, reservations and version are read-only: accepted so that a GET body can be
 * PUT back, and ignored (held counters are the database's). */
static const gh_json_field_t pool_fields[] = {
    {"tenant_id", GH_JSON_STRING, 0, 0, 0, NULL},
    {"status", GH_JSON_STRING, 0, 0, 0, NULL},
    {"segment", GH_JSON_STRING, 0, 0, 0, NULL},
    {"quotas", GH_JSON_OBJECT, 0, 0, 0, quota_fields},
    {"held", GH_JSON_OBJECT, 0, 0, 0, NULL},
    {"max_reservations", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {"reservations", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {"allowed_operators", GH_JSON_ARRAY, 0, 1, GH_JSON_STRING, NULL},
    {"allowed_kinds", GH_JSON_ARRAY, 0, 1, GH_JSON_STRING, NULL},
    {"vanity_allowed", GH_JSON_BOOL, 0, 0, 0, NULL},
    {"direct_assign", GH_JSON_BOOL, 0, 0, 0, NULL},
    {"lease_term_days", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {"auto_renew", GH_JSON_BOOL, 0, 0, 0, NULL},
    {"version", GH_JSON_INTEGER, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static bool tenant_id_ok(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	if (n == 0 || n > NUM_TENANT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)t[i]) && !strchr("._:-", t[i]))
			return false;
	return true;
}

/* The policy of a new pool before the body applies. */
static void pool_defaults(pool_t *p, const char *tenant)
{
	memset(p, 0, sizeof(*p));
	copy_str(p->tenant_id, sizeof(p->tenant_id), tenant);
	p->status = NUM_POOL_ACTIVE;
	copy_str(p->segment, sizeof(p->segment), "smb");
	p->max_reservations = 100;
	p->any_operator = p->any_kind = true;
	p->lease_term_days = 30;
	p->auto_renew = true;
}

static int pool_from_body(gh_conn_t *c, const json_t *body, pool_t *p, gh_err_t *err)
{
	int rc = gh_json_check(body, pool_fields, "", err);
	if (rc < 0)
		return rc;
	const char *s;
	if ((s = gh_json_get_str(body, "tenant_id", NULL)) && strcmp(s, p->tenant_id) != 0)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/tenant_id",
		                  "tenant_id differs from the path");
	if ((s = gh_json_get_str(body, "status", NULL))) {
		num_pool_status_t st;
		if (num_pool_status_parse(s, &st) < 0 || st == NUM_POOL_UNKNOWN)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/status",
			                  "status is ACTIVE or SUSPENDED");
		p->status = st;
	}
	if ((s = gh_json_get_str(body, "segment", NULL))) {
		if (strcmp(s, "enterprise") && strcmp(s, "smb") && strcmp(s, "government"))
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/segment",
			                  "segment is enterprise, smb or government");
		copy_str(p->segment, sizeof(p->segment), s);
	}
	const json_t *q = json_object_get(body, "quotas");
	for (int k = 0; q && k < NUM_KIND__COUNT; k++) {
		int64_t v = gh_json_get_int(q, num_kind_name(k), p->quota[k]);
		if (v < 0 || v > 1000000000) {
			char f[40];
			snprintf(f, sizeof(f), "/quotas/%s", num_kind_name(k));
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, f, "quota must be 0..1e9");
		}
		p->quota[k] = v;
	}
	p->max_reservations = gh_json_get_int(body, "max_reservations", p->max_reservations);
	if (p->max_reservations < 0 || p->max_reservations > 1000000000)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/max_reservations",
		                  "max_reservations must be 0..1e9");
	p->lease_term_days = gh_json_get_int(body, "lease_term_days", p->lease_term_days);
	if (p->lease_term_days < 1 || p->lease_term_days > TERM_DAYS_MAX)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/lease_term_days",
		                  "lease_term_days must be 1..3650");
	p->vanity_allowed = gh_json_get_bool(body, "vanity_allowed", p->vanity_allowed);
	p->direct_assign = gh_json_get_bool(body, "direct_assign", p->direct_assign);
	p->auto_renew = gh_json_get_bool(body, "auto_renew", p->auto_renew);

	const json_t *a = json_object_get(body, "allowed_kinds");
	if (a) {
		p->any_kind = json_is_null(a);
		p->allowed_kinds[0] = '\0';
		size_t i;
		json_t *v;
		json_array_foreach(a, i, v)
		{
			num_kind_t k;
			if (num_kind_parse(json_string_value(v), &k) < 0)
				return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/allowed_kinds",
				                  "unknown kind");
			if (!list_has(p->allowed_kinds, num_kind_name(k)))
				snprintf(p->allowed_kinds + strlen(p->allowed_kinds),
				         sizeof(p->allowed_kinds) - strlen(p->allowed_kinds),
				         "%s%s", p->allowed_kinds[0] ? " " : "", num_kind_name(k));
		}
	}
	a = json_object_get(body, "allowed_operators");
	if (a) {
		p->any_operator = json_is_null(a);
		p->allowed_operators[0] = '\0';
		size_t i;
		json_t *v;
		json_array_foreach(a, i, v)
		{
			const char *id = json_string_value(v);
			gh_operator_t op;
			rc = id && strlen(id) < sizeof(op.id) ? get_operator(c, id, &op, NULL)
			                                      : -ENOENT;
			if (rc == -ENOENT)
				return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/allowed_operators",
				                  "unknown operator");
			if (rc < 0)
				return rc;
			size_t len = strlen(p->allowed_operators);
			if (len + strlen(id) + 2 > sizeof(p->allowed_operators))
				return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/allowed_operators",
				                  "too many operators");
			if (!list_has(p->allowed_operators, id))
				snprintf(p->allowed_operators + len,
				         sizeof(p->allowed_operators) - len, "%s%s", len ? " " : "",
				         id);
		}
	}
	return 0;
}

typedef struct pool_tx_s {
	const char *tenant;
	const json_t *body;
	bool patch;
	int64_t expected_version;
	const char *actor;
	int64_t now_ms;
	gh_err_t *err;
	json_t *out;
	bool evented; /* an event was added */
} pool_tx_t;

static int pool_write_fn(gh_conn_t *c, void *ud)
{
	pool_tx_t *o = ud;
	o->evented = false;
	gh_err_clear(o->err);
	json_decref(o->out);
	o->out = NULL;
	o->evented = false;
	pool_t cur, p;
	int rc = load_pool(c, o->tenant, &cur);
	if (rc < 0)
		return rc;
	if (!cur.exists && o->patch)
		return gh_err_set(o->err, GH_E_NOT_FOUND, NULL, "pool not found");
	int64_t have = cur.exists ? cur.version : 0;
	if (o->expected_version >= 0 && o->expected_version != have) {
		rc = gh_err_set(o->err, GH_E_CONFLICT, "/expected_version",
		                "the pool changed meanwhile");
		gh_err_detail(o->err, "current_version", json_integer(have));
		return rc;
	}
	if (o->patch) {
		p = cur;
	} else {
		pool_defaults(&p, o->tenant);
		if (cur.exists) {
			memcpy(p.held, cur.held, sizeof(p.held));
			p.reservations = cur.reservations;
			p.version = cur.version;
			p.created_ms = cur.created_ms;
		}
	}
	if ((rc = pool_from_body(c, o->body, &p, o->err)) < 0)
		return rc;
	gh_val_t v[] = {
	    GH_TEXT(num_pool_status_name(p.status)),
	    GH_TEXT(p.segment),
	    GH_I64(p.quota[0]),
	    GH_I64(p.quota[1]),
	    GH_I64(p.quota[2]),
	    GH_I64(p.max_reservations),
	    p.any_operator ? GH_NULLV : GH_TEXT(p.allowed_operators),
	    p.any_kind ? GH_NULLV : GH_TEXT(p.allowed_kinds),
	    GH_I64(p.vanity_allowed),
	    GH_I64(p.direct_assign),
	    GH_I64(p.lease_term_days),
	    GH_I64(p.auto_renew),
	    GH_I64(o->now_ms),
	    GH_TEXT(o->tenant),
	    GH_I64(have),
	};
	int64_t n;
	if (cur.exists) {
		rc = gh_conn_exec(
		    c,
		    "UPDATE num_pools SET status = $1, segment = $2, quota_msisdn = $3, "
		    "quota_short_code = $4, quota_alpha = $5, max_reservations = $6, "
		    "allowed_operators = $7, allowed_kinds = $8, vanity_allowed = $9, "
		    "direct_assign = $10, lease_term_days = $11, auto_renew = $12, "
		    "version = version + 1, updated_ms = $13 WHERE tenant_id = $14 AND "
		    "version = $15",
		    v, 15, &n);
		if (rc == 0 && n == 0) {
			rc = gh_err_set(o->err, GH_E_CONFLICT, "/expected_version",
			                "the pool changed meanwhile");
			gh_err_detail(o->err, "current_version", json_integer(have + 1));
		}
	} else {
		rc = gh_conn_exec(
		    c,
		    "INSERT INTO num_pools (status, segment, quota_msisdn, "
		    "quota_short_code, quota_alpha, max_reservations, allowed_operators, "
		    "allowed_kinds, vanity_allowed, direct_assign, lease_term_days, "
		    "auto_renew, created_ms, updated_ms, tenant_id, version) VALUES ($1, "
		    "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, 1)",
		    v, 14, NULL);
		if (rc == -EEXIST)
			rc = -EAGAIN; /* created concurrently: run again as an update */
	}
	if (rc < 0)
		return rc;
	if ((rc = load_pool(c, o->tenant, &p)) < 0)
		return rc;
	if (!p.exists)
		return -EIO;
	o->out = pool_json(&p);
	if (!o->out)
		return -ENOMEM;
	rc = audit_one(c, o->actor, o->patch ? "pool.patch" : "pool.put", "pool", o->tenant,
	               o->tenant, o->out, o->now_ms);
	if (rc < 0 || (cur.exists && cur.status == p.status))
		return rc;
	/* the tenant's status changed (or is new): every replica's index hears of it */
	char agg[NUM_ID_MAX + 8];
	snprintf(agg, sizeof(agg), "pool/%s", o->tenant);
	json_t *data = json_pack("{s:s, s:s}", "tenant_id", o->tenant, "pool_status",
	                         num_pool_status_name(p.status));
	if (!data)
		return -ENOMEM;
	rc = gh_outbox_add(c,
	                   &(gh_event_t){.type = EV_INVALIDATE,
	                                 .source = SOURCE,
	                                 .tenant_id = o->tenant,
	                                 .aggregate_id = agg,
	                                 .time_ms = o->now_ms,
	                                 .data = data},
	                   NULL, NULL);
	json_decref(data);
	o->evented = rc == 0;
	return rc;
}

static int pool_write(num_repo_t *r, pool_tx_t *o, json_t **out)
{
	gh_err_t local = {0};
	if (!o->err)
		o->err = &local;
	*out = NULL;
	int rc;
	if (!tenant_id_ok(o->tenant)) {
		rc = gh_err_set(o->err, GH_E_INVALID_ARGUMENT, "/tenant_id", "bad tenant id");
		goto out;
	}
	rc = repo_tx(r, pool_write_fn, o);
	if (rc < 0) {
		json_decref(o->out);
		rc = db_fail(o->err, rc);
		goto out;
	}
	if (o->evented)
		kick(r);
	*out = o->out;
out:
	gh_err_clear(&local);
	return rc;
}

int num_repo_pool_put(num_repo_t *r, const char *tenant_id, const json_t *body,
                      int64_t expected_version, const char *actor, int64_t now_ms, json_t **out,
                      gh_err_t *err)
{
	pool_tx_t o = {.tenant = tenant_id,
	               .body = body,
	               .expected_version = expected_version,
	               .actor = actor,
	               .now_ms = now_ms,
	               .err = err};
	return pool_write(r, &o, out);
}

int num_repo_pool_patch(num_repo_t *r, const char *tenant_id, const json_t *body,
                        int64_t expected_version, const char *actor, int64_t now_ms, json_t **out,
                        gh_err_t *err)
{
	pool_tx_t o = {.tenant = tenant_id,
	               .body = body,
	               .patch = true,
	               .expected_version = expected_version,
	               .actor = actor,
	               .now_ms = now_ms,
	               .err = err};
	return pool_write(r, &o, out);
}

int num_repo_pool_get(num_repo_t *r, const char *tenant_id, json_t **out, gh_err_t *err)
{
	*out = NULL;
	gh_conn_t *c;
	int rc = repo_acquire(r, &c);
	if (rc < 0)
		return db_fail(err, rc);
	pool_t p;
	rc = load_pool(c, tenant_id, &p);
	repo_release(r, c);
	if (rc < 0)
		return db_fail(err, rc);
	if (!p.exists)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "pool not found");
	*out = pool_json(&p);
	return *out ? 0 : -ENOMEM;
}
