/* bench_store: store write throughput. Prints one line per backend:
 *   bench_store backend=sqlite sync=normal single_txn_per_s=N batched_rows_per_s=N
 * single_txn: one INSERT per committed write transaction (gh_store_tx, one thread).
 * batched_rows: gh_conn_exec_batch of 1000-row batches, each batch one transaction.
 *
 * Usage: bench_store [-s seconds] [--full] [PG_URL]
 * SQLite runs on a temp file; PostgreSQL when a URL is given or GH_TEST_PG_URL is set. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#include "benchutil.h"

enum { BATCH = 1000 };

typedef struct single_s {
	int64_t id;
} single_t;

static int insert_one(gh_conn_t *c, void *ud)
{
	single_t *s = ud;
	return gh_conn_exec(c, "INSERT INTO bench (id, tenant, payload) VALUES ($1, $2, $3)",
	                    (gh_val_t[]){GH_I64(s->id), GH_TEXT("tenant-a"),
	                                 GH_TEXT("{\"event\":\"number.reserved\",\"n\":42}")},
	                    3, NULL);
}

static int run(const char *url, const char *label, int sync_full, double secs)
{
	gh_store_t *s;
	gh_conn_t *c;
	int rc = bench_store_open(NULL, "bench_store", url,
	                          &(gh_store_opts_t){.sync_full = sync_full}, 0, &s);
	if (rc < 0)
		return rc;
	if ((rc = gh_store_acquire(s, 5000, &c)) < 0)
		goto out;
	rc = gh_conn_exec_script(c,
	                         "DROP TABLE IF EXISTS bench;"
	                         "CREATE TABLE bench (id BIGINT PRIMARY KEY, tenant TEXT NOT NULL,"
	                         " payload TEXT NOT NULL)");
	gh_store_release(c);
	if (rc < 0)
		goto out;

	single_t one = {0};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	double t0 = bench_now_s(), t;
	while ((t = bench_now_s()) - t0 < secs) {
		for (int i = 0; i < 100; i++) {
			one.id++;
			if ((rc = gh_store_tx(s, insert_one, &one, &o)) < 0)
				goto out;
		}
	}
	double single = (double)one.id / (t - t0);

	gh_val_t *p = calloc(BATCH * 3, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = gh_store_acquire(s, 5000, &c)) < 0) {
		free(p);
		goto out;
	}
	int64_t rows = 0, id = one.id;
	t0 = bench_now_s();
	while ((t = bench_now_s()) - t0 < secs) {
		for (int i = 0; i < BATCH; i++) {
			p[i * 3] = GH_I64(++id);
			p[i * 3 + 1] = GH_TEXT("tenant-a");
			p[i * 3 + 2] = GH_TEXT("{\"event\":\"number.reserved\",\"n\":42}");
		}
		int64_t n;
		if ((rc = gh_conn_exec_batch(c,
		                             "INSERT INTO bench (id, tenant, payload) VALUES ($1, "
		                             "$2, $3)",
		                             p, 3, BATCH, &n)) < 0) {
			fprintf(stderr, "bench_store: %s\n", gh_conn_errmsg(c));
			break;
		}
		rows += n;
	}
	gh_store_release(c);
	free(p);
	if (rc == 0)
		bench_report("bench_store",
		             "backend=%s sync=%s single_txn_per_s=%.0f "
		             "batched_rows_per_s=%.0f",
		             label, sync_full ? "full" : "normal", single, (double)rows / (t - t0));
out:
	gh_store_close(s);
	return rc;
}

int main(int argc, char **argv)
{
	double secs = 2.0;
	int full = 0;
	const char *pg = getenv("GH_TEST_PG_URL");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (strcmp(argv[i], "--full") == 0)
			full = 1;
		else
			pg = argv[i];
	}
	bench_tmpdb_t db;
	if (bench_tmpdb_make(&db, "bench_store") < 0)
		return 1;
	int rc = run(db.url, "sqlite", full, secs);
	bench_tmpdb_remove(&db);
	if (rc == 0 && pg && *pg)
		rc = run(pg, "pg", 0, secs);
	return rc < 0 ? 1 : 0;
}
