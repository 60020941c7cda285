/* auth: JWT bearer verification (libjwt) and role checks. See auth.h for the contract.
 *
 * libjwt verifies with whatever algorithm the token's header names, using the key it is
 * given. That is the root of the algorithm confusion attack, so the header is read here
 * first, the key is chosen from the algorithm (and only algorithms we hold a key for pass),
 * and the algorithm libjwt used is checked again after it verified. Claims are then read
 * with jansson from the verified payload. */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <talloc.h>

#include "log.h"

#define MAX_TOKEN       8192 /* bytes of a compact JWT; headers larger than this are abuse */
#define DEFAULT_LEEWAY  30
#define MIN_HS256_BYTES 32 /* RFC 7518 3.2: a key of at least the hash output size */
#define MIN_RSA_BITS    2048

const char *const gh_role_names[] = {"platform-admin",  "compliance",    "tenant-admin",
                                     "tenant-operator", "tenant-viewer", NULL};

struct gh_auth_s {
	unsigned char *secret; /* NULL: HS256 off */
	size_t secret_len;
	char *pem; /* NULL: RS256 off */
	size_t pem_len;
	char *issuer, *audience; /* NULL: not checked */
	int64_t leeway_s;
	gh_clock_t *clock;
	bool disabled;
};

uint32_t gh_role_parse(const char *name)
{
	for (unsigned i = 0; gh_role_names[i]; i++)
		if (strcmp(gh_role_names[i], name) == 0)
			return 1u << i;
	return 0;
}

bool gh_auth_has_role(const gh_principal_t *p, const char *role)
{
	for (unsigned i = 0; i < p->n_roles; i++)
		if (strcmp(p->roles[i], role) == 0)
			return true;
	return false;
}

bool gh_auth_any_of(const gh_principal_t *p, uint32_t mask)
{
	return mask == 0 || (p->role_mask & mask) != 0;
}

bool gh_auth_disabled(const gh_auth_t *a) { return a->disabled; }

/* ---- construction ---- */

static int secret_destructor(unsigned char *p)
{
	explicit_bzero(p, talloc_get_size(p));
	return 0;
}

/* An RSA public key of at least MIN_RSA_BITS, so that a typo'd or toy key fails at start
 * rather than on the first request. */
static int check_rsa_pem(const char *pem, size_t len, gh_err_t *err, const char *field)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	int rc = 0;
	if (!k)
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
		                "RS256 key is not a PEM public key");
	else if (EVP_PKEY_base_id(k) != EVP_PKEY_RSA)
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field, "RS256 key is not an RSA key");
	else if (EVP_PKEY_bits(k) < MIN_RSA_BITS)
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, field,
		                "RS256 key has %d bits, fewer than %d", EVP_PKEY_bits(k),
		                MIN_RSA_BITS);
	EVP_PKEY_free(k);
	BIO_free(bio);
	return rc;
}

int gh_auth_new(void *ctx, const gh_auth_config_t *cfg, gh_auth_t **out, gh_err_t *err)
{
	gh_auth_t *a = talloc_zero(ctx, gh_auth_t);
	if (!a)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
	int rc = 0;
	if (cfg->hs256_secret && cfg->hs256_secret[0]) {
		size_t n =
		    cfg->hs256_secret_len ? cfg->hs256_secret_len : strlen(cfg->hs256_secret);
		if (n < MIN_HS256_BYTES) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/auth/jwt_hs256_secret",
			                "HS256 secret must be at least %d bytes", MIN_HS256_BYTES);
			goto fail;
		}
		a->secret = talloc_memdup(a, cfg->hs256_secret, n);
		if (!a->secret)
			goto nomem;
		talloc_set_destructor(a->secret, secret_destructor);
		a->secret_len = n;
	}
	if (cfg->rs256_pem && cfg->rs256_pem[0]) {
		a->pem_len = strlen(cfg->rs256_pem);
		if ((rc = check_rsa_pem(cfg->rs256_pem, a->pem_len, err,
		                        "/auth/jwt_rs256_public_key")) < 0)
			goto fail;
		if (!(a->pem = talloc_strndup(a, cfg->rs256_pem, a->pem_len)))
			goto nomem;
	}
	if (cfg->issuer && cfg->issuer[0] && !(a->issuer = talloc_strdup(a, cfg->issuer)))
		goto nomem;
	if (cfg->audience && cfg->audience[0] && !(a->audience = talloc_strdup(a, cfg->audience)))
		goto nomem;
	a->leeway_s = cfg->leeway_s < 0 ? 0 : cfg->leeway_s ? cfg->leeway_s : DEFAULT_LEEWAY;
	a->clock = cfg->clock ? cfg->clock : gh_clock_real();
	a->disabled = cfg->disabled;
	*out = a;
	return 0;
nomem:
	rc = gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
fail:
	talloc_free(a);
	return rc;
}

int gh_auth_from_config(void *ctx, const gh_config_t *cfg, gh_clock_t *clock, gh_auth_t **out,
                        gh_err_t *err)
{
	const gh_config_auth_t *ac = &cfg->auth;
	if (ac->disabled && cfg->service.profile == GH_PROFILE_SCALE_OUT)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "/auth/disabled",
		                  "auth.disabled is refused in the scale-out profile");
	void *tmp = talloc_new(NULL);
	char *pem = NULL;
	int rc = 0;
	const char *path = ac->jwt_rs256_public_key;
	if (path[0]) {
		FILE *f = fopen(path, "re");
		size_t len = 0, cap = 16384;
		pem = f ? talloc_size(tmp, cap) : NULL;
		if (f && pem) {
			len = fread(pem, 1, cap - 1, f);
			pem[len] = '\0';
		}
		int bad = !f || !pem || ferror(f) || len == cap - 1;
		int e = errno;
		if (f)
			fclose(f);
		if (bad) {
			rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/auth/jwt_rs256_public_key",
			                "cannot read RS256 key %s: %s", path,
			                !f ? strerror(e) : "unreadable or larger than 16 KiB");
			rc = !f ? -e : -EIO;
			goto out;
		}
	}
	gh_auth_config_t c = {.hs256_secret = ac->jwt_hs256_secret,
	                      .rs256_pem = pem,
	                      .issuer = ac->issuer,
	                      .audience = ac->audience,
	                      .leeway_s = ac->leeway_s ? ac->leeway_s : -1,
	                      .clock = clock,
	                      .disabled = ac->disabled};
	rc = gh_auth_new(ctx, &c, out, err);
	if (rc == 0 && ac->disabled)
		gh_log(GH_LOG_WARN, "auth disabled: requests without a token pass as anonymous",
		       NULL);
out:
	talloc_free(tmp);
	return rc;
}

/* ---- verification ---- */

static int unauth(gh_err_t *err, const char *why)
{
	return gh_err_set(err, GH_E_UNAUTHENTICATED, NULL, "invalid token: %s", why);
}

/* base64url without padding (RFC 7515 2) into out (at most cap bytes). -1 on bad input. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int v = c >= 'A' && c <= 'Z'   ? c - 'A'
		        : c >= 'a' && c <= 'z' ? c - 'a' + 26
		        : c >= '0' && c <= '9' ? c - '0' + 52
		        : c == '-'             ? 62
		        : c == '_'             ? 63
		                               : -1;
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)o;
}

/* The algorithm named by the header, and its key; -EACCES for anything we do not accept. */
static int pick_key(const gh_auth_t *a, const char *tok, size_t hlen, jwt_alg_t *alg,
                    const unsigned char **key, int *key_len, gh_err_t *err)
{
	unsigned char hdr[1024];
	long n = b64url_decode(tok, hlen, hdr, sizeof(hdr));
	if (n <= 0)
		return unauth(err, "malformed header");
	json_t *h = json_loadb((const char *)hdr, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	const char *name = json_string_value(json_object_get(h, "alg"));
	int rc = 0;
	if (!json_is_object(h))
		rc = unauth(err, "malformed header");
	else if (!name)
		rc = unauth(err, "no algorithm");
	else if (json_object_get(h, "crit"))
		rc = unauth(err, "unsupported critical header");
	else if (strcmp(name, "HS256") == 0 && a->secret) {
		*alg = JWT_ALG_HS256;
		*key = a->secret;
		*key_len = (int)a->secret_len;
	} else if (strcmp(name, "RS256") == 0 && a->pem) {
		*alg = JWT_ALG_RS256;
		*key = (const unsigned char *)a->pem;
		*key_len = (int)a->pem_len;
	} else {
		rc = unauth(err, "algorithm not accepted");
	}
	json_decref(h);
	return rc;
}

/* A NumericDate (RFC 7519 2): a JSON number of seconds; fractions are cut. */
static int numeric_date(json_t *v, int64_t *out)
{
	if (!json_is_number(v))
		return -1;
	double d = json_number_value(v);
	if (!isfinite(d) || d < 0 || d > 9.2e18)
		return -1;
	*out = json_is_integer(v) ? (int64_t)json_integer_value(v) : (int64_t)floor(d);
	return 0;
}

static int copy_str(char *dst, size_t cap, json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (!s || n == 0 || n >= cap || strlen(s) != n)
		return -1;
	memcpy(dst, s, n + 1);
	return 0;
}

static int check_claims(const gh_auth_t *a, json_t *c, gh_principal_t *p, gh_err_t *err)
{
	int64_t now = gh_clock_now_ms(a->clock) / 1000, nbf;
	json_t *v;
	if (!(v = json_object_get(c, "exp")))
		return unauth(err, "no expiry");
	if (numeric_date(v, &p->exp) < 0)
		return unauth(err, "bad expiry");
	if (now >= p->exp + a->leeway_s)
		return gh_err_set(err, GH_E_UNAUTHENTICATED, NULL, "token expired");
	if ((v = json_object_get(c, "nbf"))) {
		if (numeric_date(v, &nbf) < 0)
			return unauth(err, "bad nbf");
		if (now + a->leeway_s < nbf)
			return gh_err_set(err, GH_E_UNAUTHENTICATED, NULL, "token not yet valid");
	}
	if (a->issuer) {
		const char *iss = json_string_value(json_object_get(c, "iss"));
		if (!iss || strcmp(iss, a->issuer) != 0)
			return unauth(err, "wrong issuer");
	}
	if (a->audience) {
		/* RFC 7519 4.1.3: a string or an array of strings, one of which must be ours. */
		json_t *aud = json_object_get(c, "aud");
		int ok = json_is_string(aud) && strcmp(json_string_value(aud), a->audience) == 0;
		size_t i;
		json_t *e;
		if (json_is_array(aud))
			json_array_foreach(aud, i, e) ok |=
			    json_is_string(e) && strcmp(json_string_value(e), a->audience) == 0;
		if (!ok)
			return unauth(err, "wrong audience");
	}
	if (copy_str(p->sub, sizeof(p->sub), json_object_get(c, "sub")) < 0)
		return unauth(err, "sub missing or invalid");
	if ((v = json_object_get(c, "tenant_id")) && !json_is_null(v) &&
	    copy_str(p->tenant_id, sizeof(p->tenant_id), v) < 0)
		return unauth(err, "tenant_id invalid");
	if ((v = json_object_get(c, "roles")) && !json_is_null(v)) {
		size_t i;
		json_t *r;
		if (!json_is_array(v) || json_array_size(v) > GH_AUTH_MAX_ROLES)
			return unauth(err, "roles must be an array of at most 16 strings");
		json_array_foreach(v, i, r)
		{
			if (copy_str(p->roles[p->n_roles], GH_AUTH_ROLE_LEN, r) < 0)
				return unauth(err, "roles must be non-empty strings of at most 63 "
				                   "bytes");
			p->role_mask |= gh_role_parse(p->roles[p->n_roles++]);
		}
	}
	return 0;
}

int gh_auth_verify(const gh_auth_t *a, const char *token, gh_principal_t *out, gh_err_t *err)
{
	memset(out, 0, sizeof(*out));
	size_t n = token ? strnlen(token, MAX_TOKEN + 1) : 0;
	if (n == 0 || n > MAX_TOKEN)
		return unauth(err, "malformed");
	const char *d1 = memchr(token, '.', n);
	const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)) || d2 + 1 == token + n)
		return unauth(err, "malformed"); /* three parts and a signature */
	jwt_alg_t alg;
	const unsigned char *key;
	int key_len, rc;
	if ((rc = pick_key(a, token, (size_t)(d1 - token), &alg, &key, &key_len, err)) < 0)
		return rc;
	jwt_t *jwt = NULL;
	if (jwt_decode(&jwt, token, key, key_len) != 0 || !jwt) {
		jwt_free(jwt);
		return unauth(err, "bad signature or encoding");
	}
	if (jwt_get_alg(jwt) != alg) { /* what libjwt verified with is what we chose */
		jwt_free(jwt);
		return unauth(err, "algorithm not accepted");
	}
	char *js = jwt_get_grants_json(jwt, NULL);
	jwt_free(jwt);
	json_t *claims = js ? json_loads(js, JSON_REJECT_DUPLICATES, NULL) : NULL;
	free(js);
	if (!json_is_object(claims))
		rc = unauth(err, "claims are not an object");
	else
		rc = check_claims(a, claims, out, err);
	json_decref(claims);
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

int gh_auth_bearer(const gh_auth_t *a, const char *authorization, gh_principal_t *out,
                   gh_err_t *err)
{
	memset(out, 0, sizeof(*out));
	if (!authorization || !authorization[0]) {
		gh_err_set(err, GH_E_UNAUTHENTICATED, NULL, "missing bearer token");
		return -ENOENT;
	}
	/* RFC 6750 2.1: "Bearer" 1*SP token; the scheme is case-insensitive (RFC 7235 2.1). */
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return gh_err_set(err, GH_E_UNAUTHENTICATED, NULL,
		                  "Authorization must use the Bearer scheme");
	const char *t = authorization + 7;
	while (*t == ' ')
		t++;
	return gh_auth_verify(a, t, out, err);
}

int gh_auth_require(gh_http_req_t *req, const gh_auth_t *a, uint32_t mask, gh_principal_t *out)
{
	gh_principal_t tmp;
	gh_principal_t *p = out ? out : &tmp;
	gh_err_t *err = gh_http_err(req);
	int rc = gh_auth_bearer(a, gh_http_header(req, "Authorization"), p, err);
	if (rc == -ENOENT && a->disabled) {
		gh_err_clear(err);
		memset(p, 0, sizeof(*p));
		snprintf(p->sub, sizeof(p->sub), "anonymous");
		p->role_mask = GH_ROLES_ALL;
		p->anonymous = true;
		return 0;
	}
	if (rc < 0) {
		/* RFC 6750 3.1: no error code when the request had no credentials at all. */
		gh_http_set_header(req, "WWW-Authenticate",
		                   rc == -ENOENT ? "Bearer" : "Bearer error=\"invalid_token\"");
		return rc;
	}
	if (!a->disabled && !gh_auth_any_of(p, mask)) {
		gh_log(GH_LOG_INFO, "auth: role missing", "sub", p->sub, "route",
		       gh_http_route_pattern(req), NULL);
		return gh_err_set(err, GH_E_PERMISSION_DENIED, NULL,
		                  "the caller's roles do not allow this");
	}
	return 0;
}

static int jwt_check(gh_http_req_t *req, uint32_t roles, void *ud)
{
	gh_principal_t *p = talloc_zero(gh_http_ctx(req), gh_principal_t);
	if (!p)
		return gh_err_set(gh_http_err(req), GH_E_INTERNAL, NULL, "out of memory");
	int rc = gh_auth_require(req, ud, roles, p);
	if (rc == 0)
		gh_http_set_principal(req, p);
	return rc;
}

int gh_auth_attach(gh_http_server_t *s, const gh_auth_t *a)
{
	return gh_http_set_jwt_check(s, jwt_check, (void *)a);
}
