/* ports: what the numbering service asks other platform services over HTTP (issue 4, items 4
 * and 7; contracts in docs/numbering.md, "Ports"):
 *   billing      PreviewCharge(tenant, number, term)  before a lease renewal;
 *   sender-id    IsVerified(alpha, tenant)             before an ALPHA id is assigned.
 * Both are POST JSON to a URL from the configuration (numbering.billing_url,
 * numbering.senderid_url) through core httpcli, bounded by numbering.port_timeout_ms.
 *
 * Fail closed: an unreachable, slow, misconfigured or incoherent port is never taken as a yes.
 * The calls block the calling thread: call them before a transaction, never holding a lock. */
#ifndef NUM_PORTS_H
#define NUM_PORTS_H

#include <stddef.h>
#include <stdint.h>

#include "gh-core.h"
#include "httpcli.h"
#include "repo.h"

typedef struct num_ports_s num_ports_t;

/* Ports on these URLs ("" or NULL: that port is not configured), talloc child of ctx.
 * 0, -EINVAL (timeout < 1), -ENOMEM, -EIO. */
int num_ports_new(void *ctx, const char *billing_url, const char *senderid_url, int64_t timeout_ms,
                  num_ports_t **out);

/* The answers of a port call. reason (reason_len bytes, may be 0) gets a short token for
 * events, audit rows and logs: the port's own reason when it refused ("insufficient_funds"),
 * else "billing_unavailable" / "senderid_unavailable" / "..._not_configured". */
#define NUM_PORT_YES         0
#define NUM_PORT_NO          (-EACCES) /* the port answered: refused / not verified */
#define NUM_PORT_UNAVAILABLE (-EIO)    /* no usable answer: unreachable, timeout, bad reply */
#define NUM_PORT_UNSET       (-ENOSYS) /* no URL configured */

/* Billing PreviewCharge for renewing the lease lease_id of identifier held by tenant for
 * term_days. NUM_PORT_YES when approved; NUM_PORT_NO, NUM_PORT_UNAVAILABLE, NUM_PORT_UNSET. */
int num_port_preview_charge(num_ports_t *p, const char *tenant, const char *identifier,
                            const char *kind, int64_t term_days, const char *lease_id,
                            const char *request_id, char *reason, size_t reason_len);

/* Sender-id registry IsVerified(alpha, tenant). NUM_PORT_YES when verified; NUM_PORT_NO,
 * NUM_PORT_UNAVAILABLE, NUM_PORT_UNSET. */
int num_port_senderid_verified(num_ports_t *p, const char *alpha, const char *tenant,
                               const char *request_id, char *reason, size_t reason_len);

struct num_svc_s;
/* The ALPHA gate of the assign path, for the HTTP handlers to call before they open the
 * transaction: for ASSIGN and RECLAIM of an ALPHA key, ask IsVerified(alpha, tenant) where
 * tenant is req->tenant_id, or the holder when req->tenant_id is empty (admin assign of a
 * reserved number). Other actions and kinds pass without a call. Returns
 *   0        not ALPHA / not an assignment, or verified;
 *   -EPROTO  FAILED_PRECONDITION, details.reason "senderid_not_verified" (the registry said no);
 *   -EIO     UNAVAILABLE, details.reason "senderid_unavailable" (unreachable, timeout, bad
 *            answer, or no numbering.senderid_url configured): the caller must fail closed;
 *   -ENOENT  NOT_FOUND (no such number) - the transition would say the same.
 * err is filled on failure. A refusal is logged at info, unavailability at warn. */
int num_svc_senderid_gate(struct num_svc_s *s, const num_tx_req_t *req, gh_err_t *err);

#endif
