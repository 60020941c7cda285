/* bench_http: HTTP overhead of the core server (src/core/http.c on libmicrohttpd), measured with
 * wrk (Debian package) as the load generator, as the foundation issue asks: a trivial route
 * with wrk -t1 -c32 and the server on one core (target >= 100k req/s, p99 <= 1 ms).
 * bench.sh: quiet
 *
 * The process pins itself to CPU 0 and starts a gh_http server with one handler thread on an
 * ephemeral port; wrk runs under `taskset -c 1` (its own core) for each route in turn:
 *   trivial  GET /bench/ping: replies {"ok":true}; what every request pays (routing, request
 *            id, metrics, reply, keep-alive).
 *   json     POST /bench/lease: parses a ~200-byte JSON body and checks it against a field
 *            table with a nested object and an array (json.h), then replies from its fields;
 *            what a typical small API call adds on top.
 * Any non-2xx answer or socket error reported by wrk fails the run (an error path must never
 * be what is measured). Besides wrk's figures it reports, from the kernel's per-thread schedstat,
 * the server's CPU time per request (what one dedicated core could serve: 1e6 / that) and the
 * share of the run the server was runnable but waiting for CPU 0 (other load on the machine;
 * high values explain a poor p99). Prints one line:
 *   bench_http route=trivial threads=1 conns=32 req_per_s=N p50_us=N p99_us=N
 *              cpu_us_per_req=N runq_wait_pct=N json_req_per_s=N json_p50_us=N
 *              json_p99_us=N json_cpu_us_per_req=N json_runq_wait_pct=N
 * Options: -d SECONDS per route (10), -c CONNECTIONS (32). */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

#include "benchutil.h"

typedef struct {
	double req_per_s;
	double p50_us, p99_us;
	double cpu_us_per_req; /* server CPU time per request */
	double runq_wait_pct;  /* share of the run the server was runnable but not running */
} wrk_result_t;

/* CPU time and run-queue wait (ns) summed over this process's threads, from
 * /proc/self/task/N/schedstat ("run_ns wait_ns timeslices"). wrk is another process and does
 * not count. The wait is how much other work on CPU 0 took from the server. */
static void sched_totals(uint64_t *run_ns, uint64_t *wait_ns)
{
	*run_ns = *wait_ns = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
		FILE *f = fopen(path, "r");
		unsigned long long r, w;
		if (f && fscanf(f, "%llu %llu", &r, &w) == 2) {
			*run_ns += r;
			*wait_ns += w;
		}
		if (f)
			fclose(f);
	}
	closedir(d);
}

static int h_ping(gh_http_req_t *req, void *ud)
{
	return gh_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* A lease-validation-shaped body: what the numbering hot path will take. */
static const gh_json_field_t route_fields[] = {
    {"operator", GH_JSON_STRING, 1},
    {"mccmnc", GH_JSON_STRING, 0},
    {NULL},
};
static const gh_json_field_t lease_fields[] = {
    {"sender", GH_JSON_STRING, 1},
    {"msisdn", GH_JSON_STRING, 1},
    {"tenant", GH_JSON_STRING, 1},
    {"ttl_s", GH_JSON_INTEGER, 0},
    {"tags", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"route", GH_JSON_OBJECT, 0, 1, GH_JSON_ANY, route_fields},
    {NULL},
};

#define LEASE_BODY                                                                \
	"{\"sender\":\"ACME\",\"msisdn\":\"+93701234567\",\"tenant\":\"t-0001\"," \
	"\"ttl_s\":300,\"tags\":[\"otp\",\"priority\"],"                          \
	"\"route\":{\"operator\":\"AWCC\",\"mccmnc\":\"41201\"}}"

static int h_lease(gh_http_req_t *req, void *ud)
{
	json_t *b;
	if (gh_http_json_body(req, lease_fields, &b) < 0)
		return -EINVAL;
	return gh_http_reply_json(req, 200,
	                          json_pack("{s:b, s:s, s:I}", "valid", 1, "sender",
	                                    gh_json_get_str(b, "sender", ""), "ttl_s",
	                                    (json_int_t)gh_json_get_int(b, "ttl_s", 0)));
}

/* "123.45us", "1.20ms", "2.00s" -> microseconds; -1 when unparseable. */
static double parse_duration_us(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s)
		return -1;
	if (strncmp(end, "us", 2) == 0)
		return v;
	if (strncmp(end, "ms", 2) == 0)
		return v * 1e3;
	if (*end == 's')
		return v * 1e6;
	if (strncmp(end, "m", 1) == 0)
		return v * 60e6;
	return -1;
}

/* Parse wrk --latency output. Returns 0, or -1 (with the reason on stderr) when a figure is
 * missing or wrk saw errors. */
static int parse_wrk(const char *out, wrk_result_t *r)
{
	const char *p;
	r->req_per_s = r->p50_us = r->p99_us = -1;
	if ((p = strstr(out, "Non-2xx or 3xx responses:"))) {
		fprintf(stderr, "bench_http: wrk got error responses: %.60s\n", p);
		return -1;
	}
	if ((p = strstr(out, "Socket errors:"))) {
		fprintf(stderr, "bench_http: wrk socket errors: %.80s\n", p);
		return -1;
	}
	if ((p = strstr(out, "Requests/sec:")))
		r->req_per_s = strtod(p + strlen("Requests/sec:"), NULL);
	/* The "Latency Distribution" block: lines "     50%  123.00us". */
	if ((p = strstr(out, "Latency Distribution"))) {
		const char *q;
		if ((q = strstr(p, " 50% ")))
			r->p50_us = parse_duration_us(q + 5 + strspn(q + 5, " "));
		if ((q = strstr(p, " 99% ")))
			r->p99_us = parse_duration_us(q + 5 + strspn(q + 5, " "));
	}
	if (r->req_per_s <= 0 || r->p50_us < 0 || r->p99_us < 0) {
		fprintf(stderr, "bench_http: cannot read wrk output:\n%s\n", out);
		return -1;
	}
	return 0;
}

/* Run wrk (on CPU 1 when there is one) against url and parse its report. */
static int run_wrk(const char *url, const char *script, int secs, int conns, wrk_result_t *r)
{
	char d[16], c[16];
	snprintf(d, sizeof(d), "%ds", secs);
	snprintf(c, sizeof(c), "%d", conns);
	const char *argv[16];
	int n = 0;
	if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
		argv[n++] = "taskset";
		argv[n++] = "-c";
		argv[n++] = "1";
	}
	argv[n++] = "wrk";
	argv[n++] = "-t1";
	argv[n++] = "-c";
	argv[n++] = c;
	argv[n++] = "-d";
	argv[n++] = d;
	argv[n++] = "--latency";
	if (script) {
		argv[n++] = "-s";
		argv[n++] = script;
	}
	argv[n++] = url;
	argv[n] = NULL;

	int pfd[2];
	if (pipe(pfd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "bench_http: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	uint64_t run0, wait0, run1, wait1;
	sched_totals(&run0, &wait0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char out[8192];
	size_t len = 0;
	ssize_t k;
	while ((k = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0 ||
	       (k < 0 && errno == EINTR))
		if (k > 0)
			len += (size_t)k;
	out[len] = '\0';
	close(pfd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	sched_totals(&run1, &wait1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall_ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_http: wrk failed (status %d):\n%s\n", st, out);
		return -1;
	}
	if (parse_wrk(out, r) < 0)
		return -1;
	r->cpu_us_per_req = (double)(run1 - run0) / 1e3 / (r->req_per_s * secs);
	r->runq_wait_pct = 100.0 * (double)(wait1 - wait0) / wall_ns;
	return 0;
}

/* wrk sends a POST body only through a Lua script; written to a temp file. */
static char *write_post_script(void *ctx)
{
	char *path = talloc_strdup(ctx, "/tmp/bench_http_XXXXXX.lua");
	int fd = mkstemps(path, 4);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return NULL;
	}
	fprintf(f,
	        "wrk.method = \"POST\"\n"
	        "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
	        "wrk.body = '%s'\n",
	        LEASE_BODY);
	if (fclose(f) != 0)
		return NULL;
	return path;
}

int main(int argc, char **argv)
{
	int secs = 10, conns = 32, opt;
	while ((opt = getopt(argc, argv, "d:c:")) != -1) {
		if (opt == 'd')
			secs = atoi(optarg);
		else if (opt == 'c')
			conns = atoi(optarg);
		else {
			fprintf(stderr, "usage: bench_http [-d SECONDS] [-c CONNECTIONS]\n");
			return 2;
		}
	}
	if (secs < 1 || conns < 1) {
		fprintf(stderr, "bench_http: -d and -c must be positive\n");
		return 2;
	}
	gh_log_init("bench_http", GH_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);

	/* The server on CPU 0: set before the server thread exists, so it inherits it. wrk's
	 * taskset moves it to CPU 1. */
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) < 0)
		fprintf(stderr, "bench_http: cannot pin to CPU 0: %s\n", strerror(errno));

	void *root = talloc_new(NULL);
	int rc = 1;
	gh_http_config_t hc = {.port = 0, .threads = 1};
	gh_http_server_t *srv = gh_http_server_new(root, &hc);
	char *script = write_post_script(root);
	if (!srv || !script || gh_http_route(srv, "GET", "/bench/ping", h_ping, NULL) < 0 ||
	    gh_http_route(srv, "POST", "/bench/lease", h_lease, NULL) < 0 ||
	    gh_http_server_start(srv) < 0) {
		fprintf(stderr, "bench_http: cannot start the server\n");
		goto out;
	}
	char url[128];
	wrk_result_t trivial, js;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/bench/ping", gh_http_server_port(srv));
	if (run_wrk(url, NULL, secs, conns, &trivial) < 0)
		goto out;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/bench/lease", gh_http_server_port(srv));
	if (run_wrk(url, script, secs, conns, &js) < 0)
		goto out;
	bench_report(
	    "bench_http",
	    "route=trivial threads=1 conns=%d req_per_s=%.0f p50_us=%.0f "
	    "p99_us=%.0f cpu_us_per_req=%.2f runq_wait_pct=%.1f json_req_per_s=%.0f "
	    "json_p50_us=%.0f json_p99_us=%.0f json_cpu_us_per_req=%.2f json_runq_wait_pct=%.1f",
	    conns, trivial.req_per_s, trivial.p50_us, trivial.p99_us, trivial.cpu_us_per_req,
	    trivial.runq_wait_pct, js.req_per_s, js.p50_us, js.p99_us, js.cpu_us_per_req,
	    js.runq_wait_pct);
	rc = 0;
out:
	if (script)
		unlink(script);
	talloc_free(root);
	return rc;
}
