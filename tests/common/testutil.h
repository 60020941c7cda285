/* testutil: helpers shared by the tests. */
#ifndef GH_TESTUTIL_H
#define GH_TESTUTIL_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* URL of the test PostgreSQL / nats-server exported by scripts/testenv.sh, or NULL. When it is
 * missing and GH_TEST_REQUIRE=1 (as `make test` sets) the test fails; otherwise it is skipped. */
const char *gh_test_pg_url(void);
const char *gh_test_nats_url(void);
/* Skip (or fail under GH_TEST_REQUIRE) the current test when url is NULL. */
#define GH_TEST_NEED(url)                                                                        \
	do {                                                                                     \
		if (!(url)) {                                                                    \
			if (gh_test_required())                                                  \
				fail_msg("test service missing (run under scripts/testenv.sh)"); \
			skip();                                                                  \
		}                                                                                \
	} while (0)
int gh_test_required(void);

/* Delete a JetStream stream (tests clean up after themselves: streams with overlapping subjects
 * cannot coexist on one server). Errors are ignored. */
void gh_test_nats_delete_stream(const char *url, const char *stream);

/* Milliseconds on CLOCK_MONOTONIC, for deadlines and elapsed times. */
int64_t gh_test_now_ms(void);

/* A fresh temp dir (mkdtemp under $TMPDIR or /tmp); caller frees with gh_test_rmtree. */
char *gh_test_tmpdir(void);
void gh_test_rmtree(const char *path);

/* Storage backends a storage test runs on: "sqlite://<tmp>/test.db" always and the PostgreSQL
 * URL when present. Each PostgreSQL use gets a fresh schema-less database, so tests do not see
 * each other's tables. Returns a malloc'd URL, or NULL when the backend is unavailable
 * (after GH_TEST_NEED semantics: fails under GH_TEST_REQUIRE). */
typedef enum { GH_TEST_SQLITE, GH_TEST_PG } gh_test_backend_t;
char *gh_test_store_url(gh_test_backend_t b, const char *tmpdir);

#endif
