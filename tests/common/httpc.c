/* httpc: the raw HTTP/1.1 test client (see httpc.h). */
#include "httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testutil.h"

int gh_test_http_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

gh_test_http_conn_t *gh_test_http_open(uint16_t port)
{
	gh_test_http_conn_t *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->fd = gh_test_http_connect(port);
	assert_true(c->fd >= 0);
	return c;
}

void gh_test_http_close(gh_test_http_conn_t *c)
{
	close(c->fd);
	free(c);
}

void gh_test_http_send(gh_test_http_conn_t *c, const char *data, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		data += w;
		n -= (size_t)w;
	}
}

json_t *gh_test_http_json(const gh_test_http_resp_t *r)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, r->body_len, 0, &e);
	if (!j)
		fail_msg("not JSON: %s", r->body);
	return j;
}

const char *gh_test_http_header(const gh_test_http_resp_t *r, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *l = p + 2;
		if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
			const char *v = l + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			snprintf(out, n, "%.*s", (int)vl, v);
			return out;
		}
	}
	return NULL;
}

int gh_test_http_read(gh_test_http_conn_t *c, gh_test_http_resp_t *r)
{
	memset(r, 0, sizeof(*r));
	char *end;
	while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
	size_t hlen = (size_t)(end - c->buf) + 4;
	assert_true(hlen < sizeof(r->head));
	memcpy(r->head, c->buf, hlen);
	r->head[hlen] = '\0';
	assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
	char v[32];
	size_t cl =
	    gh_test_http_header(r, "Content-Length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
	assert_true(cl < sizeof(r->body));
	while (c->len < hlen + cl) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
	memcpy(r->body, c->buf + hlen, cl);
	r->body[cl] = '\0';
	r->body_len = cl;
	memmove(c->buf, c->buf + hlen + cl, c->len - hlen - cl);
	c->len -= hlen + cl;
	return 0;
}

int gh_test_http_closed_by_peer(gh_test_http_conn_t *c)
{
	char b;
	return recv(c->fd, &b, 1, 0) == 0;
}

void gh_test_http_exchange(gh_test_http_conn_t *c, const char *method, const char *path,
                           const char *extra, const char *body, gh_test_http_resp_t *r)
{
	char req[8192];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\n%s", method, path,
	                 extra ? extra : "");
	if (body)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: %zu\r\n",
		              strlen(body));
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n%s", body ? body : "");
	assert_true(n > 0 && (size_t)n < sizeof(req));
	gh_test_http_send(c, req, (size_t)n);
	assert_int_equal(gh_test_http_read(c, r), 0);
}

void gh_test_http_request(uint16_t port, const char *method, const char *path, const char *extra,
                          const char *body, gh_test_http_resp_t *r)
{
	gh_test_http_conn_t *c = gh_test_http_open(port);
	gh_test_http_exchange(c, method, path, extra, body, r);
	gh_test_http_close(c);
}
