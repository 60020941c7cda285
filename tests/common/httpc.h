/* httpc: a raw HTTP/1.1 client for tests that drive a real server on 127.0.0.1. It writes
 * requests byte for byte (so tests can send malformed ones) and reads responses framed by
 * Content-Length. Failures of the socket fail the current cmocka test. */
#ifndef GH_TEST_HTTPC_H
#define GH_TEST_HTTPC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	int fd;
	char buf[1 << 17];
	size_t len;
} gh_test_http_conn_t;

typedef struct {
	int status;
	char head[4096];    /* status line and headers, NUL-terminated */
	char body[1 << 16]; /* /metrics of a full app is tens of KB */
	size_t body_len;
} gh_test_http_resp_t;

/* A connection to 127.0.0.1:port (10 s receive timeout), or -1 / NULL when refused. */
int gh_test_http_connect(uint16_t port);
gh_test_http_conn_t *gh_test_http_open(uint16_t port);
void gh_test_http_close(gh_test_http_conn_t *c);
void gh_test_http_send(gh_test_http_conn_t *c, const char *data, size_t n);
/* Read one response; 0, or -1 when the server closed first. */
int gh_test_http_read(gh_test_http_conn_t *c, gh_test_http_resp_t *r);
/* 1 when the server closed the connection (the next read sees EOF). */
int gh_test_http_closed_by_peer(gh_test_http_conn_t *c);
/* Value of a response header (case-insensitive name) copied into out; NULL when absent. */
const char *gh_test_http_header(const gh_test_http_resp_t *r, const char *name, char *out,
                                size_t n);
/* The response body parsed as JSON (caller decrefs); fails the test when it is not JSON. */
json_t *gh_test_http_json(const gh_test_http_resp_t *r);
/* Send one request on c and read its response. extra: header lines, each ending in "\r\n"
 * (may be NULL); body (may be NULL) gets a Content-Length. */
void gh_test_http_exchange(gh_test_http_conn_t *c, const char *method, const char *path,
                           const char *extra, const char *body, gh_test_http_resp_t *r);
/* One request on a fresh connection. */
void gh_test_http_request(uint16_t port, const char *method, const char *path, const char *extra,
                          const char *body, gh_test_http_resp_t *r);

#endif
