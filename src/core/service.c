/* service: the hosting process (app) and service mounting. See service.h. */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "lease.h"
#include "log.h"
#include "migrate.h"
#include "uuid.h"

/* What the app keeps per mounted service, for shutdown. */
typedef struct mounted_s {
	const gh_service_t *svc;
	void *state;
	gh_bus_sub_t *subs[16];
	size_t nsubs;
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

	const char **subjects = talloc_array(a, const char *, 1);
	size_t nsub = 0;
	for (size_t i = 0; i < n; i++)
		for (const char *const *sj = svcs[i]->subjects; sj && *sj; sj++) {
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

int gh_app_mount(gh_app_t *app, const gh_service_t *svc, gh_err_t *err)
{
	app_priv_t *a = priv(app);
	int rc = gh_app_migrate(app, svc, err);
	if (rc < 0)
		return rc;
	mounted_t *m = talloc_zero(a, mounted_t);
	m->svc = svc;
	if (svc->init && (rc = svc->init(app, &m->state)) < 0)
		return gh_err_set(err, GH_E_INTERNAL, NULL, "service %s failed to start: %s",
		                  svc->name, strerror(-rc));
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
	for (const gh_service_consumer_t *c = svc->consumers; c && c->subject_filter; c++) {
		if (m->nsubs == sizeof(m->subs) / sizeof(m->subs[0]))
			return gh_err_set(err, GH_E_INTERNAL, NULL,
			                  "service %s: too many consumers", svc->name);
		rc = gh_bus_subscribe(app->bus, c->subject_filter, c->durable, c->fn, m->state,
		                      NULL, &m->subs[m->nsubs]);
		if (rc < 0)
			return gh_err_set(err, GH_E_UNAVAILABLE, NULL,
			                  "service %s: consumer %s: %s", svc->name, c->durable,
			                  strerror(-rc));
		m->nsubs++;
	}
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
