/* archive: the write-once archive (issue 4 item 5: regulator exports, 7-year retention).
 *
 * A directory (config archive.dir) holding
 *   objects/<h[0:2]>/<h>   the bytes, stored once under their SHA-256 h (content-addressed)
 *   names/<name>.json      one manifest per name: {name, sha256, size, created, retention_until,
 *                          meta}; '/' in a name is stored as "%2F"
 *   tmp/                   files being written
 * Every file is written temp -> fsync -> fchmod 0444 -> link() into place -> fsync(dir)
 * (STYLE.md; redis rdbSave). link() rather than rename(): it never replaces an existing file,
 * so "create if absent" is atomic across threads and processes, for objects and for names.
 *
 * Contract:
 * - A name is written once. Putting it again with the same bytes is an idempotent success
 *   (the stored manifest is returned, created/retention/meta unchanged, ref->existed = 1);
 *   with other bytes it is -EEXIST. Of concurrent puts of one name exactly one content wins.
 * - A name is deleted only when now >= retention_until (-EPERM before). Its object goes when
 *   no other name refers to it.
 * - Reads verify size and SHA-256 of the object (-EBADMSG on a mismatch).
 * - Crash safety: the object is durable before the name is linked, and each file is complete
 *   before it is linked, so after a crash at any point a name is either absent or complete with
 *   a complete object. A crash between the two links can leave an object without a name
 *   (harmless, complete, never listed); files left in tmp/ are removed by gh_archive_open once
 *   older than an hour (younger ones may belong to another process at work).
 * - Write-once is enforced by this API and by 0444 modes; the filesystem owner can still
 *   remove files. Retention against a hostile administrator needs WORM storage underneath.
 *
 * Thread-safe: puts run in parallel (a shared flock on <dir>/.lock); a delete takes it
 * exclusively while it decides whether the object is still referenced. Processes sharing the
 * directory coordinate through the same lock. */
#ifndef GH_ARCHIVE_H
#define GH_ARCHIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* Names: 1..200 bytes, components of [A-Za-z0-9._-] separated by single '/', no "." or ".."
 * component, no leading or trailing '/' ("numbering/exports/2026-10/numbers.csv"). */
#define GH_ARCHIVE_NAME_MAX 200

typedef struct gh_archive_s gh_archive_t;

/* A stored name, talloc-allocated; meta is freed (decref) with it. */
typedef struct gh_archive_ref_s {
	char *name;
	char sha256[65];
	uint64_t size;
	int64_t created_ms;
	int64_t retention_until_ms;
	json_t *meta; /* an object, never NULL */
	bool existed; /* put only: the name already held these bytes */
} gh_archive_ref_t;

/* Open (creating as needed) the archive at dir; the clock dates manifests and decides
 * retention. *out is a talloc child of ctx. Returns 0, -EINVAL, -EACCES, -EIO, -ENOMEM. */
int gh_archive_open(void *ctx, const char *dir, gh_clock_t *clock, gh_archive_t **out);

/* 1 when name is a valid archive name, else 0. */
int gh_archive_name_valid(const char *name);

/* Store data[0..len) under name, kept at least until retention_until_ms (>= now), with meta (a
 * JSON object or NULL). *out (may be NULL) gets the ref, a talloc child of ctx.
 * Returns 0 (stored, or already stored with the same bytes); -EEXIST (name holds other bytes);
 * -EINVAL (bad name, retention in the past, meta not an object); -EBADMSG (the existing
 * manifest is unreadable); -EIO; -ENOSPC; -ENOMEM. */
int gh_archive_put(gh_archive_t *ar, const char *name, const void *data, size_t len,
                   int64_t retention_until_ms, const json_t *meta, void *ctx,
                   gh_archive_ref_t **out);

/* The manifest of name. Returns 0, -ENOENT, -EINVAL (bad name), -EBADMSG (corrupt manifest),
 * -EIO, -ENOMEM. */
int gh_archive_stat(gh_archive_t *ar, const char *name, void *ctx, gh_archive_ref_t **out);

/* The bytes of name, verified against the manifest's size and SHA-256; *data (NUL-terminated
 * for convenience, *len excludes it) and *ref (may be NULL) are talloc children of ctx.
 * Returns as gh_archive_stat, plus -EBADMSG when the object is missing or does not match. */
int gh_archive_get(gh_archive_t *ar, const char *name, void *ctx, void **data, size_t *len,
                   gh_archive_ref_t **ref);

/* Path of the object file of ref (read-only; for streaming it to a client or a verifier);
 * talloc string child of ctx. */
char *gh_archive_object_path(gh_archive_t *ar, void *ctx, const gh_archive_ref_t *ref);

/* Delete name once its retention has passed (now >= retention_until). Returns 0, -ENOENT,
 * -EPERM (still retained), -EINVAL, -EBADMSG, -EIO. */
int gh_archive_delete(gh_archive_t *ar, const char *name);

#endif
