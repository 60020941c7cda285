/* portal: the tenant portal API (numbering spec, "Tenant portal"; issue 4, item 2).
 *
 * Every route needs a JWT with a tenant role (the route table in http.c: tenant-viewer reads,
 * tenant-operator and tenant-admin also mutate) and acts for the token's tenant_id, never for
 * anything the request says: bodies take no tenant_id (an unknown field, 400), and a token
 * without a tenant_id is 403. A tenant never learns of another tenant's numbers: on every
 * route another tenant's number is 404 NOT_FOUND (or absent from a list), as an unknown one is.
 *
 * Two walls keep tenants apart. The first is here and in the repository: reads are filtered by
 * the tenant (num_repo_get's tenant_scope, num_filter_t.visible_to), and a mutation first reads
 * the number and answers 404 unless it is in the open catalogue (AVAILABLE, unheld) or the
 * caller's (held, or its reclaimable TENANT_RELEASE quarantine). The second is PostgreSQL's
 * row-level security: every portal transaction, reads included, runs after
 * num_repo_scope_tenant (SET LOCAL ghasi.tenant_id), so a bug in the first wall still cannot
 * read or write another tenant's rows there.
 *
 * Mutations take an Idempotency-Key scoped "tenant:<id>" and are audited with the actor
 * "tenant:<id>/<sub>". */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "ports.h"
#include "service.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX     1000
#define PATTERN_MAX  32

/* ---- the caller ---------------------------------------------------------------------------- */

typedef struct {
	const char *tenant; /* the token's tenant_id */
	char *actor;        /* "tenant:<id>/<sub>" */
	char *scope;        /* "tenant:<id>" */
} caller_t;

/* Tenant ids as the rest of the service takes them: 1..NUM_TENANT_ID_MAX of [A-Za-z0-9._:-]. */
static bool tenant_id_ok(const char *t)
{
	size_t n = strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-");
	return n == strlen(t) && n >= 1 && n <= NUM_TENANT_ID_MAX;
}

/* The caller from the request's principal (the server checked the token and its roles). 0, or
 * -EPERM with 403 set: a token without a usable tenant_id (a platform role, or auth.disabled's
 * anonymous principal) has no tenant to act for. */
static int caller_of(gh_http_req_t *req, caller_t *c)
{
	const gh_principal_t *p = gh_http_principal(req);
	if (!p || !tenant_id_ok(p->tenant_id))
		return gh_err_set(gh_http_err(req), GH_E_PERMISSION_DENIED, NULL,
		                  "the portal needs a token with a tenant_id");
	void *ctx = gh_http_ctx(req);
	c->tenant = p->tenant_id;
	c->actor = talloc_asprintf(ctx, "tenant:%s/%s", p->tenant_id, p->sub);
	c->scope = talloc_asprintf(ctx, "tenant:%s", p->tenant_id);
	return c->actor && c->scope ? 0 : -ENOMEM;
}

static int bad_arg(gh_http_req_t *req, const char *field, const char *msg)
{
	return gh_err_set(gh_http_err(req), GH_E_INVALID_ARGUMENT, field, "%s", msg);
}

static int unavailable(gh_http_req_t *req)
{
	return gh_err_set(gh_http_err(req), GH_E_UNAVAILABLE, NULL,
	                  "numbering database unavailable; retry later");
}

static int not_found(gh_http_req_t *req)
{
	return gh_err_set(gh_http_err(req), GH_E_NOT_FOUND, NULL, "number not found");
}

/* The {identifier} path parameter, normalised. 0 or -EINVAL (400 set). */
static int path_ident(gh_http_req_t *req, gh_ident_t *id)
{
	const char *raw = gh_http_param(req, "identifier");
	gh_err_t *e = gh_http_err(req);
	if (!raw || gh_ident_normalize(NULL, GH_IDENT_AUTO, raw, strlen(raw), id, e) < 0) {
		if (!raw)
			gh_err_set(e, GH_E_INVALID_ARGUMENT, NULL, "identifier missing");
		snprintf(e->field, sizeof e->field, "identifier");
		return -EINVAL;
	}
	return 0;
}

/* page_size and page_token of a list route. 0 or -EINVAL (400 set). */
static int paging(gh_http_req_t *req, int64_t *size, uint64_t *after)
{
	const char *tok = gh_http_query(req, "page_token");
	*after = 0;
	if (gh_http_query_int(req, "page_size", PAGE_DEFAULT, 1, PAGE_MAX, size) < 0)
		return -EINVAL;
	if (tok && num_page_token_decode(tok, after) < 0)
		return bad_arg(req, "page_token", "invalid page_token");
	return 0;
}

static void set_next(json_t *out, uint64_t next)
{
	if (!next)
		return;
	char tok[12];
	num_page_token_encode(next, tok);
	json_object_set_new(out, "next_page_token", json_string(tok));
}

/* ---- reads: one read transaction confined to the tenant --------------------------------- */

typedef enum { RD_AVAILABLE, RD_NUMBERS, RD_NUMBER, RD_LEASES, RD_POOL } read_kind_t;

typedef struct {
	num_svc_t *s;
	gh_http_req_t *req;
	read_kind_t kind;
	const char *tenant;
	num_filter_t f;
	bool vanity_asked; /* ?vanity=true */
	uint64_t key;      /* RD_NUMBER */
	uint64_t after;
	int limit;
	json_t *out; /* the reply body */
} read_run_t;

static json_t *catalogue_json(const num_number_t *n)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:i, s:I}", "identifier", n->identifier, "display",
	                 n->display, "kind", num_kind_name(n->kind), "operator_id",
	                 n->operator_id[0] ? json_string(n->operator_id) : json_null(),
	                 "vanity_tier", n->vanity_tier, "version", (json_int_t)n->version);
}

static json_t *lease_json(const num_number_t *n)
{
	char starts[25], ends[25];
	gh_time_format(n->lease_starts_ms, starts);
	gh_time_format(n->lease_ends_ms, ends);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "lease_id", n->lease_id,
	                 "identifier", n->identifier, "kind", num_kind_name(n->kind), "status",
	                 num_lease_status_name(n->lease_status), "starts_at", starts, "ends_at",
	                 ends, "auto_renew", n->auto_renew);
}

/* The pool with what is left of each quota. */
static json_t *usage_json(json_t *pool)
{
	json_t *left = json_object(), *quotas = json_object_get(pool, "quotas"),
	       *held = json_object_get(pool, "held");
	for (int k = 0; k < NUM_KIND__COUNT; k++) {
		const char *name = num_kind_name(k);
		json_int_t q = json_integer_value(json_object_get(quotas, name));
		json_int_t h = json_integer_value(json_object_get(held, name));
		json_object_set_new(left, name, json_integer(q > h ? q - h : 0));
	}
	json_object_set_new(pool, "remaining", left);
	return pool;
}

static int list_into(read_run_t *a, num_repo_t *view, const char *name,
                     json_t *(*render)(const num_number_t *))
{
	num_number_t *rows = NULL;
	size_t n = 0;
	uint64_t next = 0;
	int rc = num_repo_list(view, &a->f, a->after, a->limit, gh_http_ctx(a->req), &rows, &n,
	                       &next, gh_http_err(a->req));
	if (rc < 0)
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, render(&rows[i]));
	a->out = json_pack("{s:o}", name, arr);
	if (!a->out)
		return -ENOMEM;
	set_next(a->out, next);
	return 0;
}

static int read_fn(gh_conn_t *c, void *ud)
{
	read_run_t *a = ud;
	gh_err_t *e = gh_http_err(a->req);
	num_repo_t *view;
	json_decref(a->out);
	a->out = NULL;
	gh_err_clear(e);
	if (num_repo_scope_tenant(c, a->tenant) < 0)
		return unavailable(a->req);
	int rc = num_repo_on_conn(gh_http_ctx(a->req), a->s->repo, c, &view);
	if (rc < 0)
		return rc;
	switch (a->kind) {
	case RD_AVAILABLE: {
		/* Vanity numbers only for a pool that may take them; no pool: none. */
		json_t *pool = NULL;
		rc = num_repo_pool_get(view, a->tenant, &pool, e);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		gh_err_clear(e);
		bool vanity_ok = pool && json_is_true(json_object_get(pool, "vanity_allowed"));
		json_decref(pool);
		if (a->vanity_asked && !vanity_ok) {
			rc = gh_err_set(e, GH_E_FAILED_PRECONDITION, NULL,
			                "the pool does not allow vanity numbers");
			gh_err_detail(e, "reason", json_string("vanity_not_allowed"));
			return rc;
		}
		if (!vanity_ok)
			a->f.ordinary_only = true;
		return list_into(a, view, "numbers", catalogue_json);
	}
	case RD_NUMBERS: return list_into(a, view, "numbers", num_number_json);
	case RD_LEASES: return list_into(a, view, "leases", lease_json);
	case RD_NUMBER: {
		num_number_t n;
		if ((rc = num_repo_get(view, a->key, a->tenant, &n, e)) < 0)
			return rc;
		a->out = num_number_json(&n);
		return a->out ? 0 : -ENOMEM;
	}
	case RD_POOL:
		if ((rc = num_repo_pool_get(view, a->tenant, &a->out, e)) < 0)
			return rc;
		usage_json(a->out);
		return 0;
	}
	return -EINVAL;
}

static int run_read(gh_http_req_t *req, read_run_t *a)
{
	caller_t who;
	int rc = caller_of(req, &who);
	if (rc < 0)
		return rc;
	a->req = req;
	a->tenant = who.tenant;
	if (a->kind == RD_NUMBERS || a->kind == RD_LEASES)
		a->f.visible_to = who.tenant; /* held, or reclaimable */
	gh_tx_opts_t o = {.flags = GH_TX_READ};
	rc = gh_store_tx(a->s->store, read_fn, a, &o);
	if (rc < 0) {
		json_decref(a->out);
		if (gh_http_err(req)->code == GH_OK)
			return unavailable(req);
		return rc;
	}
	return gh_http_reply_json(req, 200, a->out);
}

int num_portal_available(gh_http_req_t *req, void *ud)
{
	int64_t size;
	read_run_t a = {.s = ud,
	                .kind = RD_AVAILABLE,
	                .f = {.kind = -1, .state = NUM_ST_AVAILABLE, .vanity_min = -1}};
	if (paging(req, &size, &a.after) < 0)
		return -EINVAL;
	a.limit = (int)size;
	const char *q;
	if ((q = gh_http_query(req, "kind"))) {
		num_kind_t k;
		if (num_kind_parse(q, &k) < 0)
			return bad_arg(req, "kind", "kind must be MSISDN, SHORT_CODE or ALPHA");
		a.f.kind = (int)k;
	}
	a.f.operator_id = gh_http_query(req, "operator_id");
	if ((q = gh_http_query(req, "pattern"))) {
		/* digits with '*' wildcards: "*777*"; at least one digit */
		size_t n = strlen(q);
		if (n < 1 || n > PATTERN_MAX || strspn(q, "0123456789*") != n ||
		    strspn(q, "*") == n)
			return bad_arg(req, "pattern",
			               "pattern: up to 32 digits and '*' wildcards, e.g. *777*");
		a.f.pattern = q;
	}
	if ((q = gh_http_query(req, "vanity"))) {
		if (strcmp(q, "true") == 0) {
			a.vanity_asked = true;
			a.f.vanity_min = 1;
		} else if (strcmp(q, "false") == 0) {
			a.f.ordinary_only = true;
		} else {
			return bad_arg(req, "vanity", "vanity must be true or false");
		}
	}
	return run_read(req, &a);
}

int num_portal_numbers(gh_http_req_t *req, void *ud)
{
	int64_t size;
	read_run_t a = {
	    .s = ud, .kind = RD_NUMBERS, .f = {.kind = -1, .state = -1, .vanity_min = -1}};
	if (paging(req, &size, &a.after) < 0)
		return -EINVAL;
	a.limit = (int)size;
	const char *q;
	if ((q = gh_http_query(req, "kind"))) {
		num_kind_t k;
		if (num_kind_parse(q, &k) < 0)
			return bad_arg(req, "kind", "kind must be MSISDN, SHORT_CODE or ALPHA");
		a.f.kind = (int)k;
	}
	if ((q = gh_http_query(req, "state"))) {
		num_state_t st;
		if (num_state_parse(q, &st) < 0)
			return bad_arg(req, "state", "unknown state");
		a.f.state = (int)st;
	}
	return run_read(req, &a);
}

int num_portal_leases(gh_http_req_t *req, void *ud)
{
	int64_t size;
	read_run_t a = {.s = ud,
	                .kind = RD_LEASES,
	                .f = {.kind = -1, .state = -1, .vanity_min = -1, .leased = true}};
	if (paging(req, &size, &a.after) < 0)
		return -EINVAL;
	a.limit = (int)size;
	return run_read(req, &a);
}

int num_portal_number(gh_http_req_t *req, void *ud)
{
	gh_ident_t id;
	if (path_ident(req, &id) < 0)
		return -EINVAL;
	read_run_t a = {.s = ud, .kind = RD_NUMBER, .key = id.key};
	return run_read(req, &a);
}

int num_portal_pool(gh_http_req_t *req, void *ud)
{
	read_run_t a = {.s = ud, .kind = RD_POOL};
	return run_read(req, &a);
}

/* ---- mutations ----------------------------------------------------------------------------- */

typedef struct {
	num_svc_t *s;
	const char *tenant;
	num_tx_req_t tx;
	num_number_t out;
	bool ok;      /* the last run committed a transition */
	bool refused; /* INVALID_TRANSITION: audit it after the rollback */
} mut_run_t;

/* What a tenant may act on: the open catalogue, or its own number (held, or its reclaimable
 * TENANT_RELEASE quarantine). Anything else is, to this tenant, not there. */
static bool actionable(const num_number_t *n, const char *tenant)
{
	if (!n->tenant_id[0] && n->state == NUM_ST_AVAILABLE)
		return true;
	if (strcmp(n->tenant_id, tenant) == 0)
		return true;
	return n->has_quarantine && n->quarantine_reason == NUM_QR_TENANT_RELEASE &&
	       strcmp(n->previous_tenant_id, tenant) == 0;
}

static int mut_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body)
{
	mut_run_t *t = ud;
	gh_err_t *e = gh_http_err(req);
	num_repo_t *view;
	num_number_t cur;
	t->ok = t->refused = false;
	gh_err_clear(e);
	if (num_repo_scope_tenant(c, t->tenant) < 0)
		return unavailable(req);
	int rc = num_repo_on_conn(gh_http_ctx(req), t->s->repo, c, &view);
	if (rc < 0)
		return rc;
	/* Decide visibility on the row this transaction reads, before the lifecycle can say
	 * anything (INVALID_TRANSITION, CONFLICT) about another tenant's number. */
	if ((rc = num_repo_get(view, t->tx.key, NULL, &cur, e)) < 0)
		return rc;
	if (!actionable(&cur, t->tenant))
		return not_found(req);
	if ((rc = num_repo_transition(view, &t->tx, &t->out, e)) < 0) {
		t->refused = e->code == GH_E_INVALID_TRANSITION;
		return rc;
	}
	if (!(*body = num_number_json(&t->out)))
		return -ENOMEM;
	*status = 200;
	t->ok = true;
	return 0;
}

static const gh_json_field_t reserve_fields[] = {
    {"expected_version", GH_JSON_INTEGER},
    {"ttl_seconds", GH_JSON_INTEGER},
    {NULL},
};
static const gh_json_field_t assign_fields[] = {
    {"expected_version", GH_JSON_INTEGER},
    {"term_days", GH_JSON_INTEGER},
    {"auto_renew", GH_JSON_BOOL},
    {NULL},
};
static const gh_json_field_t release_fields[] = {
    {"expected_version", GH_JSON_INTEGER},
    {NULL},
};

static int mutate(gh_http_req_t *req, num_svc_t *s, num_action_t action)
{
	const gh_json_field_t *fields = action == NUM_ACT_RESERVE   ? reserve_fields
	                                : action == NUM_ACT_RELEASE ? release_fields
	                                                            : assign_fields;
	gh_ident_t id;
	caller_t who;
	json_t *b = NULL;
	size_t len = 0;
	if (caller_of(req, &who) < 0)
		return -EPERM;
	if (path_ident(req, &id) < 0)
		return -EINVAL;
	/* An empty body is {} (every field is optional); a tenant_id in it is an unknown field. */
	gh_http_body(req, &len);
	if (len && gh_http_json_body(req, fields, &b) < 0)
		return -EINVAL;
	mut_run_t t = {.s = s,
	               .tenant = who.tenant,
	               .tx = {.key = id.key,
	                      .action = action,
	                      .role = NUM_ROLE_TENANT,
	                      .tenant_id = who.tenant,
	                      .actor = who.actor,
	                      .expected_version = -1,
	                      .auto_renew = -1}};
	json_t *v;
	if ((v = json_object_get(b, "expected_version"))) {
		if (json_integer_value(v) < 1)
			return bad_arg(req, "/expected_version", "expected_version must be >= 1");
		t.tx.expected_version = json_integer_value(v);
	}
	if ((v = json_object_get(b, "ttl_seconds"))) {
		if ((t.tx.ttl_s = json_integer_value(v)) < 1)
			return bad_arg(req, "/ttl_seconds", "ttl_seconds must be >= 1");
	}
	if ((v = json_object_get(b, "term_days"))) {
		if ((t.tx.term_days = json_integer_value(v)) < 1)
			return bad_arg(req, "/term_days", "term_days must be >= 1");
	}
	if ((v = json_object_get(b, "auto_renew")))
		t.tx.auto_renew = json_is_true(v);
	t.tx.request_id = gh_http_request_id(req);
	t.tx.traceparent = gh_http_traceparent(req);
	t.tx.now_ms = gh_clock_now_ms(s->clock);
	/* ALPHA assignment asks the sender-id registry first, outside any transaction (ports.c) */
	if (num_svc_senderid_gate(s, &t.tx, gh_http_err(req)) < 0)
		return gh_http_reply_error(req, gh_http_err(req));
	int rc = gh_idem_handle(req, s->store, who.scope, s->idem_ttl_ms, s->clock, mut_fn, &t);
	const gh_http_response_t *r = gh_http_response(req);
	if (t.ok && r && r->status >= 200 && r->status < 300)
		num_svc_apply(s, &t.out);
	else if (t.refused)
		num_repo_audit_refused(s->repo, &t.tx, gh_http_err(req));
	return rc;
}

int num_portal_reserve(gh_http_req_t *req, void *ud) { return mutate(req, ud, NUM_ACT_RESERVE); }

int num_portal_assign(gh_http_req_t *req, void *ud) { return mutate(req, ud, NUM_ACT_ASSIGN); }

int num_portal_release(gh_http_req_t *req, void *ud) { return mutate(req, ud, NUM_ACT_RELEASE); }

int num_portal_reclaim(gh_http_req_t *req, void *ud) { return mutate(req, ud, NUM_ACT_RECLAIM); }
