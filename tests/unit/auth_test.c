/* auth: JWT verification (tokens made here with libjwt and OpenSSL), role checks, and the
 * access policies of a real gh_http server: JWT routes over plain HTTP, mTLS routes over
 * HTTPS with a CA and client certificates made by the openssl CLI in a temp dir, spoken to
 * by a small GnuTLS client. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <jwt.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <talloc.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "httpc.h"
#include "service.h"
#include "testutil.h"

#define NOW_S  1800000000LL /* the test clock, seconds */
#define SECRET "0123456789abcdef0123456789abcdef-test-secret"

static void *g_ctx;
static gh_clock_t *g_clock;
static char *g_rsa_priv, *g_rsa_pub; /* 2048-bit RS256 key pair (PEM) */
static char *g_rsa2_priv;            /* another key: its signatures must not verify */
static char *g_small_pub;            /* 1024-bit: refused as an RS256 key */
static char *g_dir;                  /* certificates */

/* ---- token making ---- */

static char *pem_of(EVP_PKEY *k, int priv)
{
	BIO *b = BIO_new(BIO_s_mem());
	assert_non_null(b);
	if (priv)
		assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = talloc_strndup(g_ctx, data, (size_t)n);
	BIO_free(b);
	return s;
}

static char *b64url(const unsigned char *in, size_t n)
{
	char *out = talloc_array(g_ctx, char, 4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return out;
}

/* A token with exactly this header and payload, HMAC-SHA256 signed with key (the signature
 * part is empty when key is NULL). For headers libjwt would not write. */
static char *tok_raw(const char *header, const char *payload, const void *key, size_t klen)
{
	char *in =
	    talloc_asprintf(g_ctx, "%s.%s", b64url((const unsigned char *)header, strlen(header)),
	                    b64url((const unsigned char *)payload, strlen(payload)));
	if (!key)
		return talloc_asprintf(g_ctx, "%s.", in);
	unsigned char mac[32];
	unsigned mlen = 0;
	assert_non_null(
	    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)in, strlen(in), mac, &mlen));
	return talloc_asprintf(g_ctx, "%s.%s", in, b64url(mac, mlen));
}

/* A token made by libjwt: claims (a JSON object) signed with alg and key. */
static char *tok(jwt_alg_t alg, const char *key, const char *claims)
{
	jwt_t *j = NULL;
	assert_int_equal(jwt_new(&j), 0);
	assert_int_equal(jwt_add_grants_json(j, claims), 0);
	assert_int_equal(
	    jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0), 0);
	char *s = jwt_encode_str(j);
	assert_non_null(s);
	char *t = talloc_strdup(g_ctx, s);
	free(s);
	jwt_free(j);
	return t;
}

static char *claims(const char *extra)
{
	return talloc_asprintf(g_ctx, "{\"sub\":\"u-1\",\"exp\":%lld%s%s}", NOW_S + 3600,
	                       extra && extra[0] ? "," : "", extra ? extra : "");
}

static char *hs(const char *extra) { return tok(JWT_ALG_HS256, SECRET, claims(extra)); }

/* ---- verifiers ---- */

static gh_auth_t *verifier(const gh_auth_config_t *over)
{
	gh_auth_config_t c = {.hs256_secret = SECRET, .rs256_pem = g_rsa_pub, .clock = g_clock};
	if (over)
		c = *over;
	if (!c.clock)
		c.clock = g_clock;
	gh_auth_t *a = NULL;
	gh_err_t err = {0};
	int rc = gh_auth_new(g_ctx, &c, &a, &err);
	if (rc < 0)
		fail_msg("gh_auth_new: %s", err.message);
	return a;
}

/* Verify and expect a refusal whose message contains why. */
static void refused(const gh_auth_t *a, const char *token, const char *why)
{
	gh_principal_t p;
	gh_err_t err = {0};
	int rc = gh_auth_verify(a, token, &p, &err);
	if (rc != -EACCES)
		fail_msg("token accepted (rc %d) but should fail with '%s': %s", rc, why, token);
	assert_int_equal(err.code, GH_E_UNAUTHENTICATED);
	if (!strstr(err.message, why))
		fail_msg("'%s' does not say '%s'", err.message, why);
	assert_string_equal(p.sub, ""); /* nothing half-filled */
	gh_err_clear(&err);
}

static void accepted(const gh_auth_t *a, const char *token, gh_principal_t *p)
{
	gh_err_t err = {0};
	int rc = gh_auth_verify(a, token, p, &err);
	if (rc != 0)
		fail_msg("token refused: %s", err.message);
}

/* ---- verification ---- */

static void test_hs256_token_gives_its_claims(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	accepted(a,
	         hs("\"tenant_id\":\"t-42\",\"roles\":[\"tenant-admin\",\"numbering-importer\"]"),
	         &p);
	assert_string_equal(p.sub, "u-1");
	assert_string_equal(p.tenant_id, "t-42");
	assert_int_equal(p.exp, NOW_S + 3600);
	assert_int_equal(p.n_roles, 2);
	assert_string_equal(p.roles[1], "numbering-importer");
	assert_int_equal(p.role_mask, GH_ROLE_TENANT_ADMIN);
	assert_false(p.anonymous);
}

static void test_rs256_token_verifies_with_the_public_key(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	accepted(a, tok(JWT_ALG_RS256, g_rsa_priv, claims("\"roles\":[\"platform-admin\"]")), &p);
	assert_string_equal(p.sub, "u-1");
	assert_string_equal(p.tenant_id, "");
	assert_true(gh_auth_any_of(&p, GH_ROLE_PLATFORM_ADMIN));
	/* signed by another key: refused */
	refused(a, tok(JWT_ALG_RS256, g_rsa2_priv, claims(NULL)), "bad signature");
	/* RS256 without an RS256 key configured */
	gh_auth_config_t hs_only = {.hs256_secret = SECRET};
	refused(verifier(&hs_only), tok(JWT_ALG_RS256, g_rsa_priv, claims(NULL)),
	        "algorithm not accepted");
}

static void test_expiry_with_leeway(void **state)
{
	gh_auth_t *a = verifier(NULL); /* default leeway 30 s */
	gh_principal_t p;
	char *c = talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"exp\":%lld}", NOW_S - 10);
	accepted(a, tok(JWT_ALG_HS256, SECRET, c), &p); /* 10 s late: within leeway */
	c = talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"exp\":%lld}", NOW_S - 30);
	refused(a, tok(JWT_ALG_HS256, SECRET, c), "token expired");
	gh_auth_config_t strict = {.hs256_secret = SECRET, .leeway_s = -1};
	c = talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"exp\":%lld}", NOW_S);
	refused(verifier(&strict), tok(JWT_ALG_HS256, SECRET, c), "token expired");
	c = talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"exp\":%lld.5}", NOW_S + 1);
	accepted(verifier(&strict), tok_raw("{\"alg\":\"HS256\"}", c, SECRET, strlen(SECRET)), &p);
	assert_int_equal(p.exp, NOW_S + 1);
}

static void test_not_yet_valid_refused(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	refused(a, hs(talloc_asprintf(g_ctx, "\"nbf\":%lld", NOW_S + 31)), "not yet valid");
	accepted(a, hs(talloc_asprintf(g_ctx, "\"nbf\":%lld", NOW_S + 29)), &p);
	refused(a, hs("\"nbf\":\"soon\""), "bad nbf");
}

static void test_bad_signature_refused(void **state)
{
	gh_auth_t *a = verifier(NULL);
	refused(a, tok(JWT_ALG_HS256, SECRET "x", claims(NULL)), "bad signature");
	/* a payload swapped under a valid signature */
	char *good = hs("\"roles\":[\"tenant-viewer\"]");
	char *evil = hs("\"roles\":[\"platform-admin\"]");
	char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
	char *e1 = strchr(evil, '.'), *e2 = strrchr(evil, '.');
	char *forged =
	    talloc_asprintf(g_ctx, "%.*s%.*s%s", (int)(d1 - good), good, (int)(e2 - e1), e1, d2);
	refused(a, forged, "bad signature");
	/* the signature cut short */
	refused(a, talloc_strndup(g_ctx, good, strlen(good) - 4), "bad signature");
}

static void test_alg_none_refused(void **state)
{
	gh_auth_t *a = verifier(NULL);
	refused(a, tok_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims(NULL), NULL, 0),
	        "malformed");
	refused(a, tok_raw("{\"alg\":\"none\"}", claims(NULL), SECRET, strlen(SECRET)),
	        "algorithm not accepted");
	refused(a, tok(JWT_ALG_NONE, NULL, claims(NULL)), "malformed");
	refused(a, tok_raw("{\"alg\":\"NONE\"}", claims(NULL), SECRET, strlen(SECRET)),
	        "algorithm not accepted");
	refused(a, tok_raw("{\"typ\":\"JWT\"}", claims(NULL), SECRET, strlen(SECRET)),
	        "no algorithm");
	refused(a, tok_raw("{\"alg\":\"HS512\"}", claims(NULL), SECRET, strlen(SECRET)),
	        "algorithm not accepted");
}

static void test_alg_confusion_refused(void **state)
{
	/* The attack: an HS256 token whose HMAC key is the RS256 public key PEM. */
	char *forged = tok(JWT_ALG_HS256, g_rsa_pub, claims("\"roles\":[\"platform-admin\"]"));
	gh_auth_config_t rs_only = {.rs256_pem = g_rsa_pub};
	refused(verifier(&rs_only), forged, "algorithm not accepted");
	/* with both keys configured HS256 is checked against the secret only */
	refused(verifier(NULL), forged, "bad signature");
	/* and an RS256 header on an HMAC signature does not pass either */
	refused(verifier(&rs_only),
	        tok_raw("{\"alg\":\"RS256\"}", claims(NULL), g_rsa_pub, strlen(g_rsa_pub)),
	        "bad signature");
}

static void test_missing_exp_and_sub_refused(void **state)
{
	gh_auth_t *a = verifier(NULL);
	refused(a, tok(JWT_ALG_HS256, SECRET, "{\"sub\":\"u\"}"), "no expiry");
	refused(a, tok(JWT_ALG_HS256, SECRET, "{\"sub\":\"u\",\"exp\":\"tomorrow\"}"),
	        "bad expiry");
	refused(a, tok(JWT_ALG_HS256, SECRET, talloc_asprintf(g_ctx, "{\"exp\":%lld}", NOW_S + 60)),
	        "sub missing");
	refused(a,
	        tok(JWT_ALG_HS256, SECRET,
	            talloc_asprintf(g_ctx, "{\"sub\":7,\"exp\":%lld}", NOW_S + 60)),
	        "sub missing");
}

static void test_issuer_and_audience(void **state)
{
	gh_auth_config_t c = {
	    .hs256_secret = SECRET, .issuer = "https://idp.example", .audience = "ghasi"};
	gh_auth_t *a = verifier(&c);
	gh_principal_t p;
	accepted(a, hs("\"iss\":\"https://idp.example\",\"aud\":\"ghasi\""), &p);
	accepted(a, hs("\"iss\":\"https://idp.example\",\"aud\":[\"portal\",\"ghasi\"]"), &p);
	refused(a, hs("\"iss\":\"https://evil.example\",\"aud\":\"ghasi\""), "wrong issuer");
	refused(a, hs("\"aud\":\"ghasi\""), "wrong issuer");
	refused(a, hs("\"iss\":\"https://idp.example\",\"aud\":\"portal\""), "wrong audience");
	refused(a, hs("\"iss\":\"https://idp.example\",\"aud\":[\"portal\"]"), "wrong audience");
	refused(a, hs("\"iss\":\"https://idp.example\""), "wrong audience");
	/* not configured: not checked */
	accepted(verifier(NULL), hs("\"iss\":\"anyone\",\"aud\":\"anything\""), &p);
}

static void test_malformed_tokens_refused(void **state)
{
	gh_auth_t *a = verifier(NULL);
	char *good = hs(NULL);
	const char *bad[] = {"",
	                     "abc",
	                     "a.b",
	                     "a.b.c.d",
	                     "!!!.e30.abc",
	                     "e30.e30.",
	                     "..",
	                     "eyJhbGciOiJIUzI1NiJ9..sig",
	                     "eyJhbGciOiJIUzI1NiJ9.e30.sig sig"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gh_principal_t p;
		gh_err_t err = {0};
		if (gh_auth_verify(a, bad[i], &p, &err) != -EACCES)
			fail_msg("accepted '%s'", bad[i]);
		gh_err_clear(&err);
	}
	refused(a, talloc_asprintf(g_ctx, "%s.%s", good, "x"), "malformed");
	refused(a, tok_raw("not json", claims(NULL), SECRET, strlen(SECRET)), "malformed header");
	refused(a, tok_raw("[\"HS256\"]", claims(NULL), SECRET, strlen(SECRET)), "malformed");
	refused(a, tok_raw("{\"alg\":\"HS256\"}", "not json", SECRET, strlen(SECRET)),
	        "bad signature or encoding");
	refused(a,
	        tok_raw("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", claims(NULL),
	                SECRET, strlen(SECRET)),
	        "critical");
	char *huge = talloc_zero_array(g_ctx, char, 9000);
	memset(huge, 'a', 8999);
	refused(a, huge, "malformed");
	refused(a, NULL, "malformed");
}

static void test_roles_parsing(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	accepted(a,
	         hs("\"roles\":[\"tenant-viewer\",\"compliance\",\"cdr-reader\",\"Tenant-Admin\"]"),
	         &p);
	assert_int_equal(p.role_mask, GH_ROLE_TENANT_VIEWER | GH_ROLE_COMPLIANCE);
	assert_true(gh_auth_has_role(&p, "cdr-reader"));
	assert_true(gh_auth_has_role(&p, "compliance"));
	assert_true(gh_auth_has_role(&p, "Tenant-Admin"));      /* kept as given ... */
	assert_false(gh_auth_any_of(&p, GH_ROLE_TENANT_ADMIN)); /* ... but not a known role */
	assert_true(gh_auth_any_of(&p, GH_ROLE_TENANT_ADMIN | GH_ROLE_COMPLIANCE));
	assert_true(gh_auth_any_of(&p, 0));
	assert_false(gh_auth_has_role(&p, "platform-admin"));
	accepted(a, hs(NULL), &p); /* no roles claim: no roles */
	assert_int_equal(p.n_roles, 0);
	assert_false(gh_auth_any_of(&p, GH_ROLES_ALL));
	accepted(a, hs("\"roles\":[]"), &p);
	refused(a, hs("\"roles\":\"platform-admin\""), "roles must be an array");
	refused(a, hs("\"roles\":[\"tenant-admin\",3]"), "roles must be non-empty strings");
	refused(a, hs("\"roles\":[\"\"]"), "roles must be non-empty strings");
	char *many = talloc_strdup(g_ctx, "\"roles\":[\"r0\"");
	for (int i = 1; i < 17; i++)
		many = talloc_asprintf_append(many, ",\"r%d\"", i);
	refused(a, hs(talloc_asprintf_append(many, "]")), "at most 16");
	assert_int_equal(gh_role_parse("tenant-operator"), GH_ROLE_TENANT_OPERATOR);
	assert_int_equal(gh_role_parse("tenant"), 0);
}

static void test_tenant_id_absent_or_present(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	accepted(a, hs("\"tenant_id\":\"t-9\",\"roles\":[\"tenant-operator\"]"), &p);
	assert_string_equal(p.tenant_id, "t-9");
	accepted(a, hs("\"roles\":[\"platform-admin\"]"), &p);
	assert_string_equal(p.tenant_id, "");
	accepted(a, hs("\"tenant_id\":null"), &p);
	assert_string_equal(p.tenant_id, "");
	refused(a, hs("\"tenant_id\":42"), "tenant_id invalid");
	refused(a, hs("\"tenant_id\":\"\""), "tenant_id invalid");
}

static void test_bearer_header(void **state)
{
	gh_auth_t *a = verifier(NULL);
	gh_principal_t p;
	gh_err_t err = {0};
	assert_int_equal(gh_auth_bearer(a, NULL, &p, &err), -ENOENT);
	assert_int_equal(err.code, GH_E_UNAUTHENTICATED);
	assert_int_equal(gh_auth_bearer(a, "", &p, &err), -ENOENT);
	assert_int_equal(gh_auth_bearer(a, "Basic dTpw", &p, &err), -EACCES);
	assert_int_equal(gh_auth_bearer(a, "Bearer", &p, &err), -EACCES);
	char *t = hs(NULL);
	assert_int_equal(gh_auth_bearer(a, talloc_asprintf(g_ctx, "bearer  %s", t), &p, &err), 0);
	assert_string_equal(p.sub, "u-1");
	assert_int_equal(gh_auth_bearer(a, talloc_asprintf(g_ctx, "Bearer %s ", t), &p, &err),
	                 -EACCES);
	gh_err_clear(&err);
}

static void test_bad_keys_refused_at_construction(void **state)
{
	gh_auth_t *a = NULL;
	gh_err_t err = {0};
	gh_auth_config_t c = {.hs256_secret = "short"};
	assert_int_equal(gh_auth_new(g_ctx, &c, &a, &err), -EINVAL);
	assert_string_equal(err.field, "/auth/jwt_hs256_secret");
	c = (gh_auth_config_t){.rs256_pem = g_small_pub};
	assert_int_equal(gh_auth_new(g_ctx, &c, &a, &err), -EINVAL);
	assert_non_null(strstr(err.message, "1024 bits"));
	c = (gh_auth_config_t){.rs256_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n"};
	assert_int_equal(gh_auth_new(g_ctx, &c, &a, &err), -EINVAL);
	c = (gh_auth_config_t){.rs256_pem = g_rsa_priv}; /* a private key is not a public key */
	assert_int_equal(gh_auth_new(g_ctx, &c, &a, &err), -EINVAL);
	/* no keys at all: valid, refuses everything */
	c = (gh_auth_config_t){0};
	assert_int_equal(gh_auth_new(g_ctx, &c, &a, &err), 0);
	refused(a, hs(NULL), "algorithm not accepted");
	gh_err_clear(&err);
}

static void test_from_config(void **state)
{
	char *path = talloc_asprintf(g_ctx, "%s/jwt_pub.pem", g_dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(g_rsa_pub, f);
	fclose(f);
	gh_config_t *cfg = NULL;
	gh_err_t err = {0};
	char *y = talloc_asprintf(g_ctx,
	                          "auth:\n  jwt_rs256_public_key: %s\n  audience: ghasi\n"
	                          "  leeway_s: 0\n",
	                          path);
	assert_int_equal(gh_config_load_buf(g_ctx, "t.yaml", y, strlen(y), NULL, &cfg, &err), 0);
	gh_auth_t *a = NULL;
	assert_int_equal(gh_auth_from_config(g_ctx, cfg, g_clock, &a, &err), 0);
	gh_principal_t p;
	accepted(a, tok(JWT_ALG_RS256, g_rsa_priv, claims("\"aud\":\"ghasi\"")), &p);
	refused(a, tok(JWT_ALG_RS256, g_rsa_priv, claims(NULL)), "wrong audience");
	char *c = talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"aud\":\"ghasi\",\"exp\":%lld}", NOW_S);
	refused(a, tok(JWT_ALG_RS256, g_rsa_priv, c), "expired"); /* leeway 0 */
	assert_false(gh_auth_disabled(a));

	y = talloc_asprintf(g_ctx, "auth:\n  jwt_rs256_public_key: %s/nope.pem\n", g_dir);
	assert_int_equal(gh_config_load_buf(g_ctx, "t.yaml", y, strlen(y), NULL, &cfg, &err), 0);
	assert_int_equal(gh_auth_from_config(g_ctx, cfg, g_clock, &a, &err), -ENOENT);
	assert_string_equal(err.field, "/auth/jwt_rs256_public_key");
	gh_err_clear(&err);
}

/* ---- policies over HTTP ---- */

static atomic_int calls;

/* Echoes who the server let through. */
static int h_who(gh_http_req_t *req, void *ud)
{
	atomic_fetch_add(&calls, 1);
	const gh_principal_t *p = gh_http_principal(req);
	return gh_http_reply_json(req, 200,
	                          json_pack("{s:s?, s:s?, s:b, s:s?}", "sub", p ? p->sub : NULL,
	                                    "tenant_id", p && p->tenant_id[0] ? p->tenant_id : NULL,
	                                    "anonymous", p && p->anonymous, "cn",
	                                    gh_http_client_cn(req)));
}

/* Checks by itself, with gh_auth_require. */
static int h_self(gh_http_req_t *req, void *ud)
{
	gh_principal_t p;
	int rc = gh_auth_require(req, ud, GH_ROLE_COMPLIANCE, &p);
	if (rc < 0)
		return rc;
	atomic_fetch_add(&calls, 1);
	return gh_http_reply_json(req, 200, json_pack("{s:s}", "sub", p.sub));
}

typedef struct {
	const char *cert, *key, *ca;
	int require_client_cert, mtls_open;
	const gh_auth_t *auth;
} srv_opts_t;

static gh_http_server_t *server(void *ctx, const srv_opts_t *o)
{
	static const char *const allow[] = {"billing", "reporting", NULL};
	gh_http_config_t hc = {.threads = 2,
	                       .tls_cert = o->cert,
	                       .tls_key = o->key,
	                       .tls_client_ca = o->ca,
	                       .client_cn_allowlist = allow,
	                       .require_client_cert = o->require_client_cert,
	                       .mtls_open_without_tls = o->mtls_open};
	gh_http_server_t *s = gh_http_server_new(ctx, &hc);
	assert_non_null(s);
	gh_http_route_opts_t jwt_admin = {.auth = GH_AUTH_JWT,
	                                  .roles = GH_ROLE_TENANT_ADMIN | GH_ROLE_PLATFORM_ADMIN};
	gh_http_route_opts_t jwt_any = {.auth = GH_AUTH_JWT};
	gh_http_route_opts_t mtls = {.auth = GH_AUTH_MTLS, .body_limit = 64};
	assert_int_equal(gh_http_route(s, "GET", "/open", h_who, NULL), 0);
	assert_int_equal(gh_http_route_ex(s, "POST", "/admin", h_who, NULL, &jwt_admin), 0);
	assert_int_equal(gh_http_route_ex(s, "GET", "/me", h_who, NULL, &jwt_any), 0);
	assert_int_equal(gh_http_route_ex(s, "POST", "/internal", h_who, NULL, &mtls), 0);
	assert_int_equal(gh_http_route(s, "GET", "/self", h_self, (void *)o->auth), 0);
	assert_int_equal(gh_auth_attach(s, o->auth), 0);
	assert_int_equal(gh_http_server_start(s), 0);
	return s;
}

static char *bearer(const char *token)
{
	return talloc_asprintf(g_ctx, "Authorization: Bearer %s\r\n", token);
}

static const char *err_code(const gh_test_http_resp_t *r)
{
	static char code[64];
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	snprintf(code, sizeof code, "%s",
	         json_string_value(json_object_get(json_object_get(j, "error"), "code")));
	json_decref(j);
	return code;
}

static void test_http_jwt_route_401_403_200(void **state)
{
	void *ctx = talloc_new(NULL);
	srv_opts_t o = {.auth = verifier(NULL)};
	gh_http_server_t *s = server(ctx, &o);
	uint16_t port = gh_http_server_port(s);
	gh_test_http_resp_t *r = talloc(ctx, gh_test_http_resp_t);
	char h[128];
	atomic_store(&calls, 0);

	gh_test_http_request(port, "POST", "/admin", NULL, "{}", r);
	assert_int_equal(r->status, 401);
	assert_string_equal(err_code(r), "UNAUTHENTICATED");
	assert_string_equal(gh_test_http_header(r, "WWW-Authenticate", h, sizeof h), "Bearer");

	gh_test_http_request(port, "POST", "/admin", bearer("x.y.z"), "{}", r);
	assert_int_equal(r->status, 401);
	assert_string_equal(gh_test_http_header(r, "WWW-Authenticate", h, sizeof h),
	                    "Bearer error=\"invalid_token\"");
	char *old = tok(JWT_ALG_HS256, SECRET,
	                talloc_asprintf(g_ctx, "{\"sub\":\"u\",\"exp\":%lld}", NOW_S - 3600));
	gh_test_http_request(port, "POST", "/admin", bearer(old), "{}", r);
	assert_int_equal(r->status, 401);
	assert_non_null(strstr(r->body, "token expired"));

	gh_test_http_request(port, "POST", "/admin",
	                     bearer(hs("\"tenant_id\":\"t-1\",\"roles\":[\"tenant-viewer\"]")),
	                     "{}", r);
	assert_int_equal(r->status, 403);
	assert_string_equal(err_code(r), "PERMISSION_DENIED");
	assert_null(gh_test_http_header(r, "WWW-Authenticate", h, sizeof h));
	assert_int_equal(atomic_load(&calls), 0); /* refused before the handler */

	gh_test_http_request(port, "POST", "/admin",
	                     bearer(hs("\"tenant_id\":\"t-1\",\"roles\":[\"tenant-admin\"]")), "{}",
	                     r);
	assert_int_equal(r->status, 200);
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "sub")), "u-1");
	assert_string_equal(json_string_value(json_object_get(j, "tenant_id")), "t-1");
	json_decref(j);

	/* any valid token */
	gh_test_http_request(port, "GET", "/me", bearer(hs(NULL)), NULL, r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(port, "GET", "/me", NULL, NULL, r);
	assert_int_equal(r->status, 401);

	/* the handler-side check */
	gh_test_http_request(port, "GET", "/self", bearer(hs("\"roles\":[\"compliance\"]")), NULL,
	                     r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(port, "GET", "/self", bearer(hs("\"roles\":[\"tenant-admin\"]")), NULL,
	                     r);
	assert_int_equal(r->status, 403);
	gh_test_http_request(port, "GET", "/self", NULL, NULL, r);
	assert_int_equal(r->status, 401);

	/* open routes and the probes need nothing */
	gh_test_http_request(port, "GET", "/open", NULL, NULL, r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(port, "GET", "/healthz", NULL, NULL, r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(port, "GET", "/metrics", NULL, NULL, r);
	assert_int_equal(r->status, 200);
	/* plain server: internal routes are closed unless told otherwise */
	gh_test_http_request(port, "POST", "/internal", NULL, "{}", r);
	assert_int_equal(r->status, 403);
	talloc_free(ctx);
}

static void test_http_embedded_profile_and_auth_disabled(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_auth_config_t dc = {.hs256_secret = SECRET, .disabled = true};
	srv_opts_t o = {.auth = verifier(&dc), .mtls_open = 1};
	gh_http_server_t *s = server(ctx, &o);
	uint16_t port = gh_http_server_port(s);
	gh_test_http_resp_t *r = talloc(ctx, gh_test_http_resp_t);

	gh_test_http_request(port, "POST", "/internal", NULL, "{}", r);
	assert_int_equal(r->status, 200); /* TLS off + embedded: internal routes open */
	gh_test_http_request(port, "POST", "/admin", NULL, "{}", r);
	assert_int_equal(r->status, 200);
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	assert_true(json_is_true(json_object_get(j, "anonymous")));
	assert_string_equal(json_string_value(json_object_get(j, "sub")), "anonymous");
	json_decref(j);
	/* a token, when sent, is still verified and used */
	gh_test_http_request(port, "POST", "/admin", bearer("x.y.z"), "{}", r);
	assert_int_equal(r->status, 401);
	gh_test_http_request(port, "POST", "/admin", bearer(hs("\"tenant_id\":\"t-7\"")), "{}", r);
	assert_int_equal(r->status, 200);
	assert_non_null(strstr(r->body, "\"t-7\""));
	talloc_free(ctx);
}

static void test_http_jwt_routes_need_a_verifier(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_http_config_t hc = {.threads = 1};
	gh_http_server_t *s = gh_http_server_new(ctx, &hc);
	gh_http_route_opts_t jwt = {.auth = GH_AUTH_JWT};
	assert_int_equal(gh_http_route_ex(s, "GET", "/x", h_who, NULL, &jwt), 0);
	gh_http_route_opts_t bad = {.auth = (gh_auth_policy_t)7};
	assert_int_equal(gh_http_route_ex(s, "GET", "/y", h_who, NULL, &bad), -EINVAL);
	assert_int_equal(gh_http_server_start(s), -EINVAL);
	assert_int_equal(gh_auth_attach(s, verifier(NULL)), 0);
	assert_int_equal(gh_http_server_start(s), 0);
	talloc_free(ctx);
}

/* ---- mTLS ---- */

static char *pth(const char *name) { return talloc_asprintf(g_ctx, "%s/%s", g_dir, name); }

static void sh(const char *cmd)
{
	char *full = talloc_asprintf(g_ctx, "cd '%s' && (%s) >openssl.log 2>&1", g_dir, cmd);
	if (system(full) != 0)
		fail_msg("failed: %s", cmd);
}

/* A CA; a server certificate for 127.0.0.1; client certificates "billing" (allowlisted),
 * "intruder" (same CA, not allowlisted), "billing" from an impostor CA of the same name (so
 * that the client offers it: TLS clients pick a certificate whose issuer the server names),
 * and "billing" with the serverAuth purpose only. EC P-256 keys: fast to make. */
static void make_certs(void)
{
	const char *key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out";
	sh(talloc_asprintf(g_ctx,
	                   "%1$s ca.key && openssl req -x509 -new -key ca.key -out ca.pem -days 2 "
	                   "-subj /CN=test-ca && "
	                   "%1$s ca2.key && openssl req -x509 -new -key ca2.key -out ca2.pem "
	                   "-days 2 -subj /CN=test-ca",
	                   key));
	const struct {
		const char *name, *cn, *ca, *ext;
	} certs[] = {
	    {"srv", "localhost", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"},
	    {"billing", "billing", "ca", "extendedKeyUsage=clientAuth"},
	    {"intruder", "intruder", "ca", "extendedKeyUsage=clientAuth"},
	    {"rogue", "billing", "ca2", "extendedKeyUsage=clientAuth"},
	    {"srvpurpose", "billing", "ca", "extendedKeyUsage=serverAuth"},
	};
	for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
		FILE *f = fopen(pth(talloc_asprintf(g_ctx, "%s.ext", certs[i].name)), "w");
		assert_non_null(f);
		fprintf(f, "%s\n", certs[i].ext);
		fclose(f);
		sh(talloc_asprintf(g_ctx,
		                   "%1$s %2$s.key && openssl req -new -key %2$s.key -out %2$s.csr "
		                   "-subj /CN=%3$s && openssl x509 -req -in %2$s.csr -CA %4$s.pem "
		                   "-CAkey %4$s.key -CAcreateserial -out %2$s.pem -days 2 -extfile "
		                   "%2$s.ext",
		                   key, certs[i].name, certs[i].cn, certs[i].ca));
	}
}

/* One HTTPS request with a client certificate (name: "<name>.pem"/"<name>.key", NULL: none).
 * Returns the status, or -1 when the handshake fails; body (when non-NULL) gets the body. */
static int tls_call(uint16_t port, const char *client, const char *method, const char *path,
                    const char *extra, char *body, size_t body_cap)
{
	gnutls_certificate_credentials_t cred;
	gnutls_session_t sess;
	assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
	assert_true(
	    gnutls_certificate_set_x509_trust_file(cred, pth("ca.pem"), GNUTLS_X509_FMT_PEM) > 0);
	if (client)
		assert_int_equal(gnutls_certificate_set_x509_key_file(
		                     cred, pth(talloc_asprintf(g_ctx, "%s.pem", client)),
		                     pth(talloc_asprintf(g_ctx, "%s.key", client)),
		                     GNUTLS_X509_FMT_PEM),
		                 0);
	assert_int_equal(gnutls_init(&sess, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_set_default_priority(sess), 0);
	assert_int_equal(gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, cred), 0);
	gnutls_session_set_verify_cert(sess, NULL, 0); /* the server's chain, no host name */
	int fd = gh_test_http_connect(port);
	assert_true(fd >= 0);
	gnutls_transport_set_int(sess, fd);
	gnutls_handshake_set_timeout(sess, 10000);
	int rc, status = -1;
	do
		rc = gnutls_handshake(sess);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0)
		goto out;
	char *req = talloc_asprintf(g_ctx,
	                            "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	                            "Content-Length: %d\r\n%s\r\n%s",
	                            method, path, strcmp(method, "POST") == 0 ? 2 : 0,
	                            extra ? extra : "", strcmp(method, "POST") == 0 ? "{}" : "");
	assert_int_equal(gnutls_record_send(sess, req, strlen(req)), (ssize_t)strlen(req));
	char buf[16384];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 &&
	       ((n = gnutls_record_recv(sess, buf + len, sizeof(buf) - 1 - len)) > 0 ||
	        n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED))
		if (n > 0)
			len += (size_t)n;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = 0; /* connection closed without an answer */
	const char *b = strstr(buf, "\r\n\r\n");
	if (body)
		snprintf(body, body_cap, "%s", b ? b + 4 : "");
out:
	gnutls_deinit(sess);
	gnutls_certificate_free_credentials(cred);
	close(fd);
	return status;
}

static void test_mtls_routes(void **state)
{
	void *ctx = talloc_new(NULL);
	srv_opts_t o = {.cert = pth("srv.pem"),
	                .key = pth("srv.key"),
	                .ca = pth("ca.pem"),
	                .auth = verifier(NULL)};
	gh_http_server_t *s = server(ctx, &o);
	uint16_t port = gh_http_server_port(s);
	char body[4096];
	atomic_store(&calls, 0);

	/* allowlisted CN: through, and the handler sees it */
	assert_int_equal(tls_call(port, "billing", "POST", "/internal", NULL, body, sizeof body),
	                 200);
	assert_non_null(strstr(body, "\"cn\":\"billing\""));
	assert_int_equal(atomic_load(&calls), 1);
	/* same CA, CN not on the allowlist */
	assert_int_equal(tls_call(port, "intruder", "POST", "/internal", NULL, body, sizeof body),
	                 403);
	assert_non_null(strstr(body, "PERMISSION_DENIED"));
	assert_non_null(strstr(body, "not allowed"));
	/* the right CN from an impostor CA: the handshake completes (the certificate is only
	 * requested), the route refuses */
	assert_int_equal(tls_call(port, "rogue", "POST", "/internal", NULL, body, sizeof body),
	                 403);
	assert_non_null(strstr(body, "not trusted"));
	/* a certificate not meant for clients */
	assert_int_equal(tls_call(port, "srvpurpose", "POST", "/internal", NULL, body, sizeof body),
	                 403);
	assert_non_null(strstr(body, "not trusted"));
	/* no certificate */
	assert_int_equal(tls_call(port, NULL, "POST", "/internal", NULL, body, sizeof body), 403);
	assert_non_null(strstr(body, "client certificate is required"));
	assert_int_equal(atomic_load(&calls), 1);

	/* the rest of the surface needs no certificate */
	assert_int_equal(tls_call(port, NULL, "GET", "/open", NULL, body, sizeof body), 200);
	assert_non_null(strstr(body, "\"cn\":null"));
	assert_int_equal(tls_call(port, NULL, "GET", "/healthz", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/me", NULL, NULL, 0), 401);
	assert_int_equal(tls_call(port, NULL, "GET", "/me", bearer(hs(NULL)), NULL, 0), 200);
	/* CN of a non-allowlisted certificate is not an identity */
	assert_int_equal(tls_call(port, "intruder", "GET", "/open", NULL, body, sizeof body), 200);
	assert_non_null(strstr(body, "\"cn\":null"));
	assert_int_equal(tls_call(port, "billing", "GET", "/open", NULL, body, sizeof body), 200);
	assert_non_null(strstr(body, "\"cn\":\"billing\""));
	/* plain HTTP to a TLS port gets no answer */
	gh_test_http_resp_t *r = talloc(ctx, gh_test_http_resp_t);
	gh_test_http_conn_t *c = gh_test_http_open(port);
	gh_test_http_send(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 34);
	assert_int_equal(gh_test_http_read(c, r), -1);
	gh_test_http_close(c);
	talloc_free(ctx);
}

static void test_mtls_required_everywhere_but_the_probes(void **state)
{
	void *ctx = talloc_new(NULL);
	srv_opts_t o = {.cert = pth("srv.pem"),
	                .key = pth("srv.key"),
	                .ca = pth("ca.pem"),
	                .require_client_cert = 1,
	                .auth = verifier(NULL)};
	gh_http_server_t *s = server(ctx, &o);
	uint16_t port = gh_http_server_port(s);
	assert_int_equal(tls_call(port, NULL, "GET", "/open", NULL, NULL, 0), 403);
	assert_int_equal(tls_call(port, "intruder", "GET", "/open", NULL, NULL, 0), 403);
	assert_int_equal(tls_call(port, "billing", "GET", "/open", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/healthz", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/readyz", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/metrics", NULL, NULL, 0), 200);
	/* both policies on a JWT route */
	assert_int_equal(tls_call(port, "billing", "GET", "/me", NULL, NULL, 0), 401);
	assert_int_equal(tls_call(port, "billing", "GET", "/me", bearer(hs(NULL)), NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/me", bearer(hs(NULL)), NULL, 0), 403);
	talloc_free(ctx);
}

static void test_tls_files_checked_at_construction(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_http_config_t hc = {.tls_cert = pth("srv.pem"), .tls_key = pth("nope.key")};
	assert_null(gh_http_server_new(ctx, &hc));
	hc.tls_key = pth("billing.key"); /* not the certificate's key */
	assert_null(gh_http_server_new(ctx, &hc));
	hc.tls_key = pth("srv.key");
	hc.tls_client_ca = pth("srv.ext"); /* not PEM */
	assert_null(gh_http_server_new(ctx, &hc));
	hc.tls_client_ca = NULL;
	hc.tls_cert = NULL; /* a key alone */
	assert_null(gh_http_server_new(ctx, &hc));
	hc = (gh_http_config_t){.tls_client_ca = pth("ca.pem")}; /* mTLS without TLS */
	assert_null(gh_http_server_new(ctx, &hc));
	hc = (gh_http_config_t){.tls_cert = pth("srv.pem"), .tls_key = pth("srv.key")};
	assert_non_null(gh_http_server_new(ctx, &hc));
	talloc_free(ctx);
}

/* ---- the app: configuration keys reach the server ---- */

static const gh_service_route_t app_routes[] = {
    {"POST", "/v1/t/internal", h_who, .auth = GH_AUTH_MTLS},
    {"GET", "/v1/t/admin", h_who, .auth = GH_AUTH_JWT, .roles = GH_ROLE_PLATFORM_ADMIN},
    {"GET", "/v1/t/open", h_who},
    {NULL},
};
static const gh_service_t app_svc = {.name = "t", .routes = app_routes};

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_app_wires_tls_mtls_and_jwt_from_config(void **state)
{
	void *ctx = talloc_new(NULL);
	uint16_t port = free_port();
	char *y = talloc_asprintf(ctx,
	                          "service:\n  enabled: [numbering]\n"
	                          "http:\n  port: %u\n  threads: 2\n  tls_cert: %s\n"
	                          "  tls_key: %s\n  tls_client_ca: %s\n"
	                          "  client_cn_allowlist: [billing]\n"
	                          "store:\n  url: sqlite://%s/app.db\n",
	                          port, pth("srv.pem"), pth("srv.key"), pth("ca.pem"), g_dir);
	char *env[] = {talloc_asprintf(ctx, "GHASI_AUTH_JWT_HS256_SECRET=%s", SECRET), NULL};
	gh_config_t *cfg = NULL;
	gh_err_t err = {0};
	assert_int_equal(gh_config_load_buf(ctx, "app.yaml", y, strlen(y), env, &cfg, &err), 0);
	gh_app_t *app = NULL;
	const gh_service_t *svcs[] = {&app_svc};
	if (gh_app_open(ctx, cfg, g_clock, svcs, 1, &app, &err) < 0 ||
	    gh_app_mount(app, &app_svc, &err) < 0 || gh_app_start(app, &err) < 0)
		fail_msg("app: %s", err.message);
	assert_int_equal(tls_call(port, "billing", "POST", "/v1/t/internal", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, "intruder", "POST", "/v1/t/internal", NULL, NULL, 0), 403);
	assert_int_equal(tls_call(port, NULL, "POST", "/v1/t/internal", NULL, NULL, 0), 403);
	assert_int_equal(tls_call(port, NULL, "GET", "/v1/t/admin", NULL, NULL, 0), 401);
	assert_int_equal(tls_call(port, NULL, "GET", "/v1/t/admin",
	                          bearer(hs("\"roles\":[\"tenant-admin\"]")), NULL, 0),
	                 403);
	assert_int_equal(tls_call(port, NULL, "GET", "/v1/t/admin",
	                          bearer(hs("\"roles\":[\"platform-admin\"]")), NULL, 0),
	                 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/v1/t/open", NULL, NULL, 0), 200);
	assert_int_equal(tls_call(port, NULL, "GET", "/readyz", NULL, NULL, 0), 200);
	gh_app_shutdown(app);

	/* a secret too short for HS256 stops the app at open, naming the key */
	env[0] = "GHASI_AUTH_JWT_HS256_SECRET=short";
	assert_int_equal(gh_config_load_buf(ctx, "app.yaml", y, strlen(y), env, &cfg, &err), 0);
	assert_int_equal(gh_app_open(ctx, cfg, g_clock, svcs, 1, &app, &err), -EINVAL);
	assert_string_equal(err.field, "/auth/jwt_hs256_secret");
	gh_err_clear(&err);
	talloc_free(ctx);
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
	g_ctx = talloc_new(NULL);
	g_clock = gh_clock_test_new(g_ctx, NOW_S * 1000);
	EVP_PKEY *k = EVP_RSA_gen(2048), *k2 = EVP_RSA_gen(2048), *small = EVP_RSA_gen(1024);
	if (!k || !k2 || !small)
		return -1;
	g_rsa_priv = pem_of(k, 1);
	g_rsa_pub = pem_of(k, 0);
	g_rsa2_priv = pem_of(k2, 1);
	g_small_pub = pem_of(small, 0);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(small);
	g_dir = gh_test_tmpdir();
	make_certs();
	return 0;
}

static int group_teardown(void **state)
{
	gh_test_rmtree(g_dir);
	free(g_dir);
	talloc_free(g_ctx);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hs256_token_gives_its_claims),
	    cmocka_unit_test(test_rs256_token_verifies_with_the_public_key),
	    cmocka_unit_test(test_expiry_with_leeway),
	    cmocka_unit_test(test_not_yet_valid_refused),
	    cmocka_unit_test(test_bad_signature_refused),
	    cmocka_unit_test(test_alg_none_refused),
	    cmocka_unit_test(test_alg_confusion_refused),
	    cmocka_unit_test(test_missing_exp_and_sub_refused),
	    cmocka_unit_test(test_issuer_and_audience),
	    cmocka_unit_test(test_malformed_tokens_refused),
	    cmocka_unit_test(test_roles_parsing),
	    cmocka_unit_test(test_tenant_id_absent_or_present),
	    cmocka_unit_test(test_bearer_header),
	    cmocka_unit_test(test_bad_keys_refused_at_construction),
	    cmocka_unit_test(test_from_config),
	    cmocka_unit_test(test_http_jwt_route_401_403_200),
	    cmocka_unit_test(test_http_embedded_profile_and_auth_disabled),
	    cmocka_unit_test(test_http_jwt_routes_need_a_verifier),
	    cmocka_unit_test(test_mtls_routes),
	    cmocka_unit_test(test_mtls_required_everywhere_but_the_probes),
	    cmocka_unit_test(test_tls_files_checked_at_construction),
	    cmocka_unit_test(test_app_wires_tls_mtls_and_jwt_from_config),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
