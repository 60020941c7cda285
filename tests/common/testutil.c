/* testutil: see testutil.h. */
#include "testutil.h"

#include <ftw.h>
#include <libpq-fe.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uuid.h"

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

const char *gh_test_pg_url(void) { return env_nonempty("GH_TEST_PG_URL"); }
const char *gh_test_nats_url(void) { return env_nonempty("GH_TEST_NATS_URL"); }

int gh_test_required(void)
{
	const char *v = getenv("GH_TEST_REQUIRE");
	return v && strcmp(v, "1") == 0;
}

int64_t gh_test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *gh_test_tmpdir(void)
{
	const char *base = env_nonempty("TMPDIR");
	char *path = NULL;
	if (asprintf(&path, "%s/ghasi-test.XXXXXX", base ? base : "/tmp") < 0)
		return NULL;
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

void gh_test_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *gh_test_store_url(gh_test_backend_t b, const char *tmpdir)
{
	char *url = NULL;
	if (b == GH_TEST_SQLITE) {
		if (asprintf(&url, "sqlite://%s/test-%d.db", tmpdir, rand()) < 0)
			return NULL;
		return url;
	}
	const char *admin = env_nonempty("GH_TEST_PG_ADMIN_URL");
	const char *pg = gh_test_pg_url();
	if (!admin || !pg) {
		if (gh_test_required())
			fail_msg("GH_TEST_PG_URL missing (run under scripts/testenv.sh)");
		return NULL;
	}
	char id[37], db[64];
	gh_uuid_v4(id);
	snprintf(db, sizeof(db), "t_%.8s%.4s", id, id + 9);
	PGconn *c = PQconnectdb(admin);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("cannot reach test PostgreSQL: %s", PQerrorMessage(c));
	char sql[128];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("CREATE DATABASE failed: %s", PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	/* replace the database name (after the last '/') of the admin URL */
	const char *slash = strrchr(admin, '/');
	if (asprintf(&url, "%.*s/%s", (int)(slash - admin), admin, db) < 0)
		return NULL;
	return url;
}

void gh_test_nats_delete_stream(const char *url, const char *stream)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	if (url && natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	    natsConnection_JetStream(&js, nc, NULL) == NATS_OK)
		js_DeleteStream(js, stream, NULL, NULL);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}
