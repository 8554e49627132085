/*
 * mime.c - index an Internet message held in memory and answer FETCH and
 * SEARCH questions about it.
 *
 * mime_parse() builds a tree of parts that records byte offsets into the
 * borrowed message plus each part's parsed Content-Type (the only header
 * the structure depends on).  Every other header is read again from the
 * message when it is asked for: the answers are short, the headers small,
 * and it keeps the index to a few words per part.
 *
 * A multipart body is cut at its own boundary lines first and each piece is
 * then parsed within its range, so a child whose close delimiter is missing
 * still ends where the parent's next boundary begins, and the total work is
 * the message size times the nesting depth at most.  Nothing in here trusts
 * the input: every scan is bounded by the range it was given, recursion is
 * bounded by MIME_MAX_DEPTH, and the part count by MIME_MAX_PARTS.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "mime.h"

enum mime_kind {
	MIME_KIND_LEAF,
	MIME_KIND_MULTIPART,	/* children are the body parts */
	MIME_KIND_MESSAGE,	/* message/rfc822: one child, the message */
};

enum mime_ctype_origin {
	MIME_CT_GIVEN,		/* from a valid Content-Type field */
	MIME_CT_DEFAULT,	/* text/plain; charset=us-ascii */
	MIME_CT_DIGEST,		/* digest default: message/rfc822 */
	MIME_CT_OCTET,		/* forced application/octet-stream */
};

struct mime_param {
	size_t name_off, name_len;
	size_t value_off, value_len;
};

/* A parsed Content-Type or Content-Disposition: strings are kept in strs
 * (unquoted, unfolded) and addressed by offset because strs may move while
 * it grows. */
struct mime_ctype {
	struct buf strs;
	size_t type_off, type_len;
	size_t sub_off, sub_len;
	struct mime_param *params;
	unsigned param_count, param_cap;
};

struct mime_part {
	struct mime_part *parent, *children, *last_child, *next;
	size_t hdr_off, hdr_len;
	size_t body_off, body_len;
	size_t body_lines;
	unsigned depth;
	enum mime_kind kind;
	enum mime_ctype_origin origin;
	struct mime_ctype ct;	/* valid when origin is MIME_CT_GIVEN */
	/* Leaves only: is it text/any (for lines and body search). */
	bool is_text;
};

struct mime_message {
	const unsigned char *data;
	size_t len;
	unsigned part_count;
	struct mime_part *root;
};

/* One header field: [start, end) with its line end; the name is
 * [start, start + name_len); the value [value_off, value_end) stops
 * before the final line end. */
struct mime_field {
	size_t start, end;
	size_t name_len;
	size_t value_off, value_end;
	bool terminated;	/* ends with a line end */
};

/* Parameters kept per Content-Type/Disposition field; the rest are
 * ignored.  Keeps the array size computation far from overflow. */
#define MIME_MAX_PARAMS 1024U

static const unsigned char mime_empty[1] = { 0 };

/*
 * Small helpers
 */

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static bool is_fws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool ci_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		if (lower(x[i]) != lower(y[i]))
			return false;
	}
	return true;
}

static bool ci_equal_str(const void *a, size_t alen, const char *s)
{
	return ci_equal(a, alen, s, strlen(s));
}

static size_t count_lf(const unsigned char *p, size_t len)
{
	size_t n = 0;
	const unsigned char *end = p + len;

	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		n++;
		p = nl + 1;
	}
	return n;
}

/* Length of the line end at d[p] within end: 2 for CRLF, 1 for LF, else 0. */
static size_t eol_len(const unsigned char *d, size_t p, size_t end)
{
	if (p < end && d[p] == '\n')
		return 1;
	if (p + 1 < end && d[p] == '\r' && d[p + 1] == '\n')
		return 2;
	return 0;
}

/*
 * Header fields
 */

/* Reads the field at *pos (within the header [*pos, end)), advancing *pos.
 * False at the end of the header (the empty line or end). */
static bool field_next(const unsigned char *d, size_t *pos, size_t end,
		       struct mime_field *f)
{
	size_t p = *pos, q, first_end;
	const unsigned char *nl, *colon;

	if (p >= end || eol_len(d, p, end) > 0)
		return false;
	f->start = p;
	f->terminated = false;
	q = p;
	first_end = SIZE_MAX;
	for (;;) {
		nl = memchr(d + q, '\n', end - q);
		if (nl == NULL) {
			q = end;
			break;
		}
		q = (size_t)(nl - d) + 1;
		if (first_end == SIZE_MAX)
			first_end = q - 1;
		if (q < end && is_wsp(d[q]))
			continue;
		f->terminated = true;
		break;
	}
	f->end = q;
	f->value_end = q;
	if (f->terminated) {
		f->value_end--;
		if (f->value_end > p && d[f->value_end - 1] == '\r')
			f->value_end--;
	}
	if (first_end == SIZE_MAX || first_end > f->value_end)
		first_end = f->value_end;
	colon = memchr(d + p, ':', first_end - p);
	if (colon != NULL) {
		f->name_len = (size_t)(colon - d) - p;
		f->value_off = (size_t)(colon - d) + 1;
	} else {
		f->name_len = first_end - p;
		f->value_off = f->value_end;
	}
	while (f->name_len > 0 && is_fws(d[p + f->name_len - 1]))
		f->name_len--;
	*pos = q;
	return true;
}

/* The index-th field called name in the header of part, or false. */
static bool part_field(const struct mime_message *m,
		       const struct mime_part *part, const char *name,
		       unsigned index, struct mime_field *f_r)
{
	size_t pos = part->hdr_off, end = part->hdr_off + part->hdr_len;
	size_t nlen = strlen(name);

	while (field_next(m->data, &pos, end, f_r)) {
		if (ci_equal(m->data + f_r->start, f_r->name_len, name,
			     nlen)) {
			if (index == 0)
				return true;
			index--;
		}
	}
	return false;
}

/* Appends value without its line ends (RFC 5322 unfolding) and with
 * surrounding white space trimmed. */
static int append_unfolded(struct buf *out, const unsigned char *v,
			   size_t len)
{
	size_t start = 0, i, run;

	while (start < len && is_fws(v[start]))
		start++;
	while (len > start && is_fws(v[len - 1]))
		len--;
	if (buf_reserve(out, len - start) < 0)
		return -1;
	for (i = start; i < len; i += run) {
		if (v[i] == '\r' || v[i] == '\n') {
			run = 1;
			continue;
		}
		run = 1;
		while (i + run < len && v[i + run] != '\r' &&
		       v[i + run] != '\n')
			run++;
		if (buf_append(out, v + i, run) < 0)
			return -1;
	}
	return 0;
}

/*
 * Content-Type and Content-Disposition (RFC 2045 section 5.1, RFC 2183)
 */

static bool is_tspecial(unsigned char c)
{
	return c != '\0' && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static bool is_token_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && !is_tspecial(c);
}

/* Skips white space, line ends and (nested) comments. */
static size_t skip_cfws(const unsigned char *s, size_t i, size_t n)
{
	while (i < n) {
		if (is_fws(s[i])) {
			i++;
		} else if (s[i] == '(') {
			size_t depth = 0;

			while (i < n) {
				if (s[i] == '\\' && i + 1 < n) {
					i += 2;
					continue;
				}
				if (s[i] == '(') {
					depth++;
				} else if (s[i] == ')' && --depth == 0) {
					i++;
					break;
				}
				i++;
			}
		} else {
			break;
		}
	}
	return i;
}

static void ctype_init(struct mime_ctype *ct)
{
	memset(ct, 0, sizeof(*ct));
	buf_init(&ct->strs);
}

static void ctype_free(struct mime_ctype *ct)
{
	buf_free(&ct->strs);
	free(ct->params);
	ctype_init(ct);
}

static const unsigned char *ctype_str(const struct mime_ctype *ct,
				      size_t off)
{
	return ct->strs.data == NULL ? mime_empty : ct->strs.data + off;
}

static int ctype_add_param(struct mime_ctype *ct, size_t name_off,
			   size_t name_len, size_t value_off,
			   size_t value_len)
{
	if (ct->param_count >= MIME_MAX_PARAMS)
		return 0;	/* ignored: no real type has that many */
	if (ct->param_count == ct->param_cap) {
		unsigned ncap = ct->param_cap == 0 ? 4 : ct->param_cap * 2;
		struct mime_param *np;

		np = realloc(ct->params, ncap * sizeof(*np));
		if (np == NULL)
			return -1;
		ct->params = np;
		ct->param_cap = ncap;
	}
	ct->params[ct->param_count].name_off = name_off;
	ct->params[ct->param_count].name_len = name_len;
	ct->params[ct->param_count].value_off = value_off;
	ct->params[ct->param_count].value_len = value_len;
	ct->param_count++;
	return 0;
}

/* Appends s[i..) up to the closing quote to out, unescaped and unfolded;
 * returns the index after the closing quote (or n). */
static size_t take_quoted(const unsigned char *s, size_t i, size_t n,
			  struct buf *out, int *ret)
{
	/* s[i] is the opening quote */
	for (i++; i < n; i++) {
		unsigned char c = s[i];

		if (c == '"')
			return i + 1;
		if (c == '\r' || c == '\n')
			continue;
		if (c == '\\' && i + 1 < n)
			c = s[++i];
		if (buf_append(out, &c, 1) < 0)
			*ret = -1;
	}
	return n;
}

/*
 * Parses "type/subtype *(; name=value)" (want_sub) or "type *(...)".
 * Returns 1 when valid, 0 when the type part is invalid (ct then holds
 * nothing), -1 on ENOMEM.  Parameters are taken leniently: an unquoted
 * value runs to the next ';' or white space, junk is skipped to the next
 * ';'.
 */
static int ctype_parse(const unsigned char *s, size_t n, bool want_sub,
		       struct mime_ctype *ct)
{
	size_t i, t0, name_off, name_len, value_off;
	int ret = 0;

	i = skip_cfws(s, 0, n);
	for (t0 = i; i < n && is_token_char(s[i]); i++)
		;
	if (i == t0)
		return 0;
	ct->type_off = ct->strs.len;
	ct->type_len = i - t0;
	if (buf_append(&ct->strs, s + t0, i - t0) < 0)
		return -1;
	if (want_sub) {
		i = skip_cfws(s, i, n);
		if (i >= n || s[i] != '/')
			goto invalid;
		i = skip_cfws(s, i + 1, n);
		for (t0 = i; i < n && is_token_char(s[i]); i++)
			;
		if (i == t0)
			goto invalid;
		ct->sub_off = ct->strs.len;
		ct->sub_len = i - t0;
		if (buf_append(&ct->strs, s + t0, i - t0) < 0)
			return -1;
	}
	for (;;) {
		i = skip_cfws(s, i, n);
		if (i >= n)
			break;
		if (s[i] != ';') {
			const unsigned char *semi = memchr(s + i, ';', n - i);

			if (semi == NULL)
				break;
			i = (size_t)(semi - s);
		}
		i = skip_cfws(s, i + 1, n);
		for (t0 = i; i < n && s[i] != '=' && s[i] != ';' &&
			     !is_fws(s[i]) && s[i] != '('; i++)
			;
		if (i == t0)
			continue;
		name_off = ct->strs.len;
		name_len = i - t0;
		if (buf_append(&ct->strs, s + t0, i - t0) < 0)
			return -1;
		i = skip_cfws(s, i, n);
		if (i >= n || s[i] != '=') {
			ct->strs.len = name_off;
			continue;
		}
		i = skip_cfws(s, i + 1, n);
		value_off = ct->strs.len;
		if (i < n && s[i] == '"') {
			i = take_quoted(s, i, n, &ct->strs, &ret);
			if (ret < 0)
				return -1;
		} else {
			for (t0 = i; i < n && s[i] != ';' && !is_fws(s[i]);
			     i++)
				;
			if (buf_append(&ct->strs, s + t0, i - t0) < 0)
				return -1;
		}
		if (ctype_add_param(ct, name_off, name_len, value_off,
				    ct->strs.len - value_off) < 0)
			return -1;
	}
	return 1;
invalid:
	ctype_free(ct);
	return 0;
}

/* The value of parameter name, or NULL. */
static const unsigned char *ctype_param(const struct mime_ctype *ct,
					const char *name, size_t *len_r)
{
	for (unsigned i = 0; i < ct->param_count; i++) {
		const struct mime_param *p = &ct->params[i];

		if (ci_equal_str(ctype_str(ct, p->name_off), p->name_len,
				 name)) {
			*len_r = p->value_len;
			return ctype_str(ct, p->value_off);
		}
	}
	return NULL;
}

static bool ctype_is(const struct mime_ctype *ct, const char *type,
		     const char *sub)
{
	if (!ci_equal_str(ctype_str(ct, ct->type_off), ct->type_len, type))
		return false;
	return sub == NULL ||
		ci_equal_str(ctype_str(ct, ct->sub_off), ct->sub_len, sub);
}

/*
 * Parsing the structure
 */

static struct mime_part *part_new(struct mime_message *m,
				  struct mime_part *parent)
{
	struct mime_part *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	ctype_init(&p->ct);
	p->parent = parent;
	if (parent != NULL) {
		p->depth = parent->depth + 1;
		if (parent->last_child == NULL)
			parent->children = p;
		else
			parent->last_child->next = p;
		parent->last_child = p;
	}
	m->part_count++;
	return p;
}

static void part_free(struct mime_part *p)
{
	while (p != NULL) {
		struct mime_part *next = p->next;

		part_free(p->children);
		ctype_free(&p->ct);
		free(p);
		p = next;
	}
}

/* Header of [off, end): up to and including the first empty line. */
static void split_header(const unsigned char *d, size_t off, size_t end,
			 size_t *hdr_len_r, size_t *body_off_r)
{
	size_t p = off, e;

	while (p < end) {
		const unsigned char *nl;

		e = eol_len(d, p, end);
		if (e > 0) {
			*hdr_len_r = p + e - off;
			*body_off_r = p + e;
			return;
		}
		nl = memchr(d + p, '\n', end - p);
		if (nl == NULL)
			break;
		p = (size_t)(nl - d) + 1;
	}
	*hdr_len_r = end - off;
	*body_off_r = end;
}

/*
 * If a boundary line starts at d[p] (within end), returns true with
 * *close_r telling a close delimiter and *next_r the start of the line
 * after it.
 */
static bool boundary_at(const unsigned char *d, size_t p, size_t end,
			const unsigned char *bnd, size_t blen, bool *close_r,
			size_t *next_r)
{
	size_t q;
	const unsigned char *nl;

	if (end - p < 2 + blen || d[p] != '-' || d[p + 1] != '-' ||
	    memcmp(d + p + 2, bnd, blen) != 0)
		return false;
	q = p + 2 + blen;
	*close_r = false;
	if (end - q >= 2 && d[q] == '-' && d[q + 1] == '-') {
		*close_r = true;
	} else {
		while (q < end && is_wsp(d[q]))
			q++;
		if (q < end && eol_len(d, q, end) == 0)
			return false;
	}
	nl = memchr(d + q, '\n', end - q);
	*next_r = nl == NULL ? end : (size_t)(nl - d) + 1;
	return true;
}

static int parse_part(struct mime_message *m, struct mime_part *part,
		      size_t off, size_t end, bool digest_child);

/* Cuts the multipart body of part at its boundary lines. */
static int parse_multipart(struct mime_message *m, struct mime_part *part,
			   const unsigned char *bnd, size_t blen)
{
	const unsigned char *d = m->data;
	size_t p = part->body_off, end = part->body_off + part->body_len;
	size_t content = SIZE_MAX, next;
	bool digest = ctype_is(&part->ct, "multipart", "digest");
	bool close = false;
	struct mime_part *child;

	while (p < end && !close) {
		const unsigned char *nl;

		if (boundary_at(d, p, end, bnd, blen, &close, &next)) {
			if (content != SIZE_MAX) {
				size_t cend = p;

				if (cend > content && d[cend - 1] == '\n')
					cend--;
				if (cend > content && d[cend - 1] == '\r')
					cend--;
				if (m->part_count >= MIME_MAX_PARTS)
					return 0;
				child = part_new(m, part);
				if (child == NULL ||
				    parse_part(m, child, content, cend,
					       digest) < 0)
					return -1;
			}
			content = next;
			p = next;
			continue;
		}
		nl = memchr(d + p, '\n', end - p);
		if (nl == NULL)
			break;
		p = (size_t)(nl - d) + 1;
	}
	if (content != SIZE_MAX && !close &&
	    m->part_count < MIME_MAX_PARTS) {
		/* no close delimiter: the last part runs to the end */
		child = part_new(m, part);
		if (child == NULL ||
		    parse_part(m, child, content, end, digest) < 0)
			return -1;
	}
	if (part->children == NULL) {
		/* Keeps BODYSTRUCTURE valid: a multipart has >= 1 part. */
		child = part_new(m, part);
		if (child == NULL)
			return -1;
		child->hdr_off = child->body_off = end;
		child->origin = MIME_CT_DEFAULT;
		child->is_text = true;
	}
	return 0;
}

static int parse_part(struct mime_message *m, struct mime_part *part,
		      size_t off, size_t end, bool digest_child)
{
	struct mime_field f;
	const unsigned char *bnd;
	size_t blen = 0;
	bool room;
	int ret;

	part->hdr_off = off;
	split_header(m->data, off, end, &part->hdr_len, &part->body_off);
	part->body_len = end - part->body_off;
	part->origin = digest_child ? MIME_CT_DIGEST : MIME_CT_DEFAULT;
	if (part_field(m, part, "Content-Type", 0, &f)) {
		ret = ctype_parse(m->data + f.value_off,
				  f.value_end - f.value_off, true, &part->ct);
		if (ret < 0)
			return -1;
		if (ret > 0)
			part->origin = MIME_CT_GIVEN;
	}
	room = part->depth < MIME_MAX_DEPTH &&
		m->part_count < MIME_MAX_PARTS;
	if (part->origin == MIME_CT_GIVEN &&
	    ctype_is(&part->ct, "multipart", NULL)) {
		bnd = ctype_param(&part->ct, "boundary", &blen);
		if (bnd == NULL || blen == 0 || !room) {
			part->origin = MIME_CT_OCTET;
			return 0;
		}
		part->kind = MIME_KIND_MULTIPART;
		return parse_multipart(m, part, bnd, blen);
	}
	if (part->origin == MIME_CT_DIGEST ||
	    (part->origin == MIME_CT_GIVEN &&
	     ctype_is(&part->ct, "message", "rfc822"))) {
		struct mime_part *child;

		if (!room) {
			part->origin = MIME_CT_OCTET;
			return 0;
		}
		part->kind = MIME_KIND_MESSAGE;
		part->body_lines = count_lf(m->data + part->body_off,
					    part->body_len);
		child = part_new(m, part);
		if (child == NULL)
			return -1;
		return parse_part(m, child, part->body_off, end, false);
	}
	part->is_text = part->origin == MIME_CT_DEFAULT ||
		ctype_is(&part->ct, "text", NULL);
	if (part->is_text)
		part->body_lines = count_lf(m->data + part->body_off,
					    part->body_len);
	return 0;
}

struct mime_message *mime_parse(const void *data, size_t len,
				const char **error_r)
{
	struct mime_message *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		*error_r = "Out of memory";
		return NULL;
	}
	m->data = data == NULL ? mime_empty : data;
	m->len = len;
	m->root = part_new(m, NULL);
	if (m->root == NULL || parse_part(m, m->root, 0, len, false) < 0) {
		mime_free(&m);
		*error_r = "Out of memory";
		return NULL;
	}
	return m;
}

void mime_free(struct mime_message **mp)
{
	struct mime_message *m = *mp;

	if (m == NULL)
		return;
	part_free(m->root);
	free(m);
	*mp = NULL;
}

const unsigned char *mime_data(const struct mime_message *m)
{
	return m->data;
}

size_t mime_size(const struct mime_message *m)
{
	return m->len;
}

unsigned mime_part_count(const struct mime_message *m)
{
	return m->part_count;
}

int mime_to_crlf(const void *data, size_t len, struct buf *out)
{
	const unsigned char *d = data;
	size_t old = out->len, i, run;
	int changed = 0;

	if (buf_reserve(out, len) < 0)
		return -1;
	for (i = 0; i < len; i += run) {
		run = 0;
		while (i + run < len && d[i + run] != '\r' &&
		       d[i + run] != '\n')
			run++;
		if (run > 0) {
			if (buf_append(out, d + i, run) < 0)
				goto fail;
			continue;
		}
		if (d[i] == '\r' && i + 1 < len && d[i + 1] == '\n')
			run = 2;
		else {
			run = 1;
			changed = 1;
		}
		if (buf_append(out, "\r\n", 2) < 0)
			goto fail;
	}
	return changed;
fail:
	out->len = old;
	return -1;
}

/*
 * IMAP strings
 */

#define MIME_QUOTED_MAX 1024

int mime_write_string(struct buf *out, const void *data, size_t len)
{
	const unsigned char *d = data == NULL ? mime_empty : data;
	bool quoted = len < MIME_QUOTED_MAX;
	size_t i, start;

	for (i = 0; i < len && quoted; i++) {
		if (d[i] == 0 || d[i] >= 0x80 || d[i] == '\r' ||
		    d[i] == '\n')
			quoted = false;
	}
	if (!quoted) {
		if (buf_printf(out, "{%zu}\r\n", len) < 0)
			return -1;
		return buf_append(out, d, len);
	}
	if (buf_append(out, "\"", 1) < 0)
		return -1;
	for (start = i = 0; i < len; i++) {
		if (d[i] != '"' && d[i] != '\\')
			continue;
		if (buf_append(out, d + start, i - start) < 0 ||
		    buf_append(out, "\\", 1) < 0)
			return -1;
		start = i;
	}
	if (buf_append(out, d + start, len - start) < 0)
		return -1;
	return buf_append(out, "\"", 1);
}

int mime_write_nstring(struct buf *out, const void *data, size_t len)
{
	if (data == NULL)
		return buf_append(out, "NIL", 3);
	return mime_write_string(out, data, len);
}

static int write_cstring(struct buf *out, const char *s)
{
	return mime_write_string(out, s, strlen(s));
}

/*
 * ENVELOPE and addresses (RFC 5322 section 3.4, RFC 3501 section 7.4.2)
 */

enum addr_tok_type {
	ADDR_ATOM,	/* also domain literals */
	ADDR_QUOTED,	/* p/len: between the quotes, still escaped */
	ADDR_COMMENT,	/* p/len: inside the parentheses */
	ADDR_SPECIAL,	/* one of < > : ; @ , */
};

struct addr_tok {
	enum addr_tok_type type;
	const unsigned char *p;
	size_t len;
};

struct addr_toks {
	struct addr_tok *t;
	size_t count, cap;
};

static int toks_add(struct addr_toks *tk, enum addr_tok_type type,
		    const unsigned char *p, size_t len)
{
	if (tk->count == tk->cap) {
		size_t ncap = tk->cap == 0 ? 32 : tk->cap * 2;
		struct addr_tok *nt;

		if (ncap < tk->cap || ncap > SIZE_MAX / sizeof(*nt)) {
			errno = EOVERFLOW;
			return -1;
		}
		nt = realloc(tk->t, ncap * sizeof(*nt));
		if (nt == NULL)
			return -1;
		tk->t = nt;
		tk->cap = ncap;
	}
	tk->t[tk->count].type = type;
	tk->t[tk->count].p = p;
	tk->t[tk->count].len = len;
	tk->count++;
	return 0;
}

static bool addr_is_special(unsigned char c)
{
	return c == '<' || c == '>' || c == ':' || c == ';' || c == '@' ||
		c == ',';
}

/* Splits an unfolded address-list value into tokens. */
static int addr_tokenize(const unsigned char *s, size_t n,
			 struct addr_toks *tk)
{
	size_t i = 0, j;

	while (i < n) {
		unsigned char c = s[i];

		if (is_fws(c)) {
			i++;
		} else if (c == '(') {
			size_t depth = 1;

			for (j = i + 1; j < n; j++) {
				if (s[j] == '\\' && j + 1 < n) {
					j++;
				} else if (s[j] == '(') {
					depth++;
				} else if (s[j] == ')' && --depth == 0) {
					break;
				}
			}
			if (toks_add(tk, ADDR_COMMENT, s + i + 1,
				     j - i - 1) < 0)
				return -1;
			i = j < n ? j + 1 : n;
		} else if (c == '"') {
			for (j = i + 1; j < n && s[j] != '"'; j++) {
				if (s[j] == '\\' && j + 1 < n)
					j++;
			}
			if (toks_add(tk, ADDR_QUOTED, s + i + 1,
				     j - i - 1) < 0)
				return -1;
			i = j < n ? j + 1 : n;
		} else if (addr_is_special(c)) {
			if (toks_add(tk, ADDR_SPECIAL, s + i, 1) < 0)
				return -1;
			i++;
		} else if (c == '[') {
			const unsigned char *rb = memchr(s + i, ']', n - i);

			j = rb == NULL ? n : (size_t)(rb - s) + 1;
			if (toks_add(tk, ADDR_ATOM, s + i, j - i) < 0)
				return -1;
			i = j;
		} else {
			for (j = i; j < n && !is_fws(s[j]) && s[j] != '(' &&
				     s[j] != '"' && s[j] != '[' &&
				     !addr_is_special(s[j]); j++)
				;
			if (toks_add(tk, ADDR_ATOM, s + i, j - i) < 0)
				return -1;
			i = j;
		}
	}
	return 0;
}

static bool tok_is(const struct addr_tok *t, char c)
{
	return t->type == ADDR_SPECIAL && t->p[0] == (unsigned char)c;
}

static int append_unescaped(struct buf *out, const unsigned char *p,
			    size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\\' && i + 1 < len)
			i++;
		if (buf_append(out, p + i, 1) < 0)
			return -1;
	}
	return 0;
}

/*
 * Display name (phrase) of tokens [a, b): words joined by one space,
 * quoted strings unquoted, comments dropped.  Returns 1 when out got a
 * name, 0 when none, -1 on ENOMEM.
 */
static int addr_phrase(const struct addr_toks *tk, size_t a, size_t b,
		       struct buf *out)
{
	bool any = false;

	for (size_t i = a; i < b; i++) {
		const struct addr_tok *t = &tk->t[i];

		if (t->type == ADDR_COMMENT)
			continue;
		if (any && buf_append(out, " ", 1) < 0)
			return -1;
		any = true;
		if (t->type == ADDR_QUOTED) {
			if (append_unescaped(out, t->p, t->len) < 0)
				return -1;
		} else if (buf_append(out, t->p, t->len) < 0) {
			return -1;
		}
	}
	return any ? 1 : 0;
}

/* Tokens [a, b) glued without spaces, comments dropped; quoted strings
 * keep their quotes (they are part of a local-part's spelling). */
static int addr_glue(const struct addr_toks *tk, size_t a, size_t b,
		     struct buf *out)
{
	for (size_t i = a; i < b; i++) {
		const struct addr_tok *t = &tk->t[i];

		if (t->type == ADDR_COMMENT)
			continue;
		if (t->type == ADDR_QUOTED) {
			if (buf_append(out, "\"", 1) < 0 ||
			    buf_append(out, t->p, t->len) < 0 ||
			    buf_append(out, "\"", 1) < 0)
				return -1;
		} else if (buf_append(out, t->p, t->len) < 0) {
			return -1;
		}
	}
	return 0;
}

static size_t addr_count_words(const struct addr_toks *tk, size_t a,
			       size_t b)
{
	size_t n = 0;

	for (size_t i = a; i < b; i++) {
		if (tk->t[i].type != ADDR_COMMENT)
			n++;
	}
	return n;
}

/* Writes one (name adl mailbox host) for the addr-spec in [a, b) (with an
 * optional route [ra, rb)). */
static int addr_write(struct buf *out, struct buf *tmp,
		      const struct addr_toks *tk, const unsigned char *name,
		      size_t name_len, size_t ra, size_t rb, size_t a,
		      size_t b)
{
	size_t at = SIZE_MAX, split;

	for (size_t i = a; i < b; i++) {
		if (tok_is(&tk->t[i], '@'))
			at = i;
	}
	if (buf_append(out, "(", 1) < 0 ||
	    mime_write_nstring(out, name, name_len) < 0 ||
	    buf_append(out, " ", 1) < 0)
		return -1;
	buf_reset(tmp);
	if (rb > ra) {
		if (addr_glue(tk, ra, rb, tmp) < 0 ||
		    mime_write_string(out, tmp->data, tmp->len) < 0)
			return -1;
	} else if (buf_append(out, "NIL", 3) < 0) {
		return -1;
	}
	buf_reset(tmp);
	split = at == SIZE_MAX ? b : at;
	if (addr_glue(tk, a, split, tmp) < 0 ||
	    buf_append(out, " ", 1) < 0)
		return -1;
	if (tmp->len == 0) {
		if (write_cstring(out, "MISSING_MAILBOX") < 0)
			return -1;
	} else if (mime_write_string(out, tmp->data, tmp->len) < 0) {
		return -1;
	}
	buf_reset(tmp);
	if (at != SIZE_MAX && addr_glue(tk, at + 1, b, tmp) < 0)
		return -1;
	if (buf_append(out, " ", 1) < 0)
		return -1;
	if (tmp->len == 0) {
		if (write_cstring(out, "MISSING_DOMAIN") < 0)
			return -1;
	} else if (mime_write_string(out, tmp->data, tmp->len) < 0) {
		return -1;
	}
	return buf_append(out, ")", 1);
}

static int group_write(struct buf *out, const unsigned char *name,
		       size_t len)
{
	if (name == NULL)
		return buf_append_str(out, "(NIL NIL NIL NIL)");
	if (buf_append(out, "(NIL NIL ", 9) < 0 ||
	    mime_write_string(out, name, len) < 0)
		return -1;
	return buf_append(out, " NIL)", 5);
}

/*
 * Appends the address structures of the address-list value to out;
 * *count_r is how many were written (group markers included).
 */
static int addr_list_write(const unsigned char *v, size_t n, struct buf *out,
			   unsigned *count_r)
{
	struct addr_toks tk = { NULL, 0, 0 };
	struct buf name = BUF_INIT, tmp = BUF_INIT;
	size_t i = 0, j, k, ra, rb;
	bool in_group = false;
	int ret = -1, r;

	*count_r = 0;
	if (addr_tokenize(v, n, &tk) < 0)
		goto out;
	while (i < tk.count) {
		if (tok_is(&tk.t[i], ',') || tok_is(&tk.t[i], '>')) {
			i++;
			continue;
		}
		if (tok_is(&tk.t[i], ';')) {
			if (in_group) {
				if (group_write(out, NULL, 0) < 0)
					goto out;
				(*count_r)++;
				in_group = false;
			}
			i++;
			continue;
		}
		for (j = i; j < tk.count; j++) {
			if (tok_is(&tk.t[j], '<') || tok_is(&tk.t[j], ':') ||
			    tok_is(&tk.t[j], ',') || tok_is(&tk.t[j], ';'))
				break;
		}
		buf_reset(&name);
		if (j < tk.count && tok_is(&tk.t[j], ':')) {
			if (in_group) {
				/* no nested groups: drop the junk */
				i = j + 1;
				continue;
			}
			if (addr_phrase(&tk, i, j, &name) < 0 ||
			    group_write(out, name.data == NULL ?
					mime_empty : name.data,
					name.len) < 0)
				goto out;
			(*count_r)++;
			in_group = true;
			i = j + 1;
			continue;
		}
		if (j < tk.count && tok_is(&tk.t[j], '<')) {
			r = addr_phrase(&tk, i, j, &name);
			if (r < 0)
				goto out;
			for (k = j + 1; k < tk.count; k++) {
				if (tok_is(&tk.t[k], '>') ||
				    tok_is(&tk.t[k], ',') ||
				    tok_is(&tk.t[k], ';'))
					break;
			}
			/* obs-route: <@a,@b:user@host>; the ',' of a route
			 * ended the scan above, so look again for ':' */
			ra = rb = j + 1;
			if (ra < tk.count && tok_is(&tk.t[ra], '@')) {
				size_t c;

				for (c = ra; c < tk.count &&
				     !tok_is(&tk.t[c], ':') &&
				     !tok_is(&tk.t[c], '>'); c++)
					;
				if (c < tk.count && tok_is(&tk.t[c], ':')) {
					rb = c;
					for (k = c + 1; k < tk.count; k++) {
						if (tok_is(&tk.t[k], '>') ||
						    tok_is(&tk.t[k], ',') ||
						    tok_is(&tk.t[k], ';'))
							break;
					}
				}
			}
			if (addr_count_words(&tk, rb == ra ? j + 1 : rb + 1,
					     k) > 0 || r > 0) {
				if (addr_write(out, &tmp, &tk,
					       r > 0 ? name.data : NULL,
					       name.len, ra, rb,
					       rb == ra ? j + 1 : rb + 1,
					       k) < 0)
					goto out;
				(*count_r)++;
			}
			/* skip whatever follows up to the next address */
			for (i = k; i < tk.count; i++) {
				if (tok_is(&tk.t[i], ',') ||
				    tok_is(&tk.t[i], ';'))
					break;
			}
			continue;
		}
		if (addr_count_words(&tk, i, j) > 0) {
			/* a bare addr-spec; a comment after it is the old
			 * way of giving the name */
			const struct addr_tok *comment = NULL;

			if (tk.t[j - 1].type == ADDR_COMMENT)
				comment = &tk.t[j - 1];
			if (comment != NULL &&
			    append_unescaped(&name, comment->p,
					     comment->len) < 0)
				goto out;
			if (addr_write(out, &tmp, &tk, comment == NULL ? NULL :
				       name.data == NULL ? mime_empty :
				       name.data, name.len, 0, 0, i, j) < 0)
				goto out;
			(*count_r)++;
		}
		i = j;
	}
	if (in_group) {
		if (group_write(out, NULL, 0) < 0)
			goto out;
		(*count_r)++;
	}
	ret = 0;
out:
	free(tk.t);
	buf_free(&name);
	buf_free(&tmp);
	return ret;
}

/* Appends the unfolded value of the first field name of part, or NIL. */
static int env_nstring(const struct mime_message *m,
		       const struct mime_part *part, const char *name,
		       struct buf *out, struct buf *tmp)
{
	struct mime_field f;

	if (!part_field(m, part, name, 0, &f))
		return buf_append(out, "NIL", 3);
	buf_reset(tmp);
	if (append_unfolded(tmp, m->data + f.value_off,
			    f.value_end - f.value_off) < 0)
		return -1;
	return mime_write_string(out, tmp->data, tmp->len);
}

/* Appends the address list of field name, NIL when it has none; *count_r
 * tells which. */
static int env_addresses(const struct mime_message *m,
			 const struct mime_part *part, const char *name,
			 struct buf *out, struct buf *tmp, unsigned *count_r)
{
	struct mime_field f;
	struct buf list = BUF_INIT;
	int ret = -1;

	*count_r = 0;
	if (!part_field(m, part, name, 0, &f))
		return 0;
	buf_reset(tmp);
	if (append_unfolded(tmp, m->data + f.value_off,
			    f.value_end - f.value_off) < 0 ||
	    addr_list_write(tmp->data == NULL ? mime_empty : tmp->data,
			    tmp->len, &list, count_r) < 0)
		goto out;
	if (*count_r > 0 &&
	    (buf_append(out, "(", 1) < 0 ||
	     buf_append(out, list.data, list.len) < 0 ||
	     buf_append(out, ")", 1) < 0))
		goto out;
	ret = 0;
out:
	buf_free(&list);
	return ret;
}

static int part_envelope(const struct mime_message *m,
			 const struct mime_part *part, struct buf *out)
{
	static const char *const addr_fields[] = {
		"From", "Sender", "Reply-To", "To", "Cc", "Bcc"
	};
	struct buf tmp = BUF_INIT, from = BUF_INIT;
	unsigned count;
	int ret = -1;

	if (buf_append(out, "(", 1) < 0 ||
	    env_nstring(m, part, "Date", out, &tmp) < 0 ||
	    buf_append(out, " ", 1) < 0 ||
	    env_nstring(m, part, "Subject", out, &tmp) < 0)
		goto out;
	for (unsigned i = 0; i < 6; i++) {
		size_t before;

		if (buf_append(out, " ", 1) < 0)
			goto out;
		before = out->len;
		if (env_addresses(m, part, addr_fields[i], out, &tmp,
				  &count) < 0)
			goto out;
		if (i == 0 && count > 0 &&
		    buf_append(&from, out->data + before,
			       out->len - before) < 0)
			goto out;
		if (count > 0)
			continue;
		if ((i == 1 || i == 2) && from.len > 0) {
			if (buf_append(out, from.data, from.len) < 0)
				goto out;
		} else if (buf_append(out, "NIL", 3) < 0) {
			goto out;
		}
	}
	if (buf_append(out, " ", 1) < 0 ||
	    env_nstring(m, part, "In-Reply-To", out, &tmp) < 0 ||
	    buf_append(out, " ", 1) < 0 ||
	    env_nstring(m, part, "Message-ID", out, &tmp) < 0 ||
	    buf_append(out, ")", 1) < 0)
		goto out;
	ret = 0;
out:
	buf_free(&tmp);
	buf_free(&from);
	return ret;
}

int mime_envelope(const struct mime_message *m, struct buf *out)
{
	return part_envelope(m, m->root, out);
}

/*
 * BODY and BODYSTRUCTURE
 */

/* The parameter list, NIL when empty.  add_charset appends charset
 * us-ascii when there is no charset parameter: the default of RFC 2046
 * section 4.1.2, made explicit for clients (as Dovecot does). */
static int write_params(struct buf *out, const struct mime_ctype *ct,
			bool add_charset)
{
	size_t len;
	static const char dflt[] = "\"charset\" \"us-ascii\"";

	if (add_charset && ctype_param(ct, "charset", &len) != NULL)
		add_charset = false;
	if (ct->param_count == 0)
		return add_charset ? buf_printf(out, "(%s)", dflt) :
			buf_append(out, "NIL", 3);
	if (buf_append(out, "(", 1) < 0)
		return -1;
	for (unsigned i = 0; i < ct->param_count; i++) {
		const struct mime_param *p = &ct->params[i];

		if ((i > 0 && buf_append(out, " ", 1) < 0) ||
		    mime_write_string(out, ctype_str(ct, p->name_off),
				      p->name_len) < 0 ||
		    buf_append(out, " ", 1) < 0 ||
		    mime_write_string(out, ctype_str(ct, p->value_off),
				      p->value_len) < 0)
			return -1;
	}
	if (add_charset && buf_printf(out, " %s", dflt) < 0)
		return -1;
	return buf_append(out, ")", 1);
}

static int write_disposition(const struct mime_message *m,
			     const struct mime_part *part, struct buf *out)
{
	struct mime_field f;
	struct mime_ctype ct;
	int ret;

	if (!part_field(m, part, "Content-Disposition", 0, &f))
		return buf_append(out, "NIL", 3);
	ctype_init(&ct);
	ret = ctype_parse(m->data + f.value_off, f.value_end - f.value_off,
			  false, &ct);
	if (ret == 0) {
		ret = buf_append(out, "NIL", 3);
	} else if (ret > 0) {
		ret = -1;
		if (buf_append(out, "(", 1) == 0 &&
		    mime_write_string(out, ctype_str(&ct, ct.type_off),
				      ct.type_len) == 0 &&
		    buf_append(out, " ", 1) == 0 &&
		    write_params(out, &ct, false) == 0 &&
		    buf_append(out, ")", 1) == 0)
			ret = 0;
	}
	ctype_free(&ct);
	return ret;
}

/* Content-Language: NIL, "tag", or ("tag" "tag" ...). */
static int write_language(const struct mime_message *m,
			  const struct mime_part *part, struct buf *out)
{
	struct mime_field f;
	struct buf list = BUF_INIT;
	const unsigned char *s;
	size_t i, n, t0;
	unsigned count = 0;
	int ret = -1;

	if (!part_field(m, part, "Content-Language", 0, &f))
		return buf_append(out, "NIL", 3);
	s = m->data + f.value_off;
	n = f.value_end - f.value_off;
	i = 0;
	for (;;) {
		i = skip_cfws(s, i, n);
		if (i >= n)
			break;
		for (t0 = i; i < n && s[i] != ',' && s[i] != '(' &&
			     !is_fws(s[i]); i++)
			;
		if (i > t0) {
			if ((count > 0 && buf_append(&list, " ", 1) < 0) ||
			    mime_write_string(&list, s + t0, i - t0) < 0)
				goto out;
			count++;
		}
		if (i < n && s[i] == ',')
			i++;
	}
	if (count == 0)
		ret = buf_append(out, "NIL", 3);
	else if (count == 1)
		ret = buf_append(out, list.data, list.len);
	else if (buf_append(out, "(", 1) == 0 &&
		 buf_append(out, list.data, list.len) == 0)
		ret = buf_append(out, ")", 1);
out:
	buf_free(&list);
	return ret;
}

/* Content-Transfer-Encoding as a string, "7bit" by default. */
static int write_encoding(const struct mime_message *m,
			  const struct mime_part *part, struct buf *out)
{
	struct mime_field f;
	const unsigned char *s;
	size_t i, t0, n;

	if (!part_field(m, part, "Content-Transfer-Encoding", 0, &f))
		return write_cstring(out, "7bit");
	s = m->data + f.value_off;
	n = f.value_end - f.value_off;
	i = skip_cfws(s, 0, n);
	for (t0 = i; i < n && is_token_char(s[i]); i++)
		;
	if (i == t0)
		return write_cstring(out, "7bit");
	return mime_write_string(out, s + t0, i - t0);
}

static int write_body(const struct mime_message *m,
		      const struct mime_part *part, struct buf *out,
		      bool ext, struct buf *tmp);

static int write_ext_tail(const struct mime_message *m,
			  const struct mime_part *part, struct buf *out,
			  struct buf *tmp)
{
	return buf_append(out, " ", 1) < 0 ||
		write_disposition(m, part, out) < 0 ||
		buf_append(out, " ", 1) < 0 ||
		write_language(m, part, out) < 0 ||
		buf_append(out, " ", 1) < 0 ||
		env_nstring(m, part, "Content-Location", out, tmp) < 0 ?
		-1 : 0;
}

static int write_multipart(const struct mime_message *m,
			   const struct mime_part *part, struct buf *out,
			   bool ext, struct buf *tmp)
{
	const struct mime_part *c;

	if (buf_append(out, "(", 1) < 0)
		return -1;
	for (c = part->children; c != NULL; c = c->next) {
		if (write_body(m, c, out, ext, tmp) < 0)
			return -1;
	}
	if (buf_append(out, " ", 1) < 0 ||
	    mime_write_string(out, ctype_str(&part->ct, part->ct.sub_off),
			      part->ct.sub_len) < 0)
		return -1;
	if (ext && (buf_append(out, " ", 1) < 0 ||
		    write_params(out, &part->ct, false) < 0 ||
		    write_ext_tail(m, part, out, tmp) < 0))
		return -1;
	return buf_append(out, ")", 1);
}

static int write_leaf(const struct mime_message *m,
		      const struct mime_part *part, struct buf *out,
		      bool ext, struct buf *tmp)
{
	int ret = 0;

	if (buf_append(out, "(", 1) < 0)
		return -1;
	switch (part->origin) {
	case MIME_CT_GIVEN:
		ret = mime_write_string(out, ctype_str(&part->ct,
						       part->ct.type_off),
					part->ct.type_len) < 0 ||
			buf_append(out, " ", 1) < 0 ||
			mime_write_string(out, ctype_str(&part->ct,
							 part->ct.sub_off),
					  part->ct.sub_len) < 0 ||
			buf_append(out, " ", 1) < 0 ||
			write_params(out, &part->ct, part->is_text) < 0 ?
			-1 : 0;
		break;
	case MIME_CT_DEFAULT:
		ret = buf_append_str(out, "\"text\" \"plain\" "
				     "(\"charset\" \"us-ascii\")");
		break;
	case MIME_CT_DIGEST:
		ret = buf_append_str(out, "\"message\" \"rfc822\" NIL");
		break;
	case MIME_CT_OCTET:
		ret = buf_append_str(out,
				     "\"application\" \"octet-stream\" NIL");
		break;
	}
	if (ret < 0 ||
	    buf_append(out, " ", 1) < 0 ||
	    env_nstring(m, part, "Content-ID", out, tmp) < 0 ||
	    buf_append(out, " ", 1) < 0 ||
	    env_nstring(m, part, "Content-Description", out, tmp) < 0 ||
	    buf_append(out, " ", 1) < 0 ||
	    write_encoding(m, part, out) < 0 ||
	    buf_printf(out, " %zu", part->body_len) < 0)
		return -1;
	if (part->kind == MIME_KIND_MESSAGE) {
		if (buf_append(out, " ", 1) < 0 ||
		    part_envelope(m, part->children, out) < 0 ||
		    buf_append(out, " ", 1) < 0 ||
		    write_body(m, part->children, out, ext, tmp) < 0 ||
		    buf_printf(out, " %zu", part->body_lines) < 0)
			return -1;
	} else if (part->is_text &&
		   buf_printf(out, " %zu", part->body_lines) < 0) {
		return -1;
	}
	if (ext && (buf_append(out, " ", 1) < 0 ||
		    env_nstring(m, part, "Content-MD5", out, tmp) < 0 ||
		    write_ext_tail(m, part, out, tmp) < 0))
		return -1;
	return buf_append(out, ")", 1);
}

static int write_body(const struct mime_message *m,
		      const struct mime_part *part, struct buf *out,
		      bool ext, struct buf *tmp)
{
	if (part->kind == MIME_KIND_MULTIPART)
		return write_multipart(m, part, out, ext, tmp);
	return write_leaf(m, part, out, ext, tmp);
}

int mime_bodystructure(const struct mime_message *m, struct buf *out,
		       bool extensible)
{
	struct buf tmp = BUF_INIT;
	int ret = write_body(m, m->root, out, extensible, &tmp);

	buf_free(&tmp);
	return ret;
}

/*
 * Sections
 */

static struct mime_part *nth_child(const struct mime_part *part, uint32_t n)
{
	struct mime_part *c = part->children;

	for (uint32_t i = 1; c != NULL && i < n; i++)
		c = c->next;
	return c;
}

/* Follows the part path as the RFC numbers parts; NULL when it leads
 * nowhere. */
static const struct mime_part *section_find(const struct mime_message *m,
					    const uint32_t *parts,
					    unsigned count)
{
	const struct mime_part *cur = m->root;
	bool is_message = true;

	for (unsigned i = 0; i < count; i++) {
		uint32_t n = parts[i];

		if (n == 0)
			return NULL;
		if (!is_message && cur->kind == MIME_KIND_MESSAGE) {
			/* the parts of message/rfc822 are those of the
			 * message inside */
			cur = cur->children;
			is_message = true;
		}
		if (cur->kind == MIME_KIND_MULTIPART) {
			cur = nth_child(cur, n);
			if (cur == NULL)
				return NULL;
		} else if (!is_message || n != 1) {
			return NULL;
		}
		is_message = false;
	}
	return cur;
}

static bool field_listed(const unsigned char *name, size_t len,
			 const struct imap_string *fields, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		if (ci_equal(name, len, fields[i].data, fields[i].len))
			return true;
	}
	return false;
}

static int header_subset(const struct mime_message *m,
			 const struct mime_part *msg, bool want,
			 const struct imap_string *fields, unsigned count,
			 struct buf *out)
{
	size_t pos = msg->hdr_off, end = msg->hdr_off + msg->hdr_len;
	struct mime_field f;

	while (field_next(m->data, &pos, end, &f)) {
		if (field_listed(m->data + f.start, f.name_len, fields,
				 count) != want)
			continue;
		if (buf_append(out, m->data + f.start, f.end - f.start) < 0)
			return -1;
		if (!f.terminated && buf_append(out, "\r\n", 2) < 0)
			return -1;
	}
	return buf_append(out, "\r\n", 2);
}

int mime_section(const struct mime_message *m, const uint32_t *parts,
		 unsigned part_count, enum imap_section_text text,
		 const struct imap_string *fields, unsigned field_count,
		 struct buf *scratch, const unsigned char **data_r,
		 size_t *len_r)
{
	const struct mime_part *cur, *msg;

	*data_r = mime_empty;
	*len_r = 0;
	cur = section_find(m, parts, part_count);
	if (cur == NULL)
		return 0;
	if (text == IMAP_SECTION_ALL) {
		if (part_count == 0) {
			*data_r = m->data;
			*len_r = m->len;
		} else {
			*data_r = m->data + cur->body_off;
			*len_r = cur->body_len;
		}
		return 1;
	}
	if (text == IMAP_SECTION_MIME) {
		if (part_count == 0)
			return 0;
		*data_r = m->data + cur->hdr_off;
		*len_r = cur->hdr_len;
		return 1;
	}
	if (part_count == 0)
		msg = m->root;
	else if (cur->kind == MIME_KIND_MESSAGE)
		msg = cur->children;
	else
		return 0;
	switch (text) {
	case IMAP_SECTION_HEADER:
		*data_r = m->data + msg->hdr_off;
		*len_r = msg->hdr_len;
		return 1;
	case IMAP_SECTION_TEXT:
		*data_r = m->data + msg->body_off;
		*len_r = msg->body_len;
		return 1;
	case IMAP_SECTION_HEADER_FIELDS:
	case IMAP_SECTION_HEADER_FIELDS_NOT:
		buf_reset(scratch);
		if (header_subset(m, msg,
				  text == IMAP_SECTION_HEADER_FIELDS,
				  fields, field_count, scratch) < 0)
			return -1;
		*data_r = scratch->data;
		*len_r = scratch->len;
		return 1;
	case IMAP_SECTION_ALL:
	case IMAP_SECTION_MIME:
		break;
	}
	return 0;
}

void mime_partial(const unsigned char **data, size_t *len, uint32_t offset,
		  uint32_t length)
{
	if (offset >= *len) {
		*data = mime_empty;
		*len = 0;
		return;
	}
	*data += offset;
	*len -= offset;
	if (length < *len)
		*len = length;
}

bool mime_header_get(const struct mime_message *m, const char *name,
		     unsigned index, const unsigned char **value_r,
		     size_t *len_r)
{
	struct mime_field f;

	if (!part_field(m, m->root, name, index, &f))
		return false;
	*value_r = m->data + f.value_off;
	*len_r = f.value_end - f.value_off;
	return true;
}

/*
 * Decoding for SEARCH: RFC 2047 encoded-words, quoted-printable, base64,
 * ISO-8859-1 to UTF-8
 */

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Quoted-printable (RFC 2045 6.7); in_header is RFC 2047's Q ('_' is a
 * space).  Invalid escapes are kept as they are. */
static int decode_qp(const unsigned char *s, size_t n, bool in_header,
		     struct buf *out)
{
	if (buf_reserve(out, n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == '=') {
			size_t j = i + 1;
			int h1, h2;

			/* "=" and white space up to the line end is a soft
			 * line break (the white space was added in transit) */
			while (j < n && is_wsp(s[j]))
				j++;
			if (eol_len(s, j, n) > 0) {
				i = j + eol_len(s, j, n) - 1;
				continue;
			}
			if (i + 2 < n) {
				h1 = hexval(s[i + 1]);
				h2 = hexval(s[i + 2]);
				if (h1 >= 0 && h2 >= 0) {
					c = (unsigned char)(h1 * 16 + h2);
					i += 2;
				}
			}
		} else if (c == '_' && in_header) {
			c = ' ';
		}
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	return 0;
}

static bool charset_is_latin1(const unsigned char *cs, size_t len)
{
	return ci_equal_str(cs, len, "iso-8859-1") ||
		ci_equal_str(cs, len, "iso_8859-1") ||
		ci_equal_str(cs, len, "latin1") ||
		ci_equal_str(cs, len, "l1") ||
		ci_equal_str(cs, len, "windows-1252");
}

/* Appends s converted from ISO-8859-1 to UTF-8 when latin1, else as is. */
static int append_charset(struct buf *out, const unsigned char *s, size_t n,
			  bool latin1)
{
	if (!latin1)
		return buf_append(out, s, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char u[2];

		if (s[i] < 0x80) {
			if (buf_append(out, s + i, 1) < 0)
				return -1;
			continue;
		}
		u[0] = (unsigned char)(0xc0 | (s[i] >> 6));
		u[1] = (unsigned char)(0x80 | (s[i] & 0x3f));
		if (buf_append(out, u, 2) < 0)
			return -1;
	}
	return 0;
}

/*
 * If an encoded-word =?charset?enc?text?= starts at s[i], decodes it into
 * out, sets *used_r to its length and returns 1; 0 when there is none; -1
 * on ENOMEM.
 */
static int encoded_word(const unsigned char *s, size_t i, size_t n,
			struct buf *out, struct buf *tmp, size_t *used_r)
{
	size_t cs, cs_end, enc, text, end, cs_len;
	const unsigned char *star;

	if (n - i < 8 || s[i] != '=' || s[i + 1] != '?')
		return 0;
	cs = i + 2;
	for (cs_end = cs; cs_end < n && s[cs_end] != '?'; cs_end++) {
		if (is_fws(s[cs_end]))
			return 0;
	}
	if (cs_end == cs || cs_end + 3 >= n || s[cs_end + 2] != '?')
		return 0;
	enc = cs_end + 1;
	text = enc + 2;
	for (end = text; end + 1 < n; end++) {
		if (s[end] == '?' && s[end + 1] == '=')
			break;
		if (is_fws(s[end]))
			return 0;
	}
	if (end + 1 >= n)
		return 0;
	buf_reset(tmp);
	if (lower(s[enc]) == 'b') {
		if (base64_decode_lenient(s + text, end - text, tmp) < 0)
			return -1;
	} else if (lower(s[enc]) == 'q') {
		if (decode_qp(s + text, end - text, true, tmp) < 0)
			return -1;
	} else {
		return 0;
	}
	/* RFC 2231 language suffix: charset*lang */
	star = memchr(s + cs, '*', cs_end - cs);
	cs_len = star == NULL ? cs_end - cs : (size_t)(star - s) - cs;
	if (append_charset(out, tmp->data == NULL ? mime_empty : tmp->data,
			   tmp->len, charset_is_latin1(s + cs, cs_len)) < 0)
		return -1;
	*used_r = end + 2 - i;
	return 1;
}

int mime_header_decode(const unsigned char *value, size_t len,
		       struct buf *out)
{
	struct buf unf = BUF_INIT, tmp = BUF_INIT;
	const unsigned char *s;
	size_t i, n, ew_end = 0, start;
	bool after_ew = false;
	int ret = -1;

	if (append_unfolded(&unf, value, len) < 0)
		goto out;
	s = unf.data == NULL ? mime_empty : unf.data;
	n = unf.len;
	for (i = 0; i < n;) {
		size_t used;
		int r;

		if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
			size_t mark = out->len;

			if (after_ew) {
				bool blank = true;

				for (size_t k = ew_end; k < out->len; k++) {
					if (!is_wsp(out->data[k]))
						blank = false;
				}
				/* white space between two encoded-words
				 * is not text */
				if (blank)
					out->len = ew_end;
			}
			r = encoded_word(s, i, n, out, &tmp, &used);
			if (r < 0)
				goto out;
			if (r > 0) {
				i += used;
				ew_end = out->len;
				after_ew = true;
				continue;
			}
			out->len = mark;
		}
		start = i;
		for (i++; i < n && s[i] != '='; i++)
			;
		if (buf_append(out, s + start, i - start) < 0)
			goto out;
	}
	ret = 0;
out:
	buf_free(&unf);
	buf_free(&tmp);
	return ret;
}

/*
 * Substring search: Knuth-Morris-Pratt over ASCII-lower-cased bytes, so a
 * 64 MiB body against a long needle stays linear.
 */
struct matcher {
	unsigned char *needle;
	size_t *fail;
	size_t len;
};

static int matcher_init(struct matcher *mt, const void *needle, size_t len)
{
	const unsigned char *n = needle;
	size_t k = 0;

	mt->len = len;
	if (len > SIZE_MAX / sizeof(size_t) - 1) {
		errno = EOVERFLOW;
		return -1;
	}
	mt->needle = malloc(len + 1);
	mt->fail = malloc((len + 1) * sizeof(size_t));
	if (mt->needle == NULL || mt->fail == NULL) {
		free(mt->needle);
		free(mt->fail);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		mt->needle[i] = lower(n[i]);
	mt->fail[0] = 0;
	for (size_t i = 1; i < len; i++) {
		while (k > 0 && mt->needle[i] != mt->needle[k])
			k = mt->fail[k - 1];
		if (mt->needle[i] == mt->needle[k])
			k++;
		mt->fail[i] = k;
	}
	return 0;
}

static void matcher_free(struct matcher *mt)
{
	free(mt->needle);
	free(mt->fail);
}

static bool matcher_find(const struct matcher *mt, const unsigned char *s,
			 size_t n)
{
	size_t k = 0;

	if (mt->len == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = lower(s[i]);

		while (k > 0 && c != mt->needle[k])
			k = mt->fail[k - 1];
		if (c == mt->needle[k]) {
			k++;
			if (k == mt->len)
				return true;
		}
	}
	return false;
}

int mime_header_contains(const struct mime_message *m, const char *name,
			 const void *needle, size_t needle_len)
{
	struct matcher mt;
	struct buf dec = BUF_INIT;
	struct mime_field f;
	int ret = 0;

	if (matcher_init(&mt, needle, needle_len) < 0)
		return -1;
	for (unsigned i = 0; ret == 0 && part_field(m, m->root, name, i, &f);
	     i++) {
		buf_reset(&dec);
		if (mime_header_decode(m->data + f.value_off,
				       f.value_end - f.value_off, &dec) < 0)
			ret = -1;
		else if (matcher_find(&mt, dec.data, dec.len))
			ret = 1;
	}
	buf_free(&dec);
	matcher_free(&mt);
	return ret;
}

/* Whole header of part, one decoded field per line ("Name: value"). */
static int decode_header_block(const struct mime_message *m,
			       const struct mime_part *part, struct buf *out)
{
	size_t pos = part->hdr_off, end = part->hdr_off + part->hdr_len;
	struct mime_field f;

	while (field_next(m->data, &pos, end, &f)) {
		if (buf_append(out, m->data + f.start, f.name_len) < 0 ||
		    buf_append(out, ": ", 2) < 0 ||
		    mime_header_decode(m->data + f.value_off,
				       f.value_end - f.value_off, out) < 0 ||
		    buf_append(out, "\n", 1) < 0)
			return -1;
	}
	return 0;
}

/* The decoded content of a text leaf. */
static int decode_text_part(const struct mime_message *m,
			    const struct mime_part *part, struct buf *out)
{
	const unsigned char *body = m->data + part->body_off;
	const unsigned char *cs = NULL, *enc = NULL;
	size_t cs_len = 0, enc_len = 0, i, t0;
	struct buf raw = BUF_INIT;
	struct mime_field f;
	bool latin1;
	int ret;

	if (part->origin == MIME_CT_GIVEN)
		cs = ctype_param(&part->ct, "charset", &cs_len);
	latin1 = cs != NULL && charset_is_latin1(cs, cs_len);
	if (part_field(m, part, "Content-Transfer-Encoding", 0, &f)) {
		const unsigned char *s = m->data + f.value_off;
		size_t n = f.value_end - f.value_off;

		i = skip_cfws(s, 0, n);
		for (t0 = i; i < n && is_token_char(s[i]); i++)
			;
		enc = s + t0;
		enc_len = i - t0;
	}
	if (enc != NULL && ci_equal_str(enc, enc_len, "base64"))
		ret = base64_decode_lenient(body, part->body_len, &raw);
	else if (enc != NULL && ci_equal_str(enc, enc_len,
					     "quoted-printable"))
		ret = decode_qp(body, part->body_len, false, &raw);
	else
		return append_charset(out, body, part->body_len, latin1);
	if (ret == 0)
		ret = append_charset(out, raw.data == NULL ? mime_empty :
				     raw.data, raw.len, latin1);
	buf_free(&raw);
	return ret;
}

static int body_search(const struct mime_message *m,
		       const struct mime_part *part, const struct matcher *mt,
		       struct buf *tmp)
{
	const struct mime_part *c;
	int ret;

	if (part->parent != NULL && part->parent->kind == MIME_KIND_MESSAGE) {
		buf_reset(tmp);
		if (decode_header_block(m, part, tmp) < 0)
			return -1;
		if (matcher_find(mt, tmp->data, tmp->len))
			return 1;
	}
	if (part->kind == MIME_KIND_LEAF) {
		if (!part->is_text)
			return 0;
		buf_reset(tmp);
		if (decode_text_part(m, part, tmp) < 0)
			return -1;
		return matcher_find(mt, tmp->data, tmp->len) ? 1 : 0;
	}
	for (c = part->children; c != NULL; c = c->next) {
		ret = body_search(m, c, mt, tmp);
		if (ret != 0)
			return ret;
	}
	return 0;
}

static int contains(const struct mime_message *m, const void *needle,
		    size_t needle_len, bool header)
{
	struct matcher mt;
	struct buf tmp = BUF_INIT;
	int ret = 0;

	if (matcher_init(&mt, needle, needle_len) < 0)
		return -1;
	if (header) {
		if (decode_header_block(m, m->root, &tmp) < 0)
			ret = -1;
		else if (matcher_find(&mt, tmp.data, tmp.len))
			ret = 1;
	}
	if (ret == 0)
		ret = body_search(m, m->root, &mt, &tmp);
	buf_free(&tmp);
	matcher_free(&mt);
	return ret;
}

int mime_body_contains(const struct mime_message *m, const void *needle,
		       size_t needle_len)
{
	return contains(m, needle, needle_len, false);
}

int mime_text_contains(const struct mime_message *m, const void *needle,
		       size_t needle_len)
{
	return contains(m, needle, needle_len, true);
}

/*
 * Dates (RFC 5322 section 3.3 and 4.3)
 */

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned mon, unsigned day)
{
	static const unsigned before[12] = {
		0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
	};
	int64_t yy = mon <= 2 ? y - 1 : y;
	int64_t leaps = yy / 4 - yy / 100 + yy / 400;
	int64_t leaps1970 = 1969 / 4 - 1969 / 100 + 1969 / 400;

	return (y - 1970) * 365 + (leaps - leaps1970) + before[mon - 1] +
		day - 1;
}

static size_t date_skip(const unsigned char *s, size_t i, size_t n)
{
	return skip_cfws(s, i, n);
}

static bool date_number(const unsigned char *s, size_t *i, size_t n,
			unsigned max_digits, unsigned *v_r, unsigned *digits_r)
{
	unsigned v = 0, d = 0;

	while (*i < n && s[*i] >= '0' && s[*i] <= '9' && d < max_digits) {
		v = v * 10 + (unsigned)(s[*i] - '0');
		(*i)++;
		d++;
	}
	if (d == 0 || (*i < n && s[*i] >= '0' && s[*i] <= '9'))
		return false;
	*v_r = v;
	if (digits_r != NULL)
		*digits_r = d;
	return true;
}

static bool date_zone(const unsigned char *s, size_t i, size_t n, int *tz_r)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
		{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 },
		{ "EST", -5 }, { "EDT", -4 }, { "CST", -6 }, { "CDT", -5 },
		{ "MST", -7 }, { "MDT", -6 }, { "PST", -8 }, { "PDT", -7 },
	};
	size_t t0;

	*tz_r = 0;
	if (i >= n)
		return true;
	if (s[i] == '+' || s[i] == '-') {
		unsigned v, d;
		bool neg = s[i] == '-';

		i++;
		if (!date_number(s, &i, n, 4, &v, &d) || d != 4 ||
		    v % 100 > 59)
			return false;
		*tz_r = (int)(v / 100 * 60 + v % 100) * (neg ? -1 : 1);
		return true;
	}
	for (t0 = i; i < n && ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z');
	     i++)
		;
	for (size_t k = 0; k < sizeof(zones) / sizeof(zones[0]); k++) {
		if (ci_equal_str(s + t0, i - t0, zones[k].name)) {
			*tz_r = zones[k].hours * 60;
			return true;
		}
	}
	/* military and unknown zones mean "no information" (-0000) */
	return true;
}

bool mime_parse_date(const unsigned char *s, size_t n, time_t *when_r,
		     int *tz_minutes_r, time_t *day_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	unsigned day, mon = 0, year, digits, hh, mm, ss = 0;
	size_t i, t0;
	int tz;
	int64_t days, secs;

	i = date_skip(s, 0, n);
	/* optional day-of-week */
	for (t0 = i; i < n && ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z');
	     i++)
		;
	if (i > t0) {
		i = date_skip(s, i, n);
		if (i < n && s[i] == ',')
			i = date_skip(s, i + 1, n);
	}
	if (!date_number(s, &i, n, 2, &day, NULL) || day < 1 || day > 31)
		return false;
	i = date_skip(s, i, n);
	if (i < n && s[i] == '-')	/* obsolete "2-Jan-2024" */
		i++;
	for (t0 = i; i < n && ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z');
	     i++)
		;
	if (i - t0 < 3)
		return false;
	for (unsigned k = 0; k < 12; k++) {
		if (ci_equal(s + t0, 3, months + 3 * k, 3))
			mon = k + 1;
	}
	if (mon == 0)
		return false;
	i = date_skip(s, i, n);
	if (i < n && s[i] == '-')
		i++;
	if (!date_number(s, &i, n, 4, &year, &digits))
		return false;
	if (digits == 2)
		year += year < 50 ? 2000 : 1900;
	else if (digits == 3)
		year += 1900;
	if (year < 1900 || year > 9999)
		return false;
	/* the day must exist in that month */
	{
		static const unsigned mdays[12] = {
			31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
		};
		bool leap = (year % 4 == 0 && year % 100 != 0) ||
			year % 400 == 0;

		if (day > mdays[mon - 1] || (mon == 2 && day == 29 && !leap))
			return false;
	}
	i = date_skip(s, i, n);
	if (!date_number(s, &i, n, 2, &hh, NULL) || hh > 23)
		return false;
	i = date_skip(s, i, n);
	if (i >= n || s[i] != ':')
		return false;
	i = date_skip(s, i + 1, n);
	if (!date_number(s, &i, n, 2, &mm, NULL) || mm > 59)
		return false;
	i = date_skip(s, i, n);
	if (i < n && s[i] == ':') {
		i = date_skip(s, i + 1, n);
		if (!date_number(s, &i, n, 2, &ss, NULL) || ss > 60)
			return false;
		i = date_skip(s, i, n);
	}
	if (!date_zone(s, i, n, &tz))
		return false;
	days = days_from_civil(year, mon, day);
	secs = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)tz * 60;
	if (when_r != NULL)
		*when_r = (time_t)secs;
	if (tz_minutes_r != NULL)
		*tz_minutes_r = tz;
	if (day_r != NULL)
		*day_r = (time_t)(days * 86400);
	return true;
}

bool mime_sent_date(const struct mime_message *m, time_t *when_r,
		    int *tz_minutes_r, time_t *day_r)
{
	struct mime_field f;

	if (!part_field(m, m->root, "Date", 0, &f))
		return false;
	return mime_parse_date(m->data + f.value_off,
			       f.value_end - f.value_off, when_r,
			       tz_minutes_r, day_r);
}
