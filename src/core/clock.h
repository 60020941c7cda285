/* clock: the one source of time. Everything time-dependent takes a gh_clock_t so tests can
 * replace the real clock with a settable one. */
#ifndef GH_CLOCK_H
#define GH_CLOCK_H

#include <stdint.h>

typedef struct gh_clock_s gh_clock_t;

/* The process-wide real clock (static; never freed). */
gh_clock_t *gh_clock_real(void);
/* A test clock starting at start_ms (wall time, ms since the Unix epoch), talloc child of ctx.
 * Its monotonic time moves with its wall time. Thread-safe. */
gh_clock_t *gh_clock_test_new(void *ctx, int64_t start_ms);
void gh_clock_test_set(gh_clock_t *c, int64_t ms);
void gh_clock_test_advance(gh_clock_t *c, int64_t delta_ms);
int gh_clock_is_test(const gh_clock_t *c);

/* Wall-clock milliseconds since the Unix epoch. */
int64_t gh_clock_now_ms(const gh_clock_t *c);
/* Monotonic nanoseconds (arbitrary origin), for durations and timers. */
int64_t gh_clock_mono_ns(const gh_clock_t *c);

/* RFC 3339 UTC with milliseconds and Z: "2026-11-22T06:00:00.000Z". buf needs 25 bytes. */
void gh_time_format(int64_t ms, char buf[25]);
/* Parse RFC 3339 (Z or +hh:mm offset, optional fraction up to ns, truncated to ms).
 * Returns 0 or -EINVAL. */
int gh_time_parse(const char *s, int64_t *ms);

#endif
