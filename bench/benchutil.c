/* benchutil: shared benchmark plumbing (see benchutil.h). */
#include "benchutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"

double bench_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_tmpdb_make(bench_tmpdb_t *t, const char *name)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(t->dir)) {
		int rc = -errno;
		fprintf(stderr, "%s: mkdtemp: %s\n", name, strerror(errno));
		return rc;
	}
	snprintf(t->path, sizeof(t->path), "%s/bench.db", t->dir);
	snprintf(t->url, sizeof(t->url), "sqlite://%s", t->path);
	return 0;
}

void bench_tmpdb_remove(const bench_tmpdb_t *t)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	for (int i = 0; i < 3; i++) {
		char f[300];
		snprintf(f, sizeof(f), "%s%s", t->path, suffix[i]);
		unlink(f);
	}
	rmdir(t->dir);
}

int bench_store_open(void *ctx, const char *name, const char *url, const gh_store_opts_t *opts,
                     int migrate, gh_store_t **out)
{
	gh_store_t *s;
	*out = NULL;
	int rc = gh_store_open(ctx, url, opts, &s);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot open the %.*s store (%d)\n", name,
		        (int)strcspn(url, ":"), url, rc);
		return rc;
	}
	gh_err_t err = {0};
	if (migrate && (rc = gh_migrate_run(s, "core", gh_sql_files, &err)) < 0) {
		fprintf(stderr, "%s: migrate: %s\n", name, err.message);
		gh_err_clear(&err);
		gh_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

uint16_t bench_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	uint16_t p = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

const char *bench_ghasi_bin(void)
{
	static char path[4096];
	const char *env = getenv("GHASI_BIN");
	if (env)
		return env;
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
	if (n <= 0)
		return NULL;
	path[n] = '\0';
	char *slash = strrchr(path, '/');
	snprintf(slash, 32, "/../src/ghasi/ghasi");
	return path;
}

/* Run sql on the admin database; 0 or negative errno. */
static int pg_admin(const char *admin, const char *sql)
{
	void *ctx = talloc_new(NULL);
	gh_store_t *st;
	gh_conn_t *c;
	int rc = gh_store_open(ctx, admin, NULL, &st);
	if (rc == 0 && (rc = gh_store_acquire(st, 5000, &c)) == 0) {
		if ((rc = gh_conn_exec_script(c, sql)) < 0)
			fprintf(stderr, "benchutil: %s: %s\n", sql, gh_conn_errmsg(c));
		gh_store_release(c);
	}
	talloc_free(ctx);
	return rc;
}

char *bench_pgdb_make(const char *prefix)
{
	static int seq;
	const char *admin = getenv("GH_TEST_PG_ADMIN_URL");
	const char *slash = admin ? strrchr(admin, '/') : NULL;
	if (!admin || !*admin || !slash)
		return NULL;
	char db[96], sql[128];
	snprintf(db, sizeof db, "%s_%d_%d", prefix, (int)getpid(), ++seq);
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
	char *url = NULL;
	if (pg_admin(admin, sql) < 0 ||
	    asprintf(&url, "%.*s/%s", (int)(slash - admin), admin, db) < 0)
		return NULL;
	return url;
}

void bench_pgdb_drop(char *url)
{
	const char *admin = getenv("GH_TEST_PG_ADMIN_URL");
	const char *db = url ? strrchr(url, '/') : NULL;
	if (admin && db) {
		char sql[160];
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db + 1);
		pg_admin(admin, sql);
	}
	free(url);
}

void bench_nats_drop_stream(const char *url, const char *stream)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	if (natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	    natsConnection_JetStream(&js, nc, NULL) == NATS_OK)
		js_DeleteStream(js, stream, NULL, NULL);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

void bench_report(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s ", name);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}
