/* bench_audit: audit chain append and verify throughput. Prints one line per backend:
 *   bench_audit backend=sqlite batch=1000 single_txn_rows_per_s=N batched_rows_per_s=N
 *               verify_rows=N verify_rows_per_s=N
 * single_txn: one gh_audit_append of one record per committed write transaction.
 * batched: one gh_audit_append of `batch` records per committed write transaction.
 * verify: gh_audit_verify over the whole chain both phases wrote.
 *
 * Usage: bench_audit [-s seconds] [-b batch] [PG_URL]
 * SQLite runs on a temp file (WAL, synchronous=NORMAL); PostgreSQL when a URL is given or
 * GH_TEST_PG_URL is set. The chain is named after the process, and removed afterwards. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "log.h"
#include "store.h"

#include "benchutil.h"

/* A realistic record: a number lifecycle transition with a small payload. Entity ids and
 * timestamps vary per row so no two rows hash alike. */
typedef struct work_s {
	const char *chain;
	size_t n;
	int64_t next; /* rows appended so far */
	gh_audit_rec_t *recs;
	char (*ids)[24];
	json_t **payloads;
} work_t;

static int work_init(work_t *w, const char *chain, size_t n)
{
	memset(w, 0, sizeof(*w));
	w->chain = chain;
	w->n = n;
	w->recs = calloc(n, sizeof(*w->recs));
	w->ids = calloc(n, sizeof(*w->ids));
	w->payloads = calloc(n, sizeof(*w->payloads));
	if (!w->recs || !w->ids || !w->payloads)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		w->payloads[i] = json_pack("{s:s, s:s, s:s, s:i}", "from", "available", "to",
		                           "reserved", "reason", "customer order", "version", 3);
		if (!w->payloads[i])
			return -ENOMEM;
	}
	return 0;
}

static void work_free(work_t *w)
{
	for (size_t i = 0; w->payloads && i < w->n; i++)
		json_decref(w->payloads[i]);
	free(w->recs);
	free(w->ids);
	free(w->payloads);
}

static int append_tx(gh_conn_t *c, void *ud)
{
	work_t *w = ud;
	for (size_t i = 0; i < w->n; i++) {
		int64_t k = w->next + (int64_t)i;
		snprintf(w->ids[i], sizeof(w->ids[i]), "+9370%07lld", (long long)(k % 10000000));
		w->recs[i] = (gh_audit_rec_t){.ts_ms = 1700000000000LL + k,
		                              .actor = "user:alice",
		                              .action = "number.reserve",
		                              .entity_type = "number",
		                              .entity_id = w->ids[i],
		                              .tenant_id = "tenant-a",
		                              .request_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		                              .payload = w->payloads[i]};
	}
	return gh_audit_append(c, w->chain, w->recs, w->n, NULL);
}

/* Appends batches of w->n records for secs seconds; returns rows/s or a negative errno. */
static double timed_appends(gh_store_t *s, work_t *w, double secs, int *rc)
{
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	int64_t start = w->next;
	double t0 = bench_now_s(), t;
	*rc = 0;
	while ((t = bench_now_s()) - t0 < secs) {
		if ((*rc = gh_store_tx(s, append_tx, w, &o)) < 0)
			return 0;
		w->next += (int64_t)w->n;
	}
	return (double)(w->next - start) / (t - t0);
}

static int run(const char *url, const char *label, size_t batch, double secs)
{
	gh_store_t *s;
	int rc = bench_store_open(NULL, "bench_audit", url, NULL, 1, &s);
	if (rc < 0)
		return rc;
	char chain[32];
	snprintf(chain, sizeof(chain), "bench%d", (int)getpid());

	work_t one = {0}, many = {0};
	if ((rc = work_init(&one, chain, 1)) < 0 || (rc = work_init(&many, chain, batch)) < 0)
		goto free_work;
	double single = timed_appends(s, &one, secs, &rc);
	if (rc < 0)
		goto fail;
	many.next = one.next;
	double batched = timed_appends(s, &many, secs, &rc);
	if (rc < 0)
		goto fail;

	gh_audit_verify_t v;
	double t0 = bench_now_s();
	if ((rc = gh_audit_verify(s, chain, &v)) < 0)
		goto fail;
	double vt = bench_now_s() - t0;
	if (!v.ok || v.rows != many.next) {
		fprintf(stderr, "bench_audit: verify %s: %s (rows %lld of %lld)\n", label, v.reason,
		        (long long)v.rows, (long long)many.next);
		rc = -EPROTO;
		goto free_work;
	}
	bench_report("bench_audit",
	             "backend=%s batch=%zu single_txn_rows_per_s=%.0f batched_rows_per_s=%.0f "
	             "verify_rows=%lld verify_rows_per_s=%.0f",
	             label, batch, single, batched, (long long)v.rows, (double)v.rows / vt);
fail:
	if (rc < 0 && rc != -EPROTO)
		fprintf(stderr, "bench_audit: %s: %s\n", label, strerror(-rc));
free_work:
	work_free(&one);
	work_free(&many);
	/* Leave nothing behind in a database that outlives the run. */
	gh_conn_t *c;
	if (gh_store_acquire(s, 5000, &c) == 0) {
		gh_conn_exec(c, "DELETE FROM gh_audit WHERE chain = $1",
		             (gh_val_t[]){GH_TEXT(chain)}, 1, NULL);
		gh_conn_exec(c, "DELETE FROM gh_audit_head WHERE chain = $1",
		             (gh_val_t[]){GH_TEXT(chain)}, 1, NULL);
		gh_store_release(c);
	}
	gh_store_close(s);
	return rc;
}

int main(int argc, char **argv)
{
	double secs = 2.0;
	long batch = 1000;
	const char *pg = getenv("GH_TEST_PG_URL");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
			batch = atol(argv[++i]);
		else
			pg = argv[i];
	}
	if (secs <= 0 || batch <= 0) {
		fprintf(stderr, "usage: bench_audit [-s seconds] [-b batch] [PG_URL]\n");
		return 2;
	}
	gh_log_init("bench_audit", GH_LOG_WARN);
	bench_tmpdb_t db;
	if (bench_tmpdb_make(&db, "bench_audit") < 0)
		return 1;
	int rc = run(db.url, "sqlite", (size_t)batch, secs);
	bench_tmpdb_remove(&db);
	if (rc == 0 && pg && *pg)
		rc = run(pg, "pg", (size_t)batch, secs);
	return rc < 0 ? 1 : 0;
}
