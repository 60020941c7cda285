/* bench_num_repo: the numbering database layer.
 *
 *   bench_num_repo [-t THREADS] [numbers] [cycles]     defaults 1, 1000000 and 1000
 *
 * On SQLite (a temp file) and on PostgreSQL when GH_TEST_PG_URL is set (the tables are created
 * in a fresh schema-less database through GH_TEST_PG_ADMIN_URL, as the tests do):
 *   load     N MSISDNs (half ASSIGNED with a live lease, over 100 tenant pools) are inserted with
 *            one SQL statement, then num_repo_load_index fills an index; load_ms is that call.
 *   lifecycle `cycles` fresh numbers each go reserve -> assign -> release: ops_per_s.
 *
 * With -t, THREADS threads (and a store pool of THREADS connections) split the numbers; thread
 * i acts for tenant t<i+1> (at most 99), so threads share no number and no pool row. They do
 * share the audit chain head, whose row lock serialises the tail of every transaction.
 *
 * Prints one line per backend:
 *   bench_num_repo backend=sqlite threads=T numbers=N load_ms=... lifecycle_ops_per_s=...
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "gh-core.h"
#include "index.h"
#include "repo.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define MSISDN_BASE 93700000000LL
#define KEY_TAG     (1LL << 62)

static int fill(gh_store_t *s, long n)
{
	gh_conn_t *c;
	if (gh_store_acquire(s, 5000, &c) < 0)
		return -1;
	int pg = gh_conn_backend(c) == GH_STORE_PG;
	char sql[2048];
	char ser[256];
	if (pg)
		snprintf(ser, sizeof(ser), "SELECT generate_series(0, %ld) AS i", n - 1);
	else
		snprintf(
		    ser, sizeof(ser),
		    "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %ld) "
		    "SELECT i FROM s",
		    n - 1);
	int rc = gh_conn_begin(c, GH_TX_WRITE);
	for (int t = 0; rc == 0 && t < 100; t++) {
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO num_pools (tenant_id, status, segment, quota_msisdn, "
		    "quota_short_code, quota_alpha, max_reservations, vanity_allowed, "
		    "direct_assign, lease_term_days, auto_renew, created_ms, updated_ms) VALUES "
		    "('t%d', 'ACTIVE', 'smb', 1000000, 10, 10, 1000000, 1, 0, 30, 1, 0, 0)",
		    t);
		rc = gh_conn_exec(c, sql, NULL, 0, NULL);
	}
	if (rc == 0) {
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO num_numbers (key, identifier, display, kind, operator_id, "
		    "operator_idx, state, tenant_id, vanity_tier, version, created_ms, updated_ms) "
		    "SELECT %lld + %lld + i, '+' || (%lld + i), '+' || (%lld + i), 'MSISDN', "
		    "'awcc', 1, CASE WHEN i %% 2 = 0 THEN 'ASSIGNED' ELSE 'AVAILABLE' END, "
		    "CASE WHEN i %% 2 = 0 THEN 't' || (i %% 100) END, 0, 1, 0, 0 FROM (%s) g",
		    (long long)KEY_TAG, MSISDN_BASE, MSISDN_BASE, MSISDN_BASE, ser);
		rc = gh_conn_exec(c, sql, NULL, 0, NULL);
	}
	if (rc == 0) {
		const char *lid = pg ? "lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || "
		                       "lpad(to_hex(i), 12, '0')"
		                     : "printf('%08x-0000-4000-8000-%012x', i, i)";
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO num_leases (lease_id, number_key, tenant_id, starts_ms, ends_ms, "
		    "auto_renew, status, created_ms, updated_ms) SELECT %s, %lld + %lld + i, "
		    "'t' || (i %% 100), 0, 4102444800000, 1, 'ACTIVE', 0, 0 FROM (%s) g WHERE "
		    "i %% 2 = 0",
		    lid, (long long)KEY_TAG, MSISDN_BASE, ser);
		rc = gh_conn_exec(c, sql, NULL, 0, NULL);
	}
	if (rc == 0)
		rc = gh_conn_commit(c);
	if (rc == 0 && pg)
		rc = gh_conn_exec_script(c, "ANALYZE");
	if (rc != 0)
		fprintf(stderr, "bench_num_repo: fill: %s\n", gh_conn_errmsg(c));
	gh_store_release(c);
	return rc;
}

typedef char ident_t[20];

/* One lifecycle thread: numbers ids[first, first + count), tenant t<tenant>. */
typedef struct worker_s {
	num_repo_t *repo;
	ident_t *ids;
	long first, count;
	char tenant[16], actor[24];
	int rc;
	pthread_t th;
} worker_t;

static void *lifecycle(void *arg)
{
	worker_t *w = arg;
	static const num_action_t acts[3] = {NUM_ACT_RESERVE, NUM_ACT_ASSIGN, NUM_ACT_RELEASE};
	gh_err_t err = {0};
	for (long i = w->first; i < w->first + w->count; i++) {
		gh_ident_t id;
		if (gh_ident_normalize(NULL, GH_IDENT_AUTO, w->ids[i], strlen(w->ids[i]), &id,
		                       NULL) < 0) {
			w->rc = -1;
			break;
		}
		for (int a = 0; a < 3; a++) {
			num_tx_req_t req = {.key = id.key,
			                    .action = acts[a],
			                    .role = NUM_ROLE_TENANT,
			                    .tenant_id = w->tenant,
			                    .actor = w->actor,
			                    .expected_version = -1,
			                    .auto_renew = -1,
			                    .now_ms = 1000};
			num_number_t out;
			if (num_repo_transition(w->repo, &req, &out, &err) < 0) {
				fprintf(stderr, "bench_num_repo: %s %s: %s\n", w->ids[i],
				        num_action_name(acts[a]), err.message);
				w->rc = -1;
				goto out;
			}
		}
	}
out:
	gh_err_clear(&err);
	return NULL;
}

static int run(const char *backend, const char *url, long n, long cycles, int threads)
{
	void *ctx = talloc_new(NULL);
	gh_store_t *s;
	gh_err_t err = {0};
	num_repo_t *repo;
	int rc = -1;
	if (gh_store_open(ctx, url, &(gh_store_opts_t){.pool_size = (unsigned)threads}, &s) < 0 ||
	    gh_migrate_run(s, "core", gh_sql_files, &err) < 0 ||
	    gh_migrate_run(s, "numbering", gh_sql_files, &err) < 0 ||
	    num_repo_open(ctx, s, NULL, &repo) < 0 || num_repo_seed_operators(repo, 0, &err) < 0 ||
	    fill(s, n) < 0)
		goto out;
	uint64_t k0;
	if (gh_e164_pack("+93700000000", &k0) < 0 || k0 != (uint64_t)(KEY_TAG + MSISDN_BASE)) {
		fprintf(stderr, "bench_num_repo: key layout differs from e164\n");
		goto out;
	}

	num_index_t *ix;
	if (num_index_new(ctx, (size_t)n + 1000, 1000, &ix) < 0)
		goto out;
	size_t loaded = 0;
	double t0 = now_s();
	if (num_repo_load_index(repo, ix, &loaded) < 0 || loaded != (size_t)n) {
		fprintf(stderr, "bench_num_repo: load_index loaded %zu of %ld\n", loaded, n);
		goto out;
	}
	double load_ms = (now_s() - t0) * 1e3;
	num_validate_t v;
	uint32_t t0idx;
	if (num_index_tenant_find(ix, "t0", &t0idx) < 0 || num_validate(ix, k0, t0idx, 1, &v) < 0 ||
	    !v.allowed) {
		fprintf(stderr, "bench_num_repo: loaded index does not allow the first number\n");
		goto out;
	}

	/* lifecycle: fresh numbers in another range, reserve -> assign -> release */
	num_new_t *nn = talloc_array(ctx, num_new_t, (size_t)cycles);
	ident_t *ids = talloc_array(ctx, ident_t, (size_t)cycles);
	worker_t *ws = talloc_zero_array(ctx, worker_t, (size_t)threads);
	if (!nn || !ids || !ws)
		goto out;
	for (long i = 0; i < cycles; i++) {
		snprintf(ids[i], 20, "+9371%07d", (int)(i % 10000000));
		nn[i] = (num_new_t){ids[i], GH_IDENT_AUTO, "awcc", 0};
	}
	if (num_repo_add(repo, nn, (size_t)cycles, "bench", 1, &err) < 0) {
		fprintf(stderr, "bench_num_repo: add: %s\n", err.message);
		goto out;
	}
	long per = cycles / threads, extra = cycles % threads, first = 0;
	for (int i = 0; i < threads; i++) {
		ws[i] = (worker_t){.repo = repo, .ids = ids, .first = first};
		ws[i].count = per + (i < extra ? 1 : 0);
		first += ws[i].count;
		snprintf(ws[i].tenant, sizeof(ws[i].tenant), "t%d", i + 1);
		snprintf(ws[i].actor, sizeof(ws[i].actor), "tenant:t%d", i + 1);
	}
	t0 = now_s();
	int started = 0;
	for (; started < threads; started++)
		if (pthread_create(&ws[started].th, NULL, lifecycle, &ws[started]) != 0)
			break;
	int wrc = started == threads ? 0 : -1;
	for (int i = 0; i < started; i++) {
		pthread_join(ws[i].th, NULL);
		wrc |= ws[i].rc;
	}
	if (wrc != 0)
		goto out;
	double ops = 3.0 * (double)cycles / (now_s() - t0);
	printf("bench_num_repo backend=%s threads=%d numbers=%ld load_ms=%.0f "
	       "lifecycle_ops_per_s=%.0f\n",
	       backend, threads, n, load_ms, ops);
	rc = 0;
out:
	if (rc != 0 && err.code != GH_OK)
		fprintf(stderr, "bench_num_repo: %s\n", err.message);
	gh_err_clear(&err);
	talloc_free(ctx);
	return rc;
}

int main(int argc, char **argv)
{
	int threads = 1, opt;
	while ((opt = getopt(argc, argv, "t:")) != -1)
		threads = opt == 't' ? atoi(optarg) : -1;
	long n = optind < argc ? atol(argv[optind]) : 1000000;
	long cycles = optind + 1 < argc ? atol(argv[optind + 1]) : 1000;
	if (threads < 1 || threads > 99 || n < 1 || n > 10000000 || cycles < threads ||
	    cycles > 1000000) {
		fprintf(stderr, "usage: bench_num_repo [-t THREADS] [numbers] [cycles]\n");
		return 2;
	}
	gh_log_init("bench_num_repo", GH_LOG_WARN);
	char dir[] = "/tmp/bench_num_repo.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char url[128], path[96];
	snprintf(path, sizeof(path), "%s/num.db", dir);
	snprintf(url, sizeof(url), "sqlite://%s", path);
	int rc = run("sqlite", url, n, cycles, threads);
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/num.db%s", dir, sfx[i]);
		unlink(path);
	}
	rmdir(dir);
	char *pg = bench_pgdb_make("bench_repo");
	if (pg)
		rc |= run("pg", pg, n, cycles, threads);
	bench_pgdb_drop(pg);
	return rc ? 1 : 0;
}
