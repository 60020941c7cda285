/* log: JSON-lines logging on stderr (specs/conventions.md, Operations).
 *
 * One line per call, written with a single write(2) so lines from concurrent threads never
 * interleave. Every line carries ts, level, service, msg and, when the calling thread has one,
 * request_id and traceparent. Subscriber identifiers must go through gh_log_mask() first. */
#ifndef GH_LOG_H
#define GH_LOG_H

#include <stddef.h>

typedef enum {
	GH_LOG_DEBUG,
	GH_LOG_INFO,
	GH_LOG_WARN,
	GH_LOG_ERROR,
} gh_log_level_t;

extern const char *const gh_log_level_names[];

/* Set the service name written on every line and the minimum level. Not thread-safe: call once
 * at start, before threads exist. */
void gh_log_init(const char *service, gh_log_level_t min_level);
void gh_log_set_level(gh_log_level_t min_level);
/* Redirect output (default 2, stderr); tests point it at a pipe or file. */
void gh_log_set_fd(int fd);
/* Parse "debug"/"info"/"warn"/"error". Returns 0 or -EINVAL. */
int gh_log_level_parse(const char *s, gh_log_level_t *out);

/* Per-thread request context, copied (truncated to 64 bytes); NULL clears. */
void gh_log_set_request_id(const char *request_id);
const char *gh_log_request_id(void);
void gh_log_set_traceparent(const char *traceparent);

/* Log msg with NULL-terminated key/value string pairs:
 *   gh_log(GH_LOG_INFO, "lease assigned", "tenant_id", t, "number", masked, NULL);
 * Keys and values are JSON-escaped. A NULL value is written as null. */
void gh_log(gh_log_level_t level, const char *msg, ...) __attribute__((sentinel));
/* printf-style message, no extra fields. */
void gh_logf(gh_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Mask a subscriber identifier for logs: keep the first 5 and last 3 characters, star the rest
 * ("+93701234567" -> "+9370****567"). Identifiers of 8 characters or fewer keep only their last
 * 2. Always NUL-terminates out (when n > 0) and returns it. */
char *gh_log_mask(const char *ident, char *out, size_t n);

#endif
