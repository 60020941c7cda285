/* bench_grpc: ValidateLease over the numbering gRPC surface (issue 5, "Proof", bench/): unary
 * calls from a C client on gRPC's C core, 32 outstanding at all times (target >= 30k calls/s,
 * p99 <= 2 ms on the 2-core machine).
 * bench.sh: quiet
 *
 * `ghasi serve` ($GHASI_BIN, else ../src/ghasi/ghasi next to this binary) runs on SQLite with
 * the demo seed, HTTP and gRPC on free loopback ports, pinned to CPU 0. The seed's first MSISDN
 * is reserved and assigned to tenant-enterprise over gRPC, so that every measured call is a
 * full "allowed" decision. The client, pinned to CPU 1, keeps `-c` calls in flight on one
 * completion queue, re-issuing each on its completion, for `-d` seconds after a 0.5 s warm-up;
 * a non-OK status or a decision other than allowed fails the run (an error path must never be
 * what is measured). Latency is request start to status, per call. Prints one line:
 *   bench_grpc calls_per_s=N p50_us=N p99_us=N calls=N conc=N server_cpus=1 server_threads=N
 * Options: -d SECONDS (5), -c CONCURRENT (32), -t SERVER_THREADS (numbering.grpc_threads;
 * 4, its default). */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "benchutil.h"
#include "numbering.pb-c.h"

#define M      "/ghasi.numbering.v1.Numbering/"
#define FIRST  "+93701234567" /* the seed's first MSISDN */
#define TENANT "tenant-enterprise"
#define MAXC   1024

/* GET path on 127.0.0.1:port with Connection: close; the HTTP status or -1. */
static int http_get_status(uint16_t port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int st = -1;
	char buf[512];
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
		int n = snprintf(buf, sizeof buf,
		                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
		                 path);
		ssize_t r;
		if (write(fd, buf, (size_t)n) == n && (r = read(fd, buf, sizeof buf - 1)) > 12) {
			buf[r] = '\0';
			st = atoi(buf + 9);
		}
	}
	close(fd);
	return st;
}

/* CPU time and run-queue wait (ns) summed over pid's threads, from /proc/<pid>/task/N/schedstat
 * ("run_ns wait_ns timeslices"): the wait is what other load on CPU 0 took from the server. */
static void sched_totals(pid_t pid, uint64_t *run_ns, uint64_t *wait_ns)
{
	char path[300];
	*run_ns = *wait_ns = 0;
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		FILE *f = fopen(path, "r");
		unsigned long long r, w;
		if (f && fscanf(f, "%llu %llu", &r, &w) == 2) {
			*run_ns += r;
			*wait_ns += w;
		}
		if (f)
			fclose(f);
	}
	closedir(d);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof set, &set);
}

/* ghasi serve pinned to CPU 0, ready; the pid or -1. */
static pid_t serve(const bench_tmpdb_t *db, uint16_t port, uint16_t gport, int threads)
{
	const char *bin = bench_ghasi_bin();
	if (!bin)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		char p[16], gp[16], th[16], logp[300];
		snprintf(p, sizeof p, "%u", port);
		snprintf(gp, sizeof gp, "%u", gport);
		snprintf(th, sizeof th, "%d", threads);
		setenv("GHASI_HTTP_PORT", p, 1);
		setenv("GHASI_NUMBERING_GRPC_PORT", gp, 1);
		setenv("GHASI_NUMBERING_GRPC_BIND", "127.0.0.1", 1);
		setenv("GHASI_NUMBERING_GRPC_THREADS", th, 1);
		setenv("GHASI_STORE_URL", db->url, 1);
		setenv("GHASI_BUS_URL", "inproc://", 1);
		setenv("GHASI_SERVICE_ENABLED", "numbering", 1);
		setenv("GHASI_LOG_LEVEL", "warn", 1);
		setenv("GHASI_NUMBERING_INDEX_CAPACITY", "100000", 1);
		snprintf(logp, sizeof logp, "%s/ghasi.log", db->dir);
		int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		pin(0);
		execl(bin, "ghasi", "serve", (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	for (int i = 0; i < 600; i++) {
		int st;
		if (http_get_status(port, "/readyz") == 200)
			return pid;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "bench_grpc: ghasi exited at start; log %s/ghasi.log\n",
			        db->dir);
			return -1;
		}
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fprintf(stderr, "bench_grpc: ghasi not ready in 30 s; log %s/ghasi.log\n", db->dir);
	return -1;
}

static void unserve(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* ---- the client ---------------------------------------------------------------------------- */

/* One outstanding call: its ops' outputs live here until the completion. */
typedef struct {
	grpc_call *call;
	double t0;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *resp;
	grpc_status_code status;
	grpc_slice details;
	grpc_byte_buffer *send; /* this call's request: the core may take its slices */
} slot_t;

typedef struct {
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_slice method;
	grpc_slice req; /* the one request, referenced by every call's byte buffer */
} client_t;

static int issue(client_t *c, slot_t *s)
{
	memset(s, 0, sizeof *s);
	s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, c->method,
	                                   NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!s->call)
		return -1;
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->send = grpc_raw_byte_buffer_create(&c->req, 1);
	grpc_op ops[6];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = s->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &s->resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &s->trail_md;
	ops[5].data.recv_status_on_client.status = &s->status;
	ops[5].data.recv_status_on_client.status_details = &s->details;
	s->t0 = bench_now_s();
	return grpc_call_start_batch(s->call, ops, 6, s, NULL) == GRPC_CALL_OK ? 0 : -1;
}

/* A completed call: 0 when OK with an allowed decision (checked when check is set). */
static int settle(slot_t *s, int check)
{
	int rc = s->status == GRPC_STATUS_OK && s->resp ? 0 : -1;
	if (rc < 0) {
		char d[256];
		size_t n = GRPC_SLICE_LENGTH(s->details);
		n = n < sizeof d - 1 ? n : sizeof d - 1;
		memcpy(d, GRPC_SLICE_START_PTR(s->details), n);
		d[n] = '\0';
		fprintf(stderr, "bench_grpc: ValidateLease status %d: %s\n", s->status, d);
	} else if (check) {
		grpc_byte_buffer_reader rd;
		grpc_byte_buffer_reader_init(&rd, s->resp);
		grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
		Ghasi__Numbering__V1__ValidateLeaseResponse *o =
		    ghasi__numbering__v1__validate_lease_response__unpack(
		        NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
		if (!o || !o->allowed) {
			fprintf(stderr, "bench_grpc: ValidateLease did not answer allowed\n");
			rc = -1;
		}
		if (o)
			ghasi__numbering__v1__validate_lease_response__free_unpacked(o, NULL);
		grpc_slice_unref(all);
		grpc_byte_buffer_reader_destroy(&rd);
	}
	if (s->resp)
		grpc_byte_buffer_destroy(s->resp);
	grpc_byte_buffer_destroy(s->send);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_call_unref(s->call);
	s->call = NULL;
	return rc;
}

/* One blocking unary call of method with m; the status (-1: could not start). */
static int unary(client_t *c, const char *method, const ProtobufCMessage *m)
{
	uint8_t buf[512];
	size_t n = protobuf_c_message_pack(m, buf);
	grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
	client_t u = {
	    .ch = c->ch, .cq = c->cq, .method = grpc_slice_from_static_string(method), .req = sl};
	slot_t s;
	int st = -1;
	if (issue(&u, &s) == 0) {
		grpc_event ev =
		    grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		st = ev.type == GRPC_OP_COMPLETE && ev.success ? (int)s.status : -1;
		settle(&s, 0);
	}
	grpc_slice_unref(sl);
	return st;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run(client_t *c, pid_t srv, int conc, double dur_s, int threads)
{
	uint64_t run0 = 0, wait0 = 0, run1, wait1;
	size_t cap = 1 << 22, nlat = 0;
	double *lat = malloc(cap * sizeof *lat);
	slot_t *slots = calloc((size_t)conc, sizeof *slots);
	int rc = 0, outstanding = 0;
	long calls = 0;
	if (!lat || !slots) {
		free(lat);
		free(slots);
		return 1;
	}
	for (int i = 0; i < conc; i++) {
		if (issue(c, &slots[i]) < 0) {
			fprintf(stderr, "bench_grpc: cannot start a call\n");
			rc = 1;
			break;
		}
		outstanding++;
	}
	double start = bench_now_s(), t_meas = start + 0.5, t_end = t_meas + dur_s;
	int measuring = 0;
	while (outstanding > 0) {
		grpc_event ev =
		    grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE) {
			rc = 1;
			break;
		}
		slot_t *s = ev.tag;
		double now = bench_now_s();
		outstanding--;
		/* decode every 64th answer: the check, without measuring protobuf-c */
		if (!ev.success || settle(s, calls % 64 == 0) < 0)
			rc = 1;
		if (!measuring && now >= t_meas) {
			measuring = 1;
			start = now;
			sched_totals(srv, &run0, &wait0);
		}
		if (measuring && now < t_end) {
			calls++;
			if (nlat < cap)
				lat[nlat++] = (now - s->t0) * 1e6;
		}
		if (rc == 0 && now < t_end) {
			if (issue(c, s) < 0) {
				rc = 1;
				continue;
			}
			outstanding++;
		}
	}
	double secs = bench_now_s() - start;
	sched_totals(srv, &run1, &wait1);
	if (rc == 0 && nlat > 0) {
		qsort(lat, nlat, sizeof *lat, cmp_double);
		bench_report(
		    "bench_grpc",
		    "calls_per_s=%.0f p50_us=%.0f p99_us=%.0f calls=%ld conc=%d "
		    "server_cpus=1 server_threads=%d cpu_us_per_call=%.1f runq_wait_pct=%.1f",
		    (double)calls / (secs < t_end - t_meas ? secs : t_end - t_meas), lat[nlat / 2],
		    lat[(size_t)((double)nlat * 0.99)], calls, conc, threads,
		    calls ? (double)(run1 - run0) / 1e3 / (double)calls : 0.0,
		    (double)(wait1 - wait0) / 1e7 / secs);
	}
	free(lat);
	free(slots);
	return rc;
}

int main(int argc, char **argv)
{
	double dur = 5;
	int conc = 32, threads = 4, opt;
	while ((opt = getopt(argc, argv, "d:c:t:")) != -1) {
		switch (opt) {
		case 'd': dur = atof(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 't': threads = atoi(optarg); break;
		default:
			fprintf(stderr,
			        "usage: bench_grpc [-d SECONDS] [-c CONCURRENT] [-t THREADS]\n");
			return 2;
		}
	}
	if (dur <= 0 || conc < 1 || conc > MAXC || threads < 1 || threads > 256) {
		fprintf(stderr, "bench_grpc: bad option\n");
		return 2;
	}
	bench_tmpdb_t db;
	if (bench_tmpdb_make(&db, "bench_grpc") < 0)
		return 1;
	uint16_t port = bench_free_port(), gport = bench_free_port();
	pid_t pid = port && gport ? serve(&db, port, gport, threads) : -1;
	if (pid < 0) {
		bench_tmpdb_remove(&db);
		return 1;
	}
	pin(1);
	grpc_init();
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%u", gport);
	grpc_channel_credentials *cr = grpc_insecure_credentials_create();
	client_t c = {.ch = grpc_channel_create(target, cr, NULL),
	              .cq = grpc_completion_queue_create_for_next(NULL),
	              .method = grpc_slice_from_static_string(M "ValidateLease")};
	grpc_channel_credentials_release(cr);

	int rc = 1;
	Ghasi__Numbering__V1__ReserveRequest rq = GHASI__NUMBERING__V1__RESERVE_REQUEST__INIT;
	rq.identifier = FIRST;
	rq.tenant_id = TENANT;
	Ghasi__Numbering__V1__AssignRequest aq = GHASI__NUMBERING__V1__ASSIGN_REQUEST__INIT;
	aq.identifier = FIRST;
	aq.tenant_id = TENANT;
	int st1 = unary(&c, M "Reserve", &rq.base), st2 = unary(&c, M "Assign", &aq.base);
	if (st1 != GRPC_STATUS_OK || st2 != GRPC_STATUS_OK) {
		fprintf(stderr, "bench_grpc: Reserve/Assign status %d/%d; log %s/ghasi.log\n", st1,
		        st2, db.dir);
	} else {
		Ghasi__Numbering__V1__ValidateLeaseRequest vq =
		    GHASI__NUMBERING__V1__VALIDATE_LEASE_REQUEST__INIT;
		vq.identifier = FIRST;
		vq.tenant_id = TENANT;
		uint8_t buf[256];
		size_t n = protobuf_c_message_pack(&vq.base, buf);
		c.req = grpc_slice_from_copied_buffer((const char *)buf, n);
		rc = run(&c, pid, conc, dur, threads);
		grpc_slice_unref(c.req);
	}
	grpc_channel_destroy(c.ch);
	grpc_completion_queue_shutdown(c.cq);
	while (grpc_completion_queue_next(c.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(c.cq);
	grpc_shutdown();
	unserve(pid);
	bench_tmpdb_remove(&db);
	return rc;
}
