/* httpcli: a small blocking HTTP client for the ports a service calls out to (billing
 * PreviewCharge, the sender-id registry): JSON in, JSON out, hard timeouts, and transport
 * failures mapped to the errno a fail-closed caller needs (libcurl, one easy handle per call).
 *
 * Thread-safe: calls share no handle; any thread may call concurrently. A call blocks its thread
 * for at most the configured total timeout, so never call one while holding a lock or an open
 * transaction. Plain http:// and https:// (system CA store) URLs are accepted. */
#ifndef GH_HTTPCLI_H
#define GH_HTTPCLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gh_httpcli_s gh_httpcli_t;

typedef struct gh_httpcli_opts_s {
	int64_t timeout_ms;         /* whole exchange [2000] */
	int64_t connect_timeout_ms; /* TCP (+TLS) connect [min(1000, timeout_ms)] */
	size_t max_response;        /* larger bodies fail with -EIO [64 KiB] */
	const char *user_agent;     /* [ghasi/<version>] */
} gh_httpcli_opts_t;

/* A client (talloc child of ctx) with opts (may be NULL: defaults). 0, -EINVAL (a timeout < 1),
 * -ENOMEM, -EIO (libcurl could not initialise). */
int gh_httpcli_new(void *ctx, const gh_httpcli_opts_t *opts, gh_httpcli_t **out);

/* The outcome of one exchange. */
typedef struct gh_httpcli_resp_s {
	int status;    /* HTTP status; 0 when no response arrived */
	json_t *body;  /* the response body when it parsed as JSON (new reference), else NULL */
	char why[160]; /* on failure: what went wrong, for logs (never the request body) */
} gh_httpcli_resp_t;

/* POST body (serialised compactly; NULL sends {}) to url with Content-Type application/json,
 * Accept application/json and, when request_id is non-NULL, X-Request-Id. Returns
 *   0             a response arrived (any status; check resp->status) and, if it has a body,
 *                 the body is JSON (resp->body) - an empty body leaves resp->body NULL;
 *   -ETIMEDOUT    the connect or the whole exchange took longer than the timeouts;
 *   -ECONNREFUSED nothing listens there (refused, host unknown, unreachable);
 *   -EIO          any other transport failure, a body that is not JSON or is too large
 *                 (resp->status still holds the status when one arrived);
 *   -EINVAL       url NULL or not http(s)://, or body not serialisable; -ENOMEM.
 * resp->why says what happened on every failure. The caller json_decref()s resp->body. */
int gh_httpcli_post_json(gh_httpcli_t *c, const char *url, const json_t *body,
                         const char *request_id, gh_httpcli_resp_t *resp);

#endif
