/* http: libmicrohttpd glue, request/reply objects, built-in routes, metrics, logs and drain.
 * See http.h for the contracts.
 *
 * Request life: MHD calls the access handler once with the headers (we create the request,
 * match the route and check Content-Length against the body limit), then once per body chunk,
 * then once more with no data; only then is the handler run and the reply queued. Queuing
 * earlier makes MHD close the connection after the reply, which is right for 413 and for
 * refusals while draining, and wrong for everything else (it would defeat keep-alive).
 *
 * Access policies (GH_AUTH_*) are checked on that first call, so a refused caller never gets
 * its body read. mTLS: libmicrohttpd only *requests* a client certificate when given a trust
 * list (GNUTLS_CERT_REQUEST) and never verifies it, so the verification (chain against
 * tls_client_ca, validity, clientAuth purpose) and the CN allowlist are ours. The outcome is
 * cached per connection: a peer admitted once has proved it holds an allowlisted key, and one
 * refused stays refused (fail closed) even if it could renegotiate. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "uuid.h"

#define DEFAULT_BODY_LIMIT (1u << 20)
#define DEFAULT_THREADS    4
#define DEFAULT_CONNS      1024
#define DEFAULT_IDLE_S     60
#define DEFAULT_GRACE_MS   30000
#define REQ_POOL_SIZE      4096
#define DISCARD_MAX        (1u << 20)

/* Status codes with a preallocated counter slot per route and method; others take the
 * registry's lock on each use (they are not expected on hot paths). */
static const int slot_codes[] = {200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404,
                                 405, 409, 412, 413, 415, 422, 429, 500, 501, 503, 504};
#define NSLOTS   (sizeof(slot_codes) / sizeof(slot_codes[0]))
#define NMETHODS (GH_HTTP__METHODS + 1) /* + one slot for unknown methods */

typedef struct {
	gh_http_server_t *srv;
	gh_http_handler_t fn;
	void *ud;
	size_t body_limit;
	const char *pattern;
	gh_auth_policy_t auth;
	uint32_t roles;
	int probe; /* /healthz, /readyz, /metrics: open even when require_client_cert */
	gh_histogram_t *duration;
	/* Registered on first use: a (route, method, code) series appears once it happened. */
	_Atomic(gh_counter_t *) count[NMETHODS][NSLOTS];
} route_t;

typedef struct {
	const char *name;
	gh_http_ready_fn check;
	void *ud;
} ready_t;

struct gh_http_server_s {
	gh_http_config_t cfg;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	gh_router_t *router;
	gh_metrics_t *metrics;
	route_t *unmatched; /* metrics for requests no route took */
	ready_t *ready;
	unsigned nready;
	struct MHD_Daemon *daemon;
	uint16_t port;
	int started;
	char *tls_cert, *tls_key, *tls_ca; /* PEM contents; NULL: plain HTTP / no mTLS */
	char **allowlist;
	unsigned nallow;
	gh_http_jwt_check_fn jwt_check;
	void *jwt_ud;
	int has_jwt_routes;
	atomic_int draining;
	atomic_uint inflight;
};

typedef struct {
	const char *name;
	const char *value;
} header_t;

struct gh_http_req_s {
	gh_http_server_t *srv;
	struct MHD_Connection *conn;
	const char *method_str;
	gh_method_t method;
	const char *path;
	route_t *route; /* NULL: unmatched */
	gh_route_match_t match;
	int match_rc;
	const char **param_values; /* decoded lazily */
	char *body;
	size_t body_len, body_cap, body_limit;
	size_t too_large; /* bytes discarded past the limit */
	json_t *json;
	char request_id[65];
	const char *traceparent;
	int64_t t0_ns;
	gh_err_t err;
	header_t *headers;
	unsigned nheaders;
	int replied, queued;
	gh_http_response_t resp;
	const gh_principal_t *principal;
};

/* Per-connection client certificate outcome (mTLS servers only), settled on first need. */
typedef enum { PEER_UNCHECKED, PEER_NONE, PEER_UNTRUSTED, PEER_DENIED, PEER_OK } peer_state_t;
typedef struct {
	peer_state_t state;
	char cn[256];
} peer_t;

const char *const gh_auth_policy_names[] = {"none", "mtls", "jwt", NULL};

/* ---- small helpers ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode n bytes into a new talloc string; '+' is a space when plus_space. A '%' not
 * followed by two hex digits is kept literally. */
static char *pct_decode(void *ctx, const char *s, size_t n, int plus_space)
{
	char *out = talloc_array(ctx, char, n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (s[i] == '+' && plus_space) {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

static int request_id_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (n == 64 ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return n > 0;
}

/* W3C Trace Context: version-traceid-parentid-flags, lowercase hex, version ff invalid. */
static int traceparent_ok(const char *s)
{
	if (strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return 0;
	for (int i = 0; i < 55; i++) {
		if (i == 2 || i == 35 || i == 52)
			continue;
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return strncmp(s, "ff", 2) != 0;
}

static int slot_of(int status)
{
	for (unsigned i = 0; i < NSLOTS; i++)
		if (slot_codes[i] == status)
			return (int)i;
	return -1;
}

static const char *method_label(gh_method_t m)
{
	return m < GH_HTTP__METHODS ? gh_method_names[m] : "OTHER";
}

static gh_counter_t *register_counter(gh_http_server_t *s, const char *pattern, gh_method_t m,
                                      int status)
{
	char labels[512];
	snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",code=\"%d\"", pattern,
	         method_label(m), status);
	return gh_metrics_counter(s->metrics, "ghasi_http_requests_total",
	                          "HTTP requests by route, method and status code.", labels);
}

static void count_request(gh_http_server_t *s, route_t *rt, gh_method_t m, int status, int64_t ns)
{
	int slot = slot_of(status);
	gh_counter_t *c = NULL;
	if (slot >= 0) {
		c = atomic_load_explicit(&rt->count[m][slot], memory_order_acquire);
		if (!c) {
			/* Registration is idempotent, so two threads racing here get the same one.
			 */
			c = register_counter(s, rt->pattern, m, status);
			atomic_store_explicit(&rt->count[m][slot], c, memory_order_release);
		}
	} else {
		c = register_counter(s, rt->pattern, m, status);
	}
	if (c)
		gh_counter_inc(c);
	if (rt->duration)
		gh_histogram_observe_ns(rt->duration, ns);
}

static route_t *route_new(gh_http_server_t *s, const char *pattern, gh_http_handler_t fn, void *ud,
                          const gh_http_route_opts_t *opts)
{
	size_t body_limit = opts ? opts->body_limit : 0;
	route_t *rt = talloc_zero(s, route_t);
	if (!rt)
		return NULL;
	rt->srv = s;
	rt->fn = fn;
	rt->ud = ud;
	rt->body_limit = body_limit ? body_limit : s->cfg.body_limit;
	rt->pattern = talloc_strdup(rt, pattern);
	rt->auth = opts ? opts->auth : GH_AUTH_NONE;
	rt->roles = opts ? opts->roles : 0;
	char labels[320];
	snprintf(labels, sizeof(labels), "route=\"%s\"", pattern);
	rt->duration = gh_metrics_histogram(s->metrics, "ghasi_http_request_duration_seconds",
	                                    "HTTP request handling time by route.", labels);
	if (!rt->pattern || !rt->duration) {
		talloc_free(rt);
		return NULL;
	}
	return rt;
}

/* ---- replies ---- */

static int set_reply(gh_http_req_t *req, int status, const char *ctype, const void *body,
                     size_t len, int copy)
{
	if (req->replied)
		return -EALREADY;
	const char *ct = talloc_strdup(req, ctype ? ctype : "application/octet-stream");
	const void *b = body;
	if (copy && len) {
		b = talloc_memdup(req, body, len);
		if (!b)
			return -ENOMEM;
	}
	if (!ct)
		return -ENOMEM;
	req->resp = (gh_http_response_t){status, ct, len ? b : "", len};
	req->replied = 1;
	return 0;
}

int gh_http_set_header(gh_http_req_t *req, const char *name, const char *value)
{
	header_t *h = talloc_realloc(req, req->headers, header_t, req->nheaders + 1);
	if (!h)
		return -ENOMEM;
	req->headers = h;
	h[req->nheaders].name = talloc_strdup(req, name);
	h[req->nheaders].value = talloc_strdup(req, value);
	if (!h[req->nheaders].name || !h[req->nheaders].value)
		return -ENOMEM;
	req->nheaders++;
	return 0;
}

int gh_http_reply_json(gh_http_req_t *req, int status, json_t *body)
{
	if (req->replied) {
		json_decref(body);
		return -EALREADY;
	}
	size_t len = 0;
	char *s = gh_json_dump(body, req, &len);
	json_decref(body);
	if (!s)
		return -ENOMEM;
	return set_reply(req, status, "application/json", s, len, 0);
}

int gh_http_reply_error(gh_http_req_t *req, const gh_err_t *err)
{
	json_t *env = gh_err_envelope(err, req->request_id);
	return gh_http_reply_json(req, gh_code_http_status(err->code), env);
}

int gh_http_reply_raw(gh_http_req_t *req, int status, const char *content_type, const void *body,
                      size_t len)
{
	return set_reply(req, status, content_type, body, len, 1);
}

const gh_http_response_t *gh_http_response(const gh_http_req_t *req)
{
	return req->replied ? &req->resp : NULL;
}

int gh_http_reply_response(gh_http_req_t *req, const gh_http_response_t *r)
{
	return set_reply(req, r->status, r->content_type, r->body, r->len, 1);
}

static void reply_code(gh_http_req_t *req, gh_code_t code, const char *msg)
{
	gh_err_t e = {0};
	gh_err_set(&e, code, NULL, "%s", msg);
	gh_http_reply_error(req, &e);
	gh_err_clear(&e);
}

/* ---- requests ---- */

const char *gh_http_method(const gh_http_req_t *req) { return req->method_str; }
const char *gh_http_path(const gh_http_req_t *req) { return req->path; }
const char *gh_http_route_pattern(const gh_http_req_t *req)
{
	return req->route ? req->route->pattern : NULL;
}
const char *gh_http_request_id(const gh_http_req_t *req) { return req->request_id; }
const char *gh_http_traceparent(const gh_http_req_t *req) { return req->traceparent; }
void *gh_http_ctx(gh_http_req_t *req) { return req; }
const gh_principal_t *gh_http_principal(const gh_http_req_t *req) { return req->principal; }
void gh_http_set_principal(gh_http_req_t *req, const gh_principal_t *p) { req->principal = p; }
gh_err_t *gh_http_err(gh_http_req_t *req) { return &req->err; }

const char *gh_http_param(const gh_http_req_t *creq, const char *name)
{
	gh_http_req_t *req = (gh_http_req_t *)creq; /* decoding caches into the request */
	for (unsigned i = 0; i < req->match.nparams; i++) {
		if (strcmp(req->match.params[i].name, name) != 0)
			continue;
		if (!req->param_values)
			req->param_values =
			    talloc_zero_array(req, const char *, req->match.nparams);
		if (!req->param_values)
			return NULL;
		if (!req->param_values[i])
			req->param_values[i] = pct_decode(req, req->match.params[i].value,
			                                  req->match.params[i].len, 0);
		return req->param_values[i];
	}
	return NULL;
}

const char *gh_http_query(const gh_http_req_t *creq, const char *name)
{
	gh_http_req_t *req = (gh_http_req_t *)creq;
	/* The daemon keeps arguments raw (see unescape_none), so decode here. */
	const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
	return raw ? pct_decode(req, raw, strlen(raw), 1) : NULL;
}

int gh_http_query_int(gh_http_req_t *req, const char *name, int64_t def, int64_t min, int64_t max,
                      int64_t *out)
{
	const char *v = gh_http_query(req, name);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < min || x > max)
		return gh_err_set(&req->err, GH_E_INVALID_ARGUMENT, name,
		                  "%s must be an integer in [%" PRId64 ", %" PRId64 "]", name, min,
		                  max);
	*out = x;
	return 0;
}

const char *gh_http_header(const gh_http_req_t *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *gh_http_body(const gh_http_req_t *req, size_t *len)
{
	if (len)
		*len = req->body_len;
	return req->body ? req->body : "";
}

int gh_http_json_body(gh_http_req_t *req, const gh_json_field_t *fields, json_t **out)
{
	*out = NULL;
	if (!req->json) {
		int rc = gh_json_parse_body(req->body, req->body_len, &req->json, &req->err);
		if (rc < 0)
			return rc;
	}
	if (fields) {
		int rc = gh_json_check(req->json, fields, "", &req->err);
		if (rc < 0)
			return rc;
	}
	*out = req->json;
	return 0;
}

int gh_http_idempotency_key(gh_http_req_t *req, const char **key)
{
	const char *k = gh_http_header(req, "Idempotency-Key");
	*key = NULL;
	if (!k)
		return 0;
	size_t n = strlen(k);
	int ok = n >= 1 && n <= 255;
	for (size_t i = 0; ok && i < n; i++)
		ok = k[i] >= 0x20 && k[i] <= 0x7e;
	if (!ok)
		return gh_err_set(&req->err, GH_E_INVALID_ARGUMENT, "Idempotency-Key",
		                  "Idempotency-Key must be 1-255 printable ASCII characters");
	*key = k;
	return 0;
}

static int req_destructor(gh_http_req_t *req)
{
	json_decref(req->json);
	gh_err_clear(&req->err);
	return 0;
}

static gh_http_req_t *req_new(gh_http_server_t *s, struct MHD_Connection *c, const char *url,
                              const char *method)
{
	/* One pool per request: the request and most of what handlers allocate is one malloc. */
	gh_http_req_t *req = talloc_pooled_object(NULL, gh_http_req_t, 16, REQ_POOL_SIZE);
	if (!req)
		return NULL;
	memset(req, 0, sizeof(*req));
	talloc_set_destructor(req, req_destructor);
	req->srv = s;
	req->conn = c;
	req->method_str = method;
	req->method = gh_method_parse(method);
	req->path = url;
	req->t0_ns = gh_clock_mono_ns(gh_clock_real());
	const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
	if (rid && request_id_ok(rid))
		snprintf(req->request_id, sizeof(req->request_id), "%s", rid);
	else
		gh_uuid_v7_fast(gh_clock_now_ms(gh_clock_real()), req->request_id);
	const char *tp = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "traceparent");
	req->traceparent = tp && traceparent_ok(tp) ? tp : NULL;
	return req;
}

/* ---- TLS and access policies ---- */

/* A whole PEM file as a talloc string (NUL-terminated, as MHD wants). Key material is wiped
 * when the server is freed. */
static int wipe_destructor(char *p)
{
	explicit_bzero(p, talloc_get_size(p));
	return 0;
}

char *gh_tls_pem_read(void *ctx, const char *what, const char *path, gh_err_t *err)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	char *buf = NULL;
	const char *why = NULL;
	if (!f)
		why = strerror(errno);
	else if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	         st.st_size > (1 << 20))
		why = "not a regular file of 1 byte to 1 MiB";
	else if (!(buf = talloc_size(ctx, (size_t)st.st_size + 1)))
		why = "out of memory";
	else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
		why = "short read";
	if (buf) {
		/* One allocation of the file's size, so no unwiped copy of a key is left behind. */
		talloc_set_destructor(buf, wipe_destructor);
		buf[why ? 0 : st.st_size] = '\0';
		if (!why && !strstr(buf, "-----BEGIN "))
			why = "not PEM";
	}
	if (f)
		fclose(f);
	if (why) {
		gh_log(GH_LOG_ERROR, "cannot use TLS file", "file", what, "path", path, "error",
		       why, NULL);
		gh_err_set(err, GH_E_INVALID_ARGUMENT, what, "TLS file %s (%s): %s", what, path,
		           why);
		talloc_free(buf);
		return NULL;
	}
	return buf;
}

static int tls_setup(gh_http_server_t *s, const gh_http_config_t *cfg)
{
	for (const char *const *cn = cfg->client_cn_allowlist; cn && *cn; cn++) {
		char **a = talloc_realloc(s, s->allowlist, char *, s->nallow + 1);
		if (!a)
			return -ENOMEM;
		s->allowlist = a;
		if (!(a[s->nallow++] = talloc_strdup(a, *cn)))
			return -ENOMEM;
	}
	s->cfg.client_cn_allowlist = NULL; /* ours is s->allowlist */
	int want = (cfg->tls_cert && cfg->tls_cert[0]) || (cfg->tls_key && cfg->tls_key[0]);
	if (!want) {
		if (cfg->tls_client_ca && cfg->tls_client_ca[0]) {
			gh_log(GH_LOG_ERROR, "http: tls_client_ca needs tls_cert and tls_key",
			       NULL);
			return -EINVAL;
		}
		return 0;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		gh_log(GH_LOG_ERROR, "http: libmicrohttpd was built without TLS", NULL);
		return -ENOTSUP;
	}
	if (!cfg->tls_cert || !cfg->tls_cert[0] || !cfg->tls_key || !cfg->tls_key[0]) {
		gh_log(GH_LOG_ERROR, "http: TLS needs both tls_cert and tls_key", NULL);
		return -EINVAL;
	}
	if (!(s->tls_cert = gh_tls_pem_read(s, "tls_cert", cfg->tls_cert, NULL)) ||
	    !(s->tls_key = gh_tls_pem_read(s, "tls_key", cfg->tls_key, NULL)))
		return -EINVAL;
	if (cfg->tls_client_ca && cfg->tls_client_ca[0] &&
	    !(s->tls_ca = gh_tls_pem_read(s, "tls_client_ca", cfg->tls_client_ca, NULL)))
		return -EINVAL;
	/* Load them once here, so a bad key or a CA without a certificate is reported by name
	 * instead of as a daemon that does not start. */
	gnutls_certificate_credentials_t cred;
	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		return -ENOMEM;
	gnutls_datum_t c = {(unsigned char *)s->tls_cert, (unsigned)strlen(s->tls_cert)};
	gnutls_datum_t k = {(unsigned char *)s->tls_key, (unsigned)strlen(s->tls_key)};
	int grc = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
	const char *bad = grc < 0 ? "tls_cert/tls_key" : NULL;
	if (!bad && s->tls_ca) {
		gnutls_datum_t a = {(unsigned char *)s->tls_ca, (unsigned)strlen(s->tls_ca)};
		if ((grc = gnutls_certificate_set_x509_trust_mem(cred, &a, GNUTLS_X509_FMT_PEM)) <=
		    0)
			bad = "tls_client_ca";
	}
	gnutls_certificate_free_credentials(cred);
	if (bad) {
		gh_log(GH_LOG_ERROR, "http: TLS material rejected", "file", bad, "error",
		       grc < 0 ? gnutls_strerror(grc) : "no certificate", NULL);
		return -EINVAL;
	}
	s->cfg.tls_cert = s->cfg.tls_key = s->cfg.tls_client_ca = NULL; /* paths not kept */
	return 0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_ctx = talloc_zero(NULL, peer_t); /* NULL: checked as "no certificate" */
	} else {
		talloc_free(*socket_ctx);
		*socket_ctx = NULL;
	}
}

/* Verify the peer's certificate and read its CN. RFC 5280 allows several CN attributes; a
 * certificate with more than one is refused rather than guessing which one was meant. */
static peer_state_t peer_check(gh_http_server_t *s, struct MHD_Connection *c, char *cn,
                               size_t cn_len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return PEER_NONE;
	gnutls_session_t sess = (gnutls_session_t)ci->tls_session;
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(sess, &n);
	if (!certs || n == 0)
		return PEER_NONE;
	gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
	                                 (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
	unsigned status = 0;
	if (gnutls_certificate_verify_peers(sess, &purpose, 1, &status) < 0 || status != 0)
		return PEER_UNTRUSTED;
	gnutls_x509_crt_t crt;
	if (gnutls_x509_crt_init(&crt) < 0)
		return PEER_UNTRUSTED;
	peer_state_t st = PEER_UNTRUSTED;
	size_t len = cn_len, len2 = cn_len;
	char extra[256];
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) == 0 &&
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, 0, extra, &len2) ==
	        GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE &&
	    len > 0 && strlen(cn) == len) {
		st = PEER_DENIED;
		for (unsigned i = 0; i < s->nallow; i++)
			if (strcmp(s->allowlist[i], cn) == 0)
				st = PEER_OK;
	}
	gnutls_x509_crt_deinit(crt);
	return st;
}

static peer_t *peer_of(gh_http_req_t *req)
{
	gh_http_server_t *s = req->srv;
	if (!s->tls_ca)
		return NULL;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	peer_t *p = ci ? ci->socket_context : NULL;
	if (p && p->state == PEER_UNCHECKED)
		p->state = peer_check(s, req->conn, p->cn, sizeof(p->cn));
	return p;
}

const char *gh_http_client_cn(gh_http_req_t *req)
{
	peer_t *p = peer_of(req);
	return p && p->state == PEER_OK ? p->cn : NULL;
}

int gh_http_client_addr(gh_http_req_t *req, char *buf, size_t n)
{
	if (!n)
		return -ENOENT;
	buf[0] = '\0';
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	if (!sa)
		return -ENOENT;
	const void *a = sa->sa_family == AF_INET
	                    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	                : sa->sa_family == AF_INET6
	                    ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	                    : NULL;
	if (!a || !inet_ntop(sa->sa_family, a, buf, (socklen_t)n)) {
		buf[0] = '\0';
		return -ENOENT;
	}
	return 0;
}

/* The mTLS policy: 0 or -EPERM with the request's error set. */
static int check_mtls(gh_http_req_t *req)
{
	gh_http_server_t *s = req->srv;
	if (!s->tls_cert) {
		if (s->cfg.mtls_open_without_tls)
			return 0;
		return gh_err_set(&req->err, GH_E_PERMISSION_DENIED, NULL,
		                  "this route requires mutual TLS, which this server does not "
		                  "offer");
	}
	peer_t *p = peer_of(req);
	switch (p ? p->state : PEER_NONE) {
	case PEER_OK: return 0;
	case PEER_DENIED:
		gh_log(GH_LOG_WARN, "http: client certificate CN not allowed", "cn", p->cn, "path",
		       req->path, NULL);
		return gh_err_set(&req->err, GH_E_PERMISSION_DENIED, NULL,
		                  "client certificate not allowed here");
	case PEER_UNTRUSTED:
		return gh_err_set(&req->err, GH_E_PERMISSION_DENIED, NULL,
		                  "client certificate not trusted");
	default:
		return gh_err_set(&req->err, GH_E_PERMISSION_DENIED, NULL,
		                  "a client certificate is required");
	}
}

/* The route's policy (and the server-wide client certificate requirement). Returns 0 when
 * the request may proceed, else negative with the request's error set. */
static int check_access(gh_http_req_t *req)
{
	route_t *rt = req->route;
	gh_http_server_t *s = req->srv;
	int rc;
	if (!rt || rt->probe)
		return 0;
	if ((s->cfg.require_client_cert || rt->auth == GH_AUTH_MTLS) && (rc = check_mtls(req)) < 0)
		return rc;
	if (rt->auth == GH_AUTH_JWT) {
		if (!s->jwt_check) /* gh_http_server_start refuses this; kept fail-closed */
			return gh_err_set(&req->err, GH_E_UNAUTHENTICATED, NULL,
			                  "no token verifier");
		if ((rc = s->jwt_check(req, rt->roles, s->jwt_ud)) < 0) {
			if (req->err.code == GH_OK)
				gh_err_set(&req->err, GH_E_UNAUTHENTICATED, NULL,
				           "not authenticated");
			return rc;
		}
	}
	return 0;
}

/* ---- dispatch ---- */

/* Decimal without printf: the request log line is formatted on every request. */
static void fmt_u64(char out[24], uint64_t v)
{
	char t[24];
	int n = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int i = 0; i < n; i++)
		out[i] = t[n - 1 - i];
	out[n] = '\0';
}

static void log_request(gh_http_req_t *req, int64_t ns)
{
	int status = req->resp.status;
	char st[24], us[24];
	fmt_u64(st, (uint64_t)status);
	fmt_u64(us, ns > 0 ? (uint64_t)ns / 1000 : 0);
	gh_log_level_t lvl = status >= 500 ? GH_LOG_ERROR : GH_LOG_DEBUG;
	gh_log(lvl, "http request", "method", req->method_str, "path", req->path, "route",
	       req->route ? req->route->pattern : NULL, "status", st, "duration_us", us, "error",
	       status >= 500 && req->err.code != GH_OK ? req->err.message : NULL, NULL);
}

static enum MHD_Result queue_reply_(gh_http_req_t *req);

/* Queue the reply with the request's log context set on this thread (the handler and the
 * request log line see it); MHD threads serve many requests, so it is cleared after. */
static enum MHD_Result queue_reply(gh_http_req_t *req)
{
	gh_log_set_request_id(req->request_id);
	gh_log_set_traceparent(req->traceparent);
	enum MHD_Result rc = queue_reply_(req);
	gh_log_set_request_id(NULL);
	gh_log_set_traceparent(NULL);
	return rc;
}

static enum MHD_Result queue_reply_(gh_http_req_t *req)
{
	gh_http_server_t *s = req->srv;
	req->queued = 1;
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    req->resp.len, (void *)req->resp.body, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	enum MHD_Result ok = MHD_YES;
	ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, req->resp.content_type);
	ok &= MHD_add_response_header(r, "X-Request-Id", req->request_id);
	for (unsigned i = 0; i < req->nheaders; i++)
		ok &= MHD_add_response_header(r, req->headers[i].name, req->headers[i].value);
	/* Draining, and after a refused upload (the client may still be sending): hang up. */
	if (atomic_load(&s->draining) || req->resp.status == 413)
		ok &= MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	if (ok)
		ok = MHD_queue_response(req->conn, (unsigned)req->resp.status, r);
	MHD_destroy_response(r);

	int64_t ns = gh_clock_mono_ns(gh_clock_real()) - req->t0_ns;
	count_request(s, req->route ? req->route : s->unmatched, req->method, req->resp.status, ns);
	log_request(req, ns);
	return ok;
}

static void dispatch(gh_http_req_t *req)
{
	if (req->match_rc == -ENOENT) {
		reply_code(req, GH_E_NOT_FOUND, "no such resource");
		return;
	}
	if (req->match_rc == -EOPNOTSUPP) {
		char allow[128];
		gh_router_allow_str(req->match.allow, allow, sizeof(allow));
		gh_http_set_header(req, "Allow", allow);
		reply_code(req, GH_E_METHOD_NOT_ALLOWED,
		           talloc_asprintf(req, "method %s not allowed here", req->method_str));
		return;
	}
	int rc = req->route->fn(req, req->route->ud);
	if (!req->replied) {
		if (req->err.code != GH_OK) {
			gh_http_reply_error(req, &req->err);
		} else {
			gh_log(GH_LOG_ERROR, "handler returned without a reply", "route",
			       req->route->pattern, NULL);
			gh_err_set(&req->err, GH_E_INTERNAL, NULL, "internal error (rc %d)", rc);
			reply_code(req, GH_E_INTERNAL, "internal error");
		}
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	gh_http_server_t *s = cls;
	gh_http_req_t *req = *con_cls;
	if (!req) {
		req = req_new(s, c, url, method);
		if (!req)
			return MHD_NO;
		*con_cls = req;
		atomic_fetch_add(&s->inflight, 1);
		if (atomic_load(&s->draining)) {
			reply_code(req, GH_E_UNAVAILABLE, "server is shutting down");
			return queue_reply(req);
		}
		req->match_rc =
		    gh_router_match(s->router, req->method, url, strlen(url), &req->match);
		req->route = req->match_rc == 0 ? req->match.target : NULL;
		req->body_limit = req->route ? req->route->body_limit : s->cfg.body_limit;
		if (req->route && check_access(req) < 0) {
			gh_http_reply_error(req, &req->err);
			return queue_reply(req);
		}
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			unsigned long long n = strtoull(cl, NULL, 10);
			if (n > req->body_limit) {
				reply_code(req, GH_E_PAYLOAD_TOO_LARGE,
				           talloc_asprintf(req, "body larger than %zu bytes",
				                           req->body_limit));
				return queue_reply(req);
			}
			if (n > 0 && req->route) {
				req->body = talloc_size(req, (size_t)n + 1);
				req->body_cap = req->body ? (size_t)n + 1 : 0;
			}
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (req->queued || !req->route)
			return MHD_YES; /* discarded: the answer does not depend on it */
		if (req->too_large || req->body_len + n > req->body_limit) {
			/* MHD cannot queue a reply in the middle of an upload (chunked, or a
			 * Content-Length that lied): stop storing, answer 413 once the upload
			 * ends, and hang up on a client that keeps sending far past the limit. */
			req->too_large += n;
			return req->too_large > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		if (req->body_len + n + 1 > req->body_cap) {
			size_t cap = req->body_cap ? req->body_cap : 4096;
			while (cap < req->body_len + n + 1)
				cap *= 2;
			char *b = talloc_realloc_size(req, req->body, cap);
			if (!b)
				return MHD_NO;
			req->body = b;
			req->body_cap = cap;
		}
		memcpy(req->body + req->body_len, upload, n);
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}
	if (req->queued)
		return MHD_YES;
	gh_log_set_request_id(req->request_id);
	gh_log_set_traceparent(req->traceparent);
	if (req->too_large)
		reply_code(req, GH_E_PAYLOAD_TOO_LARGE,
		           talloc_asprintf(req, "body larger than %zu bytes", req->body_limit));
	else
		dispatch(req);
	enum MHD_Result rc = queue_reply_(req);
	gh_log_set_request_id(NULL);
	gh_log_set_traceparent(NULL);
	return rc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	gh_http_server_t *s = cls;
	gh_http_req_t *req = *con_cls;
	if (!req)
		return;
	*con_cls = NULL;
	talloc_free(req);
	atomic_fetch_sub(&s->inflight, 1);
}

/* Keep the path and the query arguments raw: path parameters must be split on '/' before
 * decoding (an id may contain %2F), and '+' means a space only in the query. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) { return strlen(s); }

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	gh_log(GH_LOG_WARN, "libmicrohttpd", "detail", buf, NULL);
}

/* ---- built-in routes ---- */

static int h_healthz(gh_http_req_t *req, void *ud)
{
	return gh_http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static int h_readyz(gh_http_req_t *req, void *ud)
{
	gh_http_server_t *s = ud;
	json_t *checks = json_object();
	char *failing = NULL;
	for (unsigned i = 0; i < s->nready; i++) {
		char why[256] = "";
		int rc = s->ready[i].check(s->ready[i].ud, why, sizeof(why));
		if (rc == 0) {
			json_object_set_new(checks, s->ready[i].name, json_string("ok"));
			continue;
		}
		json_object_set_new(checks, s->ready[i].name,
		                    json_string(why[0] ? why : "not ready"));
		failing = failing ? talloc_asprintf_append(failing, ", %s", s->ready[i].name)
		                  : talloc_strdup(req, s->ready[i].name);
	}
	if (!failing)
		return gh_http_reply_json(
		    req, 200, json_pack("{s:s, s:o}", "status", "ok", "checks", checks));
	gh_err_t *e = gh_http_err(req);
	gh_err_set(e, GH_E_UNAVAILABLE, NULL, "not ready: %s", failing);
	gh_err_detail(e, "checks", checks);
	return gh_http_reply_error(req, e);
}

static int h_metrics(gh_http_req_t *req, void *ud)
{
	gh_http_server_t *s = ud;
	char *out = NULL;
	size_t len = 0;
	if (gh_metrics_render(s->metrics, req, &out, &len) < 0)
		return gh_err_set(gh_http_err(req), GH_E_INTERNAL, NULL, "metrics render failed");
	return set_reply(req, 200, "text/plain; version=0.0.4", out, len, 0);
}

/* ---- server ---- */

static int add_route(gh_http_server_t *s, const char *method, const char *pattern,
                     gh_http_handler_t fn, void *ud, const gh_http_route_opts_t *opts, int probe);

static int server_destructor(gh_http_server_t *s)
{
	gh_http_server_stop(s);
	return 0;
}

gh_http_server_t *gh_http_server_new(void *ctx, const gh_http_config_t *cfg)
{
	gh_http_server_t *s = talloc_zero(ctx, gh_http_server_t);
	if (!s)
		return NULL;
	s->cfg = *cfg;
	if (!s->cfg.threads)
		s->cfg.threads = DEFAULT_THREADS;
	if (!s->cfg.body_limit)
		s->cfg.body_limit = DEFAULT_BODY_LIMIT;
	if (!s->cfg.conn_limit)
		s->cfg.conn_limit = DEFAULT_CONNS;
	if (!s->cfg.idle_timeout_s)
		s->cfg.idle_timeout_s = DEFAULT_IDLE_S;
	const char *bind = cfg->bind ? cfg->bind : "127.0.0.1";
	s->cfg.bind = talloc_strdup(s, bind);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&s->addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->addr;
	if (inet_pton(AF_INET, bind, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(cfg->port);
		s->addrlen = sizeof(*v4);
	} else if (inet_pton(AF_INET6, bind, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(cfg->port);
		s->addrlen = sizeof(*v6);
	} else {
		gh_log(GH_LOG_ERROR, "http: bad bind address", "bind", bind, NULL);
		talloc_free(s);
		return NULL;
	}
	s->metrics = cfg->metrics ? cfg->metrics : gh_metrics_new(s);
	s->router = gh_router_new(s);
	if (!s->cfg.bind || !s->metrics || !s->router)
		goto fail;
	s->unmatched = route_new(s, "unmatched", NULL, NULL, NULL);
	if (!s->unmatched || add_route(s, "GET", "/healthz", h_healthz, s, NULL, 1) < 0 ||
	    add_route(s, "GET", "/readyz", h_readyz, s, NULL, 1) < 0 ||
	    add_route(s, "GET", "/metrics", h_metrics, s, NULL, 1) < 0 || tls_setup(s, cfg) < 0)
		goto fail;
	talloc_set_destructor(s, server_destructor);
	return s;
fail:
	talloc_free(s);
	return NULL;
}

static int add_route(gh_http_server_t *s, const char *method, const char *pattern,
                     gh_http_handler_t fn, void *ud, const gh_http_route_opts_t *opts, int probe)
{
	if (s->started)
		return -EBUSY;
	gh_method_t m = gh_method_parse(method);
	if (m == GH_HTTP_UNKNOWN || !fn)
		return -EINVAL;
	if (opts && (unsigned)opts->auth >= GH_AUTH__COUNT)
		return -EINVAL;
	route_t *rt = route_new(s, pattern, fn, ud, opts);
	if (!rt)
		return -ENOMEM;
	int rc = gh_router_add(s->router, m, pattern, rt);
	if (rc < 0) {
		talloc_free(rt);
		return rc;
	}
	rt->probe = probe;
	s->has_jwt_routes |= rt->auth == GH_AUTH_JWT;
	return 0;
}

int gh_http_route_ex(gh_http_server_t *s, const char *method, const char *pattern,
                     gh_http_handler_t fn, void *ud, const gh_http_route_opts_t *opts)
{
	return add_route(s, method, pattern, fn, ud, opts, 0);
}

int gh_http_set_jwt_check(gh_http_server_t *s, gh_http_jwt_check_fn fn, void *ud)
{
	if (s->started)
		return -EBUSY;
	s->jwt_check = fn;
	s->jwt_ud = ud;
	return 0;
}

int gh_http_route(gh_http_server_t *s, const char *method, const char *pattern,
                  gh_http_handler_t fn, void *ud)
{
	return gh_http_route_ex(s, method, pattern, fn, ud, NULL);
}

int gh_http_readiness(gh_http_server_t *s, const char *name, gh_http_ready_fn check, void *ud)
{
	if (s->started)
		return -EBUSY;
	if (!name || !check)
		return -EINVAL;
	ready_t *r = talloc_realloc(s, s->ready, ready_t, s->nready + 1);
	if (!r)
		return -ENOMEM;
	s->ready = r;
	r[s->nready] = (ready_t){talloc_strdup(s, name), check, ud};
	if (!r[s->nready].name)
		return -ENOMEM;
	s->nready++;
	return 0;
}

int gh_http_server_start(gh_http_server_t *s)
{
	if (s->started)
		return -EBUSY;
	if (s->has_jwt_routes && !s->jwt_check) {
		gh_log(GH_LOG_ERROR, "http: routes need a JWT but no token verifier is attached",
		       NULL);
		return -EINVAL;
	}
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (s->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (s->tls_cert)
		flags |= MHD_USE_TLS;
	struct MHD_OptionItem opts[16];
	size_t o = 0;
	opts[o++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &s->addr};
	opts[o++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
	opts[o++] =
	    (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_none, NULL};
	opts[o++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->cfg.conn_limit, NULL};
	opts[o++] =
	    (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s, NULL};
	if (s->cfg.threads > 1)
		opts[o++] =
		    (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, s->cfg.threads, NULL};
	if (s->tls_cert) {
		/* TLS 1.2 and 1.3 only. */
		static const char priorities[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
		opts[o++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
		opts[o++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
		opts[o++] =
		    (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)priorities};
	}
	if (s->tls_ca) {
		opts[o++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_ca};
		opts[o++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
		                                    (intptr_t)on_connection, NULL};
	}
	opts[o++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	s->daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
	                     mhd_logger, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!s->daemon) {
		gh_log(GH_LOG_ERROR, "http: cannot start server", "bind", s->cfg.bind, NULL);
		return -EADDRINUSE;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : s->cfg.port;
	s->started = 1;
	char port[8];
	snprintf(port, sizeof(port), "%u", s->port);
	gh_log(GH_LOG_INFO, "http: listening", "bind", s->cfg.bind, "port", port, NULL);
	return 0;
}

uint16_t gh_http_server_port(const gh_http_server_t *s) { return s->daemon ? s->port : 0; }

unsigned gh_http_server_inflight(const gh_http_server_t *s) { return atomic_load(&s->inflight); }

void gh_http_server_stop(gh_http_server_t *s)
{
	if (s->daemon) {
		MHD_stop_daemon(s->daemon);
		s->daemon = NULL;
	}
}

int gh_http_server_drain(gh_http_server_t *s, unsigned grace_ms)
{
	if (!s->daemon)
		return 0;
	atomic_store(&s->draining, 1);
	MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	int64_t deadline = gh_clock_mono_ns(gh_clock_real()) +
	                   (int64_t)(grace_ms ? grace_ms : DEFAULT_GRACE_MS) * 1000000;
	int rc = 0;
	while (atomic_load(&s->inflight) > 0) {
		if (gh_clock_mono_ns(gh_clock_real()) >= deadline) {
			char n[16];
			snprintf(n, sizeof(n), "%u", atomic_load(&s->inflight));
			gh_log(GH_LOG_WARN, "http: drain grace over, cutting requests off",
			       "inflight", n, NULL);
			rc = -ETIMEDOUT;
			break;
		}
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	gh_http_server_stop(s);
	gh_log(GH_LOG_INFO, "http: stopped", NULL);
	return rc;
}
