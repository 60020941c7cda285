/* service: the hosting process (app) and service mounting. See service.h. */
#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "lease.h"
#include "log.h"
#include "migrate.h"
#include "uuid.h"

#define MAX_CONSUMERS 16
/* Server-side expiry of a per-instance consumer whose process is gone. Longer than the bus
 * default because the consumer's worker cannot pull while its first handler waits for the
 * service's init (index loads); an orphan costs the server only a little memory meanwhile. */
#define PER_INSTANCE_INACTIVE_MS 300000

struct mounted_s;

/* The ud of a per-instance consumer's subscription, which starts before the state exists. */
typedef struct consumer_ref_s {
	struct mounted_s *m;
	const gh_service_consumer_t *c;
} consumer_ref_t;

/* What the app keeps per mounted service, for shutdown. */
typedef struct mounted_s {
	const gh_service_t *svc;
	void *state;
	gh_bus_sub_t *subs[MAX_CONSUMERS];
	consumer_ref_t refs[MAX_CONSUMERS];
	size_t nsubs;
	/* 0 while init runs, 1 once it returned 0, -1 when it failed: held per-instance
	 * handlers wait for it to leave 0 (mu, cv). */
	atomic_int gate;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct mounted_s *next;
} mounted_t;

typedef struct app_priv_s {
	gh_app_t pub;
	gh_lease_ctx_t lease;
	mounted_t *mounted;
	int started;
	int shut;
} app_priv_t;

static app_priv_t *priv(gh_app_t *app) { return (app_priv_t *)app; }

static int store_ready(void *ud, char *why, size_t n)
{
	int rc = gh_store_ping(ud, 1000);
	if (rc < 0)
		snprintf(why, n, "database unreachable (%s)", strerror(-rc));
	return rc;
}

static int app_destructor(app_priv_t *a)
{
	gh_app_shutdown(&a->pub);
	return 0;
}

int gh_app_open(void *ctx, const gh_config_t *cfg, gh_clock_t *clock,
                const gh_service_t *const *svcs, size_t n, gh_app_t **out, gh_err_t *err)
{
	app_priv_t *a = talloc_zero(ctx, app_priv_t);
	if (!a)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
	gh_app_t *app = &a->pub;
	app->ctx = a;
	app->cfg = cfg;
	app->clock = clock ? clock : gh_clock_real();
	char host[32] = "host", id[37];
	gethostname(host, sizeof(host) - 1);
	gh_uuid_v4(id);
	snprintf(app->instance_id, sizeof(app->instance_id), "%.24s-%d-%.8s", host, (int)getpid(),
	         id);

	app->metrics = gh_metrics_new(a);
	gh_store_opts_t so = {.pool_size = (unsigned)cfg->store.pool_size,
	                      .busy_timeout_ms = (int)cfg->store.busy_timeout_ms,
	                      .sync_full = cfg->store.synchronous == GH_SYNC_FULL};
	int rc = gh_store_open(a, cfg->store.url, &so, &app->store);
	if (rc < 0) {
		gh_err_set(err, GH_E_UNAVAILABLE, "/store/url", "cannot open store %s: %s",
		           cfg->store.url, strerror(-rc));
		goto fail;
	}
	rc = gh_migrate_run(app->store, "core", gh_sql_files, err);
	if (rc < 0)
		goto fail;

	/* The stream's subjects: what the services publish and what they consume from outside,
	 * each once (two services may consume one subject; JetStream refuses duplicates). */
	const char **subjects = talloc_array(a, const char *, 1);
	size_t nsub = 0;
	for (size_t i = 0; i < n; i++)
		for (int list = 0; list < 2; list++)
			for (const char *const *sj = list ? svcs[i]->consumes : svcs[i]->subjects;
			     sj && *sj; sj++) {
				size_t k = 0;
				while (k < nsub && strcmp(subjects[k], *sj) != 0)
					k++;
				if (k < nsub)
					continue;
				subjects = talloc_realloc(a, subjects, const char *, nsub + 1);
				subjects[nsub++] = *sj;
			}
	gh_bus_opts_t bo = {.stream = cfg->bus.stream,
	                    .subjects = nsub ? subjects : NULL,
	                    .n_subjects = nsub,
	                    .dlq_prefix = cfg->bus.dlq_prefix,
	                    .max_deliver = (int)cfg->bus.max_deliver,
	                    .ack_wait_ms = cfg->bus.ack_wait_ms,
	                    .name = app->instance_id};
	rc = gh_bus_open(a, cfg->bus.url, &bo, &app->bus);
	if (rc < 0) {
		gh_err_set(err, GH_E_UNAVAILABLE, "/bus/url", "cannot open bus %s: %s",
		           cfg->bus.url, strerror(-rc));
		goto fail;
	}

	/* Internal (GH_AUTH_MTLS) routes are open without TLS only in the embedded profile, so
	 * a developer is not locked out; scale-out fails closed. */
	gh_http_config_t hc = {
	    .bind = cfg->http.bind,
	    .port = (uint16_t)cfg->http.port,
	    .threads = (unsigned)cfg->http.threads,
	    .body_limit = (size_t)cfg->http.body_limit,
	    .metrics = app->metrics,
	    .tls_cert = cfg->http.tls_cert,
	    .tls_key = cfg->http.tls_key,
	    .tls_client_ca = cfg->http.tls_client_ca,
	    .client_cn_allowlist = (const char *const *)cfg->http.client_cn_allowlist.v,
	    .require_client_cert = cfg->http.require_client_cert,
	    .mtls_open_without_tls = cfg->service.profile == GH_PROFILE_EMBEDDED,
	};
	app->http = gh_http_server_new(a, &hc);
	if (!app->http) {
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT,
		                cfg->http.tls_cert[0] ? "/http" : "/http/bind",
		                "cannot set up the HTTP server on %s (bad address or TLS files; "
		                "see the log)",
		                cfg->http.bind);
		goto fail;
	}
	if ((rc = gh_auth_from_config(a, cfg, app->clock, &app->auth, err)) < 0 ||
	    (rc = gh_auth_attach(app->http, app->auth)) < 0)
		goto fail;
	if (!cfg->http.tls_cert[0])
		gh_log(GH_LOG_WARN,
		       cfg->service.profile == GH_PROFILE_EMBEDDED
		           ? "http: TLS off: internal routes are open (embedded profile)"
		           : "http: TLS off: internal routes refuse every caller (scale-out)",
		       NULL);
	gh_http_readiness(app->http, "store", store_ready, app->store);
	gh_http_readiness(app->http, "bus", gh_bus_ready, app->bus);

	app->sched = gh_sched_new(a, app->clock);
	a->lease = (gh_lease_ctx_t){app->store, app->instance_id};
	gh_sched_set_lease(app->sched, gh_lease_sched_hook, &a->lease);

	gh_outbox_relay_opts_t ro = {.poll_ms = (int)cfg->outbox.poll_ms,
	                             .batch = (int)cfg->outbox.batch,
	                             .lease_name = "outbox-relay",
	                             .holder = app->instance_id,
	                             .clock = app->clock,
	                             .metrics = app->metrics};
	rc = gh_outbox_relay_new(a, app->store, app->bus, &ro, &app->relay);
	if (rc < 0) {
		gh_err_set(err, GH_E_INTERNAL, NULL, "outbox relay: %s", strerror(-rc));
		goto fail;
	}
	talloc_set_destructor(a, app_destructor);
	*out = app;
	return 0;
fail:
	talloc_free(a);
	return rc < 0 ? rc : -EIO;
}

int gh_app_migrate(gh_app_t *app, const gh_service_t *svc, gh_err_t *err)
{
	if (!svc->migrations)
		return 0;
	return gh_migrate_run(app->store, svc->migrations, gh_sql_files, err);
}

/* A per-instance consumer's handler: waits until the service's init returned, then runs the
 * service's handler with the state. A message that arrives while init fails is left
 * unacknowledged; the subscription is going away with it. */
static int gated_handler(const gh_bus_msg_t *msg, void *ud, char *reason, size_t reason_len)
{
	consumer_ref_t *r = ud;
	mounted_t *m = r->m;
	if (atomic_load(&m->gate) == 0) {
		pthread_mutex_lock(&m->mu);
		while (atomic_load(&m->gate) == 0)
			pthread_cond_wait(&m->cv, &m->mu);
		pthread_mutex_unlock(&m->mu);
	}
	if (atomic_load(&m->gate) < 0)
		return GH_BUS_ABANDON;
	return r->c->fn(msg, m->state, reason, reason_len);
}

static void gate_open(mounted_t *m, int v)
{
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->gate, v);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static int mounted_destructor(mounted_t *m)
{
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	return 0;
}

/* Subscribe svc's consumers whose per_instance flag is per_instance. */
static int subscribe_consumers(gh_app_t *app, mounted_t *m, int per_instance, gh_err_t *err)
{
	const gh_service_t *svc = m->svc;
	for (const gh_service_consumer_t *c = svc->consumers; c && c->subject_filter; c++) {
		if ((c->per_instance != 0) != per_instance)
			continue;
		if (m->nsubs == MAX_CONSUMERS)
			return gh_err_set(err, GH_E_INTERNAL, NULL,
			                  "service %s: too many consumers", svc->name);
		const char *name = c->durable ? c->durable : svc->name;
		gh_bus_sub_opts_t o = {.per_process = per_instance,
		                       .inactive_ms = per_instance ? PER_INSTANCE_INACTIVE_MS : 0};
		consumer_ref_t *r = &m->refs[m->nsubs];
		*r = (consumer_ref_t){m, c};
		int rc = per_instance ? gh_bus_subscribe(app->bus, c->subject_filter, name,
		                                         gated_handler, r, &o, &m->subs[m->nsubs])
		                      : gh_bus_subscribe(app->bus, c->subject_filter, name, c->fn,
		                                         m->state, &o, &m->subs[m->nsubs]);
		if (rc < 0)
			return gh_err_set(err, GH_E_UNAVAILABLE, NULL,
			                  "service %s: consumer %s: %s", svc->name, name,
			                  strerror(-rc));
		m->nsubs++;
	}
	return 0;
}

int gh_app_mount(gh_app_t *app, const gh_service_t *svc, gh_err_t *err)
{
	app_priv_t *a = priv(app);
	int rc = gh_app_migrate(app, svc, err);
	if (rc < 0)
		return rc;
	mounted_t *m = talloc_zero(a, mounted_t);
	if (!m)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
	m->svc = svc;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	talloc_set_destructor(m, mounted_destructor);
	rc = subscribe_consumers(app, m, 1, err);
	if (rc == 0 && svc->init && (rc = svc->init(app, &m->state)) < 0)
		rc = gh_err_set(err, GH_E_INTERNAL, NULL, "service %s failed to start: %s",
		                svc->name, strerror(-rc));
	if (rc < 0) {
		gate_open(m, -1);
		for (size_t i = 0; i < m->nsubs; i++)
			gh_bus_unsubscribe(m->subs[i]);
		talloc_free(m);
		return rc;
	}
	gate_open(m, 1);
	m->next = a->mounted;
	a->mounted = m;
	for (const gh_service_route_t *r = svc->routes; r && r->method; r++) {
		gh_http_route_opts_t o = {
		    .body_limit = r->import_body ? (size_t)app->cfg->http.import_body_limit : 0,
		    .auth = r->auth,
		    .roles = r->roles};
		rc = gh_http_route_ex(app->http, r->method, r->pattern, r->fn, m->state, &o);
		if (rc < 0)
			return gh_err_set(err, GH_E_INTERNAL, NULL, "service %s: route %s %s: %s",
			                  svc->name, r->method, r->pattern, strerror(-rc));
	}
	for (const gh_service_job_t *j = svc->jobs; j && j->name; j++) {
		gh_sched_job_def_t d = {.name = j->name,
		                        .schedule = j->schedule,
		                        .fn = j->fn,
		                        .ud = m->state,
		                        .flags = j->flags};
		rc = gh_sched_job_add(app->sched, &d);
		if (rc < 0)
			return gh_err_set(err, GH_E_INTERNAL, NULL, "service %s: job %s: %s",
			                  svc->name, j->name, strerror(-rc));
	}
	if ((rc = subscribe_consumers(app, m, 0, err)) < 0)
		return rc;
	if (svc->ready)
		gh_http_readiness(app->http, svc->name, svc->ready, m->state);
	gh_log(GH_LOG_INFO, "service mounted", "name", svc->name, NULL);
	return 0;
}

int gh_app_start(gh_app_t *app, gh_err_t *err)
{
	app_priv_t *a = priv(app);
	int rc = gh_http_server_start(app->http);
	if (rc < 0)
		return gh_err_set(err, GH_E_UNAVAILABLE, "/http/port",
		                  "cannot listen on %s:%lld: %s", app->cfg->http.bind,
		                  (long long)app->cfg->http.port, strerror(-rc));
	if (!gh_clock_is_test(app->clock) && (rc = gh_sched_start(app->sched)) < 0)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "scheduler: %s", strerror(-rc));
	if ((rc = gh_outbox_relay_start(app->relay)) < 0)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "outbox relay: %s", strerror(-rc));
	a->started = 1;
	char port[8];
	snprintf(port, sizeof(port), "%u", gh_http_server_port(app->http));
	gh_log(GH_LOG_INFO, "serving", "bind", app->cfg->http.bind, "port", port, "instance",
	       app->instance_id, "store", gh_store_backend_names[gh_store_backend(app->store)],
	       "bus", gh_bus_backend(app->bus), NULL);
	return 0;
}

void gh_app_block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int gh_app_wait_signal(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	return sig;
}

int gh_app_shutdown(gh_app_t *app)
{
	app_priv_t *a = priv(app);
	if (a->shut)
		return 0;
	a->shut = 1;
	int rc = 0;
	int64_t grace = app->cfg->http.drain_grace_ms;
	if (a->started && gh_http_server_drain(app->http, (unsigned)grace) < 0) {
		gh_log(GH_LOG_WARN, "drain: requests still in flight at the deadline were cut",
		       NULL);
		rc = -ETIMEDOUT;
	}
	for (mounted_t *m = a->mounted; m; m = m->next)
		for (size_t i = 0; i < m->nsubs; i++)
			gh_bus_unsubscribe(m->subs[i]);
	if (gh_sched_stop(app->sched, grace) < 0) {
		gh_log(GH_LOG_WARN, "drain: a job was still running at the deadline", NULL);
		rc = -ETIMEDOUT;
	}
	for (mounted_t *m = a->mounted; m; m = m->next)
		if (m->svc->stop)
			m->svc->stop(m->state);
	if (gh_outbox_relay_stop(app->relay, 5000) < 0) {
		gh_log(GH_LOG_WARN,
		       "drain: outbox not empty at the deadline; the next start relays it", NULL);
		rc = -ETIMEDOUT;
	}
	gh_bus_close(app->bus);
	app->bus = NULL;
	gh_log(GH_LOG_INFO, "stopped", NULL);
	return rc;
}
