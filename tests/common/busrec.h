/* busrec: a bus handler that records what it is given, failing on demand, and waits with a
 * deadline for what a case expects (success conditions are polled, never slept). */
#ifndef GH_BUSREC_H
#define GH_BUSREC_H

#include <pthread.h>
#include <stdint.h>

#include "bus.h"

#define GH_TEST_REC_MAX 4096

/* What the handler answers. */
typedef enum {
	GH_REC_OK,
	GH_REC_FAIL_BEFORE,  /* -EIO while delivery < fail_before, then 0 */
	GH_REC_FAIL_ALWAYS,  /* -EIO ("database unavailable") */
	GH_REC_REJECT,       /* GH_BUS_REJECT ("schema: /data/number missing") */
	GH_REC_ABANDON_FIRST /* GH_BUS_ABANDON on the first delivery (a consumer dying), then 0 */
} gh_test_rec_how_t;

/* One accepted message; strings truncated to fit, "" when absent. */
typedef struct gh_test_got_s {
	char subject[128];
	char msg_id[64];
	char data[64];
	char reason[256];        /* GH_BUS_HDR_DLQ_REASON */
	char dlq_deliveries[16]; /* GH_BUS_HDR_DLQ_DELIVERIES */
	char dlq_subject[128];   /* GH_BUS_HDR_DLQ_SUBJECT */
	char hdr_x[32];          /* "X-Test" */
	uint32_t delivery;
} gh_test_got_t;

typedef struct gh_test_rec_s {
	pthread_mutex_t lock;
	gh_test_rec_how_t how;
	uint32_t fail_before;
	int calls; /* every handler call */
	int n;     /* accepted messages recorded in got (at most GH_TEST_REC_MAX) */
	gh_test_got_t got[GH_TEST_REC_MAX];
} gh_test_rec_t;

/* A recorder on the heap (it is large); free it once no subscription can call it. */
gh_test_rec_t *gh_test_rec_new(gh_test_rec_how_t how);
void gh_test_rec_free(gh_test_rec_t *r);

/* gh_bus_handler_t; ud is the gh_test_rec_t. */
int gh_test_rec_handler(const gh_bus_msg_t *m, void *ud, char *reason, size_t reason_len);

/* Poll until r has recorded at least n messages (or been called n times), or timeout_ms pass;
 * returns the count reached. */
int gh_test_rec_wait_n(gh_test_rec_t *r, int n, int64_t timeout_ms);
int gh_test_rec_wait_calls(gh_test_rec_t *r, int n, int64_t timeout_ms);

#endif
