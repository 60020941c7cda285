/* grpc: the numbering gRPC server on gRPC's C core (see grpc.h).
 *
 * Every method is registered with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so a call arrives
 * with its request message: one completion for the request, one batch (initial metadata,
 * message, status, close) for the answer. Each method keeps PENDING requests armed; a worker
 * that takes a call arms a new one before it handles it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <talloc.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "grpc.h"
#include "numbering.pb-c.h"
#include "service.h"

#define PENDING    32 /* armed requests per method */
#define MSG_MAX    4096
#define SVC_PREFIX "/ghasi.numbering.v1.Numbering/"

typedef struct num_grpc_call_s gcall_t;

/* The answer a method handler fills: a packed message, or a status. */
typedef struct {
	grpc_status_code status;
	gh_err_t err; /* status != OK: code, message, field */
	uint8_t *msg; /* packed response (status OK) */
	size_t len;
	uint8_t buf[MSG_MAX]; /* msg points here when it fits */
	bool replayed;        /* idempotent replay: trailing `idempotent-replayed: true` */
} gans_t;

typedef void (*gmethod_fn)(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a);

typedef struct {
	const char *name;
	gmethod_fn fn;
} gmethod_def_t;

struct num_grpc_s {
	num_svc_t *s;
	num_grpc_opts_t o;
	grpc_server *srv;
	grpc_completion_queue *cq;
	void *mhandle[16];
	pthread_t *thr;
	int nthr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool shutdown_done, stopped, started;
	int shutdown_tag; /* its address is the tag */
	bool tls;         /* every call's peer presented a verified client certificate */
	char **allowlist; /* CNs admitted when tls; nallow entries */
	size_t nallow;
};

enum { PH_REQUEST, PH_FINISH };

struct num_grpc_call_s {
	int phase;
	int m; /* method index */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_byte_buffer *resp;
	grpc_slice details;
	grpc_metadata trailing[4];
	size_t ntrailing;
	int cancelled;
	grpc_call_details gdetails; /* m < 0 */
	char actor[160];            /* audit actor: "service:<cn>" ("service:unverified": plain) */
};

/* ---- status mapping ----------------------------------------------------------------------- */

static grpc_status_code status_of(gh_code_t code)
{
	switch (code) {
	case GH_E_CONFLICT:
	case GH_E_INVALID_TRANSITION: return GRPC_STATUS_ABORTED;
	case GH_E_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
	case GH_E_INVALID_ARGUMENT:
	case GH_E_MALFORMED_JSON: return GRPC_STATUS_INVALID_ARGUMENT;
	case GH_E_QUOTA_EXCEEDED:
	case GH_E_FAILED_PRECONDITION: return GRPC_STATUS_FAILED_PRECONDITION;
	case GH_E_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
	case GH_E_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
	case GH_E_PERMISSION_DENIED: return GRPC_STATUS_PERMISSION_DENIED;
	case GH_E_ALREADY_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
	case GH_E_IDEMPOTENCY_KEY_REUSED: return GRPC_STATUS_FAILED_PRECONDITION;
	case GH_E_RATE_LIMITED: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case GH_E_FEATURE_DISABLED:
	case GH_E_METHOD_NOT_ALLOWED: return GRPC_STATUS_UNIMPLEMENTED;
	case GH_E_PAYLOAD_TOO_LARGE: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	default: return GRPC_STATUS_INTERNAL;
	}
}

/* a->err filled with code: the status follows from it. */
static void fail(gans_t *a, gh_code_t code, const char *field, const char *msg)
{
	gh_err_set(&a->err, code, field, "%s", msg);
	a->status = status_of(code);
}

static void fail_err(gans_t *a)
{
	if (a->err.code == GH_OK)
		gh_err_set(&a->err, GH_E_INTERNAL, NULL, "internal error");
	a->status = status_of(a->err.code);
}

/* Pack m into the answer (the stack buffer when it fits). */
static void pack(gans_t *a, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	a->msg = n <= sizeof a->buf ? a->buf : malloc(n);
	if (!a->msg) {
		fail(a, GH_E_INTERNAL, NULL, "out of memory");
		return;
	}
	a->len = protobuf_c_message_pack(m, a->msg);
	a->status = GRPC_STATUS_OK;
}

/* ---- request helpers ----------------------------------------------------------------------- */

static const char *methods_name(int m);
static const char *empty_null(const char *s) { return s && *s ? s : NULL; }

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

/* ---- ValidateLease, Lookup ------------------------------------------------------------------ */

static void m_validate(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	num_svc_t *s = g->s;
	int64_t t0 = gh_clock_mono_ns(s->clock);
	int64_t now = gh_clock_now_ms(s->clock);
	int res;
	Ghasi__Numbering__V1__ValidateLeaseRequest *rq =
	    ghasi__numbering__v1__validate_lease_request__unpack(NULL, len, in);
	num_vresult_t r;
	int rc;
	if (!rq) {
		fail(a, GH_E_INVALID_ARGUMENT, NULL, "malformed ValidateLeaseRequest");
		res = NUM_VRES_INVALID;
	} else if (!rq->identifier[0]) {
		fail(a, GH_E_INVALID_ARGUMENT, "identifier", "identifier is required");
		res = NUM_VRES_INVALID;
	} else if (!tenant_ok(rq->tenant_id)) {
		fail(a, GH_E_INVALID_ARGUMENT, "tenant_id",
		     "tenant_id is required: 1-59 characters of [A-Za-z0-9._:-]");
		res = NUM_VRES_INVALID;
	} else if ((rc = num_svc_validate(s, rq->identifier, strlen(rq->identifier), rq->tenant_id,
	                                  now, &r, &a->err)) == 0) {
		res = (int)r.v.reason;
		Ghasi__Numbering__V1__ValidateLeaseResponse o =
		    GHASI__NUMBERING__V1__VALIDATE_LEASE_RESPONSE__INIT;
		char id[37], ends[25];
		o.allowed = r.v.allowed;
		o.reason = (Ghasi__Numbering__V1__Reason)(r.v.reason + 1);
		o.identifier = r.id.canonical;
		o.kind = (Ghasi__Numbering__V1__Kind)(r.id.kind + 1);
		if (r.v.reason != NUM_VR_NOT_REGISTERED) {
			const gh_operator_t *op = num_svc_operator(s, &r.v.entry, &r.id, now);
			if (op)
				o.operator_id = (char *)op->id;
		}
		/* Lease data only to its holder, as over HTTP. */
		if (r.caller_is_holder && !gh_uuid_is_nil(r.v.entry.lease_id)) {
			gh_uuid_format(r.v.entry.lease_id, id);
			gh_time_format(r.v.entry.lease_ends_at_ms, ends);
			o.lease_id = id;
			o.lease_ends_at = ends;
		}
		pack(a, &o.base);
	} else if (rc == -EINVAL) {
		snprintf(a->err.field, sizeof a->err.field, "identifier");
		fail_err(a);
		res = NUM_VRES_INVALID;
	} else {
		/* Fail closed: never an answer the index or the database did not give. */
		fail(a, GH_E_UNAVAILABLE, NULL,
		     rc == -ESTALE ? "number index is stale; retry later"
		                   : "numbering database unavailable; retry later");
		res = NUM_VRES_UNAVAILABLE;
	}
	if (rq)
		ghasi__numbering__v1__validate_lease_request__free_unpacked(rq, NULL);
	gh_histogram_observe_ns(s->h_validate[res], gh_clock_mono_ns(s->clock) - t0);
}

/* The caller for anomaly counting: the verified certificate CN, else the peer address. */
static char *caller_of(gcall_t *c)
{
	char *peer = grpc_call_get_peer(c->call);
	char *out = peer ? strdup(peer) : NULL;
	gpr_free(peer);
	return out;
}

static void m_lookup(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	num_svc_t *s = g->s;
	Ghasi__Numbering__V1__LookupRequest *rq =
	    ghasi__numbering__v1__lookup_request__unpack(NULL, len, in);
	gh_ident_t id;
	num_index_entry_t e;
	if (!rq) {
		fail(a, GH_E_INVALID_ARGUMENT, NULL, "malformed LookupRequest");
		return;
	}
	if (gh_ident_normalize(NULL, GH_IDENT_AUTO, rq->identifier, strlen(rq->identifier), &id,
	                       &a->err) < 0) {
		if (!rq->identifier[0])
			gh_err_set(&a->err, GH_E_INVALID_ARGUMENT, NULL, "identifier missing");
		snprintf(a->err.field, sizeof a->err.field, "identifier");
		fail_err(a);
		goto out;
	}
	int64_t now = gh_clock_now_ms(s->clock);
	int rc = num_svc_entry(s, id.key, now, &e);
	if (rc == -ENOENT) {
		char *caller = caller_of(c);
		num_anomaly_on_lookup_unknown(s, caller, id.key, now);
		free(caller);
		fail(a, GH_E_NOT_FOUND, NULL, "identifier is not registered");
		goto out;
	}
	if (rc < 0) {
		fail(a, GH_E_UNAVAILABLE, NULL,
		     rc == -ESTALE ? "number index is stale; retry later"
		                   : "numbering database unavailable; retry later");
		goto out;
	}
	Ghasi__Numbering__V1__LookupResponse o = GHASI__NUMBERING__V1__LOOKUP_RESPONSE__INIT;
	const gh_operator_t *op = num_svc_operator(s, &e, &id, now);
	o.identifier = id.canonical;
	o.kind = (Ghasi__Numbering__V1__Kind)(id.kind + 1);
	o.state = (Ghasi__Numbering__V1__State)(e.state + 1);
	if (op) {
		o.operator_id = (char *)op->id;
		o.mcc = (char *)op->mcc;
		o.mnc = (char *)op->mnc[0];
	}
	o.vanity_tier = e.vanity_tier;
	pack(a, &o.base);
out:
	ghasi__numbering__v1__lookup_request__free_unpacked(rq, NULL);
}

/* ---- mutations ------------------------------------------------------------------------------ */

/* Metadata value of key as a NUL-terminated copy under ctx, or NULL. */
static char *md_get(void *ctx, const grpc_metadata_array *md, const char *key)
{
	for (size_t i = 0; i < md->count; i++)
		if (grpc_slice_str_cmp(md->metadata[i].key, key) == 0)
			return talloc_strndup(
			    ctx, (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value),
			    GRPC_SLICE_LENGTH(md->metadata[i].value));
	return NULL;
}

static int name_index(const char *const *names, size_t n, const char *v)
{
	for (size_t i = 0; v && i < n; i++)
		if (strcmp(names[i], v) == 0)
			return (int)i;
	return -1;
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

/* The stored/returned JSON Number (num_number_json) as the proto Number, packed into a. */
static void pack_number(gans_t *a, const char *body, size_t len)
{
	static const char *const kinds[] = {"MSISDN", "SHORT_CODE", "ALPHA"};
	static const char *const states[] = {"AVAILABLE", "RESERVED",    "ASSIGNED",
	                                     "SUSPENDED", "QUARANTINED", "RETIRED"};
	static const char *const lstat[] = {"ACTIVE", "SUSPENDED", "ENDED"};
	static const char *const qr[] = {"RESERVATION_EXPIRED", "TENANT_RELEASE", "RECALL_ADMIN",
	                                 "RECALL_ABUSE"};
	json_t *j = json_loadb(body, len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		fail(a, GH_E_INTERNAL, NULL, "unreadable number");
		return;
	}
	Ghasi__Numbering__V1__Number n = GHASI__NUMBERING__V1__NUMBER__INIT;
	Ghasi__Numbering__V1__Reservation rv = GHASI__NUMBERING__V1__RESERVATION__INIT;
	Ghasi__Numbering__V1__Lease ls = GHASI__NUMBERING__V1__LEASE__INIT;
	Ghasi__Numbering__V1__Quarantine q = GHASI__NUMBERING__V1__QUARANTINE__INIT;
	n.identifier = (char *)jstr(j, "identifier");
	n.display = (char *)jstr(j, "display");
	n.kind = (Ghasi__Numbering__V1__Kind)(name_index(kinds, 3, jstr(j, "kind")) + 1);
	n.state = (Ghasi__Numbering__V1__State)(name_index(states, 6, jstr(j, "state")) + 1);
	n.operator_id = (char *)jstr(j, "operator_id");
	n.tenant_id = (char *)jstr(j, "tenant_id");
	n.version = json_integer_value(json_object_get(j, "version"));
	n.vanity_tier = (uint32_t)json_integer_value(json_object_get(j, "vanity_tier"));
	json_t *o;
	if ((o = json_object_get(j, "reservation"))) {
		rv.created_at = (char *)jstr(o, "created_at");
		rv.expires_at = (char *)jstr(o, "expires_at");
		n.reservation = &rv;
	}
	if ((o = json_object_get(j, "lease"))) {
		ls.lease_id = (char *)jstr(o, "lease_id");
		ls.status =
		    (Ghasi__Numbering__V1__LeaseStatus)(name_index(lstat, 3, jstr(o, "status")) +
		                                        1);
		ls.starts_at = (char *)jstr(o, "starts_at");
		ls.ends_at = (char *)jstr(o, "ends_at");
		ls.auto_renew = json_is_true(json_object_get(o, "auto_renew"));
		n.lease = &ls;
	}
	if ((o = json_object_get(j, "quarantine"))) {
		q.reason =
		    (Ghasi__Numbering__V1__QuarantineReason)(name_index(qr, 4, jstr(o, "reason")) +
		                                             1);
		q.quarantined_at = (char *)jstr(o, "quarantined_at");
		q.quarantine_until = (char *)jstr(o, "quarantine_until");
		q.previous_tenant_id = (char *)jstr(o, "previous_tenant_id");
		n.quarantine = &q;
	}
	pack(a, &n.base);
	json_decref(j);
}

/* A stored error envelope ({"error":{"code","message","field"}}) as the answer. */
static void fail_envelope(gans_t *a, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	gh_code_t code = GH_E_INTERNAL;
	for (int i = 0; i < GH_E__COUNT; i++)
		if (strcmp(gh_code_name((gh_code_t)i), jstr(e, "code")) == 0)
			code = (gh_code_t)i;
	const char *field = jstr(e, "field");
	fail(a, code, *field ? field : NULL, e ? jstr(e, "message") : "unreadable stored error");
	json_decref(j);
}

typedef struct {
	const char *identifier, *tenant_id;
	int64_t expected_version;
	num_action_t action;
} mut_common_t;

/* Build tx from the request's common fields and run it as HTTP does (num_svc_transition). */
static void run_mutation(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len,
                         const mut_common_t *m, num_tx_req_t *tx, gans_t *a)
{
	num_svc_t *s = g->s;
	void *ctx = talloc_new(NULL);
	gh_ident_t id;
	if (!ctx) {
		fail(a, GH_E_INTERNAL, NULL, "out of memory");
		return;
	}
	if (gh_ident_normalize(NULL, GH_IDENT_AUTO, m->identifier, strlen(m->identifier), &id,
	                       &a->err) < 0) {
		if (!m->identifier[0])
			gh_err_set(&a->err, GH_E_INVALID_ARGUMENT, NULL, "identifier missing");
		snprintf(a->err.field, sizeof a->err.field, "identifier");
		fail_err(a);
		goto out;
	}
	bool compliance = m->action == NUM_ACT_RECALL || m->action == NUM_ACT_SUSPEND ||
	                  m->action == NUM_ACT_RESUME;
	if ((m->tenant_id[0] || !compliance) && !tenant_ok(m->tenant_id)) {
		fail(a, GH_E_INVALID_ARGUMENT, "tenant_id",
		     "tenant_id: 1-59 characters of [A-Za-z0-9._:-]");
		goto out;
	}
	if (m->expected_version < 0) {
		fail(a, GH_E_INVALID_ARGUMENT, "expected_version",
		     "expected_version must be >= 1 (0: none)");
		goto out;
	}
	const char *key = md_get(ctx, &c->md, "idempotency-key");
	if (key && gh_idem_key_check(key) < 0) {
		fail(a, GH_E_INVALID_ARGUMENT, "idempotency-key",
		     "idempotency-key must be 1-255 printable ASCII characters");
		goto out;
	}
	char hash[65];
	if (key && gh_idem_hash("grpc", methods_name(c->m), in, len, hash) < 0) {
		fail(a, GH_E_INTERNAL, NULL, "internal error");
		goto out;
	}
	const char *tenant = m->tenant_id[0] ? m->tenant_id : NULL;
	char *rid = md_get(ctx, &c->md, "x-request-id");
	if (!rid || !*rid || strlen(rid) > 128) {
		rid = talloc_size(ctx, 37);
		if (rid)
			gh_uuid_v7(gh_clock_now_ms(s->clock), rid);
	}
	tx->key = id.key;
	tx->action = m->action;
	tx->tenant_id = tenant;
	tx->expected_version = m->expected_version > 0 ? m->expected_version : -1;
	tx->request_id = rid;
	tx->traceparent = md_get(ctx, &c->md, "traceparent");
	/* the audit actor: the client certificate's CN, as the HTTP API's "service:<cn>" */
	tx->actor = c->actor;
	const char *scope = tenant ? talloc_asprintf(ctx, "tenant:%s", tenant) : "internal";
	if (!rid || !scope) {
		fail(a, GH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	tx->role = compliance ? NUM_ROLE_COMPLIANCE : NUM_ROLE_TENANT;
	gh_idem_call_t call = {.scope = scope,
	                       .key = key,
	                       .hash = key ? hash : NULL,
	                       .ttl_ms = s->idem_ttl_ms,
	                       .clock = s->clock,
	                       .ctx = ctx,
	                       .err = &a->err,
	                       .request_id = rid,
	                       .what = methods_name(c->m)};
	gh_idem_result_t res;
	if (num_svc_transition(s, tx, &call, &res) < 0) {
		fail(a, GH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	if (res.kind == GH_IDEM_RESPONSE && res.status < 300)
		pack_number(a, res.body, res.len);
	else if (res.kind == GH_IDEM_RESPONSE)
		fail_envelope(a, res.body, res.len); /* a replayed stored error */
	else
		fail_err(a);
	a->replayed = res.replayed;
out:
	talloc_free(ctx);
}

#define UNPACK_OR_FAIL(type, fn, var)                                     \
	type *var = fn##__unpack(NULL, len, in);                          \
	if (!var) {                                                       \
		fail(a, GH_E_INVALID_ARGUMENT, NULL, "malformed " #type); \
		return;                                                   \
	}

static void m_reserve(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__ReserveRequest, ghasi__numbering__v1__reserve_request,
	               rq);
	num_tx_req_t tx = {.auto_renew = -1, .ttl_s = rq->ttl_seconds};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_RESERVE};
	if (rq->ttl_seconds < 0)
		fail(a, GH_E_INVALID_ARGUMENT, "ttl_seconds",
		     "ttl_seconds must be >= 1 (0: default)");
	else
		run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__reserve_request__free_unpacked(rq, NULL);
}

static void m_assign(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__AssignRequest, ghasi__numbering__v1__assign_request,
	               rq);
	num_tx_req_t tx = {.term_days = rq->term_days,
	                   .auto_renew =
	                       rq->auto_renew == GHASI__NUMBERING__V1__AUTO_RENEW__AUTO_RENEW_ON ? 1
	                       : rq->auto_renew == GHASI__NUMBERING__V1__AUTO_RENEW__AUTO_RENEW_OFF
	                           ? 0
	                           : -1};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_ASSIGN};
	if (rq->term_days < 0)
		fail(a, GH_E_INVALID_ARGUMENT, "term_days", "term_days must be >= 1 (0: default)");
	else if (rq->auto_renew < 0 || rq->auto_renew > 2)
		fail(a, GH_E_INVALID_ARGUMENT, "auto_renew", "unknown auto_renew");
	else
		run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__assign_request__free_unpacked(rq, NULL);
}

static void m_release(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__ReleaseRequest, ghasi__numbering__v1__release_request,
	               rq);
	num_tx_req_t tx = {.auto_renew = -1};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_RELEASE};
	run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__release_request__free_unpacked(rq, NULL);
}

static void m_recall(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__RecallRequest, ghasi__numbering__v1__recall_request,
	               rq);
	num_tx_req_t tx = {.auto_renew = -1,
	                   .recall_reason = NUM_QR_RECALL_ADMIN,
	                   .justification = empty_null(rq->justification)};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_RECALL};
	if (rq->reason == GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_RECALL_ABUSE)
		tx.recall_reason = NUM_QR_RECALL_ABUSE;
	if (rq->reason != 0 &&
	    rq->reason != GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_RECALL_ADMIN &&
	    rq->reason != GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_RECALL_ABUSE)
		fail(a, GH_E_INVALID_ARGUMENT, "reason",
		     "reason must be RECALL_ADMIN or RECALL_ABUSE");
	else
		run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__recall_request__free_unpacked(rq, NULL);
}

static void m_suspend(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__SuspendRequest, ghasi__numbering__v1__suspend_request,
	               rq);
	num_tx_req_t tx = {.auto_renew = -1, .justification = empty_null(rq->reason)};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_SUSPEND};
	run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__suspend_request__free_unpacked(rq, NULL);
}

static void m_resume(num_grpc_t *g, gcall_t *c, const uint8_t *in, size_t len, gans_t *a)
{
	UNPACK_OR_FAIL(Ghasi__Numbering__V1__ResumeRequest, ghasi__numbering__v1__resume_request,
	               rq);
	num_tx_req_t tx = {.auto_renew = -1, .justification = empty_null(rq->reason)};
	mut_common_t m = {rq->identifier, rq->tenant_id, rq->expected_version, NUM_ACT_RESUME};
	run_mutation(g, c, in, len, &m, &tx, a);
	ghasi__numbering__v1__resume_request__free_unpacked(rq, NULL);
}

static const gmethod_def_t methods[] = {
    {SVC_PREFIX "ValidateLease", m_validate}, {SVC_PREFIX "Lookup", m_lookup},
    {SVC_PREFIX "Reserve", m_reserve},        {SVC_PREFIX "Assign", m_assign},
    {SVC_PREFIX "Release", m_release},        {SVC_PREFIX "Recall", m_recall},
    {SVC_PREFIX "Suspend", m_suspend},        {SVC_PREFIX "Resume", m_resume},
};

static const char *methods_name(int m) { return m >= 0 ? methods[m].name : "grpc"; }
#define NMETHODS (sizeof methods / sizeof methods[0])

/* ---- the call machinery ------------------------------------------------------------------- */

/* Arm a request for method m, or (m < 0) for any other method: answered UNIMPLEMENTED. */
static int arm(num_grpc_t *g, int m)
{
	gcall_t *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->phase = PH_REQUEST;
	c->m = m;
	grpc_metadata_array_init(&c->md);
	grpc_call_error ce;
	if (m < 0) {
		grpc_call_details_init(&c->gdetails);
		ce = grpc_server_request_call(g->srv, &c->call, &c->gdetails, &c->md, g->cq, g->cq,
		                              c);
	} else {
		ce = grpc_server_request_registered_call(g->srv, g->mhandle[m], &c->call,
		                                         &c->deadline, &c->md, &c->payload, g->cq,
		                                         g->cq, c);
	}
	if (ce != GRPC_CALL_OK) {
		if (m < 0)
			grpc_call_details_destroy(&c->gdetails);
		grpc_metadata_array_destroy(&c->md);
		free(c);
		return -EIO;
	}
	return 0;
}

static void call_free(gcall_t *c)
{
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->resp)
		grpc_byte_buffer_destroy(c->resp);
	grpc_slice_unref(c->details);
	for (size_t i = 0; i < c->ntrailing; i++)
		grpc_slice_unref(c->trailing[i].value);
	grpc_metadata_array_destroy(&c->md);
	if (c->m < 0)
		grpc_call_details_destroy(&c->gdetails);
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

static void add_trailing(gcall_t *c, const char *key, const char *val)
{
	grpc_metadata *m = &c->trailing[c->ntrailing++];
	m->key = grpc_slice_from_static_string(key);
	m->value = grpc_slice_from_copied_string(val);
}

/* With TLS, the transport already verified the client certificate against tls_client_ca; the
 * call is admitted when its CN is on the allowlist. Sets c->actor; false: not admitted. */
static bool admit(num_grpc_t *g, gcall_t *c)
{
	if (!g->tls) {
		snprintf(c->actor, sizeof c->actor, "service:unverified");
		return true;
	}
	bool ok = false;
	grpc_auth_context *ac = grpc_call_auth_context(c->call);
	grpc_auth_property_iterator it =
	    grpc_auth_context_find_properties_by_name(ac, GRPC_X509_CN_PROPERTY_NAME);
	const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
	if (p && p->value_length > 0 && p->value_length < sizeof c->actor - 8 &&
	    !memchr(p->value, '\0', p->value_length)) {
		for (size_t i = 0; i < g->nallow && !ok; i++)
			ok = strlen(g->allowlist[i]) == p->value_length &&
			     memcmp(g->allowlist[i], p->value, p->value_length) == 0;
		if (ok)
			snprintf(c->actor, sizeof c->actor, "service:%.*s", (int)p->value_length,
			         p->value);
	}
	grpc_auth_context_release(ac);
	return ok;
}

static void handle(num_grpc_t *g, gcall_t *c)
{
	gans_t *a = malloc(sizeof *a);
	char msg[sizeof a->err.message + 64];
	if (!a) {
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		                             "out of memory", NULL);
		call_free(c);
		return;
	}
	memset(a, 0, offsetof(gans_t, buf));
	if (c->m < 0)
		c->deadline = c->gdetails.deadline;
	gpr_timespec now = gpr_now(c->deadline.clock_type);
	if (!admit(g, c)) {
		fail(a, GH_E_PERMISSION_DENIED, NULL,
		     "client certificate CN is not on http.client_cn_allowlist");
	} else if (c->m < 0) {
		fail(a, GH_E_METHOD_NOT_ALLOWED, NULL, "no such method");
	} else if (gpr_time_cmp(c->deadline, now) <= 0) {
		fail(a, GH_E_UNAVAILABLE, NULL, "deadline exceeded before the call was handled");
		a->status = GRPC_STATUS_DEADLINE_EXCEEDED;
	} else {
		grpc_byte_buffer_reader rd;
		grpc_slice in = grpc_empty_slice();
		if (c->payload && grpc_byte_buffer_reader_init(&rd, c->payload)) {
			in = grpc_byte_buffer_reader_readall(&rd);
			grpc_byte_buffer_reader_destroy(&rd);
		}
		methods[c->m].fn(g, c, GRPC_SLICE_START_PTR(in), GRPC_SLICE_LENGTH(in), a);
		grpc_slice_unref(in);
	}

	grpc_op ops[5];
	memset(ops, 0, sizeof ops);
	size_t n = 0;
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (c->m < 0) {
		/* the request message of an unknown method is read and dropped */
		ops[n].op = GRPC_OP_RECV_MESSAGE;
		ops[n++].data.recv_message.recv_message = &c->payload;
	}
	if (a->status == GRPC_STATUS_OK) {
		grpc_slice sl = grpc_slice_from_copied_buffer((const char *)a->msg, a->len);
		c->resp = grpc_raw_byte_buffer_create(&sl, 1);
		grpc_slice_unref(sl);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->resp;
		snprintf(msg, sizeof msg, "OK");
		if (a->replayed)
			add_trailing(c, "idempotent-replayed", "true");
	} else {
		const char *code = gh_code_name(a->err.code);
		snprintf(msg, sizeof msg, "%s: %s", code, a->err.message);
		add_trailing(c, "error-code", code);
		if (a->err.field[0])
			add_trailing(c, "error-field", a->err.field);
		if (a->replayed) /* a stored domain error, replayed */
			add_trailing(c, "idempotent-replayed", "true");
	}
	c->details = grpc_slice_from_copied_string(a->status == GRPC_STATUS_OK ? "" : msg);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = a->status;
	ops[n].data.send_status_from_server.status_details = &c->details;
	ops[n].data.send_status_from_server.trailing_metadata_count = c->ntrailing;
	ops[n++].data.send_status_from_server.trailing_metadata = c->trailing;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	if (a->msg && a->msg != a->buf)
		free(a->msg);
	gh_err_clear(&a->err);
	free(a);
	c->phase = PH_FINISH;
	if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK)
		call_free(c);
}

static void *worker(void *arg)
{
	num_grpc_t *g = arg;
	for (;;) {
		grpc_event ev =
		    grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &g->shutdown_tag) {
			pthread_mutex_lock(&g->mu);
			g->shutdown_done = true;
			pthread_cond_broadcast(&g->cv);
			pthread_mutex_unlock(&g->mu);
			continue;
		}
		gcall_t *c = ev.tag;
		if (c->phase == PH_FINISH || !ev.success) {
			/* answered, or a request that will never come (shutdown) */
			call_free(c);
			continue;
		}
		/* keep PENDING armed; fails only once the server shuts down */
		arm(g, c->m);
		handle(g, c);
	}
	return NULL;
}

/* ---- start, stop --------------------------------------------------------------------------- */

/* Without workers (start failed half-way) the stopping thread takes the completions. */
static void pump_until_shutdown(num_grpc_t *g)
{
	while (!g->shutdown_done) {
		grpc_event ev =
		    grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		if (ev.tag == &g->shutdown_tag)
			g->shutdown_done = true;
		else
			call_free(ev.tag);
	}
}

void num_grpc_stop(num_grpc_t *g)
{
	if (!g || g->stopped || !g->started)
		return;
	g->stopped = true;
	grpc_server_shutdown_and_notify(g->srv, g->cq, &g->shutdown_tag);
	if (g->nthr == 0) {
		grpc_server_cancel_all_calls(g->srv);
		pump_until_shutdown(g);
	}
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	int64_t ns = dl.tv_nsec + (g->o.drain_ms % 1000) * 1000000;
	dl.tv_sec += (time_t)(g->o.drain_ms / 1000 + ns / 1000000000);
	dl.tv_nsec = (long)(ns % 1000000000);
	pthread_mutex_lock(&g->mu);
	while (!g->shutdown_done)
		if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT)
			break;
	bool drained = g->shutdown_done;
	pthread_mutex_unlock(&g->mu);
	if (!drained) {
		gh_log(GH_LOG_WARN, "numbering: gRPC drain timed out; cancelling in-flight calls",
		       NULL);
		grpc_server_cancel_all_calls(g->srv);
		pthread_mutex_lock(&g->mu);
		while (!g->shutdown_done)
			pthread_cond_wait(&g->cv, &g->mu);
		pthread_mutex_unlock(&g->mu);
	}
	grpc_server_destroy(g->srv);
	grpc_completion_queue_shutdown(g->cq);
	for (int i = 0; i < g->nthr; i++)
		pthread_join(g->thr[i], NULL);
	if (g->nthr == 0)
		while (grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		           .type != GRPC_QUEUE_SHUTDOWN)
			;
	grpc_completion_queue_destroy(g->cq);
	grpc_shutdown();
}

static int grpc_destructor(num_grpc_t *g)
{
	num_grpc_stop(g);
	if (g->srv && !g->started) {
		grpc_server_destroy(g->srv);
		grpc_completion_queue_shutdown(g->cq);
		while (grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		           .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(g->cq);
		grpc_shutdown();
	}
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	return 0;
}

/* Plaintext without tls_cert; otherwise TLS requiring a client certificate that verifies
 * against tls_client_ca, with the allowlist copied into g. */
static int server_credentials(num_grpc_t *g, const num_grpc_opts_t *o,
                              grpc_server_credentials **out, gh_err_t *err)
{
	if (!o->tls_cert || !o->tls_cert[0]) {
		*out = grpc_insecure_server_credentials_create();
		return *out ? 0 : -ENOMEM;
	}
	if (!o->tls_key || !o->tls_key[0] || !o->tls_client_ca || !o->tls_client_ca[0])
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "tls_client_ca",
		                  "gRPC TLS needs tls_cert, tls_key and tls_client_ca");
	for (const char *const *cn = o->client_cn_allowlist; cn && *cn; cn++) {
		char **a = talloc_realloc(g, g->allowlist, char *, g->nallow + 1);
		if (!a)
			return -ENOMEM;
		g->allowlist = a;
		if (!(a[g->nallow++] = talloc_strdup(a, *cn)))
			return -ENOMEM;
	}
	void *tmp = talloc_new(NULL);
	char *cert, *key, *ca;
	int rc = -EINVAL;
	if (tmp && (cert = gh_tls_pem_read(tmp, "tls_cert", o->tls_cert, err)) &&
	    (key = gh_tls_pem_read(tmp, "tls_key", o->tls_key, err)) &&
	    (ca = gh_tls_pem_read(tmp, "tls_client_ca", o->tls_client_ca, err))) {
		grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
		/* the core copies the PEM strings */
		*out = grpc_ssl_server_credentials_create_ex(
		    ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
		rc = *out ? 0
		          : gh_err_set(err, GH_E_INVALID_ARGUMENT, "tls_cert",
		                       "gRPC TLS: cannot use the certificate files");
		g->tls = rc == 0;
	} else if (!tmp) {
		rc = -ENOMEM;
	}
	talloc_free(tmp);
	return rc;
}

int num_grpc_start(void *ctx, num_svc_t *s, const num_grpc_opts_t *o, num_grpc_t **out,
                   gh_err_t *err)
{
	if (!o || o->port < 1 || o->port > 65535 || o->threads < 1)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "grpc_port", "bad gRPC options");
	num_grpc_t *g = talloc_zero(ctx, num_grpc_t);
	if (!g)
		return -ENOMEM;
	g->s = s;
	g->o = *o;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	talloc_set_destructor(g, grpc_destructor);
	grpc_init();
	g->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_arg args[] = {
	    {.type = GRPC_ARG_INTEGER,
	     .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
	     .value.integer = 64 * 1024},
	};
	grpc_channel_args ca = {.num_args = 1, .args = args};
	g->srv = grpc_server_create(&ca, NULL);
	grpc_server_register_completion_queue(g->srv, g->cq, NULL);
	for (size_t i = 0; i < NMETHODS; i++)
		g->mhandle[i] = grpc_server_register_method(
		    g->srv, methods[i].name, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	char addr[300];
	snprintf(addr, sizeof addr, "%s:%d", o->bind && *o->bind ? o->bind : "0.0.0.0", o->port);
	grpc_server_credentials *cr;
	int rc = server_credentials(g, o, &cr, err);
	if (rc < 0) {
		talloc_free(g);
		return rc;
	}
	int bound = grpc_server_add_http2_port(g->srv, addr, cr);
	grpc_server_credentials_release(cr);
	if (bound == 0) {
		talloc_free(g);
		gh_err_set(err, GH_E_UNAVAILABLE, "grpc_port", "cannot listen on %s", addr);
		return -EADDRINUSE;
	}
	grpc_server_start(g->srv);
	g->started = true;
	for (int i = -1; i < (int)NMETHODS; i++)
		for (int k = 0; k < (i < 0 ? 2 : PENDING); k++)
			if (arm(g, i) < 0) {
				talloc_free(g);
				return gh_err_set(err, GH_E_INTERNAL, NULL,
				                  "cannot arm gRPC calls");
			}
	g->thr = talloc_array(g, pthread_t, o->threads);
	if (!g->thr) {
		talloc_free(g);
		return -ENOMEM;
	}
	for (int i = 0; i < o->threads; i++) {
		if (pthread_create(&g->thr[i], NULL, worker, g) != 0)
			break;
		pthread_setname_np(g->thr[i], "gh-grpc");
		g->nthr++;
	}
	if (g->nthr == 0) {
		talloc_free(g);
		return gh_err_set(err, GH_E_INTERNAL, NULL, "cannot start gRPC workers");
	}
	*out = g;
	return 0;
}
