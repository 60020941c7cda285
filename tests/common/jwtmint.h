/* jwtmint: bearer tokens for tests that drive a server whose auth section has an HS256 secret
 * (GH_TEST_JWT_SECRET is the one the integration tests configure). */
#ifndef GH_TEST_JWTMINT_H
#define GH_TEST_JWTMINT_H

#include <stdint.h>

#define GH_TEST_JWT_SECRET "integration-test-hs256-secret-0123456789abcdef"

/* A compact HS256 JWT signed with secret: {"sub", "roles": [roles_csv split on ','],
 * "tenant_id" (omitted when NULL), "exp": now + exp_in_s (negative: already expired)}. A
 * talloc string on ctx; fails the test on error. */
char *gh_test_jwt(void *ctx, const char *secret, const char *sub, const char *roles_csv,
                  const char *tenant_id, int64_t exp_in_s);
/* "Authorization: Bearer <token>\r\n" for gh_test_http_request's extra headers. */
char *gh_test_jwt_header(void *ctx, const char *sub, const char *roles_csv, const char *tenant_id);

#endif
