/* idem: the Idempotency-Key of specs/conventions.md, exactly once.
 *
 * A mutation that carries `Idempotency-Key` (1-255 printable ASCII) is recorded in gh_idem under
 * (scope, key) with a hash of the request (method, path and body bytes) and the response sent.
 * Within the key's lifetime (ttl, default 24 h):
 *   same key, same request      -> the stored status, content type and body again, with the
 *                                  header `Idempotent-Replayed: true`
 *   same key, different request -> 422 IDEMPOTENCY_KEY_REUSED
 * Scopes keep callers apart ("tenant:<id>", "cn:<client cn>"): the same key in two scopes is two
 * keys. An expired key is absent; gh_idem_purge deletes expired rows.
 *
 * Exactly once. gh_idem_handle runs the handler's mutation (fn) in one write transaction that
 * first claims the key, then runs fn, then stores the response under the key, and commits all
 * three together. So:
 *   - a crash, a lost connection or a failed commit leaves either the mutation with its stored
 *     response, or neither; a client that did not get an answer retries with the same key and
 *     gets the replay or a first execution, never a second one;
 *   - the claim is an INSERT on the primary key made before fn runs, so a concurrent twin
 *     (same scope and key) blocks on it (PostgreSQL: on the uncommitted row, READ COMMITTED;
 *     SQLite: on the write lock of BEGIN IMMEDIATE) until the first commits or rolls back. It
 *     then finds the committed record and replays it without running fn, or, when the first
 *     rolled back, claims the key itself. fn never runs for two twins at once.
 *   - a twin that still cannot see the winner's record (not possible under READ COMMITTED and
 *     SQLite, but guarded) answers 409 CONFLICT so the client retries.
 *
 * Errors and what is stored under the key:
 *   - fn fails with a domain error (gh_http_err(req) filled, HTTP 4xx except 429): the mutation
 *     is rolled back and the error response is stored under the key in a small transaction of
 *     its own, so a retry with the same key gets the same answer. (Its body keeps the request_id
 *     of the first request, as a replay must be byte-identical.)
 *   - 5xx (UNAVAILABLE, INTERNAL, database failures, exhausted retries) and 429 RATE_LIMITED
 *     are not stored: nothing was applied and the client may retry with the same key.
 *   - 400 for a malformed key and 422 IDEMPOTENCY_KEY_REUSED are answers about the key, not
 *     stored either.
 * Only status, content type and body are replayed, not headers fn set (Location etc.). */
#ifndef GH_IDEM_H
#define GH_IDEM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "http.h"
#include "store.h"

#define GH_IDEM_TTL_DEFAULT_MS  (24LL * 60 * 60 * 1000)
#define GH_IDEM_REPLAYED_HEADER "Idempotent-Replayed"

/* The mutation: runs inside the caller's write transaction on c. On success return 0 with
 * *status (100-599) and *body (a new reference, or NULL for an empty body; sent as
 * application/json); a reply is not made by fn. On failure return negative errno, with
 * gh_http_err(req) filled for a domain error (sent as the error envelope; see above for which
 * are stored), or unset for an internal failure (500). -EAGAIN without a domain error asks
 * for the transaction to be retried (serialization failure, lost compare-and-swap).
 * fn may run more than once (gh_store_tx retries); nothing it wrote stays unless its last run
 * returned 0 and the transaction committed, so it must have no effect outside the transaction
 * (publish through the outbox) and should not set response headers. */
typedef int (*gh_idem_fn)(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body);

/* Answer req by running fn exactly once per (scope, Idempotency-Key) as described above; the
 * handler usually ends with `return gh_idem_handle(...)`. Without a key fn runs in a write
 * transaction and its answer is sent (nothing stored). scope: non-empty caller identity.
 * ttl_ms <= 0: GH_IDEM_TTL_DEFAULT_MS. clock NULL: the real clock.
 * Always replies (errors as envelopes: 400 bad key, 422 key reused, 409 twin in progress,
 * 503 database unavailable, 500) and returns 0, or -ENOMEM / -EALREADY when no reply could be
 * made (req already replied). */
int gh_idem_handle(gh_http_req_t *req, gh_store_t *store, const char *scope, int64_t ttl_ms,
                   gh_clock_t *clock, gh_idem_fn fn, void *ud);

/* ---- the transport-neutral form (the HTTP form above and the numbering gRPC surface) -------
 *
 * The same exactly-once run as gh_idem_handle with the request's parts given explicitly and
 * the answer returned instead of sent. Records are the same rows: a stored body is JSON (the
 * handler's body, or the error envelope for a stored domain error), so a transport that is not
 * JSON converts it on the way out. */
typedef struct gh_idem_call_s {
	const char *scope;      /* non-empty caller identity */
	const char *key;        /* the validated idempotency key, NULL: none */
	const char *hash;       /* the request's hash (gh_idem_hash) when key */
	int64_t ttl_ms;         /* <= 0: GH_IDEM_TTL_DEFAULT_MS */
	gh_clock_t *clock;      /* NULL: the real clock */
	void *ctx;              /* talloc context of the answer's strings */
	gh_err_t *err;          /* fn's domain error slot; also receives idem's own errors */
	const char *request_id; /* put in a stored error envelope */
	const char *what;       /* for logs: route pattern or RPC method */
} gh_idem_call_t;

/* fn as gh_idem_fn, with its request in ud. */
typedef int (*gh_idem_run_fn)(gh_conn_t *c, void *ud, int *status, json_t **body);

typedef enum {
	GH_IDEM_RESPONSE = 1, /* fn's answer now, or a replay of a stored one (replayed) */
	GH_IDEM_ERROR,        /* the error in call->err; body is its stored envelope, or NULL */
} gh_idem_kind_t;

typedef struct gh_idem_result_s {
	gh_idem_kind_t kind;
	int status;               /* HTTP status of body (kind RESPONSE, or a stored error) */
	const char *content_type; /* of body */
	const char *body;         /* under call->ctx; NULL for an error that has none */
	size_t len;
	bool replayed; /* body is a stored answer: any status, including a stored error's */
} gh_idem_result_t;

/* Run fn exactly once per (scope, key). 0 with *out filled (errors included: 422 key reused,
 * 409 twin in progress, 503 database unavailable, 500 are kind ERROR with call->err set), or
 * -ENOMEM. */
int gh_idem_run(gh_store_t *store, const gh_idem_call_t *call, gh_idem_run_fn fn, void *ud,
                gh_idem_result_t *out);

/* For an HTTP handler that runs gh_idem_run itself (the numbering transitions, which share
 * their run with gRPC): the call of req (its Idempotency-Key, hashed into hash), 0, or
 * negative with gh_http_err(req) set (a malformed key: 400); and the reply of a result. */
int gh_idem_http_call(gh_http_req_t *req, const char *scope, int64_t ttl_ms, gh_clock_t *clock,
                      char hash[65], gh_idem_call_t *call);
int gh_idem_http_reply(gh_http_req_t *req, const gh_idem_result_t *res);

/* Check an idempotency key's syntax (1-255 printable ASCII): 0 or -EINVAL. */
int gh_idem_key_check(const char *key);

/* The request hash: SHA-256 hex of method "\n" path "\n" body bytes. Returns 0 or -EIO. */
int gh_idem_hash(const char *method, const char *path, const void *body, size_t len, char out[65]);

/* Delete the records that expired at or before now_ms, in batches of 1000 rows, each batch its
 * own statement (so a large backlog never holds long locks); safe to run from several
 * replicas at once, and never deletes a record a request just took over. For a scheduler job.
 * Returns the number of rows deleted (capped at INT_MAX) or negative errno (store.h). */
int gh_idem_purge(gh_store_t *store, int64_t now_ms);

#endif
