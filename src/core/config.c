/* config: key tables, YAML loading through a libcyaml schema generated from the tables,
 * environment overrides, dump. See config.h.
 *
 * Loading runs in four steps:
 *   1. a libyaml pass records the line of every section and key (and reports syntax errors
 *      with their line), because libcyaml's backtrace points at the last event it consumed,
 *      which for an unknown or duplicate key is the line before;
 *   2. libcyaml loads the document against a schema built from the tables into a raw form in
 *      which every value is a pointer (absent keys stay NULL, so they keep their default);
 *   3. defaults, then file values, are stored in gh_config_t and checked against their row;
 *   4. GHASI_<SECTION>_<KEY> overrides are parsed and checked against the same row. */
#include "config.h"

#include <ctype.h>
#include <cyaml/cyaml.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <talloc.h>
#include <yaml.h>

#include "log.h"

const char *const gh_config_type_names[] = {"int", "bool", "string", "enum", "list", NULL};
const char *const gh_profile_names[] = {"embedded", "scale-out", NULL};
const char *const gh_sync_names[] = {"normal", "full", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const service_names[] = {"numbering", "cdr", "roaming", "reporting", NULL};

/* ---- checks used by rows ---- */

/* s starts with prefix and has something after it */
static int has_prefix(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(s, prefix, n) == 0 && s[n];
}

static int check_store_url(const void *v, char *msg, size_t n)
{
	const char *s = *(char *const *)v;
	if (has_prefix(s, "sqlite://") || has_prefix(s, "postgres://") ||
	    has_prefix(s, "postgresql://"))
		return 0;
	snprintf(msg, n, "'%.100s' must be sqlite://<path> or postgresql://...", s);
	return -EINVAL;
}

static int check_bus_url(const void *v, char *msg, size_t n)
{
	const char *s = *(char *const *)v;
	if (strcmp(s, "inproc://") == 0 || has_prefix(s, "nats://"))
		return 0;
	snprintf(msg, n, "'%.100s' must be inproc:// or nats://host:port", s);
	return -EINVAL;
}

/* Subject tokens: NATS forbids whitespace, '.', '*' and '>' inside a token. */
static int check_token(const void *v, char *msg, size_t n)
{
	const char *s = *(char *const *)v;
	for (const char *p = s; *p; p++) {
		if (isspace((unsigned char)*p) || *p == '.' || *p == '*' || *p == '>') {
			snprintf(msg, n, "'%s' must not contain spaces, '.', '*' or '>'", s);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- the core tables: one row per key ---- */

#define KB    1024LL
#define MB    (1024LL * 1024)
#define DAY_S 86400LL

#define O(sec, f) offsetof(gh_config_##sec##_t, f)
static const gh_config_key_t service_keys[] = {
    {"enabled", GH_CFG_LIST, O(service, enabled), .def_str = "numbering,cdr,roaming,reporting",
     .min = 1, .names = service_names, .help = "services this process hosts"},
    {"profile", GH_CFG_ENUM, O(service, profile), .def = GH_PROFILE_EMBEDDED,
     .names = gh_profile_names, .help = "embedded (SQLite, in-process bus) or scale-out"},
};
static const gh_config_key_t http_keys[] = {
    {"bind", GH_CFG_STR, O(http, bind), .def_str = "127.0.0.1", .min = 1, .max = 255,
     .help = "listen address"},
    {"port", GH_CFG_INT, O(http, port), .def = 8080, .min = 1, .max = 65535, .help = "listen port"},
    {"threads", GH_CFG_INT, O(http, threads), .def = 8, .min = 1, .max = 256,
     .help = "request handler threads"},
    {"body_limit", GH_CFG_INT, O(http, body_limit), .def = 1 * MB, .min = 1 * KB, .max = 1024 * MB,
     .help = "largest request body in bytes (413 beyond)"},
    {"import_body_limit", GH_CFG_INT, O(http, import_body_limit), .def = 64 * MB, .min = 1 * KB,
     .max = 16 * 1024 * MB, .help = "largest import body in bytes"},
    {"drain_grace_ms", GH_CFG_INT, O(http, drain_grace_ms), .def = 30000, .min = 0, .max = 600000,
     .help = "time in-flight requests get to finish on SIGTERM"},
    {"tls_cert", GH_CFG_STR, O(http, tls_cert), .help = "server certificate PEM; empty: plain"},
    {"tls_key", GH_CFG_STR, O(http, tls_key), .help = "server private key PEM"},
    {"tls_client_ca", GH_CFG_STR, O(http, tls_client_ca),
     .help = "CA for client certificates (mTLS); empty: no client certificates"},
    {"client_cn_allowlist", GH_CFG_LIST, O(http, client_cn_allowlist),
     .help = "client certificate CNs allowed (mTLS)"},
    {"require_client_cert", GH_CFG_BOOL, O(http, require_client_cert), .def = 0,
     .help = "every route but /healthz, /readyz, /metrics needs an allowlisted client cert"},
};
static const gh_config_key_t store_keys[] = {
    {"url", GH_CFG_STR, O(store, url), .def_str = "sqlite://var/ghasi.db", .check = check_store_url,
     .help = "sqlite://<path> or postgresql://..."},
    {"pool_size", GH_CFG_INT, O(store, pool_size), .def = 8, .min = 1, .max = 1024,
     .help = "database connections"},
    {"busy_timeout_ms", GH_CFG_INT, O(store, busy_timeout_ms), .def = 5000, .min = 0, .max = 600000,
     .help = "wait for a locked database (SQLite) / lock_timeout (PostgreSQL)"},
    {"synchronous", GH_CFG_ENUM, O(store, synchronous), .def = GH_SYNC_NORMAL,
     .names = gh_sync_names, .help = "SQLite synchronous mode (full: fsync every commit)"},
};
static const gh_config_key_t bus_keys[] = {
    {"url", GH_CFG_STR, O(bus, url), .def_str = "inproc://", .check = check_bus_url,
     .help = "inproc:// or nats://host:port"},
    {"stream", GH_CFG_STR, O(bus, stream), .def_str = "ghasi", .min = 1, .max = 64,
     .check = check_token, .help = "JetStream stream name"},
    {"dlq_prefix", GH_CFG_STR, O(bus, dlq_prefix), .def_str = "dlq", .min = 1, .max = 64,
     .check = check_token, .help = "subject prefix of dead-letter subjects"},
    {"max_deliver", GH_CFG_INT, O(bus, max_deliver), .def = 5, .min = 1, .max = 1000,
     .help = "deliveries before a message is dead-lettered"},
    {"ack_wait_ms", GH_CFG_INT, O(bus, ack_wait_ms), .def = 30000, .min = 100, .max = 3600000,
     .help = "redelivery after an unacknowledged delivery"},
};
static const gh_config_key_t outbox_keys[] = {
    {"poll_ms", GH_CFG_INT, O(outbox, poll_ms), .def = 100, .min = 1, .max = 60000,
     .help = "relay poll interval when idle"},
    {"batch", GH_CFG_INT, O(outbox, batch), .def = 256, .min = 1, .max = 10000,
     .help = "events per relay batch"},
};
static const gh_config_key_t log_keys[] = {
    {"level", GH_CFG_ENUM, O(log, level), .def = GH_LOG_INFO, .names = log_level_names,
     .help = "minimum level written"},
};
static const gh_config_key_t idempotency_keys[] = {
    {"ttl_s", GH_CFG_INT, O(idempotency, ttl_s), .def = DAY_S, .min = 60, .max = 365 * DAY_S,
     .help = "how long idempotency keys are kept"},
};
static const gh_config_key_t archive_keys[] = {
    {"dir", GH_CFG_STR, O(archive, dir), .def_str = "var/archive", .min = 1, .max = 4096,
     .help = "write-once archive directory"},
};
static const gh_config_key_t auth_keys[] = {
    {"jwt_hs256_secret", GH_CFG_STR, O(auth, jwt_hs256_secret), .flags = GH_CFG_SECRET,
     .help = "HS256 secret; empty: HS256 tokens refused"},
    {"jwt_rs256_public_key", GH_CFG_STR, O(auth, jwt_rs256_public_key),
     .help = "RS256 public key PEM path; empty: RS256 tokens refused"},
    {"issuer", GH_CFG_STR, O(auth, issuer), .max = 255,
     .help = "required JWT iss; empty: not checked"},
    {"audience", GH_CFG_STR, O(auth, audience), .max = 255,
     .help = "required JWT aud entry; empty: not checked"},
    {"leeway_s", GH_CFG_INT, O(auth, leeway_s), .def = 30, .min = 0, .max = 300,
     .help = "clock skew allowed on JWT exp and nbf, seconds"},
    {"disabled", GH_CFG_BOOL, O(auth, disabled), .def = 0,
     .help = "development only: JWT routes pass without a token (refused in scale-out)"},
};
#undef O

#define SEC(n)                                                                                \
	{                                                                                     \
#n, sizeof(gh_config_##n##_t), n##_keys, sizeof n##_keys / sizeof n##_keys[0] \
	}
static const gh_config_section_t core_sections[] = {
    SEC(service), SEC(http),        SEC(store),   SEC(bus),  SEC(outbox),
    SEC(log),     SEC(idempotency), SEC(archive), SEC(auth),
};
#undef SEC
static const size_t core_offsets[] = {
    offsetof(gh_config_t, service),     offsetof(gh_config_t, http),
    offsetof(gh_config_t, store),       offsetof(gh_config_t, bus),
    offsetof(gh_config_t, outbox),      offsetof(gh_config_t, log),
    offsetof(gh_config_t, idempotency), offsetof(gh_config_t, archive),
    offsetof(gh_config_t, auth),
};
#define N_CORE (sizeof core_sections / sizeof core_sections[0])
_Static_assert(sizeof core_offsets / sizeof core_offsets[0] == N_CORE, "one offset per section");
_Static_assert(GH_LOG_ERROR == 3, "log_level_names follows gh_log_level_t");

static const gh_config_section_t *g_ext[GH_CONFIG_MAX_EXT];
static size_t g_n_ext;

static size_t n_sections(void) { return N_CORE + g_n_ext; }

static const gh_config_section_t *section_at(size_t i)
{
	return i < N_CORE ? &core_sections[i] : g_ext[i - N_CORE];
}

static char *section_base(gh_config_t *cfg, size_t i)
{
	return i < N_CORE ? (char *)cfg + core_offsets[i] : cfg->ext[i - N_CORE];
}

/* ---- values ---- */

static size_t value_size(gh_config_type_t t)
{
	switch (t) {
	case GH_CFG_INT: return sizeof(int64_t);
	case GH_CFG_BOOL: return sizeof(bool);
	case GH_CFG_STR: return sizeof(char *);
	case GH_CFG_ENUM: return sizeof(int);
	case GH_CFG_LIST: return sizeof(gh_config_list_t);
	}
	return 0;
}

static size_t names_count(const char *const *names)
{
	size_t n = 0;
	while (names && names[n])
		n++;
	return n;
}

static int name_index(const char *const *names, const char *s)
{
	for (size_t i = 0; names && names[i]; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

static void join_names(const char *const *names, char *buf, size_t n)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; names[i] && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", names[i]);
}

/* Split a comma-separated list; surrounding spaces are trimmed, empty entries dropped. */
static int list_from_csv(void *ctx, const char *csv, gh_config_list_t *out)
{
	out->n = 0;
	out->v = talloc_zero_array(ctx, char *, 1);
	if (!out->v)
		return -ENOMEM;
	for (const char *p = csv ? csv : ""; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		const char *b = p;
		while (len && isspace((unsigned char)*b))
			b++, len--;
		while (len && isspace((unsigned char)b[len - 1]))
			len--;
		if (len) {
			char **v = talloc_realloc(ctx, out->v, char *, out->n + 2);
			if (!v)
				return -ENOMEM;
			out->v = v;
			if (!(v[out->n] = talloc_strndup(v, b, len)))
				return -ENOMEM;
			v[++out->n] = NULL;
		}
		p = e ? e + 1 : p + strlen(p);
	}
	return 0;
}

static int list_from_array(void *ctx, char **src, size_t n, gh_config_list_t *out)
{
	out->n = n;
	out->v = talloc_zero_array(ctx, char *, n + 1);
	if (!out->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(out->v[i] = talloc_strdup(out->v, src[i] ? src[i] : "")))
			return -ENOMEM;
	return 0;
}

/* Check a stored value against its row; on failure writes the reason (without the key). */
static int check_value(const gh_config_key_t *k, const void *v, char *msg, size_t n)
{
	char names[256];
	switch (k->type) {
	case GH_CFG_INT: {
		int64_t x = *(const int64_t *)v;
		if (x < k->min || x > k->max) {
			snprintf(msg, n, "%lld is out of range %lld..%lld", (long long)x,
			         (long long)k->min, (long long)k->max);
			return -EINVAL;
		}
		break;
	}
	case GH_CFG_BOOL: break;
	case GH_CFG_STR: {
		size_t len = strlen(*(char *const *)v);
		if ((int64_t)len < k->min || (k->max && (int64_t)len > k->max)) {
			snprintf(msg, n, "length %zu is out of range %lld..%lld", len,
			         (long long)k->min, (long long)(k->max ? k->max : INT64_MAX));
			return -EINVAL;
		}
		break;
	}
	case GH_CFG_ENUM: {
		int x = *(const int *)v;
		if (x < 0 || (size_t)x >= names_count(k->names)) {
			join_names(k->names, names, sizeof names);
			snprintf(msg, n, "must be one of: %.200s", names);
			return -EINVAL;
		}
		break;
	}
	case GH_CFG_LIST: {
		const gh_config_list_t *l = v;
		if ((int64_t)l->n < k->min || (k->max && (int64_t)l->n > k->max)) {
			snprintf(msg, n, "%zu entries, expected %lld..%lld", l->n,
			         (long long)k->min, (long long)(k->max ? k->max : INT64_MAX));
			return -EINVAL;
		}
		for (size_t i = 0; i < l->n; i++) {
			if (!l->v[i][0]) {
				snprintf(msg, n, "entry %zu is empty", i);
				return -EINVAL;
			}
			if (k->names && name_index(k->names, l->v[i]) < 0) {
				join_names(k->names, names, sizeof names);
				snprintf(msg, n, "'%.64s' is not one of: %.160s", l->v[i], names);
				return -EINVAL;
			}
			for (size_t j = 0; j < i; j++) {
				if (strcmp(l->v[i], l->v[j]) == 0) {
					snprintf(msg, n, "'%s' is listed twice", l->v[i]);
					return -EINVAL;
				}
			}
		}
		break;
	}
	default: snprintf(msg, n, "bad type in table"); return -EINVAL;
	}
	return k->check ? k->check(v, msg, n) : 0;
}

static int set_default(void *ctx, const gh_config_key_t *k, void *v)
{
	switch (k->type) {
	case GH_CFG_INT: *(int64_t *)v = k->def; return 0;
	case GH_CFG_BOOL: *(bool *)v = k->def != 0; return 0;
	case GH_CFG_ENUM: *(int *)v = (int)k->def; return 0;
	case GH_CFG_STR:
		*(char **)v = talloc_strdup(ctx, k->def_str ? k->def_str : "");
		return *(char **)v ? 0 : -ENOMEM;
	case GH_CFG_LIST: return list_from_csv(ctx, k->def_str, v);
	}
	return -EINVAL;
}

static int valid_name(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

/* A malformed table is a programmer error, but a registered table comes from another module:
 * refuse it with a message rather than abort. */
static int check_table(const gh_config_section_t *sec, char *msg, size_t n)
{
	void *tmp = talloc_new(NULL);
	char *buf = talloc_zero_size(tmp, sec->size ? sec->size : 1);
	int rc = buf ? 0 : -ENOMEM;
	if (!valid_name(sec->name)) {
		snprintf(msg, n, "bad section name '%s'", sec->name ? sec->name : "");
		rc = -EINVAL;
	}
	for (size_t i = 0; rc == 0 && i < sec->n_keys; i++) {
		const gh_config_key_t *k = &sec->keys[i];
		char why[200];
		if (!valid_name(k->name) || (unsigned)k->type > GH_CFG_LIST ||
		    k->offset + value_size(k->type) > sec->size ||
		    (k->type == GH_CFG_ENUM && !names_count(k->names))) {
			snprintf(msg, n, "%s.%s: bad row", sec->name, k->name ? k->name : "");
			rc = -EINVAL;
		} else if ((rc = set_default(tmp, k, buf + k->offset)) == 0 &&
		           check_value(k, buf + k->offset, why, sizeof why)) {
			snprintf(msg, n, "%s.%s: default: %s", sec->name, k->name, why);
			rc = -EINVAL;
		}
		for (size_t j = 0; rc == 0 && j < i; j++) {
			if (strcmp(sec->keys[j].name, k->name) == 0) {
				snprintf(msg, n, "%s.%s: defined twice", sec->name, k->name);
				rc = -EINVAL;
			}
		}
	}
	talloc_free(tmp);
	return rc;
}

int gh_config_register(const gh_config_section_t *sec)
{
	char msg[256];
	if (!sec)
		return -EINVAL;
	for (size_t i = 0; i < n_sections(); i++)
		if (sec->name && strcmp(section_at(i)->name, sec->name) == 0)
			return -EEXIST;
	if (g_n_ext >= GH_CONFIG_MAX_EXT)
		return -ENOSPC;
	/* "http" + "tls_cert" and "http_tls" + "cert" would share GHASI_HTTP_TLS_CERT */
	for (size_t i = 0; i < n_sections(); i++) {
		const gh_config_section_t *o = section_at(i);
		for (size_t j = 0; j < o->n_keys; j++) {
			for (size_t k = 0; k < sec->n_keys; k++) {
				char a[256], b[256];
				gh_config_env_name(o->name, o->keys[j].name, a, sizeof a);
				gh_config_env_name(sec->name ? sec->name : "",
				                   sec->keys[k].name ? sec->keys[k].name : "", b,
				                   sizeof b);
				if (strcmp(a, b) == 0)
					return -EEXIST;
			}
		}
	}
	int rc = check_table(sec, msg, sizeof msg);
	if (rc) {
		gh_log(GH_LOG_ERROR, "config section refused", "reason", msg, NULL);
		return rc;
	}
	g_ext[g_n_ext++] = sec;
	return 0;
}

const void *gh_config_section(const gh_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < n_sections(); i++)
		if (strcmp(section_at(i)->name, name) == 0)
			return section_base((gh_config_t *)cfg, i);
	return NULL;
}

/* ---- step 1: where each section and key is written ---- */

typedef struct {
	char *sec, *key; /* key NULL for the section's own line */
	int line;
} pos_t;

typedef struct {
	pos_t *v;
	size_t n;
	int err_line; /* syntax error */
	char err[128];
} pos_index_t;

static int pos_add(void *ctx, pos_index_t *ix, const char *sec, const char *key, int line)
{
	pos_t *v = talloc_realloc(ctx, ix->v, pos_t, ix->n + 1);
	if (!v)
		return -ENOMEM;
	ix->v = v;
	v[ix->n].sec = talloc_strdup(ctx, sec);
	v[ix->n].key = key ? talloc_strdup(ctx, key) : NULL;
	v[ix->n].line = line;
	if (!v[ix->n].sec || (key && !v[ix->n].key))
		return -ENOMEM;
	ix->n++;
	return 0;
}

/* Line of the nth (0-based) occurrence of sec.key (key NULL: the section), or 0. */
static int pos_line(const pos_index_t *ix, const char *sec, const char *key, int nth)
{
	for (size_t i = 0; i < ix->n; i++) {
		const pos_t *p = &ix->v[i];
		if (strcmp(p->sec, sec) == 0 &&
		    (key ? p->key && strcmp(p->key, key) == 0 : !p->key) && nth-- == 0)
			return p->line;
	}
	return 0;
}

/* Returns 0, -EINVAL on a YAML syntax error (ix->err, ix->err_line), -ENOMEM. */
static int pos_scan(void *ctx, const char *buf, size_t len, pos_index_t *ix)
{
	enum { MAXD = 32 };
	struct {
		int is_map, expect_key;
		char key[128];
	} st[MAXD];
	int d = 0, rc = 0, done = 0;
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	while (!done && rc == 0) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			ix->err_line = (int)p.problem_mark.line + 1;
			snprintf(ix->err, sizeof ix->err, "%s%s%s", p.problem ? p.problem : "error",
			         p.context ? " " : "", p.context ? p.context : "");
			rc = -EINVAL;
			break;
		}
		int line = (int)ev.start_mark.line + 1;
		int in_map = d > 0 && st[d - 1].is_map;
		switch (ev.type) {
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT:
			if (in_map && st[d - 1].expect_key) {
				const char *k = ev.type == YAML_SCALAR_EVENT
				                    ? (const char *)ev.data.scalar.value
				                    : "";
				snprintf(st[d - 1].key, sizeof st[d - 1].key, "%s", k);
				st[d - 1].expect_key = 0;
				if (d == 1)
					rc = pos_add(ctx, ix, k, NULL, line);
				else if (d == 2)
					rc = pos_add(ctx, ix, st[0].key, k, line);
			} else if (in_map) {
				st[d - 1].expect_key = 1;
			}
			break;
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			if (d == MAXD) {
				ix->err_line = line;
				snprintf(ix->err, sizeof ix->err, "nested too deep");
				rc = -EINVAL;
				break;
			}
			st[d].is_map = ev.type == YAML_MAPPING_START_EVENT;
			st[d].expect_key = 1;
			st[d].key[0] = '\0';
			d++;
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			if (d > 0)
				d--;
			if (d > 0 && st[d - 1].is_map)
				st[d - 1].expect_key = 1;
			break;
		case YAML_STREAM_END_EVENT: done = 1; break;
		default: break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return rc;
}

/* ---- step 2: libcyaml schema generated from the tables ---- */

/* Raw form: the top level is one pointer per section; a section is one slot per key. */
typedef struct {
	void *p;    /* pointer to the value, or the sequence (NULL: key absent) */
	uint64_t n; /* sequence entry count */
} raw_slot_t;

static const cyaml_schema_value_t str_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

static const cyaml_strval_t bool_strings[] = {
    {"false", 0}, {"no", 0}, {"off", 0}, {"true", 1}, {"yes", 1}, {"on", 1},
};

static int build_schema(void *ctx, cyaml_schema_value_t **out)
{
	size_t ns = n_sections();
	cyaml_schema_field_t *top = talloc_zero_array(ctx, cyaml_schema_field_t, ns + 1);
	cyaml_schema_value_t *root = talloc_zero(ctx, cyaml_schema_value_t);
	if (!top || !root)
		return -ENOMEM;
	for (size_t i = 0; i < ns; i++) {
		const gh_config_section_t *s = section_at(i);
		cyaml_schema_field_t *f =
		    talloc_zero_array(ctx, cyaml_schema_field_t, s->n_keys + 1);
		if (!f)
			return -ENOMEM;
		for (size_t j = 0; j < s->n_keys; j++) {
			const gh_config_key_t *k = &s->keys[j];
			cyaml_schema_value_t *v = &f[j].value;
			f[j].key = k->name;
			f[j].data_offset = (uint32_t)(j * sizeof(raw_slot_t));
			v->flags = CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER;
			switch (k->type) {
			case GH_CFG_INT:
				v->type = CYAML_INT;
				v->data_size = sizeof(int64_t);
				break;
			case GH_CFG_BOOL:
				/* libcyaml 1.3 reads anything but "false"/"no"/... as true, even
				 * "maybe": read booleans as a strict enum instead */
				v->type = CYAML_ENUM;
				v->flags |= CYAML_FLAG_STRICT;
				v->data_size = sizeof(bool);
				v->enumeration.strings = bool_strings;
				v->enumeration.count = sizeof bool_strings / sizeof bool_strings[0];
				break;
			case GH_CFG_STR:
				v->type = CYAML_STRING;
				v->data_size = 1;
				v->string.min = 0;
				v->string.max = CYAML_UNLIMITED;
				break;
			case GH_CFG_ENUM: {
				size_t n = names_count(k->names);
				cyaml_strval_t *sv = talloc_zero_array(ctx, cyaml_strval_t, n);
				if (!sv)
					return -ENOMEM;
				for (size_t e = 0; e < n; e++)
					sv[e] = (cyaml_strval_t){k->names[e], (int64_t)e};
				v->type = CYAML_ENUM;
				v->flags |= CYAML_FLAG_STRICT;
				v->data_size = sizeof(int);
				v->enumeration.strings = sv;
				v->enumeration.count = (uint32_t)n;
				break;
			}
			case GH_CFG_LIST:
				v->type = CYAML_SEQUENCE;
				v->data_size = sizeof(char *);
				v->sequence.entry = &str_entry;
				v->sequence.min = 0;
				v->sequence.max = CYAML_UNLIMITED;
				f[j].count_offset =
				    (uint32_t)(j * sizeof(raw_slot_t) + offsetof(raw_slot_t, n));
				f[j].count_size = sizeof(uint64_t);
				break;
			}
		}
		top[i].key = s->name;
		top[i].data_offset = (uint32_t)(i * sizeof(void *));
		top[i].value.type = CYAML_MAPPING;
		/* POINTER_NULL: an empty "http:" is an empty section, not an error */
		top[i].value.flags = CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL;
		top[i].value.data_size = (uint32_t)(s->n_keys * sizeof(raw_slot_t));
		top[i].value.mapping.fields = f;
	}
	root->type = CYAML_MAPPING;
	root->flags = CYAML_FLAG_POINTER;
	root->data_size = (uint32_t)(ns * sizeof(void *));
	root->mapping.fields = top;
	*out = root;
	return 0;
}

/* libcyaml reports an error as a message then a backtrace, innermost first:
 *   Load: Invalid INT value: 'abc'
 *   Load: Backtrace:
 *     in mapping field 'port' (line: 3, column: 9)
 *     in mapping field 'http' (line: 2, column: 3)
 * The log is collected here and turned into key + line afterwards. */
typedef struct {
	char text[2048];
	size_t len;
} cy_log_t;

static void cy_log(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
{
	cy_log_t *l = ctx;
	if (level < CYAML_LOG_ERROR || l->len >= sizeof l->text - 1)
		return;
	int n = vsnprintf(l->text + l->len, sizeof l->text - l->len, fmt, ap);
	if (n > 0)
		l->len +=
		    (size_t)n < sizeof l->text - l->len ? (size_t)n : sizeof l->text - 1 - l->len;
}

typedef struct {
	char reason[160];
	char fields[4][128]; /* mapping field names, outermost first */
	int n_fields;
	int line; /* innermost backtrace line, 0 if none */
	char unexpected[128];
	int duplicate;
} cy_error_t;

static void cy_parse(const cy_log_t *l, cy_error_t *e)
{
	char inner[4][128];
	int n = 0;
	memset(e, 0, sizeof *e);
	for (const char *p = l->text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[256];
		snprintf(line, sizeof line, "%.*s", (int)(len < 255 ? len : 255), p);
		const char *q;
		if (strncmp(line, "Load: ", 6) == 0 && strcmp(line + 6, "Backtrace:") != 0 &&
		    !e->reason[0]) {
			snprintf(e->reason, sizeof e->reason, "%.150s", line + 6);
			if ((q = strstr(line, "Unexpected key: ")))
				snprintf(e->unexpected, sizeof e->unexpected, "%s", q + 16);
			if ((q = strstr(line, "already seen: "))) {
				e->duplicate = 1;
				snprintf(e->unexpected, sizeof e->unexpected, "%s", q + 14);
			}
		} else if ((q = strstr(line, "in mapping field '")) && n < 4) {
			q += 18;
			const char *end = strchr(q, '\'');
			snprintf(inner[n], sizeof inner[n], "%.*s", end ? (int)(end - q) : 0, q);
			n++;
		}
		if (!e->line && (q = strstr(line, "(line: ")))
			e->line = atoi(q + 7);
		p = eol ? eol + 1 : p + len;
	}
	for (int i = 0; i < n; i++)
		snprintf(e->fields[i], sizeof e->fields[i], "%s", inner[n - 1 - i]);
	e->n_fields = n;
}

/* ---- errors ---- */

static int key_error(gh_err_t *err, const char *where, int line, const char *sec, const char *key,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* where: file name (with line) or env variable (line < 0). */
static int key_error(gh_err_t *err, const char *where, int line, const char *sec, const char *key,
                     const char *fmt, ...)
{
	char why[256], field[128], name[128], loc[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	snprintf(field, sizeof field, "/%s%s%s", sec ? sec : "", key ? "/" : "", key ? key : "");
	snprintf(name, sizeof name, "%s%s%s", sec ? sec : "", key ? "." : "", key ? key : "");
	if (line > 0)
		snprintf(loc, sizeof loc, "%s:%d", where, line);
	else
		snprintf(loc, sizeof loc, "%s", where);
	gh_err_set(err, GH_E_INVALID_ARGUMENT, sec ? field : NULL, "%s: %s%s%s", loc, name,
	           name[0] ? ": " : "", why);
	if (err) {
		if (name[0])
			gh_err_detail(err, "key", json_string(name));
		if (line > 0)
			gh_err_detail(err, "line", json_integer(line));
		else if (line < 0)
			gh_err_detail(err, "env", json_string(where));
	}
	return -EINVAL;
}

static const gh_config_key_t *find_key(const gh_config_section_t *s, const char *name)
{
	for (size_t j = 0; j < s->n_keys; j++)
		if (strcmp(s->keys[j].name, name) == 0)
			return &s->keys[j];
	return NULL;
}

static int cy_error_report(gh_err_t *err, const char *name, const pos_index_t *ix,
                           const cy_log_t *log, cyaml_err_t cerr)
{
	cy_error_t e;
	cy_parse(log, &e);
	const char *sec = e.n_fields > 0 ? e.fields[0] : NULL;
	const char *key = e.n_fields > 1 ? e.fields[1] : NULL;
	if (e.unexpected[0] && !e.duplicate) {
		/* unknown section (no field) or unknown key in sec */
		if (!sec)
			return key_error(err, name, pos_line(ix, e.unexpected, NULL, 0),
			                 e.unexpected, NULL, "unknown section");
		return key_error(err, name, pos_line(ix, sec, e.unexpected, 0), sec, e.unexpected,
		                 "unknown key");
	}
	if (e.duplicate) {
		int line =
		    sec ? pos_line(ix, sec, e.unexpected, 1) : pos_line(ix, e.unexpected, NULL, 1);
		return key_error(err, name, line, sec ? sec : e.unexpected,
		                 sec ? e.unexpected : NULL, "given twice");
	}
	if (!sec)
		return key_error(err, name, e.line, NULL, NULL,
		                 "%s (the document must be a mapping "
		                 "of sections)",
		                 e.reason[0] ? e.reason : cyaml_strerror(cerr));
	int line = pos_line(ix, sec, key, 0);
	if (!line)
		line = e.line;
	const char *reason = e.reason[0] ? e.reason : cyaml_strerror(cerr);
	for (size_t i = 0; key && i < n_sections(); i++) {
		const gh_config_key_t *k;
		if (strcmp(section_at(i)->name, sec) || !(k = find_key(section_at(i), key)))
			continue;
		if (k->type == GH_CFG_ENUM) {
			char names[200];
			join_names(k->names, names, sizeof names);
			return key_error(err, name, line, sec, key, "%s (expected one of: %s)",
			                 reason, names);
		}
		return key_error(err, name, line, sec, key, "%s (expected %s%s)", reason,
		                 k->type == GH_CFG_LIST ? "a sequence of strings"
		                                        : gh_config_type_names[k->type],
		                 k->type == GH_CFG_BOOL ? ": true or false" : "");
	}
	return key_error(err, name, line, sec, key, "%s", reason);
}

/* ---- step 3: defaults and file values ---- */

static int apply_defaults(gh_config_t *cfg, gh_err_t *err)
{
	for (size_t i = 0; i < n_sections(); i++) {
		const gh_config_section_t *s = section_at(i);
		if (i >= N_CORE && !(cfg->ext[i - N_CORE] = talloc_zero_size(cfg, s->size)))
			return -ENOMEM;
		char *base = section_base(cfg, i);
		for (size_t j = 0; j < s->n_keys; j++) {
			char why[200];
			int rc = set_default(cfg, &s->keys[j], base + s->keys[j].offset);
			if (rc)
				return rc;
			if (check_value(&s->keys[j], base + s->keys[j].offset, why, sizeof why))
				return key_error(err, "default", 0, s->name, s->keys[j].name, "%s",
				                 why);
		}
	}
	return 0;
}

static int apply_raw(gh_config_t *cfg, void **raw, const char *name, const pos_index_t *ix,
                     gh_err_t *err)
{
	for (size_t i = 0; raw && i < n_sections(); i++) {
		const gh_config_section_t *s = section_at(i);
		raw_slot_t *slots = raw[i];
		char *base = section_base(cfg, i);
		for (size_t j = 0; slots && j < s->n_keys; j++) {
			const gh_config_key_t *k = &s->keys[j];
			void *v = base + k->offset, *p = slots[j].p;
			char why[256];
			int rc = 0;
			/* libcyaml leaves an empty sequence NULL: present means written in the file
			 */
			if (!p && !(k->type == GH_CFG_LIST && pos_line(ix, s->name, k->name, 0)))
				continue;
			switch (k->type) {
			case GH_CFG_INT: *(int64_t *)v = *(int64_t *)p; break;
			case GH_CFG_BOOL: *(bool *)v = *(bool *)p; break;
			case GH_CFG_ENUM: *(int *)v = *(int *)p; break;
			case GH_CFG_STR:
				talloc_free(*(char **)v);
				rc = (*(char **)v = talloc_strdup(cfg, p)) ? 0 : -ENOMEM;
				break;
			case GH_CFG_LIST:
				talloc_free(((gh_config_list_t *)v)->v);
				rc = list_from_array(cfg, p, p ? slots[j].n : 0, v);
				break;
			}
			if (rc)
				return rc;
			if (check_value(k, v, why, sizeof why))
				return key_error(err, name, pos_line(ix, s->name, k->name, 0),
				                 s->name, k->name, "%s", why);
		}
	}
	return 0;
}

/* ---- step 4: environment ---- */

void gh_config_env_name(const char *section, const char *key, char *buf, size_t n)
{
	snprintf(buf, n, "GHASI_%s_%s", section, key);
	for (char *p = buf; *p; p++)
		*p = (char)toupper((unsigned char)*p);
}

static int parse_env(void *ctx, const gh_config_key_t *k, const char *s, void *v, char *why,
                     size_t n)
{
	switch (k->type) {
	case GH_CFG_INT: {
		char *end;
		errno = 0;
		long long x = strtoll(s, &end, 10);
		if (!*s || *end || errno) {
			snprintf(why, n, "'%s' is not an integer", s);
			return -EINVAL;
		}
		*(int64_t *)v = x;
		return 0;
	}
	case GH_CFG_BOOL: {
		static const char *const t[] = {"true", "yes", "on", "1", NULL};
		static const char *const f[] = {"false", "no", "off", "0", NULL};
		for (int i = 0; t[i]; i++) {
			if (strcasecmp(s, t[i]) == 0 || strcasecmp(s, f[i]) == 0) {
				*(bool *)v = strcasecmp(s, t[i]) == 0;
				return 0;
			}
		}
		snprintf(why, n, "'%s' is not a boolean (true or false)", s);
		return -EINVAL;
	}
	case GH_CFG_ENUM: {
		int x = name_index(k->names, s);
		if (x < 0) {
			char names[200];
			join_names(k->names, names, sizeof names);
			snprintf(why, n, "'%s' is not one of: %s", s, names);
			return -EINVAL;
		}
		*(int *)v = x;
		return 0;
	}
	case GH_CFG_STR:
		talloc_free(*(char **)v);
		return (*(char **)v = talloc_strdup(ctx, s)) ? 0 : -ENOMEM;
	case GH_CFG_LIST: talloc_free(((gh_config_list_t *)v)->v); return list_from_csv(ctx, s, v);
	}
	return -EINVAL;
}

static int apply_env(gh_config_t *cfg, char **env, gh_err_t *err)
{
	for (size_t e = 0; env && env[e]; e++) {
		const char *eq = strchr(env[e], '=');
		if (!eq || strncmp(env[e], "GHASI_", 6) != 0)
			continue;
		size_t nlen = (size_t)(eq - env[e]);
		char var[256];
		if (nlen >= sizeof var)
			continue;
		memcpy(var, env[e], nlen);
		var[nlen] = '\0';
		int known_section = 0, matched = 0;
		for (size_t i = 0; !matched && i < n_sections(); i++) {
			const gh_config_section_t *s = section_at(i);
			char prefix[128];
			gh_config_env_name(s->name, "", prefix, sizeof prefix);
			if (strncmp(var, prefix, strlen(prefix)) == 0)
				known_section = (int)i + 1;
			for (size_t j = 0; j < s->n_keys; j++) {
				const gh_config_key_t *k = &s->keys[j];
				char name[256], why[256];
				gh_config_env_name(s->name, k->name, name, sizeof name);
				if (strcmp(name, var) != 0)
					continue;
				matched = 1;
				void *v = section_base(cfg, i) + k->offset;
				int rc = parse_env(cfg, k, eq + 1, v, why, sizeof why);
				if (rc == -ENOMEM)
					return rc;
				if (rc || check_value(k, v, why, sizeof why))
					return key_error(err, var, -1, s->name, k->name, "%s", why);
				break;
			}
		}
		/* GHASI_BIN, GHASI_CONFIG... are not config keys; GHASI_HTTP_PROT is a typo */
		if (!matched && known_section)
			return key_error(err, var, -1, section_at((size_t)known_section - 1)->name,
			                 NULL, "no such key in this section");
	}
	return 0;
}

/* Rules across keys, checked on the final values. */
static int check_cross(const gh_config_t *cfg, const char *name, const pos_index_t *ix,
                       gh_err_t *err)
{
	const gh_config_http_t *h = &cfg->http;
	if (!h->tls_cert[0] != !h->tls_key[0]) {
		const char *missing = h->tls_cert[0] ? "tls_key" : "tls_cert";
		const char *given = h->tls_cert[0] ? "tls_cert" : "tls_key";
		return key_error(err, name ? name : "config",
		                 ix ? pos_line(ix, "http", given, 0) : 0, "http", missing,
		                 "required when http.%s is set", given);
	}
	if (h->tls_client_ca[0] && !h->tls_cert[0])
		return key_error(err, name ? name : "config",
		                 ix ? pos_line(ix, "http", "tls_client_ca", 0) : 0, "http",
		                 "tls_client_ca", "needs http.tls_cert and http.tls_key");
	if (h->tls_client_ca[0] && h->client_cn_allowlist.n == 0)
		return key_error(
		    err, name ? name : "config", ix ? pos_line(ix, "http", "tls_client_ca", 0) : 0,
		    "http", "client_cn_allowlist",
		    "required when http.tls_client_ca is set (no CN would be allowed)");
	if (h->require_client_cert && !h->tls_client_ca[0])
		return key_error(err, name ? name : "config",
		                 ix ? pos_line(ix, "http", "require_client_cert", 0) : 0, "http",
		                 "require_client_cert", "needs http.tls_client_ca");
	if (cfg->auth.disabled && cfg->service.profile == GH_PROFILE_SCALE_OUT)
		return key_error(err, name ? name : "config",
		                 ix ? pos_line(ix, "auth", "disabled", 0) : 0, "auth", "disabled",
		                 "refused in the scale-out profile");
	/* config/ghasi.yaml ships a development secret marked INSECURE; it must never sign the
	 * tokens of a real deployment. */
	if (cfg->service.profile == GH_PROFILE_SCALE_OUT &&
	    strstr(cfg->auth.jwt_hs256_secret, "INSECURE"))
		return key_error(err, name ? name : "config",
		                 ix ? pos_line(ix, "auth", "jwt_hs256_secret", 0) : 0, "auth",
		                 "jwt_hs256_secret",
		                 "the development secret is refused in the scale-out profile");
	return 0;
}

/* ---- load ---- */

static int load(void *ctx, const char *name, const char *buf, size_t len, char **env,
                gh_config_t **out, gh_err_t *err)
{
	void *tmp = talloc_new(NULL);
	gh_config_t *cfg = talloc_zero(ctx, gh_config_t);
	pos_index_t ix = {0};
	void **raw = NULL;
	cyaml_schema_value_t *schema = NULL;
	int rc = tmp && cfg ? 0 : -ENOMEM;
	if (rc)
		goto out;
	if (name && !(cfg->path = talloc_strdup(cfg, name))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = apply_defaults(cfg, err)))
		goto out;
	if (buf) {
		rc = pos_scan(tmp, buf, len, &ix);
		if (rc == -EINVAL) {
			rc = key_error(err, name, ix.err_line, NULL, NULL, "YAML syntax: %s",
			               ix.err);
			goto out;
		}
		if (rc || (rc = build_schema(tmp, &schema)))
			goto out;
		cy_log_t log = {.len = 0};
		const cyaml_config_t cc = {
		    .log_fn = cy_log,
		    .log_ctx = &log,
		    .mem_fn = cyaml_mem,
		    .log_level = CYAML_LOG_ERROR,
		};
		cyaml_err_t ce = cyaml_load_data((const uint8_t *)buf, len, &cc, schema,
		                                 (cyaml_data_t **)&raw, NULL);
		if (ce == CYAML_ERR_OOM) {
			rc = -ENOMEM;
			goto out;
		}
		if (ce != CYAML_OK) {
			rc = cy_error_report(err, name, &ix, &log, ce);
			goto out;
		}
		rc = apply_raw(cfg, raw, name, &ix, err);
		cyaml_free(&cc, schema, raw, 0);
		if (rc)
			goto out;
	}
	if ((rc = apply_env(cfg, env, err)) || (rc = check_cross(cfg, name, buf ? &ix : NULL, err)))
		goto out;
	*out = cfg;
	cfg = NULL;
out:
	if (rc == -ENOMEM)
		gh_err_set(err, GH_E_INTERNAL, NULL, "config: out of memory");
	talloc_free(cfg);
	talloc_free(tmp);
	return rc;
}

int gh_config_load_buf(void *ctx, const char *name, const char *buf, size_t len, char **env,
                       gh_config_t **out, gh_err_t *err)
{
	return load(ctx, name ? name : "config", buf, len, env, out, err);
}

int gh_config_load(void *ctx, const char *path, char **env, gh_config_t **out, gh_err_t *err)
{
	if (!path)
		return load(ctx, NULL, NULL, 0, env, out, err);
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		gh_err_set(err, e == ENOENT ? GH_E_NOT_FOUND : GH_E_INVALID_ARGUMENT, NULL,
		           "%s: %s", path, strerror(e));
		return e == ENOENT ? -ENOENT : -EIO;
	}
	void *tmp = talloc_new(NULL);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = tmp ? 0 : -ENOMEM;
	while (rc == 0) {
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (!(buf = talloc_realloc(tmp, buf, char, cap))) {
				rc = -ENOMEM;
				break;
			}
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL, "%s: read error",
				           path);
				rc = -EIO;
			}
			break;
		}
	}
	fclose(f);
	if (rc == 0)
		rc = load(ctx, path, buf, len, env, out, err);
	talloc_free(tmp);
	return rc;
}

/* ---- dump and docs ---- */

static char *yaml_quote(char *s, const char *v)
{
	s = talloc_strdup_append_buffer(s, "\"");
	for (const unsigned char *p = (const unsigned char *)v; s && *p; p++) {
		if (*p == '"' || *p == '\\')
			s = talloc_asprintf_append_buffer(s, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			s = talloc_asprintf_append_buffer(s, "\\x%02x", *p);
		else
			s = talloc_asprintf_append_buffer(s, "%c", *p);
	}
	return s ? talloc_strdup_append_buffer(s, "\"") : NULL;
}

char *gh_config_dump(void *ctx, const gh_config_t *cfg)
{
	char *s = talloc_strdup(ctx, "# ghasi effective configuration\n");
	for (size_t i = 0; s && i < n_sections(); i++) {
		const gh_config_section_t *sec = section_at(i);
		const char *base = section_base((gh_config_t *)cfg, i);
		s = talloc_asprintf_append_buffer(s, "%s:\n", sec->name);
		for (size_t j = 0; s && j < sec->n_keys; j++) {
			const gh_config_key_t *k = &sec->keys[j];
			const void *v = base + k->offset;
			s = talloc_asprintf_append_buffer(s, "  %s: ", k->name);
			if (!s)
				break;
			switch (k->type) {
			case GH_CFG_INT:
				s = talloc_asprintf_append_buffer(s, "%lld",
				                                  (long long)*(const int64_t *)v);
				break;
			case GH_CFG_BOOL:
				s = talloc_strdup_append_buffer(s, *(const bool *)v ? "true"
				                                                    : "false");
				break;
			case GH_CFG_ENUM:
				s = talloc_strdup_append_buffer(s, k->names[*(const int *)v]);
				break;
			case GH_CFG_STR: {
				const char *str = *(char *const *)v;
				s = yaml_quote(s, (k->flags & GH_CFG_SECRET) && *str ? "***" : str);
				break;
			}
			case GH_CFG_LIST: {
				const gh_config_list_t *l = v;
				s = talloc_strdup_append_buffer(s, "[");
				for (size_t e = 0; s && e < l->n; e++) {
					if (e)
						s = talloc_strdup_append_buffer(s, ", ");
					s = s ? yaml_quote(s, l->v[e]) : NULL;
				}
				s = s ? talloc_strdup_append_buffer(s, "]") : NULL;
				break;
			}
			}
			s = s ? talloc_strdup_append_buffer(s, "\n") : NULL;
		}
	}
	return s;
}

int gh_config_foreach_key(int (*fn)(void *ud, const gh_config_section_t *sec,
                                    const gh_config_key_t *key),
                          void *ud)
{
	for (size_t i = 0; i < n_sections(); i++) {
		const gh_config_section_t *s = section_at(i);
		for (size_t j = 0; j < s->n_keys; j++) {
			int rc = fn(ud, s, &s->keys[j]);
			if (rc)
				return rc;
		}
	}
	return 0;
}
