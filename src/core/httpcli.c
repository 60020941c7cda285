/* httpcli: JSON over HTTP to the ports services call (libcurl easy interface). See httpcli.h. */
#include "httpcli.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "gh-core.h"

struct gh_httpcli_s {
	long timeout_ms, connect_timeout_ms;
	size_t max_response;
	char *user_agent;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

/* curl_global_init is not thread-safe: once per process, before any handle. Never cleaned up
 * (the process keeps using it until exit). */
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int gh_httpcli_new(void *ctx, const gh_httpcli_opts_t *opts, gh_httpcli_t **out)
{
	gh_httpcli_opts_t o = opts ? *opts : (gh_httpcli_opts_t){0};
	if (o.timeout_ms == 0)
		o.timeout_ms = 2000;
	if (o.connect_timeout_ms == 0)
		o.connect_timeout_ms = o.timeout_ms < 1000 ? o.timeout_ms : 1000;
	if (o.max_response == 0)
		o.max_response = 64 * 1024;
	if (o.timeout_ms < 1 || o.connect_timeout_ms < 1)
		return -EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return -EIO;
	gh_httpcli_t *c = talloc_zero(ctx, gh_httpcli_t);
	if (!c)
		return -ENOMEM;
	c->timeout_ms = (long)o.timeout_ms;
	c->connect_timeout_ms = (long)o.connect_timeout_ms;
	c->max_response = o.max_response;
	c->user_agent = talloc_strdup(c, o.user_agent ? o.user_agent : "ghasi/" GH_VERSION);
	if (!c->user_agent) {
		talloc_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

typedef struct {
	char *buf;
	size_t len, max;
	int too_large;
} sink_t;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	sink_t *s = ud;
	size_t k = size * n;
	if (s->len + k > s->max) {
		s->too_large = 1;
		return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
	}
	char *nb = talloc_realloc(NULL, s->buf, char, s->len + k + 1);
	if (!nb)
		return 0;
	memcpy(nb + s->len, p, k);
	s->buf = nb;
	s->len += k;
	s->buf[s->len] = '\0';
	return k;
}

static int map_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY: return -ECONNREFUSED;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT: return -EINVAL;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	default: return -EIO;
	}
}

int gh_httpcli_post_json(gh_httpcli_t *c, const char *url, const json_t *body,
                         const char *request_id, gh_httpcli_resp_t *resp)
{
	memset(resp, 0, sizeof *resp);
	if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		snprintf(resp->why, sizeof resp->why, "not an http(s) URL");
		return -EINVAL;
	}
	char *payload = body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
	if (!payload) {
		snprintf(resp->why, sizeof resp->why, "request body not serialisable");
		return body ? -EINVAL : -ENOMEM;
	}
	sink_t sink = {.max = c->max_response};
	struct curl_slist *hdrs = NULL;
	char rid[128];
	int rc = 0;
	CURL *h = curl_easy_init();
	if (!h) {
		rc = -ENOMEM;
		snprintf(resp->why, sizeof resp->why, "curl_easy_init failed");
		goto out;
	}
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (request_id) {
		snprintf(rid, sizeof rid, "X-Request-Id: %s", request_id);
		hdrs = curl_slist_append(hdrs, rid);
	}
	if (!hdrs) {
		rc = -ENOMEM;
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);

	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	resp->status = (int)status;
	if (cc != CURLE_OK) {
		if (sink.too_large) {
			rc = -EIO;
			snprintf(resp->why, sizeof resp->why, "response larger than %zu bytes",
			         c->max_response);
		} else {
			rc = map_curl(cc);
			snprintf(resp->why, sizeof resp->why, "%s", curl_easy_strerror(cc));
		}
		goto out;
	}
	if (sink.len > 0) {
		json_error_t je;
		resp->body = json_loadb(sink.buf, sink.len, JSON_REJECT_DUPLICATES, &je);
		if (!resp->body) {
			rc = -EIO;
			snprintf(resp->why, sizeof resp->why, "HTTP %ld: body is not JSON (%.100s)",
			         status, je.text);
		}
	}
out:
	if (h)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	talloc_free(sink.buf);
	free(payload);
	return rc;
}
