/* config: the one YAML configuration file (libcyaml, typed schema) plus GHASI_<SECTION>_<KEY>
 * environment overrides (STYLE.md, Configuration).
 *
 * Every key is one row of a table (gh_config_key_t), as in redis' standardConfig: its type, its
 * place in the C struct, its default and its bounds. The same row drives the libcyaml schema,
 * the defaults, the bounds check of file values and of environment values, the dump, and the
 * key list for the docs. Unknown sections and keys are errors, so a typo never silently keeps
 * the default. Errors name the key and the line of the file (or the environment variable).
 *
 * Adding a service section ("numbering:" with its own keys), without touching core:
 *
 *   typedef struct { int64_t reserve_ttl_s; char *index_mode; } num_config_t;
 *   static const gh_config_key_t num_keys[] = {
 *       {"reserve_ttl_s", GH_CFG_INT, offsetof(num_config_t, reserve_ttl_s),
 *        .def = 900, .min = 1, .max = 86400, .help = "reservation lifetime"},
 *   };
 *   static const gh_config_section_t num_section = {"numbering", sizeof(num_config_t),
 *       num_keys, sizeof num_keys / sizeof num_keys[0]};
 *   gh_config_register(&num_section);             // at start, before gh_config_load
 *   const num_config_t *nc = gh_config_section(cfg, "numbering");
 *
 * A new key is one more row; its env override (GHASI_NUMBERING_RESERVE_TTL_S) comes for free.
 * Core sections are members of gh_config_t; their rows live in config.c. */
#ifndef GH_CONFIG_H
#define GH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum {
	GH_CFG_INT,  /* int64_t; bounds min..max */
	GH_CFG_BOOL, /* bool; YAML true/false, env true/false/yes/no/on/off/1/0 */
	GH_CFG_STR,  /* char *, never NULL ("" = unset); length bounds min..max (max 0: none) */
	GH_CFG_ENUM, /* int, the index into names; YAML/env take the name */
	GH_CFG_LIST, /* gh_config_list_t; YAML sequence of strings, env comma-separated;
	              * count bounds min..max (max 0: none); names, when set, limits the entries */
} gh_config_type_t;

extern const char *const gh_config_type_names[];

/* Flags of a key. */
#define GH_CFG_SECRET 0x1u /* gh_config_dump writes "***" instead of a non-empty value */

typedef struct gh_config_list_s {
	char **v; /* n entries, then NULL */
	size_t n;
} gh_config_list_t;

typedef struct gh_config_key_s {
	const char *name; /* [a-z0-9_]+ */
	gh_config_type_t type;
	size_t offset;       /* of the value in the section struct */
	int64_t def;         /* INT, BOOL (0/1), ENUM (index) */
	const char *def_str; /* STR; LIST: comma-separated entries ("" or NULL: empty) */
	int64_t min, max;
	const char *const *names; /* ENUM: value names, NULL-terminated; LIST: allowed or NULL */
	unsigned flags;           /* GH_CFG_SECRET */
	/* Optional extra check of a parsed value (points at the value in the section struct).
	 * Returns 0, or -EINVAL with a reason written to msg. */
	int (*check)(const void *value, char *msg, size_t msg_len);
	const char *help; /* one line, for the docs */
} gh_config_key_t;

typedef struct gh_config_section_s {
	const char *name; /* [a-z0-9_]+; the YAML top-level key */
	size_t size;      /* of the section struct */
	const gh_config_key_t *keys;
	size_t n_keys;
} gh_config_section_t;

typedef enum { GH_PROFILE_EMBEDDED, GH_PROFILE_SCALE_OUT } gh_profile_t;
typedef enum { GH_SYNC_NORMAL, GH_SYNC_FULL } gh_sync_t;
extern const char *const gh_profile_names[]; /* "embedded", "scale-out", NULL */
extern const char *const gh_sync_names[];    /* "normal", "full", NULL */

typedef struct gh_config_service_s {
	gh_config_list_t enabled; /* numbering, cdr, roaming, reporting (default: all) */
	int profile;              /* gh_profile_t */
} gh_config_service_t;

typedef struct gh_config_http_s {
	char *bind;
	int64_t port;
	int64_t threads;
	int64_t body_limit;        /* bytes */
	int64_t import_body_limit; /* bytes, for import endpoints */
	int64_t drain_grace_ms;
	char *tls_cert, *tls_key, *tls_client_ca; /* paths; "" = plain HTTP / no mTLS */
	gh_config_list_t client_cn_allowlist;
	bool require_client_cert; /* every route but the probes needs an allowlisted cert */
} gh_config_http_t;

typedef struct gh_config_store_s {
	char *url; /* sqlite://path or postgres[ql]://... */
	int64_t pool_size;
	int64_t busy_timeout_ms;
	int synchronous; /* gh_sync_t */
} gh_config_store_t;

typedef struct gh_config_bus_s {
	char *url; /* inproc:// or nats://host:port */
	char *stream;
	char *dlq_prefix;
	int64_t max_deliver;
	int64_t ack_wait_ms;
} gh_config_bus_t;

typedef struct gh_config_outbox_s {
	int64_t poll_ms;
	int64_t batch;
} gh_config_outbox_t;

typedef struct gh_config_log_s {
	int level; /* gh_log_level_t */
} gh_config_log_t;

typedef struct gh_config_idempotency_s {
	int64_t ttl_s;
} gh_config_idempotency_t;

typedef struct gh_config_archive_s {
	char *dir;
} gh_config_archive_t;

typedef struct gh_config_auth_s {
	char *jwt_hs256_secret;     /* the secret itself; "" = HS256 off */
	char *jwt_rs256_public_key; /* PEM path; "" = RS256 off */
	char *issuer;               /* expected `iss`; "" = not checked */
	char *audience;             /* expected in `aud`; "" = not checked */
	int64_t leeway_s;           /* clock skew allowed on exp/nbf */
	bool disabled;              /* dev only: no token needed (refused in scale-out) */
} gh_config_auth_t;

#define GH_CONFIG_MAX_EXT 16

/* The loaded configuration: immutable once loaded, so any thread may read it. All strings and
 * lists are talloc children of it. */
typedef struct gh_config_s {
	gh_config_service_t service;
	gh_config_http_t http;
	gh_config_store_t store;
	gh_config_bus_t bus;
	gh_config_outbox_t outbox;
	gh_config_log_t log;
	gh_config_idempotency_t idempotency;
	gh_config_archive_t archive;
	gh_config_auth_t auth;
	const char *path; /* the file loaded, or NULL for defaults only */
	/* registered (service) sections, in registration order; see gh_config_section() */
	void *ext[GH_CONFIG_MAX_EXT];
} gh_config_t;

/* Add a section defined outside core. Call at start, single-threaded, before gh_config_load.
 * The section and its keys must outlive the process (static tables).
 * Returns 0; -EEXIST when a section of that name exists; -ENOSPC past GH_CONFIG_MAX_EXT;
 * -EINVAL when the table is malformed (bad name, default out of its bounds). */
int gh_config_register(const gh_config_section_t *sec);

/* Load path (NULL: no file, all defaults), then apply the overrides found in env (a
 * NULL-terminated "NAME=value" array such as environ; NULL: none). On success *out is a new
 * talloc child of ctx. Errors fill err (code INVALID_ARGUMENT, field the JSON pointer of the
 * key, "/http/port", message "<file>:<line>: http.port: ..." or "GHASI_HTTP_PORT: ...",
 * details {"key", "line"} or {"key", "env"}).
 * Returns 0; -ENOENT when path does not exist; -EIO when it cannot be read; -EINVAL for an
 * invalid document or override; -ENOMEM. */
int gh_config_load(void *ctx, const char *path, char **env, gh_config_t **out, gh_err_t *err);
/* The same from a buffer; name is used in messages in place of the file path. */
int gh_config_load_buf(void *ctx, const char *name, const char *buf, size_t len, char **env,
                       gh_config_t **out, gh_err_t *err);

/* A registered section's struct, or NULL when name is not registered. */
const void *gh_config_section(const gh_config_t *cfg, const char *name);

/* The effective configuration as YAML that gh_config_load accepts again (secrets masked).
 * Returns a talloc string child of ctx, or NULL on allocation failure. */
char *gh_config_dump(void *ctx, const gh_config_t *cfg);

/* Visit every (section, key) in document order: core sections, then registered ones. Stops
 * and returns fn's value when it is non-zero. For the docs and --help. */
int gh_config_foreach_key(int (*fn)(void *ud, const gh_config_section_t *sec,
                                    const gh_config_key_t *key),
                          void *ud);
/* The environment variable of a key: GHASI_<SECTION>_<KEY>, upper case. */
void gh_config_env_name(const char *section, const char *key, char *buf, size_t n);

#endif
