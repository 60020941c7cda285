/* service: the numbering service as `ghasi serve` hosts it (numbering spec; issue 3, items 4-6).
 *
 * num_service is the gh_service_t table: migrations "numbering", the HTTP routes of http.c, the
 * jobs (index heartbeat, idempotency purge, metrics; reservation expiry timers and sweep,
 * quarantine sweep, lease renewal and end, audit verify: jobs.c), the per-instance consumer of
 * num.cache.invalidate.v1 (every replica applies every invalidation to its index), and init/stop,
 * which open the repository, seed the operators (and the demo data, seed.c), load the number
 * index and arm the reservation timers.
 *
 * The state (num_svc_t) is shared by service.c, http.c and seed.c; handlers run concurrently on
 * the HTTP threads, so everything in it is either immutable after init, lock-free (the index,
 * the operator snapshot, metrics) or thread-safe by contract (the repository, the store).
 *
 * Include as "numbering/service.h" from outside src/numbering: src/core has a service.h too. */
#ifndef NUM_SERVICE_H
#define NUM_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gh-core.h"
#include "index.h"
#include "repo.h"

/* The "numbering:" configuration section (GHASI_NUMBERING_<KEY> overrides). */
typedef struct num_config_s {
	int64_t index_capacity;     /* numbers the index can hold (memory reserved at start) */
	int64_t index_tenants;      /* tenants the index can intern */
	int64_t staleness_bound_ms; /* validate answers 503 past this without a heartbeat */
	bool seed_demo;             /* seed demo data on first start (empty database) */
	int64_t seed_msisdns;       /* MSISDNs the demo seed creates */
	char *heartbeat;            /* schedule of the invalidation-stream heartbeat */
	char *reservation_sweep;    /* schedule of the reservation expiry sweep */
	char *quarantine_sweep;     /* schedule of the quarantine cool-off sweep */
	char *metrics_refresh;      /* schedule of the database-read gauges (every replica) */
	int64_t sweep_batch;        /* rows per sweep run */
	int64_t reserve_ttl_default_s;
	int64_t reserve_ttl_max_s;
	/* jobs and ports (jobs.h, ports.h) */
	int64_t expiry_timers_max;     /* reservations with an in-process expiry timer */
	int64_t expiry_sweep_grace_ms; /* the sweep takes reservations due this long ago */
	char *renewal;                 /* schedule of the lease renewal run */
	int64_t renewal_window_s;      /* renew leases ending within this */
	char *lease_end;               /* schedule of the lease end (term elapsed) job */
	char *audit_verify;            /* schedule of the audit chain verify */
	char *billing_url;             /* billing PreviewCharge ("" = none: never renew) */
	char *senderid_url;            /* sender-id IsVerified ("" = none: no ALPHA assign) */
	int64_t port_timeout_ms;       /* each port call, whole exchange */
	/* anomaly signals (anomaly.c); a threshold of 0 disables its signal */
	int64_t anomaly_churn_per_hour;         /* reserves + releases of a tenant in 1 h */
	int64_t anomaly_wrong_tenant_per_min;   /* WRONG_TENANT validates of a caller tenant */
	int64_t anomaly_lookup_unknown_per_min; /* distinct unknown identifiers of a caller */
	int64_t anomaly_recent_quarantines;     /* quarantine exits of 24 h the index tracks */
	char *anomaly_flush;                    /* schedule of the counters' flush (each replica) */
	char *anomaly_churn_check;              /* schedule of the churn query (one replica) */
	/* regulator export (export.c) */
	char *export_schedule; /* the monthly job, for the previous month */
	int64_t export_retention_years;
	char *export_key_pem;       /* Ed25519 private key PEM path, or */
	char *export_pkcs11_module; /* a key on a PKCS#11 token: module path, */
	char *export_pkcs11_token;  /* token label, */
	char *export_pkcs11_pin;    /* user PIN (secret), */
	char *export_pkcs11_key;    /* key pair label */
	/* gRPC surface (grpc.h) */
	int64_t grpc_port;     /* 0: off */
	char *grpc_bind;       /* listen address */
	int64_t grpc_threads;  /* worker threads */
	int64_t grpc_drain_ms; /* shutdown: in-flight calls get this long */
} num_config_t;

/* Register the section with gh_config_register; call once at start, before gh_config_load
 * (main does, tests do). 0, or -EEXIST when already registered (harmless). */
int num_config_register(void);
/* The section of cfg, or the defaults when the section was not registered. */
void num_config_from(const gh_config_t *cfg, num_config_t *out);

extern const gh_service_t num_service;

/* Operators as the hot path reads them: an immutable snapshot swapped atomically. */
typedef struct num_optab_s {
	size_t n;
	gh_operator_t ops[];
} num_optab_t;

/* numbering_pool_utilisation_ratio{tenant,kind} of one pool: values the job and pool writes
 * set, read at scrape time by gauge functions (held / quota). */
typedef struct num_pool_use_s {
	_Atomic int64_t held, quota;
} num_pool_use_t;

typedef struct num_pool_gauge_s {
	struct num_pool_gauge_s *next;
	char tenant[NUM_ID_MAX];
	num_pool_use_t k[NUM_KIND__COUNT]; /* the gauge function's ud */
} num_pool_gauge_t;

typedef struct num_svc_s {
	void *ctx;
	gh_app_t *app; /* NULL when built by num_svc_new for a benchmark */
	num_config_t cfg;
	num_lifecycle_cfg_t lifecycle;
	gh_clock_t *clock;
	gh_store_t *store; /* NULL without a database */
	num_repo_t *repo;  /* NULL without a database: a miss is then UNAVAILABLE */
	num_index_t *ix;
	struct num_ports_s *ports;   /* billing, sender-id (ports.h); NULL: none configured */
	struct num_expiry_s *expiry; /* reservation expiry timers (jobs.h); NULL without app */
	_Atomic(const num_optab_t *) optab;
	pthread_mutex_t pool_mu; /* orders pool status updates of the index (num_svc_pool_sync) */
	int64_t idem_ttl_ms;

	/* metrics (NULL when no registry) */
	gh_histogram_t *h_validate[NUM_VR__COUNT + 2]; /* + UNAVAILABLE, INVALID_ARGUMENT */
	gh_counter_t *c_hits, *c_misses;
	gh_counter_t *c_expired;
	gh_gauge_t *g_audit_broken;
	gh_gauge_t *g_quarantine;      /* numbering_quarantine_backlog */
	_Atomic int64_t outbox_lag_ms; /* numbering_outbox_lag_seconds, read at scrape */
	gh_metrics_t *metrics;
	pthread_mutex_t pools_mu; /* guards the list (the values are atomics) */
	num_pool_gauge_t *pools;

	struct num_events_s *events;   /* compiled event schemas (consumers.c); NULL: none */
	struct num_anomaly_s *anomaly; /* anomaly counters (anomaly.c); NULL: not counted */
	struct num_export_s *exp;      /* regulator exports (export.h); NULL without a database */
	struct num_grpc_s *grpc;       /* the gRPC server (grpc.h); NULL: off */
} num_svc_t;

#define NUM_VRES_UNAVAILABLE (NUM_VR__COUNT)
#define NUM_VRES_INVALID     (NUM_VR__COUNT + 1)

/* A state without the app, for benchmarks and tests of the hot path: ix is used as is (the
 * caller loads it), repo may be NULL, metrics may be NULL. 0 or -ENOMEM. */
int num_svc_new(void *ctx, num_index_t *ix, num_repo_t *repo, gh_clock_t *clock,
                gh_metrics_t *metrics, const num_config_t *cfg, num_svc_t **out);

/* ---- the hot path (http.c) --------------------------------------------------------------- */

typedef struct num_vresult_s {
	num_validate_t v;
	gh_ident_t id;         /* the normalised identifier */
	bool caller_is_holder; /* the entry's holder is the caller: lease data may be shown */
} num_vresult_t;

/* ValidateLease: normalise ident[0..len) (GH_IDENT_AUTO), resolve tenant_id without locks,
 * decide from the index, fall back to the database on a miss (filling the index). Allocates
 * nothing on a hit. Returns 0 with *out decided, or
 *   -EINVAL   bad identifier (err: INVALID_ARGUMENT, field /identifier)
 *   -ESTALE   the index is older than the staleness bound (fail closed: 503)
 *   -EIO      the database could not decide a miss (fail closed: 503)
 * err may be NULL. */
int num_svc_validate(num_svc_t *s, const char *ident, size_t len, const char *tenant_id,
                     int64_t now_ms, num_vresult_t *out, gh_err_t *err);

/* The index entry of a normalised key: index first, database on a miss (filling the index).
 * 0, -ENOENT (not registered), -ESTALE (index stale), -EIO. */
int num_svc_entry(num_svc_t *s, uint64_t key, int64_t now_ms, num_index_entry_t *out);

/* Apply the database's current entry of key to the local index after a local commit; when it
 * cannot be read, invalidate key at min_version so no older entry is served. */
void num_svc_refresh_key(num_svc_t *s, uint64_t key, int64_t min_version);

/* The index after a transition this replica committed, from the number the repository
 * returned (no database read; the operator index is the entry's own, which no transition
 * changes); a read-back (num_svc_refresh_key) when the key is not in the index. An older
 * version than the index holds is ignored. */
void num_svc_apply(num_svc_t *s, const num_number_t *after);

/* Make the index's pool status of tenant_id the database's, under pool_mu, so that a late
 * event can never put back a status older than one applied after a local commit. When the
 * database cannot be read, hint (the status an event announced, or NULL) is applied only if it
 * is SUSPENDED (fail closed) and -EIO is returned. */
int num_svc_pool_sync(num_svc_t *s, const char *tenant_id, const char *hint);

/* Set the utilisation of tenant_id's pool (quota and held per kind, num_kind_t order),
 * registering its gauges the first time the pool is seen. No-op without metrics. */
void num_svc_pool_usage(num_svc_t *s, const char *tenant_id, const int64_t *quota,
                        const int64_t *held);
/* Refresh the gauges read from the database: every pool's utilisation, the quarantine backlog
 * and the outbox lag. Each replica runs it (job numbering-metrics); 0 or -EIO. */
int num_svc_metrics_refresh(num_svc_t *s, int64_t now_ms);

/* Operator of an index entry / an identifier (NULL when none). Lock-free. */
const gh_operator_t *num_svc_operator(num_svc_t *s, const num_index_entry_t *e,
                                      const gh_ident_t *id, int64_t now_ms);
/* Reload the operator snapshot from the database. 0 or negative errno. */
int num_svc_reload_operators(num_svc_t *s);

/* A lifecycle transition as the internal HTTP API and the gRPC surface run it (http.c): the
 * ALPHA sender-id gate, then num_repo_transition inside gh_idem_run (exactly once per
 * call->scope and key), then the new entry into the local index after the commit, or the
 * audit row of a refused (INVALID_TRANSITION) request. tx->now_ms is set here; request_id,
 * traceparent, actor and the rest are the caller's. 0 with *res filled (errors in call->err),
 * or -ENOMEM. */
int num_svc_transition(num_svc_t *s, num_tx_req_t *tx, const gh_idem_call_t *call,
                       gh_idem_result_t *res);

/* Handlers (http.c) and the route table: internal, admin and portal routes. */
extern const gh_service_route_t num_routes[];

/* Page tokens of the list routes: opaque to clients, the last key of the page (http.c).
 * decode: 0 or -EINVAL. */
void num_page_token_encode(uint64_t key, char out[12]);
int num_page_token_decode(const char *s, uint64_t *key);

/* ---- the tenant portal (portal.c) --------------------------------------------------------- */

/* /v1/portal/numbering/...: JWT with a tenant role; the tenant is always the token's
 * tenant_id. Reads serve tenant-viewer and up, mutations tenant-operator and tenant-admin (the
 * route table's masks). Another tenant's number is 404 NOT_FOUND on every route. */
int num_portal_available(gh_http_req_t *req, void *ud);
int num_portal_numbers(gh_http_req_t *req, void *ud);
int num_portal_number(gh_http_req_t *req, void *ud);
int num_portal_reserve(gh_http_req_t *req, void *ud);
int num_portal_assign(gh_http_req_t *req, void *ud);
int num_portal_release(gh_http_req_t *req, void *ud);
int num_portal_reclaim(gh_http_req_t *req, void *ud);
int num_portal_leases(gh_http_req_t *req, void *ud);
int num_portal_pool(gh_http_req_t *req, void *ud);

/* ---- event consumers (consumers.c) ------------------------------------------------------ */

/* Subjects of the events numbering consumes (the service's `consumes`), NULL-terminated. */
extern const char *const num_consumed_subjects[];
/* Compile the events' schemas into s->events; once, in init. 0, -EINVAL, -ENOMEM. */
int num_consumers_init(num_svc_t *s);
/* The handler of every consumed subject (ud: the num_svc_t); see consumers.c. */
int num_on_event(const gh_bus_msg_t *msg, void *ud, char *reason, size_t reason_len);
/* Fault injection for crash tests: the next bulk loop leaves its delivery unacknowledged
 * (GH_BUS_ABANDON, as a consumer dying) after changing n numbers; -1 disarms. Process-wide. */
void num_consumers_fault_abandon_after(int n);

/* ---- anomaly signals (anomaly.c) ------------------------------------------------------- */

/* Reserve the counters (sized by cfg.index_tenants) into s->anomaly. 0 or -ENOMEM. */
int num_anomaly_init(num_svc_t *s);
/* Hot-path hooks: lock-free, allocation-free, no-ops without s->anomaly. caller_tidx is the
 * caller's tenant index (NUM_TENANT_NONE when unknown to the index). */
void num_anomaly_on_validate(num_svc_t *s, uint32_t caller_tidx, const num_validate_t *v,
                             int64_t now_ms);
/* A Lookup of an unregistered identifier key by caller (certificate CN or peer address). */
void num_anomaly_on_lookup_unknown(num_svc_t *s, const char *caller, uint64_t key, int64_t now_ms);
/* The flush job (every replica): reload the recent quarantine exits, publish
 * numbering.anomaly.v1 for the counters above their thresholds. 0 or -EIO. */
int num_anomaly_flush(num_svc_t *s, int64_t now_ms);
/* The churn job (one replica): reserve/release churn per tenant over the last hour. */
int num_anomaly_churn(num_svc_t *s, int64_t now_ms);

/* ---- demo data (seed.c) ------------------------------------------------------------------ */

/* Demo identities the seed creates deterministically (README "Try it", tests). */
#define NUM_DEMO_TENANT_ENTERPRISE "tenant-enterprise"
#define NUM_DEMO_TENANT_SMB        "tenant-smb"
#define NUM_DEMO_TENANT_GOVERNMENT "tenant-government"

/* When the database holds no numbers: the demo pools, msisdns MSISDNs spread over the
 * operators' prefixes, 50 short codes and some alpha ids, in batches. *seeded (may be NULL)
 * gets whether anything was seeded. 0 or negative errno (err filled). */
int num_seed_demo(num_svc_t *s, int64_t msisdns, int64_t now_ms, bool *seeded, gh_err_t *err);

#endif
