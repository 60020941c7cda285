/* num_http: the numbering service through the real `ghasi serve` binary ($GHASI_BIN), on SQLite
 * (in-process bus) and on PostgreSQL (+ NATS JetStream): every route's answers and errors, the
 * 100-way reserve race, two replicas (invalidation within 1 s, one winner across replicas),
 * fail-closed answers (database down on a miss, stale index), the audit chain against a raw SQL
 * edit, and a property test: after random operations over HTTP, validate over HTTP equals
 * num_validate_rule on the database row for every number and tenant. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "gh-core.h"
#include "ghasiproc.h"
#include "httpc.h"
#include "jwtmint.h"
#include "numbering/service.h"
#include "testutil.h"

#define TENANT_E NUM_DEMO_TENANT_ENTERPRISE
#define TENANT_S NUM_DEMO_TENANT_SMB
#define TENANT_G NUM_DEMO_TENANT_GOVERNMENT
#define FIRST    "%2B93701234567" /* the seed's first MSISDN (AWCC), URL-encoded */

/* ---- a server process -------------------------------------------------------------------- */

typedef gh_test_ghasi_t srv_t;

/* Start `ghasi serve` hosting numbering on store (and bus, "" = inproc) with extra env
 * "K=V" entries (NULL-terminated, may be NULL); wait until /readyz answers 200. */
static void srv_start(srv_t *s, const char *dir, const char *store, const char *bus,
                      const char *stream, const char *const *extra)
{
	void *tmp = talloc_new(NULL);
	const char *env[] = {
	    talloc_asprintf(tmp, "GHASI_STORE_URL=%s", store),
	    talloc_asprintf(tmp, "GHASI_BUS_URL=%s", bus && *bus ? bus : "inproc://"),
	    talloc_asprintf(tmp, "GHASI_BUS_STREAM=%s", stream ? stream : "ghasi"),
	    "GHASI_NUMBERING_INDEX_CAPACITY=100000",
	    "GHASI_NUMBERING_SEED_MSISDNS=300",
	    "GHASI_AUTH_JWT_HS256_SECRET=" GH_TEST_JWT_SECRET,
	    NULL};
	gh_test_ghasi_start(s, dir, env, extra);
	talloc_free(tmp);
}

/* ---- requests ---------------------------------------------------------------------------- */

typedef struct {
	int status;
	json_t *j; /* parsed body or NULL */
	char replayed;
} resp_t;

/* Admin paths get a platform-admin token unless extra carries an Authorization of its own
 * (the admin API's access rules are num_portal_test's). */
static resp_t call(uint16_t port, const char *method, const char *path, const char *body,
                   const char *extra)
{
	gh_test_http_resp_t *r = malloc(sizeof *r);
	assert_non_null(r);
	void *tmp = talloc_new(NULL);
	if (strncmp(path, "/v1/admin/", 10) == 0 && !(extra && strstr(extra, "Authorization:")))
		extra = talloc_asprintf(tmp, "%s%s", extra ? extra : "",
		                        gh_test_jwt_header(tmp, "ops", "platform-admin", NULL));
	gh_test_http_request(port, method, path, extra, body, r);
	talloc_free(tmp);
	resp_t out = {.status = r->status};
	out.j = json_loadb(r->body, r->body_len, 0, NULL);
	char v[16];
	out.replayed = gh_test_http_header(r, "Idempotent-Replayed", v, sizeof v) != NULL;
	free(r);
	return out;
}

/* GET path with Connection: close and read everything (any size). malloc'd, NUL-terminated. */
static char *fetch_all(uint16_t port, const char *path)
{
	int fd = gh_test_http_connect(port);
	assert_true(fd >= 0);
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	                 path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t k = read(fd, buf + len, cap - len - 1);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

static const char *jstr(const json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));
	return s ? s : "";
}

static const char *ecode(const resp_t *r) { return jstr(json_object_get(r->j, "error"), "code"); }

static const char *efield(const resp_t *r)
{
	return jstr(json_object_get(json_object_get(r->j, "error"), "details"), "field");
}

/* Expect status (and, for errors, the code); returns the response for more checks. */
#define EXPECT(r, st, code)                                                                      \
	do {                                                                                     \
		if ((r).status != (st) || ((code) && strcmp(ecode(&(r)), (code) ? (code) : ""))) \
			fail_msg("%s:%d: got %d %s, want %d %s", __FILE__, __LINE__, (r).status, \
			         json_dumps((r).j, 0), (st), (code) ? (code) : "");              \
	} while (0)

static void done(resp_t *r)
{
	json_decref(r->j);
	r->j = NULL;
}

static resp_t validate(uint16_t port, const char *ident, const char *tenant)
{
	char path[1024];
	snprintf(path, sizeof path, "/v1/numbering/validate-lease?identifier=%s&tenant_id=%s",
	         ident, tenant);
	return call(port, "GET", path, NULL, NULL);
}

static resp_t act(uint16_t port, const char *ident, const char *action, const char *body)
{
	char path[1024];
	snprintf(path, sizeof path, "/v1/numbering/numbers/%s:%s", ident, action);
	return call(port, "POST", path, body, NULL);
}

static char *reason_of(uint16_t port, const char *ident, const char *tenant)
{
	resp_t r = validate(port, ident, tenant);
	char *out = strdup(r.status == 200 ? jstr(r.j, "reason") : ecode(&r));
	done(&r);
	return out;
}

/* A PostgreSQL cluster of the test's own (the shared one serves other tests): initdb + pg_ctl
 * as the postgres user when root, as testenv.sh does. */
static const char *pgbin = "/usr/lib/postgresql/15/bin";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	return system(cmd);
}

static const char *as_pg(void) { return getuid() == 0 ? "runuser -u postgres --" : ""; }

/* ---- fixtures ---------------------------------------------------------------------------- */

typedef struct {
	char *dir;
	char *store;
	char *bus;
	char stream[32];
	srv_t a, b;
	gh_test_backend_t be;
	int own_pg; /* a cluster of the test's own runs in dir/pg */
} fx_t;

static int fx_setup(void **state, gh_test_backend_t be)
{
	fx_t *fx = calloc(1, sizeof *fx);
	fx->be = be;
	fx->dir = gh_test_tmpdir();
	*state = fx;
	return 0;
}
static int setup_sqlite(void **state) { return fx_setup(state, GH_TEST_SQLITE); }
static int setup_pg(void **state) { return fx_setup(state, GH_TEST_PG); }

static int fx_teardown(void **state)
{
	fx_t *fx = *state;
	gh_test_ghasi_stop(&fx->a);
	gh_test_ghasi_stop(&fx->b);
	if (fx->own_pg)
		sh("%s %s/pg_ctl -D %s/pg -m immediate -w stop >/dev/null 2>&1", as_pg(), pgbin,
		   fx->dir);
	if (fx->bus && fx->stream[0])
		gh_test_nats_delete_stream(fx->bus, fx->stream);
	if (getenv("NUM_TEST_KEEP"))
		sh("cp %s/*.log /tmp/svc1/ 2>/dev/null", fx->dir);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
	free(fx->store);
	free(fx->bus);
	free(fx);
	return 0;
}

/* Store (and for PostgreSQL, NATS) for this test; skips when the backend is missing. */
static void fx_backend(fx_t *fx)
{
	if (fx->be == GH_TEST_PG) {
		GH_TEST_NEED(gh_test_pg_url());
		GH_TEST_NEED(gh_test_nats_url());
		fx->bus = strdup(gh_test_nats_url());
		snprintf(fx->stream, sizeof fx->stream, "numtest%d", rand() % 1000000);
	}
	fx->store = gh_test_store_url(fx->be, fx->dir);
	if (!fx->store)
		skip();
}

static void fx_start(fx_t *fx, srv_t *s, const char *const *extra)
{
	srv_start(s, fx->dir, fx->store, fx->bus, fx->stream[0] ? fx->stream : NULL, extra);
}

/* ---- every route ------------------------------------------------------------------------- */

static void test_routes(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	fx_start(fx, &fx->a, NULL);
	uint16_t p = fx->a.port;
	resp_t r;

	/* validate: arguments */
	r = call(p, "GET", "/v1/numbering/validate-lease?identifier=" FIRST, NULL, NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "tenant_id");
	done(&r);
	r = validate(p, "not%20a%20number!", TENANT_S);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "identifier");
	done(&r);
	r = call(p, "POST", "/v1/numbering/validate-lease", "{\"identifier\":\"x\"", NULL);
	EXPECT(r, 400, "MALFORMED_JSON");
	done(&r);
	r = call(p, "POST", "/v1/numbering/validate-lease",
	         "{\"identifier\":\"0701234567\",\"tenant_id\":\"" TENANT_S "\",\"x\":1}", NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "/x");
	done(&r);
	/* validate: answers; every accepted form of the number normalises the same */
	r = validate(p, FIRST, TENANT_S);
	EXPECT(r, 200, NULL);
	assert_false(json_is_true(json_object_get(r.j, "allowed")));
	assert_string_equal(jstr(r.j, "reason"), "NOT_LEASED");
	assert_string_equal(jstr(r.j, "identifier"), "+93701234567");
	assert_string_equal(jstr(r.j, "kind"), "MSISDN");
	assert_string_equal(jstr(r.j, "operator_id"), "awcc");
	done(&r);
	r = call(p, "POST", "/v1/numbering/validate-lease",
	         "{\"identifier\":\"0093 70 123 4567\",\"tenant_id\":\"" TENANT_S "\"}", NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "identifier"), "+93701234567");
	done(&r);
	r = validate(p, "%2B93709999999", TENANT_S);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "reason"), "NOT_REGISTERED");
	done(&r);

	/* lookup */
	r = call(p, "GET", "/v1/numbering/lookup/" FIRST, NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "AVAILABLE");
	assert_string_equal(jstr(r.j, "mcc"), "412");
	assert_string_equal(jstr(r.j, "mnc"), "01");
	assert_null(json_object_get(r.j, "tenant_id"));
	done(&r);
	r = call(p, "GET", "/v1/numbering/lookup/%2B93709999999", NULL, NULL);
	EXPECT(r, 404, "NOT_FOUND");
	done(&r);
	r = call(p, "GET", "/v1/numbering/lookup/12", NULL, NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "GET", "/v1/numbering/lookup/mybank", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "kind"), "ALPHA");
	done(&r);

	/* reserve: body checks, CAS, quota of concurrent reservations is the repo's */
	r = act(p, FIRST, "reserve", "{}");
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "/tenant_id");
	done(&r);
	r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_S "\",\"term_days\":3}");
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_S "\",\"ttl_seconds\":0}");
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_S "\",\"expected_version\":7}");
	EXPECT(r, 409, "CONFLICT");
	done(&r);
	r = act(p, FIRST, "reserve", "{\"tenant_id\":\"no-pool\"}");
	EXPECT(r, 422, "FAILED_PRECONDITION");
	done(&r);
	const char *idem = "Idempotency-Key: reserve-first\r\n";
	char path[1024];
	snprintf(path, sizeof path, "/v1/numbering/numbers/%s:reserve", FIRST);
	r = call(p, "POST", path, "{\"tenant_id\":\"" TENANT_S "\",\"expected_version\":1}", idem);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "RESERVED");
	assert_int_equal(json_integer_value(json_object_get(r.j, "version")), 2);
	assert_non_null(json_object_get(r.j, "reservation"));
	assert_false(r.replayed);
	done(&r);
	r = call(p, "POST", path, "{\"tenant_id\":\"" TENANT_S "\",\"expected_version\":1}", idem);
	EXPECT(r, 200, NULL);
	assert_true(r.replayed);
	done(&r);
	r = call(p, "POST", path, "{\"tenant_id\":\"" TENANT_S "\"}", idem);
	EXPECT(r, 422, "IDEMPOTENCY_KEY_REUSED");
	done(&r);
	r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);

	/* assign by another tenant: refused; by the holder: leased and allowed */
	r = act(p, FIRST, "assign", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);
	r = act(p, FIRST, "assign", "{\"tenant_id\":\"" TENANT_S "\",\"term_days\":10}");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "ASSIGNED");
	assert_string_equal(jstr(json_object_get(r.j, "lease"), "status"), "ACTIVE");
	char lease_id[64];
	snprintf(lease_id, sizeof lease_id, "%s", jstr(json_object_get(r.j, "lease"), "lease_id"));
	done(&r);
	r = validate(p, FIRST, TENANT_S);
	EXPECT(r, 200, NULL);
	assert_true(json_is_true(json_object_get(r.j, "allowed")));
	assert_string_equal(jstr(r.j, "reason"), "ALLOWED");
	assert_string_equal(jstr(r.j, "lease_id"), lease_id);
	assert_true(strlen(jstr(r.j, "lease_ends_at")) == 24);
	done(&r);
	r = validate(p, FIRST, TENANT_E);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "reason"), "WRONG_TENANT");
	assert_null(json_object_get(r.j, "lease_id")); /* never another tenant's lease */
	done(&r);
	r = validate(p, FIRST, "tenant-unknown");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "reason"), "WRONG_TENANT");
	done(&r);

	/* suspend / resume (compliance), pool suspension */
	r = act(p, FIRST, "suspend", "{\"reason\":\"billing delinquent\",\"x\":1}");
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = act(p, FIRST, "suspend", "{\"reason\":\"billing delinquent\"}");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "SUSPENDED");
	done(&r);
	char *why = reason_of(p, FIRST, TENANT_S);
	assert_string_equal(why, "LEASE_SUSPENDED");
	free(why);
	r = act(p, FIRST, "suspend", "{}");
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);
	r = act(p, FIRST, "resume", "{}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = call(p, "PATCH", "/v1/admin/numbering/pools/" TENANT_S, "{\"status\":\"SUSPENDED\"}",
	         NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "status"), "SUSPENDED");
	done(&r);
	why = reason_of(p, FIRST, TENANT_S);
	assert_string_equal(why, "TENANT_SUSPENDED");
	free(why);
	r = call(p, "PATCH", "/v1/admin/numbering/pools/" TENANT_S, "{\"status\":\"ACTIVE\"}",
	         NULL);
	EXPECT(r, 200, NULL);
	done(&r);
	why = reason_of(p, FIRST, TENANT_S);
	assert_string_equal(why, "ALLOWED");
	free(why);

	/* release by another tenant: not its number */
	r = act(p, FIRST, "release", "{\"tenant_id\":\"" TENANT_E "\"}");
	assert_true(r.status == 409 || r.status == 404);
	done(&r);
	r = act(p, FIRST, "release", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "QUARANTINED");
	assert_string_equal(jstr(json_object_get(r.j, "quarantine"), "reason"), "TENANT_RELEASE");
	done(&r);
	why = reason_of(p, FIRST, TENANT_S);
	assert_string_equal(why, "QUARANTINE_ACTIVE");
	free(why);
	/* reclaim: only the previous tenant */
	r = act(p, FIRST, "reclaim", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);
	r = act(p, FIRST, "reclaim", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "ASSIGNED");
	done(&r);
	/* recall */
	r = act(p, FIRST, "recall", "{\"reason\":\"TENANT_RELEASE\"}");
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "/reason");
	done(&r);
	r = act(p, FIRST, "recall", "{\"reason\":\"RECALL_ABUSE\",\"justification\":\"spam\"}");
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(json_object_get(r.j, "quarantine"), "reason"), "RECALL_ABUSE");
	done(&r);
	r = act(p, FIRST, "reclaim", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);
	/* override-quarantine (admin) */
	r = call(p, "POST", "/v1/admin/numbering/numbers/" FIRST ":override-quarantine",
	         "{\"justification\":\"too short\"}", NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "/justification");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers/" FIRST ":override-quarantine",
	         "{\"justification\":\"legal ticket 4711 cleared the number\"}", NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "AVAILABLE");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers/" FIRST ":override-quarantine",
	         "{\"justification\":\"legal ticket 4711 cleared the number\"}", NULL);
	EXPECT(r, 409, "INVALID_TRANSITION");
	done(&r);
	r = act(p, "%2B93709999999", "reserve", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 404, "NOT_FOUND");
	done(&r);

	/* admin: numbers */
	r = call(p, "GET", "/v1/admin/numbering/numbers/" FIRST, NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "identifier"), "+93701234567");
	done(&r);
	r = call(p, "GET", "/v1/admin/numbering/numbers/%2B93709999999", NULL, NULL);
	EXPECT(r, 404, "NOT_FOUND");
	done(&r);
	r = call(p, "GET", "/v1/admin/numbering/numbers/" FIRST "/history", NULL, NULL);
	EXPECT(r, 200, NULL);
	json_t *h = json_object_get(r.j, "history");
	assert_true(json_array_size(h) >= 10);
	assert_string_equal(jstr(json_array_get(h, 0), "action"), "number.add");
	done(&r);
	size_t seen = 0, pages = 0;
	char next[64] = "";
	do {
		snprintf(path, sizeof path,
		         "/v1/admin/numbering/numbers?kind=SHORT_CODE&page_size=16%s%s",
		         next[0] ? "&page_token=" : "", next);
		r = call(p, "GET", path, NULL, NULL);
		EXPECT(r, 200, NULL);
		json_t *arr = json_object_get(r.j, "numbers");
		seen += json_array_size(arr);
		for (size_t i = 0; i < json_array_size(arr); i++)
			assert_string_equal(jstr(json_array_get(arr, i), "kind"), "SHORT_CODE");
		snprintf(next, sizeof next, "%s", jstr(r.j, "next_page_token"));
		pages++;
		done(&r);
	} while (next[0] && pages < 10);
	assert_int_equal(seen, 50);
	assert_int_equal(pages, 4);
	r = call(p, "GET", "/v1/admin/numbering/numbers?page_token=zzz", NULL, NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "GET", "/v1/admin/numbering/numbers?state=NOPE", NULL, NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "GET", "/v1/admin/numbering/numbers?page_size=5000", NULL, NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers",
	         "{\"numbers\":[{\"identifier\":\"777\",\"kind\":\"SHORT_CODE\","
	         "\"operator_id\":\"roshan\"},{\"identifier\":\"TestCo\"}]}",
	         NULL);
	EXPECT(r, 201, NULL);
	assert_int_equal(json_integer_value(json_object_get(r.j, "added")), 2);
	done(&r);
	why = reason_of(p, "777", TENANT_S); /* the new number is in the local index at once */
	assert_string_equal(why, "NOT_LEASED");
	free(why);
	r = call(p, "POST", "/v1/admin/numbering/numbers",
	         "{\"numbers\":[{\"identifier\":\"TESTCO\"}]}", NULL);
	EXPECT(r, 409, "ALREADY_EXISTS");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers",
	         "{\"numbers\":[{\"identifier\":\"888\",\"kind\":\"SHORT_CODE\"}]}", NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers",
	         "{\"numbers\":[{\"identifier\":\"!!\"}]}", NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(efield(&r), "/numbers/0/identifier");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/numbers", "{\"numbers\":[]}", NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);

	/* admin: operators */
	r = call(p, "GET", "/v1/admin/numbering/operators", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "operators")), 5);
	done(&r);
	const char *op = "{\"id\":\"newtel\",\"name\":\"NewTel\",\"mcc\":\"412\",\"mncs\":[\"99\"],"
	                 "\"prefixes\":[\"+93750\"]}";
	r = call(p, "POST", "/v1/admin/numbering/operators", op, NULL);
	EXPECT(r, 201, NULL);
	assert_string_equal(jstr(r.j, "id"), "newtel");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/operators", op, NULL);
	EXPECT(r, 409, "ALREADY_EXISTS");
	done(&r);
	r = call(p, "POST", "/v1/admin/numbering/operators",
	         "{\"id\":\"x\",\"name\":\"X\",\"mcc\":\"412\",\"mncs\":[\"98\"],"
	         "\"prefixes\":[\"+9370\"]}",
	         NULL);
	assert_true(r.status == 400 || r.status == 409 || r.status == 422);
	done(&r);
	r = call(p, "PATCH", "/v1/admin/numbering/operators/newtel",
	         "{\"name\":\"NewTel AF\",\"expected_version\":1}", NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "name"), "NewTel AF");
	done(&r);
	r = call(p, "PATCH", "/v1/admin/numbering/operators/newtel",
	         "{\"name\":\"Again\",\"expected_version\":1}", NULL);
	EXPECT(r, 409, "CONFLICT");
	done(&r);
	r = call(p, "PATCH", "/v1/admin/numbering/operators/nope", "{\"name\":\"N\"}", NULL);
	EXPECT(r, 404, "NOT_FOUND");
	done(&r);
	/* a number of the new operator shows it (the snapshot reloaded after the change) */
	r = call(p, "POST", "/v1/admin/numbering/numbers",
	         "{\"numbers\":[{\"identifier\":\"+93750000001\",\"operator_id\":\"newtel\"}]}",
	         NULL);
	EXPECT(r, 201, NULL);
	done(&r);
	r = call(p, "GET", "/v1/numbering/lookup/%2B93750000001", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "operator_id"), "newtel");
	assert_string_equal(jstr(r.j, "mnc"), "99");
	done(&r);

	/* admin: pools */
	r = call(p, "GET", "/v1/admin/numbering/pools/" TENANT_G, NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "segment"), "government");
	done(&r);
	r = call(p, "GET", "/v1/admin/numbering/pools/nobody", NULL, NULL);
	EXPECT(r, 404, "NOT_FOUND");
	done(&r);
	r = call(p, "PUT", "/v1/admin/numbering/pools/tenant-new",
	         "{\"status\":\"ACTIVE\",\"segment\":\"smb\",\"quotas\":{\"MSISDN\":1,"
	         "\"SHORT_CODE\":0,\"ALPHA\":0},\"max_reservations\":1}",
	         NULL);
	EXPECT(r, 200, NULL);
	done(&r);
	r = call(p, "PUT", "/v1/admin/numbering/pools/tenant-new", "{\"quotas\":{\"FAX\":1}}",
	         NULL);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	done(&r);
	r = call(p, "PATCH", "/v1/admin/numbering/pools/tenant-new",
	         "{\"status\":\"ACTIVE\",\"expected_version\":99}", NULL);
	EXPECT(r, 409, "CONFLICT");
	done(&r);
	/* quota 1 MSISDN: the second reserve is refused */
	r = act(p, "%2B93791234567", "reserve", "{\"tenant_id\":\"tenant-new\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(p, "%2B93771234567", "reserve", "{\"tenant_id\":\"tenant-new\"}");
	EXPECT(r, 422, "QUOTA_EXCEEDED");
	done(&r);

	/* metrics of the hot path (the exposition is larger than httpc's buffer) */
	char *m = fetch_all(p, "/metrics");
	assert_non_null(strstr(m, "numbering_validate_lease_seconds_count{result=\"ALLOWED\"}"));
	assert_non_null(strstr(m, "numbering_validate_cache_hits_total"));
	assert_non_null(strstr(m, "numbering_transitions_total{action=\"reserve\",result=\"ok\"}"));
	free(m);

	/* audit: intact, then a raw edit of one row is found at that row */
	r = call(p, "POST", "/v1/admin/numbering/audit:verify", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_true(json_is_true(json_object_get(r.j, "ok")));
	assert_true(json_integer_value(json_object_get(r.j, "rows_checked")) > 300);
	done(&r);
	gh_store_t *st;
	void *ctx = talloc_new(NULL);
	assert_int_equal(gh_store_open(ctx, fx->store, NULL, &st), 0);
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(st, 5000, &c), 0);
	int64_t n = 0;
	assert_int_equal(gh_conn_exec(c,
	                              "UPDATE gh_audit SET actor = 'mallory' WHERE chain = "
	                              "'numbering' AND seq = 42",
	                              NULL, 0, &n),
	                 0);
	assert_int_equal(n, 1);
	gh_store_release(c);
	talloc_free(ctx);
	r = call(p, "POST", "/v1/admin/numbering/audit:verify", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_false(json_is_true(json_object_get(r.j, "ok")));
	assert_int_equal(json_integer_value(json_object_get(r.j, "first_bad_seq")), 42);
	assert_true(strlen(jstr(r.j, "problem")) > 0);
	done(&r);
}

/* ---- 100 concurrent reserves of one number ----------------------------------------------- */

#define RACERS 100

typedef struct {
	uint16_t port;
	const char *ident;
	const char *body;
	pthread_barrier_t *go;
	int status;
	char code[32];
} racer_t;

static void *racer(void *arg)
{
	racer_t *r = arg;
	gh_test_http_conn_t *c = gh_test_http_open(r->port);
	gh_test_http_resp_t *resp = malloc(sizeof *resp);
	char path[1024];
	snprintf(path, sizeof path, "/v1/numbering/numbers/%s:reserve", r->ident);
	pthread_barrier_wait(r->go);
	if (c) {
		gh_test_http_exchange(c, "POST", path, NULL, r->body, resp);
		r->status = resp->status;
		json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
		snprintf(r->code, sizeof r->code, "%s", jstr(json_object_get(j, "error"), "code"));
		json_decref(j);
		gh_test_http_close(c);
	}
	free(resp);
	return NULL;
}

/* n racers over ports[i % nports]; returns the number of 200s, *conflicts the 409 CONFLICTs,
 * *other the rest. */
static int race(const uint16_t *ports, int nports, const char *ident, const char *body, int n,
                int *conflicts, int *other)
{
	pthread_t th[RACERS];
	racer_t rs[RACERS];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		rs[i] =
		    (racer_t){.port = ports[i % nports], .ident = ident, .body = body, .go = &go};
		pthread_create(&th[i], NULL, racer, &rs[i]);
	}
	int ok = 0;
	*conflicts = *other = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (rs[i].status == 200)
			ok++;
		else if (rs[i].status == 409 && strcmp(rs[i].code, "CONFLICT") == 0)
			(*conflicts)++;
		else
			(*other)++;
	}
	pthread_barrier_destroy(&go);
	return ok;
}

static void test_reserve_race(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	fx_start(fx, &fx->a, (const char *const[]){"GHASI_HTTP_THREADS=16", NULL});
	resp_t r = call(fx->a.port, "GET", "/v1/admin/numbering/numbers/" FIRST, NULL, NULL);
	EXPECT(r, 200, NULL);
	char body[128];
	snprintf(body, sizeof body, "{\"tenant_id\":\"%s\",\"expected_version\":%lld}", TENANT_E,
	         (long long)json_integer_value(json_object_get(r.j, "version")));
	done(&r);
	int conflicts, other;
	int ok = race(&fx->a.port, 1, FIRST, body, RACERS, &conflicts, &other);
	assert_int_equal(ok, 1);
	assert_int_equal(conflicts, RACERS - 1);
	assert_int_equal(other, 0);
	r = call(fx->a.port, "GET", "/v1/admin/numbering/numbers/" FIRST, NULL, NULL);
	assert_string_equal(jstr(r.j, "state"), "RESERVED");
	assert_string_equal(jstr(r.j, "tenant_id"), TENANT_E);
	done(&r);
}

/* ---- two replicas ------------------------------------------------------------------------ */

/* Poll B until validate answers want; returns the ms it took, or -1 after 5 s. */
static int64_t poll_reason(uint16_t port, const char *ident, const char *tenant, const char *want)
{
	int64_t t0 = gh_test_wall_ms();
	while (gh_test_wall_ms() - t0 < 5000) {
		char *why = reason_of(port, ident, tenant);
		int hit = strcmp(why, want) == 0;
		free(why);
		if (hit)
			return gh_test_wall_ms() - t0;
		usleep(10 * 1000);
	}
	return -1;
}

static void test_two_replicas(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	fx_start(fx, &fx->a, NULL);
	fx_start(fx, &fx->b, (const char *const[]){"GHASI_NUMBERING_SEED_DEMO=false", NULL});
	uint16_t a = fx->a.port, b = fx->b.port;
	const char *n = "%2B93791234567"; /* Roshan's first demo number */

	char *why = reason_of(b, n, TENANT_E);
	assert_string_equal(why, "NOT_LEASED");
	free(why);
	resp_t r = act(a, n, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(a, n, "assign", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	int64_t ms = poll_reason(b, n, TENANT_E, "ALLOWED");
	assert_true(ms >= 0 && ms <= 1000);
	r = act(a, n, "release", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	ms = poll_reason(b, n, TENANT_E, "QUARANTINE_ACTIVE");
	printf("# replica B saw the release after %lld ms\n", (long long)ms);
	assert_true(ms >= 0 && ms <= 1000);
	/* reclaim on A then recall on A: B follows as well */
	r = act(a, n, "reclaim", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	assert_true(poll_reason(b, n, TENANT_E, "ALLOWED") >= 0);
	r = act(a, n, "recall", "{}");
	EXPECT(r, 200, NULL);
	done(&r);
	ms = poll_reason(b, n, TENANT_E, "QUARANTINE_ACTIVE");
	printf("# replica B saw the recall after %lld ms\n", (long long)ms);
	assert_true(ms >= 0 && ms <= 1000);
	/* pool suspension on A reaches B */
	const char *m = "%2B93771234567";
	r = act(b, m, "reserve", "{\"tenant_id\":\"" TENANT_G "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(b, m, "assign", "{\"tenant_id\":\"" TENANT_G "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	assert_true(poll_reason(a, m, TENANT_G, "ALLOWED") >= 0);
	r = call(a, "PATCH", "/v1/admin/numbering/pools/" TENANT_G, "{\"status\":\"SUSPENDED\"}",
	         NULL);
	EXPECT(r, 200, NULL);
	done(&r);
	ms = poll_reason(b, m, TENANT_G, "TENANT_SUSPENDED");
	assert_true(ms >= 0 && ms <= 1000);

	/* one reserve on A and one on B of the same number: exactly one winner */
	for (int i = 0; i < 5; i++) {
		char ident[32];
		snprintf(ident, sizeof ident, "%d", 3010 + i); /* demo short codes */
		uint16_t ports[2] = {a, b};
		int conflicts, other;
		int ok = race(ports, 2, ident, "{\"tenant_id\":\"" TENANT_E "\"}", 2, &conflicts,
		              &other);
		assert_int_equal(ok, 1);
		/* the loser lost the CAS (CONFLICT) or arrived after the commit
		 * (INVALID_TRANSITION): either way not a second holder */
		assert_int_equal(conflicts + other, 1);
	}
}

/* ---- metrics ------------------------------------------------------------------------------ */

/* The value of the first sample line starting with series (name, or name{labels}) followed by
 * a space, or NAN when absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return NAN;
}

static double scrape(uint16_t port, const char *series)
{
	char *m = fetch_all(port, "/metrics");
	double v = sample(m, series);
	free(m);
	return v;
}

/* Every metric the spec lists (but the import counter: no import yet) is exposed, and the
 * gauges read from the database follow the changes. */
static void test_metrics(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	fx_start(fx, &fx->a,
	         (const char *const[]){"GHASI_NUMBERING_METRICS_REFRESH=@every 1s", NULL});
	uint16_t a = fx->a.port;
	const char *n = "%2B93791234567", *m2 = FIRST;
	resp_t r = validate(a, n, TENANT_E); /* one validate observed */
	done(&r);
	static const char *const names[] = {
	    "numbering_validate_lease_seconds_count{result=\"NOT_LEASED\"}",
	    "numbering_validate_cache_hits_total",
	    "numbering_validate_cache_misses_total",
	    "numbering_transitions_total{action=\"reserve\",result=\"ok\"}",
	    "numbering_conflicts_total",
	    "numbering_pool_utilisation_ratio{kind=\"MSISDN\",tenant=\"" TENANT_E "\"}",
	    "numbering_pool_utilisation_ratio{kind=\"ALPHA\",tenant=\"" TENANT_S "\"}",
	    "numbering_quarantine_backlog",
	    "numbering_outbox_lag_seconds",
	    "numbering_audit_chain_broken",
	    "numbering_reservations_expired_total",
	};
	char *text = fetch_all(a, "/metrics");
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (isnan(sample(text, names[i])))
			fail_msg("metric %s not exposed", names[i]);
	free(text);
	double lag = scrape(a, "numbering_outbox_lag_seconds");
	assert_true(lag >= 0 && lag < 60);
	double q0 = scrape(a, "numbering_quarantine_backlog");

	/* A pool write updates its gauges at once: held / quota. */
	resp_t p = call(a, "PATCH", "/v1/admin/numbering/pools/" TENANT_E,
	                "{\"quotas\":{\"MSISDN\":400,\"SHORT_CODE\":10,\"ALPHA\":5}}", NULL);
	EXPECT(p, 200, NULL);
	json_int_t held =
	    json_integer_value(json_object_get(json_object_get(p.j, "held"), "MSISDN"));
	done(&p);
	const char *util =
	    "numbering_pool_utilisation_ratio{kind=\"MSISDN\",tenant=\"" TENANT_E "\"}";
	assert_float_equal(scrape(a, util), (double)held / 400.0, 1e-9);
	/* Transitions reach the gauges through the refresh job (every second here). */
	r = act(a, n, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(a, m2, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(a, n, "assign", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(a, n, "release", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	int64_t t0 = gh_test_wall_ms();
	double u = 0, q = 0;
	while (gh_test_wall_ms() - t0 < 5000) {
		u = scrape(a, util);
		q = scrape(a, "numbering_quarantine_backlog");
		if (fabs(u - (double)(held + 1) / 400.0) < 1e-9 && q == q0 + 1)
			break;
		usleep(100 * 1000);
	}
	assert_float_equal(u, (double)(held + 1) / 400.0, 1e-9);
	assert_float_equal(q, q0 + 1, 1e-9);
}

/* ---- fail-closed ------------------------------------------------------------------------- */

static void test_stale_index_is_unavailable(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	/* No heartbeat within the bound: the index must stop answering. */
	fx_start(fx, &fx->a,
	         (const char *const[]){"GHASI_NUMBERING_HEARTBEAT=@every 1h",
	                               "GHASI_NUMBERING_STALENESS_BOUND_MS=1500", NULL});
	uint16_t p = fx->a.port;
	resp_t r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(p, FIRST, "assign", "{\"tenant_id\":\"" TENANT_S "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	int64_t t0 = gh_test_wall_ms();
	int saw_503 = 0;
	while (gh_test_wall_ms() - t0 < 4000 && !saw_503) {
		r = validate(p, FIRST, TENANT_S);
		if (r.status == 503) {
			EXPECT(r, 503, "UNAVAILABLE");
			saw_503 = 1;
		} else {
			EXPECT(r, 200, NULL);
		}
		done(&r);
		usleep(50 * 1000);
	}
	assert_true(saw_503);
	r = call(p, "GET", "/v1/numbering/lookup/" FIRST, NULL, NULL);
	EXPECT(r, 503, "UNAVAILABLE");
	done(&r);
	assert_int_equal(gh_test_http_status(p, "/readyz"), 503);
}

static void test_database_down_fails_closed(void **state)
{
	fx_t *fx = *state;
	GH_TEST_NEED(gh_test_pg_url()); /* PostgreSQL installed and wanted */
	char initdb[512];
	snprintf(initdb, sizeof initdb, "%s/initdb", pgbin);
	if (access(initdb, X_OK) != 0)
		skip();
	uint16_t port = gh_test_free_port();
	if (getuid() == 0) {
		chmod(fx->dir, 0755);
		sh("chown postgres:postgres %s", fx->dir);
	}
	assert_int_equal(
	    sh("%s %s -D %s/pg -U postgres -A trust -E UTF8 --no-locale >%s/initdb.log "
	       "2>&1",
	       as_pg(), initdb, fx->dir, fx->dir),
	    0);
	assert_int_equal(sh("%s %s/pg_ctl -D %s/pg -l %s/pg.log -w -t 30 -o '-h 127.0.0.1 -p %u -k "
	                    "%s -c fsync=off' start >/dev/null",
	                    as_pg(), pgbin, fx->dir, fx->dir, port, fx->dir),
	                 0);
	fx->own_pg = 1;
	char url[128];
	snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%u/postgres", port);
	fx->store = strdup(url);
	/* An index smaller than the seed: some numbers are only in the database, so their
	 * validates miss; a long staleness bound keeps the hits answering meanwhile. */
	fx_start(fx, &fx->a,
	         (const char *const[]){"GHASI_NUMBERING_INDEX_CAPACITY=1000",
	                               "GHASI_NUMBERING_SEED_MSISDNS=1400",
	                               "GHASI_NUMBERING_STALENESS_BOUND_MS=600000", NULL});
	uint16_t p = fx->a.port;
	/* every demo number, and one of them leased so an "allowed" exists to be wrong about */
	resp_t r = act(p, FIRST, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	r = act(p, FIRST, "assign", "{\"tenant_id\":\"" TENANT_E "\"}");
	EXPECT(r, 200, NULL);
	done(&r);
	char **idents = calloc(2000, sizeof *idents);
	size_t n = 0;
	char next[64] = "", path[1024];
	do {
		snprintf(path, sizeof path,
		         "/v1/admin/numbering/numbers?kind=MSISDN&page_size=100%s%s",
		         next[0] ? "&page_token=" : "", next);
		r = call(p, "GET", path, NULL, NULL);
		EXPECT(r, 200, NULL);
		json_t *arr = json_object_get(r.j, "numbers");
		for (size_t i = 0; i < json_array_size(arr) && n < 2000; i++) {
			const char *id = jstr(json_array_get(arr, i), "identifier");
			idents[n] = malloc(32);
			snprintf(idents[n++], 32, "%%2B%s", id + 1);
		}
		snprintf(next, sizeof next, "%s", jstr(r.j, "next_page_token"));
		done(&r);
	} while (next[0]);
	assert_true(n >= 1400);

	assert_int_equal(
	    sh("%s %s/pg_ctl -D %s/pg -m immediate -w stop >/dev/null", as_pg(), pgbin, fx->dir),
	    0);
	fx->own_pg = 0;
	size_t unavailable = 0, answered = 0;
	for (size_t i = 0; i < n; i++) {
		r = validate(p, idents[i], TENANT_E);
		if (r.status == 503) {
			assert_string_equal(ecode(&r), "UNAVAILABLE");
			unavailable++;
		} else {
			EXPECT(r, 200, NULL);
			/* from the index: the leased one may still be allowed (it is), no other */
			if (json_is_true(json_object_get(r.j, "allowed")))
				assert_string_equal(idents[i], FIRST);
			answered++;
		}
		done(&r);
		free(idents[i]);
	}
	free(idents);
	printf("# database down: %zu validates answered 503 (misses), %zu from the index\n",
	       unavailable, answered);
	assert_true(unavailable > 0);
	assert_true(answered > 0);
	/* a number added elsewhere and unknown here: 503 as well, never a guess */
	r = validate(p, "%2B93709999999", TENANT_E);
	EXPECT(r, 503, "UNAVAILABLE");
	done(&r);
	gh_test_ghasi_stop(&fx->a);
}

/* ---- property: validate over HTTP == the rule on the database row ------------------------ */

static const char *const ptenants[] = {TENANT_E, TENANT_S, TENANT_G};

static void test_property_validate_matches_database(void **state)
{
	fx_t *fx = *state;
	fx_backend(fx);
	fx_start(fx, &fx->a, NULL);
	uint16_t p = fx->a.port;
	enum { NUMS = 12, OPS = 400 };
	char idents[NUMS][32];
	uint64_t keys[NUMS];
	for (int i = 0; i < NUMS; i++) {
		/* demo MSISDNs (round-robin over 5 operators) and short codes */
		const char *raw[] = {"+93701234567", "+93791234567", "+93771234567", "+93781234567",
		                     "+93741234567", "+93711234567", "+93721234567", "+93761234567",
		                     "+93731234567", "3001",         "3002",         "3003"};
		gh_ident_t id;
		assert_int_equal(
		    gh_ident_normalize(NULL, GH_IDENT_AUTO, raw[i], strlen(raw[i]), &id, NULL), 0);
		keys[i] = id.key;
		if (raw[i][0] == '+')
			snprintf(idents[i], sizeof idents[i], "%%2B%s", raw[i] + 1);
		else
			snprintf(idents[i], sizeof idents[i], "%s", raw[i]);
	}
	static const char *const actions[] = {"reserve", "assign", "release", "recall",
	                                      "suspend", "resume", "reclaim", "override"};
	unsigned seed = (unsigned)time(NULL);
	printf("# property seed %u\n", seed);
	srand(seed);
	int ok = 0;
	for (int i = 0; i < OPS; i++) {
		const char *ident = idents[rand() % NUMS];
		const char *tenant = ptenants[rand() % 3];
		int a = rand() % 11;
		char body[160];
		resp_t r;
		if (a == 10) {
			/* flip a pool's status now and then */
			snprintf(body, sizeof body, "{\"status\":\"%s\"}",
			         rand() % 3 ? "ACTIVE" : "SUSPENDED");
			char path[1024];
			snprintf(path, sizeof path, "/v1/admin/numbering/pools/%s", tenant);
			r = call(p, "PATCH", path, body, NULL);
		} else if (a == 7 || a == 8 || a == 9) {
			if (a != 7) {
				/* bias towards leases: reserve + assign more often */
				snprintf(body, sizeof body, "{\"tenant_id\":\"%s\"}", tenant);
				r = act(p, ident, a == 8 ? "reserve" : "assign", body);
				assert_true(r.status == 200 || r.status == 409 || r.status == 422);
				ok += r.status == 200;
				done(&r);
				continue;
			}
			char path[1024];
			snprintf(path, sizeof path,
			         "/v1/admin/numbering/numbers/%s:override-quarantine", ident);
			r = call(p, "POST", path,
			         "{\"justification\":\"property test override, ticket 1\"}", NULL);
		} else {
			snprintf(body, sizeof body, "{\"tenant_id\":\"%s\"}", tenant);
			if (a == 3 || a == 4 || a == 5)
				snprintf(body, sizeof body, "{}");
			r = act(p, ident, actions[a], body);
		}
		assert_true(r.status == 200 || r.status == 409 || r.status == 422 ||
		            r.status == 404);
		ok += r.status == 200;
		done(&r);
	}
	/* Then lease most numbers, so that ALLOWED, WRONG_TENANT, LEASE_* and TENANT_SUSPENDED all
	 * occur in the comparison, with one pool suspended and one lease suspended. */
	for (int i = 0; i < NUMS - 2; i++) {
		char path[1024], body[160];
		resp_t r = act(p, idents[i], "recall", "{}"); /* from wherever it is */
		done(&r);
		snprintf(path, sizeof path, "/v1/admin/numbering/numbers/%s:override-quarantine",
		         idents[i]);
		r = call(p, "POST", path,
		         "{\"justification\":\"property test override, ticket 2\"}", NULL);
		done(&r);
		for (int t = 0; t < 3; t++) {
			snprintf(path, sizeof path, "/v1/admin/numbering/pools/%s", ptenants[t]);
			r = call(p, "PATCH", path, "{\"status\":\"ACTIVE\"}", NULL);
			done(&r);
		}
		snprintf(body, sizeof body, "{\"tenant_id\":\"%s\"}", ptenants[i % 3]);
		r = act(p, idents[i], "reserve", body);
		done(&r);
		r = act(p, idents[i], "assign", body);
		done(&r);
	}
	resp_t r0 = act(p, idents[1], "suspend", "{}");
	done(&r0);
	r0 = call(p, "PATCH", "/v1/admin/numbering/pools/" TENANT_G, "{\"status\":\"SUSPENDED\"}",
	          NULL);
	done(&r0);
	printf("# %d of %d random operations succeeded\n", ok, OPS);
	assert_true(ok > OPS / 10);

	void *ctx = talloc_new(NULL);
	gh_store_t *st;
	num_repo_t *repo;
	assert_int_equal(gh_store_open(ctx, fx->store, NULL, &st), 0);
	assert_int_equal(num_repo_open(ctx, st, NULL, &repo), 0);
	const char *callers[] = {TENANT_E, TENANT_S, TENANT_G, "tenant-other"};
	int checked = 0, allowed = 0;
	for (int i = 0; i < NUMS; i++) {
		for (int t = 0; t < 4; t++) {
			num_index_t *ix;
			num_index_entry_t e;
			assert_int_equal(num_index_new(ctx, 16, 16, &ix), 0);
			assert_int_equal(num_repo_index_entry(repo, ix, keys[i], &e), 0);
			uint32_t tidx = NUM_TENANT_NONE;
			num_index_tenant_find(ix, callers[t], &tidx);
			bool same = e.tenant != NUM_TENANT_NONE && e.tenant == tidx;
			num_vreason_t want = num_validate_rule(
			    &e, same, num_index_tenant_status(ix, e.tenant), gh_test_wall_ms());
			resp_t r = validate(p, idents[i], callers[t]);
			EXPECT(r, 200, NULL);
			if (strcmp(jstr(r.j, "reason"), num_vreason_name(want)) != 0)
				fail_msg("%s for %s: HTTP says %s, database row says %s", idents[i],
				         callers[t], jstr(r.j, "reason"), num_vreason_name(want));
			assert_int_equal(json_is_true(json_object_get(r.j, "allowed")),
			                 want == NUM_VR_ALLOWED);
			allowed += want == NUM_VR_ALLOWED;
			checked++;
			done(&r);
		}
	}
	printf("# %d validates checked against the database, %d allowed\n", checked, allowed);
	assert_true(allowed >= 5);
	talloc_free(ctx);
	resp_t r = call(p, "POST", "/v1/admin/numbering/audit:verify", NULL, NULL);
	EXPECT(r, 200, NULL);
	assert_true(json_is_true(json_object_get(r.j, "ok")));
	done(&r);
}

int main(void)
{
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_routes, setup_sqlite, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_routes, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reserve_race, setup_sqlite, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reserve_race, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_two_replicas, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup_sqlite, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stale_index_is_unavailable, setup_sqlite,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_database_down_fails_closed, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_property_validate_matches_database, setup_sqlite,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_property_validate_matches_database, setup_pg,
	                                    fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
