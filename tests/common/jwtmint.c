/* jwtmint: HS256 tokens made with OpenSSL's HMAC (not libjwt, so that the server's verifier
 * is not checked against itself). See jwtmint.h. */
#include "jwtmint.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "testutil.h"

static char *b64url(void *ctx, const unsigned char *in, size_t n)
{
	char *out = talloc_array(ctx, char, 4 * ((n + 2) / 3) + 1);
	assert_non_null(out);
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return out;
}

char *gh_test_jwt(void *ctx, const char *secret, const char *sub, const char *roles_csv,
                  const char *tenant_id, int64_t exp_in_s)
{
	json_t *roles = json_array();
	for (const char *s = roles_csv; s && *s;) {
		size_t n = strcspn(s, ",");
		if (n)
			json_array_append_new(roles, json_stringn(s, n));
		s += n + (s[n] == ',');
	}
	json_t *claims = json_pack("{s:s, s:o, s:I}", "sub", sub, "roles", roles, "exp",
	                           (json_int_t)(time(NULL) + exp_in_s));
	assert_non_null(claims);
	if (tenant_id)
		json_object_set_new(claims, "tenant_id", json_string(tenant_id));
	char *payload = json_dumps(claims, JSON_COMPACT);
	json_decref(claims);
	assert_non_null(payload);
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char *in = talloc_asprintf(ctx, "%s.%s",
	                           b64url(ctx, (const unsigned char *)header, strlen(header)),
	                           b64url(ctx, (const unsigned char *)payload, strlen(payload)));
	free(payload);
	unsigned char mac[32];
	unsigned mlen = 0;
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)in,
	                     strlen(in), mac, &mlen));
	char *tok = talloc_asprintf(ctx, "%s.%s", in, b64url(ctx, mac, mlen));
	assert_non_null(tok);
	return tok;
}

char *gh_test_jwt_header(void *ctx, const char *sub, const char *roles_csv, const char *tenant_id)
{
	return talloc_asprintf(
	    ctx, "Authorization: Bearer %s\r\n",
	    gh_test_jwt(ctx, GH_TEST_JWT_SECRET, sub, roles_csv, tenant_id, 3600));
}
