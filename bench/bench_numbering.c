/* bench_numbering: the numbering service end to end (issue 3, "Proof", bench/).
 *
 *   bench_numbering [numbers [parts]]   numbers default 1000000; parts a comma list of
 *                                       inproc,http,mix,keyed (default inproc,http,mix)
 * bench.sh: taskset -c 0
 * bench.sh: quiet 1000000 inproc,http
 * bench.sh: env 1000000 mix,keyed
 *
 * Prints one line per figure:
 *   part=validate_inproc numbers=N lookups_per_s=...
 *       num_svc_validate (identifier string normalised, tenant id string resolved, index
 *       decision, hit counter, anomaly check) on one thread, N assigned MSISDNs loaded, random
 *       hits.
 *   part=index_load numbers=N mem_load_ms=... sqlite_load_ms=... bytes_per_number=...
 *       N rows loaded from memory (num_index_load) and from SQLite (num_repo_load_index).
 *   part=http_validate rps=... p50_ms=... p99_ms=...
 *       `ghasi serve` (SQLite, demo seed) pinned to CPU 1 with one handler thread
 *       (BENCH_HTTP_THREADS), `wrk -t1 -c32` on CPU 0 against GET
 *       /v1/numbering/validate-lease of an assigned number, 8 s measured after a 2 s warm-up
 *       (skipped without wrk/taskset).
 *   part=lifecycle store=sqlite|pg ops_per_s=... ops=... errors=... idempotency_keys=no|yes
 *       reserve, assign, release over HTTP from 8 keep-alive clients on distinct numbers of one
 *       tenant; "keyed" sends each request with its own Idempotency-Key (pg: a fresh database
 *       on GH_TEST_PG_ADMIN_URL, and GH_TEST_NATS_URL, as scripts/bench.sh exports). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "numbering/service.h"

#define TENANTS 100

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ---- (a) in-process validate, (d) index load -------------------------------------------- */

static int bench_inproc(long n)
{
	void *ctx = talloc_new(NULL);
	const int64_t now = (int64_t)time(NULL) * 1000;
	num_index_entry_t *in = talloc_array(ctx, num_index_entry_t, (size_t)n);
	typedef char ident16_t[16];
	ident16_t *idents = talloc_array(ctx, ident16_t, (size_t)n);
	uint32_t *holder = talloc_array(ctx, uint32_t, (size_t)n);
	char tenants[TENANTS][40];
	if (!in || !idents || !holder)
		return 1;
	const uint64_t span = 100000000ULL / (uint64_t)n;
	for (long i = 0; i < n; i++) {
		uint64_t digits = 93700000000ULL + (uint64_t)i * span + rnd() % span;
		memset(&in[i], 0, sizeof in[i]);
		in[i].key = (1ULL << 62) | digits;
		in[i].version = 1;
		in[i].lease_ends_at_ms = now + 30LL * 86400 * 1000;
		in[i].lease_id[0] = 1;
		in[i].state = NUM_ST_ASSIGNED;
		in[i].lease_status = NUM_LEASE_ACTIVE;
		snprintf(idents[i], 16, "+%" PRIu64, digits);
	}
	for (int t = 0; t < TENANTS; t++)
		snprintf(tenants[t], sizeof tenants[t], "7c2dfc3d-c7de-4573-8000-%012d", t);

	double t0 = now_s();
	num_index_t *ix;
	if (num_index_new(ctx, (size_t)n, 4096, &ix) < 0)
		return 1;
	uint32_t tidx[TENANTS];
	for (int t = 0; t < TENANTS; t++)
		if (num_index_tenant_intern(ix, tenants[t], &tidx[t]) < 0 ||
		    num_index_tenant_set_status(ix, tidx[t], NUM_POOL_ACTIVE) < 0)
			return 1;
	for (long i = 0; i < n; i++) {
		holder[i] = (uint32_t)(rnd() % TENANTS);
		in[i].tenant = tidx[holder[i]];
	}
	size_t done;
	if (num_index_load(ix, in, (size_t)n, &done) < 0)
		return 1;
	double mem_load_ms = (now_s() - t0) * 1000;
	num_index_touch(ix, now);
	num_index_set_complete(ix, true);

	/* as `ghasi serve` has it: hit/miss counters in a registry, the anomaly counters */
	num_svc_t *s;
	gh_metrics_t *metrics = gh_metrics_new(ctx);
	if (!metrics || num_svc_new(ctx, ix, NULL, NULL, metrics, NULL, &s) < 0 ||
	    num_anomaly_init(s) < 0)
		return 1;
	/* Requests prepared in advance and read sequentially (a handler has its request in cache
	 * already); the index is hit at random. */
	typedef struct {
		char ident[16];
		size_t len;
		const char *tenant;
	} pick_t;
	const long batch = 1 << 20, looks = 10000000;
	pick_t *pick = talloc_array(ctx, pick_t, (size_t)batch);
	if (!pick)
		return 1;
	for (long i = 0; i < batch; i++) {
		uint32_t q = (uint32_t)(rnd() % (uint64_t)n);
		memcpy(pick[i].ident, idents[q], 16);
		pick[i].len = strlen(idents[q]);
		pick[i].tenant = tenants[holder[q]];
	}
	long allowed = 0;
	num_vresult_t r;
	double t1 = now_s();
	for (long j = 0; j < looks; j++) {
		const pick_t *q = &pick[j & (batch - 1)];
		if (num_svc_validate(s, q->ident, q->len, q->tenant, now, &r, NULL) == 0 &&
		    r.v.allowed)
			allowed++;
	}
	double look_s = now_s() - t1;
	if (allowed != looks) {
		fprintf(stderr, "bench_numbering: %ld of %ld allowed\n", allowed, looks);
		return 1;
	}
	num_index_stats_t st;
	num_index_stats(ix, &st);
	printf("bench_numbering part=validate_inproc numbers=%ld lookups_per_s=%.0f "
	       "ns_per_lookup=%.1f\n",
	       n, (double)looks / look_s, look_s * 1e9 / (double)looks);

	/* (d) the same numbers from SQLite through the repository, as a start does */
	char dir[] = "/tmp/bench_numbering.XXXXXX", url[128];
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof url, "sqlite://%s/num.db", dir);
	gh_store_t *store;
	gh_err_t err = {0};
	num_repo_t *repo;
	if (gh_store_open(ctx, url, NULL, &store) < 0 ||
	    gh_migrate_run(store, "core", gh_sql_files, &err) < 0 ||
	    gh_migrate_run(store, "numbering", gh_sql_files, &err) < 0 ||
	    num_repo_open(ctx, store, NULL, &repo) < 0 ||
	    num_repo_seed_operators(repo, now, &err) < 0) {
		fprintf(stderr, "bench_numbering: store: %s\n", err.message);
		return 1;
	}
	gh_conn_t *c;
	if (gh_store_acquire(store, 5000, &c) < 0)
		return 1;
	const long chunk = 10000;
	gh_val_t *p = talloc_array(ctx, gh_val_t, (size_t)chunk * 6);
	int rc = gh_conn_begin(c, GH_TX_WRITE);
	for (long i = 0; i < n && rc == 0; i += chunk) {
		long k = n - i < chunk ? n - i : chunk;
		for (long j = 0; j < k; j++) {
			const char *id = idents[i + j];
			gh_val_t *v = &p[j * 6];
			v[0] = GH_I64((int64_t)in[i + j].key);
			v[1] = GH_TEXT(id);
			v[2] = GH_TEXT(id);
			v[3] = GH_TEXT("MSISDN");
			v[4] = GH_I64(now);
			v[5] = GH_I64(0);
		}
		rc = gh_conn_exec_batch(c,
		                        "INSERT INTO num_numbers (key, identifier, display, kind, "
		                        "operator_id, operator_idx, state, vanity_tier, version, "
		                        "created_ms, updated_ms) VALUES ($1, $2, $3, $4, NULL, $6, "
		                        "'AVAILABLE', 0, 1, $5, $5)",
		                        p, 6, (size_t)k, NULL);
	}
	if (rc == 0)
		rc = gh_conn_commit(c);
	if (rc < 0) {
		fprintf(stderr, "bench_numbering: insert: %s\n", gh_conn_errmsg(c));
		return 1;
	}
	gh_store_release(c);
	num_index_t *ix2;
	size_t loaded = 0;
	double t2 = now_s();
	if (num_index_new(ctx, (size_t)n, 4096, &ix2) < 0 ||
	    (rc = num_repo_load_index(repo, ix2, &loaded)) < 0) {
		fprintf(stderr, "bench_numbering: load: %s\n", strerror(-rc));
		return 1;
	}
	double db_load_ms = (now_s() - t2) * 1000;
	printf("bench_numbering part=index_load numbers=%zu mem_load_ms=%.0f sqlite_load_ms=%.0f "
	       "bytes_per_number=%.1f\n",
	       loaded, mem_load_ms, db_load_ms, st.bytes_per_number);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	talloc_free(ctx);
	return system(cmd) == 0 ? 0 : 1;
}

/* ---- a server process and a tiny keep-alive client ---------------------------------------- */

typedef struct {
	int fd;
	char buf[1 << 16];
} cli_t;

static int cli_open(cli_t *c, uint16_t port)
{
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

/* One request; returns the status, body in c->buf (NUL-terminated), or -1. */
/* One request on c's connection; idem_key (may be NULL) goes as Idempotency-Key. */
static int cli_do(cli_t *c, const char *method, const char *path, const char *body,
                  const char *idem_key)
{
	char req[1024];
	int n = snprintf(req, sizeof req,
	                 "%s %s HTTP/1.1\r\nHost: b\r\n%s%s%sContent-Length: %zu\r\n\r\n%s", method,
	                 path, idem_key ? "Idempotency-Key: " : "", idem_key ? idem_key : "",
	                 idem_key ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
	if (write(c->fd, req, (size_t)n) != n)
		return -1;
	size_t len = 0;
	char *hend = NULL;
	long cl = -1;
	for (;;) {
		ssize_t k = read(c->fd, c->buf + len, sizeof c->buf - len - 1);
		if (k <= 0)
			return -1;
		len += (size_t)k;
		c->buf[len] = '\0';
		if (!hend && (hend = strstr(c->buf, "\r\n\r\n"))) {
			const char *h = strcasestr(c->buf, "content-length:");
			cl = h ? atol(h + 15) : 0;
		}
		if (hend && (long)(len - (size_t)(hend + 4 - c->buf)) >= cl)
			break;
	}
	int status = atoi(c->buf + 9);
	memmove(c->buf, hend + 4, (size_t)cl);
	c->buf[cl] = '\0';
	return status;
}

static int http1(uint16_t port, const char *method, const char *path, const char *body)
{
	cli_t *c = malloc(sizeof *c);
	int st = cli_open(c, port) == 0 ? cli_do(c, method, path, body, NULL) : -1;
	close(c->fd);
	free(c);
	return st;
}

/* Start ghasi serve; cpu >= 0 pins it. Returns the pid or -1. */
static pid_t serve(uint16_t port, const char *dir, const char *store, const char *bus, int cpu,
                   const char *threads)
{
	pid_t pid = fork();
	if (pid == 0) {
		char p[16], logp[512];
		snprintf(p, sizeof p, "%u", port);
		setenv("GHASI_HTTP_PORT", p, 1);
		setenv("GHASI_STORE_URL", store, 1);
		setenv("GHASI_BUS_URL", bus ? bus : "inproc://", 1);
		setenv("GHASI_BUS_STREAM", "benchnum", 1);
		setenv("GHASI_SERVICE_ENABLED", "numbering", 1);
		/* the admin list that picks the numbers needs no token: access is not measured */
		setenv("GHASI_AUTH_DISABLED", "true", 1);
		setenv("GHASI_LOG_LEVEL", "warn", 1);
		setenv("GHASI_HTTP_THREADS", threads, 1);
		setenv("GHASI_NUMBERING_INDEX_CAPACITY", "100000", 1);
		snprintf(logp, sizeof logp, "%s/ghasi.log", dir);
		int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		if (cpu >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			sched_setaffinity(0, sizeof set, &set);
		}
		execl(bench_ghasi_bin(), "ghasi", "serve", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 600; i++) {
		if (http1(port, "GET", "/readyz", NULL) == 200)
			return pid;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1;
		usleep(50000);
	}
	kill(pid, SIGKILL);
	return -1;
}

static void unserve(pid_t pid)
{
	int st;
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
}

/* ---- (b) HTTP validate under wrk --------------------------------------------------------- */

static double wrk_latency_ms(const char *out, const char *pct)
{
	const char *dist = strstr(out, "Latency Distribution");
	const char *p = dist ? strstr(dist, pct) : NULL;
	if (!p)
		return -1;
	p += strlen(pct);
	while (*p == ' ' || *p == '%')
		p++;
	double v = atof(p);
	while (*p && (*p == '.' || (*p >= '0' && *p <= '9')))
		p++;
	if (strncmp(p, "us", 2) == 0)
		return v / 1000;
	if (strncmp(p, "ms", 2) == 0)
		return v;
	if (*p == 's')
		return v * 1000;
	return -1;
}

static int bench_http(const char *dir)
{
	if (access("/usr/bin/wrk", X_OK) != 0 || access("/usr/bin/taskset", X_OK) != 0) {
		printf("bench_numbering part=http_validate skipped=no_wrk\n");
		return 0;
	}
	char store[512];
	snprintf(store, sizeof store, "sqlite://%s/http.db", dir);
	uint16_t port = bench_free_port();
	pid_t pid = serve(port, dir, store, NULL, 1,
	                  getenv("BENCH_HTTP_THREADS") ? getenv("BENCH_HTTP_THREADS") : "1");
	if (pid < 0)
		return 1;
	const char *n = "/v1/numbering/numbers/%2B93701234567";
	char path[256];
	snprintf(path, sizeof path, "%s:reserve", n);
	int a = http1(port, "POST", path, "{\"tenant_id\":\"tenant-enterprise\"}");
	snprintf(path, sizeof path, "%s:assign", n);
	int b = http1(port, "POST", path, "{\"tenant_id\":\"tenant-enterprise\"}");
	if (a != 200 || b != 200) {
		unserve(pid);
		return 1;
	}
	char cmd[512];
	/* Warm-up: the first seconds after start are not steady state (the relay publishes the
	 * demo seed's ~20k events, the consumers apply them, wrk opens its connections); 2 s of
	 * the same load first, discarded, then the measured run. */
	for (int run = 0; run < 2; run++) {
		snprintf(
		    cmd, sizeof cmd,
		    "taskset -c 0 wrk -t1 -c32 -d%ds --latency "
		    "'http://127.0.0.1:%u/v1/numbering/validate-lease?identifier=%%2B93701234567"
		    "&tenant_id=tenant-enterprise' 2>&1%s",
		    run == 0 ? 2 : 8, port, run == 0 ? " >/dev/null" : "");
		if (run == 0 && system(cmd) != 0)
			fprintf(stderr, "bench_numbering: warm-up wrk failed\n");
	}
	FILE *f = popen(cmd, "r");
	char out[8192] = "";
	size_t len = f ? fread(out, 1, sizeof out - 1, f) : 0;
	out[len] = '\0';
	if (f)
		pclose(f);
	unserve(pid);
	const char *rps = strstr(out, "Requests/sec:");
	if (!rps) {
		fprintf(stderr, "bench_numbering: wrk: %s\n", out);
		return 1;
	}
	const char *non2xx = strstr(out, "Non-2xx");
	printf("bench_numbering part=http_validate rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%ld "
	       "server_cpus=1 server_threads=%s wrk=t1c32\n",
	       atof(rps + 13), wrk_latency_ms(out, "50%"), wrk_latency_ms(out, "99%"),
	       non2xx ? atol(non2xx + 20) : 0L,
	       getenv("BENCH_HTTP_THREADS") ? getenv("BENCH_HTTP_THREADS") : "1");
	return 0;
}

/* ---- (c) lifecycle mix ------------------------------------------------------------------- */

#define CLIENTS 8

typedef struct {
	uint16_t port;
	char (*idents)[24];
	size_t first, count;
	bool keyed; /* every request with its own Idempotency-Key, as a careful client sends */
	long ops, errors;
} mix_t;

static void *mixer(void *arg)
{
	mix_t *m = arg;
	cli_t *c = malloc(sizeof *c);
	if (cli_open(c, m->port) < 0) {
		free(c);
		return NULL;
	}
	static const char *const acts[3] = {"reserve", "assign", "release"};
	char path[256];
	for (size_t i = m->first; i < m->first + m->count; i++) {
		for (int a = 0; a < 3; a++) {
			snprintf(path, sizeof path, "/v1/numbering/numbers/%s:%s", m->idents[i],
			         acts[a]);
			char key[64];
			snprintf(key, sizeof key, "mix-%zu-%s", i, acts[a]);
			int st = cli_do(c, "POST", path, "{\"tenant_id\":\"tenant-enterprise\"}",
			                m->keyed ? key : NULL);
			m->ops++;
			if (st != 200) {
				m->errors++;
				break;
			}
		}
	}
	close(c->fd);
	free(c);
	return NULL;
}

static int bench_mix(const char *dir, const char *label, const char *store, const char *bus,
                     bool keyed)
{
	uint16_t port = bench_free_port();
	pid_t pid = serve(port, dir, store, bus, -1, "8");
	if (pid < 0) {
		fprintf(stderr, "bench_numbering: %s server did not start\n", label);
		return 1;
	}
	/* distinct demo MSISDNs from the admin list */
	size_t cap = 6000, n = 0;
	char(*idents)[24] = calloc(cap, 24);
	char next[32] = "", path[256];
	cli_t *c = malloc(sizeof *c);
	cli_open(c, port);
	do {
		snprintf(path, sizeof path,
		         "/v1/admin/numbering/numbers?kind=MSISDN&page_size=100%s%s",
		         next[0] ? "&page_token=" : "", next);
		if (cli_do(c, "GET", path, NULL, NULL) != 200)
			break;
		json_t *j = json_loads(c->buf, 0, NULL);
		json_t *arr = json_object_get(j, "numbers");
		for (size_t i = 0; i < json_array_size(arr) && n < cap; i++) {
			json_t *it = json_array_get(arr, i);
			if (json_integer_value(json_object_get(it, "vanity_tier")) == 0)
				snprintf(idents[n++], 24, "%%2B%s",
				         json_string_value(json_object_get(it, "identifier")) + 1);
		}
		const char *t = json_string_value(json_object_get(j, "next_page_token"));
		snprintf(next, sizeof next, "%s", t ? t : "");
		json_decref(j);
	} while (next[0] && n < cap);
	close(c->fd);
	free(c);

	mix_t m[CLIENTS];
	pthread_t th[CLIENTS];
	size_t per = n / CLIENTS;
	double t0 = now_s();
	for (int i = 0; i < CLIENTS; i++) {
		m[i] = (mix_t){.port = port,
		               .idents = idents,
		               .first = (size_t)i * per,
		               .count = per,
		               .keyed = keyed};
		pthread_create(&th[i], NULL, mixer, &m[i]);
	}
	long ops = 0, errors = 0;
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(th[i], NULL);
		ops += m[i].ops;
		errors += m[i].errors;
	}
	double dt = now_s() - t0;
	unserve(pid);
	free(idents);
	printf("bench_numbering part=lifecycle store=%s ops_per_s=%.0f ops=%ld errors=%ld "
	       "clients=%d idempotency_keys=%s\n",
	       label, (double)ops / dt, ops, errors, CLIENTS, keyed ? "yes" : "no");
	return errors ? 1 : 0;
}

/* parts is a comma list; whole names only */
static bool part_has(const char *parts, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = parts; (p = strstr(p, name)); p += n)
		if ((p == parts || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	if (n < 1000 || n > 50000000)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	gh_log_init("bench_numbering", GH_LOG_WARN);
	const char *parts = argc > 2 ? argv[2] : "inproc,http,mix";
	int rc = 0;
	if (part_has(parts, "inproc"))
		rc |= bench_inproc(n);
	if (!part_has(parts, "http") && !part_has(parts, "mix") && !part_has(parts, "keyed"))
		return rc;
	char dir[] = "/tmp/bench_numbering_http.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	if (part_has(parts, "http"))
		rc |= bench_http(dir);
	/* mix: plain requests; keyed: each with an Idempotency-Key. A fresh database each. */
	const char *admin = getenv("GH_TEST_PG_ADMIN_URL"), *nats = getenv("GH_TEST_NATS_URL");
	for (int keyed = 0; keyed < 2; keyed++) {
		if (!part_has(parts, keyed ? "keyed" : "mix"))
			continue;
		char store[512];
		snprintf(store, sizeof store, "sqlite://%s/mix%d.db", dir, keyed);
		rc |= bench_mix(dir, "sqlite", store, NULL, keyed);
		char *pg = admin && *admin && nats && *nats ? bench_pgdb_make("bench_num") : NULL;
		if (pg)
			rc |= bench_mix(dir, "pg", pg, nats, keyed);
		else
			printf(
			    "bench_numbering part=lifecycle store=pg skipped=no_GH_TEST_PG_URL\n");
		bench_pgdb_drop(pg);
	}
	if (nats && *nats)
		bench_nats_drop_stream(nats, "benchnum");
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
