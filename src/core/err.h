/* err: the API error codes of specs/conventions.md and the carrier that brings one from deep in
 * a service to the HTTP layer, which is the one place that turns it into the error envelope.
 *
 * Functions keep returning 0 / negative errno (STYLE.md); when a failure must reach a caller
 * with a stable code, a message and the offending field, they also fill a gh_err_t. */
#ifndef GH_ERR_H
#define GH_ERR_H

#include <jansson.h>

typedef enum {
	GH_OK = 0,
	GH_E_INVALID_ARGUMENT,
	GH_E_MALFORMED_JSON,
	GH_E_UNAUTHENTICATED,
	GH_E_PERMISSION_DENIED,
	GH_E_FEATURE_DISABLED,
	GH_E_NOT_FOUND,
	GH_E_METHOD_NOT_ALLOWED,
	GH_E_CONFLICT,
	GH_E_INVALID_TRANSITION,
	GH_E_ALREADY_EXISTS,
	GH_E_PAYLOAD_TOO_LARGE,
	GH_E_FAILED_PRECONDITION,
	GH_E_QUOTA_EXCEEDED,
	GH_E_IDEMPOTENCY_KEY_REUSED,
	GH_E_RATE_LIMITED,
	GH_E_UNAVAILABLE,
	GH_E_INTERNAL,
	GH_E__COUNT,
} gh_code_t;

/* "INVALID_ARGUMENT", ... (stable; clients match on these). */
const char *gh_code_name(gh_code_t code);
/* HTTP status for a code (400, 404, 409, ...). */
int gh_code_http_status(gh_code_t code);
/* The negative errno that goes with a code (-EINVAL, -ENOENT, -EBUSY, ...). */
int gh_code_errno(gh_code_t code);

typedef struct gh_err_s {
	gh_code_t code;
	char message[256];
	char field[128]; /* JSON pointer of the offending field ("/number"); "" when none */
	json_t *details; /* extra details object, owned; NULL when none */
} gh_err_t;

/* Fill e (when non-NULL) and return gh_code_errno(code), so callers can write
 *   return gh_err_set(err, GH_E_NOT_FOUND, NULL, "number %s not found", id);
 * Any previous details are released. */
int gh_err_set(gh_err_t *e, gh_code_t code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Add a key to e->details (steals value). */
void gh_err_detail(gh_err_t *e, const char *key, json_t *value);
/* Release details and reset to GH_OK. */
void gh_err_clear(gh_err_t *e);
/* The envelope {"error":{"code","message","details","request_id"}}; details.field is set from
 * e->field. request_id may be NULL. New reference. */
json_t *gh_err_envelope(const gh_err_t *e, const char *request_id);

#endif
