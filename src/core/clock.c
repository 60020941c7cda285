/* clock: real and test clocks, RFC 3339 formatting. See clock.h. */
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

struct gh_clock_s {
	int is_test;
	_Atomic int64_t test_ms;
};

static gh_clock_t g_real = {0, 0};

gh_clock_t *gh_clock_real(void) { return &g_real; }

gh_clock_t *gh_clock_test_new(void *ctx, int64_t start_ms)
{
	gh_clock_t *c = talloc_zero(ctx, gh_clock_t);
	if (!c)
		return NULL;
	c->is_test = 1;
	atomic_store(&c->test_ms, start_ms);
	return c;
}

void gh_clock_test_set(gh_clock_t *c, int64_t ms) { atomic_store(&c->test_ms, ms); }

void gh_clock_test_advance(gh_clock_t *c, int64_t delta_ms)
{
	atomic_fetch_add(&c->test_ms, delta_ms);
}

int gh_clock_is_test(const gh_clock_t *c) { return c->is_test; }

int64_t gh_clock_now_ms(const gh_clock_t *c)
{
	if (c->is_test)
		return atomic_load(&((gh_clock_t *)c)->test_ms);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gh_clock_mono_ns(const gh_clock_t *c)
{
	if (c->is_test)
		return atomic_load(&((gh_clock_t *)c)->test_ms) * 1000000;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gh_time_format(int64_t ms, char buf[25])
{
	int64_t sec = ms / 1000, frac = ms % 1000;
	if (frac < 0)
		frac += 1000, sec -= 1;
	time_t t = (time_t)sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	/* written by hand: fixed width, and no snprintf truncation warnings for years > 9999 */
	int y = tm.tm_year + 1900;
	int v[] = {y / 100 % 100, y % 100,   tm.tm_mon + 1, tm.tm_mday,
	           tm.tm_hour,    tm.tm_min, tm.tm_sec};
	const char sep[] = {0, 0, '-', '-', 'T', ':', ':'};
	int o = 0;
	for (int i = 0; i < 7; i++) {
		if (sep[i])
			buf[o++] = sep[i];
		buf[o++] = (char)('0' + v[i] / 10);
		buf[o++] = (char)('0' + v[i] % 10);
	}
	buf[o++] = '.';
	buf[o++] = (char)('0' + frac / 100);
	buf[o++] = (char)('0' + frac / 10 % 10);
	buf[o++] = (char)('0' + frac % 10);
	buf[o++] = 'Z';
	buf[o] = '\0';
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int expect(const char **p, char c)
{
	if (**p != c)
		return -EINVAL;
	(*p)++;
	return 0;
}

int gh_time_parse(const char *s, int64_t *ms)
{
	int Y, M, D, h, m, sec, frac_ms = 0;
	const char *p = s;
	if (!s || digits(&p, 4, &Y) || expect(&p, '-') || digits(&p, 2, &M) || expect(&p, '-') ||
	    digits(&p, 2, &D))
		return -EINVAL;
	if (*p != 'T' && *p != 't')
		return -EINVAL;
	p++;
	if (digits(&p, 2, &h) || expect(&p, ':') || digits(&p, 2, &m) || expect(&p, ':') ||
	    digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		p++;
		int n = 0, scale = 100;
		while (isdigit((unsigned char)*p)) {
			if (n < 3)
				frac_ms += (*p - '0') * scale, scale /= 10;
			n++, p++;
		}
		if (n == 0 || n > 9)
			return -EINVAL;
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (digits(&p, 2, &oh) || expect(&p, ':') || digits(&p, 2, &om) || oh > 23 ||
		    om > 59)
			return -EINVAL;
		offset_min = sign * (oh * 60 + om);
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
	if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap) || h > 23 || m > 59 ||
	    sec > 60)
		return -EINVAL;
	struct tm tm = {.tm_year = Y - 1900,
	                .tm_mon = M - 1,
	                .tm_mday = D,
	                .tm_hour = h,
	                .tm_min = m,
	                .tm_sec = sec > 59 ? 59 : sec};
	time_t t = timegm(&tm);
	*ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + frac_ms;
	return 0;
}
