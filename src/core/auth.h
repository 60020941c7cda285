/* auth: who is calling, for portal and admin routes (specs/conventions.md, Identity and
 * access): `Authorization: Bearer <JWT>` verified with libjwt, HS256 (shared secret) or RS256
 * (PEM public key), and the roles it carries.
 *
 * Verification is strict (RFC 7519, RFC 8725 "JWT Best Current Practices"):
 *   - the header's `alg` picks the key, and only an algorithm that has a configured key is
 *     accepted: `none` never is, and an RS256 key never verifies an HS256 token (the algorithm
 *     confusion attack signs HS256 with the public key PEM as the HMAC secret);
 *   - `exp` is required, `nbf` is honoured when present, both against the gh_clock_t with a
 *     small leeway for clock skew;
 *   - `iss` and `aud` must match when configured; a `crit` header is refused (we understand
 *     no extensions);
 *   - `sub` is required; `tenant_id` is absent for platform roles; `roles` is an array of
 *     strings (absent: no roles).
 *
 * Routes declare their policy (http.h GH_AUTH_JWT with a role mask) and the server checks it
 * through gh_auth_attach before the handler runs; the handler reads the caller with
 * gh_http_principal(req). A handler that decides by itself calls gh_auth_require. */
#ifndef GH_AUTH_H
#define GH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "err.h"
#include "http.h"

/* The roles of specs/conventions.md, as bits for route masks. */
typedef enum {
	GH_ROLE_PLATFORM_ADMIN = 1u << 0,
	GH_ROLE_COMPLIANCE = 1u << 1,
	GH_ROLE_TENANT_ADMIN = 1u << 2,
	GH_ROLE_TENANT_OPERATOR = 1u << 3,
	GH_ROLE_TENANT_VIEWER = 1u << 4,
} gh_role_t;
#define GH_ROLE__COUNT  5
#define GH_ROLES_TENANT (GH_ROLE_TENANT_ADMIN | GH_ROLE_TENANT_OPERATOR | GH_ROLE_TENANT_VIEWER)
#define GH_ROLES_ALL    ((1u << GH_ROLE__COUNT) - 1)
/* "platform-admin", "compliance", "tenant-admin", "tenant-operator", "tenant-viewer", NULL;
 * index i names bit 1 << i. */
extern const char *const gh_role_names[];
/* The bit of a known role name, 0 for any other string. */
uint32_t gh_role_parse(const char *name);

#define GH_AUTH_MAX_ROLES 16 /* roles a token may carry */
#define GH_AUTH_ROLE_LEN  64 /* longest role name + 1 */

/* The authenticated caller. Fixed size, so it can live on a stack or in a request. */
typedef struct gh_principal_s {
	char sub[256];
	char tenant_id[128]; /* "" when the token has none (platform roles) */
	uint32_t role_mask;  /* known roles, GH_ROLE_* bits */
	unsigned n_roles;
	char roles[GH_AUTH_MAX_ROLES][GH_AUTH_ROLE_LEN]; /* all roles as given, known or not */
	int64_t exp;                                     /* seconds since the epoch */
	bool anonymous; /* auth.disabled and no token: a stand-in with every known role */
} gh_principal_t;

typedef struct {
	const char *hs256_secret; /* NULL or "": HS256 refused */
	size_t hs256_secret_len;  /* 0: strlen(hs256_secret) */
	const char *rs256_pem;    /* the public key PEM text (not a path); NULL or "": RS256 off */
	const char *issuer;       /* NULL or "": `iss` not checked */
	const char *audience;     /* NULL or "": `aud` not checked */
	int64_t leeway_s;         /* clock skew allowed on exp and nbf; < 0: none; 0: 30 s */
	gh_clock_t *clock;        /* NULL: real time */
	/* Development only: a request without a token passes as an anonymous principal with
	 * every known role and role checks are skipped; a token, when sent, is still verified
	 * (an invalid one is 401). gh_auth_from_config refuses it in the scale-out profile. */
	bool disabled;
} gh_auth_config_t;

typedef struct gh_auth_s gh_auth_t;

/* A verifier (talloc child of ctx; it copies what it needs from cfg). A verifier without
 * keys is valid and refuses every token. Returns 0, or -EINVAL with err filled (an unusable
 * RS256 key, a secret shorter than 32 bytes as RFC 7518 3.2 requires of HS256), -ENOMEM. */
int gh_auth_new(void *ctx, const gh_auth_config_t *cfg, gh_auth_t **out, gh_err_t *err);
/* The same from the auth section of the configuration: reads the RS256 key file. err names
 * the key (field "/auth/jwt_rs256_public_key"). -ENOENT/-EIO when the key file cannot be
 * read, -EINVAL for a bad key or auth.disabled in the scale-out profile. */
int gh_auth_from_config(void *ctx, const gh_config_t *cfg, gh_clock_t *clock, gh_auth_t **out,
                        gh_err_t *err);
bool gh_auth_disabled(const gh_auth_t *a);

/* Verify a compact JWT and fill *out. Returns 0, or -EACCES with err = UNAUTHENTICATED and a
 * short reason (malformed, unsupported algorithm, bad signature, expired, not yet valid,
 * wrong issuer/audience, bad claims). Thread-safe. */
int gh_auth_verify(const gh_auth_t *a, const char *token, gh_principal_t *out, gh_err_t *err);
/* The same from an Authorization header value ("Bearer <token>", scheme case-insensitive).
 * A NULL or empty value is -ENOENT with err = UNAUTHENTICATED "missing bearer token". */
int gh_auth_bearer(const gh_auth_t *a, const char *authorization, gh_principal_t *out,
                   gh_err_t *err);

/* Whether p carries the role (a known name or a service-specific string). */
bool gh_auth_has_role(const gh_principal_t *p, const char *role);
/* Whether p carries at least one of the roles in mask (GH_ROLE_* bits); mask 0: true. */
bool gh_auth_any_of(const gh_principal_t *p, uint32_t mask);

/* For a handler: authenticate req's bearer token and check it has one of the roles in mask
 * (0: any). On success fills *out (may be NULL) and returns 0. Otherwise fills gh_http_err(req)
 * and returns negative, so the handler just returns it: 401 UNAUTHENTICATED with
 * `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 3.1; without error= when no token
 * was sent) for a missing/invalid/expired token, 403 PERMISSION_DENIED for a valid token
 * without the role. With auth disabled a request without a token gets the anonymous
 * principal. */
int gh_auth_require(gh_http_req_t *req, const gh_auth_t *a, uint32_t mask, gh_principal_t *out);

/* Make s check GH_AUTH_JWT routes with a (gh_http_set_jwt_check); the principal is then
 * gh_http_principal(req). a must outlive s. Before start: 0, -EBUSY. */
int gh_auth_attach(gh_http_server_t *s, const gh_auth_t *a);

#endif
