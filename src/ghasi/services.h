/* services: the services compiled into this binary. */
#ifndef GHASI_SERVICES_H
#define GHASI_SERVICES_H

#include "service.h"

/* NULL-terminated list of every built-in service. */
extern const gh_service_t *const ghasi_services[];

/* The built-in service named name, or NULL. */
const gh_service_t *ghasi_service_find(const char *name);

/* Register the configuration sections of the built-in services (before gh_config_load). */
void ghasi_config_register(void);

/* Subcommands (serve.c). */
int ghasi_serve(void *ctx, const gh_config_t *cfg);
int ghasi_migrate(void *ctx, const gh_config_t *cfg);

#endif
