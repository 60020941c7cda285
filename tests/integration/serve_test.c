/* serve: the built `ghasi` binary as an operator runs it. `serve` on a free port with the
 * embedded profile (SQLite + in-process bus) and the scale-out one (PostgreSQL + nats-server):
 * ready once /readyz says so (polled, never a fixed sleep), the operations endpoints, the error
 * envelope of an unknown route, and SIGTERM: a request in flight completes, new requests are
 * refused, the process exits 0 and every line it logged is JSON. Also `migrate` twice,
 * `print-config` masking secrets and the configuration errors that exit 2. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "httpc.h"
#include "testutil.h"

extern char **environ;

static const char *ghasi_bin(void)
{
	const char *b = getenv("GHASI_BIN");
	if (!b || !*b)
		fail_msg("GHASI_BIN is not set (run through meson test)");
	return b;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) { nanosleep(&(struct timespec){0, ms * 1000000L}, NULL); }

/* A port nothing listens on right now (bound then released; the kernel does not hand the same
 * ephemeral port out again at once). */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = '\0';
	fclose(f);
	return s;
}

/* A child process running `ghasi args...` with the caller's environment minus every GHASI_*
 * variable, plus env ("NAME=value" strings, NULL-terminated), stdout and stderr to files. */
typedef struct {
	pid_t pid;
	char out_path[512], err_path[512];
} proc_t;

static void spawn(proc_t *p, const char *dir, const char *tag, const char *const *args,
                  const char *const *env)
{
	snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out", dir, tag);
	snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", dir, tag);
	const char *argv[16];
	size_t n = 0;
	argv[n++] = ghasi_bin();
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	const char **envp = calloc(ne + 16, sizeof(*envp));
	assert_non_null(envp);
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "GHASI_", 6) != 0)
			envp[k++] = environ[i];
	for (size_t i = 0; env && env[i] && i < 15; i++)
		envp[k++] = env[i];
	envp[k] = NULL;

	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		int o = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		/* The cmocka runner may have signals blocked or ignored; serve relies on them. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		execve(argv[0], (char *const *)argv, (char *const *)envp);
		_exit(127);
	}
	free(envp);
}

/* A failing assertion leaves the test function at once: the teardown then kills the serve
 * child still running and removes the stream it made. */
static pid_t g_child; /* its pid (the proc_t lives on the failed test's stack) */
static char g_stream[64];

/* The exit status once the child exited within timeout_ms; -1 if it is still running. */
static int wait_exit(proc_t *p, long timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		int st;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid) {
			if (p->pid == g_child)
				g_child = 0;
			p->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		assert_int_equal(r, 0);
		if (now_ms() >= deadline)
			return -1;
		sleep_ms(10);
	}
}

static void kill_child(proc_t *p)
{
	if (p->pid > 0) {
		if (p->pid == g_child)
			g_child = 0;
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}

/* Run ghasi to completion (30 s at most); returns its exit status, output in out/err. */
static int run(const char *dir, const char *tag, const char *const *args, const char *const *env,
               char **out, char **err)
{
	proc_t p;
	spawn(&p, dir, tag, args, env);
	int st = wait_exit(&p, 30000);
	if (st < 0) {
		kill_child(&p);
		fail_msg("ghasi %s did not exit within 30 s", args[0]);
	}
	*out = read_file(p.out_path);
	*err = read_file(p.err_path);
	return st;
}

/* Every line the process logged must be one JSON object with ts, level and msg; returns the
 * number of lines. */
static size_t check_json_lines(const char *text)
{
	size_t n = 0;
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_error_t je;
		json_t *j = json_loadb(p, len, 0, &je);
		if (!j || !json_is_object(j))
			fail_msg("log line %zu is not a JSON object (%s): %.*s", n + 1,
			         j ? "not an object" : je.text, (int)len, p);
		assert_true(json_is_string(json_object_get(j, "ts")));
		assert_true(json_is_string(json_object_get(j, "level")));
		assert_true(json_is_string(json_object_get(j, "msg")));
		json_decref(j);
		n++;
		p += len + (nl ? 1 : 0);
	}
	return n;
}

/* Poll /readyz until 200 (the child must stay alive meanwhile); 30 s at most. */
static void wait_ready(proc_t *p, uint16_t port, gh_test_http_resp_t *r)
{
	int64_t deadline = now_ms() + 30000;
	for (;;) {
		if (wait_exit(p, 0) >= 0)
			fail_msg("ghasi serve exited before it was ready; see %s", p->err_path);
		int fd = gh_test_http_connect(port);
		if (fd >= 0) {
			close(fd);
			gh_test_http_request(port, "GET", "/readyz", NULL, NULL, r);
			if (r->status == 200)
				return;
		}
		if (now_ms() >= deadline) {
			kill_child(p);
			fail_msg("/readyz not 200 within 30 s (last status %d)", r->status);
		}
		sleep_ms(20);
	}
}

static void check_endpoints(uint16_t port, const gh_test_http_resp_t *ready)
{
	/* /readyz lists each dependency it asked, all "ok". */
	json_t *j = json_loads(ready->body, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_t *checks = json_object_get(j, "checks");
	assert_string_equal(json_string_value(json_object_get(checks, "store")), "ok");
	assert_string_equal(json_string_value(json_object_get(checks, "bus")), "ok");
	json_decref(j);

	gh_test_http_resp_t *r = malloc(sizeof(*r));
	assert_non_null(r);
	gh_test_http_request(port, "GET", "/healthz", NULL, NULL, r);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "{\"status\":\"ok\"}");

	/* Unknown route: the conventions' envelope, carrying the request id it was sent with. */
	char v[128];
	gh_test_http_request(port, "GET", "/v1/no/such/thing", "X-Request-Id: serve-test-404\r\n",
	                     NULL, r);
	assert_int_equal(r->status, 404);
	assert_non_null(gh_test_http_header(r, "X-Request-Id", v, sizeof(v)));
	assert_string_equal(v, "serve-test-404");
	j = json_loads(r->body, 0, NULL);
	assert_non_null(j);
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "code")), "NOT_FOUND");
	assert_string_equal(json_string_value(json_object_get(e, "request_id")), "serve-test-404");
	json_decref(j);
	/* Without one, the server makes one up and still returns it. */
	gh_test_http_request(port, "DELETE", "/nope", NULL, NULL, r);
	assert_int_equal(r->status, 404);
	assert_non_null(gh_test_http_header(r, "X-Request-Id", v, sizeof(v)));
	assert_int_equal(strlen(v), 36);

	gh_test_http_request(port, "GET", "/metrics", NULL, NULL, r);
	assert_int_equal(r->status, 200);
	assert_non_null(strstr(r->body, "# TYPE ghasi_http_requests_total counter"));
	/* Labels are rendered sorted by name. */
	assert_non_null(strstr(r->body, "ghasi_http_requests_total{code=\"200\",method=\"GET\","
	                                "route=\"/healthz\"} 1\n"));
	assert_non_null(strstr(r->body, "ghasi_http_requests_total{code=\"404\",method=\"DELETE\","
	                                "route=\"unmatched\"} 1\n"));
	free(r);
}

/* SIGTERM while a request is in flight. The request to /healthz carries a body sent in two
 * halves; "Expect: 100-continue" makes the server say when it has taken the request (the
 * handler callback ran and counted it in flight), so the signal lands while the request is
 * provably open. Then: the listening socket closes (new connections refused), a new request on
 * a kept-alive connection gets 503 + Connection: close, the process waits for the open request,
 * which completes with 200 once its body arrives, and only then exits 0. */
static void check_sigterm_drain(proc_t *p, uint16_t port)
{
	gh_test_http_resp_t *r = malloc(sizeof(*r));
	assert_non_null(r);
	gh_test_http_conn_t *idle = gh_test_http_open(port);
	gh_test_http_exchange(idle, "GET", "/healthz", NULL, NULL, r);
	assert_int_equal(r->status, 200);

	gh_test_http_conn_t *c = gh_test_http_open(port);
	static const char head[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n"
	                           "Expect: 100-continue\r\nContent-Length: 8\r\n\r\n";
	gh_test_http_send(c, head, strlen(head));
	assert_int_equal(gh_test_http_read(c, r), 0);
	assert_int_equal(r->status, 100);
	gh_test_http_send(c, "1234", 4);

	assert_int_equal(kill(p->pid, SIGTERM), 0);
	int64_t deadline = now_ms() + 10000;
	int fd;
	while ((fd = gh_test_http_connect(port)) >= 0) {
		close(fd);
		if (now_ms() >= deadline) {
			kill_child(p);
			fail_msg("still accepting connections 10 s after SIGTERM");
		}
		sleep_ms(10);
	}
	/* Draining, and held open by the unfinished request: a server that did not wait for it
	 * would be gone by now (the pause gives it the time to exit, it synchronises nothing). */
	sleep_ms(200);
	assert_int_equal(wait_exit(p, 0), -1);

	char v[64];
	gh_test_http_exchange(idle, "GET", "/healthz", NULL, NULL, r);
	assert_int_equal(r->status, 503);
	assert_non_null(strstr(r->body, "\"UNAVAILABLE\""));
	assert_non_null(gh_test_http_header(r, "Connection", v, sizeof(v)));
	assert_string_equal(v, "close");
	assert_true(gh_test_http_closed_by_peer(idle));
	gh_test_http_close(idle);
	assert_int_equal(wait_exit(p, 0), -1);

	gh_test_http_send(c, "5678", 4);
	assert_int_equal(gh_test_http_read(c, r), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "{\"status\":\"ok\"}");
	assert_non_null(gh_test_http_header(r, "Connection", v, sizeof(v)));
	assert_string_equal(v, "close");
	gh_test_http_close(c);
	free(r);

	int st = wait_exit(p, 5000);
	if (st < 0) {
		kill_child(p);
		fail_msg("ghasi serve still running 5 s after its last request");
	}
	assert_int_equal(st, 0);
}

static void serve_case(const char *store_url, const char *bus_url, const char *stream)
{
	char *dir = gh_test_tmpdir();
	assert_non_null(dir);
	uint16_t port = free_port();
	char e_port[64], e_store[512], e_bus[512], e_stream[128];
	snprintf(e_port, sizeof(e_port), "GHASI_HTTP_PORT=%u", port);
	snprintf(e_store, sizeof(e_store), "GHASI_STORE_URL=%s", store_url);
	snprintf(e_bus, sizeof(e_bus), "GHASI_BUS_URL=%s", bus_url);
	snprintf(e_stream, sizeof(e_stream), "GHASI_BUS_STREAM=%s", stream ? stream : "ghasi");
	const char *env[] = {
	    e_port, e_store, e_bus, e_stream, "GHASI_LOG_LEVEL=debug", "GHASI_HTTP_THREADS=2",
	    NULL};
	const char *args[] = {"serve", NULL};
	proc_t p;
	spawn(&p, dir, "serve", args, env);
	g_child = p.pid;

	gh_test_http_resp_t *r = malloc(sizeof(*r));
	assert_non_null(r);
	wait_ready(&p, port, r);
	check_endpoints(port, r);
	free(r);
	check_sigterm_drain(&p, port);
	g_child = 0;

	char *log = read_file(p.err_path);
	size_t lines = check_json_lines(log);
	assert_true(lines >= 5);
	/* The overrides took effect, the debug request log ran, and the drain finished cleanly. */
	char want[64];
	snprintf(want, sizeof(want), "\"port\":\"%u\"", port);
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(log, stream ? "\"bus\":\"nats\"" : "\"bus\":\"inproc\""));
	assert_non_null(strstr(log, "\"msg\":\"http request\""));
	assert_non_null(strstr(log, "\"msg\":\"signal received: draining\""));
	assert_null(strstr(log, "drain grace over"));
	free(log);
	gh_test_rmtree(dir);
	free(dir);
}

static void test_serve_embedded_sqlite_inproc(void **state)
{
	char *dir = gh_test_tmpdir();
	char *url = gh_test_store_url(GH_TEST_SQLITE, dir);
	assert_non_null(url);
	serve_case(url, "inproc://", NULL);
	free(url);
	gh_test_rmtree(dir);
	free(dir);
}

static void test_serve_scale_out_pg_nats(void **state)
{
	const char *nats = gh_test_nats_url();
	GH_TEST_NEED(nats);
	char *dir = gh_test_tmpdir();
	char *url = gh_test_store_url(GH_TEST_PG, dir);
	GH_TEST_NEED(url);
	/* A stream of our own (subjects "*.*.*"), removed again so it never overlaps another
	 * test's stream on the shared server. */
	snprintf(g_stream, sizeof(g_stream), "SERVETEST_%d", (int)getpid());
	gh_test_nats_delete_stream(nats, g_stream);
	serve_case(url, nats, g_stream);
	free(url);
	gh_test_rmtree(dir);
	free(dir);
}

static void migrate_twice(gh_test_backend_t b)
{
	char *dir = gh_test_tmpdir();
	char *url = gh_test_store_url(b, dir);
	GH_TEST_NEED(url);
	char e_store[512];
	snprintf(e_store, sizeof(e_store), "GHASI_STORE_URL=%s", url);
	const char *env[] = {e_store, NULL};
	const char *args[] = {"migrate", NULL};
	char *out, *err;

	assert_int_equal(run(dir, "migrate1", args, env, &out, &err), 0);
	assert_string_equal(out, "migrations applied\n");
	check_json_lines(err);
	assert_non_null(strstr(err, "\"msg\":\"migrate: applied\""));
	free(out);
	free(err);

	assert_int_equal(run(dir, "migrate2", args, env, &out, &err), 0);
	assert_string_equal(out, "migrations applied\n");
	check_json_lines(err);
	assert_null(strstr(err, "migrate: applied"));
	free(out);
	free(err);
	free(url);
	gh_test_rmtree(dir);
	free(dir);
}

static void test_migrate_twice_is_noop_sqlite(void **state) { migrate_twice(GH_TEST_SQLITE); }
static void test_migrate_twice_is_noop_pg(void **state) { migrate_twice(GH_TEST_PG); }

static void test_print_config_masks_secrets(void **state)
{
	char *dir = gh_test_tmpdir();
	const char *env[] = {"GHASI_AUTH_JWT_HS256_SECRET=s3cret", "GHASI_HTTP_PORT=9191", NULL};
	const char *args[] = {"print-config", NULL};
	char *out, *err;
	assert_int_equal(run(dir, "print", args, env, &out, &err), 0);
	assert_null(strstr(out, "s3cret"));
	assert_null(strstr(err, "s3cret"));
	assert_non_null(strstr(out, "jwt_hs256_secret"));
	assert_non_null(strstr(out, "9191")); /* the overrides are what is printed */
	free(out);
	free(err);
	gh_test_rmtree(dir);
	free(dir);
}

static void test_config_unknown_key_exits_2(void **state)
{
	char *dir = gh_test_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/bad.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("http:\n  port: 8080\nstore:\n  pool_size: 4\n  poolsize: 8\n", f);
	fclose(f);
	const char *args[] = {"--config", path, "serve", NULL};
	char *out, *err;
	assert_int_equal(run(dir, "unknown", args, NULL, &out, &err), 2);
	assert_non_null(strstr(err, "poolsize"));
	char where[600];
	snprintf(where, sizeof(where), "%s:5", path);
	assert_non_null(strstr(err, where));
	free(out);
	free(err);
	gh_test_rmtree(dir);
	free(dir);
}

static void test_bad_env_override_exits_2(void **state)
{
	char *dir = gh_test_tmpdir();
	const char *env[] = {"GHASI_HTTP_PORT=70000", NULL};
	const char *args[] = {"serve", NULL};
	char *out, *err;
	assert_int_equal(run(dir, "badenv", args, env, &out, &err), 2);
	assert_non_null(strstr(err, "GHASI_HTTP_PORT"));
	assert_non_null(strstr(err, "70000"));
	free(out);
	free(err);
	gh_test_rmtree(dir);
	free(dir);
}

static int teardown(void **state)
{
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		waitpid(g_child, NULL, 0);
	}
	g_child = 0;
	if (g_stream[0])
		gh_test_nats_delete_stream(gh_test_nats_url(), g_stream);
	g_stream[0] = '\0';
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_serve_embedded_sqlite_inproc, teardown),
	    cmocka_unit_test_teardown(test_serve_scale_out_pg_nats, teardown),
	    cmocka_unit_test(test_migrate_twice_is_noop_sqlite),
	    cmocka_unit_test(test_migrate_twice_is_noop_pg),
	    cmocka_unit_test(test_print_config_masks_secrets),
	    cmocka_unit_test(test_config_unknown_key_exits_2),
	    cmocka_unit_test(test_bad_env_override_exits_2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
