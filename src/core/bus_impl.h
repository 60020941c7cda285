/* bus_impl: what bus.c shares with its backends (bus_inproc.c, bus_nats.c). Not public. */
#ifndef GH_BUS_IMPL_H
#define GH_BUS_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus.h"

typedef struct gh__bus_ops_s {
	const char *name;
	/* Connect / create the backend state in bus->be. url is the full URL. */
	int (*open)(gh_bus_t *bus, const char *url);
	/* Release the backend; every subscription is already stopped. */
	void (*close)(gh_bus_t *bus);
	int (*publish)(gh_bus_t *bus, const gh_bus_msg_t *msg);
	int (*publish_batch)(gh_bus_t *bus, const gh_bus_msg_t *msgs, size_t n, size_t *n_acked);
	/* Bind sub to its durable (sub->be) before the worker starts. */
	int (*sub_start)(gh_bus_sub_t *sub);
	/* The worker thread body; returns when sub->stop is set. */
	void (*sub_run)(gh_bus_sub_t *sub);
	/* Wake a worker blocked waiting for messages (sub->stop is already set). */
	void (*sub_wake)(gh_bus_sub_t *sub);
	/* Release sub->be after the worker has been joined. */
	void (*sub_free)(gh_bus_sub_t *sub);
	int (*ready)(gh_bus_t *bus, char *why, size_t n);
} gh__bus_ops_t;

/* Effective options (defaults applied, strings owned by the bus). */
typedef struct gh__bus_cfg_s {
	char *stream;
	char **subjects; /* configured subjects plus "<dlq_prefix>.>" */
	size_t n_subjects;
	int64_t duplicate_window_ms;
	int64_t max_age_ms;
	int64_t max_msgs;
	int memory_storage;
	int max_deliver;
	int64_t ack_wait_ms;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	char *dlq_prefix;
	int64_t publish_timeout_ms;
	char *name;
	gh_clock_t *clock;
} gh__bus_cfg_t;

struct gh_bus_s {
	const gh__bus_ops_t *ops;
	gh__bus_cfg_t cfg;
	void *be;             /* backend state */
	pthread_mutex_t lock; /* guards subs and talloc allocations on the bus */
	gh_bus_sub_t *subs;   /* live subscriptions */
	int closing;
};

struct gh_bus_sub_s {
	gh_bus_t *bus;
	gh_bus_sub_t *next;
	char *filter;
	char *durable;
	gh_bus_handler_t handler;
	void *ud;
	int max_deliver;
	int64_t ack_wait_ms;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	int batch;
	int per_process; /* durable is then the generated consumer name */
	int64_t inactive_ms;
	void *be;
	pthread_t thread;
	int started;
	atomic_int stop;
};

extern const gh__bus_ops_t gh__bus_inproc_ops;
extern const gh__bus_ops_t gh__bus_nats_ops;

/* What to do with a delivered message after the handler ran. */
typedef enum {
	GH__BUS_ACK,
	GH__BUS_NAK,   /* redeliver after *delay_ms */
	GH__BUS_DLQ,   /* dead-letter with reason, then ack */
	GH__BUS_LEAVE, /* leave unacked until ack_wait */
} gh__bus_outcome_t;

/* Run the handler on msg (msg->delivery set) and decide. A message delivered more than
 * max_deliver times (its consumer died every time) is dead-lettered without calling the
 * handler. reason receives the dead-letter reason. */
gh__bus_outcome_t gh__bus_dispatch(gh_bus_sub_t *sub, const gh_bus_msg_t *msg, char *reason,
                                   size_t reason_len, int64_t *delay_ms);
/* Publish the dead-letter copy of msg (after gh__bus_dispatch said GH__BUS_DLQ): subject
 * "<dlq_prefix>.<subject>", msg id "dlq:<msg_id>", its own headers (minus earlier Gh-Dlq-*)
 * plus the four Gh-Dlq-* headers. Returns 0, or a negative errno (logged): the caller then
 * naks the original after backoff_ms instead of dropping it. */
int gh__bus_dead_letter(gh_bus_sub_t *sub, const gh_bus_msg_t *msg, const char *reason);
/* 1 when every subject matching filter lies within the stream's subjects. */
int gh__bus_in_stream(const gh_bus_t *bus, const char *filter);
/* Monotonic milliseconds (CLOCK_MONOTONIC), for timeouts that must follow real time. */
int64_t gh__bus_mono_ms(void);

#endif
