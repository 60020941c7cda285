/* http: the numbering HTTP API (numbering spec, "HTTP API": internal and admin; the tenant
 * portal is portal.c).
 *
 * Who may call what is the route table's policy, enforced by the server before a handler runs
 * (docs/numbering.md "Access"): the internal API needs an allowlisted mTLS client certificate
 * (open while TLS is off in the embedded profile); its reserve, assign, release and reclaim act
 * for the body's tenant_id (role TENANT, refined by the repository to HOLDER / PREV_TENANT),
 * recall, suspend and resume act as COMPLIANCE (compliance-engine, billing-service). The admin
 * API needs a JWT with platform-admin (compliance too for recall/suspend/resume and the reads).
 * The audit actor is the caller: "service:<cn>" ("service:unverified" without TLS),
 * "admin:<sub>". Mutations take an Idempotency-Key scoped "tenant:<id>", "internal" or
 * "admin:<sub>" and run inside its transaction (gh_idem_handle); after the commit the local
 * index gets the new entry at once, other replicas through num.cache.invalidate.v1.
 *
 * validate-lease is the hot path: no allocation of ours on an index hit (the reply is written
 * into a stack buffer), no lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "export.h"
#include "import.h"
#include "ports.h"
#include "service.h"

#define INTERNAL_SCOPE "internal"
#define ADD_MAX        1000

/* ---- small helpers ----------------------------------------------------------------------- */

static int64_t now_ms(num_svc_t *s) { return gh_clock_now_ms(s->clock); }

/* Tenant ids: 1..NUM_TENANT_ID_MAX of [A-Za-z0-9._:-] (a UUID, "tenant-enterprise"). */
static bool tenant_ok(const char *t)
{
	size_t n = 0;
	if (!t)
		return false;
	for (; t[n]; n++) {
		char c = t[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return n >= 1 && n <= NUM_TENANT_ID_MAX;
}

static int bad_arg(gh_http_req_t *req, const char *field, const char *msg)
{
	return gh_err_set(gh_http_err(req), GH_E_INVALID_ARGUMENT, field, "%s", msg);
}

/* The audit actor of an internal call: the client certificate's allowlisted CN. */
static char *service_actor(gh_http_req_t *req)
{
	const char *cn = gh_http_client_cn(req);
	return talloc_asprintf(gh_http_ctx(req), "service:%s", cn ? cn : "unverified");
}

/* The audit actor, and Idempotency-Key scope, of an admin call: the JWT's subject. */
static char *admin_actor(gh_http_req_t *req)
{
	const gh_principal_t *p = gh_http_principal(req);
	return talloc_asprintf(gh_http_ctx(req), "admin:%s", p ? p->sub : "unknown");
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

/* ---- ValidateLease ----------------------------------------------------------------------- */

static int reply_validate(gh_http_req_t *req, num_svc_t *s, const num_vresult_t *r, int64_t now)
{
	char buf[512];
	const num_index_entry_t *e = &r->v.entry;
	int n = snprintf(buf, sizeof buf,
	                 "{\"allowed\":%s,\"reason\":\"%s\",\"identifier\":\"%s\",\"kind\":\"%s\"",
	                 r->v.allowed ? "true" : "false", num_vreason_name(r->v.reason),
	                 r->id.canonical, gh_ident_kind_name(r->id.kind));
	if (r->v.reason != NUM_VR_NOT_REGISTERED) {
		const gh_operator_t *op = num_svc_operator(s, e, &r->id, now);
		if (op)
			n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"operator_id\":\"%s\"",
			              op->id);
	}
	/* Lease data only to its holder: a caller learns nothing of another tenant's lease. */
	if (r->caller_is_holder && !gh_uuid_is_nil(e->lease_id)) {
		char id[37], ends[25];
		gh_uuid_format(e->lease_id, id);
		gh_time_format(e->lease_ends_at_ms, ends);
		n += snprintf(buf + n, sizeof buf - (size_t)n,
		              ",\"lease_id\":\"%s\",\"lease_ends_at\":\"%s\"", id, ends);
	}
	n += snprintf(buf + n, sizeof buf - (size_t)n, "}");
	return gh_http_reply_raw(req, 200, "application/json", buf, (size_t)n);
}

static int validate(gh_http_req_t *req, num_svc_t *s, const char *ident, const char *tenant,
                    const char *tenant_field, const char *ident_field)
{
	int64_t t0 = gh_clock_mono_ns(s->clock);
	int64_t now = now_ms(s);
	gh_err_t *e = gh_http_err(req);
	num_vresult_t r;
	int rc, res;
	if (!ident) {
		rc = bad_arg(req, ident_field, "identifier is required");
		res = NUM_VRES_INVALID;
	} else if (!tenant_ok(tenant)) {
		rc = bad_arg(req, tenant_field,
		             "tenant_id is required: 1-59 characters of [A-Za-z0-9._:-]");
		res = NUM_VRES_INVALID;
	} else if ((rc = num_svc_validate(s, ident, strlen(ident), tenant, now, &r, e)) == 0) {
		res = (int)r.v.reason;
		rc = reply_validate(req, s, &r, now);
	} else if (rc == -EINVAL) {
		snprintf(e->field, sizeof e->field, "%s", ident_field);
		res = NUM_VRES_INVALID;
	} else {
		/* Fail closed: never an answer the index or the database did not give. */
		gh_err_set(e, GH_E_UNAVAILABLE, NULL,
		           rc == -ESTALE ? "number index is stale; retry later"
		                         : "numbering database unavailable; retry later");
		res = NUM_VRES_UNAVAILABLE;
	}
	gh_histogram_observe_ns(s->h_validate[res], gh_clock_mono_ns(s->clock) - t0);
	return rc;
}

static int h_validate_get(gh_http_req_t *req, void *ud)
{
	return validate(req, ud, gh_http_query(req, "identifier"), gh_http_query(req, "tenant_id"),
	                "tenant_id", "identifier");
}

static const gh_json_field_t validate_fields[] = {
    {"identifier", GH_JSON_STRING, 1},
    {"tenant_id", GH_JSON_STRING, 1},
    {NULL},
};

static int h_validate_post(gh_http_req_t *req, void *ud)
{
	json_t *b;
	if (gh_http_json_body(req, validate_fields, &b) < 0)
		return -EINVAL;
	return validate(req, ud, gh_json_get_str(b, "identifier", NULL),
	                gh_json_get_str(b, "tenant_id", NULL), "/tenant_id", "/identifier");
}

/* ---- Lookup ------------------------------------------------------------------------------ */

static int h_lookup(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_ident_t id;
	num_index_entry_t e;
	if (path_ident(req, &id) < 0)
		return -EINVAL;
	int64_t now = now_ms(s);
	int rc = num_svc_entry(s, id.key, now, &e);
	if (rc == -ENOENT) {
		/* enumeration signal (anomaly.c): the caller is its certificate CN, else its
		 * address */
		char addr[64];
		const char *caller = gh_http_client_cn(req);
		if (!caller && gh_http_client_addr(req, addr, sizeof addr) == 0)
			caller = addr;
		num_anomaly_on_lookup_unknown(s, caller, id.key, now);
		return gh_err_set(gh_http_err(req), GH_E_NOT_FOUND, NULL,
		                  "identifier is not registered");
	}
	if (rc < 0)
		return gh_err_set(gh_http_err(req), GH_E_UNAVAILABLE, NULL,
		                  rc == -ESTALE ? "number index is stale; retry later"
		                                : "numbering database unavailable; retry later");
	char buf[512];
	const gh_operator_t *op = num_svc_operator(s, &e, &id, now);
	int n = snprintf(buf, sizeof buf, "{\"identifier\":\"%s\",\"kind\":\"%s\",\"state\":\"%s\"",
	                 id.canonical, gh_ident_kind_name(id.kind),
	                 num_state_name((num_state_t)e.state));
	if (op)
		n += snprintf(buf + n, sizeof buf - (size_t)n,
		              ",\"operator_id\":\"%s\",\"mcc\":\"%s\",\"mnc\":\"%s\"", op->id,
		              op->mcc, op->mnc[0]);
	n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"vanity_tier\":%u}", e.vanity_tier);
	return gh_http_reply_raw(req, 200, "application/json", buf, (size_t)n);
}

/* ---- lifecycle transitions --------------------------------------------------------------- */

typedef struct {
	num_svc_t *s;
	num_tx_req_t *tx;
	const gh_idem_call_t *call;
	num_number_t out;
	bool ok;      /* the last run of fn succeeded */
	bool refused; /* INVALID_TRANSITION: audit it after the rollback */
} tx_run_t;

static int tx_fn(gh_conn_t *c, void *ud, int *status, json_t **body)
{
	tx_run_t *t = ud;
	num_repo_t *view;
	t->ok = t->refused = false;
	int rc = num_repo_on_conn(t->call->ctx, t->s->repo, c, &view);
	if (rc < 0)
		return rc;
	gh_err_t *e = t->call->err;
	gh_err_clear(e);
	rc = num_repo_transition(view, t->tx, &t->out, e);
	if (rc < 0) {
		t->refused = e->code == GH_E_INVALID_TRANSITION;
		return rc;
	}
	if (!(*body = num_number_json(&t->out)))
		return -ENOMEM;
	*status = 200;
	t->ok = true;
	return 0;
}

static bool replied_ok(gh_http_req_t *req)
{
	const gh_http_response_t *r = gh_http_response(req);
	return r && r->status >= 200 && r->status < 300;
}

int num_svc_transition(num_svc_t *s, num_tx_req_t *tx, const gh_idem_call_t *call,
                       gh_idem_result_t *res)
{
	tx_run_t t = {.s = s, .tx = tx, .call = call};
	tx->now_ms = now_ms(s);
	/* ALPHA assignment asks the sender-id registry first, outside any transaction */
	if (num_svc_senderid_gate(s, tx, call->err) < 0) {
		*res = (gh_idem_result_t){.kind = GH_IDEM_ERROR};
		return 0;
	}
	int rc = gh_idem_run(s->store, call, tx_fn, &t, res);
	if (rc < 0)
		return rc;
	if (t.ok && res->kind == GH_IDEM_RESPONSE && res->status >= 200 && res->status < 300)
		num_svc_apply(s, &t.out);
	else if (t.refused)
		num_repo_audit_refused(s->repo, tx, call->err);
	return 0;
}

/* Run the transition in t under the Idempotency-Key of scope. Always replies. */
static int run_transition(gh_http_req_t *req, num_svc_t *s, num_tx_req_t *tx, const char *scope)
{
	tx->request_id = gh_http_request_id(req);
	tx->traceparent = gh_http_traceparent(req);
	char hash[65];
	gh_idem_call_t call;
	gh_idem_result_t res;
	if (gh_idem_http_call(req, scope, s->idem_ttl_ms, s->clock, hash, &call) < 0)
		return gh_http_reply_error(req, gh_http_err(req));
	int rc = num_svc_transition(s, tx, &call, &res);
	return rc < 0 ? rc : gh_idem_http_reply(req, &res);
}

static const gh_json_field_t reserve_fields[] = {
    {"tenant_id", GH_JSON_STRING, 1},
    {"expected_version", GH_JSON_INTEGER},
    {"ttl_seconds", GH_JSON_INTEGER},
    {NULL},
};
static const gh_json_field_t assign_fields[] = {
    {"tenant_id", GH_JSON_STRING, 1},
    {"expected_version", GH_JSON_INTEGER},
    {"term_days", GH_JSON_INTEGER},
    {"auto_renew", GH_JSON_BOOL},
    {NULL},
};
static const gh_json_field_t tenant_fields[] = {
    {"tenant_id", GH_JSON_STRING, 1},
    {"expected_version", GH_JSON_INTEGER},
    {NULL},
};
static const gh_json_field_t recall_fields[] = {
    {"tenant_id", GH_JSON_STRING},
    {"expected_version", GH_JSON_INTEGER},
    {"reason", GH_JSON_STRING},
    {"justification", GH_JSON_STRING},
    {NULL},
};
static const gh_json_field_t suspend_fields[] = {
    {"tenant_id", GH_JSON_STRING},
    {"expected_version", GH_JSON_INTEGER},
    {"reason", GH_JSON_STRING},
    {NULL},
};

/* A transition on the internal API, or (admin) on the admin API: recall, suspend, resume. */
static int transition(gh_http_req_t *req, void *ud, num_action_t action, bool admin)
{
	num_svc_t *s = ud;
	const gh_json_field_t *fields;
	switch (action) {
	case NUM_ACT_RESERVE: fields = reserve_fields; break;
	case NUM_ACT_ASSIGN:
	case NUM_ACT_RECLAIM: fields = assign_fields; break;
	case NUM_ACT_RELEASE: fields = tenant_fields; break;
	case NUM_ACT_RECALL: fields = recall_fields; break;
	default: fields = suspend_fields; break;
	}
	gh_ident_t id;
	json_t *b;
	if (path_ident(req, &id) < 0 || gh_http_json_body(req, fields, &b) < 0)
		return -EINVAL;
	num_tx_req_t tx = {
	    .key = id.key, .action = action, .expected_version = -1, .auto_renew = -1};
	const char *tenant = gh_json_get_str(b, "tenant_id", NULL);
	if (tenant && !tenant_ok(tenant))
		return bad_arg(req, "/tenant_id", "tenant_id: 1-59 characters of [A-Za-z0-9._:-]");
	json_t *ev = json_object_get(b, "expected_version");
	if (ev) {
		if (json_integer_value(ev) < 1)
			return bad_arg(req, "/expected_version", "expected_version must be >= 1");
		tx.expected_version = json_integer_value(ev);
	}
	tx.ttl_s = gh_json_get_int(b, "ttl_seconds", 0);
	if (json_object_get(b, "ttl_seconds") && tx.ttl_s < 1)
		return bad_arg(req, "/ttl_seconds", "ttl_seconds must be >= 1");
	tx.term_days = gh_json_get_int(b, "term_days", 0);
	if (json_object_get(b, "term_days") && tx.term_days < 1)
		return bad_arg(req, "/term_days", "term_days must be >= 1");
	if (json_object_get(b, "auto_renew"))
		tx.auto_renew = gh_json_get_bool(b, "auto_renew", 0);

	char *scope, *actor;
	void *ctx = gh_http_ctx(req);
	if (action == NUM_ACT_RECALL || action == NUM_ACT_SUSPEND || action == NUM_ACT_RESUME) {
		const gh_principal_t *p = gh_http_principal(req);
		tx.role = admin && p && (p->role_mask & GH_ROLE_PLATFORM_ADMIN)
		              ? NUM_ROLE_ADMIN
		              : NUM_ROLE_COMPLIANCE;
		const char *reason = gh_json_get_str(b, "reason", NULL);
		if (action == NUM_ACT_RECALL) {
			tx.recall_reason = NUM_QR_RECALL_ADMIN;
			if (reason && (num_qreason_parse(reason, &tx.recall_reason) < 0 ||
			               (tx.recall_reason != NUM_QR_RECALL_ADMIN &&
			                tx.recall_reason != NUM_QR_RECALL_ABUSE)))
				return bad_arg(req, "/reason",
				               "reason must be RECALL_ADMIN or RECALL_ABUSE");
			tx.justification = gh_json_get_str(b, "justification", NULL);
		} else {
			tx.justification = reason; /* free text, kept in the audit row */
		}
		tx.tenant_id = tenant;
		if (admin)
			scope = actor = admin_actor(req);
		else {
			scope = tenant ? talloc_asprintf(ctx, "tenant:%s", tenant)
			               : talloc_strdup(ctx, INTERNAL_SCOPE);
			actor = service_actor(req);
		}
	} else {
		tx.role = NUM_ROLE_TENANT;
		tx.tenant_id = tenant;
		scope = talloc_asprintf(ctx, "tenant:%s", tenant);
		actor = service_actor(req);
	}
	if (!scope || !actor)
		return -ENOMEM;
	tx.actor = actor;
	return run_transition(req, s, &tx, scope);
}

#define TRANSITION_HANDLER(name, act)                     \
	static int h_##name(gh_http_req_t *req, void *ud) \
	{                                                 \
		return transition(req, ud, act, false);   \
	}
TRANSITION_HANDLER(reserve, NUM_ACT_RESERVE)
TRANSITION_HANDLER(assign, NUM_ACT_ASSIGN)
TRANSITION_HANDLER(release, NUM_ACT_RELEASE)
TRANSITION_HANDLER(recall, NUM_ACT_RECALL)
TRANSITION_HANDLER(suspend, NUM_ACT_SUSPEND)
TRANSITION_HANDLER(resume, NUM_ACT_RESUME)
TRANSITION_HANDLER(reclaim, NUM_ACT_RECLAIM)

static int h_admin_recall(gh_http_req_t *req, void *ud)
{
	return transition(req, ud, NUM_ACT_RECALL, true);
}
static int h_admin_suspend(gh_http_req_t *req, void *ud)
{
	return transition(req, ud, NUM_ACT_SUSPEND, true);
}
static int h_admin_resume(gh_http_req_t *req, void *ud)
{
	return transition(req, ud, NUM_ACT_RESUME, true);
}

static const gh_json_field_t override_fields[] = {
    {"justification", GH_JSON_STRING, 1},
    {"expected_version", GH_JSON_INTEGER},
    {NULL},
};

static int h_override(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_ident_t id;
	json_t *b;
	if (path_ident(req, &id) < 0 || gh_http_json_body(req, override_fields, &b) < 0)
		return -EINVAL;
	const char *just = gh_json_get_str(b, "justification", "");
	if (strlen(just) < s->lifecycle.justification_min)
		return bad_arg(req, "/justification",
		               "justification must be at least 20 characters");
	char *actor = admin_actor(req);
	if (!actor)
		return -ENOMEM;
	num_tx_req_t tx = {.key = id.key,
	                   .action = NUM_ACT_OVERRIDE,
	                   .role = NUM_ROLE_ADMIN,
	                   .actor = actor,
	                   .justification = just,
	                   .expected_version = gh_json_get_int(b, "expected_version", -1),
	                   .auto_renew = -1};
	return run_transition(req, s, &tx, actor);
}

/* ---- admin: numbers ---------------------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Page tokens: base64url (no padding) of the last key, 8 bytes big-endian: 11 characters. */
void num_page_token_encode(uint64_t key, char out[12])
{
	uint8_t b[9] = {0};
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(key >> (56 - 8 * i));
	int o = 0;
	for (int i = 0; i < 9; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		if (i < 6)
			out[o++] = b64url[v & 63];
	}
	out[11] = '\0';
}

int num_page_token_decode(const char *s, uint64_t *key)
{
	if (strlen(s) != 11)
		return -EINVAL;
	uint64_t k = 0;
	for (int i = 0; i < 11; i++) {
		const char *p = strchr(b64url, s[i]);
		if (!p || !s[i])
			return -EINVAL;
		unsigned v = (unsigned)(p - b64url);
		for (int b = 0; b < 6; b++) {
			unsigned bit = v >> (5 - b) & 1u, pos = (unsigned)(i * 6 + b);
			if (pos < 64)
				k |= (uint64_t)bit << (63 - pos);
			else if (bit)
				return -EINVAL; /* the 2 padding bits must be zero */
		}
	}
	*key = k;
	return k ? 0 : -EINVAL;
}

static int h_numbers_list(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	int64_t page_size;
	if (gh_http_query_int(req, "page_size", 50, 1, 1000, &page_size) < 0)
		return -EINVAL;
	num_filter_t f = {.kind = -1, .state = -1, .vanity_min = -1};
	const char *q;
	if ((q = gh_http_query(req, "kind"))) {
		num_kind_t k;
		if (num_kind_parse(q, &k) < 0)
			return bad_arg(req, "kind", "kind must be MSISDN, SHORT_CODE or ALPHA");
		f.kind = (int)k;
	}
	if ((q = gh_http_query(req, "state"))) {
		num_state_t st;
		if (num_state_parse(q, &st) < 0)
			return bad_arg(req, "state", "unknown state");
		f.state = (int)st;
	}
	f.operator_id = gh_http_query(req, "operator_id");
	f.tenant_id = gh_http_query(req, "tenant_id");
	f.prefix = gh_http_query(req, "prefix");
	f.pattern = gh_http_query(req, "pattern");
	if (gh_http_query(req, "vanity_min")) {
		int64_t v;
		if (gh_http_query_int(req, "vanity_min", 0, 0, 255, &v) < 0)
			return -EINVAL;
		f.vanity_min = (int)v;
	}
	uint64_t after = 0;
	if ((q = gh_http_query(req, "page_token")) && num_page_token_decode(q, &after) < 0)
		return bad_arg(req, "page_token", "invalid page_token");

	void *ctx = gh_http_ctx(req);
	num_number_t *rows = NULL;
	size_t n = 0;
	uint64_t next = 0;
	int rc = num_repo_list(s->repo, &f, after, (int)page_size, ctx, &rows, &n, &next,
	                       gh_http_err(req));
	if (rc < 0)
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, num_number_json(&rows[i]));
	json_t *out = json_pack("{so}", "numbers", arr);
	if (next) {
		char tok[12];
		num_page_token_encode(next, tok);
		json_object_set_new(out, "next_page_token", json_string(tok));
	}
	return gh_http_reply_json(req, 200, out);
}

static int h_number_get(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_ident_t id;
	num_number_t n;
	if (path_ident(req, &id) < 0)
		return -EINVAL;
	int rc = num_repo_get(s->repo, id.key, NULL, &n, gh_http_err(req));
	if (rc < 0)
		return rc;
	return gh_http_reply_json(req, 200, num_number_json(&n));
}

static int h_number_history(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_ident_t id;
	json_t *h;
	if (path_ident(req, &id) < 0)
		return -EINVAL;
	num_number_t n;
	int rc = num_repo_get(s->repo, id.key, NULL, &n, gh_http_err(req));
	if (rc < 0)
		return rc;
	if ((rc = num_repo_history(s->repo, id.key, &h, gh_http_err(req))) < 0)
		return rc;
	return gh_http_reply_json(req, 200,
	                          json_pack("{ssso}", "identifier", n.identifier, "history", h));
}

static const gh_json_field_t add_item_fields[] = {
    {"identifier", GH_JSON_STRING, 1},
    {"kind", GH_JSON_STRING},
    {"operator_id", GH_JSON_STRING},
    {"vanity_tier", GH_JSON_INTEGER},
    {NULL},
};
static const gh_json_field_t add_fields[] = {
    {"numbers", GH_JSON_ARRAY, 1, 0, GH_JSON_OBJECT, add_item_fields},
    {NULL},
};

typedef struct {
	num_svc_t *s;
	num_new_t *nums;
	uint64_t *keys;
	size_t n;
	int64_t now;
	const char *actor;
	bool ok;
} add_run_t;

static int add_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body)
{
	add_run_t *a = ud;
	num_repo_t *view;
	a->ok = false;
	int rc = num_repo_on_conn(gh_http_ctx(req), a->s->repo, c, &view);
	if (rc < 0)
		return rc;
	gh_err_t *e = gh_http_err(req);
	gh_err_clear(e);
	if ((rc = num_repo_add(view, a->nums, a->n, a->actor, a->now, e)) < 0)
		return rc;
	json_t *arr = json_array();
	for (size_t i = 0; i < a->n; i++) {
		num_number_t n;
		if ((rc = num_repo_get(view, a->keys[i], NULL, &n, e)) < 0) {
			json_decref(arr);
			return rc;
		}
		json_array_append_new(arr, num_number_json(&n));
	}
	*body = json_pack("{sIso}", "added", (json_int_t)a->n, "numbers", arr);
	*status = 201;
	a->ok = true;
	return 0;
}

static int h_numbers_add(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	json_t *b;
	if (gh_http_json_body(req, add_fields, &b) < 0)
		return -EINVAL;
	json_t *arr = json_object_get(b, "numbers");
	size_t n = json_array_size(arr);
	if (n < 1 || n > ADD_MAX)
		return bad_arg(req, "/numbers", "numbers: 1 to 1000 entries");
	void *ctx = gh_http_ctx(req);
	add_run_t a = {.s = s, .n = n, .now = now_ms(s), .actor = admin_actor(req)};
	a.nums = talloc_zero_array(ctx, num_new_t, n);
	a.keys = talloc_zero_array(ctx, uint64_t, n);
	if (!a.nums || !a.keys || !a.actor)
		return -ENOMEM;
	gh_err_t *e = gh_http_err(req);
	for (size_t i = 0; i < n; i++) {
		json_t *it = json_array_get(arr, i);
		const char *ident = gh_json_get_str(it, "identifier", "");
		const char *kind = gh_json_get_str(it, "kind", NULL);
		gh_ident_kind_t k = GH_IDENT_AUTO;
		gh_ident_t id;
		if (kind && gh_ident_kind_parse(kind, &k) < 0) {
			gh_err_set(e, GH_E_INVALID_ARGUMENT, NULL,
			           "kind must be MSISDN, SHORT_CODE or ALPHA");
			snprintf(e->field, sizeof e->field, "/numbers/%zu/kind", i);
			return -EINVAL;
		}
		if (gh_ident_normalize(NULL, k, ident, strlen(ident), &id, e) < 0) {
			snprintf(e->field, sizeof e->field, "/numbers/%zu/identifier", i);
			return -EINVAL;
		}
		int64_t vt = gh_json_get_int(it, "vanity_tier", 0);
		if (vt < 0 || vt > 255) {
			gh_err_set(e, GH_E_INVALID_ARGUMENT, NULL, "vanity_tier must be 0..255");
			snprintf(e->field, sizeof e->field, "/numbers/%zu/vanity_tier", i);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (a.keys[j] == id.key) {
				gh_err_set(e, GH_E_INVALID_ARGUMENT, NULL,
				           "identifier listed twice");
				snprintf(e->field, sizeof e->field, "/numbers/%zu/identifier", i);
				return -EINVAL;
			}
		a.keys[i] = id.key;
		a.nums[i] = (num_new_t){.identifier = ident,
		                        .kind = (int)k,
		                        .operator_id = gh_json_get_str(it, "operator_id", NULL),
		                        .vanity_tier = (int)vt};
	}
	int rc = gh_idem_handle(req, s->store, a.actor, s->idem_ttl_ms, s->clock, add_fn, &a);
	if (a.ok && replied_ok(req))
		for (size_t i = 0; i < n; i++)
			num_svc_refresh_key(s, a.keys[i], 1);
	return rc;
}

/* ---- admin: operators -------------------------------------------------------------------- */

static const gh_json_field_t operator_create_fields[] = {
    {"id", GH_JSON_STRING, 1},
    {"name", GH_JSON_STRING, 1},
    {"mcc", GH_JSON_STRING, 1},
    {"mncs", GH_JSON_ARRAY, 1, 0, GH_JSON_STRING},
    {"prefixes", GH_JSON_ARRAY, 1, 0, GH_JSON_STRING},
    {"valid_from", GH_JSON_STRING, 0, 1},
    {"valid_to", GH_JSON_STRING, 0, 1},
    {NULL},
};
static const gh_json_field_t operator_patch_fields[] = {
    {"name", GH_JSON_STRING},
    {"mcc", GH_JSON_STRING},
    {"mncs", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"prefixes", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"valid_from", GH_JSON_STRING, 0, 1},
    {"valid_to", GH_JSON_STRING, 0, 1},
    {"expected_version", GH_JSON_INTEGER},
    {NULL},
};

static int h_operators_list(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	json_t *ops;
	int rc = num_repo_operators_list(s->repo, &ops, gh_http_err(req));
	if (rc < 0)
		return rc;
	return gh_http_reply_json(req, 200, json_pack("{so}", "operators", ops));
}

/* Operators and pools: one admin mutation on a JSON body. */
typedef enum { ADM_OP_CREATE, ADM_OP_PATCH, ADM_POOL_PUT, ADM_POOL_PATCH } adm_kind_t;

typedef struct {
	num_svc_t *s;
	adm_kind_t kind;
	const char *id; /* operator id or tenant id */
	json_t *body;   /* without expected_version */
	int64_t expected_version;
	int64_t now;
	const char *actor;
	char status[16]; /* pools: the status after the change */
	int64_t quota[NUM_KIND__COUNT], held[NUM_KIND__COUNT]; /* pools: after the change */
	bool ok;
} adm_run_t;

static int adm_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body)
{
	adm_run_t *a = ud;
	num_repo_t *view;
	json_t *out = NULL;
	a->ok = false;
	int rc = num_repo_on_conn(gh_http_ctx(req), a->s->repo, c, &view);
	if (rc < 0)
		return rc;
	gh_err_t *e = gh_http_err(req);
	gh_err_clear(e);
	switch (a->kind) {
	case ADM_OP_CREATE:
		rc = num_repo_operator_create(view, a->body, a->actor, a->now, &out, e);
		*status = 201;
		break;
	case ADM_OP_PATCH:
		rc = num_repo_operator_patch(view, a->id, a->body, a->expected_version, a->actor,
		                             a->now, &out, e);
		*status = 200;
		break;
	case ADM_POOL_PUT:
		rc = num_repo_pool_put(view, a->id, a->body, a->expected_version, a->actor, a->now,
		                       &out, e);
		*status = 200;
		break;
	case ADM_POOL_PATCH:
		rc = num_repo_pool_patch(view, a->id, a->body, a->expected_version, a->actor,
		                         a->now, &out, e);
		*status = 200;
		break;
	}
	if (rc < 0)
		return rc;
	snprintf(a->status, sizeof a->status, "%s", gh_json_get_str(out, "status", ""));
	for (int k = 0; k < NUM_KIND__COUNT; k++) {
		const char *kn = num_kind_name((num_kind_t)k);
		a->quota[k] =
		    json_integer_value(json_object_get(json_object_get(out, "quotas"), kn));
		a->held[k] = json_integer_value(json_object_get(json_object_get(out, "held"), kn));
	}
	*body = out;
	a->ok = true;
	return 0;
}

/* The admin mutation a on req's checked body; afterwards the local state follows the commit. */
static int run_admin(gh_http_req_t *req, num_svc_t *s, adm_run_t *a, json_t *b)
{
	a->s = s;
	a->now = now_ms(s);
	a->expected_version = -1;
	if (!(a->actor = admin_actor(req)))
		return -ENOMEM;
	json_t *ev = json_object_get(b, "expected_version");
	if (ev) {
		if (json_integer_value(ev) < 1)
			return bad_arg(req, "/expected_version", "expected_version must be >= 1");
		a->expected_version = json_integer_value(ev);
	}
	a->body = json_deep_copy(b);
	if (!a->body)
		return -ENOMEM;
	json_object_del(a->body, "expected_version");
	int rc = gh_idem_handle(req, s->store, a->actor, s->idem_ttl_ms, s->clock, adm_fn, a);
	json_decref(a->body);
	if (!a->ok || !replied_ok(req))
		return rc;
	if (a->kind == ADM_OP_CREATE || a->kind == ADM_OP_PATCH) {
		num_svc_reload_operators(s);
	} else {
		/* The pool's status reaches this replica's index at once; other replicas get the
		 * repository's num.cache.invalidate.v1. */
		num_svc_pool_sync(s, a->id, a->status);
		num_svc_pool_usage(s, a->id, a->quota, a->held);
	}
	return rc;
}

static int h_operator_create(gh_http_req_t *req, void *ud)
{
	json_t *b;
	if (gh_http_json_body(req, operator_create_fields, &b) < 0)
		return -EINVAL;
	adm_run_t a = {.kind = ADM_OP_CREATE};
	return run_admin(req, ud, &a, b);
}

static int h_operator_patch(gh_http_req_t *req, void *ud)
{
	json_t *b;
	if (gh_http_json_body(req, operator_patch_fields, &b) < 0)
		return -EINVAL;
	adm_run_t a = {.kind = ADM_OP_PATCH, .id = gh_http_param(req, "id")};
	return run_admin(req, ud, &a, b);
}

/* ---- admin: pools ------------------------------------------------------------------------ */

static const gh_json_field_t quota_fields[] = {
    {"MSISDN", GH_JSON_INTEGER},
    {"SHORT_CODE", GH_JSON_INTEGER},
    {"ALPHA", GH_JSON_INTEGER},
    {NULL},
};
static const gh_json_field_t pool_fields[] = {
    {"status", GH_JSON_STRING},
    {"segment", GH_JSON_STRING},
    {"quotas", GH_JSON_OBJECT, 0, 0, GH_JSON_ANY, quota_fields},
    {"max_reservations", GH_JSON_INTEGER},
    {"allowed_operators", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"allowed_kinds", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"vanity_allowed", GH_JSON_BOOL},
    {"direct_assign", GH_JSON_BOOL},
    {"lease_term_days", GH_JSON_INTEGER},
    {"auto_renew", GH_JSON_BOOL},
    {"expected_version", GH_JSON_INTEGER},
    {NULL},
};

static int pool_tenant(gh_http_req_t *req, const char **tenant)
{
	*tenant = gh_http_param(req, "tenant_id");
	if (!tenant_ok(*tenant))
		return bad_arg(req, "tenant_id", "tenant_id: 1-59 characters of [A-Za-z0-9._:-]");
	return 0;
}

static int h_pool_get(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	const char *tenant;
	json_t *out;
	if (pool_tenant(req, &tenant) < 0)
		return -EINVAL;
	int rc = num_repo_pool_get(s->repo, tenant, &out, gh_http_err(req));
	if (rc < 0)
		return rc;
	return gh_http_reply_json(req, 200, out);
}

static int pool_write(gh_http_req_t *req, void *ud, adm_kind_t kind)
{
	const char *tenant;
	json_t *b;
	if (pool_tenant(req, &tenant) < 0 || gh_http_json_body(req, pool_fields, &b) < 0)
		return -EINVAL;
	adm_run_t a = {.kind = kind, .id = tenant};
	return run_admin(req, ud, &a, b);
}

static int h_pool_put(gh_http_req_t *req, void *ud) { return pool_write(req, ud, ADM_POOL_PUT); }
static int h_pool_patch(gh_http_req_t *req, void *ud)
{
	return pool_write(req, ud, ADM_POOL_PATCH);
}

/* ---- admin: audit ------------------------------------------------------------------------ */

static int h_audit_verify(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_audit_verify_t v;
	int rc = gh_audit_verify(s->store, "numbering", &v);
	if (rc < 0)
		return gh_err_set(gh_http_err(req), GH_E_UNAVAILABLE, NULL,
		                  "numbering database unavailable; retry later");
	gh_gauge_set(s->g_audit_broken, v.ok ? 0 : 1);
	if (!v.ok)
		gh_log(GH_LOG_ERROR, "numbering audit chain broken", "problem", v.reason, NULL);
	json_t *out = json_pack("{sbsI}", "ok", v.ok, "rows_checked", (json_int_t)v.rows);
	if (!v.ok) {
		json_object_set_new(out, "first_bad_seq", json_integer(v.first_bad_seq));
		json_object_set_new(out, "problem", json_string(v.reason));
	}
	return gh_http_reply_json(req, 200, out);
}

/* ---- routes ------------------------------------------------------------------------------ */

/* Internal API: other platform services over mTLS (the allowlist is http.client_cn_allowlist).
 * Admin API: platform-admin; compliance also for recall/suspend/resume (spec "Admin") and for
 * the reads and audit verification its investigations need. Portal: portal.c. */
#define NUMS     "/v1/numbering/numbers/{identifier}"
#define ADMIN    "/v1/admin/numbering"
#define MTLS     .auth = GH_AUTH_MTLS
#define PADMIN   .auth = GH_AUTH_JWT, .roles = GH_ROLE_PLATFORM_ADMIN
#define PADMIN_C .auth = GH_AUTH_JWT, .roles = GH_ROLE_PLATFORM_ADMIN | GH_ROLE_COMPLIANCE
#define TENANT_R .auth = GH_AUTH_JWT, .roles = GH_ROLES_TENANT
#define TENANT_W .auth = GH_AUTH_JWT, .roles = GH_ROLE_TENANT_ADMIN | GH_ROLE_TENANT_OPERATOR
#define PORTAL   "/v1/portal/numbering"
const gh_service_route_t num_routes[] = {
    {"GET", "/v1/numbering/validate-lease", h_validate_get, MTLS},
    {"POST", "/v1/numbering/validate-lease", h_validate_post, MTLS},
    {"GET", "/v1/numbering/lookup/{identifier}", h_lookup, MTLS},
    {"POST", NUMS ":reserve", h_reserve, MTLS},
    {"POST", NUMS ":assign", h_assign, MTLS},
    {"POST", NUMS ":release", h_release, MTLS},
    {"POST", NUMS ":recall", h_recall, MTLS},
    {"POST", NUMS ":suspend", h_suspend, MTLS},
    {"POST", NUMS ":resume", h_resume, MTLS},
    {"POST", NUMS ":reclaim", h_reclaim, MTLS},
    {"GET", ADMIN "/operators", h_operators_list, PADMIN_C},
    {"POST", ADMIN "/operators", h_operator_create, PADMIN},
    {"PATCH", ADMIN "/operators/{id}", h_operator_patch, PADMIN},
    {"GET", ADMIN "/numbers", h_numbers_list, PADMIN_C},
    {"POST", ADMIN "/numbers", h_numbers_add, PADMIN},
    {"GET", ADMIN "/numbers/{identifier}", h_number_get, PADMIN_C},
    {"GET", ADMIN "/numbers/{identifier}/history", h_number_history, PADMIN_C},
    {"POST", ADMIN "/numbers/{identifier}:override-quarantine", h_override, PADMIN},
    {"POST", ADMIN "/numbers/{identifier}:recall", h_admin_recall, PADMIN_C},
    {"POST", ADMIN "/numbers/{identifier}:suspend", h_admin_suspend, PADMIN_C},
    {"POST", ADMIN "/numbers/{identifier}:resume", h_admin_resume, PADMIN_C},
    {"GET", ADMIN "/pools/{tenant_id}", h_pool_get, PADMIN_C},
    {"PUT", ADMIN "/pools/{tenant_id}", h_pool_put, PADMIN},
    {"PATCH", ADMIN "/pools/{tenant_id}", h_pool_patch, PADMIN},
    {"POST", ADMIN "/audit:verify", h_audit_verify, PADMIN_C},
    {"GET", PORTAL "/available", num_portal_available, TENANT_R},
    {"GET", PORTAL "/numbers", num_portal_numbers, TENANT_R},
    {"GET", PORTAL "/numbers/{identifier}", num_portal_number, TENANT_R},
    {"POST", PORTAL "/numbers/{identifier}:reserve", num_portal_reserve, TENANT_W},
    {"POST", PORTAL "/numbers/{identifier}:assign", num_portal_assign, TENANT_W},
    {"POST", PORTAL "/numbers/{identifier}:release", num_portal_release, TENANT_W},
    {"POST", PORTAL "/numbers/{identifier}:reclaim", num_portal_reclaim, TENANT_W},
    {"GET", PORTAL "/leases", num_portal_leases, TENANT_R},
    {"GET", PORTAL "/pool", num_portal_pool, TENANT_R},
    {"POST", ADMIN "/exports", num_export_h_create, .auth = GH_AUTH_JWT, .roles = NUM_EXPORT_ROLES},
    {"GET", ADMIN "/exports", num_export_h_list, .auth = GH_AUTH_JWT, .roles = NUM_EXPORT_ROLES},
    {"GET", ADMIN "/exports/{id}", num_export_h_get, .auth = GH_AUTH_JWT,
     .roles = NUM_EXPORT_ROLES},
    {"GET", ADMIN "/exports/{id}/file", num_export_h_file, .auth = GH_AUTH_JWT,
     .roles = NUM_EXPORT_ROLES},
/* imports, signing keys, contracts (import.c): platform-admin */
#define PA .auth = GH_AUTH_JWT, .roles = GH_ROLE_PLATFORM_ADMIN
    {"GET", ADMIN "/operators/{id}/signing-keys", num_h_signing_keys_list, PA},
    {"POST", ADMIN "/operators/{id}/signing-keys", num_h_signing_key_add, PA},
    {"GET", ADMIN "/contracts", num_h_contracts_list, PA},
    {"POST", ADMIN "/contracts", num_h_contract_create, PA},
    {"POST", ADMIN "/imports", num_h_import_create, .import_body = 1, PA},
    {"GET", ADMIN "/imports/{id}", num_h_import_get, PA},
    {"GET", ADMIN "/imports/{id}/errors", num_h_import_errors, PA},
#undef PA
    {NULL},
};
