/* httpcli: against a real gh_http server on 127.0.0.1: JSON both ways, the request id header,
 * HTTP error statuses passed through, and each failure mapped to its errno (timeout, refused,
 * body not JSON, body too large, bad URL). */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <talloc.h>
#include <unistd.h>

#include "http.h"
#include "httpcli.h"
#include "testutil.h"

static int h_echo(gh_http_req_t *req, void *ud)
{
	(void)ud;
	json_t *b;
	if (gh_http_json_body(req, NULL, &b) < 0)
		return -EINVAL;
	const char *rid = gh_http_header(req, "X-Request-Id");
	const char *ct = gh_http_header(req, "Content-Type");
	return gh_http_reply_json(
	    req, 200, json_pack("{sOssss}", "got", b, "rid", rid ? rid : "", "ct", ct ? ct : ""));
}

static int h_slow(gh_http_req_t *req, void *ud)
{
	(void)ud;
	usleep(600 * 1000);
	return gh_http_reply_json(req, 200, json_object());
}

static int h_text(gh_http_req_t *req, void *ud)
{
	(void)ud;
	return gh_http_reply_raw(req, 200, "text/plain", "hello", 5);
}

static int h_big(gh_http_req_t *req, void *ud)
{
	(void)ud;
	static char big[100 * 1024];
	memset(big, ' ', sizeof big);
	big[0] = '{';
	big[sizeof big - 1] = '}';
	return gh_http_reply_raw(req, 200, "application/json", big, sizeof big);
}

static int h_refuse(gh_http_req_t *req, void *ud)
{
	(void)ud;
	gh_err_t *e = gh_http_err(req);
	gh_err_set(e, GH_E_FAILED_PRECONDITION, NULL, "no");
	return gh_http_reply_error(req, e);
}

static uint16_t closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd); /* nothing listens there any more */
	return ntohs(a.sin_port);
}

static void test_post_json_and_failures(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_http_server_t *srv = gh_http_server_new(ctx, &(gh_http_config_t){.threads = 2});
	assert_non_null(srv);
	assert_int_equal(gh_http_route(srv, "POST", "/echo", h_echo, NULL), 0);
	assert_int_equal(gh_http_route(srv, "POST", "/slow", h_slow, NULL), 0);
	assert_int_equal(gh_http_route(srv, "POST", "/text", h_text, NULL), 0);
	assert_int_equal(gh_http_route(srv, "POST", "/big", h_big, NULL), 0);
	assert_int_equal(gh_http_route(srv, "POST", "/refuse", h_refuse, NULL), 0);
	assert_int_equal(gh_http_server_start(srv), 0);
	char base[64], url[128];
	snprintf(base, sizeof base, "http://127.0.0.1:%u", gh_http_server_port(srv));

	gh_httpcli_t *c;
	assert_int_equal(gh_httpcli_new(ctx, &(gh_httpcli_opts_t){.timeout_ms = 300}, &c), 0);
	gh_httpcli_resp_t r;

	/* JSON both ways, with the request id and the content type */
	snprintf(url, sizeof url, "%s/echo", base);
	json_t *body = json_pack("{sssi}", "tenant_id", "t1", "term_days", 30);
	assert_int_equal(gh_httpcli_post_json(c, url, body, "rid-1", &r), 0);
	assert_int_equal(r.status, 200);
	assert_true(json_equal(json_object_get(r.body, "got"), body));
	assert_string_equal(json_string_value(json_object_get(r.body, "rid")), "rid-1");
	assert_string_equal(json_string_value(json_object_get(r.body, "ct")), "application/json");
	json_decref(r.body);
	json_decref(body);

	/* an HTTP error status is a response: 0, the status and the envelope */
	snprintf(url, sizeof url, "%s/refuse", base);
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), 0);
	assert_int_equal(r.status, 422);
	assert_non_null(json_object_get(r.body, "error"));
	json_decref(r.body);
	snprintf(url, sizeof url, "%s/nowhere", base);
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), 0);
	assert_int_equal(r.status, 404);
	json_decref(r.body);

	/* the whole exchange is bounded */
	snprintf(url, sizeof url, "%s/slow", base);
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), -ETIMEDOUT);
	assert_null(r.body);
	assert_true(r.why[0] != '\0');

	/* not JSON, too large */
	snprintf(url, sizeof url, "%s/text", base);
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), -EIO);
	assert_int_equal(r.status, 200);
	assert_null(r.body);
	snprintf(url, sizeof url, "%s/big", base);
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), -EIO);
	assert_null(r.body);

	/* nothing listening; not an http URL */
	snprintf(url, sizeof url, "http://127.0.0.1:%u/x", closed_port());
	assert_int_equal(gh_httpcli_post_json(c, url, NULL, NULL, &r), -ECONNREFUSED);
	assert_int_equal(r.status, 0);
	assert_int_equal(gh_httpcli_post_json(c, "ftp://127.0.0.1/x", NULL, NULL, &r), -EINVAL);
	assert_int_equal(gh_httpcli_post_json(c, NULL, NULL, NULL, &r), -EINVAL);

	assert_int_equal(gh_httpcli_new(ctx, &(gh_httpcli_opts_t){.timeout_ms = -1}, &c), -EINVAL);
	gh_http_server_stop(srv);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_post_json_and_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
