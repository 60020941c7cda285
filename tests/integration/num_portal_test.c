/* num_portal: identity and access of the numbering service through the real `ghasi serve`
 * ($GHASI_BIN): the tenant portal on SQLite and on PostgreSQL (there as a plain role owning its
 * database, so row-level security applies to every portal transaction): every portal route,
 * tenant A never sees or changes tenant B's numbers, viewers cannot mutate, tokens missing,
 * expired, forged or without a tenant are refused; the admin API's roles; the audit actor; and
 * mTLS on the internal API with certificates made by the openssl CLI: an allowlisted CN is
 * accepted, another CN and no certificate are refused. */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

#define TA "tenant-smb"        /* tenant A: no vanity numbers */
#define TB "tenant-enterprise" /* tenant B: vanity allowed */
#define P  "/v1/portal/numbering"

static void *g; /* talloc context of one test */

/* ---- a server process (plain HTTP or HTTPS) ------------------------------------------- */

typedef struct {
	gh_test_ghasi_t p;
	const char *tls_dir; /* HTTPS: the certificates' directory */
} srv_t;

typedef struct {
	int status;
	json_t *j;
	char replayed;
} resp_t;

static int tls_call(const srv_t *s, const char *client, const char *method, const char *path,
                    const char *extra, const char *body, resp_t *out);

/* One request: plain HTTP, or HTTPS without a client certificate when the server has TLS. */
static resp_t call(const srv_t *s, const char *method, const char *path, const char *body,
                   const char *extra)
{
	resp_t out = {0};
	if (s->tls_dir) {
		tls_call(s, NULL, method, path, extra, body, &out);
		return out;
	}
	gh_test_http_resp_t *r = malloc(sizeof *r);
	assert_non_null(r);
	gh_test_http_request(s->p.port, method, path, extra, body, r);
	out.status = r->status;
	out.j = json_loadb(r->body, r->body_len, 0, NULL);
	char v[16];
	out.replayed = gh_test_http_header(r, "Idempotent-Replayed", v, sizeof v) != NULL;
	free(r);
	return out;
}

/* GET /readyz the way call() goes: over HTTPS when the server has TLS. */
static int probe(const gh_test_ghasi_t *p, void *ud)
{
	(void)p;
	int fd = gh_test_http_connect(((srv_t *)ud)->p.port);
	if (fd < 0)
		return -1;
	close(fd);
	resp_t r = call(ud, "GET", "/readyz", NULL, NULL);
	json_decref(r.j);
	return r.status;
}

static void srv_start(srv_t *s, const char *dir, const char *store, const char *const *extra)
{
	void *tmp = talloc_new(NULL);
	const char *env[] = {
	    talloc_asprintf(tmp, "GHASI_STORE_URL=%s", store), "GHASI_LOG_LEVEL=warn",
	    "GHASI_NUMBERING_INDEX_CAPACITY=100000",           "GHASI_NUMBERING_SEED_MSISDNS=300",
	    "GHASI_AUTH_JWT_HS256_SECRET=" GH_TEST_JWT_SECRET, NULL};
	s->p.probe = probe;
	s->p.probe_ud = s;
	gh_test_ghasi_start(&s->p, dir, env, extra);
	talloc_free(tmp);
}

static void srv_stop(srv_t *s) { gh_test_ghasi_stop(&s->p); }

/* ---- HTTPS with an optional client certificate (GnuTLS, as libmicrohttpd) ------------- */

static char *pth(const srv_t *s, const char *name)
{
	return talloc_asprintf(g, "%s/%s", s->tls_dir, name);
}

/* client: "<client>.pem"/"<client>.key" in tls_dir, NULL for none. Returns the status, -1
 * when the handshake fails. */
static int tls_call(const srv_t *s, const char *client, const char *method, const char *path,
                    const char *extra, const char *body, resp_t *out)
{
	gnutls_certificate_credentials_t cred;
	gnutls_session_t sess;
	memset(out, 0, sizeof *out);
	out->status = -1;
	assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
	assert_true(gnutls_certificate_set_x509_trust_file(cred, pth(s, "ca.pem"),
	                                                   GNUTLS_X509_FMT_PEM) > 0);
	if (client)
		assert_int_equal(gnutls_certificate_set_x509_key_file(
		                     cred, pth(s, talloc_asprintf(g, "%s.pem", client)),
		                     pth(s, talloc_asprintf(g, "%s.key", client)),
		                     GNUTLS_X509_FMT_PEM),
		                 0);
	assert_int_equal(gnutls_init(&sess, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_set_default_priority(sess), 0);
	assert_int_equal(gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, cred), 0);
	gnutls_session_set_verify_cert(sess, NULL, 0);
	int fd = gh_test_http_connect(s->p.port);
	assert_true(fd >= 0);
	gnutls_transport_set_int(sess, fd);
	gnutls_handshake_set_timeout(sess, 10000);
	int rc;
	do
		rc = gnutls_handshake(sess);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0)
		goto done;
	char *req = talloc_asprintf(g,
	                            "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	                            "Content-Length: %zu\r\n%s\r\n%s",
	                            method, path, body ? strlen(body) : 0, extra ? extra : "",
	                            body ? body : "");
	assert_int_equal(gnutls_record_send(sess, req, strlen(req)), (ssize_t)strlen(req));
	size_t cap = 1 << 16, len = 0;
	char *buf = talloc_size(g, cap);
	ssize_t n;
	while (len < cap - 1 && ((n = gnutls_record_recv(sess, buf + len, cap - 1 - len)) > 0 ||
	                         n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED))
		if (n > 0)
			len += (size_t)n;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &out->status) != 1)
		out->status = 0;
	const char *b = strstr(buf, "\r\n\r\n");
	out->j = b ? json_loads(b + 4, 0, NULL) : NULL;
done:
	gnutls_deinit(sess);
	gnutls_certificate_free_credentials(cred);
	close(fd);
	return out->status;
}

/* ---- requests ---------------------------------------------------------------------------- */

static const char *jstr(const json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));
	return s ? s : "";
}

static const char *ecode(const resp_t *r) { return jstr(json_object_get(r->j, "error"), "code"); }

#define EXPECT(r, st, code)                                                                      \
	do {                                                                                     \
		if ((r).status != (st) || ((code) && strcmp(ecode(&(r)), (code) ? (code) : ""))) \
			fail_msg("%s:%d: got %d %s, want %d %s", __FILE__, __LINE__, (r).status, \
			         json_dumps((r).j, 0), (st), (code) ? (code) : "");              \
	} while (0)

/* Call and check, then free the body. */
#define CHECK(s, m, path, body, hdr, st, code)                     \
	do {                                                       \
		resp_t r_ = call((s), (m), (path), (body), (hdr)); \
		EXPECT(r_, (st), (code));                          \
		json_decref(r_.j);                                 \
	} while (0)

/* "+9370..." -> "%2B9370..." for paths and query strings */
static const char *enc(const char *ident)
{
	return ident[0] == '+' ? talloc_asprintf(g, "%%2B%s", ident + 1) : ident;
}

static const char *num_path(const char *ident, const char *action)
{
	return talloc_asprintf(g, P "/numbers/%s%s%s", enc(ident), action ? ":" : "",
	                       action ? action : "");
}

/* Whether a list (key name) holds an entry whose field equals value. */
static bool listed(const json_t *j, const char *name, const char *field, const char *value)
{
	json_t *arr = json_object_get(j, name);
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (strcmp(jstr(json_array_get(arr, i), field), value) == 0)
			return true;
	return false;
}

/* ---- fixture ------------------------------------------------------------------------------ */

typedef struct {
	char *dir;
	srv_t s;
	gh_test_backend_t be;
	char *store;
	char role[32];       /* PostgreSQL: the plain role owning the database */
	const char *hA, *hB; /* tenant-admin tokens of A and B (header lines) */
} fx_t;

static int fx_setup(void **state, gh_test_backend_t be)
{
	fx_t *fx = talloc_zero(NULL, fx_t);
	g = fx;
	fx->be = be;
	fx->dir = gh_test_tmpdir();
	*state = fx;
	return 0;
}
static int setup_sqlite(void **state) { return fx_setup(state, GH_TEST_SQLITE); }
static int setup_pg(void **state) { return fx_setup(state, GH_TEST_PG); }

static void pg_admin(const char *sql)
{
	PGconn *c = PQconnectdb(getenv("GH_TEST_PG_ADMIN_URL"));
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static int fx_teardown(void **state)
{
	fx_t *fx = *state;
	srv_stop(&fx->s);
	gh_test_rmtree(fx->dir);
	free(fx->dir);
	free(fx->store);
	talloc_free(fx);
	g = NULL;
	return 0;
}

/* The store; on PostgreSQL a fresh database owned by a plain (non-superuser) role that the
 * server connects as: superusers bypass row-level security, table owners do not (FORCE). */
static void fx_store(fx_t *fx)
{
	if (fx->be == GH_TEST_PG)
		GH_TEST_NEED(gh_test_pg_url());
	fx->store = gh_test_store_url(fx->be, fx->dir);
	if (!fx->store)
		skip();
	if (fx->be != GH_TEST_PG)
		return;
	snprintf(fx->role, sizeof fx->role, "portal_%d", rand() % 1000000);
	const char *db = strrchr(fx->store, '/') + 1;
	pg_admin(talloc_asprintf(g, "CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS", fx->role));
	pg_admin(talloc_asprintf(g, "ALTER DATABASE %s OWNER TO %s", db, fx->role));
	/* postgresql://postgres@host:port/db -> postgresql://<role>@host:port/db */
	const char *at = strchr(fx->store, '@');
	char *url = NULL;
	assert_true(asprintf(&url, "postgresql://%s%s", fx->role, at) > 0);
	free(fx->store);
	fx->store = url;
}

static const char *tok(const char *sub, const char *roles, const char *tenant)
{
	return gh_test_jwt_header(g, sub, roles, tenant);
}

/* n available MSISDNs as tenant A browses them (ordinary ones: A's pool has no vanity). */
static void pick(fx_t *fx, const char **out, size_t n)
{
	resp_t r =
	    call(&fx->s, "GET", talloc_asprintf(g, P "/available?kind=MSISDN&page_size=%zu", n),
	         NULL, fx->hA);
	EXPECT(r, 200, NULL);
	json_t *arr = json_object_get(r.j, "numbers");
	assert_int_equal(json_array_size(arr), n);
	for (size_t i = 0; i < n; i++)
		out[i] = talloc_strdup(g, jstr(json_array_get(arr, i), "identifier"));
	json_decref(r.j);
}

static int64_t version_of(fx_t *fx, const char *ident)
{
	resp_t r =
	    call(&fx->s, "GET", talloc_asprintf(g, "/v1/admin/numbering/numbers/%s", enc(ident)),
	         NULL, tok("ops", "platform-admin", NULL));
	EXPECT(r, 200, NULL);
	int64_t v = json_integer_value(json_object_get(r.j, "version"));
	json_decref(r.j);
	return v;
}

/* ---- the portal --------------------------------------------------------------------------- */

static void test_portal(void **state)
{
	fx_t *fx = *state;
	fx_store(fx);
	srv_start(&fx->s, fx->dir, fx->store, NULL);
	srv_t *s = &fx->s;
	fx->hA = tok("alice", "tenant-admin", TA);
	fx->hB = tok("bob", "tenant-admin", TB);
	const char *hA = fx->hA, *hB = fx->hB;
	const char *hAv = tok("vera", "tenant-viewer", TA);
	const char *hAo = tok("otto", "tenant-operator", TA);
	const char *n[8];
	pick(fx, n, 8);
	/* B: n0 ASSIGNED, n1 RESERVED, n2 released (QUARANTINED TENANT_RELEASE, prev B).
	 * A: n3 RESERVED, n4 ASSIGNED then released (reclaimable), n5 ASSIGNED. */
	CHECK(s, "POST", num_path(n[0], "reserve"), NULL, hB, 200, NULL);
	CHECK(s, "POST", num_path(n[0], "assign"), "{\"term_days\":10}", hB, 200, NULL);
	CHECK(s, "POST", num_path(n[1], "reserve"), "{\"ttl_seconds\":3600}", hB, 200, NULL);
	CHECK(s, "POST", num_path(n[2], "reserve"), NULL, hB, 200, NULL);
	CHECK(s, "POST", num_path(n[2], "assign"), NULL, hB, 200, NULL);
	CHECK(s, "POST", num_path(n[2], "release"), NULL, hB, 200, NULL);
	CHECK(s, "POST", num_path(n[3], "reserve"), NULL, hA, 200, NULL);
	CHECK(s, "POST", num_path(n[4], "reserve"), NULL, hAo, 200, NULL);
	CHECK(s, "POST", num_path(n[4], "assign"), NULL, hAo, 200, NULL);
	CHECK(s, "POST", num_path(n[4], "release"), NULL, hA, 200, NULL);
	CHECK(s, "POST", num_path(n[5], "reserve"), NULL, hA, 200, NULL);
	resp_t r = call(s, "POST", num_path(n[5], "assign"), "{\"auto_renew\":false}", hA);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "ASSIGNED");
	assert_string_equal(jstr(r.j, "tenant_id"), TA);
	assert_false(json_is_true(json_object_get(json_object_get(r.j, "lease"), "auto_renew")));
	json_decref(r.j);

	/* Every route, A's token on B's numbers: 404, never 403 or 409, and nothing changes. */
	const char *theirs[] = {n[0], n[1], n[2]};
	const char *actions[] = {"reserve", "assign", "release", "reclaim"};
	for (int i = 0; i < 3; i++) {
		int64_t v = version_of(fx, theirs[i]);
		CHECK(s, "GET", num_path(theirs[i], NULL), NULL, hA, 404, "NOT_FOUND");
		for (int a = 0; a < 4; a++) {
			CHECK(s, "POST", num_path(theirs[i], actions[a]), NULL, hA, 404,
			      "NOT_FOUND");
			CHECK(s, "POST", num_path(theirs[i], actions[a]),
			      talloc_asprintf(g, "{\"expected_version\":%lld}", (long long)v + 7),
			      hA, 404, "NOT_FOUND");
		}
		assert_int_equal(version_of(fx, theirs[i]), v);
	}
	/* and B's token on A's */
	const char *mine[] = {n[3], n[4], n[5]};
	for (int i = 0; i < 3; i++) {
		CHECK(s, "GET", num_path(mine[i], NULL), NULL, hB, 404, "NOT_FOUND");
		for (int a = 0; a < 4; a++)
			CHECK(s, "POST", num_path(mine[i], actions[a]), NULL, hB, 404, "NOT_FOUND");
	}
	/* B still holds its numbers as they were */
	r = call(s, "GET", num_path(n[0], NULL), NULL, hB);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "ASSIGNED");
	json_decref(r.j);

	/* my numbers: held and reclaimable, none of B's */
	r = call(s, "GET", P "/numbers", NULL, hA);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "numbers")), 3);
	for (int i = 0; i < 3; i++) {
		assert_true(listed(r.j, "numbers", "identifier", mine[i]));
		assert_false(listed(r.j, "numbers", "identifier", theirs[i]));
	}
	json_decref(r.j);
	r = call(s, "GET", P "/numbers?state=RESERVED", NULL, hA);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "numbers")), 1);
	assert_true(listed(r.j, "numbers", "identifier", n[3]));
	json_decref(r.j);
	CHECK(s, "GET", P "/numbers?state=NOPE", NULL, hA, 400, "INVALID_ARGUMENT");
	r = call(s, "GET", P "/numbers", NULL, hB);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "numbers")), 3);
	for (int i = 0; i < 3; i++)
		assert_false(listed(r.j, "numbers", "identifier", mine[i]));
	json_decref(r.j);

	/* my leases: only A's live lease (n5) */
	r = call(s, "GET", P "/leases", NULL, hA);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "leases")), 1);
	assert_true(listed(r.j, "leases", "identifier", n[5]));
	assert_string_equal(jstr(json_array_get(json_object_get(r.j, "leases"), 0), "status"),
	                    "ACTIVE");
	json_decref(r.j);
	r = call(s, "GET", P "/leases", NULL, hB);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "leases")), 1);
	assert_true(listed(r.j, "leases", "identifier", n[0]));
	json_decref(r.j);

	/* my pool: counts only A's numbers (n3 reserved, n5 assigned) */
	r = call(s, "GET", P "/pool", NULL, hA);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "tenant_id"), TA);
	json_t *held = json_object_get(r.j, "held");
	assert_int_equal(json_integer_value(json_object_get(held, "MSISDN")), 2);
	assert_int_equal(json_integer_value(json_object_get(r.j, "reservations")), 1);
	int64_t quota =
	    json_integer_value(json_object_get(json_object_get(r.j, "quotas"), "MSISDN"));
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(r.j, "remaining"), "MSISDN")),
	    quota - 2);
	json_decref(r.j);
	r = call(s, "GET", P "/pool", NULL, hB);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "tenant_id"), TB);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(r.j, "held"), "MSISDN")), 2);
	json_decref(r.j);

	/* browse: held numbers are not in the catalogue; paging; pattern; vanity per pool */
	r = call(s, "GET", P "/available?kind=MSISDN&page_size=1000", NULL, hA);
	EXPECT(r, 200, NULL);
	size_t total_a = json_array_size(json_object_get(r.j, "numbers"));
	assert_true(total_a > 100);
	for (int i = 0; i < 6; i++)
		if (listed(r.j, "numbers", "identifier", n[i]))
			fail_msg("%s is not AVAILABLE and yet listed", n[i]);
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r.j, "numbers"), i, e)
	{
		assert_int_equal(json_integer_value(json_object_get(e, "vanity_tier")), 0);
		assert_null(json_object_get(e, "tenant_id"));
	}
	assert_null(json_object_get(r.j, "next_page_token"));
	json_decref(r.j);
	r = call(s, "GET", P "/available?kind=MSISDN&page_size=1000", NULL, hB);
	EXPECT(r, 200, NULL);
	assert_true(json_array_size(json_object_get(r.j, "numbers")) > total_a); /* + vanity */
	json_decref(r.j);
	r = call(s, "GET", P "/available?kind=MSISDN&page_size=2", NULL, hA);
	EXPECT(r, 200, NULL);
	const char *tok1 = talloc_strdup(g, jstr(r.j, "next_page_token"));
	const char *first = talloc_strdup(
	    g, jstr(json_array_get(json_object_get(r.j, "numbers"), 0), "identifier"));
	assert_true(tok1[0]);
	json_decref(r.j);
	r = call(s, "GET",
	         talloc_asprintf(g, P "/available?kind=MSISDN&page_size=2&page_token=%s", tok1),
	         NULL, hA);
	EXPECT(r, 200, NULL);
	assert_int_equal(json_array_size(json_object_get(r.j, "numbers")), 2);
	assert_false(listed(r.j, "numbers", "identifier", first));
	json_decref(r.j);
	/* *<last 4 digits of n6>*: n6 is in, and every entry matches */
	const char *tail = n[6] + strlen(n[6]) - 4;
	r = call(s, "GET", talloc_asprintf(g, P "/available?pattern=*%s*&page_size=1000", tail),
	         NULL, hA);
	EXPECT(r, 200, NULL);
	assert_true(listed(r.j, "numbers", "identifier", n[6]));
	json_array_foreach(json_object_get(r.j, "numbers"), i, e)
	    assert_non_null(strstr(jstr(e, "identifier"), tail));
	json_decref(r.j);
	CHECK(s, "GET", P "/available?pattern=12a*", NULL, hA, 400, "INVALID_ARGUMENT");
	CHECK(s, "GET", P "/available?pattern=**", NULL, hA, 400, "INVALID_ARGUMENT");
	CHECK(s, "GET", P "/available?kind=FAX", NULL, hA, 400, "INVALID_ARGUMENT");
	CHECK(s, "GET", P "/available?page_token=zzz", NULL, hA, 400, "INVALID_ARGUMENT");
	CHECK(s, "GET", P "/available?vanity=true", NULL, hA, 422, "FAILED_PRECONDITION");
	r = call(s, "GET", P "/available?vanity=true&page_size=1000", NULL, hB);
	EXPECT(r, 200, NULL);
	assert_true(json_array_size(json_object_get(r.j, "numbers")) > 0);
	json_array_foreach(json_object_get(r.j, "numbers"), i, e)
	    assert_true(json_integer_value(json_object_get(e, "vanity_tier")) >= 1);
	json_decref(r.j);

	/* reclaim: A's released number is A's to reclaim (B's 404 above) */
	r = call(s, "GET", num_path(n[4], NULL), NULL, hA);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "QUARANTINED");
	json_decref(r.j);
	r = call(s, "POST", num_path(n[4], "reclaim"), NULL, hA);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "ASSIGNED");
	json_decref(r.j);
	/* a refused transition on A's own number is A's to know */
	CHECK(s, "POST", num_path(n[4], "reserve"), NULL, hA, 409, "INVALID_TRANSITION");
	CHECK(s, "POST", num_path(n[5], "assign"), "{\"expected_version\":1}", hA, 409, "CONFLICT");

	/* viewer reads, never mutates */
	CHECK(s, "GET", P "/numbers", NULL, hAv, 200, NULL);
	CHECK(s, "GET", P "/pool", NULL, hAv, 200, NULL);
	CHECK(s, "POST", num_path(n[7], "reserve"), NULL, hAv, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", num_path(n[3], "assign"), NULL, hAv, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", num_path(n[5], "release"), NULL, hAv, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", num_path(n[4], "reclaim"), NULL, hAv, 403, "PERMISSION_DENIED");

	/* the tenant is the token's: a body tenant_id is an unknown field */
	r = call(s, "POST", num_path(n[7], "reserve"), "{\"tenant_id\":\"" TB "\"}", hA);
	EXPECT(r, 400, "INVALID_ARGUMENT");
	assert_string_equal(
	    jstr(json_object_get(json_object_get(r.j, "error"), "details"), "field"), "/tenant_id");
	json_decref(r.j);
	CHECK(s, "POST", num_path(n[7], "reserve"), "{\"ttl_seconds\":0}", hA, 400,
	      "INVALID_ARGUMENT");
	CHECK(s, "POST", num_path("nonsense!", "reserve"), NULL, hA, 400, "INVALID_ARGUMENT");

	/* Idempotency-Key per tenant: A's replay is A's; B's same key is another key */
	const char *kA = talloc_asprintf(g, "%sIdempotency-Key: same-key\r\n", hA);
	const char *kB = talloc_asprintf(g, "%sIdempotency-Key: same-key\r\n", hB);
	r = call(s, "POST", num_path(n[7], "reserve"), NULL, kA);
	EXPECT(r, 200, NULL);
	assert_false(r.replayed);
	json_decref(r.j);
	r = call(s, "POST", num_path(n[7], "reserve"), NULL, kA);
	EXPECT(r, 200, NULL);
	assert_true(r.replayed);
	assert_string_equal(jstr(r.j, "tenant_id"), TA);
	json_decref(r.j);
	CHECK(s, "POST", num_path(n[7], "reserve"), NULL, kB, 404, "NOT_FOUND");

	/* the audit actor is the token's tenant and subject */
	r = call(s, "GET", talloc_asprintf(g, "/v1/admin/numbering/numbers/%s/history", enc(n[4])),
	         NULL, tok("ops", "platform-admin", NULL));
	EXPECT(r, 200, NULL);
	assert_true(listed(r.j, "history", "actor", "tenant:" TA "/otto"));
	assert_true(listed(r.j, "history", "actor", "tenant:" TA "/alice"));
	json_decref(r.j);

	/* tokens: none, expired, forged, without a tenant, without a tenant role */
	const char *gets[] = {P "/available", P "/numbers", num_path(n[3], NULL), P "/leases",
	                      P "/pool"};
	const char *expired =
	    talloc_asprintf(g, "Authorization: Bearer %s\r\n",
	                    gh_test_jwt(g, GH_TEST_JWT_SECRET, "alice", "tenant-admin", TA, -3600));
	const char *forged = talloc_asprintf(g, "Authorization: Bearer %s\r\n",
	                                     gh_test_jwt(g, "another-secret-of-at-least-32-bytes!!",
	                                                 "alice", "tenant-admin", TA, 3600));
	const char *no_tenant = tok("carol", "tenant-admin", NULL);
	const char *admin = tok("ops", "platform-admin", NULL);
	for (size_t k = 0; k < sizeof gets / sizeof gets[0]; k++) {
		CHECK(s, "GET", gets[k], NULL, NULL, 401, "UNAUTHENTICATED");
		CHECK(s, "GET", gets[k], NULL, expired, 401, "UNAUTHENTICATED");
		CHECK(s, "GET", gets[k], NULL, forged, 401, "UNAUTHENTICATED");
		CHECK(s, "GET", gets[k], NULL, no_tenant, 403, "PERMISSION_DENIED");
		CHECK(s, "GET", gets[k], NULL, admin, 403, "PERMISSION_DENIED");
	}
	for (int a = 0; a < 4; a++) {
		CHECK(s, "POST", num_path(n[3], actions[a]), NULL, NULL, 401, "UNAUTHENTICATED");
		CHECK(s, "POST", num_path(n[3], actions[a]), NULL, expired, 401, "UNAUTHENTICATED");
		CHECK(s, "POST", num_path(n[3], actions[a]), NULL, no_tenant, 403,
		      "PERMISSION_DENIED");
	}
	/* release by the holder after all that: still A's, still reserved */
	r = call(s, "POST", num_path(n[3], "release"), NULL, hA);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "AVAILABLE");
	json_decref(r.j);
}

/* ---- the admin API ------------------------------------------------------------------------ */

static void test_admin(void **state)
{
	fx_t *fx = *state;
	fx_store(fx);
	srv_start(&fx->s, fx->dir, fx->store, NULL);
	srv_t *s = &fx->s;
	const char *admin = tok("ops", "platform-admin", NULL);
	const char *comp = tok("cora", "compliance", NULL);
	const char *tenant = tok("alice", "tenant-admin", TA);
	const char *A = "/v1/admin/numbering";
	const char *N = "%2B93701234567";
	const char *reads[] = {"/operators", "/numbers", "/numbers/%2B93701234567",
	                       "/numbers/%2B93701234567/history", "/pools/" TA};
	for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
		const char *path = talloc_asprintf(g, "%s%s", A, reads[i]);
		CHECK(s, "GET", path, NULL, NULL, 401, "UNAUTHENTICATED");
		CHECK(s, "GET", path, NULL, tenant, 403, "PERMISSION_DENIED");
		CHECK(s, "GET", path, NULL, admin, 200, NULL);
		CHECK(s, "GET", path, NULL, comp, 200, NULL);
	}
	const char *verify = talloc_asprintf(g, "%s/audit:verify", A);
	CHECK(s, "POST", verify, NULL, NULL, 401, "UNAUTHENTICATED");
	CHECK(s, "POST", verify, NULL, tenant, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", verify, NULL, comp, 200, NULL);
	/* platform-admin only */
	const char *pool = talloc_asprintf(g, "%s/pools/tenant-new", A);
	CHECK(s, "PUT", pool, "{\"segment\":\"smb\"}", NULL, 401, "UNAUTHENTICATED");
	CHECK(s, "PUT", pool, "{\"segment\":\"smb\"}", tenant, 403, "PERMISSION_DENIED");
	CHECK(s, "PUT", pool, "{\"segment\":\"smb\"}", comp, 403, "PERMISSION_DENIED");
	CHECK(s, "PUT", pool, "{\"segment\":\"smb\"}", admin, 200, NULL);
	const char *add = talloc_asprintf(g, "%s/numbers", A);
	CHECK(s, "POST", add, "{\"numbers\":[{\"identifier\":\"4000\",\"operator_id\":\"awcc\"}]}",
	      comp, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", add, "{\"numbers\":[{\"identifier\":\"4000\",\"operator_id\":\"awcc\"}]}",
	      admin, 201, NULL);

	/* the internal API is open without TLS (embedded profile); its actor says so */
	CHECK(s, "POST", talloc_asprintf(g, "/v1/numbering/numbers/%s:reserve", N),
	      "{\"tenant_id\":\"" TA "\"}", NULL, 200, NULL);
	CHECK(s, "POST", talloc_asprintf(g, "/v1/numbering/numbers/%s:assign", N),
	      "{\"tenant_id\":\"" TA "\"}", NULL, 200, NULL);
	/* compliance suspends and resumes on the admin API; a tenant may not */
	const char *susp = talloc_asprintf(g, "%s/numbers/%s:suspend", A, N);
	CHECK(s, "POST", susp, "{\"reason\":\"hold\"}", tenant, 403, "PERMISSION_DENIED");
	CHECK(s, "POST", susp, "{\"reason\":\"hold\"}", NULL, 401, "UNAUTHENTICATED");
	resp_t r = call(s, "POST", susp, "{\"reason\":\"hold\"}", comp);
	EXPECT(r, 200, NULL);
	assert_string_equal(jstr(r.j, "state"), "SUSPENDED");
	json_decref(r.j);
	CHECK(s, "POST", talloc_asprintf(g, "%s/numbers/%s:resume", A, N), "{}", admin, 200, NULL);
	CHECK(s, "POST", talloc_asprintf(g, "%s/numbers/%s:recall", A, N),
	      "{\"reason\":\"RECALL_ABUSE\"}", comp, 200, NULL);
	r = call(s, "GET", talloc_asprintf(g, "%s/numbers/%s/history", A, N), NULL, admin);
	EXPECT(r, 200, NULL);
	assert_true(listed(r.j, "history", "actor", "service:unverified"));
	assert_true(listed(r.j, "history", "actor", "admin:cora"));
	assert_true(listed(r.j, "history", "actor", "admin:ops"));
	json_decref(r.j);
}

/* ---- mTLS on the internal API ------------------------------------------------------------- */

static void sh(const char *dir, const char *cmd)
{
	char *full = talloc_asprintf(g, "cd '%s' && (%s) >openssl.log 2>&1", dir, cmd);
	if (system(full) != 0)
		fail_msg("failed: %s", cmd);
}

/* CA, server certificate for 127.0.0.1, clients "billing" (CN billing-service: allowlisted)
 * and "intruder" (same CA, CN not on the list). EC P-256: quick to make. */
static void make_certs(const char *dir)
{
	const char *key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out";
	sh(dir, talloc_asprintf(g,
	                        "%s ca.key && openssl req -x509 -new -key ca.key -out ca.pem "
	                        "-days 2 -subj /CN=portal-test-ca",
	                        key));
	const struct {
		const char *name, *cn, *ext;
	} certs[] = {
	    {"srv", "localhost", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"},
	    {"billing", "billing-service", "extendedKeyUsage=clientAuth"},
	    {"intruder", "intruder", "extendedKeyUsage=clientAuth"},
	};
	for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
		FILE *f = fopen(talloc_asprintf(g, "%s/%s.ext", dir, certs[i].name), "w");
		assert_non_null(f);
		fprintf(f, "%s\n", certs[i].ext);
		fclose(f);
		sh(dir, talloc_asprintf(g,
		                        "%1$s %2$s.key && openssl req -new -key %2$s.key -out "
		                        "%2$s.csr -subj /CN=%3$s && openssl x509 -req -in %2$s.csr "
		                        "-CA ca.pem -CAkey ca.key -CAcreateserial -out %2$s.pem "
		                        "-days 2 -extfile %2$s.ext",
		                        key, certs[i].name, certs[i].cn));
	}
}

static void test_mtls(void **state)
{
	fx_t *fx = *state;
	fx_store(fx);
	make_certs(fx->dir);
	srv_t *s = &fx->s;
	s->tls_dir = fx->dir;
	const char *env[] = {
	    talloc_asprintf(g, "GHASI_HTTP_TLS_CERT=%s/srv.pem", fx->dir),
	    talloc_asprintf(g, "GHASI_HTTP_TLS_KEY=%s/srv.key", fx->dir),
	    talloc_asprintf(g, "GHASI_HTTP_TLS_CLIENT_CA=%s/ca.pem", fx->dir),
	    "GHASI_HTTP_CLIENT_CN_ALLOWLIST=sms-orchestrator,billing-service,compliance-engine",
	    NULL};
	srv_start(s, fx->dir, fx->store, env);
	const char *N = "%2B93701234567";
	const char *lookup = talloc_asprintf(g, "/v1/numbering/lookup/%s", N);
	const char *validate =
	    talloc_asprintf(g, "/v1/numbering/validate-lease?identifier=%s&tenant_id=" TA, N);
	resp_t r;
	/* allowlisted CN */
	assert_int_equal(tls_call(s, "billing", "GET", lookup, NULL, NULL, &r), 200);
	assert_string_equal(jstr(r.j, "identifier"), "+93701234567");
	json_decref(r.j);
	assert_int_equal(tls_call(s, "billing", "GET", validate, NULL, NULL, &r), 200);
	json_decref(r.j);
	/* a CN not on the list, and no certificate: refused on every internal route */
	const char *reserve = talloc_asprintf(g, "/v1/numbering/numbers/%s:reserve", N);
	const char *body = "{\"tenant_id\":\"" TA "\"}";
	const char *clients[] = {"intruder", NULL};
	for (int c = 0; c < 2; c++) {
		assert_int_equal(tls_call(s, clients[c], "GET", lookup, NULL, NULL, &r), 403);
		assert_string_equal(ecode(&r), "PERMISSION_DENIED");
		json_decref(r.j);
		assert_int_equal(tls_call(s, clients[c], "GET", validate, NULL, NULL, &r), 403);
		json_decref(r.j);
		assert_int_equal(tls_call(s, clients[c], "POST", reserve, NULL, body, &r), 403);
		json_decref(r.j);
	}
	/* the allowlisted service reserves; the audit names it */
	assert_int_equal(tls_call(s, "billing", "POST", reserve, NULL, body, &r), 200);
	assert_string_equal(jstr(r.j, "state"), "RESERVED");
	json_decref(r.j);
	/* admin and portal over the same port: JWT, no client certificate needed */
	r = call(s, "GET", "/v1/admin/numbering/numbers/%2B93701234567/history", NULL,
	         tok("ops", "platform-admin", NULL));
	EXPECT(r, 200, NULL);
	assert_true(listed(r.j, "history", "actor", "service:billing-service"));
	json_decref(r.j);
	CHECK(s, "GET", "/v1/admin/numbering/operators", NULL, NULL, 401, "UNAUTHENTICATED");
	r = call(s, "GET", P "/numbers", NULL, tok("alice", "tenant-viewer", TA));
	EXPECT(r, 200, NULL);
	assert_true(listed(r.j, "numbers", "identifier", "+93701234567"));
	json_decref(r.j);
	/* the allowlisted certificate is no JWT */
	assert_int_equal(
	    tls_call(s, "billing", "GET", "/v1/admin/numbering/operators", NULL, NULL, &r), 401);
	json_decref(r.j);
}

int main(void)
{
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	gnutls_global_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_portal, setup_sqlite, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_portal, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_admin, setup_sqlite, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_admin, setup_pg, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mtls, setup_sqlite, fx_teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	gnutls_global_deinit();
	return rc;
}
