#include "ghasiproc.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "testutil.h"

uint16_t gh_test_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

int gh_test_http_status(uint16_t port, const char *path)
{
	int fd = gh_test_http_connect(port);
	if (fd < 0)
		return -1;
	close(fd);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	assert_non_null(r);
	gh_test_http_request(port, "GET", path, NULL, NULL, r);
	int st = r->status;
	free(r);
	return st;
}

int64_t gh_test_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the child: the environment, the log as stdout/stderr, exec. Never returns. */
static void child(const gh_test_ghasi_t *s, const char *bin, const char *const *env,
                  const char *const *extra)
{
	char port[16];
	snprintf(port, sizeof port, "%u", s->port);
	setenv("GHASI_HTTP_PORT", port, 1);
	setenv("GHASI_SERVICE_ENABLED", "numbering", 1);
	setenv("GHASI_BUS_URL", "inproc://", 1);
	setenv("GHASI_HTTP_DRAIN_GRACE_MS", "2000", 1);
	setenv("GHASI_LOG_LEVEL", getenv("NUM_TEST_KEEP") ? "debug" : "warn", 1);
	for (const char *const *e = env; e && *e; e++)
		putenv((char *)*e);
	for (const char *const *e = extra; e && *e; e++)
		putenv((char *)*e);
	int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execl(bin, bin, "serve", (char *)NULL);
	_exit(127);
}

void gh_test_ghasi_start(gh_test_ghasi_t *s, const char *dir, const char *const *env,
                         const char *const *extra)
{
	const char *bin = getenv("GHASI_BIN");
	assert_non_null(bin);
	s->port = gh_test_free_port();
	snprintf(s->log, sizeof s->log, "%s/ghasi-%u.log", dir, s->port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child(s, bin, env, extra);
	s->pid = pid;
	for (int i = 0; i < 600; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			fail_msg("ghasi exited at start (status %d); log %s", st, s->log);
		}
		int code =
		    s->probe ? s->probe(s, s->probe_ud) : gh_test_http_status(s->port, "/readyz");
		if (code == 200)
			return;
		usleep(50 * 1000);
	}
	gh_test_ghasi_stop(s);
	fail_msg("ghasi not ready within 30 s; log %s", s->log);
}

void gh_test_ghasi_stop(gh_test_ghasi_t *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	int st;
	for (int i = 0; i < 200; i++) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return;
		}
		usleep(50 * 1000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
}
