/* idem: idempotency keys for mutations; the contract and the reasoning are in idem.h. */
#include "idem.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "err.h"
#include "json.h"
#include "log.h"

#define ACQUIRE_TIMEOUT_MS 5000
#define PURGE_BATCH        1000

/* Claim (status 0: being executed, never committed as such) or record a response. A row of an
 * expired record is taken over in place; a live one is left alone (0 rows affected). On
 * PostgreSQL the statement waits for a twin's uncommitted row to commit or roll back first. */
static const char UPSERT_SQL[] =
    "INSERT INTO gh_idem (scope, idem_key, request_hash, status, content_type, body, created_ms,"
    " expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = excluded.request_hash,"
    " status = excluded.status, content_type = excluded.content_type, body = excluded.body,"
    " created_ms = excluded.created_ms, expires_ms = excluded.expires_ms"
    " WHERE gh_idem.expires_ms <= excluded.created_ms";

static const char GET_SQL[] = "SELECT request_hash, status, content_type, body FROM gh_idem"
                              " WHERE scope = $1 AND idem_key = $2 AND expires_ms > $3";

static const char SET_RESPONSE_SQL[] =
    "UPDATE gh_idem SET status = $3, content_type = $4, body = $5"
    " WHERE scope = $1 AND idem_key = $2";

/* The outer expires_ms test matters on PostgreSQL: when a request takes an expired row over
 * while the purge waits on it, the recheck sees the new expiry and keeps the row. */
static const char PURGE_SQL[] =
    "DELETE FROM gh_idem WHERE expires_ms <= $1 AND (scope, idem_key) IN"
    " (SELECT scope, idem_key FROM gh_idem WHERE expires_ms <= $1 LIMIT $2)";

static const char JSON_CT[] = "application/json";

/* A stored record, strings under the request. */
typedef struct {
	char *hash;
	int status;
	char *content_type;
	char *body;
	size_t len;
} rec_t;

int gh_idem_hash(const char *method, const char *path, const void *body, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int ok = 0;
	EVP_MD_CTX *x = EVP_MD_CTX_new();
	if (x)
		ok = EVP_DigestInit_ex(x, EVP_sha256(), NULL) &&
		     EVP_DigestUpdate(x, method, strlen(method)) && EVP_DigestUpdate(x, "\n", 1) &&
		     EVP_DigestUpdate(x, path, strlen(path)) && EVP_DigestUpdate(x, "\n", 1) &&
		     EVP_DigestUpdate(x, body, len) && EVP_DigestFinal_ex(x, md, &mdlen);
	EVP_MD_CTX_free(x);
	if (!ok || mdlen != 32)
		return -EIO;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int gh_idem_key_check(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	if (n < 1 || n > 255)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x20 || key[i] > 0x7e)
			return -EINVAL;
	return 0;
}

/* The live record of (scope, key): 0 with *rec filled, -ENOENT, -ENOMEM or a store error. */
static int rec_get(gh_conn_t *c, void *ctx, const char *scope, const char *key, int64_t now,
                   rec_t *rec)
{
	gh_rows_t *rows;
	int rc = gh_conn_query_one(
	    c, GET_SQL, (gh_val_t[]){GH_TEXT(scope), GH_TEXT(key), GH_I64(now)}, 3, &rows);
	if (rc < 0)
		return rc;
	rec->hash = talloc_strdup(ctx, gh_rows_text(rows, 0));
	rec->status = (int)gh_rows_i64(rows, 1);
	rec->content_type = talloc_strdup(ctx, gh_rows_text(rows, 2));
	const char *b = gh_rows_text(rows, 3);
	rec->len = b ? strlen(b) : 0;
	rec->body = talloc_strndup(ctx, b ? b : "", rec->len);
	gh_rows_close(rows);
	return rec->hash && rec->content_type && rec->body ? 0 : -ENOMEM;
}

/* ---- the transport-neutral run (gh_idem_run) ---------------------------------------------- */

static int res_err(const gh_idem_call_t *call, gh_idem_result_t *out, gh_code_t code,
                   const char *msg)
{
	gh_err_set(call->err, code, NULL, "%s", msg);
	out->kind = GH_IDEM_ERROR;
	return 0;
}

/* Answer with a record found under the key: the replay, or IDEMPOTENCY_KEY_REUSED when it is
 * another request's. A claim (status 0) is never committed, so seeing one means a database
 * that shows uncommitted rows: CONFLICT, and the client retries. */
static int res_record(const gh_idem_call_t *call, const rec_t *rec, gh_idem_result_t *out)
{
	if (strcmp(rec->hash, call->hash) != 0)
		return res_err(call, out, GH_E_IDEMPOTENCY_KEY_REUSED,
		               "Idempotency-Key was already used with a different request");
	if (rec->status < 100 || rec->status > 599)
		return res_err(call, out, GH_E_CONFLICT,
		               "a request with this Idempotency-Key is in progress; retry");
	*out = (gh_idem_result_t){GH_IDEM_RESPONSE, rec->status, rec->content_type,
	                          rec->body,        rec->len,    true};
	return 0;
}

/* Look the key up on a pooled connection outside any transaction: 0 found, -ENOENT, or a
 * store error. */
static int lookup(gh_store_t *store, void *ctx, const char *scope, const char *key, int64_t now,
                  rec_t *rec)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(store, ACQUIRE_TIMEOUT_MS, &c);
	if (rc < 0)
		return rc;
	rc = rec_get(c, ctx, scope, key, now, rec);
	if (rc < 0 && rc != -ENOENT)
		gh_log(GH_LOG_ERROR, "idempotency lookup failed", "error", gh_conn_errmsg(c), NULL);
	gh_store_release(c);
	return rc;
}

typedef struct {
	const gh_idem_call_t *call;
	const char *scope, *key, *hash; /* key NULL: no idempotency */
	int64_t now, expires;
	gh_idem_run_fn fn;
	void *ud;
	/* results of the last attempt */
	int fn_rc;      /* fn's return; 0 when fn did not run or succeeded */
	int claim_lost; /* a record exists under the key (in rec when have_rec) */
	int have_rec;
	rec_t rec;
	int status;
	char *body; /* serialised response, under call->ctx */
	size_t len;
} run_t;

/* A domain error in the request's error slot that a retry must see again. */
static int storable(const gh_err_t *e)
{
	int st = gh_code_http_status(e->code);
	return e->code != GH_OK && st >= 400 && st < 500 && e->code != GH_E_RATE_LIMITED;
}

static int run_tx(gh_conn_t *c, void *arg)
{
	run_t *r = arg;
	gh_err_t *err = r->call->err;
	void *ctx = r->call->ctx;
	int64_t n = 0;
	int rc;

	gh_err_clear(err);
	r->fn_rc = r->claim_lost = r->have_rec = 0;
	if (r->key) {
		rc = gh_conn_exec(c, UPSERT_SQL,
		                  (gh_val_t[]){GH_TEXT(r->scope), GH_TEXT(r->key), GH_TEXT(r->hash),
		                               GH_I64(0), GH_TEXT(""), GH_TEXT(""), GH_I64(r->now),
		                               GH_I64(r->expires)},
		                  8, &n);
		if (rc == -EEXIST) { /* only if the database reports the conflict as an error */
			r->claim_lost = 1;
			return rc;
		}
		if (rc < 0)
			return rc;
		if (n == 0) {
			/* A live record: committed by a twin (we waited for it) or long ago. */
			r->claim_lost = 1;
			rc = rec_get(c, ctx, r->scope, r->key, r->now, &r->rec);
			if (rc < 0 && rc != -ENOENT)
				return rc;
			r->have_rec = rc == 0;
			return -EEXIST;
		}
	}

	int status = 0;
	json_t *body = NULL;
	rc = r->fn(c, r->ud, &status, &body);
	if (rc < 0) {
		json_decref(body);
		r->fn_rc = rc;
		/* A domain error is final even when its errno is -EAGAIN (RATE_LIMITED). */
		return err->code != GH_OK && rc == -EAGAIN ? -ECANCELED : rc;
	}
	if (status < 100 || status > 599) {
		json_decref(body);
		r->fn_rc = -EINVAL;
		gh_log(GH_LOG_ERROR, "idempotent handler returned a bad status", "route",
		       r->call->what, NULL);
		return -EINVAL;
	}
	talloc_free(r->body);
	r->body = NULL;
	r->len = 0;
	if (body) {
		r->body = gh_json_dump(body, ctx, &r->len);
		json_decref(body);
		if (!r->body)
			return -ENOMEM;
	}
	r->status = status;
	if (!r->key)
		return 0;
	/* Our claim, inserted by this transaction, is the row: nothing to read back, so on
	 * PostgreSQL the write rides with the transaction's next round trip (its commit). */
	return gh_conn_exec_deferred(c, SET_RESPONSE_SQL,
	                             (gh_val_t[]){GH_TEXT(r->scope), GH_TEXT(r->key),
	                                          GH_I64(status), GH_TEXT(JSON_CT),
	                                          GH_TEXT(r->body ? r->body : "")},
	                             5);
}

typedef struct {
	run_t *run;
	const char *body;
	int status;
} store_err_t;

/* Record the domain error response under the key, unless a twin recorded one meanwhile
 * (claim_lost, with the twin's record in run->rec). */
static int store_err_tx(gh_conn_t *c, void *arg)
{
	store_err_t *s = arg;
	run_t *r = s->run;
	int64_t n = 0;
	r->claim_lost = r->have_rec = 0;
	int rc = gh_conn_exec(c, UPSERT_SQL,
	                      (gh_val_t[]){GH_TEXT(r->scope), GH_TEXT(r->key), GH_TEXT(r->hash),
	                                   GH_I64(s->status), GH_TEXT(JSON_CT), GH_TEXT(s->body),
	                                   GH_I64(r->now), GH_I64(r->expires)},
	                      8, &n);
	if (rc == -EEXIST)
		r->claim_lost = 1;
	if (rc < 0 || n == 1)
		return rc;
	r->claim_lost = 1;
	rc = rec_get(c, r->call->ctx, r->scope, r->key, r->now, &r->rec);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	r->have_rec = rc == 0;
	return 0;
}

/* A twin holds the key: answer with its record, reading it again when the transaction that
 * found the conflict could not. */
static int res_twin(gh_store_t *store, run_t *r, gh_idem_result_t *out)
{
	if (!r->have_rec) {
		int rc = lookup(store, r->call->ctx, r->scope, r->key, r->now, &r->rec);
		if (rc == -ENOENT)
			return res_err(r->call, out, GH_E_CONFLICT,
			               "a request with this Idempotency-Key is in progress; retry");
		if (rc < 0)
			return res_err(r->call, out, GH_E_UNAVAILABLE, "database unavailable");
	}
	return res_record(r->call, &r->rec, out);
}

/* fn failed with a domain error: store it under the key (when there is one). The answer is
 * the error in call->err (kind GH_IDEM_ERROR) whether or not it was stored, unless a twin's
 * record came first. */
static int res_domain_error(gh_store_t *store, run_t *r, gh_idem_result_t *out)
{
	const gh_idem_call_t *call = r->call;
	gh_err_t *err = call->err;
	out->kind = GH_IDEM_ERROR;
	if (!r->key || !storable(err))
		return 0;
	json_t *env = gh_err_envelope(err, call->request_id);
	size_t len = 0;
	char *body = env ? gh_json_dump(env, call->ctx, &len) : NULL;
	json_decref(env);
	if (!body)
		return -ENOMEM;
	store_err_t s = {r, body, gh_code_http_status(err->code)};
	int rc = gh_store_tx(store, store_err_tx, &s, &(gh_tx_opts_t){.flags = GH_TX_WRITE});
	if (rc < 0) {
		/* Nothing was applied; a retry runs fn again. */
		gh_log(GH_LOG_WARN, "idempotency: storing an error response failed", "code",
		       gh_code_name(err->code), NULL);
	} else if (r->claim_lost) {
		gh_err_clear(err);
		return res_twin(store, r, out);
	}
	/* The envelope, byte-identical to what a replay will send. */
	*out = (gh_idem_result_t){GH_IDEM_ERROR, s.status, JSON_CT, body, len, false};
	return 0;
}

int gh_idem_run(gh_store_t *store, const gh_idem_call_t *call, gh_idem_run_fn fn, void *ud,
                gh_idem_result_t *out)
{
	*out = (gh_idem_result_t){0};
	if (!call->scope || !*call->scope) {
		gh_log(GH_LOG_ERROR, "idempotency: empty scope", "route", call->what, NULL);
		return res_err(call, out, GH_E_INTERNAL, "internal error");
	}
	gh_clock_t *clock = call->clock ? call->clock : gh_clock_real();
	int64_t ttl_ms = call->ttl_ms > 0 ? call->ttl_ms : GH_IDEM_TTL_DEFAULT_MS;
	run_t r = {.call = call,
	           .scope = call->scope,
	           .key = call->key,
	           .hash = call->hash,
	           .fn = fn,
	           .ud = ud};
	r.now = gh_clock_now_ms(clock);
	r.expires = r.now + ttl_ms;
	int rc;
	if (r.key && gh_store_backend(store) == GH_STORE_SQLITE) {
		/* Replays and reuse are answered without taking SQLite's one write lock. On
		 * PostgreSQL the claim below finds a live record as well (and answers from it), so
		 * a first request does not pay this extra round trip. */
		rc = lookup(store, call->ctx, r.scope, r.key, r.now, &r.rec);
		if (rc == 0)
			return res_record(call, &r.rec, out);
		if (rc != -ENOENT)
			return res_err(call, out, GH_E_UNAVAILABLE, "database unavailable");
	}

	rc = gh_store_tx(store, run_tx, &r, &(gh_tx_opts_t){.flags = GH_TX_WRITE});
	if (rc == 0) {
		*out = (gh_idem_result_t){GH_IDEM_RESPONSE,     r.status, JSON_CT,
		                          r.body ? r.body : "", r.len,    false};
		return 0;
	}
	if (r.claim_lost)
		return res_twin(store, &r, out);
	if (r.fn_rc < 0 && call->err->code != GH_OK)
		return res_domain_error(store, &r, out);
	if (rc == -EAGAIN || rc == -EIO || rc == -ETIMEDOUT) {
		/* Retries exhausted, the database is gone, or a commit whose outcome is unknown:
		 * the client retries with the same key and gets the replay if it committed. */
		gh_log(GH_LOG_WARN, "idempotent mutation failed", "route", call->what, "error",
		       strerror(-rc), NULL);
		return res_err(call, out, GH_E_UNAVAILABLE, "database unavailable; retry");
	}
	gh_log(GH_LOG_ERROR, "idempotent mutation failed", "route", call->what, "error",
	       strerror(-rc), NULL);
	return res_err(call, out, GH_E_INTERNAL, "internal error");
}

/* ---- the HTTP adapter ---------------------------------------------------------------------- */

typedef struct {
	gh_http_req_t *req;
	gh_idem_fn fn;
	void *ud;
} http_fn_t;

static int http_fn(gh_conn_t *c, void *ud, int *status, json_t **body)
{
	http_fn_t *h = ud;
	return h->fn(c, h->req, h->ud, status, body);
}

int gh_idem_http_call(gh_http_req_t *req, const char *scope, int64_t ttl_ms, gh_clock_t *clock,
                      char hash[65], gh_idem_call_t *call)
{
	const char *key = NULL;
	if (gh_http_idempotency_key(req, &key) < 0)
		return -EINVAL;
	if (key) {
		size_t blen;
		const char *b = gh_http_body(req, &blen);
		if (gh_idem_hash(gh_http_method(req), gh_http_path(req), b, blen, hash) < 0)
			return gh_err_set(gh_http_err(req), GH_E_INTERNAL, NULL, "internal error");
	}
	*call = (gh_idem_call_t){.scope = scope,
	                         .key = key,
	                         .hash = key ? hash : NULL,
	                         .ttl_ms = ttl_ms,
	                         .clock = clock,
	                         .ctx = gh_http_ctx(req),
	                         .err = gh_http_err(req),
	                         .request_id = gh_http_request_id(req),
	                         .what = gh_http_route_pattern(req)};
	return 0;
}

int gh_idem_http_reply(gh_http_req_t *req, const gh_idem_result_t *res)
{
	if (res->body) {
		int rc;
		if (res->replayed &&
		    (rc = gh_http_set_header(req, GH_IDEM_REPLAYED_HEADER, "true")) < 0)
			return rc;
		return gh_http_reply_response(
		    req,
		    &(gh_http_response_t){res->status, res->content_type, res->body, res->len});
	}
	return gh_http_reply_error(req, gh_http_err(req));
}

int gh_idem_handle(gh_http_req_t *req, gh_store_t *store, const char *scope, int64_t ttl_ms,
                   gh_clock_t *clock, gh_idem_fn fn, void *ud)
{
	char hash[65];
	gh_idem_call_t call;
	if (gh_idem_http_call(req, scope, ttl_ms, clock, hash, &call) < 0)
		return gh_http_reply_error(req, gh_http_err(req));
	http_fn_t h = {req, fn, ud};
	gh_idem_result_t res;
	int rc = gh_idem_run(store, &call, http_fn, &h, &res);
	return rc < 0 ? rc : gh_idem_http_reply(req, &res);
}

int gh_idem_purge(gh_store_t *store, int64_t now_ms)
{
	int64_t total = 0;
	for (int busy = 0;;) {
		gh_conn_t *c;
		int64_t n = 0;
		int rc = gh_store_acquire(store, ACQUIRE_TIMEOUT_MS, &c);
		if (rc < 0)
			return rc;
		rc = gh_conn_exec(c, PURGE_SQL, (gh_val_t[]){GH_I64(now_ms), GH_I64(PURGE_BATCH)},
		                  2, &n);
		if (rc < 0)
			gh_log(GH_LOG_ERROR, "idempotency purge failed", "error", gh_conn_errmsg(c),
			       NULL);
		gh_store_release(c);
		if (rc == -EAGAIN && ++busy < 5)
			continue; /* busy (SQLite) or a deadlock: the batch tries again */
		if (rc < 0)
			return rc;
		total += n;
		if (n < PURGE_BATCH)
			break;
	}
	return total > INT_MAX ? INT_MAX : (int)total;
}
