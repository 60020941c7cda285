/* router: (method, path pattern) -> target, matched without allocation.
 *
 * Patterns are absolute paths of '/'-separated segments. A segment is a literal, a parameter
 * "{name}", or a parameter with a custom-method suffix "{name}:verb" (specs/conventions.md:
 * POST /v1/numbering/numbers/{id}:reserve). Literals may contain ':' ("/v1/things:batchGet").
 *
 * Matching works on the raw (still percent-encoded) path, segment by segment down a trie:
 * a literal beats "{p}:verb", which beats "{p}"; on a dead end the next alternative is tried.
 * A parameter matches a non-empty segment; in the last segment a ':' is the verb separator, so
 * "{p}" alone does not match "x:verb" there (a value with a colon is sent as %3A). Parameter
 * values point into the path and are not decoded.
 *
 * Build the table at start (gh_router_add is not thread-safe); afterwards gh_router_match is
 * read-only and may run on any number of threads. */
#ifndef GH_ROUTER_H
#define GH_ROUTER_H

#include <stddef.h>

typedef enum {
	GH_HTTP_GET,
	GH_HTTP_HEAD,
	GH_HTTP_POST,
	GH_HTTP_PUT,
	GH_HTTP_PATCH,
	GH_HTTP_DELETE,
	GH_HTTP_OPTIONS,
	GH_HTTP__METHODS,
	GH_HTTP_UNKNOWN = GH_HTTP__METHODS, /* a method no route can have */
} gh_method_t;

extern const char *const gh_method_names[GH_HTTP__METHODS];
/* The method for an exact, case-sensitive token (RFC 9110 9.1); GH_HTTP_UNKNOWN otherwise. */
gh_method_t gh_method_parse(const char *s);

#define GH_ROUTER_MAX_PARAMS 8
#define GH_ROUTER_MAX_DEPTH  32 /* segments; deeper paths never match */

typedef struct gh_router_s gh_router_t;

typedef struct {
	const char *name;  /* from the pattern */
	const char *value; /* into the matched path, raw, not NUL-terminated */
	size_t len;
} gh_route_param_t;

typedef struct {
	void *target;
	const char *pattern; /* the registered pattern (for metrics and logs) */
	unsigned nparams;
	gh_route_param_t params[GH_ROUTER_MAX_PARAMS];
	unsigned allow; /* on -EOPNOTSUPP: bit (1 << method) for each method the path has */
} gh_route_match_t;

/* An empty router, talloc child of ctx. */
gh_router_t *gh_router_new(void *ctx);

/* Register target for method+pattern. A GET route also answers HEAD unless HEAD has its own.
 * Returns 0, -EINVAL for a malformed pattern (not starting with '/', empty or unbalanced
 * parameter, more than GH_ROUTER_MAX_PARAMS/DEPTH, '"' '\\' '?' '#' or control characters),
 * -EEXIST when method+pattern (up to parameter names) is taken, -ENOMEM. */
int gh_router_add(gh_router_t *r, gh_method_t method, const char *pattern, void *target);

/* Match a raw path of len bytes (no query string). Returns 0 with m filled; -ENOENT when no
 * pattern matches the path; -EOPNOTSUPP when some do but not for this method (m->allow then
 * says which methods would). Never allocates. */
int gh_router_match(const gh_router_t *r, gh_method_t method, const char *path, size_t len,
                    gh_route_match_t *m);

/* Render an allow mask as an Allow header value ("GET, HEAD, POST") into buf. Returns buf. */
char *gh_router_allow_str(unsigned allow, char *buf, size_t n);

#endif
