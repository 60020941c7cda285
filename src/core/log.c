/* log: JSON-lines logger. See log.h for the contract. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

const char *const gh_log_level_names[] = {"debug", "info", "warn", "error"};

static char g_service[64] = "ghasi";
static gh_log_level_t g_min_level = GH_LOG_INFO;
static int g_fd = 2;
static _Thread_local char t_request_id[65];
static _Thread_local char t_traceparent[65];

void gh_log_init(const char *service, gh_log_level_t min_level)
{
	snprintf(g_service, sizeof(g_service), "%s", service ? service : "ghasi");
	g_min_level = min_level;
}

void gh_log_set_level(gh_log_level_t min_level) { g_min_level = min_level; }

void gh_log_set_fd(int fd) { g_fd = fd; }

int gh_log_level_parse(const char *s, gh_log_level_t *out)
{
	for (int i = GH_LOG_DEBUG; i <= GH_LOG_ERROR; i++) {
		if (s && strcasecmp(s, gh_log_level_names[i]) == 0) {
			*out = (gh_log_level_t)i;
			return 0;
		}
	}
	return -EINVAL;
}

void gh_log_set_request_id(const char *request_id)
{
	snprintf(t_request_id, sizeof(t_request_id), "%s", request_id ? request_id : "");
}

const char *gh_log_request_id(void) { return t_request_id[0] ? t_request_id : NULL; }

void gh_log_set_traceparent(const char *traceparent)
{
	snprintf(t_traceparent, sizeof(t_traceparent), "%s", traceparent ? traceparent : "");
}

/* A line buffer that never overflows. Fields are appended while they fit below the reserve;
 * a value that does not fit is cut at a character boundary and the line is marked truncated.
 * The reserve keeps room for the request context and the closing "}\n". */
typedef struct {
	char buf[4096];
	size_t len;
	int truncated;
} line_t;

enum { RESERVE = 256 };

static size_t room(const line_t *l) { return sizeof(l->buf) - RESERVE - l->len; }

/* Unconditional append, for the reserved tail only. */
static void raw(line_t *l, const char *s, size_t n)
{
	if (l->len + n > sizeof(l->buf))
		n = sizeof(l->buf) - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void puts_(line_t *l, const char *s) { raw(l, s, strlen(s)); }

/* Append a JSON string; cut (and close the quote) when the budget runs out. */
static void put_json_string(line_t *l, const char *s, int reserved)
{
	static const char hex[] = "0123456789abcdef";
	raw(l, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[6];
		size_t n = 2;
		switch (*p) {
		case '"': memcpy(esc, "\\\"", 2); break;
		case '\\': memcpy(esc, "\\\\", 2); break;
		case '\n': memcpy(esc, "\\n", 2); break;
		case '\r': memcpy(esc, "\\r", 2); break;
		case '\t': memcpy(esc, "\\t", 2); break;
		default:
			if (*p < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*p >> 4], esc[5] = hex[*p & 15];
				n = 6;
			} else {
				esc[0] = (char)*p;
				n = 1;
			}
		}
		if (!reserved && n > room(l)) {
			/* do not leave half a UTF-8 sequence behind */
			while (l->len > 0 && ((unsigned char)l->buf[l->len - 1] & 0xC0) == 0x80)
				l->len--;
			if (l->len > 0 && ((unsigned char)l->buf[l->len - 1] & 0x80))
				l->len--;
			l->truncated = 1;
			break;
		}
		raw(l, esc, n);
	}
	raw(l, "\"", 1);
}

static void put_field_(line_t *l, const char *key, const char *value, int reserved)
{
	if (!reserved && (l->truncated || room(l) < strlen(key) + 8)) {
		l->truncated = 1;
		return;
	}
	raw(l, ",", 1);
	put_json_string(l, key, reserved);
	raw(l, ":", 1);
	if (value)
		put_json_string(l, value, reserved);
	else
		raw(l, "null", 4);
}

static void put_field(line_t *l, const char *key, const char *value)
{
	put_field_(l, key, value, 0);
}

static void begin(line_t *l, gh_log_level_t level)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tbuf + n, sizeof(tbuf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	l->len = 0;
	l->truncated = 0;
	puts_(l, "{\"ts\":\"");
	puts_(l, tbuf);
	puts_(l, "\",\"level\":\"");
	puts_(l, gh_log_level_names[level]);
	puts_(l, "\"");
	put_field(l, "service", g_service);
}

static void finish(line_t *l)
{
	if (t_request_id[0])
		put_field_(l, "request_id", t_request_id, 1);
	if (t_traceparent[0])
		put_field_(l, "traceparent", t_traceparent, 1);
	if (l->truncated)
		puts_(l, ",\"truncated\":true");
	raw(l, "}\n", 2);
	const char *p = l->buf;
	size_t left = l->len;
	while (left > 0) {
		ssize_t w = write(g_fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere to report a failing log sink */
		p += w;
		left -= (size_t)w;
	}
}

void gh_log(gh_log_level_t level, const char *msg, ...)
{
	if (level < g_min_level)
		return;
	line_t l;
	begin(&l, level);
	put_field(&l, "msg", msg);
	va_list ap;
	va_start(ap, msg);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		put_field(&l, k, v);
	}
	va_end(ap);
	finish(&l);
}

void gh_logf(gh_log_level_t level, const char *fmt, ...)
{
	if (level < g_min_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line_t l;
	begin(&l, level);
	put_field(&l, "msg", msg);
	finish(&l);
}

char *gh_log_mask(const char *ident, char *out, size_t n)
{
	if (n == 0)
		return out;
	size_t len = ident ? strlen(ident) : 0;
	size_t keep_head = 5, keep_tail = 3;
	if (len <= 8)
		keep_head = 0, keep_tail = len < 2 ? len : 2;
	size_t i = 0;
	for (; i < len && i + 1 < n; i++) {
		int keep = i < keep_head || i >= len - keep_tail;
		out[i] = keep ? ident[i] : '*';
	}
	out[i] = '\0';
	return out;
}
