/* bus_nats: the NATS JetStream backend of bus.h (nats.c 3.4, nats-server 2.9 with -js).
 *
 * One connection and one JetStream context per bus. The stream is created, or updated, on open.
 * Publishing uses JetStream publish with `Nats-Msg-Id` (the server drops duplicates inside the
 * stream's duplicate window). A batch is published asynchronously and its acknowledgements are
 * collected by an AckHandler that matches each reply to its slot in the batch.
 *
 * Subscriptions are durable pull consumers that this module creates itself (js_AddConsumer) and
 * then binds to: nats.c deletes a consumer that its own subscribe call created as soon as the
 * subscription is unsubscribed, which would make the durable not durable. Redelivery is bounded
 * here, not by the server's MaxDeliver (left unlimited), so that a message whose consumer keeps
 * dying still ends in the dead-letter subject instead of silently stopping.
 *
 * A per-process subscription is a named ephemeral pull consumer (DeliverPolicy New, memory
 * storage, InactiveThreshold): deleted here on unsubscribe, and by the server when the process
 * stops pulling for inactive_ms (crash, partition). */
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "bus_impl.h"
#include "log.h"

#define NB_MAX_PENDING 8192
#define NS_PER_MS      1000000LL

typedef struct nb_bus_s {
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	pthread_mutex_t batch_lock; /* one batch in flight per bus */
	pthread_mutex_t ack_lock;   /* guards the slots below against the AckHandler */
	natsMsg **slot_msg;         /* slot i: the message in flight, NULL once answered */
	int *slot_res;              /* 0 pending, 1 acknowledged, negative errno */
	size_t n_slots, cap_slots, hint;
} nb_bus_t;

typedef struct nb_sub_s {
	natsSubscription *s;
} nb_sub_t;

static int status_errno(natsStatus s)
{
	switch (s) {
	case NATS_OK: return 0;
	case NATS_TIMEOUT: return -ETIMEDOUT;
	case NATS_NO_MEMORY: return -ENOMEM;
	default: return -EIO;
	}
}

static void log_nats(const char *msg, natsStatus s, jsErrCode jerr)
{
	char code[16];
	snprintf(code, sizeof(code), "%d", (int)jerr);
	gh_log(GH_LOG_ERROR, msg, "status", natsStatus_GetText(s), "js_err", code, "detail",
	       nats_GetLastError(NULL), NULL);
}

static void batch_ack_cb(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	nb_bus_t *nb = closure;
	pthread_mutex_lock(&nb->ack_lock);
	/* Replies come back almost in order: search from just after the last match. */
	for (size_t k = 0; k < nb->n_slots; k++) {
		size_t j = (nb->hint + k) % nb->n_slots;
		if (nb->slot_msg[j] != msg)
			continue;
		nb->slot_msg[j] = NULL;
		if (pa)
			nb->slot_res[j] = 1;
		else
			nb->slot_res[j] = status_errno(pae ? pae->Err : NATS_ERR) ?: -EIO;
		if (!pa && pae)
			gh_log(GH_LOG_WARN, "bus async publish failed", "subject",
			       natsMsg_GetSubject(msg), "error",
			       pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), NULL);
		nb->hint = j + 1;
		break;
	}
	pthread_mutex_unlock(&nb->ack_lock);
	natsMsg_Destroy(msg);
}

static int stream_ensure(gh_bus_t *bus, nb_bus_t *nb)
{
	const gh__bus_cfg_t *c = &bus->cfg;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsStreamConfig_Init(&sc);
	sc.Name = c->stream;
	sc.Subjects = (const char **)c->subjects;
	sc.SubjectsLen = (int)c->n_subjects;
	sc.Storage = c->memory_storage ? js_MemoryStorage : js_FileStorage;
	sc.Duplicates = c->duplicate_window_ms * NS_PER_MS;
	sc.MaxAge = c->max_age_ms * NS_PER_MS;
	sc.MaxMsgs = c->max_msgs > 0 ? c->max_msgs : -1;
	natsStatus s = js_AddStream(&si, nb->js, &sc, NULL, &jerr);
	if (s != NATS_OK && jerr == JSStreamNameExistErr) {
		jerr = 0;
		s = js_UpdateStream(&si, nb->js, &sc, NULL, &jerr);
	}
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		log_nats("bus stream create/update failed", s, jerr);
		return -EIO;
	}
	return 0;
}

static int nb_open(gh_bus_t *bus, const char *url)
{
	nb_bus_t *nb = talloc_zero(bus, nb_bus_t);
	if (!nb)
		return -ENOMEM;
	pthread_mutex_init(&nb->batch_lock, NULL);
	pthread_mutex_init(&nb->ack_lock, NULL);
	bus->be = nb;
	natsStatus s = natsOptions_Create(&nb->opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(nb->opts, (const char *[]){url}, 1);
	if (s == NATS_OK && bus->cfg.name)
		s = natsOptions_SetName(nb->opts, bus->cfg.name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(nb->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(nb->opts, 250);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(nb->opts, 2000);
	if (s != NATS_OK) {
		log_nats("bus nats options", s, 0);
		return s == NATS_NO_MEMORY ? -ENOMEM : -EINVAL;
	}
	s = natsConnection_Connect(&nb->nc, nb->opts);
	if (s != NATS_OK) {
		log_nats("bus nats connect failed", s, 0);
		return -ECONNREFUSED;
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = bus->cfg.publish_timeout_ms;
	jo.PublishAsync.MaxPending = NB_MAX_PENDING;
	jo.PublishAsync.StallWait = bus->cfg.publish_timeout_ms;
	jo.PublishAsync.AckHandler = batch_ack_cb;
	jo.PublishAsync.AckHandlerClosure = nb;
	s = natsConnection_JetStream(&nb->js, nb->nc, &jo);
	if (s != NATS_OK) {
		log_nats("bus jetstream context", s, 0);
		return -EIO;
	}
	return stream_ensure(bus, nb);
}

static void nb_close(gh_bus_t *bus)
{
	nb_bus_t *nb = bus->be;
	if (nb->nc)
		natsConnection_FlushTimeout(nb->nc, 1000); /* pending acks and naks */
	jsCtx_Destroy(nb->js);
	if (nb->nc)
		natsConnection_Close(nb->nc);
	natsConnection_Destroy(nb->nc);
	natsOptions_Destroy(nb->opts);
	free(nb->slot_msg);
	free(nb->slot_res);
	pthread_mutex_destroy(&nb->batch_lock);
	pthread_mutex_destroy(&nb->ack_lock);
	talloc_free(nb);
	bus->be = NULL;
}

static natsStatus msg_build(natsMsg **out, const gh_bus_msg_t *m)
{
	natsMsg *msg = NULL;
	natsStatus s = natsMsg_Create(&msg, m->subject, NULL, m->data, (int)m->len);
	for (size_t i = 0; s == NATS_OK && i < m->n_headers; i++)
		s = natsMsgHeader_Add(msg, m->headers[i].key, m->headers[i].value);
	if (s != NATS_OK) {
		natsMsg_Destroy(msg);
		return s;
	}
	*out = msg;
	return NATS_OK;
}

static int nb_publish(gh_bus_t *bus, const gh_bus_msg_t *m)
{
	nb_bus_t *nb = bus->be;
	natsMsg *msg = NULL;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	if (m->len > INT32_MAX)
		return -EINVAL;
	natsStatus s = msg_build(&msg, m);
	if (s != NATS_OK)
		return status_errno(s);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = m->msg_id;
	po.MaxWait = bus->cfg.publish_timeout_ms;
	s = js_PublishMsg(&pa, nb->js, msg, &po, &jerr);
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(msg);
	if (s != NATS_OK) {
		log_nats("bus publish not acknowledged", s, jerr);
		return status_errno(s) == -ENOMEM ? -EIO : status_errno(s);
	}
	return 0;
}

static int slots_reserve(nb_bus_t *nb, size_t n)
{
	if (n <= nb->cap_slots)
		return 0;
	natsMsg **sm = realloc(nb->slot_msg, n * sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	nb->slot_msg = sm;
	int *sr = realloc(nb->slot_res, n * sizeof(*sr));
	if (!sr)
		return -ENOMEM;
	nb->slot_res = sr;
	nb->cap_slots = n;
	return 0;
}

static int nb_publish_batch(gh_bus_t *bus, const gh_bus_msg_t *msgs, size_t n, size_t *n_acked)
{
	nb_bus_t *nb = bus->be;
	int rc = 0;
	size_t sent = 0;
	for (size_t i = 0; i < n; i++)
		if (msgs[i].len > INT32_MAX)
			return -EINVAL;
	pthread_mutex_lock(&nb->batch_lock);
	pthread_mutex_lock(&nb->ack_lock);
	rc = slots_reserve(nb, n);
	if (rc == 0) {
		memset(nb->slot_msg, 0, n * sizeof(*nb->slot_msg));
		memset(nb->slot_res, 0, n * sizeof(*nb->slot_res));
		nb->n_slots = n;
		nb->hint = 0;
	}
	pthread_mutex_unlock(&nb->ack_lock);
	if (rc < 0)
		goto out;

	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = bus->cfg.publish_timeout_ms;
	for (; sent < n; sent++) {
		natsMsg *msg = NULL;
		natsStatus s = msg_build(&msg, &msgs[sent]);
		if (s != NATS_OK) {
			pthread_mutex_lock(&nb->ack_lock);
			nb->slot_res[sent] = status_errno(s) ?: -EIO;
			pthread_mutex_unlock(&nb->ack_lock);
			break;
		}
		po.MsgId = msgs[sent].msg_id && *msgs[sent].msg_id ? msgs[sent].msg_id : NULL;
		/* The slot is filled before the publish so that an early reply finds it. */
		pthread_mutex_lock(&nb->ack_lock);
		nb->slot_msg[sent] = msg;
		pthread_mutex_unlock(&nb->ack_lock);
		s = js_PublishMsgAsync(nb->js, &msg, &po);
		if (s != NATS_OK) {
			pthread_mutex_lock(&nb->ack_lock);
			nb->slot_msg[sent] = NULL;
			nb->slot_res[sent] = status_errno(s) ?: -EIO;
			pthread_mutex_unlock(&nb->ack_lock);
			natsMsg_Destroy(msg); /* NULL when the library kept it */
			log_nats("bus async publish refused", s, 0);
			break;
		}
	}

	jsPubOptions wo;
	jsPubOptions_Init(&wo);
	wo.MaxWait = bus->cfg.publish_timeout_ms + 1000;
	natsStatus s = js_PublishAsyncComplete(nb->js, &wo);
	if (s != NATS_OK) {
		/* Take back what is still unanswered so that late replies cannot touch the
		 * slots after this call returns. */
		natsMsgList pending = {0};
		if (js_PublishAsyncGetPendingList(&pending, nb->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
	}
	pthread_mutex_lock(&nb->ack_lock);
	size_t k = 0;
	while (k < n && nb->slot_res[k] == 1)
		k++;
	*n_acked = k;
	rc = k == n ? 0 : (nb->slot_res[k] < 0 ? nb->slot_res[k] : -ETIMEDOUT);
	for (size_t i = 0; i < n; i++)
		nb->slot_msg[i] = NULL;
	nb->n_slots = 0;
	pthread_mutex_unlock(&nb->ack_lock);
out:
	pthread_mutex_unlock(&nb->batch_lock);
	return rc == -ENOMEM ? -EIO : rc;
}

static int nb_sub_start(gh_bus_sub_t *sub)
{
	gh_bus_t *bus = sub->bus;
	nb_bus_t *nb = bus->be;
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	int rc = 0;
	nb_sub_t *ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	sub->be = ns;
	jsConsumerConfig_Init(&cc);
	cc.FilterSubject = sub->filter;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = sub->ack_wait_ms * NS_PER_MS;
	cc.MaxDeliver = -1;
	if (sub->per_process) {
		cc.Name = sub->durable;
		cc.DeliverPolicy = js_DeliverNew;
		cc.InactiveThreshold = sub->inactive_ms * NS_PER_MS;
		cc.MemoryStorage = true;
	} else {
		cc.Durable = sub->durable;
		cc.DeliverPolicy = js_DeliverAll;
	}
	natsStatus s = js_AddConsumer(&ci, nb->js, bus->cfg.stream, &cc, NULL, &jerr);
	if (s != NATS_OK && !sub->per_process &&
	    (jerr == JSConsumerNameExistErr || jerr == JSConsumerExistingActiveErr ||
	     jerr == JSConsumerCreateErr)) {
		jsConsumerInfo_Destroy(ci);
		ci = NULL;
		jerr = 0;
		s = js_UpdateConsumer(&ci, nb->js, bus->cfg.stream, &cc, NULL, &jerr);
		if (s != NATS_OK) {
			log_nats("bus durable exists with another configuration", s, jerr);
			rc = -EEXIST;
		}
	} else if (s != NATS_OK) {
		log_nats("bus consumer create failed", s, jerr);
		rc = jerr == JSConsumerFilterNotSubsetErr ? -EINVAL : -EIO;
	}
	jsConsumerInfo_Destroy(ci);
	if (rc < 0)
		return rc;
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = bus->cfg.stream;
	so.Consumer = sub->durable;
	so.Config.MemoryStorage = cc.MemoryStorage; /* nats.c checks it against the consumer's */
	s = js_PullSubscribe(&ns->s, nb->js, sub->filter, sub->per_process ? NULL : sub->durable,
	                     NULL, &so, &jerr);
	if (s != NATS_OK) {
		log_nats("bus pull subscribe failed", s, jerr);
		return -EIO;
	}
	return 0;
}

/* Delete a per-process consumer; when that fails (server unreachable) it expires by itself. */
static void consumer_delete(gh_bus_sub_t *sub)
{
	nb_bus_t *nb = sub->bus->be;
	jsErrCode jerr = 0;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 1000;
	natsStatus s = js_DeleteConsumer(nb->js, sub->bus->cfg.stream, sub->durable, &jo, &jerr);
	if (s != NATS_OK && jerr != JSConsumerNotFoundErr)
		gh_log(GH_LOG_INFO, "bus per-process consumer not deleted; the server expires it",
		       "consumer", sub->durable, "status", natsStatus_GetText(s), NULL);
}

/* The message as the handler sees it; strings point into natsMsg or tmp. */
static int msg_view(void *tmp, natsMsg *nm, gh_bus_msg_t *m)
{
	const char **keys = NULL;
	int nkeys = 0;
	memset(m, 0, sizeof(*m));
	m->subject = natsMsg_GetSubject(nm);
	m->data = natsMsg_GetData(nm);
	m->len = (size_t)natsMsg_GetDataLength(nm);
	if (natsMsgHeader_Keys(nm, &keys, &nkeys) == NATS_OK && nkeys > 0) {
		gh_bus_hdr_t *h = talloc_array(tmp, gh_bus_hdr_t, (size_t)nkeys);
		if (!h) {
			free(keys);
			return -ENOMEM;
		}
		for (int i = 0; i < nkeys; i++) {
			const char *v = NULL;
			natsMsgHeader_Get(nm, keys[i], &v);
			h[m->n_headers++] = (gh_bus_hdr_t){keys[i], v ? v : ""};
		}
		/* The key strings belong to the message; only the array is ours. */
		free(keys);
		m->headers = h;
	}
	m->msg_id = gh_bus_msg_header(m, "Nats-Msg-Id");
	jsMsgMetaData *meta = NULL;
	if (natsMsg_GetMetaData(&meta, nm) != NATS_OK)
		return -EIO;
	m->delivery = meta->NumDelivered > UINT32_MAX ? UINT32_MAX : (uint32_t)meta->NumDelivered;
	m->seq = meta->Sequence.Stream;
	jsMsgMetaData_Destroy(meta);
	return 0;
}

static void handle_one(gh_bus_sub_t *sub, natsMsg *nm)
{
	char reason[768];
	int64_t delay = 0;
	gh_bus_msg_t m;
	void *tmp = talloc_new(NULL);
	if (!tmp || msg_view(tmp, nm, &m) < 0) {
		natsMsg_NakWithDelay(nm, sub->backoff_ms, NULL);
		goto out;
	}
	gh__bus_outcome_t oc = gh__bus_dispatch(sub, &m, reason, sizeof(reason), &delay);
	if (oc == GH__BUS_DLQ && gh__bus_dead_letter(sub, &m, reason) < 0) {
		oc = GH__BUS_NAK;
		delay = sub->backoff_ms;
	}
	natsStatus s = NATS_OK;
	switch (oc) {
	case GH__BUS_ACK: s = natsMsg_Ack(nm, NULL); break;
	case GH__BUS_DLQ: s = natsMsg_Term(nm, NULL); break;
	case GH__BUS_NAK: s = natsMsg_NakWithDelay(nm, delay, NULL); break;
	case GH__BUS_LEAVE: break;
	}
	if (s != NATS_OK)
		log_nats("bus ack/nak not sent (message will be redelivered)", s, 0);
out:
	talloc_free(tmp);
}

static void nb_sub_run(gh_bus_sub_t *sub)
{
	nb_sub_t *ns = sub->be;
	while (!atomic_load(&sub->stop)) {
		natsMsgList list = {0};
		jsErrCode jerr = 0;
		natsStatus s = natsSubscription_Fetch(&list, ns->s, sub->batch, 1000, &jerr);
		if (s == NATS_OK) {
			for (int i = 0; i < list.Count; i++) {
				if (atomic_load(&sub->stop))
					natsMsg_Nak(list.Msgs[i], NULL); /* back to the durable */
				else
					handle_one(sub, list.Msgs[i]);
			}
			natsMsgList_Destroy(&list);
			continue;
		}
		natsMsgList_Destroy(&list);
		if (s == NATS_TIMEOUT || atomic_load(&sub->stop))
			continue;
		/* Disconnected or the consumer vanished: wait a little, the client reconnects. */
		log_nats("bus fetch failed", s, jerr);
		for (int i = 0; i < 10 && !atomic_load(&sub->stop); i++)
			usleep(50000);
	}
}

static void nb_sub_wake(gh_bus_sub_t *sub)
{
	nb_sub_t *ns = sub->be;
	/* Safe for a bound consumer: nats.c deletes only consumers its subscribe created. This
	 * makes a Fetch blocked in the worker return at once. */
	if (ns && ns->s)
		natsSubscription_Unsubscribe(ns->s);
}

static void nb_sub_free(gh_bus_sub_t *sub)
{
	nb_sub_t *ns = sub->be;
	natsSubscription_Destroy(ns->s);
	/* Also when sub_start failed half-way: the consumer may exist without a subscription. */
	if (sub->per_process)
		consumer_delete(sub);
	free(ns);
	sub->be = NULL;
}

static int nb_ready(gh_bus_t *bus, char *why, size_t n)
{
	nb_bus_t *nb = bus->be;
	natsConnStatus st = natsConnection_Status(nb->nc);
	if (st != NATS_CONN_STATUS_CONNECTED) {
		if (why && n)
			snprintf(why, n, "nats: not connected (status %d)", (int)st);
		return -EIO;
	}
	natsStatus s = natsConnection_FlushTimeout(nb->nc, 1000);
	if (s != NATS_OK) {
		if (why && n)
			snprintf(why, n, "nats: no answer to ping: %s", natsStatus_GetText(s));
		return -EIO;
	}
	return 0;
}

const gh__bus_ops_t gh__bus_nats_ops = {
    .name = "nats",
    .open = nb_open,
    .close = nb_close,
    .publish = nb_publish,
    .publish_batch = nb_publish_batch,
    .sub_start = nb_sub_start,
    .sub_run = nb_sub_run,
    .sub_wake = nb_sub_wake,
    .sub_free = nb_sub_free,
    .ready = nb_ready,
};
