/* config: defaults, every value type, bounds, unknown keys, wrong types (all with key and line),
 * env overrides, registered sections, dump round trip, the example file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "config.h"
#include "log.h"
#include "testutil.h"

/* A section registered the way a service would, covering every type. */
typedef struct {
	bool flag;
	int64_t count;
	char *name;
	int mode;
	gh_config_list_t tags;
} demo_config_t;

static const char *const demo_modes[] = {"fast", "safe", NULL};
static const gh_config_key_t demo_keys[] = {
    {"flag", GH_CFG_BOOL, offsetof(demo_config_t, flag), .def = 1},
    {"count", GH_CFG_INT, offsetof(demo_config_t, count), .def = 3, .min = -5, .max = 10},
    {"name", GH_CFG_STR, offsetof(demo_config_t, name), .def_str = "x", .min = 1, .max = 8},
    {"mode", GH_CFG_ENUM, offsetof(demo_config_t, mode), .def = 1, .names = demo_modes},
    {"tags", GH_CFG_LIST, offsetof(demo_config_t, tags), .def_str = "a, b", .max = 3},
};
static const gh_config_section_t demo_section = {"demo", sizeof(demo_config_t), demo_keys,
                                                 sizeof demo_keys / sizeof demo_keys[0]};

typedef struct {
	void *ctx;
	gh_config_t *cfg;
	gh_err_t err;
} fx_t;

static int setup(void **state)
{
	fx_t *fx = calloc(1, sizeof *fx);
	fx->ctx = talloc_new(NULL);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fx_t *fx = *state;
	gh_err_clear(&fx->err);
	talloc_free(fx->ctx);
	free(fx);
	return 0;
}

static int load_str(fx_t *fx, const char *yaml, char **env)
{
	gh_err_clear(&fx->err);
	fx->cfg = NULL;
	return gh_config_load_buf(fx->ctx, "t.yaml", yaml, strlen(yaml), env, &fx->cfg, &fx->err);
}

static int err_line(const fx_t *fx)
{
	json_t *l = fx->err.details ? json_object_get(fx->err.details, "line") : NULL;
	return l ? (int)json_integer_value(l) : 0;
}

#define assert_err_contains(fx, s)                                                   \
	do {                                                                         \
		if (!strstr((fx)->err.message, (s)))                                 \
			fail_msg("message '%s' lacks '%s'", (fx)->err.message, (s)); \
	} while (0)

static void test_no_file_gives_defaults(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(gh_config_load(fx->ctx, NULL, NULL, &fx->cfg, &fx->err), 0);
	const gh_config_t *c = fx->cfg;
	assert_null(c->path);
	assert_int_equal(c->service.enabled.n, 4);
	assert_string_equal(c->service.enabled.v[0], "numbering");
	assert_string_equal(c->service.enabled.v[3], "reporting");
	assert_null(c->service.enabled.v[4]);
	assert_int_equal(c->service.profile, GH_PROFILE_EMBEDDED);
	assert_string_equal(c->http.bind, "127.0.0.1");
	assert_int_equal(c->http.port, 8080);
	assert_int_equal(c->http.threads, 8);
	assert_int_equal(c->http.body_limit, 1024 * 1024);
	assert_int_equal(c->http.import_body_limit, 64 * 1024 * 1024);
	assert_int_equal(c->http.drain_grace_ms, 30000);
	assert_string_equal(c->http.tls_cert, "");
	assert_int_equal(c->http.client_cn_allowlist.n, 0);
	assert_non_null(c->http.client_cn_allowlist.v);
	assert_string_equal(c->store.url, "sqlite://var/ghasi.db");
	assert_int_equal(c->store.pool_size, 8);
	assert_int_equal(c->store.synchronous, GH_SYNC_NORMAL);
	assert_string_equal(c->bus.url, "inproc://");
	assert_string_equal(c->bus.dlq_prefix, "dlq");
	assert_int_equal(c->bus.max_deliver, 5);
	assert_int_equal(c->log.level, GH_LOG_INFO);
	assert_int_equal(c->idempotency.ttl_s, 86400);
	assert_string_equal(c->archive.dir, "var/archive");
	assert_string_equal(c->auth.jwt_hs256_secret, "");
	const demo_config_t *d = gh_config_section(c, "demo");
	assert_non_null(d);
	assert_true(d->flag);
	assert_int_equal(d->count, 3);
	assert_string_equal(d->name, "x");
	assert_int_equal(d->mode, 1);
	assert_int_equal(d->tags.n, 2);
	assert_string_equal(d->tags.v[1], "b");
	assert_null(gh_config_section(c, "nope"));
	/* an empty document and an empty section are defaults too */
	assert_int_equal(load_str(fx, "", NULL), 0);
	assert_int_equal(fx->cfg->http.port, 8080);
	assert_int_equal(load_str(fx, "# nothing\nhttp:\n", NULL), 0);
	assert_int_equal(fx->cfg->http.port, 8080);
}

static void test_missing_file_is_an_error(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(
	    gh_config_load(fx->ctx, "/nonexistent/ghasi.yaml", NULL, &fx->cfg, &fx->err), -ENOENT);
	assert_null(fx->cfg);
	assert_int_equal(fx->err.code, GH_E_NOT_FOUND);
	assert_err_contains(fx, "/nonexistent/ghasi.yaml");
}

static void test_every_type_is_read_from_the_file(void **state)
{
	fx_t *fx = *state;
	const char *y = "service:\n"
	                "  enabled: [cdr, numbering]\n"
	                "  profile: scale-out\n"
	                "http:\n"
	                "  bind: 0.0.0.0\n"
	                "  port: 9000\n"
	                "  client_cn_allowlist:\n"
	                "    - numbering.internal\n"
	                "    - \"cdr internal\"\n"
	                "store: {url: 'postgresql://u@h/db', synchronous: full}\n"
	                "demo:\n"
	                "  flag: false\n"
	                "  count: -5\n"
	                "  name: abcdefgh\n"
	                "  mode: fast\n"
	                "  tags: []\n";
	assert_int_equal(load_str(fx, y, NULL), 0);
	const gh_config_t *c = fx->cfg;
	assert_string_equal(c->path, "t.yaml");
	assert_int_equal(c->service.enabled.n, 2);
	assert_string_equal(c->service.enabled.v[0], "cdr");
	assert_int_equal(c->service.profile, GH_PROFILE_SCALE_OUT);
	assert_string_equal(c->http.bind, "0.0.0.0");
	assert_int_equal(c->http.port, 9000);
	assert_int_equal(c->http.threads, 8); /* absent: default */
	assert_int_equal(c->http.client_cn_allowlist.n, 2);
	assert_string_equal(c->http.client_cn_allowlist.v[1], "cdr internal");
	assert_string_equal(c->store.url, "postgresql://u@h/db");
	assert_int_equal(c->store.synchronous, GH_SYNC_FULL);
	const demo_config_t *d = gh_config_section(c, "demo");
	assert_false(d->flag);
	assert_int_equal(d->count, -5);
	assert_string_equal(d->name, "abcdefgh");
	assert_int_equal(d->mode, 0);
	assert_int_equal(d->tags.n, 0);
}

static void test_out_of_bounds_names_key_and_line(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "http:\n  bind: 127.0.0.1\n  port: 70000\n", NULL), -EINVAL);
	assert_null(fx->cfg);
	assert_int_equal(fx->err.code, GH_E_INVALID_ARGUMENT);
	assert_string_equal(fx->err.field, "/http/port");
	assert_err_contains(fx, "t.yaml:3: http.port: 70000 is out of range 1..65535");
	assert_int_equal(err_line(fx), 3);

	assert_int_equal(load_str(fx, "http:\n  threads: 0\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: http.threads: 0 is out of range 1..256");
	/* upper bound is inclusive, one past is not */
	assert_int_equal(load_str(fx, "http:\n  threads: 256\n", NULL), 0);
	assert_int_equal(load_str(fx, "http:\n  threads: 257\n", NULL), -EINVAL);
	/* string length bounds */
	assert_int_equal(load_str(fx, "\n\ndemo:\n  name: ''\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:4: demo.name: length 0");
	assert_int_equal(load_str(fx, "demo:\n  name: abcdefghi\n", NULL), -EINVAL);
	/* list count bounds */
	assert_int_equal(load_str(fx, "demo:\n  tags: [a, b, c, d]\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: demo.tags: 4 entries");
	/* row checks: URL schemes */
	assert_int_equal(load_str(fx, "store:\n  url: mysql://x\n", NULL), -EINVAL);
	assert_err_contains(
	    fx, "t.yaml:2: store.url: 'mysql://x' must be sqlite://<path> or postgresql://");
	assert_int_equal(load_str(fx, "bus:\n  url: kafka://x\n", NULL), -EINVAL);
	assert_err_contains(fx, "bus.url: 'kafka://x' must be inproc:// or nats://");
}

static void test_unknown_key_and_section_with_line(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "\nhttp:\n  port: 99\n  prot: 3\n", NULL), -EINVAL);
	assert_string_equal(fx->err.field, "/http/prot");
	assert_err_contains(fx, "t.yaml:4: http.prot: unknown key");
	assert_int_equal(err_line(fx), 4);

	assert_int_equal(load_str(fx, "http:\n  port: 99\nhtp:\n  port: 1\n", NULL), -EINVAL);
	assert_string_equal(fx->err.field, "/htp");
	assert_err_contains(fx, "t.yaml:3: htp: unknown section");

	assert_int_equal(load_str(fx, "store: {pool_size: 2, pol: 1}\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:1: store.pol: unknown key");
}

static void test_wrong_type_with_line(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "http:\n  bind: x\n  port: abc\n", NULL), -EINVAL);
	assert_string_equal(fx->err.field, "/http/port");
	assert_err_contains(fx, "t.yaml:3: http.port:");
	assert_err_contains(fx, "expected int");

	assert_int_equal(load_str(fx, "http:\n  port: [1]\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: http.port:");

	assert_int_equal(load_str(fx, "log:\n  level: loud\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: log.level:");
	assert_err_contains(fx, "debug, info, warn, error");

	assert_int_equal(load_str(fx, "service:\n  enabled: cdr\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: service.enabled:");
	assert_err_contains(fx, "sequence of strings");

	assert_int_equal(load_str(fx, "demo:\n  flag: maybe\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: demo.flag:");
	assert_err_contains(fx, "true or false");

	assert_int_equal(load_str(fx, "http: 5\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:1: http:");

	assert_int_equal(load_str(fx, "- a\n- b\n", NULL), -EINVAL);
	assert_err_contains(fx, "mapping of sections");
}

static void test_syntax_error_and_duplicate_key_have_lines(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "http:\n  port: 1\n  bind: [a\n", NULL), -EINVAL);
	assert_err_contains(fx, "YAML syntax");
	assert_true(err_line(fx) >= 3);

	assert_int_equal(load_str(fx, "http:\n  port: 1\n  bind: a\n  port: 2\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:4: http.port: given twice");
}

static void test_enum_values(void **state)
{
	fx_t *fx = *state;
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++) {
		char y[64];
		snprintf(y, sizeof y, "log:\n  level: %s\n", levels[i]);
		assert_int_equal(load_str(fx, y, NULL), 0);
		assert_int_equal(fx->cfg->log.level, i);
	}
	assert_int_equal(load_str(fx, "store:\n  synchronous: fast\n", NULL), -EINVAL);
	assert_err_contains(fx, "normal, full");
	/* enums are case-sensitive, like every key */
	assert_int_equal(load_str(fx, "service:\n  profile: Embedded\n", NULL), -EINVAL);
}

static void test_lists(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "service:\n  enabled: []\n", NULL), -EINVAL);
	assert_err_contains(fx, "service.enabled: 0 entries, expected 1..");
	assert_int_equal(load_str(fx, "service:\n  enabled: [cdr, billing]\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: service.enabled: 'billing' is not one of");
	assert_int_equal(load_str(fx, "service:\n  enabled: [cdr, cdr]\n", NULL), -EINVAL);
	assert_err_contains(fx, "listed twice");
	assert_int_equal(load_str(fx, "http:\n  client_cn_allowlist: [a, [b]]\n", NULL), -EINVAL);
	assert_err_contains(fx, "t.yaml:2: http.client_cn_allowlist:");
	assert_int_equal(load_str(fx, "service:\n  enabled:\n    - roaming\n", NULL), 0);
	assert_int_equal(fx->cfg->service.enabled.n, 1);
	assert_string_equal(fx->cfg->service.enabled.v[0], "roaming");
}

static void test_env_overrides_file(void **state)
{
	fx_t *fx = *state;
	char *env[] = {"PATH=/bin",
	               "GHASI_HTTP_PORT=9090",
	               "GHASI_STORE_URL=postgresql://u@localhost:5432/ghasi",
	               "GHASI_SERVICE_ENABLED= cdr ,numbering,",
	               "GHASI_LOG_LEVEL=debug",
	               "GHASI_HTTP_CLIENT_CN_ALLOWLIST=",
	               "GHASI_DEMO_FLAG=off",
	               "GHASI_DEMO_NAME=from env",
	               "GHASI_BIN=/usr/bin/ghasi", /* not a section: ignored */
	               NULL};
	const char *y = "http:\n  port: 7000\n  threads: 3\n  client_cn_allowlist: [x]\n";
	assert_int_equal(load_str(fx, y, env), 0);
	const gh_config_t *c = fx->cfg;
	assert_int_equal(c->http.port, 9090);
	assert_int_equal(c->http.threads, 3);
	assert_string_equal(c->store.url, "postgresql://u@localhost:5432/ghasi");
	assert_int_equal(c->service.enabled.n, 2);
	assert_string_equal(c->service.enabled.v[0], "cdr");
	assert_string_equal(c->service.enabled.v[1], "numbering");
	assert_int_equal(c->log.level, GH_LOG_DEBUG);
	assert_int_equal(c->http.client_cn_allowlist.n, 0);
	const demo_config_t *d = gh_config_section(c, "demo");
	assert_false(d->flag);
	assert_string_equal(d->name, "from env");
	/* env alone, without a file */
	char *env2[] = {"GHASI_HTTP_PORT=1", NULL};
	assert_int_equal(gh_config_load(fx->ctx, NULL, env2, &fx->cfg, &fx->err), 0);
	assert_int_equal(fx->cfg->http.port, 1);
}

static void test_env_override_checked_against_bounds(void **state)
{
	fx_t *fx = *state;
	char *env[] = {"GHASI_HTTP_PORT=65536", NULL};
	assert_int_equal(load_str(fx, "", env), -EINVAL);
	assert_null(fx->cfg);
	assert_string_equal(fx->err.field, "/http/port");
	assert_err_contains(fx, "GHASI_HTTP_PORT: http.port: 65536 is out of range 1..65535");
	json_t *e = json_object_get(fx->err.details, "env");
	assert_non_null(e);
	assert_string_equal(json_string_value(e), "GHASI_HTTP_PORT");

	char *bad_int[] = {"GHASI_HTTP_THREADS=8x", NULL};
	assert_int_equal(load_str(fx, "", bad_int), -EINVAL);
	assert_err_contains(fx, "GHASI_HTTP_THREADS: http.threads: '8x' is not an integer");
	char *bad_enum[] = {"GHASI_STORE_SYNCHRONOUS=off", NULL};
	assert_int_equal(load_str(fx, "", bad_enum), -EINVAL);
	assert_err_contains(fx, "'off' is not one of: normal, full");
	char *bad_bool[] = {"GHASI_DEMO_FLAG=perhaps", NULL};
	assert_int_equal(load_str(fx, "", bad_bool), -EINVAL);
	char *bad_list[] = {"GHASI_SERVICE_ENABLED=cdr,sms", NULL};
	assert_int_equal(load_str(fx, "", bad_list), -EINVAL);
	assert_err_contains(fx, "'sms' is not one of");
	char *typo[] = {"GHASI_HTTP_PROT=80", NULL};
	assert_int_equal(load_str(fx, "", typo), -EINVAL);
	assert_err_contains(fx, "GHASI_HTTP_PROT: http: no such key");
	/* a valid file value does not excuse an invalid env value */
	char *big[] = {"GHASI_IDEMPOTENCY_TTL_S=1", NULL};
	assert_int_equal(load_str(fx, "idempotency:\n  ttl_s: 600\n", big), -EINVAL);
}

static void test_tls_cert_needs_key(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "http:\n  port: 1\n  tls_cert: /c.pem\n", NULL), -EINVAL);
	assert_string_equal(fx->err.field, "/http/tls_key");
	assert_err_contains(fx, "t.yaml:3: http.tls_key: required when http.tls_cert is set");
	assert_int_equal(
	    load_str(fx,
	             "http:\n  tls_cert: /c.pem\n  tls_key: /k.pem\n  tls_client_ca: /ca\n"
	             "  client_cn_allowlist: [billing]\n",
	             NULL),
	    0);
	assert_int_equal(load_str(fx, "http:\n  tls_client_ca: /ca\n", NULL), -EINVAL);
}

static void test_client_ca_needs_an_allowlist(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(
	    load_str(fx, "http:\n  tls_cert: /c.pem\n  tls_key: /k.pem\n  tls_client_ca: /ca\n",
	             NULL),
	    -EINVAL);
	assert_string_equal(fx->err.field, "/http/client_cn_allowlist");
	assert_int_equal(load_str(fx, "http:\n  require_client_cert: true\n", NULL), -EINVAL);
	assert_string_equal(fx->err.field, "/http/require_client_cert");
}

static void test_auth_disabled_refused_in_scale_out(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(load_str(fx, "auth:\n  disabled: true\n", NULL), 0);
	assert_true(fx->cfg->auth.disabled);
	assert_int_equal(fx->cfg->auth.leeway_s, 30);
	assert_int_equal(
	    load_str(fx, "service:\n  profile: scale-out\nauth:\n  disabled: true\n", NULL),
	    -EINVAL);
	assert_string_equal(fx->err.field, "/auth/disabled");
	assert_err_contains(fx, "t.yaml:4: auth.disabled: refused in the scale-out profile");
	char *env[] = {"GHASI_AUTH_DISABLED=true", NULL};
	assert_int_equal(load_str(fx, "service:\n  profile: scale-out\n", env), -EINVAL);
	assert_int_equal(load_str(fx, "auth:\n  leeway_s: 301\n", NULL), -EINVAL);
}

static void test_dev_secret_refused_in_scale_out(void **state)
{
	fx_t *fx = *state;
	const char *dev = "auth:\n  jwt_hs256_secret: INSECURE-dev-only-0123456789abcdef0123\n";
	assert_int_equal(load_str(fx, dev, NULL), 0);
	char *env[] = {"GHASI_SERVICE_PROFILE=scale-out", NULL};
	assert_int_equal(load_str(fx, dev, env), -EINVAL);
	assert_string_equal(fx->err.field, "/auth/jwt_hs256_secret");
	assert_err_contains(fx, "development secret is refused");
}

static void test_dump_loads_back_to_the_same(void **state)
{
	fx_t *fx = *state;
	const char *y = "http:\n  port: 9000\n  bind: \"a\\\"b\\\\c\"\n"
	                "  client_cn_allowlist: [\"x y\", z]\n"
	                "auth:\n  jwt_hs256_secret: hunter2\n"
	                "demo:\n  flag: false\n  mode: fast\n  tags: []\n";
	assert_int_equal(load_str(fx, y, NULL), 0);
	assert_string_equal(fx->cfg->http.bind, "a\"b\\c");
	char *d1 = gh_config_dump(fx->ctx, fx->cfg);
	assert_non_null(d1);
	assert_null(strstr(d1, "hunter2"));
	assert_non_null(strstr(d1, "jwt_hs256_secret: \"***\""));
	assert_non_null(strstr(d1, "  port: 9000\n"));
	gh_config_t *c2 = NULL;
	assert_int_equal(gh_config_load_buf(fx->ctx, "dump", d1, strlen(d1), NULL, &c2, &fx->err),
	                 0);
	assert_string_equal(c2->http.bind, "a\"b\\c");
	assert_int_equal(c2->http.client_cn_allowlist.n, 2);
	assert_string_equal(c2->http.client_cn_allowlist.v[0], "x y");
	assert_false(((const demo_config_t *)gh_config_section(c2, "demo"))->flag);
	assert_string_equal(gh_config_dump(fx->ctx, c2), d1);
}

static int count_key(void *ud, const gh_config_section_t *sec, const gh_config_key_t *key)
{
	int *n = ud;
	char env[128];
	gh_config_env_name(sec->name, key->name, env, sizeof env);
	if (strcmp(env, "GHASI_HTTP_IMPORT_BODY_LIMIT") == 0)
		n[1]++;
	n[0]++;
	return 0;
}

static void test_key_list_for_docs(void **state)
{
	int n[2] = {0, 0};
	assert_int_equal(gh_config_foreach_key(count_key, n), 0);
	/* 2 service + 11 http + 4 store + 5 bus + 2 outbox + 1 log + 1 idem + 1 archive + 6 auth
	 * + 5 demo */
	assert_int_equal(n[0], 38);
	assert_int_equal(n[1], 1);
}

static void test_register_refuses_bad_tables(void **state)
{
	assert_int_equal(gh_config_register(&demo_section), -EEXIST);
	static const gh_config_key_t bad_default[] = {
	    {"n", GH_CFG_INT, 0, .def = 0, .min = 1, .max = 2},
	};
	static const gh_config_section_t bad1 = {"bad", sizeof(int64_t), bad_default, 1};
	assert_int_equal(gh_config_register(&bad1), -EINVAL);
	static const gh_config_key_t past_end[] = {
	    {"n", GH_CFG_INT, 8, .max = 2},
	};
	static const gh_config_section_t bad2 = {"bad", sizeof(int64_t), past_end, 1};
	assert_int_equal(gh_config_register(&bad2), -EINVAL);
	static const gh_config_key_t ok[] = {{"n", GH_CFG_INT, 0, .max = 2}};
	static const gh_config_section_t bad3 = {"Bad-Name", sizeof(int64_t), ok, 1};
	assert_int_equal(gh_config_register(&bad3), -EINVAL);
	static const gh_config_section_t http2 = {"http", sizeof(int64_t), ok, 1};
	assert_int_equal(gh_config_register(&http2), -EEXIST);
	/* GHASI_HTTP_TLS_CERT is http.tls_cert already */
	static const gh_config_key_t cert[] = {{"cert", GH_CFG_STR, 0}};
	static const gh_config_section_t http_tls = {"http_tls", sizeof(char *), cert, 1};
	assert_int_equal(gh_config_register(&http_tls), -EEXIST);
}

static void test_example_file_is_the_embedded_profile(void **state)
{
	fx_t *fx = *state;
	const char *root = getenv("GH_SOURCE_ROOT");
	assert_non_null(root);
	char *path = talloc_asprintf(fx->ctx, "%s/config/ghasi.yaml", root);
	assert_int_equal(gh_config_load(fx->ctx, path, NULL, &fx->cfg, &fx->err), 0);
	assert_string_equal(fx->cfg->path, path);
	assert_int_equal(fx->cfg->service.profile, GH_PROFILE_EMBEDDED);
	assert_int_equal(fx->cfg->service.enabled.n, 4);
	assert_string_equal(fx->cfg->http.bind, "127.0.0.1");
	assert_int_equal(fx->cfg->http.port, 8080);
	assert_int_equal(strncmp(fx->cfg->store.url, "sqlite://", 9), 0);
	assert_string_equal(fx->cfg->bus.url, "inproc://");
}

static void test_file_errors_carry_the_path(void **state)
{
	fx_t *fx = *state;
	char *dir = gh_test_tmpdir();
	char *path = talloc_asprintf(fx->ctx, "%s/bad.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("# comment\nbus:\n  max_deliver: 0\n", f);
	fclose(f);
	assert_int_equal(gh_config_load(fx->ctx, path, NULL, &fx->cfg, &fx->err), -EINVAL);
	char *want = talloc_asprintf(fx->ctx, "%s:3: bus.max_deliver: 0 is out of range", path);
	assert_err_contains(fx, want);
	gh_test_rmtree(dir);
	free(dir);
}

int main(void)
{
	if (gh_config_register(&demo_section) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_file_gives_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_file_is_an_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_type_is_read_from_the_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_bounds_names_key_and_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_key_and_section_with_line, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_type_with_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_error_and_duplicate_key_have_lines, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_enum_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_overrides_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_override_checked_against_bounds, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_client_ca_needs_an_allowlist, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_disabled_refused_in_scale_out, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_dev_secret_refused_in_scale_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tls_cert_needs_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump_loads_back_to_the_same, setup, teardown),
	    cmocka_unit_test(test_key_list_for_docs),
	    cmocka_unit_test(test_register_refuses_bad_tables),
	    cmocka_unit_test_setup_teardown(test_example_file_is_the_embedded_profile, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_file_errors_carry_the_path, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
