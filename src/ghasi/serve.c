/* serve, migrate: host the enabled services until SIGTERM; apply migrations. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "log.h"
#include "numbering/service.h"
#include "services.h"

const gh_service_t *const ghasi_services[] = {
    &num_service,
    NULL,
};

void ghasi_config_register(void) { num_config_register(); }

const gh_service_t *ghasi_service_find(const char *name)
{
	for (size_t i = 0; ghasi_services[i]; i++)
		if (strcmp(ghasi_services[i]->name, name) == 0)
			return ghasi_services[i];
	return NULL;
}

/* The enabled services this binary has; services configured but not yet built are named in
 * one warning so nobody mistakes their absence for a silent success. */
static size_t enabled(const gh_config_t *cfg, const gh_service_t **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->service.enabled.n; i++) {
		const char *name = cfg->service.enabled.v[i];
		const gh_service_t *svc = ghasi_service_find(name);
		if (!svc) {
			gh_log(GH_LOG_WARN,
			       "service enabled in the configuration is not in this build", "name",
			       name, NULL);
			continue;
		}
		if (n < max)
			out[n++] = svc;
	}
	return n;
}

int ghasi_serve(void *ctx, const gh_config_t *cfg)
{
	gh_app_block_signals(); /* before any thread exists, so all inherit the mask */
	gh_err_t err = {0};
	gh_app_t *app = NULL;
	const gh_service_t *svcs[16];
	size_t n = enabled(cfg, svcs, 16);
	int rc = gh_app_open(ctx, cfg, NULL, svcs, n, &app, &err);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = gh_app_mount(app, svcs[i], &err);
	if (rc == 0)
		rc = gh_app_start(app, &err);
	if (rc < 0) {
		gh_log(GH_LOG_ERROR, "cannot start", "error", gh_code_name(err.code), "detail",
		       err.message, NULL);
		gh_err_clear(&err);
		talloc_free(app ? app->ctx : NULL);
		return 1;
	}
	int sig = gh_app_wait_signal();
	gh_log(GH_LOG_INFO, "signal received: draining", "signal", sig == 15 ? "SIGTERM" : "SIGINT",
	       NULL);
	rc = gh_app_shutdown(app);
	talloc_free(app->ctx);
	return rc == 0 ? 0 : 1;
}

int ghasi_migrate(void *ctx, const gh_config_t *cfg)
{
	gh_err_t err = {0};
	gh_app_t *app = NULL;
	const gh_service_t *svcs[16];
	size_t n = enabled(cfg, svcs, 16);
	int rc = gh_app_open(ctx, cfg, NULL, svcs, n, &app, &err); /* applies the core migrations */
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = gh_app_migrate(app, svcs[i], &err);
	if (rc < 0) {
		fprintf(stderr, "ghasi migrate: %s\n", err.message);
		gh_err_clear(&err);
		talloc_free(app ? app->ctx : NULL);
		return 1;
	}
	printf("migrations applied\n");
	talloc_free(app->ctx);
	return 0;
}
