/* metrics: counters, gauges and latency histograms, exposed in the Prometheus text format
 * (version 0.0.4).
 *
 * Registration (gh_metrics_counter/gauge/histogram) takes a lock and may allocate; do it at
 * start and keep the pointer. Updates are lock-free atomics and never allocate, so they are
 * safe on hot paths and from any thread; they ignore a NULL metric (registration failures are
 * logged once, where they happen). Registering the same name+labels twice returns the same
 * metric; the first help text of a family is kept.
 *
 * Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*). Labels are given pre-rendered and
 * already escaped, e.g. "route=\"/v1/numbering/validate-lease\",code=\"200\"" (NULL or "" for
 * none); gh_metrics_labels() renders them from raw values. Label syntax is checked at
 * registration: name="value" pairs separated by commas, names [a-zA-Z_][a-zA-Z0-9_]* not starting
 * with "__", no name twice, values with only the escapes \\ \" \n and no raw newline, "le" not
 * allowed on histograms. Pairs are stored sorted by name, so the order given does not matter for
 * de-duplication. */
#ifndef GH_METRICS_H
#define GH_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct gh_metrics_s gh_metrics_t;
typedef struct gh_counter_s gh_counter_t;
typedef struct gh_gauge_s gh_gauge_t;
typedef struct gh_histogram_s gh_histogram_t;

/* A registry, talloc child of ctx (freed with it). NULL when out of memory. */
gh_metrics_t *gh_metrics_new(void *ctx);

/* Return NULL on a bad name or labels, on a name already registered with another type (or one
 * that collides with a histogram's _bucket/_sum/_count series), or out of memory. */
gh_counter_t *gh_metrics_counter(gh_metrics_t *m, const char *name, const char *help,
                                 const char *labels);
gh_gauge_t *gh_metrics_gauge(gh_metrics_t *m, const char *name, const char *help,
                             const char *labels);
/* A gauge whose value is read from fn(ud) at exposition time (queue depth, outbox lag). fn runs
 * under the registry lock during gh_metrics_render: it must not register metrics. Returns 0,
 * -EINVAL (bad name or labels, type clash, NULL fn), -EEXIST (name+labels already registered)
 * or -ENOMEM. */
int gh_metrics_gauge_fn(gh_metrics_t *m, const char *name, const char *help, const char *labels,
                        double (*fn)(void *ud), void *ud);
/* Latency histogram; observations in nanoseconds, exposed in seconds with fixed buckets
 * (50us .. 10s) plus _sum and _count; quantiles come from the log-linear gh_hist_t inside.
 * Exposed buckets have the gh_hist_t's resolution (gh_hist_count_le): an observation equal to
 * a bound counts in it, and so may one less than 1.6% above it. */
gh_histogram_t *gh_metrics_histogram(gh_metrics_t *m, const char *name, const char *help,
                                     const char *labels);

void gh_counter_add(gh_counter_t *c, uint64_t n);
static inline void gh_counter_inc(gh_counter_t *c) { gh_counter_add(c, 1); }
uint64_t gh_counter_value(const gh_counter_t *c);
void gh_gauge_set(gh_gauge_t *g, int64_t v);
void gh_gauge_add(gh_gauge_t *g, int64_t delta);
int64_t gh_gauge_value(const gh_gauge_t *g);
void gh_histogram_observe_ns(gh_histogram_t *h, int64_t ns);
/* Value at quantile q (0..1] in ns, from the underlying log-linear histogram; 0 when empty. */
int64_t gh_histogram_quantile_ns(const gh_histogram_t *h, double q);
/* Number of observations. */
uint64_t gh_histogram_count(const gh_histogram_t *h);

/* Render a label set from raw name/value pairs, NULL-terminated:
 *   gh_metrics_labels(ctx, "route", r, "code", "200", NULL) -> route="...",code="200"
 * Values are escaped (\ -> \\, " -> \", newline -> \n). Returns a talloc string, child of ctx,
 * or NULL when out of memory or a value is NULL. Names are checked at registration. */
char *gh_metrics_labels(void *ctx, ...) __attribute__((sentinel));

/* Render the whole registry in the Prometheus text format into a new talloc string, child of
 * ctx; *len gets its length. Families appear in registration order, each with one # HELP and
 * one # TYPE line followed by all its series. Returns 0 or -ENOMEM. */
int gh_metrics_render(gh_metrics_t *m, void *ctx, char **out, size_t *len);

#endif
