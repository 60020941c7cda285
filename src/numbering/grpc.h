/* grpc: the numbering gRPC surface (proto/ghasi/numbering/v1/numbering.proto; issue 5) for
 * internal callers, on gRPC's C core API with protobuf-c messages.
 *
 * ValidateLease and Lookup run the HTTP handlers' service functions (num_svc_validate,
 * num_svc_entry): one implementation of every rule. Errors map to gRPC status codes with the
 * API error code as the status message's prefix ("NOT_FOUND: ...") and in the trailing
 * metadata `error-code` (`error-field` when a field is at fault); UNAVAILABLE means fail closed.
 *
 * Threads: `threads` workers share one completion queue; each call is handled on the worker
 * that took it, from request to reply (a database miss blocks that worker only). A call whose
 * deadline passed before it was handled is answered DEADLINE_EXCEEDED without running.
 * TLS: with tls_cert, the port speaks TLS only and requires a client certificate that
 * verifies against tls_client_ca (a peer without one fails the handshake); the certificate's
 * CN (the call's auth context, "x509_common_name") must be on client_cn_allowlist, else the
 * call is PERMISSION_DENIED, and "service:<cn>" is the audit actor of its mutations. Without
 * tls_cert the port is plaintext (actor "service:unverified"): num_svc's init allows that only
 * in the embedded profile, as the HTTP internal routes. num_svc's init starts the server when
 * numbering.grpc_port is set (TLS files and allowlist from http.*) and its stop drains it. */
#ifndef NUM_GRPC_H
#define NUM_GRPC_H

#include <stdint.h>

#include "gh-core.h"

struct num_svc_s;
typedef struct num_grpc_s num_grpc_t;

typedef struct num_grpc_opts_s {
	const char *bind; /* address to listen on ("0.0.0.0", "127.0.0.1", "[::]") */
	int port;         /* 1-65535 */
	int threads;      /* worker threads, >= 1 */
	int64_t drain_ms; /* stop: in-flight calls get this long before they are cancelled */
	/* PEM file paths; NULL or "" tls_cert: plaintext. With tls_cert, tls_key and
	 * tls_client_ca are required. */
	const char *tls_cert, *tls_key, *tls_client_ca;
	const char *const *client_cn_allowlist; /* NULL-terminated; NULL: no CN is allowed */
} num_grpc_opts_t;

/* Listen and serve s until num_grpc_stop. 0, or negative errno with err filled (-EADDRINUSE
 * when the port cannot be bound, -EINVAL for unusable TLS files, -ENOMEM). The server is a talloc
 * child of ctx; freeing it stops it. */
int num_grpc_start(void *ctx, struct num_svc_s *s, const num_grpc_opts_t *o, num_grpc_t **out,
                   gh_err_t *err);

/* Graceful shutdown: no new calls, in-flight calls finish (cancelled after drain_ms), then the
 * workers exit. Idempotent; NULL is a no-op. */
void num_grpc_stop(num_grpc_t *g);

#endif
