// An independent client of ghasi.numbering.v1.Numbering: @grpc/grpc-js with the service
// generated at run time from numbering.proto by @grpc/proto-loader (no code shared with the C
// server). It drives every RPC, including their errors, against a fresh `ghasi serve` with the
// demo seed, and prints one JSON line per check:
//   {"check":"...","rpc":"Reserve","ok":true|false,"detail":...}
// then {"summary":true,"passed":N,"failed":N}; exit status 1 when a check failed.
//
//   node client.js ADDRESS PROTO FIRST SECOND TENANT_A TENANT_B
// FIRST and SECOND: AVAILABLE MSISDNs; TENANT_A/B: two active tenants (pools) of the seed.
'use strict';
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [addr, protoPath, first, second, tenantA, tenantB] = process.argv.slice(2);
if (!tenantB) {
	console.error('usage: client.js ADDRESS PROTO FIRST SECOND TENANT_A TENANT_B');
	process.exit(2);
}
const def = loader.loadSync(protoPath, {keepCase: true, longs: Number, enums: String, defaults: true});
const pkg = grpc.loadPackageDefinition(def).ghasi.numbering.v1;
const client = new pkg.Numbering(addr, grpc.credentials.createInsecure());
const S = grpc.status;
let passed = 0, failed = 0;

function report(check, rpc, ok, detail) {
	ok ? passed++ : failed++;
	console.log(JSON.stringify({check, rpc, ok, detail}));
}

// One unary call: {err, res, trailers} (trailers: the status metadata as an object).
function call(rpc, req, key, deadlineMs = 5000) {
	return new Promise((resolve) => {
		const md = new grpc.Metadata();
		if (key !== undefined)
			md.set('idempotency-key', key);
		let out = {};
		let pending = 2;
		const done = () => { if (--pending === 0) resolve(out); };
		const c = client[rpc](req, md, {deadline: Date.now() + deadlineMs}, (err, res) => {
			out.err = err;
			out.res = res;
			done();
		});
		c.on('status', (st) => {
			out.trailers = st.metadata ? st.metadata.getMap() : {};
			done();
		});
	});
}

// An OK answer that satisfies pred(res, trailers).
async function ok(check, rpc, req, pred, key) {
	const r = await call(rpc, req, key);
	if (r.err) {
		report(check, rpc, false, {code: r.err.code, details: r.err.details});
		return null;
	}
	let good = false;
	try {
		good = !!pred(r.res, r.trailers);
	} catch (e) {
		good = false;
	}
	report(check, rpc, good, r.res);
	return good ? r.res : null;
}

// An error with status code, the API code in `error-code` and as the message prefix, and
// (when given) the field in `error-field`.
async function fails(check, rpc, req, code, apiCode, field, key, replayed) {
	const r = await call(rpc, req, key);
	const t = r.trailers || {};
	const got = r.err ? {code: r.err.code, details: r.err.details, error_code: t['error-code'],
		error_field: t['error-field'], replayed: t['idempotent-replayed']} : {unexpected_ok: r.res};
	const good = !!r.err && r.err.code === code && t['error-code'] === apiCode &&
		typeof r.err.details === 'string' && r.err.details.startsWith(apiCode + ':') &&
		(field === undefined ? t['error-field'] === undefined : t['error-field'] === field) &&
		(replayed === undefined || (t['idempotent-replayed'] === 'true') === replayed);
	report(check, rpc, good, got);
}

async function main() {
	await new Promise((resolve, reject) =>
		client.waitForReady(Date.now() + 10000, (e) => (e ? reject(e) : resolve())));

	// ValidateLease, Lookup
	await ok('validate_available_not_leased', 'ValidateLease', {identifier: first, tenant_id: tenantA},
		(r) => r.allowed === false && r.reason === 'REASON_NOT_LEASED' && r.identifier === first);
	await fails('validate_identifier_required', 'ValidateLease', {identifier: '', tenant_id: tenantA},
		S.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'identifier');
	await fails('validate_tenant_required', 'ValidateLease', {identifier: first, tenant_id: ''},
		S.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'tenant_id');
	await ok('validate_unregistered', 'ValidateLease', {identifier: '+93709999999', tenant_id: tenantA},
		(r) => r.allowed === false && r.reason === 'REASON_NOT_REGISTERED');
	await ok('lookup_available', 'Lookup', {identifier: first},
		(r) => r.identifier === first && r.state === 'STATE_AVAILABLE' && r.kind === 'KIND_MSISDN');
	await fails('lookup_not_found', 'Lookup', {identifier: '+93709999999'}, S.NOT_FOUND, 'NOT_FOUND');

	// Reserve: arguments, CAS, idempotency
	await fails('reserve_bad_identifier', 'Reserve', {identifier: '###', tenant_id: tenantB},
		S.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'identifier');
	await fails('reserve_stale_version', 'Reserve',
		{identifier: first, tenant_id: tenantB, expected_version: 999}, S.ABORTED, 'CONFLICT',
		'/expected_version');
	await fails('reserve_empty_key', 'Reserve', {identifier: first, tenant_id: tenantB},
		S.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'idempotency-key', '');
	const res = await ok('reserve', 'Reserve',
		{identifier: first, tenant_id: tenantB},
		(r, t) => r.state === 'STATE_RESERVED' && r.tenant_id === tenantB && r.reservation &&
			t['idempotent-replayed'] === undefined, 'node-k1');
	await ok('reserve_replayed', 'Reserve',
		{identifier: first, tenant_id: tenantB},
		(r, t) => res && r.version === res.version && t['idempotent-replayed'] === 'true', 'node-k1');
	await fails('reserve_key_reused', 'Reserve', {identifier: first, tenant_id: tenantB, expected_version: 1},
		S.FAILED_PRECONDITION, 'IDEMPOTENCY_KEY_REUSED', undefined, 'node-k1');
	await fails('reserve_taken', 'Reserve', {identifier: first, tenant_id: tenantA},
		S.ABORTED, 'INVALID_TRANSITION');

	// Assign; ValidateLease answers for the holder only
	const asg = await ok('assign', 'Assign',
		{identifier: first, tenant_id: tenantB, auto_renew: 'AUTO_RENEW_OFF',
			expected_version: res ? res.version : 0},
		(r) => r.state === 'STATE_ASSIGNED' && r.lease && r.lease.status === 'LEASE_STATUS_ACTIVE' &&
			r.lease.auto_renew === false);
	await fails('assign_other_tenant', 'Assign', {identifier: first, tenant_id: tenantA},
		S.ABORTED, 'INVALID_TRANSITION');
	await ok('validate_allowed', 'ValidateLease', {identifier: first, tenant_id: tenantB},
		(r) => r.allowed === true && r.reason === 'REASON_ALLOWED' && asg &&
			r.lease_id === asg.lease.lease_id);
	await ok('validate_wrong_tenant', 'ValidateLease', {identifier: first, tenant_id: tenantA},
		(r) => r.allowed === false && r.reason === 'REASON_WRONG_TENANT');

	// Suspend, Resume, Recall (compliance)
	await ok('suspend', 'Suspend', {identifier: first, reason: 'billing hold'},
		(r) => r.state === 'STATE_SUSPENDED');
	await fails('suspend_twice', 'Suspend', {identifier: first, reason: 'again'},
		S.ABORTED, 'INVALID_TRANSITION');
	await ok('validate_suspended', 'ValidateLease', {identifier: first, tenant_id: tenantB},
		(r) => r.allowed === false && r.reason === 'REASON_LEASE_SUSPENDED');
	await ok('resume', 'Resume', {identifier: first, reason: 'paid'}, (r) => r.state === 'STATE_ASSIGNED');
	await fails('resume_not_suspended', 'Resume', {identifier: first}, S.ABORTED, 'INVALID_TRANSITION');
	await fails('recall_bad_reason', 'Recall',
		{identifier: first, reason: 'QUARANTINE_REASON_TENANT_RELEASE'}, S.INVALID_ARGUMENT,
		'INVALID_ARGUMENT', 'reason');
	await ok('recall', 'Recall',
		{identifier: first, reason: 'QUARANTINE_REASON_RECALL_ABUSE', justification: 'fraud desk'},
		(r) => r.state === 'STATE_QUARANTINED' && r.quarantine &&
			r.quarantine.reason === 'QUARANTINE_REASON_RECALL_ABUSE');
	await fails('recall_not_found', 'Recall', {identifier: '+93709999999'}, S.NOT_FOUND, 'NOT_FOUND');

	// Release
	await ok('reserve_second', 'Reserve', {identifier: second, tenant_id: tenantA},
		(r) => r.state === 'STATE_RESERVED');
	await fails('release_other_tenant', 'Release', {identifier: second, tenant_id: tenantB},
		S.ABORTED, 'INVALID_TRANSITION');
	await fails('release_tenant_required', 'Release', {identifier: second, tenant_id: ''},
		S.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'tenant_id');
	await ok('release', 'Release', {identifier: second, tenant_id: tenantA},
		(r) => r.state === 'STATE_AVAILABLE');

	// Deadline: an already expired deadline never reaches a handler
	const d = await call('ValidateLease', {identifier: first, tenant_id: tenantA}, undefined, -1000);
	report('deadline_exceeded', 'ValidateLease', !!d.err && d.err.code === S.DEADLINE_EXCEEDED,
		d.err ? {code: d.err.code} : d.res);
}

main()
	.catch((e) => report('client', '', false, String(e && e.stack || e)))
	.finally(() => {
		console.log(JSON.stringify({summary: true, passed, failed}));
		client.close();
		process.exitCode = failed ? 1 : 0;
	});
