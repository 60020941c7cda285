/* consumers: the events numbering consumes from other platform services (numbering spec,
 * "Events" consumed; issue 4, item 6):
 *
 *   compliance.tenant.suspended.v1  pool SUSPENDED, then recall every held number (RECALL_ADMIN)
 *   tenant.deleted.v1               pool SUSPENDED (a deleted tenant takes nothing new), recall all
 *   senderid.revoked.v1             recall that ALPHA from that tenant (RECALL_ABUSE)
 *   billing.account.delinquent.v1   suspend the tenant's ASSIGNED leases
 *   billing.account.paid.v1         resume its SUSPENDED leases
 *
 * Boundary (conventions.md "Events"): the message is parsed strictly and its envelope and data
 * are validated against the subject's JSON schema (core jsonschema, compiled once at start);
 * anything invalid is GH_BUS_REJECT with the failing pointer and keyword as the reason, so the
 * bus parks it on dlq.<subject> before anything was applied. Data fields (additional fields are
 * accepted: events evolve additively within v1):
 *   tenant events   {"tenant_id", "reason"?}
 *   senderid        {"alpha", "tenant_id", "reason"?}
 *   billing         {"tenant_id", "account_id"?}
 * The envelope's tenant_id, when set, must equal data.tenant_id.
 *
 * Idempotency by event id (gh_consumed, consumer "numbering"): a consumed event is acked
 * without effect. senderid.revoked records its id in the transaction of the recall. The bulk
 * events record it last, after the work: each step of the work is idempotent on its own
 * (recalling a number already recalled is an INVALID_TRANSITION, taken as done; every
 * transition is a CAS on the version listed), and the work's cursor is the database itself
 * (the tenant's numbers still held, or still ASSIGNED), so a crash at any point leaves the event
 * unacknowledged and its redelivery resumes where the database stands: nothing is skipped and
 * nothing is applied twice. Recording first would need a job table to tell "done" from "begun".
 *
 * Never blocking ValidateLease: the pool is suspended and the index flipped (one store, then
 * num.cache.invalidate.v1 from the pool write for the other replicas) before the recall starts,
 * so every validate of the tenant answers TENANT_SUSPENDED at once. The recall then runs on the
 * consumer's thread, one number per transaction, in pages of BULK_PAGE, holding at most one
 * pooled connection at a time (the HTTP threads keep the rest of the pool), and updates the
 * local index one entry at a time (the index writer lock is held for one slot write; readers
 * never wait for it anyway).
 *
 * Billing order: delinquent and paid may arrive out of order, be redelivered, or be handled by
 * two replicas at once. num_billing_state keeps the tenant's status from the latest event by
 * event time; each suspend/resume transaction re-reads it (FOR SHARE on PostgreSQL; SQLite
 * serialises writers) and applies only while it still holds the status it acts for, so a
 * resume can never be overtaken by a late suspend. Resume resumes every SUSPENDED lease of the
 * tenant: the spec's SUSPENDED does not record who suspended it. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "jsonschema.h"
#include "service.h"

#define CONSUMER    "numbering"
#define BULK_PAGE   200
#define BULK_PASSES 3

typedef enum {
	EV_TENANT_SUSPENDED = 0,
	EV_TENANT_DELETED,
	EV_SENDERID_REVOKED,
	EV_BILLING_DELINQUENT,
	EV_BILLING_PAID,
	EV__COUNT,
} ev_kind_t;

static const char *const ev_subjects[EV__COUNT] = {
    "compliance.tenant.suspended.v1", "tenant.deleted.v1",       "senderid.revoked.v1",
    "billing.account.delinquent.v1",  "billing.account.paid.v1",
};

const char *const num_consumed_subjects[] = {
    "compliance.tenant.suspended.v1", "tenant.deleted.v1",       "senderid.revoked.v1",
    "billing.account.delinquent.v1",  "billing.account.paid.v1", NULL,
};

/* ---- schemas ----------------------------------------------------------------------------- */

#define TENANT_ID_SCHEMA                                         \
	"{\"type\":\"string\",\"minLength\":1,\"maxLength\":59," \
	"\"pattern\":\"^[A-Za-z0-9._:-]+$\"}"
#define REASON_SCHEMA "{\"type\":\"string\",\"maxLength\":1000}"

/* The envelope of conventions.md; %s: the subject, then the data schema. */
static const char envelope_fmt[] =
    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
    "\"type\":\"object\","
    "\"required\":[\"id\",\"type\",\"source\",\"time\",\"data\"],"
    "\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"type\":{\"const\":\"%s\"},"
    "\"source\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":200},"
    "\"time\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"tenant_id\":{\"type\":[\"string\",\"null\"],\"maxLength\":59},"
    "\"aggregate_id\":{\"type\":[\"string\",\"null\"],\"maxLength\":200},"
    "\"aggregate_seq\":{\"type\":[\"integer\",\"null\"],\"minimum\":0},"
    "\"traceparent\":{\"type\":[\"string\",\"null\"],"
    "\"pattern\":\"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$\"},"
    "\"data\":%s}}";

static const char *const data_schemas[EV__COUNT] = {
    [EV_TENANT_SUSPENDED] = "{\"type\":\"object\",\"required\":[\"tenant_id\"],\"properties\":{"
                            "\"tenant_id\":" TENANT_ID_SCHEMA ",\"reason\":" REASON_SCHEMA "}}",
    [EV_TENANT_DELETED] = "{\"type\":\"object\",\"required\":[\"tenant_id\"],\"properties\":{"
                          "\"tenant_id\":" TENANT_ID_SCHEMA ",\"reason\":" REASON_SCHEMA "}}",
    [EV_SENDERID_REVOKED] =
        "{\"type\":\"object\",\"required\":[\"alpha\",\"tenant_id\"],\"properties\":{"
        "\"alpha\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":11,"
        "\"pattern\":\"^[A-Za-z0-9 ]*[A-Za-z][A-Za-z0-9 ]*$\"},"
        "\"tenant_id\":" TENANT_ID_SCHEMA ",\"reason\":" REASON_SCHEMA "}}",
    [EV_BILLING_DELINQUENT] =
        "{\"type\":\"object\",\"required\":[\"tenant_id\"],\"properties\":{"
        "\"tenant_id\":" TENANT_ID_SCHEMA ",\"account_id\":{\"type\":\"string\","
        "\"minLength\":1,\"maxLength\":64}}}",
    [EV_BILLING_PAID] = "{\"type\":\"object\",\"required\":[\"tenant_id\"],\"properties\":{"
                        "\"tenant_id\":" TENANT_ID_SCHEMA ",\"account_id\":{\"type\":\"string\","
                        "\"minLength\":1,\"maxLength\":64}}}",
};

struct num_events_s {
	gh_jsonschema_t *schema[EV__COUNT];
};

/* Test hook (see service.h): the bulk loop abandons its delivery after this many numbers. */
static atomic_int fault_abandon_after = -1;

void num_consumers_fault_abandon_after(int n) { atomic_store(&fault_abandon_after, n); }

int num_consumers_init(num_svc_t *s)
{
	struct num_events_s *ev = talloc_zero(s, struct num_events_s);
	if (!ev)
		return -ENOMEM;
	for (int i = 0; i < EV__COUNT; i++) {
		char *text = talloc_asprintf(ev, envelope_fmt, ev_subjects[i], data_schemas[i]);
		char why[256];
		if (!text)
			return -ENOMEM;
		int rc =
		    gh_jsonschema_compile(ev, text, strlen(text), &ev->schema[i], why, sizeof why);
		if (rc < 0) {
			gh_log(GH_LOG_ERROR, "numbering: event schema does not compile", "subject",
			       ev_subjects[i], "why", why, NULL);
			talloc_free(ev);
			return rc;
		}
	}
	s->events = ev;
	return 0;
}

/* ---- one event ----------------------------------------------------------------------------- */

typedef struct {
	num_svc_t *s;
	ev_kind_t kind;
	const char *id; /* event id */
	const char *tenant;
	const char *alpha;
	const char *traceparent;
	int64_t time_ms; /* event time */
	char actor[96];
} event_t;

static int64_t now_ms(num_svc_t *s) { return gh_clock_now_ms(s->clock); }

static void kick(num_svc_t *s)
{
	if (s->app)
		gh_outbox_relay_kick(s->app->relay);
}

static int consumed_fn(gh_conn_t *c, void *ud)
{
	const event_t *e = ud;
	return gh_conn_exec(c,
	                    "INSERT INTO gh_consumed (consumer, event_id, consumed_ms) VALUES "
	                    "($1, $2, $3) ON CONFLICT DO NOTHING",
	                    (gh_val_t[]){GH_TEXT(CONSUMER), GH_TEXT(e->id), GH_I64(now_ms(e->s))},
	                    3, NULL);
}

/* 1 consumed, 0 not, negative errno. */
static int consumed(num_svc_t *s, const char *id)
{
	gh_conn_t *c;
	gh_rows_t *rows = NULL;
	int rc = gh_store_acquire(s->store, 5000, &c);
	if (rc < 0)
		return rc;
	rc = gh_conn_query_one(c, "SELECT 1 FROM gh_consumed WHERE consumer = $1 AND event_id = $2",
	                       (gh_val_t[]){GH_TEXT(CONSUMER), GH_TEXT(id)}, 2, &rows);
	gh_rows_close(rows);
	gh_store_release(c);
	return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

/* ---- bulk work --------------------------------------------------------------------------- */

typedef struct {
	event_t *ev;
	num_action_t action;
	int state;               /* list filter: num_state_t or -1 (every held number) */
	num_qreason_t reason;    /* recall */
	const char *billing;     /* suspend/resume: the billing status they act for */
	const num_number_t *cur; /* the number being changed */
	num_number_t out;
	size_t done, skipped;
} bulk_t;

/* The transition of one number under the billing guard, in one transaction: the guard row is
 * read (and share-locked) first, so a newer billing event commits either before (the guard
 * stops this) or after (its own pass sees this change). -ECANCELED: the guard no longer holds. */
static int guarded_fn(gh_conn_t *c, void *ud)
{
	bulk_t *b = ud;
	num_svc_t *s = b->ev->s;
	gh_rows_t *rows = NULL;
	const char *sql =
	    gh_conn_backend(c) == GH_STORE_PG
	        ? "SELECT status FROM num_billing_state WHERE tenant_id = $1 FOR SHARE"
	        : "SELECT status FROM num_billing_state WHERE tenant_id = $1";
	int rc = gh_conn_query_one(c, sql, (gh_val_t[]){GH_TEXT(b->ev->tenant)}, 1, &rows);
	bool holds = rc == 0 && strcmp(gh_rows_text(rows, 0), b->billing) == 0;
	gh_rows_close(rows);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (!holds)
		return -ECANCELED;
	void *tmp = talloc_new(NULL);
	num_repo_t *view;
	if (!tmp || (rc = num_repo_on_conn(tmp, s->repo, c, &view)) < 0) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	gh_err_t err = {0};
	num_tx_req_t req = {.key = b->cur->key,
	                    .action = b->action,
	                    .role = NUM_ROLE_SYSTEM,
	                    .actor = b->ev->actor,
	                    .expected_version = b->cur->version,
	                    .auto_renew = -1,
	                    .request_id = b->ev->id,
	                    .traceparent = b->ev->traceparent,
	                    .now_ms = now_ms(s)};
	rc = num_repo_transition(view, &req, &b->out, &err);
	gh_err_clear(&err);
	talloc_free(tmp);
	return rc;
}

/* One number. 0 changed, 1 nothing to do (already done, or no longer this tenant's),
 * -ESTALE changed meanwhile (CAS lost: list again), -ECANCELED guard gone, else an error. */
static int bulk_one(bulk_t *b, const num_number_t *n)
{
	num_svc_t *s = b->ev->s;
	int rc;
	b->cur = n;
	if (b->billing) {
		gh_tx_opts_t o = {.flags = GH_TX_WRITE};
		rc = gh_store_tx(s->store, guarded_fn, b, &o);
		if (rc == 0)
			kick(s);
	} else {
		gh_err_t err = {0};
		num_tx_req_t req = {.key = n->key,
		                    .action = b->action,
		                    .role = NUM_ROLE_SYSTEM,
		                    .actor = b->ev->actor,
		                    .expected_version = n->version,
		                    .auto_renew = -1,
		                    .recall_reason = b->reason,
		                    .request_id = b->ev->id,
		                    .traceparent = b->ev->traceparent,
		                    .now_ms = now_ms(s)};
		rc = num_repo_transition(s->repo, &req, &b->out, &err);
		gh_err_clear(&err);
	}
	if (rc == 0) {
		num_svc_apply(s, &b->out);
		return 0;
	}
	if (rc == -EBUSY || rc == -ENOENT)
		return 1;
	return rc;
}

/* Apply b to every number of the tenant the filter lists, page by page in key order. A number
 * that changed between the listing and its transition (CAS lost) is retried by another pass.
 * Returns 0 when done (or stopped by the billing guard), GH_BUS_ABANDON from the test hook,
 * -EAGAIN when numbers kept changing under it, or the database's error. */
static int bulk_run(bulk_t *b)
{
	num_svc_t *s = b->ev->s;
	void *tmp = talloc_new(NULL);
	int rc = 0;
	if (!tmp)
		return -ENOMEM;
	for (int pass = 0; pass < BULK_PASSES; pass++) {
		bool again = false;
		uint64_t after = 0;
		do {
			num_filter_t f = {.kind = -1,
			                  .state = b->state,
			                  .tenant_id = b->ev->tenant,
			                  .vanity_min = -1};
			num_number_t *rows = NULL;
			size_t n = 0;
			uint64_t next = 0;
			gh_err_t err = {0};
			rc = num_repo_list(s->repo, &f, after, BULK_PAGE, tmp, &rows, &n, &next,
			                   &err);
			gh_err_clear(&err);
			if (rc < 0)
				goto out;
			for (size_t i = 0; i < n; i++) {
				int fa = atomic_load(&fault_abandon_after);
				if (fa >= 0 && b->done >= (size_t)fa) {
					atomic_store(&fault_abandon_after, -1);
					rc = GH_BUS_ABANDON;
					goto out;
				}
				rc = bulk_one(b, &rows[i]);
				if (rc == 0)
					b->done++;
				else if (rc == 1)
					b->skipped++;
				else if (rc == -ESTALE || rc == -EAGAIN)
					again = true;
				else if (rc == -ECANCELED) {
					rc = 0;
					goto out;
				} else
					goto out;
			}
			talloc_free_children(tmp);
			after = next;
		} while (after);
		if (!again) {
			rc = 0;
			goto out;
		}
	}
	rc = -EAGAIN;
out:
	talloc_free(tmp);
	return rc;
}

/* Suspend the tenant's pool and flip the local index before any recall: from here every
 * validate of the tenant's numbers answers TENANT_SUSPENDED; other replicas flip on the pool
 * write's num.cache.invalidate.v1. No pool: nothing is held, only the index is flipped. */
static int suspend_pool(event_t *e)
{
	num_svc_t *s = e->s;
	json_t *body = json_pack("{ss}", "status", "SUSPENDED");
	json_t *out = NULL;
	gh_err_t err = {0};
	if (!body)
		return -ENOMEM;
	int rc = num_repo_pool_patch(s->repo, e->tenant, body, -1, e->actor, now_ms(s), &out, &err);
	json_decref(body);
	json_decref(out);
	if (rc < 0 && rc != -ENOENT) {
		gh_log(GH_LOG_WARN, "numbering: cannot suspend pool", "tenant", e->tenant, "detail",
		       err.message, NULL);
		/* fail closed locally even when the database write failed; the event is retried */
		num_svc_pool_sync(s, e->tenant, "SUSPENDED");
		gh_err_clear(&err);
		return rc == -EINVAL ? GH_BUS_REJECT : -EIO;
	}
	gh_err_clear(&err);
	kick(s);
	num_svc_pool_sync(s, e->tenant, "SUSPENDED");
	return 0;
}

static void log_bulk(const event_t *e, const bulk_t *b, int64_t t0_ns)
{
	char done[24], skipped[24], ms[24];
	snprintf(done, sizeof done, "%zu", b->done);
	snprintf(skipped, sizeof skipped, "%zu", b->skipped);
	snprintf(ms, sizeof ms, "%.1f", (double)(gh_clock_mono_ns(e->s->clock) - t0_ns) / 1e6);
	gh_log(GH_LOG_INFO, "numbering: event applied", "type", ev_subjects[e->kind], "event_id",
	       e->id, "tenant", e->tenant, "action", num_action_name(b->action), "changed", done,
	       "unchanged", skipped, "ms", ms, NULL);
}

static int apply_recall_all(event_t *e)
{
	int64_t t0 = gh_clock_mono_ns(e->s->clock);
	int rc = suspend_pool(e);
	if (rc != 0)
		return rc;
	bulk_t b = {.ev = e, .action = NUM_ACT_RECALL, .state = -1, .reason = NUM_QR_RECALL_ADMIN};
	rc = bulk_run(&b);
	if (rc == 0)
		log_bulk(e, &b, t0);
	return rc;
}

/* Record the tenant's billing status from this event unless a later event already set it
 * (event time, then event id, order them). *current gets whether this event is the latest. */
typedef struct {
	event_t *e;
	const char *status;
	bool current;
} billing_tx_t;

static int billing_fn(gh_conn_t *c, void *ud)
{
	billing_tx_t *t = ud;
	event_t *e = t->e;
	int64_t n = 0;
	int rc = gh_conn_exec(
	    c,
	    "INSERT INTO num_billing_state (tenant_id, status, event_ms, event_id, updated_ms) "
	    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET status = "
	    "excluded.status, event_ms = excluded.event_ms, event_id = excluded.event_id, "
	    "updated_ms = excluded.updated_ms WHERE num_billing_state.event_ms < excluded.event_ms "
	    "OR (num_billing_state.event_ms = excluded.event_ms AND num_billing_state.event_id <= "
	    "excluded.event_id)",
	    (gh_val_t[]){GH_TEXT(e->tenant), GH_TEXT(t->status), GH_I64(e->time_ms), GH_TEXT(e->id),
	                 GH_I64(now_ms(e->s))},
	    5, &n);
	t->current = rc == 0 && n > 0;
	return rc;
}

static int apply_billing(event_t *e, bool delinquent)
{
	int64_t t0 = gh_clock_mono_ns(e->s->clock);
	billing_tx_t t = {e, delinquent ? "DELINQUENT" : "PAID", false};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	int rc = gh_store_tx(e->s->store, billing_fn, &t, &o);
	if (rc < 0)
		return rc;
	if (!t.current) {
		gh_log(GH_LOG_INFO,
		       "numbering: billing event older than the tenant's status; ignored",
		       "event_id", e->id, "tenant", e->tenant, NULL);
		return 0;
	}
	bulk_t b = {.ev = e,
	            .action = delinquent ? NUM_ACT_SUSPEND : NUM_ACT_RESUME,
	            .state = delinquent ? NUM_ST_ASSIGNED : NUM_ST_SUSPENDED,
	            .billing = t.status};
	rc = bulk_run(&b);
	if (rc == 0)
		log_bulk(e, &b, t0);
	return rc;
}

/* senderid.revoked: the recall and the consumed mark in one transaction. */
typedef struct {
	event_t *e;
	uint64_t key;
	num_number_t out;
	bool changed;
} revoke_tx_t;

static int revoke_fn(gh_conn_t *c, void *ud)
{
	revoke_tx_t *t = ud;
	event_t *e = t->e;
	num_svc_t *s = e->s;
	t->changed = false;
	int64_t n = 0;
	int rc =
	    gh_conn_exec(c,
	                 "INSERT INTO gh_consumed (consumer, event_id, consumed_ms) VALUES "
	                 "($1, $2, $3) ON CONFLICT DO NOTHING",
	                 (gh_val_t[]){GH_TEXT(CONSUMER), GH_TEXT(e->id), GH_I64(now_ms(s))}, 3, &n);
	if (rc < 0 || n == 0)
		return rc; /* n == 0: a concurrent delivery consumed it */
	void *tmp = talloc_new(NULL);
	num_repo_t *view;
	if (!tmp || num_repo_on_conn(tmp, s->repo, c, &view) < 0) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	num_number_t cur;
	gh_err_t err = {0};
	rc = num_repo_get(view, t->key, NULL, &cur, &err);
	if (rc == -ENOENT || (rc == 0 && strcmp(cur.tenant_id, e->tenant) != 0)) {
		rc = 0; /* not registered, or not that tenant's: nothing to recall */
		goto out;
	}
	if (rc < 0)
		goto out;
	num_tx_req_t req = {.key = t->key,
	                    .action = NUM_ACT_RECALL,
	                    .role = NUM_ROLE_SYSTEM,
	                    .actor = e->actor,
	                    .expected_version = cur.version,
	                    .auto_renew = -1,
	                    .recall_reason = NUM_QR_RECALL_ABUSE,
	                    .request_id = e->id,
	                    .traceparent = e->traceparent,
	                    .now_ms = now_ms(s)};
	gh_err_clear(&err);
	rc = num_repo_transition(view, &req, &t->out, &err);
	if (rc == 0)
		t->changed = true;
	else if (rc == -EBUSY)
		rc = 0; /* decided before any write: the number is in no state to recall */
	else if (rc == -ESTALE)
		rc = -EAGAIN; /* changed since read: gh_store_tx runs it again */
out:
	gh_err_clear(&err);
	talloc_free(tmp);
	return rc;
}

static int apply_revoke(event_t *e, char *reason, size_t reason_len)
{
	gh_ident_t id;
	gh_err_t err = {0};
	if (gh_ident_normalize(NULL, GH_IDENT_ALPHA, e->alpha, strlen(e->alpha), &id, &err) < 0) {
		snprintf(reason, reason_len, "/data/alpha: %s", err.message);
		gh_err_clear(&err);
		return GH_BUS_REJECT;
	}
	revoke_tx_t t = {.e = e, .key = id.key};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	int rc = gh_store_tx(e->s->store, revoke_fn, &t, &o);
	if (rc < 0)
		return rc;
	if (t.changed) {
		kick(e->s);
		num_svc_apply(e->s, &t.out);
		gh_log(GH_LOG_INFO, "numbering: sender id recalled", "event_id", e->id, "tenant",
		       e->tenant, "alpha", id.canonical, NULL);
	}
	return 0;
}

/* ---- the handler ------------------------------------------------------------------------- */

int num_on_event(const gh_bus_msg_t *msg, void *ud, char *reason, size_t reason_len)
{
	num_svc_t *s = ud;
	int k = 0;
	while (k < EV__COUNT && strcmp(ev_subjects[k], msg->subject) != 0)
		k++;
	if (k == EV__COUNT || !s->events) {
		snprintf(reason, reason_len, "numbering consumes no %s", msg->subject);
		return GH_BUS_REJECT;
	}
	json_t *env = NULL;
	gh_err_t err = {0};
	int rc = gh_json_parse(msg->data, msg->len, GH_JSON_OBJECT_ROOT, &env, &err);
	if (rc < 0) {
		snprintf(reason, reason_len, "malformed event: %s", err.message);
		gh_err_clear(&err);
		return GH_BUS_REJECT;
	}
	gh_jsonschema_error_t je;
	if (gh_jsonschema_validate(s->events->schema[k], env, &je) < 0) {
		char buf[200];
		snprintf(reason, reason_len, "schema: %s",
		         gh_jsonschema_error_str(&je, buf, sizeof buf));
		rc = GH_BUS_REJECT;
		goto out;
	}
	json_t *data = json_object_get(env, "data");
	event_t e = {.s = s,
	             .kind = (ev_kind_t)k,
	             .id = gh_json_get_str(env, "id", ""),
	             .tenant = gh_json_get_str(data, "tenant_id", ""),
	             .alpha = gh_json_get_str(data, "alpha", NULL),
	             .traceparent = gh_json_get_str(env, "traceparent", NULL)};
	const char *env_tenant = gh_json_get_str(env, "tenant_id", NULL);
	if (env_tenant && strcmp(env_tenant, e.tenant) != 0) {
		snprintf(reason, reason_len, "envelope tenant_id differs from /data/tenant_id");
		rc = GH_BUS_REJECT;
		goto out;
	}
	gh_time_parse(gh_json_get_str(env, "time", ""), &e.time_ms); /* checked by the schema */
	snprintf(e.actor, sizeof e.actor, "system:%s", ev_subjects[k]);

	if ((rc = consumed(s, e.id)) != 0) {
		if (rc < 0)
			snprintf(reason, reason_len, "database unavailable (%s)", strerror(-rc));
		rc = rc > 0 ? 0 : rc; /* a duplicate: acknowledged without effect */
		goto out;
	}
	switch (e.kind) {
	case EV_TENANT_SUSPENDED:
	case EV_TENANT_DELETED: rc = apply_recall_all(&e); break;
	case EV_SENDERID_REVOKED: rc = apply_revoke(&e, reason, reason_len); break;
	case EV_BILLING_DELINQUENT: rc = apply_billing(&e, true); break;
	case EV_BILLING_PAID: rc = apply_billing(&e, false); break;
	default: rc = GH_BUS_REJECT; break;
	}
	if (rc == 0 && e.kind != EV_SENDERID_REVOKED) {
		gh_tx_opts_t o = {.flags = GH_TX_WRITE};
		rc = gh_store_tx(s->store, consumed_fn, &e, &o);
	}
	if (rc < 0 && rc != GH_BUS_ABANDON && !reason[0])
		snprintf(reason, reason_len, "not applied yet (%s); retried", strerror(-rc));
out:
	json_decref(env);
	return rc;
}
