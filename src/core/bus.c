/* bus: the public API of bus.h, option defaults, subject rules and the handler outcome policy
 * shared by both backends (ack / nak with backoff / dead-letter / leave). */
#include "bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "bus_impl.h"
#include "log.h"
#include "uuid.h"

int64_t gh__bus_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gh_bus_subject_valid(const char *s)
{
	if (!s || !*s)
		return 0;
	size_t toklen = 0;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (toklen == 0)
				return 0;
			if (*p == '\0')
				return 1;
			toklen = 0;
			continue;
		}
		if (*p == '*' || *p == '>' || *p <= ' ' || *p == 0x7f)
			return 0;
		toklen++;
	}
}

/* A filter is valid when its tokens are non-empty, wildcards stand alone in their token and
 * '>' is last. */
static int filter_valid(const char *f)
{
	if (!f || !*f)
		return 0;
	const char *tok = f;
	for (const char *p = f;; p++) {
		if (*p != '.' && *p != '\0') {
			if (*p <= ' ' || *p == 0x7f)
				return 0;
			continue;
		}
		size_t len = (size_t)(p - tok);
		if (len == 0)
			return 0;
		if (memchr(tok, '*', len) || memchr(tok, '>', len)) {
			if (len != 1)
				return 0;
			if (*tok == '>' && *p != '\0')
				return 0;
		}
		if (*p == '\0')
			return 1;
		tok = p + 1;
	}
}

int gh_bus_subject_match(const char *filter, const char *subject)
{
	const char *f = filter, *s = subject;
	if (!f || !s)
		return 0;
	for (;;) {
		const char *fe = strchr(f, '.'), *se = strchr(s, '.');
		size_t fl = fe ? (size_t)(fe - f) : strlen(f);
		size_t sl = se ? (size_t)(se - s) : strlen(s);
		if (fl == 1 && *f == '>')
			return sl > 0;
		if (!(fl == 1 && *f == '*') && (fl != sl || memcmp(f, s, fl) != 0))
			return 0;
		if (!fe || !se)
			return !fe && !se;
		f = fe + 1;
		s = se + 1;
	}
}

const char *gh_bus_msg_header(const gh_bus_msg_t *msg, const char *key)
{
	for (size_t i = 0; msg && key && i < msg->n_headers; i++)
		if (msg->headers[i].key && strcmp(msg->headers[i].key, key) == 0)
			return msg->headers[i].value;
	return NULL;
}

static int durable_valid(const char *d)
{
	if (!d || !*d || strlen(d) > 200)
		return 0;
	for (const char *p = d; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

/* 1 when some subject matches both filters. */
static int filters_overlap(const char *a, const char *b)
{
	for (;;) {
		const char *ae = strchr(a, '.'), *be = strchr(b, '.');
		size_t al = ae ? (size_t)(ae - a) : strlen(a);
		size_t bl = be ? (size_t)(be - b) : strlen(b);
		if ((al == 1 && *a == '>') || (bl == 1 && *b == '>'))
			return 1;
		if (!(al == 1 && *a == '*') && !(bl == 1 && *b == '*') &&
		    (al != bl || memcmp(a, b, al) != 0))
			return 0;
		if (!ae || !be)
			return !ae && !be;
		a = ae + 1;
		b = be + 1;
	}
}

/* 1 when every subject matching filter f also matches filter s. */
static int filter_within(const char *f, const char *s)
{
	for (;;) {
		const char *fe = strchr(f, '.'), *se = strchr(s, '.');
		size_t fl = fe ? (size_t)(fe - f) : strlen(f);
		size_t sl = se ? (size_t)(se - s) : strlen(s);
		if (sl == 1 && *s == '>')
			return 1;
		if (fl == 1 && *f == '>')
			return 0;
		if (fl == 1 && *f == '*') {
			if (!(sl == 1 && *s == '*'))
				return 0;
		} else if (!(sl == 1 && *s == '*') && (fl != sl || memcmp(f, s, fl) != 0)) {
			return 0;
		}
		if (!fe || !se)
			return !fe && !se;
		f = fe + 1;
		s = se + 1;
	}
}

int gh__bus_in_stream(const gh_bus_t *bus, const char *filter)
{
	for (size_t i = 0; i < bus->cfg.n_subjects; i++)
		if (filter_within(filter, bus->cfg.subjects[i]))
			return 1;
	return 0;
}

static int cfg_init(gh_bus_t *bus, const gh_bus_opts_t *o)
{
	static const gh_bus_opts_t zero;
	static const char *const default_subjects[] = {"*.*.*"};
	gh__bus_cfg_t *c = &bus->cfg;
	if (!o)
		o = &zero;
	c->stream = talloc_strdup(bus, o->stream ? o->stream : "GHASI");
	c->dlq_prefix = talloc_strdup(bus, o->dlq_prefix ? o->dlq_prefix : "dlq");
	c->name = o->name ? talloc_strdup(bus, o->name) : NULL;
	if (!c->stream || !c->dlq_prefix || (o->name && !c->name))
		return -ENOMEM;
	if (!gh_bus_subject_valid(c->dlq_prefix) || !durable_valid(c->stream))
		return -EINVAL;
	const char *const *subj = o->n_subjects ? o->subjects : default_subjects;
	size_t n = o->n_subjects ? o->n_subjects : 1;
	c->subjects = talloc_array(bus, char *, 2 * n);
	if (!c->subjects)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!filter_valid(subj[i]))
			return -EINVAL;
		c->subjects[c->n_subjects++] = talloc_strdup(c->subjects, subj[i]);
	}
	/* The stream must also hold the dead letters "<dlq_prefix>.<subject>": add
	 * "<dlq_prefix>.<filter>" for each filter, unless a configured filter already overlaps it
	 * (JetStream refuses overlapping subjects within a stream). */
	for (size_t i = 0; i < n; i++) {
		char *d = talloc_asprintf(c->subjects, "%s.%s", c->dlq_prefix, subj[i]);
		if (!d)
			return -ENOMEM;
		int overlaps = 0;
		for (size_t j = 0; j < c->n_subjects && !overlaps; j++)
			overlaps = filters_overlap(d, c->subjects[j]);
		if (!overlaps)
			c->subjects[c->n_subjects++] = d;
	}
	c->duplicate_window_ms = o->duplicate_window_ms > 0 ? o->duplicate_window_ms : 120000;
	c->max_age_ms = o->max_age_ms > 0 ? o->max_age_ms : 0;
	c->max_msgs = o->max_msgs > 0 ? o->max_msgs : 0;
	c->memory_storage = o->memory_storage;
	c->max_deliver = o->max_deliver > 0 ? o->max_deliver : 5;
	c->ack_wait_ms = o->ack_wait_ms > 0 ? o->ack_wait_ms : 30000;
	c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 500;
	c->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000;
	c->publish_timeout_ms = o->publish_timeout_ms > 0 ? o->publish_timeout_ms : 5000;
	c->clock = o->clock ? o->clock : gh_clock_real();
	return 0;
}

static int bus_destructor(gh_bus_t *bus)
{
	pthread_mutex_lock(&bus->lock);
	bus->closing = 1;
	pthread_mutex_unlock(&bus->lock);
	while (bus->subs)
		gh_bus_unsubscribe(bus->subs);
	if (bus->ops && bus->be)
		bus->ops->close(bus);
	pthread_mutex_destroy(&bus->lock);
	return 0;
}

int gh_bus_open(void *ctx, const char *url, const gh_bus_opts_t *opts, gh_bus_t **out)
{
	const gh__bus_ops_t *ops;
	if (!url || !out)
		return -EINVAL;
	if (strncmp(url, "inproc://", 9) == 0)
		ops = &gh__bus_inproc_ops;
	else if (strncmp(url, "nats://", 7) == 0)
		ops = &gh__bus_nats_ops;
	else
		return -EINVAL;
	gh_bus_t *bus = talloc_zero(ctx, gh_bus_t);
	if (!bus)
		return -ENOMEM;
	pthread_mutex_init(&bus->lock, NULL);
	talloc_set_destructor(bus, bus_destructor);
	int rc = cfg_init(bus, opts);
	if (rc < 0)
		goto out;
	bus->ops = ops;
	rc = ops->open(bus, url);
out:
	if (rc < 0) {
		talloc_free(bus);
		return rc;
	}
	*out = bus;
	return 0;
}

void gh_bus_close(gh_bus_t *bus) { talloc_free(bus); }

const char *gh_bus_backend(const gh_bus_t *bus) { return bus ? bus->ops->name : NULL; }

int gh_bus_publish(gh_bus_t *bus, const char *subject, const char *msg_id, const void *data,
                   size_t len, const gh_bus_hdr_t *headers, size_t n_headers)
{
	if (!bus || !gh_bus_subject_valid(subject) || (len && !data) || (n_headers && !headers))
		return -EINVAL;
	gh_bus_msg_t m = {.subject = subject,
	                  .msg_id = msg_id && *msg_id ? msg_id : NULL,
	                  .data = data,
	                  .len = len,
	                  .headers = headers,
	                  .n_headers = n_headers};
	return bus->ops->publish(bus, &m);
}

int gh_bus_publish_batch(gh_bus_t *bus, const gh_bus_msg_t *msgs, size_t n, size_t *n_acked)
{
	size_t dummy;
	if (!n_acked)
		n_acked = &dummy;
	*n_acked = 0;
	if (!bus || (n && !msgs))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!gh_bus_subject_valid(msgs[i].subject) || (msgs[i].len && !msgs[i].data) ||
		    (msgs[i].n_headers && !msgs[i].headers))
			return -EINVAL;
	if (n == 0)
		return 0;
	return bus->ops->publish_batch(bus, msgs, n, n_acked);
}

static void *sub_thread(void *arg)
{
	gh_bus_sub_t *sub = arg;
	sub->bus->ops->sub_run(sub);
	return NULL;
}

static int sub_destructor(gh_bus_sub_t *sub)
{
	gh_bus_t *bus = sub->bus;
	atomic_store(&sub->stop, 1);
	if (sub->started) {
		bus->ops->sub_wake(sub);
		pthread_join(sub->thread, NULL);
	}
	if (sub->be)
		bus->ops->sub_free(sub);
	return 0;
}

int gh_bus_subscribe(gh_bus_t *bus, const char *subject_filter, const char *durable,
                     gh_bus_handler_t handler, void *ud, const gh_bus_sub_opts_t *opts,
                     gh_bus_sub_t **out)
{
	static const gh_bus_sub_opts_t zero;
	if (!bus || !filter_valid(subject_filter) || !durable_valid(durable) || !handler || !out)
		return -EINVAL;
	/* As JetStream requires: a consumer sees a subset of its stream. */
	if (!gh__bus_in_stream(bus, subject_filter))
		return -EINVAL;
	if (!opts)
		opts = &zero;
	int rc = 0;
	pthread_mutex_lock(&bus->lock);
	if (bus->closing) {
		pthread_mutex_unlock(&bus->lock);
		return -EBUSY;
	}
	gh_bus_sub_t *sub = talloc_zero(bus, gh_bus_sub_t);
	if (sub) {
		sub->filter = talloc_strdup(sub, subject_filter);
		if (opts->per_process) {
			/* Unique per subscription, so no other process (or subscription) can
			 * bind to it; the prefix only tells people what it is. */
			char id[37];
			gh_uuid_v4(id);
			sub->durable = talloc_asprintf(sub, "%s-%s", durable, id);
		} else {
			sub->durable = talloc_strdup(sub, durable);
		}
	}
	pthread_mutex_unlock(&bus->lock);
	if (!sub || !sub->filter || !sub->durable) {
		rc = -ENOMEM;
		goto out;
	}
	sub->bus = bus;
	sub->handler = handler;
	sub->ud = ud;
	sub->max_deliver = opts->max_deliver > 0 ? opts->max_deliver : bus->cfg.max_deliver;
	sub->ack_wait_ms = opts->ack_wait_ms > 0 ? opts->ack_wait_ms : bus->cfg.ack_wait_ms;
	sub->backoff_ms = opts->backoff_ms > 0 ? opts->backoff_ms : bus->cfg.backoff_ms;
	sub->backoff_max_ms =
	    opts->backoff_max_ms > 0 ? opts->backoff_max_ms : bus->cfg.backoff_max_ms;
	sub->batch = opts->batch > 0 ? opts->batch : 64;
	sub->per_process = opts->per_process != 0;
	sub->inactive_ms = opts->inactive_ms > 0 ? opts->inactive_ms : 30000;
	talloc_set_destructor(sub, sub_destructor);
	rc = bus->ops->sub_start(sub);
	if (rc < 0)
		goto out;
	if (pthread_create(&sub->thread, NULL, sub_thread, sub) != 0) {
		rc = -EAGAIN;
		goto out;
	}
	pthread_setname_np(sub->thread, "gh-consumer");
	sub->started = 1;
	pthread_mutex_lock(&bus->lock);
	sub->next = bus->subs;
	bus->subs = sub;
	pthread_mutex_unlock(&bus->lock);
	*out = sub;
out:
	if (rc < 0 && sub) {
		pthread_mutex_lock(&bus->lock);
		talloc_free(sub);
		pthread_mutex_unlock(&bus->lock);
	}
	return rc;
}

void gh_bus_unsubscribe(gh_bus_sub_t *sub)
{
	if (!sub)
		return;
	gh_bus_t *bus = sub->bus;
	pthread_mutex_lock(&bus->lock);
	for (gh_bus_sub_t **pp = &bus->subs; *pp; pp = &(*pp)->next) {
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	}
	pthread_mutex_unlock(&bus->lock);
	/* The destructor joins the worker; the bus lock is not held so that the worker can
	 * finish its handler, which may itself publish. */
	talloc_set_destructor(sub, NULL);
	sub_destructor(sub);
	pthread_mutex_lock(&bus->lock);
	talloc_free(sub);
	pthread_mutex_unlock(&bus->lock);
}

const char *gh_bus_sub_name(const gh_bus_sub_t *sub) { return sub ? sub->durable : NULL; }

int gh_bus_ready(void *ud, char *why, size_t n)
{
	gh_bus_t *bus = ud;
	if (!bus) {
		if (why && n)
			snprintf(why, n, "bus not open");
		return -EIO;
	}
	return bus->ops->ready(bus, why, n);
}

gh__bus_outcome_t gh__bus_dispatch(gh_bus_sub_t *sub, const gh_bus_msg_t *msg, char *reason,
                                   size_t reason_len, int64_t *delay_ms)
{
	reason[0] = '\0';
	*delay_ms = 0;
	if (msg->delivery > (uint32_t)sub->max_deliver) {
		snprintf(reason, reason_len,
		         "delivered %" PRIu32 " times without acknowledgement (max_deliver %d)",
		         msg->delivery, sub->max_deliver);
		goto dlq;
	}
	char why[512] = "";
	int rc = sub->handler(msg, sub->ud, why, sizeof(why));
	why[sizeof(why) - 1] = '\0';
	if (rc == 0)
		return GH__BUS_ACK;
	if (rc == GH_BUS_ABANDON)
		return GH__BUS_LEAVE;
	if (rc == GH_BUS_REJECT) {
		snprintf(reason, reason_len, "rejected: %s", why[0] ? why : "invalid message");
		goto dlq;
	}
	if (!why[0])
		snprintf(why, sizeof(why), "%s", rc < 0 ? strerror(-rc) : "unknown handler result");
	if (msg->delivery >= (uint32_t)sub->max_deliver) {
		snprintf(reason, reason_len, "failed %" PRIu32 " deliveries (max_deliver %d): %s",
		         msg->delivery, sub->max_deliver, why);
		goto dlq;
	}
	int64_t d = sub->backoff_ms;
	for (uint32_t i = 1; i < msg->delivery && d < sub->backoff_max_ms; i++)
		d *= 2;
	*delay_ms = d < sub->backoff_max_ms ? d : sub->backoff_max_ms;
	char dl[24], dv[16];
	snprintf(dl, sizeof(dl), "%" PRId64, *delay_ms);
	snprintf(dv, sizeof(dv), "%" PRIu32, msg->delivery);
	gh_log(GH_LOG_INFO, "bus handler failed, redelivering", "subject", msg->subject, "msg_id",
	       msg->msg_id, "durable", sub->durable, "delivery", dv, "delay_ms", dl, "reason", why,
	       NULL);
	snprintf(reason, reason_len, "%s", why);
	return GH__BUS_NAK;
dlq:
	gh_log(GH_LOG_WARN, "bus message dead-lettered", "subject", msg->subject, "msg_id",
	       msg->msg_id, "durable", sub->durable, "reason", reason, NULL);
	return GH__BUS_DLQ;
}

/* Headers of the dead-letter copy of msg; a talloc array of *n entries, child of ctx, or NULL. */
static gh_bus_hdr_t *dlq_headers(void *ctx, const gh_bus_msg_t *msg, const char *reason, size_t *n)
{
	gh_bus_hdr_t *h = talloc_array(ctx, gh_bus_hdr_t, msg->n_headers + 4);
	char *deliveries = talloc_asprintf(ctx, "%" PRIu32, msg->delivery);
	if (!h || !deliveries)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < msg->n_headers; i++) {
		/* A dead-letter of a dead-letter keeps only the latest Gh-Dlq-* set, and the
		 * JetStream de-duplication header is re-derived by the publish itself. */
		if (strncmp(msg->headers[i].key, "Gh-Dlq-", 7) == 0 ||
		    strcmp(msg->headers[i].key, "Nats-Msg-Id") == 0)
			continue;
		h[k++] = msg->headers[i];
	}
	h[k++] = (gh_bus_hdr_t){GH_BUS_HDR_DLQ_REASON, reason};
	h[k++] = (gh_bus_hdr_t){GH_BUS_HDR_DLQ_SUBJECT, msg->subject};
	h[k++] = (gh_bus_hdr_t){GH_BUS_HDR_DLQ_MSG_ID, msg->msg_id ? msg->msg_id : ""};
	h[k++] = (gh_bus_hdr_t){GH_BUS_HDR_DLQ_DELIVERIES, deliveries};
	*n = k;
	return h;
}

int gh__bus_dead_letter(gh_bus_sub_t *sub, const gh_bus_msg_t *msg, const char *reason)
{
	void *tmp = talloc_new(NULL);
	size_t nh = 0;
	gh_bus_hdr_t *h = tmp ? dlq_headers(tmp, msg, reason, &nh) : NULL;
	char *subj =
	    tmp ? talloc_asprintf(tmp, "%s.%s", sub->bus->cfg.dlq_prefix, msg->subject) : NULL;
	char *id = tmp && msg->msg_id ? talloc_asprintf(tmp, "dlq:%s", msg->msg_id) : NULL;
	int rc = -ENOMEM;
	if (h && subj && (id || !msg->msg_id))
		rc = gh_bus_publish(sub->bus, subj, id, msg->data, msg->len, h, nh);
	if (rc < 0)
		gh_log(GH_LOG_ERROR, "bus dead-letter publish failed", "subject", msg->subject,
		       NULL);
	talloc_free(tmp);
	return rc;
}
