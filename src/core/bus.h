/* bus: publish/subscribe for events, one API over two backends (DESIGN.md, "Bus").
 *
 *   inproc:// or inproc://name   in memory, for the embedded profile and unit tests
 *   nats://host:port[,...]        NATS JetStream (nats.c): one stream, durable pull consumers
 *
 * Contracts shared by both backends:
 * - Publishing is at least once with a de-duplication id: a message whose msg_id was already
 *   accepted within the duplicate window is acknowledged but not stored again (JetStream
 *   `Nats-Msg-Id`), so a relay may re-publish after a crash without consumers seeing twice.
 * - gh_bus_publish returns 0 only once the message is durably accepted (JetStream: the stream
 *   acknowledged it; in-process: it is in the bus's log).
 * - A subscription is a durable consumer: its position and unacknowledged messages outlive the
 *   subscription (for inproc: while the bus lives). Each subscription has one worker thread that
 *   calls the handler one message at a time, in stream order. A message is acknowledged only
 *   after the handler returned 0; a failure is redelivered with backoff; after max_deliver
 *   deliveries, or at once when the handler returns GH_BUS_REJECT, the message is published to
 *   the dead-letter subject `<dlq_prefix>.<subject>` with the reason and then acknowledged.
 * - A message delivered but never acknowledged (consumer died, GH_BUS_ABANDON) is redelivered
 *   after ack_wait to any subscription of the same durable.
 * - A per-process subscription (gh_bus_sub_opts_t.per_process: caches, broadcasts) has a consumer
 *   of its own instead of a shared durable: it receives only messages published after
 *   gh_bus_subscribe returned, no other subscription shares it (two of them each get every
 *   message), and it is forgotten when unsubscribed (nats: the consumer is deleted; should the
 *   process die first, the server removes it after inactive_ms). While it lives, acks, naks
 *   with backoff, GH_BUS_REJECT, GH_BUS_ABANDON and dead-lettering behave as for a durable;
 *   what is unacknowledged when it goes is dropped with it, since no other process could take
 *   it over.
 * - Subjects are dot-separated tokens; filters use `*` (one token) and `>` (one or more trailing
 *   tokens) as in NATS. Only subjects within the stream's subjects are accepted, and a
 *   subscription filter must lie within them too (JetStream's rule, applied by both backends):
 *   with the default stream subjects "*.*.*", subscribe to "number.*.*", not "number.>". */
#ifndef GH_BUS_H
#define GH_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

typedef struct gh_bus_s gh_bus_t;
typedef struct gh_bus_sub_s gh_bus_sub_t;

/* Headers carried on dead-lettered messages (besides the original headers). */
#define GH_BUS_HDR_DLQ_REASON     "Gh-Dlq-Reason"
#define GH_BUS_HDR_DLQ_SUBJECT    "Gh-Dlq-Subject"
#define GH_BUS_HDR_DLQ_MSG_ID     "Gh-Dlq-Msg-Id"
#define GH_BUS_HDR_DLQ_DELIVERIES "Gh-Dlq-Deliveries"

typedef struct gh_bus_hdr_s {
	const char *key;
	const char *value;
} gh_bus_hdr_t;

/* A message. For publishing, fill subject, msg_id (may be NULL: no de-duplication), data, len,
 * headers. A handler receives one whose strings and data live until the handler returns, with
 * delivery (1 on the first delivery) and seq (stream sequence) set. */
typedef struct gh_bus_msg_s {
	const char *subject;
	const char *msg_id;
	const void *data;
	size_t len;
	const gh_bus_hdr_t *headers;
	size_t n_headers;
	uint32_t delivery;
	uint64_t seq;
} gh_bus_msg_t;

/* Options of gh_bus_open; NULL or a zero field means the default in brackets. */
typedef struct gh_bus_opts_s {
	const char *stream;          /* JetStream stream name ["GHASI"] */
	const char *const *subjects; /* stream subjects [{"*.*.*"}]; for each one S the */
	size_t n_subjects;           /*   stream also gets "<dlq_prefix>.S" */
	int64_t duplicate_window_ms; /* de-duplication window [120000] */
	int64_t max_age_ms;          /* retention by age [0: unlimited] */
	int64_t max_msgs;            /* retention by count [nats: unlimited, inproc 1000000] */
	int memory_storage;          /* JetStream memory storage instead of file [0] */
	int max_deliver;             /* default deliveries before dead-lettering [5] */
	int64_t ack_wait_ms;         /* default redelivery delay of an unacked message [30000] */
	int64_t backoff_ms;          /* default nak delay of the first failure [500]; doubles */
	int64_t backoff_max_ms;      /*   per delivery up to this [30000] */
	const char *dlq_prefix;      /* dead-letter subject prefix ["dlq"] */
	int64_t publish_timeout_ms;  /* wait for a JetStream ack [5000] */
	const char *name;            /* connection name for the server's monitoring */
	gh_clock_t *clock;           /* de-duplication window clock (inproc) [real] */
} gh_bus_opts_t;

/* Per-subscription overrides; NULL or zero fields take the bus defaults. */
typedef struct gh_bus_sub_opts_s {
	int max_deliver;
	int64_t ack_wait_ms;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	int batch; /* messages fetched per pull (nats) [64] */
	/* 1: a per-process consumer (see top); the durable argument is then a name prefix and
	 * the consumer is named "<prefix>-<random>" (gh_bus_sub_name). */
	int per_process;
	/* per_process on nats: the server deletes the consumer after this long without the
	 * process pulling [30000] */
	int64_t inactive_ms;
} gh_bus_sub_opts_t;

/* Handler outcomes besides 0 (ack) and a negative errno (failed: redeliver with backoff). */
enum {
	/* The message is invalid (e.g. schema): dead-letter it now, never retry. */
	GH_BUS_REJECT = 1,
	/* Leave the message unacknowledged, exactly as if the consumer had died while handling
	 * it: it comes back after ack_wait. For crash-recovery tests and handlers that cannot
	 * tell the outcome. */
	GH_BUS_ABANDON = 2,
};

/* Called on the subscription's worker thread. Write why it failed or was rejected into reason
 * (NUL-terminated, truncated to reason_len); it travels in the dead-letter header. */
typedef int (*gh_bus_handler_t)(const gh_bus_msg_t *msg, void *ud, char *reason, size_t reason_len);

/* Open a bus as a talloc child of ctx (freeing it closes the bus). For nats:// connects,
 * creates or updates the stream (subjects, storage, duplicate window, limits) and reconnects
 * forever afterwards. Returns 0, -EINVAL (bad url or options), -ECONNREFUSED (no server), -EIO
 * (stream could not be created), -ENOMEM. */
int gh_bus_open(void *ctx, const char *url, const gh_bus_opts_t *opts, gh_bus_t **out);
/* Stop every subscription (each in-flight handler finishes), wait for outstanding publishes,
 * flush and disconnect, free. NULL is a no-op. */
void gh_bus_close(gh_bus_t *bus);
/* "inproc" or "nats". */
const char *gh_bus_backend(const gh_bus_t *bus);

/* Publish one message and wait until it is durably accepted. msg_id (may be NULL) is the
 * de-duplication id; a duplicate inside the window returns 0 and is not stored twice.
 * Returns 0, -EINVAL (bad subject), -ETIMEDOUT (no acknowledgement in time: it may or may not
 * be stored; re-publish with the same msg_id), -EIO (refused, subject outside the stream, or
 * not connected). Thread-safe. */
int gh_bus_publish(gh_bus_t *bus, const char *subject, const char *msg_id, const void *data,
                   size_t len, const gh_bus_hdr_t *headers, size_t n_headers);
/* Publish n messages pipelined (JetStream async publish) and wait for their acknowledgements.
 * *n_acked is the length of the prefix msgs[0..*n_acked) that is durably accepted; later
 * messages may be stored too, and must be re-published with the same msg_id. Returns 0 when all
 * n were accepted, else the error of msgs[*n_acked] as gh_bus_publish. Thread-safe (batches on
 * one bus are serialised). */
int gh_bus_publish_batch(gh_bus_t *bus, const gh_bus_msg_t *msgs, size_t n, size_t *n_acked);

/* Subscribe durable consumer `durable` (letters, digits, '-' and '_') to messages matching
 * subject_filter and start its worker thread (opts->per_process: a consumer of this process
 * alone, durable is the prefix of its name). The subscription is a talloc child of the bus.
 * For nats the consumer is created, or updated when it exists, with explicit acks.
 * Returns 0, -EINVAL (bad arguments, or a filter outside the stream's subjects), -EEXIST (the
 * durable exists with another filter), -EIO. */
int gh_bus_subscribe(gh_bus_t *bus, const char *subject_filter, const char *durable,
                     gh_bus_handler_t handler, void *ud, const gh_bus_sub_opts_t *opts,
                     gh_bus_sub_t **out);
/* Stop the worker: an in-flight handler finishes and its outcome is applied; messages fetched
 * but not handed to the handler go back to the durable at once. The durable itself stays; a
 * per-process consumer is deleted (nats: when the server cannot be reached, it expires after
 * inactive_ms). NULL is a no-op. Must not be called from the subscription's own handler. */
void gh_bus_unsubscribe(gh_bus_sub_t *sub);
/* The consumer's name: the durable, or the generated name of a per-process consumer. */
const char *gh_bus_sub_name(const gh_bus_sub_t *sub);

/* Readiness for /readyz: 0 when the bus can publish (nats: connected and the server answers a
 * ping within 1 s), else -EIO with why filled. ud is the gh_bus_t. */
int gh_bus_ready(void *ud, char *why, size_t n);

/* Value of the first header named key (case-sensitive), or NULL. */
const char *gh_bus_msg_header(const gh_bus_msg_t *msg, const char *key);
/* 1 when subject matches filter (NATS `*` and `>` rules), else 0. */
int gh_bus_subject_match(const char *filter, const char *subject);
/* 1 when subject is a valid publish subject (non-empty tokens, no wildcards, no spaces). */
int gh_bus_subject_valid(const char *subject);

#endif
