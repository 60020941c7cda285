/* ports: billing PreviewCharge and sender-id IsVerified over HTTP. See ports.h; the wire
 * contracts are in docs/numbering.md ("Ports"). */
#include "ports.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "service.h"

struct num_ports_s {
	gh_httpcli_t *http;
	char *billing_url;  /* NULL: not configured */
	char *senderid_url; /* NULL: not configured */
};

int num_ports_new(void *ctx, const char *billing_url, const char *senderid_url, int64_t timeout_ms,
                  num_ports_t **out)
{
	num_ports_t *p = talloc_zero(ctx, num_ports_t);
	if (!p)
		return -ENOMEM;
	int rc = gh_httpcli_new(p, &(gh_httpcli_opts_t){.timeout_ms = timeout_ms}, &p->http);
	if (rc < 0) {
		talloc_free(p);
		return rc;
	}
	if (billing_url && *billing_url && !(p->billing_url = talloc_strdup(p, billing_url)))
		goto nomem;
	if (senderid_url && *senderid_url && !(p->senderid_url = talloc_strdup(p, senderid_url)))
		goto nomem;
	*out = p;
	return 0;
nomem:
	talloc_free(p);
	return -ENOMEM;
}

/* A reason token from a port's answer: [A-Za-z0-9_.:-] kept, anything else '_', 63 bytes at
 * most, so what a peer sends cannot inject into logs or grow audit rows. */
static void token(char *out, size_t n, const char *in, const char *dflt)
{
	if (!n)
		return;
	if (!in || !*in)
		in = dflt;
	size_t k = 0;
	for (; in[k] && k + 1 < n && k < 63; k++) {
		unsigned char ch = (unsigned char)in[k];
		out[k] = (isalnum(ch) || ch == '_' || ch == '.' || ch == ':' || ch == '-')
		             ? (char)ch
		             : '_';
	}
	out[k] = '\0';
}

/* POST body to url and read the boolean field yes_field of a 2xx JSON answer. */
static int ask(num_ports_t *p, const char *port, const char *url, json_t *body,
               const char *yes_field, const char *request_id, char *reason, size_t reason_len)
{
	char unavailable[48], unset[48];
	snprintf(unavailable, sizeof unavailable, "%s_unavailable", port);
	snprintf(unset, sizeof unset, "%s_not_configured", port);
	if (!body) {
		token(reason, reason_len, unavailable, NULL);
		return -ENOMEM;
	}
	if (!url) {
		json_decref(body);
		token(reason, reason_len, unset, NULL);
		return NUM_PORT_UNSET;
	}
	gh_httpcli_resp_t r;
	int rc = gh_httpcli_post_json(p->http, url, body, request_id, &r);
	json_decref(body);
	json_t *yes = r.body ? json_object_get(r.body, yes_field) : NULL;
	if (rc == 0 && r.status >= 200 && r.status < 300 && json_is_boolean(yes)) {
		bool ok = json_is_true(yes);
		token(reason, reason_len, ok ? NULL : gh_json_get_str(r.body, "reason", NULL),
		      ok ? "approved" : "refused");
		json_decref(r.body);
		return ok ? NUM_PORT_YES : NUM_PORT_NO;
	}
	char st[16];
	snprintf(st, sizeof st, "%d", r.status);
	gh_log(GH_LOG_WARN, "numbering: port unavailable", "port", port, "status", st, "error",
	       rc < 0 ? r.why : "answer without a boolean", "field", yes_field, NULL);
	json_decref(r.body);
	token(reason, reason_len, unavailable, NULL);
	return NUM_PORT_UNAVAILABLE;
}

int num_port_preview_charge(num_ports_t *p, const char *tenant, const char *identifier,
                            const char *kind, int64_t term_days, const char *lease_id,
                            const char *request_id, char *reason, size_t reason_len)
{
	json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "operation", "PreviewCharge",
	                      "tenant_id", tenant ? tenant : "", "number",
	                      identifier ? identifier : "", "kind", kind ? kind : "", "term_days",
	                      (json_int_t)term_days, "lease_id", lease_id ? lease_id : "");
	return ask(p, "billing", p->billing_url, b, "approved", request_id, reason, reason_len);
}

int num_port_senderid_verified(num_ports_t *p, const char *alpha, const char *tenant,
                               const char *request_id, char *reason, size_t reason_len)
{
	json_t *b = json_pack("{s:s, s:s, s:s}", "operation", "IsVerified", "alpha",
	                      alpha ? alpha : "", "tenant_id", tenant ? tenant : "");
	return ask(p, "senderid", p->senderid_url, b, "verified", request_id, reason, reason_len);
}

int num_svc_senderid_gate(num_svc_t *s, const num_tx_req_t *req, gh_err_t *err)
{
	if ((req->action != NUM_ACT_ASSIGN && req->action != NUM_ACT_RECLAIM) ||
	    num_key_kind(req->key) != NUM_KIND_ALPHA)
		return 0;
	gh_ident_kind_t kind;
	char alpha[GH_IDENT_BUFSZ];
	if (gh_ident_key_format(req->key, &kind, alpha) < 0)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "number not found");
	const char *tenant = req->tenant_id && *req->tenant_id ? req->tenant_id : NULL;
	num_number_t n;
	if (!tenant) {
		/* admin assign of a reserved number: the holder is who receives it */
		int rc = s->repo ? num_repo_get(s->repo, req->key, NULL, &n, err) : -EIO;
		if (rc < 0)
			return rc == -EIO ? gh_err_set(err, GH_E_UNAVAILABLE, NULL,
			                               "the numbering database failed")
			                  : rc;
		tenant = n.tenant_id[0] ? n.tenant_id : NULL;
	}
	if (!tenant)
		return 0; /* nobody would receive it: the transition refuses it by itself */
	char why[64];
	int rc = s->ports ? num_port_senderid_verified(s->ports, alpha, tenant, req->request_id,
	                                               why, sizeof why)
	                  : NUM_PORT_UNSET;
	if (rc == NUM_PORT_YES)
		return 0;
	if (rc == NUM_PORT_NO) {
		gh_log(GH_LOG_INFO, "numbering: sender id not verified", "alpha", alpha, "tenant",
		       tenant, "reason", why, NULL);
		rc =
		    gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL,
		               "the sender-id registry has not verified %s for this tenant", alpha);
		gh_err_detail(err, "reason", json_string("senderid_not_verified"));
		gh_err_detail(err, "registry_reason", json_string(why));
		return rc;
	}
	rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL,
	                "the sender-id registry could not confirm %s; not assigned", alpha);
	gh_err_detail(err, "reason", json_string("senderid_unavailable"));
	return rc;
}
