/* router: a segment trie built at start and walked read-only per request. See router.h. */
#include "router.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

const char *const gh_method_names[GH_HTTP__METHODS] = {
    [GH_HTTP_GET] = "GET",         [GH_HTTP_HEAD] = "HEAD",   [GH_HTTP_POST] = "POST",
    [GH_HTTP_PUT] = "PUT",         [GH_HTTP_PATCH] = "PATCH", [GH_HTTP_DELETE] = "DELETE",
    [GH_HTTP_OPTIONS] = "OPTIONS",
};

gh_method_t gh_method_parse(const char *s)
{
	for (int i = 0; s && i < GH_HTTP__METHODS; i++)
		if (strcmp(s, gh_method_names[i]) == 0)
			return (gh_method_t)i;
	return GH_HTTP_UNKNOWN;
}

typedef struct {
	void *target;
	const char *pattern;
	unsigned nparams;
	const char *names[GH_ROUTER_MAX_PARAMS];
} route_t;

/* Children are kept in match priority order: literals, then "{p}:verb", then "{p}". */
typedef enum { SEG_LITERAL, SEG_VERB, SEG_PARAM } seg_kind_t;

typedef struct node_s {
	seg_kind_t kind;
	const char *text; /* the literal, or the verb; NULL for SEG_PARAM */
	size_t len;
	struct node_s **kids;
	unsigned nkids;
	route_t *routes[GH_HTTP__METHODS];
} node_t;

struct gh_router_s {
	node_t root;
};

gh_router_t *gh_router_new(void *ctx) { return talloc_zero(ctx, gh_router_t); }

static int valid_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* One pattern segment [s, s+n): its kind, its literal or verb, and the parameter name. */
static int parse_segment(const char *s, size_t n, int last, seg_kind_t *kind, const char **text,
                         size_t *tlen, const char **name, size_t *nlen)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == 0x7f || c == '"' || c == '\\' || c == '?' || c == '#')
			return -EINVAL;
	}
	if (n == 0 || s[0] != '{') {
		if (memchr(s, '{', n) || memchr(s, '}', n))
			return -EINVAL;
		*kind = SEG_LITERAL;
		*text = s;
		*tlen = n;
		return 0;
	}
	const char *close = memchr(s, '}', n);
	if (!close || close == s + 1)
		return -EINVAL;
	*name = s + 1;
	*nlen = (size_t)(close - s - 1);
	for (size_t i = 0; i < *nlen; i++)
		if (!valid_name_char((*name)[i]))
			return -EINVAL;
	size_t rest = n - (size_t)(close - s) - 1;
	if (rest == 0) {
		*kind = SEG_PARAM;
		*text = NULL;
		*tlen = 0;
		return 0;
	}
	/* "{p}:verb" is only meaningful at the end of the path. */
	if (!last || close[1] != ':' || rest < 2)
		return -EINVAL;
	for (size_t i = 2; i <= rest; i++)
		if (!valid_name_char(close[i]))
			return -EINVAL;
	*kind = SEG_VERB;
	*text = close + 2;
	*tlen = rest - 1;
	return 0;
}

static node_t *child(node_t *n, seg_kind_t kind, const char *text, size_t len, int create)
{
	for (unsigned i = 0; i < n->nkids; i++) {
		node_t *k = n->kids[i];
		if (k->kind == kind && k->len == len &&
		    (len == 0 || memcmp(k->text, text, len) == 0))
			return k;
	}
	if (!create)
		return NULL;
	node_t **kids = talloc_realloc(n, n->kids, node_t *, n->nkids + 1);
	if (!kids)
		return NULL;
	n->kids = kids;
	node_t *k = talloc_zero(n, node_t);
	if (!k)
		return NULL;
	k->kind = kind;
	k->len = len;
	k->text = text ? talloc_strndup(k, text, len) : NULL;
	if (text && !k->text) {
		talloc_free(k);
		return NULL;
	}
	unsigned at = n->nkids;
	while (at > 0 && kids[at - 1]->kind > kind) {
		kids[at] = kids[at - 1];
		at--;
	}
	kids[at] = k;
	n->nkids++;
	return k;
}

int gh_router_add(gh_router_t *r, gh_method_t method, const char *pattern, void *target)
{
	if (!r || method >= GH_HTTP__METHODS || !pattern || pattern[0] != '/')
		return -EINVAL;
	route_t tmp = {.target = target};
	node_t *n = &r->root;
	const char *p = pattern + 1;
	unsigned depth = 0;
	/* Validate the whole pattern before creating nodes, so a bad one leaves no trace. */
	for (int pass = 0; pass < 2; pass++) {
		p = pattern + 1;
		n = &r->root;
		depth = 0;
		tmp.nparams = 0;
		for (;;) {
			const char *e = strchr(p, '/');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			if (len == 0 && !(p == pattern + 1 && !e))
				return -EINVAL; /* empty segment, except the root pattern "/" */
			if (++depth > GH_ROUTER_MAX_DEPTH)
				return -EINVAL;
			seg_kind_t kind;
			const char *text = NULL, *name = NULL;
			size_t tlen = 0, nlen = 0;
			if (parse_segment(p, len, !e, &kind, &text, &tlen, &name, &nlen) < 0)
				return -EINVAL;
			if (kind != SEG_LITERAL) {
				if (tmp.nparams == GH_ROUTER_MAX_PARAMS)
					return -EINVAL;
				tmp.names[tmp.nparams++] = name;
			}
			if (pass == 1) {
				n = child(n, kind, text, tlen, 1);
				if (!n)
					return -ENOMEM;
			}
			if (!e)
				break;
			p = e + 1;
		}
		if (pass == 0)
			continue;
		if (n->routes[method])
			return -EEXIST;
		route_t *rt = talloc_zero(n, route_t);
		if (!rt)
			return -ENOMEM;
		rt->target = target;
		rt->pattern = talloc_strdup(rt, pattern);
		rt->nparams = tmp.nparams;
		int oom = !rt->pattern;
		/* tmp.names point into the caller's pattern, which may not outlive us. */
		for (unsigned k = 0; k < tmp.nparams && !oom; k++) {
			const char *c = strchr(tmp.names[k], '}');
			rt->names[k] = talloc_strndup(rt, tmp.names[k], (size_t)(c - tmp.names[k]));
			oom = !rt->names[k];
		}
		if (oom) {
			talloc_free(rt);
			return -ENOMEM;
		}
		n->routes[method] = rt;
	}
	return 0;
}

static const route_t *route_for(const node_t *n, gh_method_t m)
{
	if (m >= GH_HTTP__METHODS)
		return NULL;
	if (m == GH_HTTP_HEAD && !n->routes[GH_HTTP_HEAD])
		return n->routes[GH_HTTP_GET];
	return n->routes[m];
}

static unsigned allow_mask(const node_t *n)
{
	unsigned mask = 0;
	for (int i = 0; i < GH_HTTP__METHODS; i++)
		if (n->routes[i])
			mask |= 1u << i;
	if (mask & (1u << GH_HTTP_GET))
		mask |= 1u << GH_HTTP_HEAD;
	return mask;
}

typedef struct {
	gh_method_t method;
	const char *end;
	unsigned allow;
	const char *vals[GH_ROUTER_MAX_PARAMS];
	size_t lens[GH_ROUTER_MAX_PARAMS];
	const route_t *found;
} walk_t;

/* seg: start of the next segment, or NULL once the path is consumed. */
static int walk(const node_t *n, const char *seg, unsigned depth, unsigned np, walk_t *w)
{
	if (!seg) {
		const route_t *rt = route_for(n, w->method);
		if (rt) {
			w->found = rt;
			return 1;
		}
		w->allow |= allow_mask(n);
		return 0;
	}
	if (depth >= GH_ROUTER_MAX_DEPTH)
		return 0;
	const char *e = memchr(seg, '/', (size_t)(w->end - seg));
	int last = !e;
	if (!e)
		e = w->end;
	size_t len = (size_t)(e - seg);
	const char *next = last ? NULL : e + 1;
	for (unsigned i = 0; i < n->nkids; i++) {
		const node_t *k = n->kids[i];
		size_t vlen = len;
		switch (k->kind) {
		case SEG_LITERAL:
			if (len != k->len || memcmp(seg, k->text, len) != 0)
				continue;
			if (walk(k, next, depth + 1, np, w))
				return 1;
			continue;
		case SEG_VERB:
			if (!last || len < k->len + 2 || seg[len - k->len - 1] != ':' ||
			    memcmp(seg + len - k->len, k->text, k->len) != 0)
				continue;
			vlen = len - k->len - 1;
			break;
		case SEG_PARAM:
			if (len == 0 || (last && memchr(seg, ':', len)))
				continue;
			break;
		}
		if (np == GH_ROUTER_MAX_PARAMS)
			continue;
		w->vals[np] = seg;
		w->lens[np] = vlen;
		if (walk(k, next, depth + 1, np + 1, w))
			return 1;
	}
	return 0;
}

int gh_router_match(const gh_router_t *r, gh_method_t method, const char *path, size_t len,
                    gh_route_match_t *m)
{
	memset(m, 0, sizeof(*m));
	if (!r || !path || len == 0 || path[0] != '/')
		return -ENOENT;
	walk_t w = {.method = method, .end = path + len};
	if (walk(&r->root, path + 1, 0, 0, &w)) {
		const route_t *rt = w.found;
		m->target = rt->target;
		m->pattern = rt->pattern;
		m->nparams = rt->nparams;
		for (unsigned i = 0; i < rt->nparams; i++)
			m->params[i] = (gh_route_param_t){rt->names[i], w.vals[i], w.lens[i]};
		return 0;
	}
	m->allow = w.allow;
	return w.allow ? -EOPNOTSUPP : -ENOENT;
}

char *gh_router_allow_str(unsigned allow, char *buf, size_t n)
{
	size_t o = 0;
	if (n == 0)
		return buf;
	buf[0] = '\0';
	for (int i = 0; i < GH_HTTP__METHODS; i++) {
		if (!(allow & (1u << i)))
			continue;
		int w = snprintf(buf + o, n - o, "%s%s", o ? ", " : "", gh_method_names[i]);
		if (w < 0 || (size_t)w >= n - o)
			break;
		o += (size_t)w;
	}
	return buf;
}
