/* bench_outbox: transactional outbox throughput. For each store and bus pair, inserts N events
 * with gh_outbox_add (T events per write transaction, round-robin over 1000 aggregates), then
 * times the relay draining them with gh_outbox_relay_round until nothing is pending (publish
 * in batches, mark published). Prints one line per pair:
 *   bench_outbox store=sqlite bus=nats events=N per_txn=T relay_batch=B add_per_s=N
 *                relay_per_s=N
 *
 * Usage: bench_outbox [-n events] [-t per_txn] [-b relay_batch] [-p PG_URL] [NATS_URL]
 * The store is a temp SQLite file (WAL, synchronous=NORMAL), and PostgreSQL when -p is given or
 * GH_TEST_PG_URL is set. The bus is inproc://, and NATS JetStream (file storage) when a URL is
 * given or GH_TEST_NATS_URL is set. The benchmark stream is deleted afterwards. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "outbox.h"
#include "store.h"

#include "benchutil.h"

enum { N_AGG = 1000 };

typedef struct fill_s {
	const char *type;
	long next, per_txn;
	json_t *data;
} fill_t;

static int add_tx(gh_conn_t *c, void *ud)
{
	fill_t *f = ud;
	for (long i = 0; i < f->per_txn; i++) {
		char agg[40];
		long k = f->next + i;
		snprintf(agg, sizeof(agg), "number/+9370%07ld", k % N_AGG);
		gh_event_t ev = {.type = f->type,
		                 .source = "ghasi/numbering",
		                 .tenant_id = "tenant-a",
		                 .aggregate_id = agg,
		                 .traceparent =
		                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		                 .time_ms = 1700000000000LL + k,
		                 .data = f->data};
		int rc = gh_outbox_add(c, &ev, NULL, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int run(const char *store_url, const char *bus_url, long n, long per_txn, int batch)
{
	void *ctx = talloc_new(NULL);
	static int round_no;
	char stream[48], filter[48], type[64];
	snprintf(stream, sizeof(stream), "OBBENCH%d_%d", (int)getpid(), ++round_no);
	snprintf(filter, sizeof(filter), "obb%d.*.*.*", (int)getpid());
	snprintf(type, sizeof(type), "obb%d.number.assigned.v1", (int)getpid());
	const char *subjects[] = {filter};
	gh_store_t *s = NULL;
	gh_bus_t *bus = NULL;
	gh_outbox_relay_t *relay = NULL;
	int rc = bench_store_open(ctx, "bench_outbox", store_url, NULL, 1, &s);
	if (rc < 0)
		goto out;
	/* A database that outlives the run may hold rows of an earlier one. */
	gh_conn_t *c;
	if ((rc = gh_store_acquire(s, 5000, &c)) < 0)
		goto out;
	rc = gh_conn_exec_script(c, "DELETE FROM gh_outbox; DELETE FROM gh_outbox_agg");
	gh_store_release(c);
	if (rc < 0)
		goto out;
	gh_bus_opts_t bo = {.stream = stream,
	                    .subjects = subjects,
	                    .n_subjects = 1,
	                    .dlq_prefix = "obbdlq",
	                    .max_msgs = n + 10};
	if ((rc = gh_bus_open(ctx, bus_url, &bo, &bus)) < 0) {
		fprintf(stderr, "bench_outbox: bus %s: %s\n", bus_url, strerror(-rc));
		goto out;
	}
	if ((rc = gh_outbox_relay_new(ctx, s, bus, &(gh_outbox_relay_opts_t){.batch = batch},
	                              &relay)) < 0)
		goto out;

	fill_t f = {.type = type, .per_txn = per_txn};
	f.data =
	    json_pack("{s:s, s:s, s:s, s:s, s:i}", "number", "+93701234567", "from", "reserved",
	              "to", "assigned", "subscriber_ref", "crm:8f14e45f", "version", 4);
	gh_tx_opts_t to = {.flags = GH_TX_WRITE};
	double t0 = bench_now_s();
	for (f.next = 0; f.next < n; f.next += per_txn) {
		if (n - f.next < per_txn)
			f.per_txn = n - f.next;
		if ((rc = gh_store_tx(s, add_tx, &f, &to)) < 0)
			break;
	}
	double add_rate = (double)n / (bench_now_s() - t0);
	json_decref(f.data);
	if (rc < 0) {
		fprintf(stderr, "bench_outbox: add: %s\n", strerror(-rc));
		goto out;
	}

	long relayed = 0;
	size_t got;
	t0 = bench_now_s();
	do {
		if ((rc = gh_outbox_relay_round(relay, 1, &got)) < 0) {
			fprintf(stderr, "bench_outbox: relay round: %s\n", strerror(-rc));
			goto out;
		}
		relayed += (long)got;
	} while (got > 0);
	double relay_rate = (double)relayed / (bench_now_s() - t0);

	int64_t pending = -1, age;
	if ((rc = gh_outbox_pending(s, 0, &pending, &age)) < 0)
		goto out;
	if (relayed != n || pending != 0) {
		fprintf(stderr, "bench_outbox: relayed %ld of %ld, %lld still pending\n", relayed,
		        n, (long long)pending);
		rc = -EPROTO;
		goto out;
	}
	bench_report("bench_outbox",
	             "store=%s bus=%s events=%ld per_txn=%ld relay_batch=%d add_per_s=%.0f "
	             "relay_per_s=%.0f",
	             gh_store_backend_names[gh_store_backend(s)], gh_bus_backend(bus), n, per_txn,
	             batch, add_rate, relay_rate);
out:
	talloc_free(ctx); /* relay, bus, store */
	if (strncmp(bus_url, "nats://", 7) == 0)
		bench_nats_drop_stream(bus_url, stream);
	return rc;
}

int main(int argc, char **argv)
{
	long n = 100000, per_txn = 100;
	int batch = 500;
	const char *pg = getenv("GH_TEST_PG_URL"), *nats = getenv("GH_TEST_NATS_URL");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			n = atol(argv[++i]);
		else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
			per_txn = atol(argv[++i]);
		else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
			batch = atoi(argv[++i]);
		else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc)
			pg = argv[++i];
		else
			nats = argv[i];
	}
	if (n <= 0 || per_txn <= 0 || batch <= 0) {
		fprintf(stderr, "usage: bench_outbox [-n events] [-t per_txn] [-b relay_batch] "
		                "[-p PG_URL] [NATS_URL]\n");
		return 2;
	}
	gh_log_init("bench_outbox", GH_LOG_WARN);
	bench_tmpdb_t db;
	if (bench_tmpdb_make(&db, "bench_outbox") < 0)
		return 1;

	int rc = run(db.url, "inproc://bench", n, per_txn, batch);
	if (rc == 0 && nats && *nats)
		rc = run(db.url, nats, n, per_txn, batch);
	bench_tmpdb_remove(&db);
	if (rc == 0 && pg && *pg) {
		rc = run(pg, "inproc://bench", n, per_txn, batch);
		if (rc == 0 && nats && *nats)
			rc = run(pg, nats, n, per_txn, batch);
	}
	return rc < 0 ? 1 : 0;
}
