/* busrec: see busrec.h. */
#include "busrec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

gh_test_rec_t *gh_test_rec_new(gh_test_rec_how_t how)
{
	gh_test_rec_t *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	pthread_mutex_init(&r->lock, NULL);
	r->how = how;
	return r;
}

void gh_test_rec_free(gh_test_rec_t *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void copy(char *dst, size_t n, const char *src, size_t len)
{
	if (!src)
		src = "", len = 0;
	if (len >= n)
		len = n - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static void copy_hdr(char *dst, size_t n, const gh_bus_msg_t *m, const char *key)
{
	const char *v = gh_bus_msg_header(m, key);
	copy(dst, n, v, v ? strlen(v) : 0);
}

int gh_test_rec_handler(const gh_bus_msg_t *m, void *ud, char *reason, size_t reason_len)
{
	gh_test_rec_t *r = ud;
	pthread_mutex_lock(&r->lock);
	r->calls++;
	int rc = 0;
	switch (r->how) {
	case GH_REC_OK: break;
	case GH_REC_FAIL_BEFORE: rc = m->delivery < r->fail_before ? -EIO : 0; break;
	case GH_REC_FAIL_ALWAYS: rc = -EIO; break;
	case GH_REC_REJECT: rc = GH_BUS_REJECT; break;
	case GH_REC_ABANDON_FIRST: rc = m->delivery == 1 ? GH_BUS_ABANDON : 0; break;
	}
	if (rc == -EIO)
		snprintf(reason, reason_len, "database unavailable");
	if (rc == GH_BUS_REJECT)
		snprintf(reason, reason_len, "schema: /data/number missing");
	if (rc == 0 && r->n < GH_TEST_REC_MAX) {
		gh_test_got_t *g = &r->got[r->n++];
		copy(g->subject, sizeof(g->subject), m->subject, strlen(m->subject));
		copy(g->msg_id, sizeof(g->msg_id), m->msg_id, m->msg_id ? strlen(m->msg_id) : 0);
		copy(g->data, sizeof(g->data), m->data, m->len);
		copy_hdr(g->reason, sizeof(g->reason), m, GH_BUS_HDR_DLQ_REASON);
		copy_hdr(g->dlq_deliveries, sizeof(g->dlq_deliveries), m,
		         GH_BUS_HDR_DLQ_DELIVERIES);
		copy_hdr(g->dlq_subject, sizeof(g->dlq_subject), m, GH_BUS_HDR_DLQ_SUBJECT);
		copy_hdr(g->hdr_x, sizeof(g->hdr_x), m, "X-Test");
		g->delivery = m->delivery;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int wait_for(gh_test_rec_t *r, const int *count, int n, int64_t timeout_ms)
{
	int64_t end = gh_test_now_ms() + timeout_ms;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		int have = *count;
		pthread_mutex_unlock(&r->lock);
		if (have >= n || gh_test_now_ms() > end)
			return have;
		usleep(2000);
	}
}

int gh_test_rec_wait_n(gh_test_rec_t *r, int n, int64_t timeout_ms)
{
	return wait_for(r, &r->n, n, timeout_ms);
}

int gh_test_rec_wait_calls(gh_test_rec_t *r, int n, int64_t timeout_ms)
{
	return wait_for(r, &r->calls, n, timeout_ms);
}
