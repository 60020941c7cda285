/* bus_inproc: the in-process backend of bus.h, with JetStream's semantics in memory.
 *
 * One log of messages (sequence numbers from 1, trimmed by max_msgs and max_age), a
 * de-duplication table of msg ids seen within the window, and durable consumers that keep their
 * position and their delivered-but-unacknowledged messages for as long as the bus lives. A
 * per-process consumer is the same structure kept out of the durables list: it starts at the
 * end of the log and is freed when its subscription goes. One
 * mutex guards all of it; workers wait on one condition variable (CLOCK_MONOTONIC) that
 * publishes, naks and stops broadcast. Handlers run without the lock held, on a stored message
 * kept alive by a reference count. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "bus_impl.h"
#include "log.h"

#define IP_DEFAULT_MAX_MSGS 1000000

typedef struct ip_msg_s {
	uint64_t seq;
	int refs; /* the log holds one; each worker handling it holds one */
	int64_t stored_ms;
	gh_bus_msg_t m; /* strings, data and headers are talloc children of this object */
} ip_msg_t;

typedef struct ip_dedup_s {
	struct ip_dedup_s *hnext; /* bucket chain */
	struct ip_dedup_s *qnext; /* expiry queue, oldest first */
	int64_t expires_ms;
	uint64_t hash;
	char id[];
} ip_dedup_t;

typedef struct ip_pending_s {
	uint64_t seq;
	uint32_t deliveries;
	int64_t due_ms; /* eligible for redelivery from this monotonic time */
} ip_pending_t;

typedef struct ip_durable_s {
	struct ip_durable_s *next;
	char *name;
	char *filter;
	uint64_t next_seq;  /* first sequence not yet considered */
	ip_pending_t *pend; /* delivered, not acknowledged; sorted by seq */
	size_t n_pend, cap_pend;
} ip_durable_t;

typedef struct ip_bus_s {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	ip_msg_t **log; /* ring buffer: log[(head + i) % cap] has seq first_seq + i */
	size_t head, count, cap;
	uint64_t first_seq, last_seq;
	ip_dedup_t **buckets;
	size_t n_buckets, n_dedup;
	ip_dedup_t *q_head, *q_tail;
	ip_durable_t *durables;
	int64_t max_msgs;
} ip_bus_t;

static void msg_unref(ip_msg_t *m)
{
	if (--m->refs == 0)
		talloc_free(m);
}

static ip_msg_t *log_get(ip_bus_t *ip, uint64_t seq)
{
	if (seq < ip->first_seq || seq > ip->last_seq || ip->count == 0)
		return NULL;
	return ip->log[(ip->head + (seq - ip->first_seq)) % ip->cap];
}

static void log_pop(ip_bus_t *ip)
{
	msg_unref(ip->log[ip->head]);
	ip->log[ip->head] = NULL;
	ip->head = (ip->head + 1) % ip->cap;
	ip->count--;
	ip->first_seq++;
}

static int log_push(ip_bus_t *ip, ip_msg_t *m)
{
	if (ip->count == ip->cap) {
		size_t ncap = ip->cap ? ip->cap * 2 : 1024;
		ip_msg_t **nl = malloc(ncap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		for (size_t i = 0; i < ip->count; i++)
			nl[i] = ip->log[(ip->head + i) % ip->cap];
		free(ip->log);
		ip->log = nl;
		ip->head = 0;
		ip->cap = ncap;
	}
	m->seq = ++ip->last_seq;
	if (ip->count == 0)
		ip->first_seq = m->seq;
	ip->log[(ip->head + ip->count) % ip->cap] = m;
	ip->count++;
	return 0;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static void dedup_prune(ip_bus_t *ip, int64_t now)
{
	while (ip->q_head && ip->q_head->expires_ms <= now) {
		ip_dedup_t *e = ip->q_head;
		ip->q_head = e->qnext;
		if (!ip->q_head)
			ip->q_tail = NULL;
		ip_dedup_t **pp = &ip->buckets[e->hash % ip->n_buckets];
		while (*pp != e)
			pp = &(*pp)->hnext;
		*pp = e->hnext;
		ip->n_dedup--;
		free(e);
	}
}

static int dedup_seen(ip_bus_t *ip, const char *id, uint64_t h)
{
	for (ip_dedup_t *e = ip->buckets[h % ip->n_buckets]; e; e = e->hnext)
		if (e->hash == h && strcmp(e->id, id) == 0)
			return 1;
	return 0;
}

static int dedup_add(ip_bus_t *ip, const char *id, uint64_t h, int64_t expires_ms)
{
	if (ip->n_dedup >= ip->n_buckets * 2) {
		size_t nb = ip->n_buckets * 4;
		ip_dedup_t **b = calloc(nb, sizeof(*b));
		if (b) {
			for (size_t i = 0; i < ip->n_buckets; i++) {
				for (ip_dedup_t *e = ip->buckets[i], *nx; e; e = nx) {
					nx = e->hnext;
					e->hnext = b[e->hash % nb];
					b[e->hash % nb] = e;
				}
			}
			free(ip->buckets);
			ip->buckets = b;
			ip->n_buckets = nb;
		}
	}
	size_t len = strlen(id);
	ip_dedup_t *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	memcpy(e->id, id, len + 1);
	e->hash = h;
	e->expires_ms = expires_ms;
	e->qnext = NULL;
	e->hnext = ip->buckets[h % ip->n_buckets];
	ip->buckets[h % ip->n_buckets] = e;
	if (ip->q_tail)
		ip->q_tail->qnext = e;
	else
		ip->q_head = e;
	ip->q_tail = e;
	ip->n_dedup++;
	return 0;
}

/* A deep copy of msg as a stored message with one reference. */
static ip_msg_t *msg_copy(const gh_bus_msg_t *msg)
{
	ip_msg_t *m = talloc_zero(NULL, ip_msg_t);
	if (!m)
		return NULL;
	m->refs = 1;
	m->m.subject = talloc_strdup(m, msg->subject);
	m->m.msg_id = msg->msg_id ? talloc_strdup(m, msg->msg_id) : NULL;
	m->m.len = msg->len;
	m->m.data = talloc_memdup(m, msg->len ? msg->data : "", msg->len ? msg->len : 1);
	gh_bus_hdr_t *h = talloc_array(m, gh_bus_hdr_t, msg->n_headers ? msg->n_headers : 1);
	int ok = m->m.subject && (!msg->msg_id || m->m.msg_id) && m->m.data && h;
	for (size_t i = 0; ok && i < msg->n_headers; i++) {
		h[i].key = talloc_strdup(h, msg->headers[i].key ? msg->headers[i].key : "");
		h[i].value = talloc_strdup(h, msg->headers[i].value ? msg->headers[i].value : "");
		ok = h[i].key && h[i].value;
	}
	if (!ok) {
		talloc_free(m);
		return NULL;
	}
	m->m.headers = h;
	m->m.n_headers = msg->n_headers;
	return m;
}

static int ip_publish_locked(gh_bus_t *bus, ip_bus_t *ip, const gh_bus_msg_t *msg)
{
	int64_t now = gh_clock_mono_ns(bus->cfg.clock) / 1000000;
	uint64_t h = 0;
	if (!gh__bus_in_stream(bus, msg->subject))
		return -ENOENT; /* as JetStream: no stream takes it, nobody acknowledges */
	dedup_prune(ip, now);
	if (msg->msg_id) {
		h = hash_str(msg->msg_id);
		if (dedup_seen(ip, msg->msg_id, h))
			return 0;
	}
	ip_msg_t *m = msg_copy(msg);
	if (!m)
		return -ENOMEM;
	m->stored_ms = gh__bus_mono_ms();
	if (msg->msg_id && dedup_add(ip, msg->msg_id, h, now + bus->cfg.duplicate_window_ms) < 0) {
		talloc_free(m);
		return -ENOMEM;
	}
	if (log_push(ip, m) < 0) {
		talloc_free(m);
		return -ENOMEM;
	}
	while ((int64_t)ip->count > ip->max_msgs)
		log_pop(ip);
	if (bus->cfg.max_age_ms > 0) {
		int64_t oldest = m->stored_ms - bus->cfg.max_age_ms;
		while (ip->count && ip->log[ip->head]->stored_ms < oldest)
			log_pop(ip);
	}
	return 0;
}

static int ip_publish(gh_bus_t *bus, const gh_bus_msg_t *msg)
{
	ip_bus_t *ip = bus->be;
	pthread_mutex_lock(&ip->lock);
	int rc = ip_publish_locked(bus, ip, msg);
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
	return rc < 0 ? -EIO : 0;
}

static int ip_publish_batch(gh_bus_t *bus, const gh_bus_msg_t *msgs, size_t n, size_t *n_acked)
{
	ip_bus_t *ip = bus->be;
	int rc = 0;
	size_t i;
	pthread_mutex_lock(&ip->lock);
	for (i = 0; i < n; i++) {
		gh_bus_msg_t m = msgs[i];
		if (m.msg_id && !*m.msg_id)
			m.msg_id = NULL;
		if ((rc = ip_publish_locked(bus, ip, &m)) < 0)
			break;
	}
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
	*n_acked = i;
	return rc < 0 ? -EIO : 0;
}

static int ip_open(gh_bus_t *bus, const char *url)
{
	ip_bus_t *ip = talloc_zero(bus, ip_bus_t);
	if (!ip)
		return -ENOMEM;
	ip->n_buckets = 1024;
	ip->buckets = calloc(ip->n_buckets, sizeof(*ip->buckets));
	if (!ip->buckets)
		return -ENOMEM;
	ip->first_seq = 1;
	ip->max_msgs = bus->cfg.max_msgs > 0 ? bus->cfg.max_msgs : IP_DEFAULT_MAX_MSGS;
	pthread_mutex_init(&ip->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ip->cond, &ca);
	pthread_condattr_destroy(&ca);
	bus->be = ip;
	return 0;
}

static void ip_close(gh_bus_t *bus)
{
	ip_bus_t *ip = bus->be;
	while (ip->count)
		log_pop(ip);
	free(ip->log);
	while (ip->q_head) {
		ip_dedup_t *e = ip->q_head;
		ip->q_head = e->qnext;
		free(e);
	}
	free(ip->buckets);
	for (ip_durable_t *d = ip->durables, *nx; d; d = nx) {
		nx = d->next;
		free(d->pend);
		free(d->name);
		free(d->filter);
		free(d);
	}
	pthread_cond_destroy(&ip->cond);
	pthread_mutex_destroy(&ip->lock);
	talloc_free(ip);
	bus->be = NULL;
}

static int ip_sub_start(gh_bus_sub_t *sub)
{
	ip_bus_t *ip = sub->bus->be;
	int rc = 0;
	pthread_mutex_lock(&ip->lock);
	ip_durable_t *d = NULL;
	if (sub->per_process) {
		d = calloc(1, sizeof(*d));
		if (!d || !(d->filter = strdup(sub->filter))) {
			free(d);
			rc = -ENOMEM;
			goto out;
		}
		d->next_seq = ip->last_seq + 1; /* only what is published from now on */
		sub->be = d;
		goto out;
	}
	for (d = ip->durables; d; d = d->next)
		if (strcmp(d->name, sub->durable) == 0)
			break;
	if (d && strcmp(d->filter, sub->filter) != 0) {
		rc = -EEXIST;
		goto out;
	}
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d || !(d->name = strdup(sub->durable)) || !(d->filter = strdup(sub->filter))) {
			if (d)
				free(d->name);
			free(d);
			rc = -ENOMEM;
			goto out;
		}
		d->next_seq = ip->first_seq; /* deliver everything retained, as DeliverAll */
		d->next = ip->durables;
		ip->durables = d;
	}
	sub->be = d;
out:
	pthread_mutex_unlock(&ip->lock);
	return rc;
}

static ip_pending_t *pend_find(ip_durable_t *d, uint64_t seq)
{
	for (size_t i = 0; i < d->n_pend; i++)
		if (d->pend[i].seq == seq)
			return &d->pend[i];
	return NULL;
}

static void pend_remove(ip_durable_t *d, uint64_t seq)
{
	ip_pending_t *p = pend_find(d, seq);
	if (!p)
		return;
	size_t i = (size_t)(p - d->pend);
	memmove(&d->pend[i], &d->pend[i + 1], (d->n_pend - i - 1) * sizeof(*p));
	d->n_pend--;
}

/* Next message for durable d, with its pending entry updated for this delivery; or NULL and
 * *wait_until set to the earliest redelivery time (INT64_MAX when none). Lock held. */
static ip_msg_t *next_delivery(ip_bus_t *ip, ip_durable_t *d, int64_t ack_wait_ms, int64_t now,
                               uint32_t *delivery, int64_t *wait_until)
{
	*wait_until = INT64_MAX;
	for (size_t i = 0; i < d->n_pend;) {
		ip_pending_t *p = &d->pend[i];
		ip_msg_t *m = log_get(ip, p->seq);
		if (!m) { /* trimmed by retention limits */
			pend_remove(d, p->seq);
			continue;
		}
		if (p->due_ms <= now) {
			p->deliveries++;
			p->due_ms = now + ack_wait_ms;
			*delivery = p->deliveries;
			return m;
		}
		if (p->due_ms < *wait_until)
			*wait_until = p->due_ms;
		i++;
	}
	if (d->next_seq < ip->first_seq)
		d->next_seq = ip->first_seq;
	for (; d->next_seq <= ip->last_seq; d->next_seq++) {
		ip_msg_t *m = log_get(ip, d->next_seq);
		if (!gh_bus_subject_match(d->filter, m->m.subject))
			continue;
		if (d->n_pend == d->cap_pend) {
			size_t nc = d->cap_pend ? d->cap_pend * 2 : 16;
			ip_pending_t *np = realloc(d->pend, nc * sizeof(*np));
			if (!np)
				return NULL; /* retried on the next wake-up */
			d->pend = np;
			d->cap_pend = nc;
		}
		d->pend[d->n_pend++] = (ip_pending_t){m->seq, 1, now + ack_wait_ms};
		d->next_seq++;
		*delivery = 1;
		return m;
	}
	return NULL;
}

static void ip_sub_run(gh_bus_sub_t *sub)
{
	ip_bus_t *ip = sub->bus->be;
	ip_durable_t *d = sub->be;
	char reason[768];
	pthread_mutex_lock(&ip->lock);
	while (!atomic_load(&sub->stop)) {
		int64_t now = gh__bus_mono_ms(), until;
		uint32_t delivery = 0;
		ip_msg_t *m = next_delivery(ip, d, sub->ack_wait_ms, now, &delivery, &until);
		if (!m) {
			/* Wake at the next redelivery, or every second as a safety net. */
			int64_t ms = until == INT64_MAX ? now + 1000 : until;
			if (ms > now + 1000)
				ms = now + 1000;
			struct timespec ts = {.tv_sec = ms / 1000,
			                      .tv_nsec = (ms % 1000) * 1000000};
			pthread_cond_timedwait(&ip->cond, &ip->lock, &ts);
			continue;
		}
		m->refs++;
		pthread_mutex_unlock(&ip->lock);

		gh_bus_msg_t msg = m->m;
		msg.delivery = delivery;
		msg.seq = m->seq;
		int64_t delay = 0;
		gh__bus_outcome_t oc = gh__bus_dispatch(sub, &msg, reason, sizeof(reason), &delay);
		if (oc == GH__BUS_DLQ && gh__bus_dead_letter(sub, &msg, reason) < 0) {
			oc = GH__BUS_NAK;
			delay = sub->backoff_ms;
		}

		pthread_mutex_lock(&ip->lock);
		ip_pending_t *p = pend_find(d, m->seq);
		switch (oc) {
		case GH__BUS_ACK:
		case GH__BUS_DLQ: pend_remove(d, m->seq); break;
		case GH__BUS_NAK:
			if (p)
				p->due_ms = gh__bus_mono_ms() + delay;
			pthread_cond_broadcast(&ip->cond);
			break;
		case GH__BUS_LEAVE: break; /* due at delivery + ack_wait, set on delivery */
		}
		msg_unref(m);
	}
	pthread_mutex_unlock(&ip->lock);
}

static void ip_sub_wake(gh_bus_sub_t *sub)
{
	ip_bus_t *ip = sub->bus->be;
	pthread_mutex_lock(&ip->lock);
	pthread_cond_broadcast(&ip->cond);
	pthread_mutex_unlock(&ip->lock);
}

static void ip_sub_free(gh_bus_sub_t *sub)
{
	ip_durable_t *d = sub->be;
	sub->be = NULL;
	if (!sub->per_process)
		return; /* the durable stays */
	free(d->pend);
	free(d->filter);
	free(d);
}

static int ip_ready(gh_bus_t *bus, char *why, size_t n) { return 0; }

const gh__bus_ops_t gh__bus_inproc_ops = {
    .name = "inproc",
    .open = ip_open,
    .close = ip_close,
    .publish = ip_publish,
    .publish_batch = ip_publish_batch,
    .sub_start = ip_sub_start,
    .sub_run = ip_sub_run,
    .sub_wake = ip_sub_wake,
    .sub_free = ip_sub_free,
    .ready = ip_ready,
};
