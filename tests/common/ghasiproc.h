/* ghasiproc: a `ghasi serve` child process ($GHASI_BIN) for the integration tests that drive the
 * real binary: start it with an environment, wait until /readyz answers 200, stop it with SIGTERM
 * (SIGKILL after 10 s). */
#ifndef GH_TEST_GHASIPROC_H
#define GH_TEST_GHASIPROC_H

#include <stdint.h>
#include <sys/types.h>

typedef struct gh_test_ghasi_s gh_test_ghasi_t;
struct gh_test_ghasi_s {
	pid_t pid; /* 0 when not running */
	uint16_t port;
	char log[512]; /* the child's stdout and stderr */
	/* Optional, set before start: the status of GET /readyz (e.g. over HTTPS), -1 when the
	 * server does not answer yet. NULL: plain HTTP. */
	int (*probe)(const gh_test_ghasi_t *s, void *ud);
	void *probe_ud;
};

/* A TCP port on 127.0.0.1 that was free a moment ago. */
uint16_t gh_test_free_port(void);
/* The status of a plain HTTP GET of path, -1 when nothing listens on port. */
int gh_test_http_status(uint16_t port, const char *path);
/* CLOCK_REALTIME in milliseconds (gh_test_now_ms is monotonic). */
int64_t gh_test_wall_ms(void);

/* Start `ghasi serve` on a free port with its log in dir/ghasi-<port>.log. The child gets
 * GHASI_HTTP_PORT, GHASI_SERVICE_ENABLED=numbering, GHASI_BUS_URL=inproc://,
 * GHASI_HTTP_DRAIN_GRACE_MS=2000 and GHASI_LOG_LEVEL (debug under NUM_TEST_KEEP, else warn), then
 * the "K=V" entries of env and of extra in order (each NULL-terminated, may be NULL), which
 * override. Fails the test when the child exits or is not ready within 30 s. */
void gh_test_ghasi_start(gh_test_ghasi_t *s, const char *dir, const char *const *env,
                         const char *const *extra);
/* SIGTERM and wait up to 10 s, then SIGKILL; no-op when not running. */
void gh_test_ghasi_stop(gh_test_ghasi_t *s);

#endif
