/* bench_bus: publish rate to the bus as the outbox relay drives it (batches of distinct,
 * de-duplicated events of ~300 bytes), then pull+ack consume rate of one durable.
 *
 *   bench_bus [url] [events] [batch]   url defaults to $GH_TEST_NATS_URL, else inproc://
 *
 * Prints one line: bench_bus backend=nats events=N batch=B publish_batch_per_s=...
 * publish_sync_per_s=... consume_per_s=... */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"

#include "benchutil.h"

static atomic_long consumed;

static int count_handler(const gh_bus_msg_t *m, void *ud, char *reason, size_t n)
{
	atomic_fetch_add(&consumed, 1);
	return 0;
}

int main(int argc, char **argv)
{
	const char *env = getenv("GH_TEST_NATS_URL");
	const char *url = argc > 1 ? argv[1] : (env && *env ? env : "inproc://bench");
	long n = argc > 2 ? atol(argv[2]) : 100000;
	long batch = argc > 3 ? atol(argv[3]) : 500;
	long n_sync = n / 10;
	if (n <= 0 || batch <= 0)
		return 2;
	gh_log_init("bench_bus", GH_LOG_WARN);
	void *ctx = talloc_new(NULL);
	char stream[32], subj[64], filter[64];
	snprintf(stream, sizeof(stream), "BENCH%d", (int)getpid());
	snprintf(subj, sizeof(subj), "b%d.number.assigned.v1", (int)getpid());
	snprintf(filter, sizeof(filter), "b%d.*.*.*", (int)getpid());
	const char *subjects[] = {filter};
	gh_bus_opts_t o = {.stream = stream,
	                   .subjects = subjects,
	                   .n_subjects = 1,
	                   .dlq_prefix = "benchdlq",
	                   .max_msgs = n + n_sync + 10};
	gh_bus_t *bus = NULL;
	int rc = gh_bus_open(ctx, url, &o, &bus);
	if (rc < 0) {
		fprintf(stderr, "bench_bus: open %s: %s\n", url, strerror(-rc));
		return 1;
	}

	/* An event-sized payload, as the outbox holds them. */
	char payload[300];
	memset(payload, 'x', sizeof(payload));
	char(*ids)[40] = malloc((size_t)(n + n_sync) * sizeof(*ids));
	gh_bus_msg_t *msgs = calloc((size_t)batch, sizeof(*msgs));
	if (!ids || !msgs)
		return 1;
	for (long i = 0; i < n + n_sync; i++)
		snprintf(ids[i], sizeof(ids[i]), "%d-%ld", (int)getpid(), i);

	double t0 = bench_now_s();
	for (long i = 0; i < n; i += batch) {
		size_t k = (size_t)(n - i < batch ? n - i : batch), acked = 0;
		for (size_t j = 0; j < k; j++)
			msgs[j] = (gh_bus_msg_t){.subject = subj,
			                         .msg_id = ids[i + (long)j],
			                         .data = payload,
			                         .len = sizeof(payload)};
		rc = gh_bus_publish_batch(bus, msgs, k, &acked);
		if (rc < 0 || acked != k) {
			fprintf(stderr, "bench_bus: batch at %ld: %s (%zu acked)\n", i,
			        strerror(-rc), acked);
			return 1;
		}
	}
	double batch_rate = (double)n / (bench_now_s() - t0);

	t0 = bench_now_s();
	for (long i = n; i < n + n_sync; i++) {
		rc = gh_bus_publish(bus, subj, ids[i], payload, sizeof(payload), NULL, 0);
		if (rc < 0) {
			fprintf(stderr, "bench_bus: publish: %s\n", strerror(-rc));
			return 1;
		}
	}
	double sync_rate = (double)n_sync / (bench_now_s() - t0);

	gh_bus_sub_t *sub = NULL;
	gh_bus_sub_opts_t so = {.batch = 256};
	t0 = bench_now_s();
	rc = gh_bus_subscribe(bus, filter, "bench", count_handler, NULL, &so, &sub);
	if (rc < 0) {
		fprintf(stderr, "bench_bus: subscribe: %s\n", strerror(-rc));
		return 1;
	}
	double deadline = t0 + 120;
	while (atomic_load(&consumed) < n + n_sync && bench_now_s() < deadline)
		usleep(1000);
	double consume_rate = (double)atomic_load(&consumed) / (bench_now_s() - t0);
	gh_bus_unsubscribe(sub);

	bench_report("bench_bus",
	             "backend=%s events=%ld batch=%ld publish_batch_per_s=%.0f "
	             "publish_sync_per_s=%.0f consume_per_s=%.0f",
	             gh_bus_backend(bus), n, batch, batch_rate, sync_rate, consume_rate);
	talloc_free(ctx);
	if (strncmp(url, "nats://", 7) == 0) /* leave no benchmark stream behind */
		bench_nats_drop_stream(url, stream);
	free(ids);
	free(msgs);
	return atomic_load(&consumed) == n + n_sync ? 0 : 1;
}
