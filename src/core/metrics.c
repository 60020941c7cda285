/* metrics: registry of counters, gauges and histograms with Prometheus text exposition 0.0.4.
 *
 * The registry is a list of families (one name, help and type each) holding series (one
 * canonical label set each). The lock guards only the lists: registration and rendering take
 * it, updates go straight to the metric's atomics. Metrics are never unregistered, so a pointer
 * handed out stays valid until the registry is freed. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "hist.h"
#include "log.h"

/* Label pairs per series; more is a cardinality smell rather than a real need. */
#define MAX_LABELS 16

typedef enum { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM } fam_type_t;
static const char *const fam_type_names[] = {"counter", "gauge", "histogram"};

struct gh_counter_s {
	_Atomic uint64_t v;
};
struct gh_gauge_s {
	_Atomic int64_t v;
};
struct gh_histogram_s {
	gh_hist_t h;
};

typedef struct series_s {
	struct series_s *next;
	char *labels;         /* canonical: pairs sorted by name, "" for none */
	void *metric;         /* gh_counter_t / gh_gauge_t / gh_histogram_t; NULL for a gauge fn */
	double (*fn)(void *); /* gauge read at exposition time */
	void *ud;
} series_t;

typedef struct family_s {
	struct family_s *next;
	char *name, *help;
	fam_type_t type;
	series_t *series, **series_tail;
} family_t;

struct gh_metrics_s {
	pthread_mutex_t lock;
	family_t *families, **tail;
};

/* Exposed histogram buckets: upper bounds in ns and as rendered in the le label (seconds). */
static const struct {
	int64_t ns;
	const char *le;
} exp_buckets[] = {
    {50000, "0.00005"},    {100000, "0.0001"},  {250000, "0.00025"},   {500000, "0.0005"},
    {1000000, "0.001"},    {2500000, "0.0025"}, {5000000, "0.005"},    {10000000, "0.01"},
    {25000000, "0.025"},   {50000000, "0.05"},  {100000000, "0.1"},    {250000000, "0.25"},
    {500000000, "0.5"},    {1000000000, "1"},   {2500000000LL, "2.5"}, {5000000000LL, "5"},
    {10000000000LL, "10"},
};
#define N_EXP_BUCKETS (sizeof(exp_buckets) / sizeof(exp_buckets[0]))

/* ---- output buffer: doubling talloc string, sticky out-of-memory flag ---- */

typedef struct {
	void *ctx;
	char *s;
	size_t len, cap;
	bool oom;
} buf_t;

static bool buf_reserve(buf_t *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->len + extra + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *s = talloc_realloc(b->ctx, b->s, char, cap);
	if (!s) {
		b->oom = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

/* Start an empty NUL-terminated string of capacity cap (oom flagged on failure). */
static void buf_init(buf_t *b, void *ctx, size_t cap)
{
	*b = (buf_t){.ctx = ctx};
	if (buf_reserve(b, cap))
		b->s[0] = '\0';
}

static void buf_add(buf_t *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_puts(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void buf_printf(buf_t *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n < sizeof(tmp)) {
		buf_add(b, tmp, (size_t)n);
		return;
	}
	if (!buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- names and labels ---- */

static bool is_alpha_(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static bool valid_metric_name(const char *s)
{
	if (!s || !(is_alpha_(*s) || *s == ':'))
		return false;
	for (s++; *s; s++)
		if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
			return false;
	return true;
}

/* Length of the UTF-8 sequence starting at s (structurally valid, no overlongs or surrogates),
 * or 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

typedef struct {
	const char *name, *val; /* val: the escaped text between the quotes */
	size_t nlen, vlen;
} label_t;

static int label_cmp(const void *a, const void *b)
{
	const label_t *x = a, *y = b;
	size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
	int c = memcmp(x->name, y->name, n);
	return c ? c : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

/* Parse and check a pre-rendered label set (syntax in metrics.h) and return it with its pairs
 * sorted by name, as a talloc string child of ctx. Returns 0, -EINVAL or -ENOMEM. */
static int labels_canon(void *ctx, const char *in, bool histogram, char **out)
{
	label_t l[MAX_LABELS];
	size_t n = 0;
	const char *p = in ? in : "";

	while (*p) {
		if (n == MAX_LABELS)
			return -EINVAL;
		label_t *x = &l[n++];
		x->name = p;
		if (!is_alpha_(*p))
			return -EINVAL;
		while (is_alpha_(*p) || is_digit(*p))
			p++;
		x->nlen = (size_t)(p - x->name);
		if ((x->nlen >= 2 && x->name[0] == '_' && x->name[1] == '_') ||
		    (histogram && x->nlen == 2 && !memcmp(x->name, "le", 2)))
			return -EINVAL;
		if (*p++ != '=' || *p++ != '"')
			return -EINVAL;
		x->val = p;
		while (*p != '"') {
			if (*p == '\\') {
				if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
					return -EINVAL;
				p += 2;
			} else if (*p == '\n' || *p == '\0') {
				return -EINVAL;
			} else {
				size_t k = utf8_len((const unsigned char *)p);
				if (!k)
					return -EINVAL;
				p += k;
			}
		}
		x->vlen = (size_t)(p - x->val);
		p++;
		if (*p == ',' && p[1] != '\0')
			p++;
		else if (*p != '\0')
			return -EINVAL;
	}
	qsort(l, n, sizeof(l[0]), label_cmp);
	for (size_t i = 1; i < n; i++)
		if (!label_cmp(&l[i - 1], &l[i]))
			return -EINVAL;

	buf_t b;
	buf_init(&b, ctx, 64);
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_add(&b, ",", 1);
		buf_add(&b, l[i].name, l[i].nlen);
		buf_add(&b, "=\"", 2);
		buf_add(&b, l[i].val, l[i].vlen);
		buf_add(&b, "\"", 1);
	}
	if (b.oom)
		return -ENOMEM;
	*out = b.s;
	return 0;
}

char *gh_metrics_labels(void *ctx, ...)
{
	buf_t b;
	va_list ap;
	const char *name;
	bool first = true;

	buf_init(&b, ctx, 64);
	va_start(ap, ctx);
	while ((name = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);
		if (!v) {
			b.oom = true;
			break;
		}
		if (!first)
			buf_add(&b, ",", 1);
		first = false;
		buf_puts(&b, name);
		buf_add(&b, "=\"", 2);
		for (; *v; v++) {
			if (*v == '\\')
				buf_add(&b, "\\\\", 2);
			else if (*v == '"')
				buf_add(&b, "\\\"", 2);
			else if (*v == '\n')
				buf_add(&b, "\\n", 2);
			else
				buf_add(&b, v, 1);
		}
		buf_add(&b, "\"", 1);
	}
	va_end(ap);
	if (b.oom) {
		talloc_free(b.s);
		return NULL;
	}
	return b.s;
}

/* ---- registry ---- */

static int metrics_destroy(gh_metrics_t *m)
{
	pthread_mutex_destroy(&m->lock);
	return 0;
}

gh_metrics_t *gh_metrics_new(void *ctx)
{
	gh_metrics_t *m = talloc_zero(ctx, gh_metrics_t);
	if (!m)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL)) {
		talloc_free(m);
		return NULL;
	}
	m->tail = &m->families;
	talloc_set_destructor(m, metrics_destroy);
	return m;
}

static bool is_suffixed(const char *name, const char *base)
{
	static const char *const sfx[] = {"_bucket", "_sum", "_count"};
	size_t n = strlen(base);
	if (strncmp(name, base, n))
		return false;
	for (size_t i = 0; i < 3; i++)
		if (!strcmp(name + n, sfx[i]))
			return true;
	return false;
}

/* Find or create the series name{labels} of the given type; fn != NULL asks for a new gauge fn
 * series. Caller holds the lock. Returns 0 with *out set, -EINVAL, -EEXIST or -ENOMEM. */
static int series_get(gh_metrics_t *m, const char *name, const char *help, const char *labels,
                      fam_type_t type, double (*fn)(void *), void *ud, series_t **out)
{
	family_t *f;
	series_t *s;
	char *canon = NULL;
	int rc;

	if (!valid_metric_name(name))
		return -EINVAL;
	rc = labels_canon(m, labels, type == FAM_HISTOGRAM, &canon);
	if (rc < 0)
		return rc;
	for (f = m->families; f; f = f->next) {
		if (!strcmp(f->name, name))
			break;
		/* h_count next to histogram h (or the reverse) would render as one name twice */
		if ((f->type == FAM_HISTOGRAM && is_suffixed(name, f->name)) ||
		    (type == FAM_HISTOGRAM && is_suffixed(f->name, name))) {
			rc = -EINVAL;
			goto out;
		}
	}
	if (f && f->type != type) {
		rc = -EINVAL;
		goto out;
	}
	if (f) {
		for (s = f->series; s; s = s->next)
			if (!strcmp(s->labels, canon))
				break;
		if (s) {
			if (fn || s->fn)
				rc = -EEXIST;
			else
				*out = s;
			goto out;
		}
	}

	bool new_family = !f;
	if (new_family) {
		f = talloc_zero(m, family_t);
		if (!f || !(f->name = talloc_strdup(f, name)) ||
		    !(f->help = talloc_strdup(f, help ? help : "")))
			goto oom;
		f->type = type;
		f->series_tail = &f->series;
	}
	s = talloc_zero(f, series_t);
	if (!s)
		goto oom;
	s->labels = talloc_steal(s, canon);
	canon = NULL;
	s->fn = fn;
	s->ud = ud;
	if (!fn) {
		size_t size = type == FAM_COUNTER ? sizeof(gh_counter_t)
		              : type == FAM_GAUGE ? sizeof(gh_gauge_t)
		                                  : sizeof(gh_histogram_t);
		/* all-zero is a valid empty counter, gauge and gh_hist_t */
		s->metric = talloc_zero_size(s, size);
		if (!s->metric)
			goto oom;
	}
	*f->series_tail = s;
	f->series_tail = &s->next;
	if (new_family) {
		*m->tail = f;
		m->tail = &f->next;
	}
	*out = s;
	return 0;
oom:
	if (new_family)
		talloc_free(f);
	else
		talloc_free(s);
	rc = -ENOMEM;
out:
	talloc_free(canon);
	return rc;
}

static void *register_metric(gh_metrics_t *m, const char *name, const char *help,
                             const char *labels, fam_type_t type)
{
	series_t *s = NULL;
	if (!m)
		return NULL;
	pthread_mutex_lock(&m->lock);
	int rc = series_get(m, name, help, labels, type, NULL, NULL, &s);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		gh_log(GH_LOG_ERROR, "metric registration failed", "name", name, "type",
		       fam_type_names[type], "labels", labels, "error", strerror(-rc), NULL);
		return NULL;
	}
	return s->metric;
}

gh_counter_t *gh_metrics_counter(gh_metrics_t *m, const char *name, const char *help,
                                 const char *labels)
{
	return register_metric(m, name, help, labels, FAM_COUNTER);
}

gh_gauge_t *gh_metrics_gauge(gh_metrics_t *m, const char *name, const char *help,
                             const char *labels)
{
	return register_metric(m, name, help, labels, FAM_GAUGE);
}

gh_histogram_t *gh_metrics_histogram(gh_metrics_t *m, const char *name, const char *help,
                                     const char *labels)
{
	return register_metric(m, name, help, labels, FAM_HISTOGRAM);
}

int gh_metrics_gauge_fn(gh_metrics_t *m, const char *name, const char *help, const char *labels,
                        double (*fn)(void *ud), void *ud)
{
	series_t *s;
	if (!m || !fn)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	int rc = series_get(m, name, help, labels, FAM_GAUGE, fn, ud, &s);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		gh_log(GH_LOG_ERROR, "metric registration failed", "name", name, "type", "gauge",
		       "labels", labels, "error", strerror(-rc), NULL);
	return rc;
}

/* ---- updates: lock-free, NULL-tolerant ---- */

void gh_counter_add(gh_counter_t *c, uint64_t n)
{
	if (c)
		atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t gh_counter_value(const gh_counter_t *c)
{
	return c ? atomic_load_explicit(&c->v, memory_order_relaxed) : 0;
}

void gh_gauge_set(gh_gauge_t *g, int64_t v)
{
	if (g)
		atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void gh_gauge_add(gh_gauge_t *g, int64_t delta)
{
	if (g)
		atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

int64_t gh_gauge_value(const gh_gauge_t *g)
{
	return g ? atomic_load_explicit(&g->v, memory_order_relaxed) : 0;
}

void gh_histogram_observe_ns(gh_histogram_t *h, int64_t ns)
{
	if (h)
		gh_hist_record(&h->h, ns);
}

int64_t gh_histogram_quantile_ns(const gh_histogram_t *h, double q)
{
	return h ? gh_hist_quantile(&h->h, q) : 0;
}

uint64_t gh_histogram_count(const gh_histogram_t *h) { return h ? gh_hist_count(&h->h) : 0; }

/* ---- exposition ---- */

/* A sample value as Prometheus reads it: NaN, +Inf, -Inf, integers without exponent, otherwise
 * the shortest of %.15g / %.17g that reads back exactly. */
static void fmt_double(char *out, size_t n, double v)
{
	if (isnan(v))
		snprintf(out, n, "NaN");
	else if (isinf(v))
		snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(out, n, "%.0f", v);
	else {
		snprintf(out, n, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, n, "%.17g", v);
	}
}

/* name{labels} or name{labels,extra} or name{extra} or name, then a space. */
static void put_series(buf_t *b, const char *name, const char *sfx, const char *labels,
                       const char *extra)
{
	buf_puts(b, name);
	buf_puts(b, sfx);
	if (*labels || extra) {
		buf_add(b, "{", 1);
		buf_puts(b, labels);
		if (*labels && extra)
			buf_add(b, ",", 1);
		if (extra)
			buf_puts(b, extra);
		buf_add(b, "}", 1);
	}
	buf_add(b, " ", 1);
}

static void render_histogram(buf_t *b, const family_t *f, const series_t *s, uint64_t *snap)
{
	const gh_hist_t *h = &((const gh_histogram_t *)s->metric)->h;
	char num[40], le[32];
	uint64_t cum = 0;
	int i = 0;

	/* One snapshot serves every bucket and _count, so the cumulative series is monotone and
	 * +Inf equals _count even while other threads record. */
	for (int k = 0; k < GH_HIST_BUCKETS; k++)
		snap[k] = atomic_load_explicit(&h->counts[k], memory_order_relaxed);
	/* exposed bucket e covers the hist buckets up to the one holding its bound */
	for (size_t e = 0; e < N_EXP_BUCKETS; e++) {
		for (int last = gh_hist_bucket(exp_buckets[e].ns); i <= last; i++)
			cum += snap[i];
		snprintf(le, sizeof(le), "le=\"%s\"", exp_buckets[e].le);
		put_series(b, f->name, "_bucket", s->labels, le);
		buf_printf(b, "%" PRIu64 "\n", cum);
	}
	for (; i < GH_HIST_BUCKETS; i++)
		cum += snap[i];
	put_series(b, f->name, "_bucket", s->labels, "le=\"+Inf\"");
	buf_printf(b, "%" PRIu64 "\n", cum);
	fmt_double(num, sizeof(num), (double)gh_hist_sum(h) / 1e9);
	put_series(b, f->name, "_sum", s->labels, NULL);
	buf_printf(b, "%s\n", num);
	put_series(b, f->name, "_count", s->labels, NULL);
	buf_printf(b, "%" PRIu64 "\n", cum);
}

int gh_metrics_render(gh_metrics_t *m, void *ctx, char **out, size_t *len)
{
	buf_t b;
	uint64_t *snap = NULL;
	char num[40];

	buf_init(&b, ctx, 4096);
	pthread_mutex_lock(&m->lock);
	for (const family_t *f = m->families; f; f = f->next) {
		buf_printf(&b, "# HELP %s", f->name);
		if (*f->help)
			buf_add(&b, " ", 1);
		for (const char *p = f->help; *p; p++) {
			if (*p == '\\')
				buf_add(&b, "\\\\", 2);
			else if (*p == '\n')
				buf_add(&b, "\\n", 2);
			else
				buf_add(&b, p, 1);
		}
		buf_printf(&b, "\n# TYPE %s %s\n", f->name, fam_type_names[f->type]);
		for (const series_t *s = f->series; s; s = s->next) {
			switch (f->type) {
			case FAM_COUNTER:
				put_series(&b, f->name, "", s->labels, NULL);
				buf_printf(&b, "%" PRIu64 "\n", gh_counter_value(s->metric));
				break;
			case FAM_GAUGE:
				put_series(&b, f->name, "", s->labels, NULL);
				if (s->fn) {
					fmt_double(num, sizeof(num), s->fn(s->ud));
					buf_printf(&b, "%s\n", num);
				} else {
					buf_printf(&b, "%" PRId64 "\n", gh_gauge_value(s->metric));
				}
				break;
			case FAM_HISTOGRAM:
				if (!snap)
					snap = talloc_array(ctx, uint64_t, GH_HIST_BUCKETS);
				if (!snap) {
					b.oom = true;
					break;
				}
				render_histogram(&b, f, s, snap);
				break;
			}
		}
	}
	pthread_mutex_unlock(&m->lock);
	talloc_free(snap);
	if (b.oom) {
		talloc_free(b.s);
		return -ENOMEM;
	}
	*out = b.s;
	if (len)
		*len = b.len;
	return 0;
}
