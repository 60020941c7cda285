/* outbox: the transactional outbox and its relay (conventions.md "Events").
 *
 * A producer calls gh_outbox_add() inside the transaction of its state change, so the event
 * exists exactly when the change does. The relay publishes pending rows in id order with the
 * event id as the bus de-duplication id, and marks them published afterwards. A crash between
 * publish and mark re-publishes the same ids on the next round; the bus drops the duplicates.
 *
 * Order: events of one aggregate get aggregate_seq 1, 2, ... from gh_outbox_agg, whose row is
 * locked by the producing transaction until it commits, so two transactions on one aggregate
 * insert (and commit) their outbox rows in aggregate_seq order and the relay, which reads in id
 * order and marks exact ids, publishes them in that order. Only one relay should run per
 * database: give it a lease name and every replica may start one. */
#ifndef GH_OUTBOX_H
#define GH_OUTBOX_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "clock.h"
#include "metrics.h"
#include "store.h"

typedef struct gh_event_s {
	const char *type;         /* subject: "number.assigned.v1" */
	const char *source;       /* "ghasi/numbering" */
	const char *tenant_id;    /* may be NULL */
	const char *aggregate_id; /* "number/+93701234567" */
	const char *traceparent;  /* may be NULL */
	int64_t time_ms;
	const json_t *data; /* may be NULL ({}) */
} gh_event_t;

/* Add ev to the outbox in the caller's open write transaction on c. The envelope is
 * {"id","type","source","time","tenant_id","aggregate_id","aggregate_seq","traceparent","data"}.
 * event_id (may be NULL) gets the new event's UUIDv7; *aggregate_seq (may be NULL) its sequence.
 * Returns 0, -EINVAL (no transaction, bad type/aggregate), or the store's error. */
int gh_outbox_add(gh_conn_t *c, const gh_event_t *ev, char event_id[37], int64_t *aggregate_seq);
/* Add evs[0..n) in that order, as n gh_outbox_add calls would, in fewer statements: one
 * aggregate upsert per run of adjacent events of one aggregate (it adds the run's length), then
 * the rows in one gh_conn_exec_batch (one pipeline round trip on PostgreSQL) per 256 events.
 * event_ids and aggregate_seqs (each may be NULL) get n entries. Returns 0; -EINVAL before any
 * statement when there is no transaction or an event is invalid; else the store's error, or
 * -EINVAL for data that cannot be encoded, after which the caller rolls back. */
int gh_outbox_add_many(gh_conn_t *c, const gh_event_t *evs, size_t n, char (*event_ids)[37],
                       int64_t *aggregate_seqs);

typedef struct gh_outbox_relay_s gh_outbox_relay_t;

typedef struct gh_outbox_relay_opts_s {
	int poll_ms;            /* idle wait between rounds [100] (gh_outbox_relay_kick wakes it) */
	int batch;              /* rows per round [500] */
	int64_t retention_ms;   /* published rows are deleted after this [24 h]; < 0 keeps them */
	const char *lease_name; /* when set, a round runs only while this replica holds the lease */
	const char *holder;     /* this replica's id, for the lease */
	gh_clock_t *clock;      /* [real] */
	gh_metrics_t *metrics;  /* when set: published/errors counters, pending and lag gauges */
} gh_outbox_relay_opts_t;

/* A relay over store and bus, talloc child of ctx; not started. opts may be NULL. */
int gh_outbox_relay_new(void *ctx, gh_store_t *store, gh_bus_t *bus,
                        const gh_outbox_relay_opts_t *opts, gh_outbox_relay_t **out);
/* Start the relay thread. Returns 0 or -EAGAIN (no thread). */
int gh_outbox_relay_start(gh_outbox_relay_t *r);
/* Wake the relay now (after a local commit that added events). Cheap; any thread. */
void gh_outbox_relay_kick(gh_outbox_relay_t *r);
/* One round: read up to batch pending rows, publish them in order, mark what the bus accepted.
 * mark = 0 skips the marking, which is what a crash between publish and mark leaves behind
 * (tests use it). *published gets the count published. Returns 0 or a negative errno (the bus
 * or store error; rows not marked are retried next round). */
int gh_outbox_relay_round(gh_outbox_relay_t *r, int mark, size_t *published);
/* Stop the thread after publishing what is pending (the SIGTERM flush), waiting at most
 * flush_ms. Returns 0, or -ETIMEDOUT when rows were still pending at the deadline. */
int gh_outbox_relay_stop(gh_outbox_relay_t *r, int flush_ms);

/* Pending rows and the age in ms of the oldest one (0 when none): the relay's lag. */
int gh_outbox_pending(gh_store_t *s, int64_t now_ms, int64_t *count, int64_t *oldest_age_ms);

#endif
