/* service: how a service plugs into `ghasi serve`, and the process ("app") that hosts it.
 *
 * A service is one static table (gh_service_t): its migrations, routes, jobs, consumers,
 * readiness check and the init/stop hooks that build and tear down its in-memory state. The
 * app owns what services share (configuration, clock, store, bus, metrics, HTTP server,
 * scheduler, outbox relay), mounts each enabled service's table, runs until SIGTERM/SIGINT and
 * shuts down in order: HTTP drain -> consumers -> jobs -> services -> outbox flush -> bus ->
 * store. Integration tests and benchmarks use the same app, so they run the code `serve` runs. */
#ifndef GH_SERVICE_H
#define GH_SERVICE_H

#include "auth.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "err.h"
#include "http.h"
#include "metrics.h"
#include "outbox.h"
#include "scheduler.h"
#include "store.h"

typedef struct gh_app_s gh_app_t;

typedef struct gh_service_route_s {
	const char *method;   /* "GET", "POST", ... */
	const char *pattern;  /* router.h syntax: "/v1/numbering/numbers/{id}:reserve" */
	gh_http_handler_t fn; /* called with the service state as ud */
	int import_body;      /* 1: the route takes http.import_body_limit instead of body_limit */
	/* Who may call it (http.h): GH_AUTH_MTLS for the internal surface (other platform
	 * services), GH_AUTH_JWT + a GH_ROLE_* mask (0: any valid token) for portal and admin
	 * routes; the JWT's caller is gh_http_principal(req) in the handler. */
	gh_auth_policy_t auth;
	uint32_t roles;
} gh_service_route_t;

typedef struct gh_service_job_s {
	const char *name;     /* unique per process; also the lease name of a leased job */
	const char *schedule; /* cron or @every (scheduler.h) */
	gh_sched_job_fn fn;   /* called with the service state as ud */
	unsigned flags;       /* GH_SCHED_LEASED: once per deployment */
} gh_service_job_t;

typedef struct gh_service_consumer_s {
	const char *subject_filter;
	const char *durable; /* durable consumer name, shared by the service's replicas */
	gh_bus_handler_t fn; /* called with the service state as ud */
	/* 1: every replica gets every message (cache invalidation): a per-process bus consumer
	 * (bus.h) named "<durable>-<random>" (durable NULL: the service's name). It is
	 * subscribed before the service's init runs, so a snapshot loaded in init misses
	 * nothing published after it; fn is held until init returned (never called when init
	 * fails). A shared consumer (0) starts after init. */
	int per_instance;
} gh_service_consumer_t;

typedef struct gh_service_s {
	const char *name;       /* "numbering" */
	const char *migrations; /* service key of sql/<key>/ in gh_sql_files; NULL: none */
	/* Subjects the service publishes (NATS filters, "number.*.v1"); the app's stream carries
	 * the union of the mounted services' subjects. NULL-terminated; may be NULL. */
	const char *const *subjects;
	/* Build the service's state after migrations ran and before anything is served. */
	int (*init)(gh_app_t *app, void **state);
	/* Release what init built, after routes, jobs and consumers stopped. May be NULL. */
	void (*stop)(void *state);
	const gh_service_route_t *routes;       /* ends with {NULL}; may be NULL */
	const gh_service_job_t *jobs;           /* ends with {NULL}; may be NULL */
	const gh_service_consumer_t *consumers; /* ends with {NULL}; may be NULL */
	gh_http_ready_fn ready; /* /readyz check with the state as ud; may be NULL */
	/* Subjects the service consumes from producers outside ghasi (compliance, billing, the
	 * sender-id registry: "tenant.deleted.v1"). A bus consumer can only read the app's one
	 * stream, so that stream carries them too: the producers publish on these subjects and
	 * the stream captures them (no other stream may claim them). NULL-terminated; may be
	 * NULL. Kept apart from `subjects` so the stream's contract says who owns what. */
	const char *const *consumes;
} gh_service_t;

struct gh_app_s {
	void *ctx;
	const gh_config_t *cfg;
	gh_clock_t *clock;
	gh_store_t *store;
	gh_bus_t *bus;
	gh_metrics_t *metrics;
	gh_http_server_t *http;
	gh_auth_t *auth; /* JWT verifier of the auth section, attached to http */
	gh_sched_t *sched;
	gh_outbox_relay_t *relay;
	char instance_id[64]; /* host-pid-random: lease holder and log field */
};

/* Open the shared parts from cfg (store, bus, metrics, HTTP server not yet listening,
 * scheduler, outbox relay) for the n services svcs that will be mounted (their subjects make
 * the bus stream), and apply the core migrations. clock may be NULL (real).
 * Returns 0 or a negative errno with err filled (which dependency, why). */
int gh_app_open(void *ctx, const gh_config_t *cfg, gh_clock_t *clock,
                const gh_service_t *const *svcs, size_t n, gh_app_t **out, gh_err_t *err);
/* Apply svc's migrations, run its init and register its routes, jobs, consumers and readiness
 * check. Before gh_app_start. Returns 0 or a negative errno with err filled. */
int gh_app_mount(gh_app_t *app, const gh_service_t *svc, gh_err_t *err);
/* Apply only the migrations of svc (for `ghasi migrate`). */
int gh_app_migrate(gh_app_t *app, const gh_service_t *svc, gh_err_t *err);
/* Start listening, the scheduler thread and the outbox relay. */
int gh_app_start(gh_app_t *app, gh_err_t *err);
/* Block SIGTERM and SIGINT in the calling thread (call before any thread is created, so every
 * thread inherits the mask), then later wait for one of them in gh_app_wait_signal. */
void gh_app_block_signals(void);
int gh_app_wait_signal(void);
/* Orderly shutdown (see top). Returns 0 when everything drained in time. Idempotent; freeing
 * the app also shuts it down. */
int gh_app_shutdown(gh_app_t *app);

#endif
