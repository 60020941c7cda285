/* http: the HTTP/1.1 server every service answers on (libmicrohttpd, epoll, internal thread
 * pool), with the conventions of specs/conventions.md built in: the error envelope, request ids,
 * body limits checked before parsing, /healthz, /readyz, /metrics, per-route metrics, request
 * logs and a graceful drain.
 *
 * A handler runs on a server thread and may block (database); it answers by calling exactly one
 * gh_http_reply_* function and returns 0. If it returns without replying, the server answers
 * with the error in gh_http_err(req) when one was set, else 500 INTERNAL, so the usual shape is
 *
 *   static int create(gh_http_req_t *req, void *ud)
 *   {
 *           json_t *body;
 *           if (gh_http_json_body(req, create_fields, &body) < 0)
 *                   return -EINVAL;               // 400 MALFORMED_JSON / INVALID_ARGUMENT
 *           ...
 *           return gh_http_reply_json(req, 201, out);
 *   }
 *
 * Everything a request hands out (strings, the parsed body) lives until the response is sent. */
#ifndef GH_HTTP_H
#define GH_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "json.h"
#include "metrics.h"
#include "router.h"

typedef struct gh_http_server_s gh_http_server_t;
typedef struct gh_http_req_s gh_http_req_t;
typedef struct gh_principal_s gh_principal_t; /* auth.h */

typedef int (*gh_http_handler_t)(gh_http_req_t *req, void *ud);
/* A readiness check: 0 when the dependency is usable, else negative with a reason in why. */
typedef int (*gh_http_ready_fn)(void *ud, char *why, size_t n);

typedef struct {
	const char *bind;        /* IPv4 or IPv6 literal; NULL = "127.0.0.1" */
	uint16_t port;           /* 0 = ephemeral, see gh_http_server_port() */
	unsigned threads;        /* server threads (handlers block on them); 0 = 4 */
	size_t body_limit;       /* default per-route request body limit; 0 = 1 MiB */
	unsigned conn_limit;     /* open connections; 0 = 1024 */
	unsigned idle_timeout_s; /* idle keep-alive connections are closed after; 0 = 60 */
	gh_metrics_t *metrics;   /* registry for http metrics and /metrics; NULL = a private one */
	/* TLS: HTTPS when tls_cert and tls_key (PEM file paths, read once by gh_http_server_new)
	 * are both set. tls_client_ca (PEM path) makes the server request - not require - a
	 * client certificate in the handshake and verify it against that CA (chain, validity,
	 * clientAuth key purpose); its CN must then be on client_cn_allowlist (NULL-terminated)
	 * to count as an identity (gh_http_client_cn). */
	const char *tls_cert, *tls_key, *tls_client_ca;
	const char *const *client_cn_allowlist;
	/* Every request except /healthz, /readyz and /metrics needs an allowlisted client
	 * certificate (an internal-only listener); else only GH_AUTH_MTLS routes do. */
	int require_client_cert;
	/* GH_AUTH_MTLS routes are open while TLS is off (embedded/dev profile); when 0 they
	 * answer 403 on a plain server (fail closed). */
	int mtls_open_without_tls;
} gh_http_config_t;

/* A server (not yet listening), talloc child of ctx, with /healthz, /readyz and /metrics
 * registered. Returns NULL on a bad bind address, an unreadable TLS file, TLS asked of a
 * libmicrohttpd built without it, or out of memory (logged). */
gh_http_server_t *gh_http_server_new(void *ctx, const gh_http_config_t *cfg);

/* Who may call a route, checked by the server once the headers are in, before the body is
 * read and before the handler runs (a refused request never reaches it):
 *   GH_AUTH_NONE  open (the default; /healthz, /readyz and /metrics always are);
 *   GH_AUTH_MTLS  internal callers: a client certificate that verifies against tls_client_ca
 *                 and whose CN is on the allowlist, else 403 PERMISSION_DENIED (no
 *                 certificate, untrusted certificate and CN not allowed alike). While TLS is
 *                 off the route is open when mtls_open_without_tls, else 403;
 *   GH_AUTH_JWT   portal/admin callers: the JWT check installed with gh_http_set_jwt_check
 *                 (auth.h gh_auth_attach) decides: 401 UNAUTHENTICATED without a valid token,
 *                 403 PERMISSION_DENIED when the token has none of the route's roles. */
typedef enum { GH_AUTH_NONE, GH_AUTH_MTLS, GH_AUTH_JWT, GH_AUTH__COUNT } gh_auth_policy_t;
extern const char *const gh_auth_policy_names[]; /* "none", "mtls", "jwt" */

typedef struct {
	size_t body_limit; /* 0 = the server's */
	gh_auth_policy_t auth;
	uint32_t roles; /* GH_AUTH_JWT: a role bit mask (auth.h GH_ROLE_*); 0 = any valid token */
} gh_http_route_opts_t;

/* The JWT check of GH_AUTH_JWT routes: 0 lets the request through (after setting its
 * principal with gh_http_set_principal), negative refuses it with gh_http_err(req) filled
 * (and any response header set). Runs on server threads concurrently. */
typedef int (*gh_http_jwt_check_fn)(gh_http_req_t *req, uint32_t roles, void *ud);
/* Install the JWT check. Before start only: 0, -EBUSY. A server with GH_AUTH_JWT routes and
 * no check refuses to start (-EINVAL). */
int gh_http_set_jwt_check(gh_http_server_t *s, gh_http_jwt_check_fn fn, void *ud);

/* Register handler for method ("GET", "POST", ...) + pattern (router.h syntax). Only before
 * gh_http_server_start. Returns 0, -EINVAL (bad method or pattern), -EEXIST, -EBUSY (started),
 * -ENOMEM. */
int gh_http_route(gh_http_server_t *s, const char *method, const char *pattern,
                  gh_http_handler_t fn, void *ud);
int gh_http_route_ex(gh_http_server_t *s, const char *method, const char *pattern,
                     gh_http_handler_t fn, void *ud, const gh_http_route_opts_t *opts);

/* Add a check that /readyz runs (in registration order) on every call. Before start only. */
int gh_http_readiness(gh_http_server_t *s, const char *name, gh_http_ready_fn check, void *ud);

/* Bind and start serving. Returns 0, -EADDRINUSE, -EBUSY (already started), -EINVAL (TLS
 * material rejected, or GH_AUTH_JWT routes without a JWT check) or -EIO. */
int gh_http_server_start(gh_http_server_t *s);
/* The bound port (useful with port 0); 0 before start. */
uint16_t gh_http_server_port(const gh_http_server_t *s);

/* Graceful stop: close the listening socket at once, let requests already being handled
 * finish (their replies carry Connection: close), answer any new request on a kept-alive
 * connection with 503 UNAVAILABLE + Connection: close, then stop the server once nothing is
 * in flight or grace_ms (0 = 30 s) has passed. Blocks until stopped. Returns 0, or -ETIMEDOUT
 * when requests were still in flight at the deadline (they are cut off). Idempotent. */
int gh_http_server_drain(gh_http_server_t *s, unsigned grace_ms);
/* Stop at once (also done when the server is freed). */
void gh_http_server_stop(gh_http_server_t *s);
/* Requests received and not yet completely answered. */
unsigned gh_http_server_inflight(const gh_http_server_t *s);

/* Read a PEM file (certificate, key or CA bundle: a regular file of 1 byte to 1 MiB holding
 * "-----BEGIN ") into one talloc buffer of ctx that is wiped when freed, so no copy of a key
 * is left in memory. NULL on failure (logged, and err filled when non-NULL). Shared by every
 * TLS listener (HTTP here, gRPC in numbering). */
char *gh_tls_pem_read(void *ctx, const char *what, const char *path, gh_err_t *err);

/* ---- requests ---- */

const char *gh_http_method(const gh_http_req_t *req);
/* The raw request path (no query string). */
const char *gh_http_path(const gh_http_req_t *req);
/* The pattern the request matched ("/v1/numbering/numbers/{id}:reserve"). */
const char *gh_http_route_pattern(const gh_http_req_t *req);
/* Path parameter by name, percent-decoded; NULL when the route has no such parameter. */
const char *gh_http_param(const gh_http_req_t *req, const char *name);
/* Query parameter by name, decoded ('+' is a space); the first when repeated; NULL if absent. */
const char *gh_http_query(const gh_http_req_t *req, const char *name);
/* An integer query parameter in [min, max], def when absent. Returns 0, or -EINVAL with
 * gh_http_err(req) = INVALID_ARGUMENT naming the parameter (details.field = its name). */
int gh_http_query_int(gh_http_req_t *req, const char *name, int64_t def, int64_t min, int64_t max,
                      int64_t *out);
/* Request header, case-insensitive name; NULL if absent. */
const char *gh_http_header(const gh_http_req_t *req, const char *name);
/* The request body (NUL-terminated for convenience; len excludes it). "" when none. */
const char *gh_http_body(const gh_http_req_t *req, size_t *len);
/* Parse the body as a JSON object and, when fields is non-NULL, check it (json.h). On success
 * *out is borrowed from the request (do not decref). Returns 0 or -EINVAL with gh_http_err(req)
 * set to MALFORMED_JSON or INVALID_ARGUMENT. */
int gh_http_json_body(gh_http_req_t *req, const gh_json_field_t *fields, json_t **out);
/* X-Request-Id of the request when present and sane (1-64 of [A-Za-z0-9._:-]), else a
 * generated UUIDv7. */
const char *gh_http_request_id(const gh_http_req_t *req);
/* The W3C traceparent header when well-formed, else NULL. */
const char *gh_http_traceparent(const gh_http_req_t *req);
/* Idempotency-Key (conventions: 1-255 printable ASCII). Returns 0 with *key NULL when absent,
 * 0 with *key set, or -EINVAL with gh_http_err(req) = INVALID_ARGUMENT when malformed. */
int gh_http_idempotency_key(gh_http_req_t *req, const char **key);
/* The CN of the client certificate when it verified against tls_client_ca and the CN is on
 * the allowlist; NULL otherwise (plain HTTP, no certificate, untrusted, CN not allowed). */
const char *gh_http_client_cn(gh_http_req_t *req);
/* The peer's IP address as text ("127.0.0.1", "::1") into buf (NUL-terminated). 0, or -ENOENT
 * when unknown (buf then ""). For per-caller accounting when there is no certificate CN. */
int gh_http_client_addr(gh_http_req_t *req, char *buf, size_t n);
/* The caller the JWT check authenticated (auth.h), NULL when none. The check sets it with a
 * principal that lives as long as the request (allocate it in gh_http_ctx). */
const gh_principal_t *gh_http_principal(const gh_http_req_t *req);
void gh_http_set_principal(gh_http_req_t *req, const gh_principal_t *p);
/* talloc context living as long as the request, for the handler's allocations. */
void *gh_http_ctx(gh_http_req_t *req);
/* The request's error slot: fill it and return without replying to answer with it. */
gh_err_t *gh_http_err(gh_http_req_t *req);

/* ---- replies: exactly one per request; a second returns -EALREADY ---- */

/* Add a response header (Location, Retry-After, ...); call before the reply. 0 or -ENOMEM. */
int gh_http_set_header(gh_http_req_t *req, const char *name, const char *value);
/* status + JSON body (steals the reference to body). Returns 0, -EALREADY, -ENOMEM. */
int gh_http_reply_json(gh_http_req_t *req, int status, json_t *body);
/* The error envelope for err with its HTTP status and this request's id. */
int gh_http_reply_error(gh_http_req_t *req, const gh_err_t *err);
/* A body of len bytes (copied) with a content type. */
int gh_http_reply_raw(gh_http_req_t *req, int status, const char *content_type, const void *body,
                      size_t len);

/* A whole response, for the idempotency store: what was sent, and what to send again. */
typedef struct {
	int status;
	const char *content_type;
	const void *body;
	size_t len;
} gh_http_response_t;
/* The reply made on this request so far (NULL before one); valid as long as the request. */
const gh_http_response_t *gh_http_response(const gh_http_req_t *req);
/* Reply with a stored response (status, content type and body copied). */
int gh_http_reply_response(gh_http_req_t *req, const gh_http_response_t *r);

#endif
