/* err: code table (name, HTTP status, errno) and the error envelope. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const struct {
	const char *name;
	int http;
	int err;
} codes[GH_E__COUNT] = {
    [GH_OK] = {"OK", 200, 0},
    [GH_E_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", 400, EINVAL},
    [GH_E_MALFORMED_JSON] = {"MALFORMED_JSON", 400, EINVAL},
    [GH_E_UNAUTHENTICATED] = {"UNAUTHENTICATED", 401, EACCES},
    [GH_E_PERMISSION_DENIED] = {"PERMISSION_DENIED", 403, EPERM},
    [GH_E_FEATURE_DISABLED] = {"FEATURE_DISABLED", 403, ENOTSUP},
    [GH_E_NOT_FOUND] = {"NOT_FOUND", 404, ENOENT},
    [GH_E_METHOD_NOT_ALLOWED] = {"METHOD_NOT_ALLOWED", 405, EOPNOTSUPP},
    [GH_E_CONFLICT] = {"CONFLICT", 409, ESTALE},
    [GH_E_INVALID_TRANSITION] = {"INVALID_TRANSITION", 409, EBUSY},
    [GH_E_ALREADY_EXISTS] = {"ALREADY_EXISTS", 409, EEXIST},
    [GH_E_PAYLOAD_TOO_LARGE] = {"PAYLOAD_TOO_LARGE", 413, EMSGSIZE},
    [GH_E_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", 422, EPROTO},
    [GH_E_QUOTA_EXCEEDED] = {"QUOTA_EXCEEDED", 422, EDQUOT},
    [GH_E_IDEMPOTENCY_KEY_REUSED] = {"IDEMPOTENCY_KEY_REUSED", 422, EEXIST},
    [GH_E_RATE_LIMITED] = {"RATE_LIMITED", 429, EAGAIN},
    [GH_E_UNAVAILABLE] = {"UNAVAILABLE", 503, EIO},
    [GH_E_INTERNAL] = {"INTERNAL", 500, EIO},
};

const char *gh_code_name(gh_code_t code)
{
	return code >= 0 && code < GH_E__COUNT ? codes[code].name : "INTERNAL";
}

int gh_code_http_status(gh_code_t code)
{
	return code >= 0 && code < GH_E__COUNT ? codes[code].http : 500;
}

int gh_code_errno(gh_code_t code)
{
	return code >= 0 && code < GH_E__COUNT ? -codes[code].err : -EIO;
}

int gh_err_set(gh_err_t *e, gh_code_t code, const char *field, const char *fmt, ...)
{
	if (e) {
		gh_err_clear(e);
		e->code = code;
		snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->message, sizeof(e->message), fmt, ap);
		va_end(ap);
	}
	return gh_code_errno(code);
}

void gh_err_detail(gh_err_t *e, const char *key, json_t *value)
{
	if (!e) {
		json_decref(value);
		return;
	}
	if (!e->details)
		e->details = json_object();
	json_object_set_new(e->details, key, value);
}

void gh_err_clear(gh_err_t *e)
{
	if (!e)
		return;
	json_decref(e->details);
	e->details = NULL;
	e->code = GH_OK;
	e->message[0] = '\0';
	e->field[0] = '\0';
}

json_t *gh_err_envelope(const gh_err_t *e, const char *request_id)
{
	json_t *details = e->details ? json_deep_copy(e->details) : json_object();
	if (e->field[0])
		json_object_set_new(details, "field", json_string(e->field));
	json_t *err =
	    json_pack("{s:s, s:s, s:o}", "code", gh_code_name(e->code), "message",
	              e->message[0] ? e->message : gh_code_name(e->code), "details", details);
	if (request_id)
		json_object_set_new(err, "request_id", json_string(request_id));
	return json_pack("{s:o}", "error", err);
}
