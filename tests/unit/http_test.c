/* http: a real server on 127.0.0.1 (ephemeral port) driven by a raw HTTP/1.1 client. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "httpc.h"
#include "log.h"
#include "testutil.h"
#include "uuid.h"

/* ---- the raw HTTP/1.1 client of tests/common/httpc.h, under short names ---- */

typedef gh_test_http_conn_t conn_t;
typedef gh_test_http_resp_t resp_t;
#define tcp_connect    gh_test_http_connect
#define conn_open      gh_test_http_open
#define conn_close     gh_test_http_close
#define conn_send      gh_test_http_send
#define conn_read      gh_test_http_read
#define closed_by_peer gh_test_http_closed_by_peer
#define hdr            gh_test_http_header
#define request        gh_test_http_exchange
#define call           gh_test_http_request

/* Assert the error envelope: code, and (when non-NULL) details.field. */
static void assert_envelope(const resp_t *r, int status, const char *code, const char *field)
{
	assert_int_equal(r->status, status);
	json_t *j = gh_test_http_json(r);
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	char rid[80];
	assert_non_null(hdr(r, "X-Request-Id", rid, sizeof(rid)));
	assert_string_equal(json_string_value(json_object_get(e, "request_id")), rid);
	if (field)
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(e, "details"), "field")),
		    field);
	json_decref(j);
}

/* ---- the application under test ---- */

static atomic_int handler_calls;
static atomic_int ready_ok = 1;

static int h_item(gh_http_req_t *req, void *ud)
{
	atomic_fetch_add(&handler_calls, 1);
	return gh_http_reply_json(
	    req, 200,
	    json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "id", gh_http_param(req, "id"), "route",
	              gh_http_route_pattern(req), "method", gh_http_method(req), "traceparent",
	              gh_http_traceparent(req), "log_request_id", gh_log_request_id()));
}

static int h_reserve(gh_http_req_t *req, void *ud)
{
	return gh_http_reply_json(req, 200,
	                          json_pack("{s:s}", "reserved", gh_http_param(req, "id")));
}

static int h_list(gh_http_req_t *req, void *ud)
{
	int64_t ps;
	if (gh_http_query_int(req, "page_size", 50, 1, 1000, &ps) < 0)
		return -EINVAL;
	const char *q = gh_http_query(req, "q");
	return gh_http_reply_json(req, 200,
	                          json_pack("{s:I, s:s?}", "page_size", (json_int_t)ps, "q", q));
}

static const gh_json_field_t create_fields[] = {
    {"number", GH_JSON_STRING, .required = 1},
    {"count", GH_JSON_INTEGER},
    {NULL},
};

static int h_create(gh_http_req_t *req, void *ud)
{
	atomic_fetch_add(&handler_calls, 1);
	json_t *body;
	if (gh_http_json_body(req, create_fields, &body) < 0)
		return -EINVAL;
	gh_http_set_header(req, "Location", "/v1/t/items/1");
	return gh_http_reply_json(req, 201,
	                          json_pack("{s:s, s:I}", "number",
	                                    gh_json_get_str(body, "number", ""), "count",
	                                    (json_int_t)gh_json_get_int(body, "count", 1)));
}

static int h_upload(gh_http_req_t *req, void *ud)
{
	atomic_fetch_add(&handler_calls, 1);
	size_t len;
	gh_http_body(req, &len);
	return gh_http_reply_json(req, 200, json_pack("{s:I}", "len", (json_int_t)len));
}

static int h_silent(gh_http_req_t *req, void *ud) { return -EIO; }

static int h_conflict(gh_http_req_t *req, void *ud)
{
	gh_err_t *e = gh_http_err(req);
	gh_err_set(e, GH_E_CONFLICT, NULL, "version mismatch");
	gh_err_detail(e, "current_version", json_integer(7));
	return -ESTALE;
}

/* Replies, then replays what it sent under a second request to prove the capture. */
static gh_http_response_t *stored;
static void *stored_ctx;

static int h_idem(gh_http_req_t *req, void *ud)
{
	const char *key;
	if (gh_http_idempotency_key(req, &key) < 0)
		return -EINVAL;
	if (stored)
		return gh_http_reply_response(req, stored);
	gh_http_reply_raw(req, 202, "text/csv", "a,b\n1,2\n", 8);
	const gh_http_response_t *r = gh_http_response(req);
	stored = talloc(stored_ctx, gh_http_response_t);
	*stored = *r;
	stored->content_type = talloc_strdup(stored_ctx, r->content_type);
	stored->body = talloc_memdup(stored_ctx, r->body, r->len);
	assert_int_equal(gh_http_reply_json(req, 200, json_object()), -EALREADY);
	return 0;
}

static int check_db(void *ud, char *why, size_t n)
{
	if (atomic_load(&ready_ok))
		return 0;
	snprintf(why, n, "connection refused");
	return -ECONNREFUSED;
}

static int check_bus(void *ud, char *why, size_t n) { return 0; }

typedef struct {
	void *ctx;
	gh_metrics_t *metrics;
	gh_http_server_t *srv;
	uint16_t port;
} fixture_t;

static gh_http_server_t *make_server(void *ctx, gh_metrics_t *m, unsigned threads)
{
	gh_http_config_t cfg = {.bind = "127.0.0.1", .port = 0, .threads = threads, .metrics = m};
	gh_http_server_t *s = gh_http_server_new(ctx, &cfg);
	assert_non_null(s);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/items/{id}", h_item, NULL), 0);
	assert_int_equal(gh_http_route(s, "DELETE", "/v1/t/items/{id}", h_item, NULL), 0);
	assert_int_equal(gh_http_route(s, "POST", "/v1/t/items/{id}:reserve", h_reserve, NULL), 0);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/items", h_list, NULL), 0);
	assert_int_equal(gh_http_route(s, "POST", "/v1/t/items", h_create, NULL), 0);
	gh_http_route_opts_t small = {.body_limit = 64};
	assert_int_equal(gh_http_route_ex(s, "POST", "/v1/t/upload", h_upload, NULL, &small), 0);
	gh_http_route_opts_t big = {.body_limit = 64u << 20};
	assert_int_equal(gh_http_route_ex(s, "POST", "/v1/t/import", h_upload, NULL, &big), 0);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/silent", h_silent, NULL), 0);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/conflict", h_conflict, NULL), 0);
	assert_int_equal(gh_http_route(s, "POST", "/v1/t/idem", h_idem, NULL), 0);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/items", h_list, NULL), -EEXIST);
	assert_int_equal(gh_http_route(s, "BREW", "/v1/t/pot", h_list, NULL), -EINVAL);
	assert_int_equal(gh_http_readiness(s, "db", check_db, NULL), 0);
	assert_int_equal(gh_http_readiness(s, "bus", check_bus, NULL), 0);
	return s;
}

static int setup(void **state)
{
	gh_log_init("http-test", GH_LOG_WARN);
	fixture_t *f = calloc(1, sizeof(*f));
	f->ctx = talloc_new(NULL);
	stored_ctx = f->ctx;
	f->metrics = gh_metrics_new(f->ctx);
	f->srv = make_server(f->ctx, f->metrics, 2);
	assert_int_equal(gh_http_server_start(f->srv), 0);
	f->port = gh_http_server_port(f->srv);
	assert_true(f->port > 0);
	assert_int_equal(gh_http_route(f->srv, "GET", "/late", h_list, NULL), -EBUSY);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	talloc_free(f->ctx); /* stops the server */
	free(f);
	return 0;
}

/* ---- tests ---- */

static void test_port_in_use_is_reported(void **state)
{
	fixture_t *f = *state;
	void *ctx = talloc_new(NULL);
	gh_http_config_t cfg = {.bind = "127.0.0.1", .port = f->port, .threads = 1};
	gh_http_server_t *s = gh_http_server_new(ctx, &cfg);
	assert_non_null(s);
	assert_int_equal(gh_http_server_start(s), -EADDRINUSE);
	assert_int_equal(gh_http_server_port(s), 0);
	cfg.bind = "not-an-address";
	assert_null(gh_http_server_new(ctx, &cfg));
	talloc_free(ctx);
}

static void test_healthz_and_generated_request_id(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80], v2[80];
	call(f->port, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"status\":\"ok\"}");
	assert_string_equal(hdr(&r, "Content-Type", v, sizeof(v)), "application/json");
	assert_non_null(hdr(&r, "X-Request-Id", v, sizeof(v)));
	assert_true(gh_uuid_valid(v));
	call(f->port, "GET", "/healthz", NULL, NULL, &r);
	assert_string_not_equal(hdr(&r, "X-Request-Id", v2, sizeof(v2)), v);
}

static void test_request_id_is_echoed_when_sane(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	call(f->port, "GET", "/nope", "X-Request-Id: abc-123.x_y:z\r\n", NULL, &r);
	assert_string_equal(hdr(&r, "X-Request-Id", v, sizeof(v)), "abc-123.x_y:z");
	assert_envelope(&r, 404, "NOT_FOUND", NULL);
	call(f->port, "GET", "/healthz", "X-Request-Id: bad id\"<script>\r\n", NULL, &r);
	assert_true(gh_uuid_valid(hdr(&r, "X-Request-Id", v, sizeof(v))));
	char longid[100];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	char h[128];
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\n", longid);
	call(f->port, "GET", "/healthz", h, NULL, &r);
	assert_true(gh_uuid_valid(hdr(&r, "X-Request-Id", v, sizeof(v))));
}

static void test_unknown_route_is_404_envelope(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	call(f->port, "GET", "/v1/t/nothing/here", NULL, NULL, &r);
	assert_envelope(&r, 404, "NOT_FOUND", NULL);
	call(f->port, "POST", "/v1/t/items/7:explode", NULL, "{}", &r);
	assert_envelope(&r, 404, "NOT_FOUND", NULL);
}

static void test_wrong_method_is_405_with_allow(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	call(f->port, "PUT", "/v1/t/items/7", NULL, "{}", &r);
	assert_envelope(&r, 405, "METHOD_NOT_ALLOWED", NULL);
	assert_string_equal(hdr(&r, "Allow", v, sizeof(v)), "GET, HEAD, DELETE");
	call(f->port, "BREW", "/v1/t/items", NULL, NULL, &r);
	assert_envelope(&r, 405, "METHOD_NOT_ALLOWED", NULL);
	assert_string_equal(hdr(&r, "Allow", v, sizeof(v)), "GET, HEAD, POST");
}

static void test_path_params_verbs_and_query(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	call(f->port, "GET", "/v1/t/items/%2B93701234567", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = gh_test_http_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "+93701234567");
	assert_string_equal(json_string_value(json_object_get(j, "route")), "/v1/t/items/{id}");
	json_decref(j);
	call(f->port, "GET", "/v1/t/items/1",
	     "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
	     "X-Request-Id: rid-7\r\n",
	     NULL, &r);
	j = gh_test_http_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "traceparent")),
	                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	/* The handler's log lines carry the request id. */
	assert_string_equal(json_string_value(json_object_get(j, "log_request_id")), "rid-7");
	json_decref(j);
	call(f->port, "GET", "/v1/t/items/1", "traceparent: 00-xyz\r\n", NULL, &r);
	j = gh_test_http_json(&r);
	assert_true(json_is_null(json_object_get(j, "traceparent")));
	json_decref(j);
	call(f->port, "DELETE", "/v1/t/items/a%2Fb", NULL, NULL, &r);
	j = gh_test_http_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "a/b");
	assert_string_equal(json_string_value(json_object_get(j, "method")), "DELETE");
	json_decref(j);
	call(f->port, "POST", "/v1/t/items/937001:reserve", NULL, "", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"reserved\":\"937001\"}");
	call(f->port, "GET", "/v1/t/items?page_size=5&q=a%20b+c", NULL, NULL, &r);
	assert_string_equal(r.body, "{\"page_size\":5,\"q\":\"a b c\"}");
	call(f->port, "GET", "/v1/t/items", NULL, NULL, &r);
	assert_string_equal(r.body, "{\"page_size\":50,\"q\":null}");
	call(f->port, "GET", "/v1/t/items?page_size=1001", NULL, NULL, &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "page_size");
	call(f->port, "GET", "/v1/t/items?page_size=5x", NULL, NULL, &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "page_size");
}

static void test_json_body_errors(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	call(f->port, "POST", "/v1/t/items", NULL, "{\"number\": ", &r);
	assert_envelope(&r, 400, "MALFORMED_JSON", NULL);
	call(f->port, "POST", "/v1/t/items", NULL, "", &r);
	assert_envelope(&r, 400, "MALFORMED_JSON", NULL);
	call(f->port, "POST", "/v1/t/items", NULL, "{\"number\":\"1\",\"numbr\":2}", &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "/numbr");
	call(f->port, "POST", "/v1/t/items", NULL, "{\"number\":1}", &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "/number");
	call(f->port, "POST", "/v1/t/items", NULL, "{\"count\":1}", &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "/number");
	call(f->port, "POST", "/v1/t/items", NULL, "{\"number\":\"9\",\"count\":3}", &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"number\":\"9\",\"count\":3}");
	assert_string_equal(hdr(&r, "Location", v, sizeof(v)), "/v1/t/items/1");
}

static void test_oversized_body_is_413_before_handler(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	int before = atomic_load(&handler_calls);
	/* Content-Length over the limit: answered without sending the body at all. */
	conn_t *c = conn_open(f->port);
	const char *h = "POST /v1/t/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
	conn_send(c, h, strlen(h));
	assert_int_equal(conn_read(c, &r), 0);
	assert_envelope(&r, 413, "PAYLOAD_TOO_LARGE", NULL);
	assert_true(closed_by_peer(c));
	conn_close(c);
	/* Chunked upload: nothing is kept past the limit and the handler never runs; the 413
	 * comes when the upload ends (MHD cannot answer in the middle of one). */
	c = conn_open(f->port);
	char chunked[512];
	char data[101];
	memset(data, 'x', 100);
	data[100] = '\0';
	int n =
	    snprintf(chunked, sizeof(chunked),
	             "POST /v1/t/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
	             "40\r\n%.64s\r\n24\r\n%.36s\r\n0\r\n\r\n",
	             data, data);
	conn_send(c, chunked, (size_t)n);
	assert_int_equal(conn_read(c, &r), 0);
	assert_envelope(&r, 413, "PAYLOAD_TOO_LARGE", NULL);
	conn_close(c);
	/* The default limit is 1 MiB for the other routes. */
	c = conn_open(f->port);
	h = "POST /v1/t/items HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n";
	conn_send(c, h, strlen(h));
	assert_int_equal(conn_read(c, &r), 0);
	assert_envelope(&r, 413, "PAYLOAD_TOO_LARGE", NULL);
	conn_close(c);
	assert_int_equal(atomic_load(&handler_calls), before);
	/* Exactly at the limit is fine, and a per-route limit can be larger than the default. */
	call(f->port, "POST", "/v1/t/upload", NULL,
	     "0123456789012345678901234567890123456789012345678901234567890123", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"len\":64}");
	size_t big = (1u << 20) + 4096;
	char *bb = malloc(big + 1);
	memset(bb, 'y', big);
	bb[big] = '\0';
	c = conn_open(f->port);
	char hh[128];
	n = snprintf(hh, sizeof(hh),
	             "POST /v1/t/import HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", big);
	conn_send(c, hh, (size_t)n);
	conn_send(c, bb, big);
	assert_int_equal(conn_read(c, &r), 0);
	assert_int_equal(r.status, 200);
	char expect[64];
	snprintf(expect, sizeof(expect), "{\"len\":%zu}", big);
	assert_string_equal(r.body, expect);
	conn_close(c);
	free(bb);
}

static void test_keep_alive_two_requests_one_connection(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	conn_t *c = conn_open(f->port);
	request(c, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_null(hdr(&r, "Connection", v, sizeof(v)));
	request(c, "POST", "/v1/t/items", NULL, "{\"number\":\"2\"}", &r);
	assert_int_equal(r.status, 201);
	assert_null(hdr(&r, "Connection", v, sizeof(v)));
	/* Errors keep the connection too. */
	request(c, "GET", "/v1/t/zzz", NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	request(c, "GET", "/v1/t/items/1", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_null(hdr(&r, "Connection", v, sizeof(v)));
	conn_close(c);
}

static void test_handler_errors_become_envelopes(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	call(f->port, "GET", "/v1/t/silent", NULL, NULL, &r);
	assert_envelope(&r, 500, "INTERNAL", NULL);
	assert_null(strstr(r.body, "rc"));
	call(f->port, "GET", "/v1/t/conflict", NULL, NULL, &r);
	assert_envelope(&r, 409, "CONFLICT", NULL);
	json_t *j = gh_test_http_json(&r);
	assert_int_equal(
	    json_integer_value(json_object_get(
	        json_object_get(json_object_get(j, "error"), "details"), "current_version")),
	    7);
	json_decref(j);
}

static void test_response_capture_and_replay(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	call(f->port, "POST", "/v1/t/idem", "Idempotency-Key: k1\r\n", "{}", &r);
	assert_int_equal(r.status, 202);
	assert_string_equal(r.body, "a,b\n1,2\n");
	call(f->port, "POST", "/v1/t/idem", "Idempotency-Key: k1\r\n", "{}", &r);
	assert_int_equal(r.status, 202);
	assert_string_equal(hdr(&r, "Content-Type", v, sizeof(v)), "text/csv");
	assert_string_equal(r.body, "a,b\n1,2\n");
	char h[400] = "Idempotency-Key: ";
	memset(h + strlen(h), 'k', 256);
	strcat(h, "\r\n");
	call(f->port, "POST", "/v1/t/idem", h, "{}", &r);
	assert_envelope(&r, 400, "INVALID_ARGUMENT", "Idempotency-Key");
}

static void test_readyz_ok_and_failing(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	atomic_store(&ready_ok, 1);
	call(f->port, "GET", "/readyz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body,
	                    "{\"status\":\"ok\",\"checks\":{\"db\":\"ok\",\"bus\":\"ok\"}}");
	atomic_store(&ready_ok, 0);
	call(f->port, "GET", "/readyz", NULL, NULL, &r);
	assert_envelope(&r, 503, "UNAVAILABLE", NULL);
	json_t *j = gh_test_http_json(&r);
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "message")), "not ready: db");
	json_t *checks = json_object_get(json_object_get(e, "details"), "checks");
	assert_string_equal(json_string_value(json_object_get(checks, "db")), "connection refused");
	assert_string_equal(json_string_value(json_object_get(checks, "bus")), "ok");
	json_decref(j);
	atomic_store(&ready_ok, 1);
}

static void test_metrics_exposition(void **state)
{
	fixture_t *f = *state;
	resp_t r;
	char v[80];
	call(f->port, "GET", "/v1/t/items/1", NULL, NULL, &r);
	call(f->port, "GET", "/v1/t/items/2", NULL, NULL, &r);
	call(f->port, "PUT", "/v1/t/items/2", NULL, NULL, &r);
	call(f->port, "GET", "/v1/none", NULL, NULL, &r);
	call(f->port, "GET", "/metrics", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(hdr(&r, "Content-Type", v, sizeof(v)), "text/plain; version=0.0.4");
	/* Counts include the earlier tests' requests, so check the lines exist with a value. */
	static const char *lines[] = {
	    "ghasi_http_requests_total{code=\"200\",method=\"GET\",route=\"/v1/t/items/{id}\"} ",
	    "ghasi_http_requests_total{code=\"405\",method=\"PUT\",route=\"unmatched\"} ",
	    "ghasi_http_requests_total{code=\"404\",method=\"GET\",route=\"unmatched\"} ",
	    "ghasi_http_requests_total{code=\"413\",method=\"POST\",route=\"/v1/t/upload\"} ",
	    "ghasi_http_request_duration_seconds_count{route=\"/v1/t/items/{id}\"} ",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const char *p = strstr(r.body, lines[i]);
		if (!p)
			fail_msg("missing %s in\n%s", lines[i], r.body);
		assert_true(strtoull(p + strlen(lines[i]), NULL, 10) >= 1);
	}
	/* A series appears only once it happened. */
	assert_null(strstr(r.body, "route=\"/v1/t/items/{id}\",method=\"GET\",code=\"500\""));
	/* Two GETs on this route in this test alone. */
	call(f->port, "GET", "/metrics", NULL, NULL, &r);
	const char *key =
	    "ghasi_http_requests_total{code=\"200\",method=\"GET\",route=\"/v1/t/items/{id}\"} ";
	unsigned long long n1 = strtoull(strstr(r.body, key) + strlen(key), NULL, 10);
	call(f->port, "GET", "/v1/t/items/3", NULL, NULL, &r);
	call(f->port, "GET", "/metrics", NULL, NULL, &r);
	unsigned long long n2 = strtoull(strstr(r.body, key) + strlen(key), NULL, 10);
	assert_int_equal(n2, n1 + 1);
}

/* ---- drain ---- */

static atomic_int slow_started, slow_release;

static int h_slow(gh_http_req_t *req, void *ud)
{
	atomic_store(&slow_started, 1);
	while (!atomic_load(&slow_release))
		nanosleep(&(struct timespec){0, 2000000}, NULL);
	return gh_http_reply_json(req, 200, json_pack("{s:b}", "done", 1));
}

typedef struct {
	uint16_t port;
	resp_t r;
	int rc;
} slow_call_t;

static void *slow_client(void *arg)
{
	slow_call_t *sc = arg;
	conn_t *c = conn_open(sc->port);
	const char *h = "GET /v1/t/slow HTTP/1.1\r\nHost: t\r\n\r\n";
	conn_send(c, h, strlen(h));
	sc->rc = conn_read(c, &sc->r);
	conn_close(c);
	return NULL;
}

typedef struct {
	gh_http_server_t *srv;
	int rc;
} drain_call_t;

static void *drainer(void *arg)
{
	drain_call_t *d = arg;
	d->rc = gh_http_server_drain(d->srv, 10000);
	return NULL;
}

static void test_drain_finishes_inflight_and_refuses_new(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_http_server_t *s = make_server(ctx, gh_metrics_new(ctx), 2);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/slow", h_slow, NULL), 0);
	assert_int_equal(gh_http_server_start(s), 0);
	uint16_t port = gh_http_server_port(s);
	resp_t r;
	char v[80];

	conn_t *idle = conn_open(port); /* kept alive across the drain */
	request(idle, "GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);

	slow_call_t sc = {.port = port};
	pthread_t ct, dt;
	pthread_create(&ct, NULL, slow_client, &sc);
	while (!atomic_load(&slow_started))
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	assert_int_equal(gh_http_server_inflight(s), 1);

	drain_call_t d = {.srv = s};
	pthread_create(&dt, NULL, drainer, &d);
	/* New connections are refused once the listener is closed. */
	int refused = 0;
	for (int i = 0; i < 2000 && !refused; i++) {
		int fd = tcp_connect(port);
		if (fd < 0)
			refused = 1;
		else
			close(fd);
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	assert_true(refused);
	/* A new request on a kept-alive connection is turned away. */
	const char *h = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	conn_send(idle, h, strlen(h));
	/* The request in flight is still running; let it finish. */
	assert_int_equal(sc.rc, 0);
	atomic_store(&slow_release, 1);
	pthread_join(ct, NULL);
	assert_int_equal(sc.rc, 0);
	assert_int_equal(sc.r.status, 200);
	assert_string_equal(sc.r.body, "{\"done\":true}");
	assert_string_equal(hdr(&sc.r, "Connection", v, sizeof(v)), "close");

	assert_int_equal(conn_read(idle, &r), 0);
	assert_envelope(&r, 503, "UNAVAILABLE", NULL);
	assert_string_equal(hdr(&r, "Connection", v, sizeof(v)), "close");
	conn_close(idle);

	pthread_join(dt, NULL);
	assert_int_equal(d.rc, 0);
	assert_int_equal(gh_http_server_inflight(s), 0);
	assert_int_equal(gh_http_server_drain(s, 0), 0); /* idempotent */
	talloc_free(ctx);
}

static void *release_later(void *arg)
{
	nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
	atomic_store(&slow_release, 1);
	return NULL;
}

static void test_drain_grace_bounds_the_wait(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_http_server_t *s = make_server(ctx, gh_metrics_new(ctx), 2);
	assert_int_equal(gh_http_route(s, "GET", "/v1/t/slow", h_slow, NULL), 0);
	assert_int_equal(gh_http_server_start(s), 0);
	atomic_store(&slow_started, 0);
	atomic_store(&slow_release, 0);
	slow_call_t sc = {.port = gh_http_server_port(s)};
	pthread_t ct, rt;
	pthread_create(&ct, NULL, slow_client, &sc);
	while (!atomic_load(&slow_started))
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	/* The handler outlives a 50 ms grace: drain gives up on it (stopping the server still
	 * waits for the handler's thread, which the helper releases later). */
	pthread_create(&rt, NULL, release_later, NULL);
	assert_int_equal(gh_http_server_drain(s, 50), -ETIMEDOUT);
	pthread_join(rt, NULL);
	pthread_join(ct, NULL);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_port_in_use_is_reported),
	    cmocka_unit_test(test_healthz_and_generated_request_id),
	    cmocka_unit_test(test_request_id_is_echoed_when_sane),
	    cmocka_unit_test(test_unknown_route_is_404_envelope),
	    cmocka_unit_test(test_wrong_method_is_405_with_allow),
	    cmocka_unit_test(test_path_params_verbs_and_query),
	    cmocka_unit_test(test_json_body_errors),
	    cmocka_unit_test(test_oversized_body_is_413_before_handler),
	    cmocka_unit_test(test_keep_alive_two_requests_one_connection),
	    cmocka_unit_test(test_handler_errors_become_envelopes),
	    cmocka_unit_test(test_response_capture_and_replay),
	    cmocka_unit_test(test_readyz_ok_and_failing),
	    cmocka_unit_test(test_metrics_exposition),
	};
	const struct CMUnitTest drain_tests[] = {
	    cmocka_unit_test(test_drain_finishes_inflight_and_refuses_new),
	    cmocka_unit_test(test_drain_grace_bounds_the_wait),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	return rc + cmocka_run_group_tests(drain_tests, NULL, NULL);
}
