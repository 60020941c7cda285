/* num_grpc: the numbering gRPC surface of the real `ghasi serve` binary ($GHASI_BIN), driven
 * by a client on gRPC's C core with the protobuf-c messages of numbering.proto: ValidateLease
 * and Lookup answer as the HTTP API does (same decisions, same error codes), errors carry the
 * API code in the status message and trailing metadata, a stale index is UNAVAILABLE (fail
 * closed), a deadline is honoured, and SIGTERM drains in-flight calls. The mutations run the
 * HTTP API's transition (status mapping, idempotency-key replay and reuse, CAS), 100
 * concurrent Reserves of one number give exactly one success, and the same scenario over HTTP
 * and over gRPC leaves the same states, audit rows and events. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "gh-core.h"
#include "httpc.h"
#include "jwtmint.h"
#include "numbering.pb-c.h"
#include "numbering/service.h"
#include "testutil.h"

#define TENANT_E NUM_DEMO_TENANT_ENTERPRISE
#define TENANT_S NUM_DEMO_TENANT_SMB
#define FIRST    "+93701234567" /* the seed's first MSISDN */
#define FIRST_U  "%2B93701234567"
#define M        "/ghasi.numbering.v1.Numbering/"

/* ---- a server process -------------------------------------------------------------------- */

typedef struct srv_s srv_t;
struct srv_s {
	pid_t pid;
	uint16_t port, gport;
	char log[512];
	char *dir;
	bool (*ready)(srv_t *s); /* readiness probe; NULL: GET /readyz over plain HTTP is 200 */
};

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int http_status(uint16_t port, const char *path)
{
	int fd = gh_test_http_connect(port);
	if (fd < 0)
		return -1;
	close(fd);
	gh_test_http_resp_t *r = malloc(sizeof *r);
	gh_test_http_request(port, "GET", path, NULL, NULL, r);
	int st = r->status;
	free(r);
	return st;
}

/* `ghasi serve` with numbering on SQLite, HTTP and gRPC on free ports; extra "K=V" entries. */
static void srv_start(srv_t *s, const char *store, const char *const *extra)
{
	const char *bin = getenv("GHASI_BIN");
	assert_non_null(bin);
	s->port = free_port();
	s->gport = free_port();
	snprintf(s->log, sizeof s->log, "%s/ghasi-%u.log", s->dir, s->port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char port[32], gport[32];
		snprintf(port, sizeof port, "%u", s->port);
		snprintf(gport, sizeof gport, "%u", s->gport);
		setenv("GHASI_HTTP_PORT", port, 1);
		setenv("GHASI_NUMBERING_GRPC_PORT", gport, 1);
		setenv("GHASI_NUMBERING_GRPC_BIND", "127.0.0.1", 1);
		setenv("GHASI_STORE_URL", store, 1);
		setenv("GHASI_BUS_URL", "inproc://", 1);
		setenv("GHASI_SERVICE_ENABLED", "numbering", 1);
		setenv("GHASI_LOG_LEVEL", "warn", 1);
		setenv("GHASI_NUMBERING_INDEX_CAPACITY", "100000", 1);
		setenv("GHASI_NUMBERING_SEED_MSISDNS", "300", 1);
		setenv("GHASI_HTTP_DRAIN_GRACE_MS", "2000", 1);
		setenv("GHASI_AUTH_JWT_HS256_SECRET", GH_TEST_JWT_SECRET, 1);
		for (const char *const *e = extra; e && *e; e++)
			putenv((char *)*e);
		int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, bin, "serve", (char *)NULL);
		_exit(127);
	}
	s->pid = pid;
	for (int i = 0; i < 600; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			fail_msg("ghasi exited at start (status %d); log %s", st, s->log);
		}
		if (s->ready ? s->ready(s) : http_status(s->port, "/readyz") == 200)
			return;
		usleep(50 * 1000);
	}
	fail_msg("ghasi not ready within 30 s; log %s", s->log);
}

/* SIGTERM and wait; the exit status (-1: had to be killed). */
static int srv_stop(srv_t *s)
{
	if (s->pid <= 0)
		return 0;
	kill(s->pid, SIGTERM);
	int st;
	for (int i = 0; i < 300; i++) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(50 * 1000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
	return -1;
}

static json_t *http_get(uint16_t port, const char *path, int *status)
{
	gh_test_http_resp_t *r = malloc(sizeof *r);
	assert_non_null(r);
	gh_test_http_request(port, "GET", path, NULL, NULL, r);
	*status = r->status;
	json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
	free(r);
	return j;
}

/* ---- a gRPC client on the C core ---------------------------------------------------------- */

typedef struct {
	grpc_status_code status;
	char details[512];
	char ecode[64], efield[64];
	int replayed;
	uint8_t *msg; /* malloc'd response bytes (status OK) */
	size_t len;
} gres_t;

static grpc_channel *channel(uint16_t gport)
{
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%u", gport);
	grpc_channel_credentials *cr = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, cr, NULL);
	grpc_channel_credentials_release(cr);
	return ch;
}

static void md_copy(const grpc_metadata_array *a, const char *key, char *out, size_t n)
{
	for (size_t i = 0; i < a->count; i++)
		if (grpc_slice_str_cmp(a->metadata[i].key, key) == 0) {
			size_t l = GRPC_SLICE_LENGTH(a->metadata[i].value);
			if (l >= n)
				l = n - 1;
			memcpy(out, GRPC_SLICE_START_PTR(a->metadata[i].value), l);
			out[l] = '\0';
		}
}

/* One unary call of method with request m; idem_key NULL: none. */
static void rpc(grpc_channel *ch, const char *method, const ProtobufCMessage *m,
                const char *idem_key, int64_t timeout_ms, gres_t *out)
{
	memset(out, 0, sizeof *out);
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                               gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	grpc_slice ms = grpc_slice_from_static_string(method);
	grpc_call *call =
	    grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, ms, NULL, dl, NULL);
	assert_non_null(call);
	uint8_t buf[4096];
	size_t n = protobuf_c_message_pack(m, buf);
	grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	grpc_metadata md[1];
	size_t nmd = 0;
	if (idem_key) {
		md[0].key = grpc_slice_from_static_string("idempotency-key");
		md[0].value = grpc_slice_from_copied_string(idem_key);
		nmd = 1;
	}
	grpc_metadata_array init_md, trail_md;
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	grpc_byte_buffer *resp = NULL;
	grpc_slice details;
	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &out->status;
	ops[5].data.recv_status_on_client.status_details = &details;
	assert_int_equal(grpc_call_start_batch(call, ops, 6, out, NULL), GRPC_CALL_OK);
	grpc_event ev =
	    grpc_completion_queue_pluck(cq, out, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	size_t dl_len = GRPC_SLICE_LENGTH(details);
	if (dl_len >= sizeof out->details)
		dl_len = sizeof out->details - 1;
	memcpy(out->details, GRPC_SLICE_START_PTR(details), dl_len);
	out->details[dl_len] = '\0';
	grpc_slice_unref(details);
	md_copy(&trail_md, "error-code", out->ecode, sizeof out->ecode);
	md_copy(&trail_md, "error-field", out->efield, sizeof out->efield);
	char rep[8] = "";
	md_copy(&trail_md, "idempotent-replayed", rep, sizeof rep);
	out->replayed = strcmp(rep, "true") == 0;
	if (resp) {
		grpc_byte_buffer_reader rd;
		assert_true(grpc_byte_buffer_reader_init(&rd, resp));
		grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
		out->len = GRPC_SLICE_LENGTH(all);
		out->msg = malloc(out->len + 1);
		memcpy(out->msg, GRPC_SLICE_START_PTR(all), out->len);
		grpc_slice_unref(all);
		grpc_byte_buffer_reader_destroy(&rd);
		grpc_byte_buffer_destroy(resp);
	}
	if (idem_key)
		grpc_slice_unref(md[0].value);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_byte_buffer_destroy(bb);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

static void gres_done(gres_t *r)
{
	free(r->msg);
	r->msg = NULL;
}

/* A failed call: status, API code (trailing and message prefix) and field ("" = none). */
static void expect_err(const gres_t *r, grpc_status_code st, const char *code, const char *field)
{
	if (r->status != st)
		fail_msg("status %d, want %d (%s)", r->status, st, r->details);
	assert_string_equal(r->ecode, code);
	assert_int_equal(strncmp(r->details, code, strlen(code)), 0);
	assert_int_equal(r->details[strlen(code)], ':');
	assert_string_equal(r->efield, field);
	assert_null(r->msg);
}

static Ghasi__Numbering__V1__ValidateLeaseResponse *validate(grpc_channel *ch, const char *ident,
                                                             const char *tenant, gres_t *r)
{
	Ghasi__Numbering__V1__ValidateLeaseRequest q =
	    GHASI__NUMBERING__V1__VALIDATE_LEASE_REQUEST__INIT;
	q.identifier = (char *)ident;
	q.tenant_id = (char *)tenant;
	rpc(ch, M "ValidateLease", &q.base, NULL, 5000, r);
	if (r->status != GRPC_STATUS_OK)
		return NULL;
	Ghasi__Numbering__V1__ValidateLeaseResponse *o =
	    ghasi__numbering__v1__validate_lease_response__unpack(NULL, r->len, r->msg);
	assert_non_null(o);
	return o;
}

static Ghasi__Numbering__V1__LookupResponse *lookup(grpc_channel *ch, const char *ident, gres_t *r)
{
	Ghasi__Numbering__V1__LookupRequest q = GHASI__NUMBERING__V1__LOOKUP_REQUEST__INIT;
	q.identifier = (char *)ident;
	rpc(ch, M "Lookup", &q.base, NULL, 5000, r);
	if (r->status != GRPC_STATUS_OK)
		return NULL;
	Ghasi__Numbering__V1__LookupResponse *o =
	    ghasi__numbering__v1__lookup_response__unpack(NULL, r->len, r->msg);
	assert_non_null(o);
	return o;
}

/* ---- fixture ------------------------------------------------------------------------------ */

typedef struct {
	srv_t a;
	char *store;
	grpc_channel *ch;
} fx_t;

static int fx_setup(void **state)
{
	fx_t *fx = calloc(1, sizeof *fx);
	fx->a.dir = gh_test_tmpdir();
	fx->store = gh_test_store_url(GH_TEST_SQLITE, fx->a.dir);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	fx_t *fx = *state;
	if (fx->ch)
		grpc_channel_destroy(fx->ch);
	srv_stop(&fx->a);
	gh_test_rmtree(fx->a.dir);
	free(fx->a.dir);
	free(fx->store);
	free(fx);
	return 0;
}

static void fx_start(fx_t *fx, const char *const *extra)
{
	srv_start(&fx->a, fx->store, extra);
	fx->ch = channel(fx->a.gport);
}

/* ---- ValidateLease and Lookup ------------------------------------------------------------ */

static const char *const reason_names[] = {"",
                                           "ALLOWED",
                                           "NOT_REGISTERED",
                                           "NOT_LEASED",
                                           "WRONG_TENANT",
                                           "LEASE_SUSPENDED",
                                           "LEASE_EXPIRED",
                                           "QUARANTINE_ACTIVE",
                                           "TENANT_SUSPENDED"};
static const char *const kind_names[] = {"", "MSISDN", "SHORT_CODE", "ALPHA"};
static const char *const state_names[] = {"",          "AVAILABLE",   "RESERVED", "ASSIGNED",
                                          "SUSPENDED", "QUARANTINED", "RETIRED"};

/* gRPC and HTTP give the same decision for ident and tenant. */
static void same_validate(fx_t *fx, const char *ident, const char *ident_url, const char *tenant)
{
	gres_t r;
	Ghasi__Numbering__V1__ValidateLeaseResponse *o = validate(fx->ch, ident, tenant, &r);
	if (!o)
		fail_msg("ValidateLease %s: %d %s", ident, r.status, r.details);
	char path[256];
	int st;
	snprintf(path, sizeof path, "/v1/numbering/validate-lease?identifier=%s&tenant_id=%s",
	         ident_url, tenant);
	json_t *j = http_get(fx->a.port, path, &st);
	assert_int_equal(st, 200);
	assert_int_equal(o->allowed, json_is_true(json_object_get(j, "allowed")));
	assert_true(o->reason > 0 && o->reason < 9);
	assert_string_equal(reason_names[o->reason],
	                    json_string_value(json_object_get(j, "reason")));
	assert_string_equal(o->identifier, json_string_value(json_object_get(j, "identifier")));
	assert_string_equal(kind_names[o->kind], json_string_value(json_object_get(j, "kind")));
	const char *op = json_string_value(json_object_get(j, "operator_id"));
	assert_string_equal(o->operator_id, op ? op : "");
	const char *lid = json_string_value(json_object_get(j, "lease_id"));
	assert_string_equal(o->lease_id, lid ? lid : "");
	const char *le = json_string_value(json_object_get(j, "lease_ends_at"));
	assert_string_equal(o->lease_ends_at, le ? le : "");
	json_decref(j);
	ghasi__numbering__v1__validate_lease_response__free_unpacked(o, NULL);
	gres_done(&r);
}

static void test_validate_lookup(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, NULL);
	gres_t r;

	/* the seed's first MSISDN is AVAILABLE: NOT_LEASED for everyone, over both transports */
	same_validate(fx, FIRST, FIRST_U, TENANT_E);
	same_validate(fx, "0701234567", "0701234567", TENANT_S);       /* national notation */
	same_validate(fx, "+93709999999", "%2B93709999999", TENANT_S); /* not registered */
	char path[256];
	int st;
	json_t *j;
	Ghasi__Numbering__V1__ValidateLeaseResponse *v = validate(fx->ch, FIRST, TENANT_E, &r);
	assert_non_null(v);
	assert_false(v->allowed);
	assert_int_equal(v->reason, GHASI__NUMBERING__V1__REASON__REASON_NOT_LEASED);
	assert_int_equal(v->kind, GHASI__NUMBERING__V1__KIND__KIND_MSISDN);
	assert_string_equal(v->identifier, FIRST);
	ghasi__numbering__v1__validate_lease_response__free_unpacked(v, NULL);
	gres_done(&r);

	/* arguments */
	assert_null(validate(fx->ch, "not a number!", TENANT_S, &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "identifier");
	assert_null(validate(fx->ch, "", TENANT_S, &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "identifier");
	assert_null(validate(fx->ch, FIRST, "", &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "tenant_id");
	assert_null(validate(fx->ch, FIRST, "bad tenant!", &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "tenant_id");

	/* a malformed message (not protobuf) */
	{
		Ghasi__Numbering__V1__LookupRequest q = GHASI__NUMBERING__V1__LOOKUP_REQUEST__INIT;
		q.identifier = "\xff\xfe"; /* invalid UTF-8 in a string field: unpack refuses */
		rpc(fx->ch, M "ValidateLease", &q.base, NULL, 5000, &r);
		assert_int_equal(r.status, GRPC_STATUS_INVALID_ARGUMENT);
		gres_done(&r);
	}

	/* Lookup: same facts as HTTP */
	Ghasi__Numbering__V1__LookupResponse *l = lookup(fx->ch, "0701234567", &r);
	assert_non_null(l);
	snprintf(path, sizeof path, "/v1/numbering/lookup/%s", FIRST_U);
	j = http_get(fx->a.port, path, &st);
	assert_int_equal(st, 200);
	assert_string_equal(l->identifier, FIRST);
	assert_string_equal(kind_names[l->kind], json_string_value(json_object_get(j, "kind")));
	assert_string_equal(state_names[l->state], json_string_value(json_object_get(j, "state")));
	assert_string_equal(l->operator_id, json_string_value(json_object_get(j, "operator_id")));
	assert_string_equal(l->mcc, json_string_value(json_object_get(j, "mcc")));
	assert_string_equal(l->mnc, json_string_value(json_object_get(j, "mnc")));
	assert_int_equal(l->vanity_tier, json_integer_value(json_object_get(j, "vanity_tier")));
	json_decref(j);
	ghasi__numbering__v1__lookup_response__free_unpacked(l, NULL);
	gres_done(&r);
	assert_null(lookup(fx->ch, "+93709999999", &r));
	expect_err(&r, GRPC_STATUS_NOT_FOUND, "NOT_FOUND", "");
	assert_null(lookup(fx->ch, "###", &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "identifier");

	/* an unknown method */
	{
		Ghasi__Numbering__V1__LookupRequest q = GHASI__NUMBERING__V1__LOOKUP_REQUEST__INIT;
		q.identifier = FIRST;
		rpc(fx->ch, M "NoSuchMethod", &q.base, NULL, 5000, &r);
		assert_int_equal(r.status, GRPC_STATUS_UNIMPLEMENTED);
		gres_done(&r);
	}
	/* a deadline that already passed is DEADLINE_EXCEEDED without data, end to end (the
	 * server's own check, for calls that waited for a worker past their deadline, is not
	 * observable from here without a slow method) */
	{
		Ghasi__Numbering__V1__LookupRequest q = GHASI__NUMBERING__V1__LOOKUP_REQUEST__INIT;
		q.identifier = FIRST;
		rpc(fx->ch, M "Lookup", &q.base, NULL, -1000, &r);
		assert_int_equal(r.status, GRPC_STATUS_DEADLINE_EXCEEDED);
		assert_null(r.msg);
		gres_done(&r);
	}
}

/* No heartbeat within the staleness bound: ValidateLease fails closed with UNAVAILABLE. */
static void test_stale_index_is_unavailable(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, (const char *const[]){"GHASI_NUMBERING_HEARTBEAT=@every 1h",
	                                   "GHASI_NUMBERING_STALENESS_BOUND_MS=1500", NULL});
	int64_t t0 = now_ms();
	int saw = 0;
	gres_t r;
	while (now_ms() - t0 < 5000 && !saw) {
		Ghasi__Numbering__V1__ValidateLeaseResponse *v =
		    validate(fx->ch, FIRST, TENANT_S, &r);
		if (!v) {
			expect_err(&r, GRPC_STATUS_UNAVAILABLE, "UNAVAILABLE", "");
			saw = 1;
		} else {
			ghasi__numbering__v1__validate_lease_response__free_unpacked(v, NULL);
		}
		gres_done(&r);
		usleep(100 * 1000);
	}
	assert_true(saw);
	/* Lookup fails closed the same way */
	assert_null(lookup(fx->ch, FIRST, &r));
	expect_err(&r, GRPC_STATUS_UNAVAILABLE, "UNAVAILABLE", "");
}

/* ---- graceful shutdown -------------------------------------------------------------------- */

typedef struct {
	grpc_channel *ch;
	_Atomic int *stop;
	_Atomic int *gone; /* the server process has exited */
	int ok, unavailable, other;
} hammer_t;

static void *hammer(void *arg)
{
	hammer_t *h = arg;
	while (!atomic_load(h->stop)) {
		int gone = atomic_load(h->gone);
		gres_t r;
		Ghasi__Numbering__V1__ValidateLeaseResponse *v =
		    validate(h->ch, FIRST, TENANT_S, &r);
		if (v) {
			h->ok++;
			ghasi__numbering__v1__validate_lease_response__free_unpacked(v, NULL);
		} else if (r.status == GRPC_STATUS_UNAVAILABLE ||
		           r.status == GRPC_STATUS_CANCELLED ||
		           (gone && r.status == GRPC_STATUS_DEADLINE_EXCEEDED)) {
			/* the server went away (the client fails closed), or the C core cancelled a
			 * call it had not handed to a worker yet when shutdown began; a call begun
			 * after the exit may meet whatever listens on the freed port next (parallel
			 * tests): no answer, the client's deadline */
			h->unavailable++;
			usleep(10 * 1000);
		} else {
			h->other++;
			fprintf(stderr, "shutdown: status %d %s\n", r.status, r.details);
		}
		gres_done(&r);
	}
	return NULL;
}

/* SIGTERM under load: every call ends with a whole answer, UNAVAILABLE or CANCELLED (not yet
 * taken when shutdown began, so never executed), no other error, and the process exits 0
 * (the drain finished within its grace). */
static void test_shutdown_drains(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, NULL);
	_Atomic int stop = 0, gone = 0;
	hammer_t h[8];
	pthread_t th[8];
	for (int i = 0; i < 8; i++) {
		h[i] = (hammer_t){.ch = fx->ch, .stop = &stop, .gone = &gone};
		pthread_create(&th[i], NULL, hammer, &h[i]);
	}
	usleep(300 * 1000);
	assert_int_equal(srv_stop(&fx->a), 0);
	atomic_store(&gone, 1);
	usleep(200 * 1000);
	atomic_store(&stop, 1);
	int ok = 0, other = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ok += h[i].ok;
		other += h[i].other;
	}
	assert_true(ok > 0);
	assert_int_equal(other, 0);
}

/* ---- mutations ---------------------------------------------------------------------------- */

typedef Ghasi__Numbering__V1__Number number_t;

/* A mutation; the Number, or NULL with r's status. */
static number_t *mutate(grpc_channel *ch, const char *method, const ProtobufCMessage *q,
                        const char *key, gres_t *r)
{
	rpc(ch, method, q, key, 10000, r);
	if (r->status != GRPC_STATUS_OK)
		return NULL;
	number_t *n = ghasi__numbering__v1__number__unpack(NULL, r->len, r->msg);
	assert_non_null(n);
	return n;
}

static void nfree(number_t *n, gres_t *r)
{
	if (n)
		ghasi__numbering__v1__number__free_unpacked(n, NULL);
	gres_done(r);
}

static number_t *reserve(grpc_channel *ch, const char *ident, const char *tenant, int64_t ev,
                         const char *key, gres_t *r)
{
	Ghasi__Numbering__V1__ReserveRequest q = GHASI__NUMBERING__V1__RESERVE_REQUEST__INIT;
	q.identifier = (char *)ident;
	q.tenant_id = (char *)tenant;
	q.expected_version = ev;
	return mutate(ch, M "Reserve", &q.base, key, r);
}

static number_t *assign(grpc_channel *ch, const char *ident, const char *tenant, gres_t *r)
{
	Ghasi__Numbering__V1__AssignRequest q = GHASI__NUMBERING__V1__ASSIGN_REQUEST__INIT;
	q.identifier = (char *)ident;
	q.tenant_id = (char *)tenant;
	q.auto_renew = GHASI__NUMBERING__V1__AUTO_RENEW__AUTO_RENEW_OFF;
	return mutate(ch, M "Assign", &q.base, NULL, r);
}

static number_t *release(grpc_channel *ch, const char *ident, const char *tenant, gres_t *r)
{
	Ghasi__Numbering__V1__ReleaseRequest q = GHASI__NUMBERING__V1__RELEASE_REQUEST__INIT;
	q.identifier = (char *)ident;
	q.tenant_id = (char *)tenant;
	return mutate(ch, M "Release", &q.base, NULL, r);
}

static number_t *compliance(grpc_channel *ch, const char *what, const char *ident, gres_t *r)
{
	char method[64];
	snprintf(method, sizeof method, M "%s", what);
	if (strcmp(what, "Recall") == 0) {
		Ghasi__Numbering__V1__RecallRequest q = GHASI__NUMBERING__V1__RECALL_REQUEST__INIT;
		q.identifier = (char *)ident;
		q.reason = GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_RECALL_ABUSE;
		q.justification = "abuse reported by the fraud desk";
		return mutate(ch, method, &q.base, NULL, r);
	}
	Ghasi__Numbering__V1__SuspendRequest q = GHASI__NUMBERING__V1__SUSPEND_REQUEST__INIT;
	q.identifier = (char *)ident;
	q.reason = "billing hold";
	return mutate(ch, method, &q.base, NULL, r); /* ResumeRequest has the same layout */
}

static json_t *admin_get(uint16_t port, const char *path)
{
	void *tmp = talloc_new(NULL);
	gh_test_http_resp_t *hr = malloc(sizeof *hr);
	gh_test_http_request(port, "GET", path,
	                     gh_test_jwt_header(tmp, "ops", "platform-admin", NULL), NULL, hr);
	assert_int_equal(hr->status, 200);
	json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
	free(hr);
	talloc_free(tmp);
	return j;
}

/* The i-th AVAILABLE MSISDN after the first (E.164, "+..."). */
static void avail(uint16_t port, int i, char out[32])
{
	json_t *j = admin_get(port, "/v1/admin/numbering/numbers?state=AVAILABLE&kind=MSISDN"
	                            "&page_size=10&prefix=%2B9370");
	json_t *a = json_object_get(j, "numbers");
	assert_true(json_array_size(a) > (size_t)i + 1);
	snprintf(out, 32, "%s",
	         json_string_value(json_object_get(json_array_get(a, i + 1), "identifier")));
	json_decref(j);
	assert_int_equal(out[0], '+');
}

static void test_mutations(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, NULL);
	grpc_channel *ch = fx->ch;
	gres_t r;
	number_t *n;

	/* arguments */
	assert_null(reserve(ch, "###", TENANT_S, 0, NULL, &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "identifier");
	assert_null(reserve(ch, FIRST, "", 0, NULL, &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "tenant_id");
	assert_null(reserve(ch, FIRST, TENANT_S, -2, NULL, &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "expected_version");
	assert_null(reserve(ch, FIRST, TENANT_S, 0, "", &r));
	expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "idempotency-key");
	assert_null(reserve(ch, "+93709999999", TENANT_S, 0, NULL, &r));
	expect_err(&r, GRPC_STATUS_NOT_FOUND, "NOT_FOUND", "");

	/* CAS: a stale expected_version is ABORTED CONFLICT */
	Ghasi__Numbering__V1__LookupResponse *l = lookup(ch, FIRST, &r);
	assert_non_null(l);
	ghasi__numbering__v1__lookup_response__free_unpacked(l, NULL);
	gres_done(&r);
	assert_null(reserve(ch, FIRST, TENANT_S, 999, NULL, &r));
	expect_err(&r, GRPC_STATUS_ABORTED, "CONFLICT", "/expected_version");

	/* reserve with a key, replay, reuse */
	n = reserve(ch, FIRST, TENANT_S, 0, "k-res-1", &r);
	assert_non_null(n);
	assert_false(r.replayed);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_RESERVED);
	assert_string_equal(n->tenant_id, TENANT_S);
	assert_string_equal(n->identifier, FIRST);
	assert_non_null(n->reservation);
	int64_t v1 = n->version;
	nfree(n, &r);
	n = reserve(ch, FIRST, TENANT_S, 0, "k-res-1", &r);
	assert_non_null(n);
	assert_true(r.replayed);
	assert_int_equal(n->version, v1);
	nfree(n, &r);
	assert_null(reserve(ch, FIRST, TENANT_E, 0, "k-res-1", &r)); /* another scope: a new key */
	expect_err(&r, GRPC_STATUS_ABORTED, "INVALID_TRANSITION", "");
	assert_null(reserve(ch, FIRST, TENANT_S, 1, "k-res-1", &r)); /* same scope, other request */
	expect_err(&r, GRPC_STATUS_FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED", "");
	/* a stored domain error replays as the same status */
	assert_null(reserve(ch, FIRST, TENANT_E, 0, "k-res-1", &r));
	expect_err(&r, GRPC_STATUS_ABORTED, "INVALID_TRANSITION", "");
	assert_true(r.replayed);

	/* assign: ValidateLease now ALLOWED with the lease for the holder only */
	n = assign(ch, FIRST, TENANT_S, &r);
	assert_non_null(n);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_ASSIGNED);
	assert_non_null(n->lease);
	assert_int_equal(n->lease->status, GHASI__NUMBERING__V1__LEASE_STATUS__LEASE_STATUS_ACTIVE);
	assert_false(n->lease->auto_renew);
	char lease_id[64];
	snprintf(lease_id, sizeof lease_id, "%s", n->lease->lease_id);
	nfree(n, &r);
	Ghasi__Numbering__V1__ValidateLeaseResponse *v = validate(ch, FIRST, TENANT_S, &r);
	assert_non_null(v);
	assert_true(v->allowed);
	assert_string_equal(v->lease_id, lease_id);
	ghasi__numbering__v1__validate_lease_response__free_unpacked(v, NULL);
	gres_done(&r);
	same_validate(fx, FIRST, FIRST_U, TENANT_S);
	same_validate(fx, FIRST, FIRST_U, TENANT_E);

	/* compliance: suspend, resume, recall */
	n = compliance(ch, "Suspend", FIRST, &r);
	assert_non_null(n);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_SUSPENDED);
	nfree(n, &r);
	assert_null(compliance(ch, "Suspend", FIRST, &r));
	expect_err(&r, GRPC_STATUS_ABORTED, "INVALID_TRANSITION", "");
	n = compliance(ch, "Resume", FIRST, &r);
	assert_non_null(n);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_ASSIGNED);
	nfree(n, &r);
	n = compliance(ch, "Recall", FIRST, &r);
	assert_non_null(n);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_QUARANTINED);
	assert_non_null(n->quarantine);
	assert_int_equal(n->quarantine->reason,
	                 GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_RECALL_ABUSE);
	nfree(n, &r);
	{
		Ghasi__Numbering__V1__RecallRequest q = GHASI__NUMBERING__V1__RECALL_REQUEST__INIT;
		q.identifier = FIRST;
		q.reason =
		    GHASI__NUMBERING__V1__QUARANTINE_REASON__QUARANTINE_REASON_TENANT_RELEASE;
		assert_null(mutate(ch, M "Recall", &q.base, NULL, &r));
		expect_err(&r, GRPC_STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT", "reason");
	}

	/* release by the holder; by another tenant it is refused */
	char second[32];
	avail(fx->a.port, 0, second);
	n = reserve(ch, second, TENANT_E, 0, NULL, &r);
	if (!n)
		fail_msg("reserve %s: %d %s", second, r.status, r.details);
	nfree(n, &r);
	assert_null(release(ch, second, TENANT_S, &r));
	if (r.status != GRPC_STATUS_ABORTED)
		fail_msg("release by another tenant: %d %s", r.status, r.details);
	gres_done(&r);
	n = release(ch, second, TENANT_E, &r); /* a reservation released: back to AVAILABLE */
	assert_non_null(n);
	assert_int_equal(n->state, GHASI__NUMBERING__V1__STATE__STATE_AVAILABLE);
	nfree(n, &r);
}

/* ---- 100 concurrent reserves ---------------------------------------------------------------- */

#define RACERS 100

typedef struct {
	grpc_channel *ch;
	int64_t version;
	pthread_barrier_t *go;
	grpc_status_code status;
	char code[64];
} racer_t;

static void *racer(void *arg)
{
	racer_t *x = arg;
	gres_t r;
	pthread_barrier_wait(x->go);
	number_t *n = reserve(x->ch, FIRST, TENANT_E, x->version, NULL, &r);
	x->status = r.status;
	snprintf(x->code, sizeof x->code, "%s", r.ecode);
	nfree(n, &r);
	return NULL;
}

static void test_reserve_race(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, (const char *const[]){"GHASI_NUMBERING_GRPC_THREADS=16", NULL});
	/* every racer sends the current version (CAS), as in num_http's race */
	json_t *j = admin_get(fx->a.port, "/v1/admin/numbering/numbers/" FIRST_U);
	int64_t version = json_integer_value(json_object_get(j, "version"));
	json_decref(j);
	assert_true(version >= 1);

	pthread_t th[RACERS];
	racer_t rs[RACERS];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, RACERS);
	for (int i = 0; i < RACERS; i++) {
		rs[i] = (racer_t){.ch = fx->ch, .version = version, .go = &go};
		pthread_create(&th[i], NULL, racer, &rs[i]);
	}
	int ok = 0, aborted = 0;
	for (int i = 0; i < RACERS; i++) {
		pthread_join(th[i], NULL);
		if (rs[i].status == GRPC_STATUS_OK)
			ok++;
		else if (rs[i].status == GRPC_STATUS_ABORTED &&
		         (strcmp(rs[i].code, "CONFLICT") == 0 ||
		          strcmp(rs[i].code, "INVALID_TRANSITION") == 0))
			aborted++;
		else
			fail_msg("racer %d: status %d %s", i, rs[i].status, rs[i].code);
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(ok, 1);
	assert_int_equal(aborted, RACERS - 1);
}

/* ---- parity: the same scenario over HTTP and gRPC ------------------------------------------ */

static int http_post(uint16_t port, const char *ident_u, const char *action, const char *body)
{
	char path[256];
	snprintf(path, sizeof path, "/v1/numbering/numbers/%s:%s", ident_u, action);
	gh_test_http_resp_t *hr = malloc(sizeof *hr);
	gh_test_http_request(port, "POST", path, NULL, body, hr);
	int st = hr->status;
	free(hr);
	return st;
}

/* An audit row without what differs between two numbers and two runs. */
static json_t *audit_shape(const json_t *row, const char *ident)
{
	json_t *o = json_pack("{s:O, s:O, s:O}", "actor", json_object_get(row, "actor"), "action",
	                      json_object_get(row, "action"), "tenant_id",
	                      json_object_get(row, "tenant_id"));
	const char *k;
	json_t *v;
	json_t *p = json_object();
	json_object_foreach(json_object_get(row, "payload"), k, v)
	{
		/* keys always; values when they are not per-number or per-run */
		const char *sv = json_string_value(v);
		bool keep = json_is_boolean(v) ||
		            (sv && strlen(sv) < 20 && !strchr(sv, '+') && strcmp(sv, ident) != 0);
		json_object_set(p, k, keep ? v : json_null());
	}
	json_object_set_new(o, "payload", p);
	return o;
}

/* The outbox subjects of ident's events, in order, as one string. */
static void events_of(const char *db, const char *ident, char *out, size_t n)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
	         "sqlite3 '%s' \"SELECT subject FROM gh_outbox WHERE envelope LIKE '%%%s%%' "
	         "ORDER BY id\"",
	         db, ident);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t len = fread(out, 1, n - 1, f);
	out[len] = '\0';
	pclose(f);
}

static void test_parity_http_grpc(void **state)
{
	fx_t *fx = *state;
	fx_start(fx, NULL);
	char A[32], B[32], A_U[40], B_U[40];
	avail(fx->a.port, 1, A); /* over HTTP */
	avail(fx->a.port, 2, B); /* over gRPC */
	snprintf(A_U, sizeof A_U, "%%2B%s", A + 1);
	snprintf(B_U, sizeof B_U, "%%2B%s", B + 1);
	gres_t r;
	number_t *n;
	const char *steps[] = {"reserve", "assign", "suspend", "resume", "recall"};
	const char *states[] = {"RESERVED", "ASSIGNED", "SUSPENDED", "ASSIGNED", "QUARANTINED"};
	for (int i = 0; i < 5; i++) {
		const char *body = i < 2 ? "{\"tenant_id\":\"" TENANT_S "\",\"auto_renew\":false}"
		                         : "{\"reason\":\"RECALL_ABUSE\"}";
		if (i == 0)
			body = "{\"tenant_id\":\"" TENANT_S "\"}";
		if (i == 2 || i == 3)
			body = "{\"reason\":\"billing hold\"}";
		if (i == 4)
			body = "{\"reason\":\"RECALL_ABUSE\",\"justification\":\"abuse reported by "
			       "the "
			       "fraud desk\"}";
		assert_int_equal(http_post(fx->a.port, A_U, steps[i], body), 200);
		switch (i) {
		case 0: n = reserve(fx->ch, B, TENANT_S, 0, NULL, &r); break;
		case 1: n = assign(fx->ch, B, TENANT_S, &r); break;
		case 2: n = compliance(fx->ch, "Suspend", B, &r); break;
		case 3: n = compliance(fx->ch, "Resume", B, &r); break;
		default: n = compliance(fx->ch, "Recall", B, &r); break;
		}
		if (!n)
			fail_msg("gRPC %s: %d %s", steps[i], r.status, r.details);
		assert_string_equal(state_names[n->state], states[i]);
		nfree(n, &r);
		/* a refused step is audited the same way too */
		assert_int_equal(
		    http_post(fx->a.port, A_U, "reserve", "{\"tenant_id\":\"" TENANT_E "\"}"), 409);
		assert_null(reserve(fx->ch, B, TENANT_E, 0, NULL, &r));
		expect_err(&r, GRPC_STATUS_ABORTED, "INVALID_TRANSITION", "");
	}
	/* same states */
	char path[256];
	snprintf(path, sizeof path, "/v1/admin/numbering/numbers/%s", A_U);
	json_t *na = admin_get(fx->a.port, path);
	snprintf(path, sizeof path, "/v1/admin/numbering/numbers/%s", B_U);
	json_t *nb = admin_get(fx->a.port, path);
	assert_string_equal(json_string_value(json_object_get(na, "state")),
	                    json_string_value(json_object_get(nb, "state")));
	assert_int_equal(json_integer_value(json_object_get(na, "version")),
	                 json_integer_value(json_object_get(nb, "version")));
	json_decref(na);
	json_decref(nb);
	/* same audit rows */
	snprintf(path, sizeof path, "/v1/admin/numbering/numbers/%s/history", A_U);
	json_t *ha = admin_get(fx->a.port, path);
	snprintf(path, sizeof path, "/v1/admin/numbering/numbers/%s/history", B_U);
	json_t *hb = admin_get(fx->a.port, path);
	json_t *la = json_object_get(ha, "history"), *lb = json_object_get(hb, "history");
	assert_true(json_array_size(la) >= 10);
	assert_int_equal(json_array_size(la), json_array_size(lb));
	for (size_t i = 0; i < json_array_size(la); i++) {
		json_t *sa = audit_shape(json_array_get(la, i), A);
		json_t *sb = audit_shape(json_array_get(lb, i), B);
		char *ja = json_dumps(sa, JSON_SORT_KEYS), *jb = json_dumps(sb, JSON_SORT_KEYS);
		if (!json_equal(sa, sb))
			fail_msg("audit row %zu differs:\nHTTP %s\ngRPC %s", i, ja, jb);
		free(ja);
		free(jb);
		json_decref(sa);
		json_decref(sb);
	}
	json_decref(ha);
	json_decref(hb);
	/* same events */
	const char *db = fx->store + strlen("sqlite://");
	char ea[4096], eb[4096];
	events_of(db, A, ea, sizeof ea);
	events_of(db, B, eb, sizeof eb);
	assert_true(strlen(ea) > 0);
	assert_string_equal(ea, eb);
}

/* ---- TLS with client-certificate verification ----------------------------------------------- */

static void sh(const char *dir, const char *cmd)
{
	char full[2048];
	snprintf(full, sizeof full, "cd '%s' && (%s) >>openssl.log 2>&1", dir, cmd);
	if (system(full) != 0)
		fail_msg("failed: %s (see %s/openssl.log)", cmd, dir);
}

/* A CA; a server certificate for 127.0.0.1; client certificates "billing" (allowlisted) and
 * "intruder" (same CA, not allowlisted), made by the openssl CLI. EC P-256 keys: fast. */
static void make_certs(const char *dir)
{
	const char *key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out";
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
	         "%s ca.key && openssl req -x509 -new -key ca.key -out ca.pem -days 2 "
	         "-subj /CN=test-ca",
	         key);
	sh(dir, cmd);
	const struct {
		const char *name, *ext;
	} certs[] = {
	    {"localhost", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"},
	    {"billing", "extendedKeyUsage=clientAuth"},
	    {"intruder", "extendedKeyUsage=clientAuth"},
	};
	for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
		snprintf(cmd, sizeof cmd,
		         "printf '%1$s\\n' > %2$s.ext && %3$s %2$s.key && "
		         "openssl req -new -key %2$s.key -out %2$s.csr -subj /CN=%2$s && "
		         "openssl x509 -req -in %2$s.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		         "-out %2$s.pem -days 2 -extfile %2$s.ext",
		         certs[i].ext, certs[i].name, key);
		sh(dir, cmd);
	}
}

static char *slurp(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = calloc(1, 65536);
	assert_non_null(buf);
	size_t n = fread(buf, 1, 65535, f);
	fclose(f);
	assert_true(n > 0);
	return buf;
}

/* A TLS channel to 127.0.0.1:gport trusting ca.pem, with client certificate "<client>.pem"
 * (NULL: none). */
static grpc_channel *tls_channel(const char *dir, uint16_t gport, const char *client)
{
	char target[64], name[64];
	char *ca = slurp(dir, "ca.pem"), *cert = NULL, *key = NULL;
	grpc_ssl_pem_key_cert_pair pair = {0};
	if (client) {
		snprintf(name, sizeof name, "%s.pem", client);
		cert = slurp(dir, name);
		snprintf(name, sizeof name, "%s.key", client);
		key = slurp(dir, name);
		pair.private_key = key;
		pair.cert_chain = cert;
	}
	grpc_channel_credentials *cr =
	    grpc_ssl_credentials_create_ex(ca, client ? &pair : NULL, NULL, NULL);
	assert_non_null(cr);
	snprintf(target, sizeof target, "127.0.0.1:%u", gport);
	grpc_channel *ch = grpc_channel_create(target, cr, NULL);
	grpc_channel_credentials_release(cr);
	free(ca);
	free(cert);
	free(key);
	return ch;
}

/* Ready: an allowlisted TLS client gets an answer to ValidateLease. */
static bool tls_ready(srv_t *s)
{
	grpc_channel *ch = tls_channel(s->dir, s->gport, "billing");
	gres_t r;
	Ghasi__Numbering__V1__ValidateLeaseResponse *o = validate(ch, FIRST, TENANT_E, &r);
	grpc_channel_destroy(ch);
	if (o)
		ghasi__numbering__v1__validate_lease_response__free_unpacked(o, NULL);
	gres_done(&r);
	return o != NULL;
}

static int audit_count(const char *db, const char *actor)
{
	char cmd[1024], out[64] = "";
	snprintf(cmd, sizeof cmd,
	         "sqlite3 '%s' \"SELECT count(*) FROM gh_audit WHERE actor = '%s'\"", db, actor);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t len = fread(out, 1, sizeof out - 1, f);
	out[len] = '\0';
	pclose(f);
	return atoi(out);
}

static void test_tls_client_cert(void **state)
{
	fx_t *fx = *state;
	make_certs(fx->a.dir);
	char cert[600], key[600], ca[600];
	snprintf(cert, sizeof cert, "GHASI_HTTP_TLS_CERT=%s/localhost.pem", fx->a.dir);
	snprintf(key, sizeof key, "GHASI_HTTP_TLS_KEY=%s/localhost.key", fx->a.dir);
	snprintf(ca, sizeof ca, "GHASI_HTTP_TLS_CLIENT_CA=%s/ca.pem", fx->a.dir);
	const char *extra[] = {cert, key, ca, "GHASI_HTTP_CLIENT_CN_ALLOWLIST=billing,routing",
	                       NULL};
	fx->a.ready = tls_ready;
	srv_start(&fx->a, fx->store, extra);

	/* allowlisted CN: served; its mutations are audited as service:<cn> */
	grpc_channel *ok = tls_channel(fx->a.dir, fx->a.gport, "billing");
	gres_t r;
	Ghasi__Numbering__V1__ValidateLeaseResponse *o = validate(ok, FIRST, TENANT_E, &r);
	if (!o)
		fail_msg("ValidateLease over TLS: %d %s", r.status, r.details);
	ghasi__numbering__v1__validate_lease_response__free_unpacked(o, NULL);
	gres_done(&r);
	Ghasi__Numbering__V1__ReserveRequest rq = GHASI__NUMBERING__V1__RESERVE_REQUEST__INIT;
	rq.identifier = FIRST;
	rq.tenant_id = TENANT_E;
	const char *db = fx->store + strlen("sqlite://");
	assert_int_equal(audit_count(db, "service:billing"), 0);
	rpc(ok, M "Reserve", &rq.base, NULL, 5000, &r);
	if (r.status != GRPC_STATUS_OK)
		fail_msg("Reserve over TLS: %d %s", r.status, r.details);
	gres_done(&r);
	assert_int_equal(audit_count(db, "service:billing"), 1);
	assert_int_equal(audit_count(db, "service:unverified"), 0);
	grpc_channel_destroy(ok);

	/* a certificate of the same CA whose CN is not allowlisted: PERMISSION_DENIED, nothing run
	 */
	grpc_channel *other = tls_channel(fx->a.dir, fx->a.gport, "intruder");
	o = validate(other, FIRST, TENANT_E, &r);
	assert_null(o);
	expect_err(&r, GRPC_STATUS_PERMISSION_DENIED, "PERMISSION_DENIED", "");
	gres_done(&r);
	Ghasi__Numbering__V1__ReleaseRequest lq = GHASI__NUMBERING__V1__RELEASE_REQUEST__INIT;
	lq.identifier = FIRST;
	lq.tenant_id = TENANT_E;
	rpc(other, M "Release", &lq.base, NULL, 5000, &r);
	expect_err(&r, GRPC_STATUS_PERMISSION_DENIED, "PERMISSION_DENIED", "");
	gres_done(&r);
	assert_int_equal(audit_count(db, "service:intruder"), 0);
	grpc_channel_destroy(other);

	/* no client certificate: the handshake fails, the call never reaches the server */
	grpc_channel *anon = tls_channel(fx->a.dir, fx->a.gport, NULL);
	o = validate(anon, FIRST, TENANT_E, &r);
	assert_null(o);
	if (r.status != GRPC_STATUS_UNAVAILABLE)
		fail_msg("no client certificate: status %d (%s), want UNAVAILABLE", r.status,
		         r.details);
	assert_string_equal(r.ecode, "");
	gres_done(&r);
	grpc_channel_destroy(anon);

	/* plaintext to the TLS port: refused too */
	grpc_channel *plain = channel(fx->a.gport);
	o = validate(plain, FIRST, TENANT_E, &r);
	assert_null(o);
	assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
	gres_done(&r);
	grpc_channel_destroy(plain);
	assert_int_equal(srv_stop(&fx->a), 0);
}

/* ---- an independent client: Node's @grpc/grpc-js ------------------------------------------- */

/* tests/grpc-node/run.sh (npm installs grpc-js into the build dir when missing) runs client.js,
 * which generates its stub from the .proto at run time and drives every RPC, including errors;
 * one JSON line per check. Every line must be ok, every RPC of the service covered. Skipped
 * without node/npm unless GH_TEST_REQUIRE=1. */
static void test_node_client(void **state)
{
	fx_t *fx = *state;
	if (system("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0) {
		if (gh_test_required())
			fail_msg("node and npm are required (GH_TEST_REQUIRE=1)");
		skip();
	}
	const char *src = getenv("GH_SOURCE_ROOT"), *build = getenv("GH_BUILD_ROOT");
	assert_non_null(src);
	assert_non_null(build);
	fx_start(fx, NULL);
	char second[32];
	avail(fx->a.port, 0, second);
	char cmd[4096];
	snprintf(cmd, sizeof cmd,
	         "'%1$s/tests/grpc-node/run.sh' '%2$s' 127.0.0.1:%3$u "
	         "'%1$s/proto/ghasi/numbering/v1/numbering.proto' '%4$s' '%5$s' '%6$s' '%7$s'",
	         src, build, fx->a.gport, FIRST, second, TENANT_E, TENANT_S);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	static const char *const rpcs[] = {"ValidateLease", "Lookup", "Reserve", "Assign",
	                                   "Release",       "Recall", "Suspend", "Resume"};
	int covered[8] = {0}, errors[8] = {0}, checks = 0, bad = 0, summary = 0;
	char line[8192];
	while (fgets(line, sizeof line, f)) {
		json_t *j = json_loads(line, 0, NULL);
		if (!j) {
			print_message("node: %s", line);
			continue;
		}
		if (json_is_true(json_object_get(j, "summary"))) {
			summary = 1;
			assert_int_equal(json_integer_value(json_object_get(j, "failed")), 0);
			assert_int_equal(json_integer_value(json_object_get(j, "passed")), checks);
		} else {
			checks++;
			const char *rpc = json_string_value(json_object_get(j, "rpc"));
			bool ok = json_is_true(json_object_get(j, "ok"));
			if (!ok) {
				bad++;
				print_message("node check failed: %s", line);
			}
			json_t *d = json_object_get(j, "detail");
			for (int i = 0; rpc && i < 8; i++)
				if (strcmp(rpc, rpcs[i]) == 0) {
					covered[i] += ok;
					errors[i] += ok && json_object_get(d, "error_code") != NULL;
				}
		}
		json_decref(j);
	}
	int st = pclose(f);
	assert_int_equal(bad, 0);
	assert_true(summary);
	assert_int_equal(st, 0);
	for (int i = 0; i < 8; i++) {
		if (!covered[i] || !errors[i])
			fail_msg("%s: %d checks, %d of them errors", rpcs[i], covered[i],
			         errors[i]);
	}
	assert_true(checks >= 30);
}

int main(void)
{
	grpc_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_validate_lookup, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stale_index_is_unavailable, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_drains, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mutations, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reserve_race, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_parity_http_grpc, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tls_client_cert, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_node_client, fx_setup, fx_teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
