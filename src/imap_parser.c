/*
 * imap_parser.c - incremental IMAP command parser.
 *
 * Two layers.  A byte-at-a-time scanner (imap_parser_feed and scan_*)
 * frames one command: it copies the bytes into the line buffer, checks the
 * lexical rules that do not depend on the grammar (tag, command name, NUL,
 * 8-bit, quoted strings, literal headers, nesting, size limits) and knows
 * where literals start and end, so that it can ask for a continuation and
 * skip the rest of a bad command.  Because all its state is explicit, the
 * result cannot depend on how the input was split into feeds.
 *
 * Once a line is complete, a recursive-descent parser (struct pctx and
 * parse_*) reads the buffer again with the grammar of the command from the
 * command table and builds a struct imap_command.  The same parser also
 * runs on the prefix of a command when a synchronising literal (or the
 * APPEND message literal) is announced: reaching the end of that prefix
 * means "valid so far", so a bad command is refused before the client
 * uploads a large literal.  Running it once per literal costs at most the
 * line size each time, and a client pays a round trip for every {n}.
 *
 * Parsed values live in a per-command arena; the APPEND message is not
 * copied: the command takes over the line buffer and points into it.
 */
#include "autoconfig.h"

#include "imap_parser.h"

#include <ctype.h>
#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERROR_MAX 128
#define NAME_MAX_LEN 32
#define MEM_CHUNK_SIZE 4096

/* ------------------------------------------------------------------ */
/* Per-command memory */

struct mem_chunk {
	struct mem_chunk *next;
	size_t size, used;
	max_align_t data[];
};

struct imap_command_mem {
	struct mem_chunk *chunks;
	unsigned char *raw;	/* the line buffer, when APPEND borrows it */
};

/* Zeroed memory from the command's arena, NULL on overflow or ENOMEM. */
static void *mem_alloc(struct imap_command_mem *m, size_t size)
{
	const size_t align = alignof(max_align_t);
	struct mem_chunk *c = m->chunks;
	unsigned char *ret;

	if (size > SIZE_MAX - align)
		return NULL;
	size = size == 0 ? align : (size + align - 1) & ~(align - 1);
	if (c == NULL || c->size - c->used < size) {
		size_t csize = size > MEM_CHUNK_SIZE ? size : MEM_CHUNK_SIZE;

		if (csize > SIZE_MAX - sizeof(*c))
			return NULL;
		c = malloc(sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		c->next = m->chunks;
		m->chunks = c;
	}
	ret = (unsigned char *)c->data + c->used;
	c->used += size;
	memset(ret, 0, size);
	return ret;
}

static void *mem_array(struct imap_command_mem *m, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	return mem_alloc(m, n * size);
}

static void mem_free(struct imap_command_mem *m)
{
	struct mem_chunk *c, *next;

	for (c = m->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(m->raw);
	free(m);
}

void imap_command_free(struct imap_command **cmd)
{
	if (*cmd == NULL)
		return;
	if ((*cmd)->mem != NULL)
		mem_free((*cmd)->mem);
	free(*cmd);
	*cmd = NULL;
}

bool imap_string_is_text(const struct imap_string *s)
{
	return s->data != NULL && memchr(s->data, '\0', s->len) == NULL;
}

/* ------------------------------------------------------------------ */
/* Character classes (RFC 3501 section 9) */

static bool is_atom_char(int ch)
{
	return ch > 0x20 && ch < 0x7f && strchr("(){%*\"\\]", ch) == NULL;
}

static bool is_astring_char(int ch)
{
	return is_atom_char(ch) || ch == ']';
}

static bool is_tag_char(int ch)
{
	return is_astring_char(ch) && ch != '+';
}

static bool is_list_char(int ch)
{
	return is_atom_char(ch) || ch == '%' || ch == '*' || ch == ']';
}

static bool is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static bool word_eq(const unsigned char *p, size_t len, const char *word)
{
	return strlen(word) == len &&
	       strncasecmp((const char *)p, word, len) == 0;
}

/* ------------------------------------------------------------------ */
/* The grammar parser's context */

struct pctx {
	const struct imap_parser_limits *lim;
	const unsigned char *buf;
	size_t pos, end;
	/* The buffer stops before the command does (at a literal's data):
	 * reaching its end is "incomplete", not "end of line". */
	bool partial, incomplete;
	bool borrowed;		/* a string points into buf */
	const char *error;
	char errbuf[ERROR_MAX];
	struct imap_command_mem *mem;
	unsigned args, search_depth;
};

/* The next byte, or -1 at the end of the line (or of the prefix). */
static int peek(struct pctx *c)
{
	if (c->pos < c->end)
		return c->buf[c->pos];
	if (c->partial && !c->incomplete) {
		c->incomplete = true;
		if (c->error == NULL)
			c->error = "Incomplete";
	}
	return -1;
}

static bool fail(struct pctx *c, const char *msg)
{
	if (c->error == NULL)
		c->error = msg;
	return false;
}

/* Only static strings go into fmt's arguments: messages reach the client
 * and must not echo its data. */
static bool failf(struct pctx *c, const char *fmt, ...) PLUTO_PRINTF(2, 3);
static bool failf(struct pctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->error != NULL)
		return false;
	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	c->error = c->errbuf;
	return false;
}

static bool oom(struct pctx *c)
{
	return fail(c, "Out of memory");
}

static bool count_arg(struct pctx *c)
{
	if (++c->args > c->lim->max_args)
		return fail(c, "Too many arguments");
	return true;
}

/* Consumes the SP before an argument called what. */
static bool need_arg(struct pctx *c, const char *what)
{
	int ch = peek(c);

	if (ch == ' ') {
		c->pos++;
		if (peek(c) == -1)
			return failf(c, "Missing %s", what);
		return true;
	}
	if (ch == -1)
		return failf(c, "Missing %s", what);
	return failf(c, "Expected a space before %s", what);
}

static bool expect_char(struct pctx *c, int want, const char *msg)
{
	if (peek(c) != want)
		return fail(c, msg);
	c->pos++;
	return true;
}

static bool set_string(struct pctx *c, const unsigned char *p, size_t len,
		       struct imap_string *out)
{
	char *s;

	if (len == SIZE_MAX)
		return oom(c);
	s = mem_alloc(c->mem, len + 1);
	if (s == NULL)
		return oom(c);
	memcpy(s, p, len);
	s[len] = '\0';
	out->data = s;
	out->len = len;
	return true;
}

/* Reads 1*pred characters; *start_r and *len_r give them. */
static size_t read_while(struct pctx *c, bool (*pred)(int), size_t *start_r)
{
	*start_r = c->pos;
	while (pred(peek(c)))
		c->pos++;
	return c->pos - *start_r;
}

static bool read_atom(struct pctx *c, struct imap_string *out,
		      const char *what)
{
	size_t start, len;

	if (!count_arg(c))
		return false;
	len = read_while(c, is_atom_char, &start);
	if (len == 0)
		return failf(c, "Invalid %s", what);
	return set_string(c, c->buf + start, len, out);
}

static bool read_quoted(struct pctx *c, struct imap_string *out)
{
	size_t start, n = 0, i;
	char *s;
	int ch;

	c->pos++;
	start = c->pos;
	while ((ch = peek(c)) != '"') {
		if (ch == -1)
			return fail(c, "Unterminated quoted string");
		if (ch == '\\') {
			c->pos++;
			ch = peek(c);
			if (ch != '\\' && ch != '"')
				return fail(c, "Invalid escape in quoted "
					    "string");
		}
		c->pos++;
		n++;
	}
	s = mem_alloc(c->mem, n + 1);
	if (s == NULL)
		return oom(c);
	out->data = s;
	out->len = n;
	for (i = start; i < c->pos; i++) {
		if (c->buf[i] == '\\')
			i++;
		*s++ = (char)c->buf[i];
	}
	*s = '\0';
	c->pos++;
	return true;
}

/*
 * Reads {n}CRLF<n bytes> or {n+}CRLF<n bytes>.  The scanner has checked the
 * header and the size already.  With borrow the string points into the
 * line buffer (not NUL-terminated until the command is finished).
 */
static bool read_literal(struct pctx *c, struct imap_string *out,
			 bool borrow)
{
	uint64_t n = 0;
	size_t start;
	int ch;

	c->pos++;
	while (is_digit(ch = peek(c))) {
		if (n > (UINT64_MAX - 9) / 10)
			return fail(c, "Literal too large");
		n = n * 10 + (uint64_t)(ch - '0');
		c->pos++;
	}
	if (peek(c) == '+')
		c->pos++;
	if (!expect_char(c, '}', "Invalid literal"))
		return false;
	if (peek(c) == '\r')
		c->pos++;
	if (!expect_char(c, '\n', "Invalid literal"))
		return false;
	if (c->end - c->pos < n) {
		if (c->partial) {
			c->pos = c->end;
			peek(c);
			return false;
		}
		return fail(c, "Truncated literal");
	}
	start = c->pos;
	c->pos += (size_t)n;
	if (borrow) {
		out->data = (const char *)c->buf + start;
		out->len = (size_t)n;
		c->borrowed = true;
		return true;
	}
	return set_string(c, c->buf + start, (size_t)n, out);
}

static bool read_string(struct pctx *c, struct imap_string *out,
			const char *what)
{
	int ch = peek(c);

	if (!count_arg(c))
		return false;
	if (ch == '"')
		return read_quoted(c, out);
	if (ch == '{')
		return read_literal(c, out, false);
	return failf(c, "Invalid %s: expected a quoted string or literal",
		     what);
}

static bool read_astring(struct pctx *c, struct imap_string *out,
			 const char *what)
{
	size_t start, len;
	int ch = peek(c);

	if (ch == '"' || ch == '{')
		return read_string(c, out, what);
	if (!count_arg(c))
		return false;
	len = read_while(c, is_astring_char, &start);
	if (len == 0)
		return failf(c, "Invalid %s", what);
	return set_string(c, c->buf + start, len, out);
}

/* A mailbox: an astring, with INBOX in any case given as "INBOX". */
static bool read_mailbox(struct pctx *c, struct imap_string *out)
{
	if (!read_astring(c, out, "mailbox name"))
		return false;
	if (out->len == 5 && strncasecmp(out->data, "INBOX", 5) == 0)
		out->data = "INBOX";
	return true;
}

static bool read_nil(struct pctx *c)
{
	size_t save = c->pos, start, len;

	len = read_while(c, is_atom_char, &start);
	if (word_eq(c->buf + start, len, "NIL"))
		return true;
	c->pos = save;
	return false;
}

static bool read_number(struct pctx *c, uint32_t *v_r, bool nonzero,
			const char *what)
{
	uint64_t v = 0;
	size_t start = c->pos;
	int ch;

	while (is_digit(ch = peek(c))) {
		v = v * 10 + (uint64_t)(ch - '0');
		if (v > UINT32_MAX)
			return failf(c, "Invalid %s: number too large", what);
		c->pos++;
	}
	if (c->pos == start)
		return failf(c, "Invalid %s: expected a number", what);
	if (nonzero && (v == 0 || c->buf[start] == '0'))
		return failf(c, "Invalid %s: must be a non-zero number", what);
	*v_r = (uint32_t)v;
	return true;
}

/* ------------------------------------------------------------------ */
/* Sequence sets */

static int range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static bool read_seq_number(struct pctx *c, uint64_t *v_r)
{
	uint32_t v = 0;

	if (peek(c) == '*') {
		c->pos++;
		*v_r = IMAP_SEQ_STAR;
		return true;
	}
	if (peek(c) == '0')
		return fail(c, "Invalid sequence set: 0 is not a valid number");
	if (!read_number(c, &v, true, "sequence set"))
		return false;
	*v_r = v;
	return true;
}

static bool read_seqset(struct pctx *c, struct imap_seqset *out)
{
	struct buf tmp = BUF_INIT;
	struct imap_seq_range r, *ranges, *last;
	size_t i, n;
	int ch;

	if (!count_arg(c))
		return false;
	for (;;) {
		if (!read_seq_number(c, &r.lo))
			goto err;
		r.hi = r.lo;
		if (peek(c) == ':') {
			c->pos++;
			if (!read_seq_number(c, &r.hi))
				goto err;
		}
		if (r.lo > r.hi) {
			uint64_t t = r.lo;

			r.lo = r.hi;
			r.hi = t;
		}
		if (buf_append(&tmp, &r, sizeof(r)) < 0) {
			oom(c);
			goto err;
		}
		if (peek(c) != ',')
			break;
		c->pos++;
	}
	ch = peek(c);
	if (ch != -1 && ch != ' ' && ch != ')') {
		fail(c, "Invalid sequence set");
		goto err;
	}
	n = tmp.len / sizeof(r);
	ranges = (struct imap_seq_range *)(void *)tmp.data;
	qsort(ranges, n, sizeof(r), range_cmp);
	/* Merge in place; '*' sorts last, see imap_seqset_contains. */
	last = &ranges[0];
	for (i = 1; i < n; i++) {
		if (ranges[i].lo <= last->hi + 1) {
			if (ranges[i].hi > last->hi)
				last->hi = ranges[i].hi;
		} else {
			*++last = ranges[i];
		}
	}
	n = (size_t)(last - ranges) + 1;
	last = mem_array(c->mem, n, sizeof(r));
	if (last == NULL) {
		oom(c);
		goto err;
	}
	memcpy(last, ranges, n * sizeof(r));
	out->ranges = last;
	out->count = (unsigned)n;
	buf_free(&tmp);
	return true;
err:
	buf_free(&tmp);
	return false;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n,
			  uint32_t max)
{
	const struct imap_seq_range *r;
	unsigned lo = 0, hi = set->count;

	if (n == 0 || n > max || set->count == 0)
		return false;
	r = &set->ranges[set->count - 1];
	if (r->hi == IMAP_SEQ_STAR) {
		/* '*' is max; a range like 7:* with max 5 means 5:7. */
		uint64_t a = r->lo == IMAP_SEQ_STAR ? max : r->lo;
		uint64_t b = max;

		if (a > b) {
			uint64_t t = a;

			a = b;
			b = t;
		}
		if (n >= a && n <= b)
			return true;
		hi--;
	}
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		r = &set->ranges[mid];
		if (n < r->lo)
			hi = mid;
		else if (n > r->hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Flags */

static const struct {
	const char *name;
	unsigned bit;
} system_flags[] = {
	{ "\\Seen", IMAP_FLAG_SEEN },
	{ "\\Answered", IMAP_FLAG_ANSWERED },
	{ "\\Flagged", IMAP_FLAG_FLAGGED },
	{ "\\Deleted", IMAP_FLAG_DELETED },
	{ "\\Draft", IMAP_FLAG_DRAFT },
	{ "\\Recent", IMAP_FLAG_RECENT },
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static bool read_flag(struct pctx *c, struct imap_flags *f, struct buf *kw)
{
	struct imap_string s;
	size_t start, len, i;

	if (!count_arg(c))
		return false;
	start = c->pos;
	if (peek(c) == '\\')
		c->pos++;
	while (is_atom_char(peek(c)))
		c->pos++;
	len = c->pos - start;
	if (len == 0 || (len == 1 && c->buf[start] == '\\'))
		return fail(c, "Invalid flag");
	if (c->buf[start] != '\\') {
		if (!set_string(c, c->buf + start, len, &s))
			return false;
		if (buf_append(kw, &s, sizeof(s)) < 0)
			return oom(c);
		return true;
	}
	for (i = 0; i < N_ELEMENTS(system_flags); i++) {
		if (word_eq(c->buf + start, len, system_flags[i].name))
			break;
	}
	if (i == N_ELEMENTS(system_flags))
		return fail(c, "Invalid system flag");
	if (system_flags[i].bit == IMAP_FLAG_RECENT)
		return fail(c, "The \\Recent flag cannot be set");
	f->system |= system_flags[i].bit;
	return true;
}

static bool finish_flags(struct pctx *c, struct imap_flags *f, struct buf *kw)
{
	struct imap_string *k;
	size_t n = kw->len / sizeof(*k);

	if (n == 0)
		return true;
	k = mem_array(c->mem, n, sizeof(*k));
	if (k == NULL)
		return oom(c);
	memcpy(k, kw->data, kw->len);
	f->keywords = k;
	f->keyword_count = (unsigned)n;
	return true;
}

/* "(" [flag *(SP flag)] ")", or with bare, flag *(SP flag) to the end. */
static bool read_flags(struct pctx *c, struct imap_flags *f, bool bare)
{
	struct buf kw = BUF_INIT;
	bool ok = false;

	memset(f, 0, sizeof(*f));
	if (!bare) {
		if (!count_arg(c))
			return false;
		if (!expect_char(c, '(', "Expected a flag list"))
			return false;
		if (peek(c) == ')') {
			c->pos++;
			return true;
		}
	}
	for (;;) {
		if (!read_flag(c, f, &kw))
			goto out;
		if (peek(c) != ' ')
			break;
		c->pos++;
	}
	if (!bare && !expect_char(c, ')', "Missing ')' after flag list"))
		goto out;
	ok = finish_flags(c, f, &kw);
out:
	buf_free(&kw);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Dates */

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static bool is_leap(long y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long y, int m)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1). */
static long long days_since_epoch(long y, int m, int d)
{
	static const int before[12] = {
		0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
	};
	long long py = y - 1;
	long long days = 365 * py + py / 4 - py / 100 + py / 400;

	days += before[m - 1] + d - 1;
	if (m > 2 && is_leap(y))
		days++;
	return days - 719162;	/* days from 0001-01-01 to 1970-01-01 */
}

static bool get_digits(const char *s, size_t n, long *v_r)
{
	long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*v_r = v;
	return true;
}

static bool to_time(long long secs, time_t *t_r)
{
	time_t t = (time_t)secs;

	if ((long long)t != secs)
		return false;
	*t_r = t;
	return true;
}

/*
 * "d-Mon-yyyy" or "dd-Mon-yyyy" (also " d-Mon-yyyy" when fixed, as in
 * date-time).  Returns the number of characters used, 0 if invalid.
 */
static size_t parse_date_text(const char *s, size_t len, bool fixed,
			      long long *days_r)
{
	size_t skip = 0, dlen, i;
	long day, year;
	int m;

	if (fixed && len >= 2 && s[0] == ' ') {
		skip = 1;
		dlen = 1;
	} else {
		dlen = len >= 2 && is_digit((unsigned char)s[1]) ? 2 : 1;
	}
	s += skip;
	len -= skip;
	if (len < dlen + 9 || !get_digits(s, dlen, &day) || s[dlen] != '-' ||
	    s[dlen + 4] != '-' || !get_digits(s + dlen + 5, 4, &year))
		return 0;
	for (i = 0; i < 12; i++) {
		if (strncasecmp(s + dlen + 1, month_names[i], 3) == 0)
			break;
	}
	if (i == 12)
		return 0;
	m = (int)i + 1;
	if (year < 1 || day < 1 || day > days_in_month(year, m))
		return 0;
	*days_r = days_since_epoch(year, m, (int)day);
	return skip + dlen + 9;
}

/* date-time = "dd-Mon-yyyy hh:mm:ss +zzzz", to UTC. */
static bool parse_date_time(const struct imap_string *str, time_t *t_r)
{
	const char *s = str->data;
	size_t len = str->len, n;
	long long days, secs;
	long hh, mm, ss, zh, zm;

	n = parse_date_text(s, len, true, &days);
	if (n == 0 || len - n != 15)
		return false;
	s += n;
	if (s[0] != ' ' || !get_digits(s + 1, 2, &hh) || s[3] != ':' ||
	    !get_digits(s + 4, 2, &mm) || s[6] != ':' ||
	    !get_digits(s + 7, 2, &ss) || s[9] != ' ' ||
	    (s[10] != '+' && s[10] != '-') || !get_digits(s + 11, 2, &zh) ||
	    !get_digits(s + 13, 2, &zm))
		return false;
	if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return false;
	secs = days * 86400 + hh * 3600 + mm * 60 + ss;
	/* Local time = UTC + zone, so UTC = local - zone. */
	if (s[10] == '+')
		secs -= zh * 3600 + zm * 60;
	else
		secs += zh * 3600 + zm * 60;
	return to_time(secs, t_r);
}

/* SEARCH date = date-text / DQUOTE date-text DQUOTE */
static bool read_search_date(struct pctx *c, time_t *t_r)
{
	struct imap_string s;
	long long days;
	size_t start, len;

	if (!count_arg(c))
		return false;
	if (peek(c) == '"') {
		if (!read_quoted(c, &s))
			return false;
	} else {
		len = read_while(c, is_atom_char, &start);
		s.data = (const char *)c->buf + start;
		s.len = len;
	}
	if (parse_date_text(s.data, s.len, false, &days) != s.len ||
	    s.len == 0 || !to_time(days * 86400, t_r))
		return fail(c, "Invalid date");
	return true;
}

/* ------------------------------------------------------------------ */
/* FETCH attributes */

static const struct {
	const char *name;
	enum imap_fetch_type type;
} fetch_names[] = {
	{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
	{ "FLAGS", IMAP_FETCH_FLAGS },
	{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE },
	{ "RFC822", IMAP_FETCH_RFC822 },
	{ "RFC822.HEADER", IMAP_FETCH_RFC822_HEADER },
	{ "RFC822.SIZE", IMAP_FETCH_RFC822_SIZE },
	{ "RFC822.TEXT", IMAP_FETCH_RFC822_TEXT },
	{ "BODY", IMAP_FETCH_BODY },
	{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE },
	{ "UID", IMAP_FETCH_UID },
};

static bool is_fetch_name_char(int ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       is_digit(ch) || ch == '.';
}

static bool is_section_word_char(int ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       ch == '.';
}

/* header-list = "(" header-fld-name *(SP header-fld-name) ")" */
static bool read_header_list(struct pctx *c, struct imap_string **fields_r,
			     unsigned *count_r)
{
	struct buf tmp = BUF_INIT;
	struct imap_string s = { NULL, 0 };
	bool ok = false;

	if (!expect_char(c, ' ', "Expected a space before the header list") ||
	    !count_arg(c) ||
	    !expect_char(c, '(', "Expected a header field list"))
		return false;
	for (;;) {
		if (!read_astring(c, &s, "header field name"))
			goto out;
		if (s.len == 0) {
			fail(c, "Invalid header field name");
			goto out;
		}
		if (buf_append(&tmp, &s, sizeof(s)) < 0) {
			oom(c);
			goto out;
		}
		if (peek(c) != ' ')
			break;
		c->pos++;
	}
	if (!expect_char(c, ')', "Missing ')' after header field list"))
		goto out;
	*count_r = (unsigned)(tmp.len / sizeof(s));
	*fields_r = mem_array(c->mem, *count_r, sizeof(s));
	if (*fields_r == NULL) {
		oom(c);
		goto out;
	}
	memcpy(*fields_r, tmp.data, tmp.len);
	ok = true;
out:
	buf_free(&tmp);
	return ok;
}

/* section = "[" [section-spec] "]", then partial = "<" n "." nz ">" */
static bool read_section(struct pctx *c, struct imap_fetch_att *att)
{
	struct buf parts = BUF_INIT;
	struct imap_string *fields = NULL;
	uint32_t part, *pa;
	size_t start, len;
	bool ok = false;

	c->pos++;
	if (peek(c) == ']')
		goto close;
	while (is_digit(peek(c))) {
		if (!read_number(c, &part, true, "section part"))
			goto out;
		if (buf_append(&parts, &part, sizeof(part)) < 0) {
			oom(c);
			goto out;
		}
		if (peek(c) != '.')
			goto have_parts;
		c->pos++;
	}
	len = read_while(c, is_section_word_char, &start);
	if (word_eq(c->buf + start, len, "HEADER")) {
		att->text = IMAP_SECTION_HEADER;
	} else if (word_eq(c->buf + start, len, "HEADER.FIELDS")) {
		att->text = IMAP_SECTION_HEADER_FIELDS;
	} else if (word_eq(c->buf + start, len, "HEADER.FIELDS.NOT")) {
		att->text = IMAP_SECTION_HEADER_FIELDS_NOT;
	} else if (word_eq(c->buf + start, len, "TEXT")) {
		att->text = IMAP_SECTION_TEXT;
	} else if (word_eq(c->buf + start, len, "MIME") && parts.len > 0) {
		att->text = IMAP_SECTION_MIME;
	} else {
		fail(c, "Invalid section in BODY[]");
		goto out;
	}
	if (att->text == IMAP_SECTION_HEADER_FIELDS ||
	    att->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
		if (!read_header_list(c, &fields, &att->field_count))
			goto out;
		att->fields = fields;
	}
have_parts:
	if (parts.len > 0) {
		att->part_count = (unsigned)(parts.len / sizeof(part));
		pa = mem_array(c->mem, att->part_count, sizeof(part));
		if (pa == NULL) {
			oom(c);
			goto out;
		}
		memcpy(pa, parts.data, parts.len);
		att->parts = pa;
	}
close:
	if (!expect_char(c, ']', "Missing ']' after section"))
		goto out;
	if (peek(c) == '<') {
		c->pos++;
		att->partial = true;
		if (!read_number(c, &att->partial_offset, false,
				 "partial offset") ||
		    !expect_char(c, '.', "Invalid partial range") ||
		    !read_number(c, &att->partial_length, true,
				 "partial length") ||
		    !expect_char(c, '>', "Invalid partial range"))
			goto out;
	}
	ok = true;
out:
	buf_free(&parts);
	return ok;
}

static bool read_fetch_att(struct pctx *c, struct imap_fetch_att *att)
{
	size_t start, len, i;
	int ch;

	if (!count_arg(c))
		return false;
	memset(att, 0, sizeof(*att));
	len = read_while(c, is_fetch_name_char, &start);
	if (peek(c) == '[' && (word_eq(c->buf + start, len, "BODY") ||
			       word_eq(c->buf + start, len, "BODY.PEEK"))) {
		att->type = IMAP_FETCH_BODY_SECTION;
		att->peek = len == 9;
		if (!read_section(c, att))
			return false;
	} else {
		for (i = 0; i < N_ELEMENTS(fetch_names); i++) {
			if (word_eq(c->buf + start, len, fetch_names[i].name))
				break;
		}
		if (i == N_ELEMENTS(fetch_names))
			return fail(c, "Unknown FETCH attribute");
		att->type = fetch_names[i].type;
	}
	ch = peek(c);
	if (ch != -1 && ch != ' ' && ch != ')')
		return fail(c, "Invalid FETCH attribute");
	return true;
}

/* ------------------------------------------------------------------ */
/* SEARCH keys */

enum search_arg {
	SA_NONE,
	SA_ASTRING,
	SA_ATOM,
	SA_DATE,
	SA_NUMBER,
	SA_HEADER,
	SA_SEQSET,
	SA_KEY,
	SA_TWO_KEYS,
};

static const struct search_def {
	const char *name;
	enum imap_search_type type;
	enum search_arg arg;
} search_defs[] = {
	{ "ALL", IMAP_SEARCH_ALL, SA_NONE },
	{ "ANSWERED", IMAP_SEARCH_ANSWERED, SA_NONE },
	{ "BCC", IMAP_SEARCH_BCC, SA_ASTRING },
	{ "BEFORE", IMAP_SEARCH_BEFORE, SA_DATE },
	{ "BODY", IMAP_SEARCH_BODY, SA_ASTRING },
	{ "CC", IMAP_SEARCH_CC, SA_ASTRING },
	{ "DELETED", IMAP_SEARCH_DELETED, SA_NONE },
	{ "DRAFT", IMAP_SEARCH_DRAFT, SA_NONE },
	{ "FLAGGED", IMAP_SEARCH_FLAGGED, SA_NONE },
	{ "FROM", IMAP_SEARCH_FROM, SA_ASTRING },
	{ "HEADER", IMAP_SEARCH_HEADER, SA_HEADER },
	{ "KEYWORD", IMAP_SEARCH_KEYWORD, SA_ATOM },
	{ "LARGER", IMAP_SEARCH_LARGER, SA_NUMBER },
	{ "NEW", IMAP_SEARCH_NEW, SA_NONE },
	{ "NOT", IMAP_SEARCH_NOT, SA_KEY },
	{ "OLD", IMAP_SEARCH_OLD, SA_NONE },
	{ "ON", IMAP_SEARCH_ON, SA_DATE },
	{ "OR", IMAP_SEARCH_OR, SA_TWO_KEYS },
	{ "RECENT", IMAP_SEARCH_RECENT, SA_NONE },
	{ "SEEN", IMAP_SEARCH_SEEN, SA_NONE },
	{ "SENTBEFORE", IMAP_SEARCH_SENTBEFORE, SA_DATE },
	{ "SENTON", IMAP_SEARCH_SENTON, SA_DATE },
	{ "SENTSINCE", IMAP_SEARCH_SENTSINCE, SA_DATE },
	{ "SINCE", IMAP_SEARCH_SINCE, SA_DATE },
	{ "SMALLER", IMAP_SEARCH_SMALLER, SA_NUMBER },
	{ "SUBJECT", IMAP_SEARCH_SUBJECT, SA_ASTRING },
	{ "TEXT", IMAP_SEARCH_TEXT, SA_ASTRING },
	{ "TO", IMAP_SEARCH_TO, SA_ASTRING },
	{ "UID", IMAP_SEARCH_UID, SA_SEQSET },
	{ "UNANSWERED", IMAP_SEARCH_UNANSWERED, SA_NONE },
	{ "UNDELETED", IMAP_SEARCH_UNDELETED, SA_NONE },
	{ "UNDRAFT", IMAP_SEARCH_UNDRAFT, SA_NONE },
	{ "UNFLAGGED", IMAP_SEARCH_UNFLAGGED, SA_NONE },
	{ "UNKEYWORD", IMAP_SEARCH_UNKEYWORD, SA_ATOM },
	{ "UNSEEN", IMAP_SEARCH_UNSEEN, SA_NONE },
};

static bool read_search_key(struct pctx *c, struct imap_search_key **key_r);

/* Keys separated by SP until ')' (in_list) or the end of the line. */
static bool read_search_keys(struct pctx *c, struct imap_search_key *parent,
			     bool in_list)
{
	struct imap_search_key *key = NULL, **tail = NULL;

	for (;;) {
		if (!read_search_key(c, &key))
			return false;
		if (tail == NULL)
			parent->children = key;
		else
			*tail = key;
		tail = (struct imap_search_key **)&key->next;
		if (peek(c) != ' ')
			break;
		c->pos++;
	}
	if (in_list)
		return expect_char(c, ')', "Missing ')' in search keys");
	return true;
}

static bool read_search_arg(struct pctx *c, const struct search_def *def,
			    struct imap_search_key *key)
{
	struct imap_search_key *k2 = NULL;

	if (peek(c) == ' ') {
		c->pos++;
		if (peek(c) == -1)
			return failf(c, "Missing argument for %s", def->name);
	} else if (peek(c) == -1) {
		return failf(c, "Missing argument for %s", def->name);
	} else {
		return failf(c, "Expected a space after %s", def->name);
	}
	switch (def->arg) {
	case SA_NONE:
		break;
	case SA_ASTRING:
		return read_astring(c, &key->str, "search string");
	case SA_ATOM:
		return read_atom(c, &key->str, "keyword");
	case SA_DATE:
		return read_search_date(c, &key->date);
	case SA_NUMBER:
		return count_arg(c) &&
		       read_number(c, &key->number, false, "size");
	case SA_HEADER:
		return read_astring(c, &key->field, "header field name") &&
		       need_arg(c, "header value") &&
		       read_astring(c, &key->str, "header value");
	case SA_SEQSET:
		return read_seqset(c, &key->set);
	case SA_KEY:
		if (!read_search_key(c, &k2))
			return false;
		key->children = k2;
		return true;
	case SA_TWO_KEYS:
		if (!read_search_key(c, &k2))
			return false;
		key->children = k2;
		if (!need_arg(c, "second key of OR") ||
		    !read_search_key(c, (struct imap_search_key **)&k2->next))
			return false;
		return true;
	}
	return true;
}

static bool read_search_key(struct pctx *c, struct imap_search_key **key_r)
{
	const struct search_def *def = NULL;
	struct imap_search_key *key;
	size_t start, len, i;
	bool ok;
	int ch;

	if (c->search_depth >= c->lim->max_search_depth)
		return fail(c, "Search keys nested too deeply");
	key = mem_alloc(c->mem, sizeof(*key));
	if (key == NULL)
		return oom(c);
	*key_r = key;
	ch = peek(c);
	if (ch == '(') {
		if (!count_arg(c))
			return false;
		c->pos++;
		key->type = IMAP_SEARCH_AND;
		c->search_depth++;
		ok = read_search_keys(c, key, true);
		c->search_depth--;
		return ok;
	}
	if (ch == '*' || is_digit(ch)) {
		key->type = IMAP_SEARCH_SEQSET;
		return read_seqset(c, &key->set);
	}
	if (!count_arg(c))
		return false;
	len = read_while(c, is_atom_char, &start);
	if (len == 0)
		return fail(c, "Missing search key");
	for (i = 0; i < N_ELEMENTS(search_defs); i++) {
		if (word_eq(c->buf + start, len, search_defs[i].name)) {
			def = &search_defs[i];
			break;
		}
	}
	if (def == NULL)
		return fail(c, "Unknown search key");
	key->type = def->type;
	if (def->arg == SA_NONE)
		return true;
	c->search_depth++;
	ok = read_search_arg(c, def, key);
	c->search_depth--;
	return ok;
}

/* ------------------------------------------------------------------ */
/* Per-command grammars */

static bool parse_none(struct pctx *c, struct imap_command *cmd)
{
	(void)c;
	(void)cmd;
	return true;
}

static bool is_base64_char(int ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       is_digit(ch) || ch == '+' || ch == '/';
}

/* AUTHENTICATE auth-type [SP (base64 / "=")]  (RFC 3501, RFC 4959) */
static bool parse_authenticate(struct pctx *c, struct imap_command *cmd)
{
	struct imap_string *ir = &cmd->u.authenticate.initial;
	size_t i, pad = 0;

	if (!need_arg(c, "authentication mechanism") ||
	    !read_atom(c, &cmd->u.authenticate.mechanism,
		       "authentication mechanism"))
		return false;
	if (peek(c) != ' ')
		return true;
	if (!need_arg(c, "initial response") ||
	    !read_atom(c, ir, "initial response"))
		return false;
	cmd->u.authenticate.has_initial = true;
	if (ir->len == 1 && ir->data[0] == '=')
		return true;
	for (i = 0; i < ir->len; i++) {
		if (ir->data[i] == '=')
			pad++;
		else if (pad > 0 || !is_base64_char(ir->data[i]))
			break;
	}
	if (i < ir->len || pad > 2 || ir->len % 4 != 0)
		return fail(c, "Invalid base64 in initial response");
	return true;
}

static bool parse_login(struct pctx *c, struct imap_command *cmd)
{
	return need_arg(c, "user name") &&
	       read_astring(c, &cmd->u.login.user, "user name") &&
	       need_arg(c, "password") &&
	       read_astring(c, &cmd->u.login.password, "password");
}

static bool parse_mailbox(struct pctx *c, struct imap_command *cmd)
{
	return need_arg(c, "mailbox name") &&
	       read_mailbox(c, &cmd->u.mailbox.name);
}

static bool parse_rename(struct pctx *c, struct imap_command *cmd)
{
	return need_arg(c, "mailbox name") &&
	       read_mailbox(c, &cmd->u.rename.from) &&
	       need_arg(c, "new mailbox name") &&
	       read_mailbox(c, &cmd->u.rename.to);
}

/* LIST/LSUB mailbox SP list-mailbox */
static bool parse_list(struct pctx *c, struct imap_command *cmd)
{
	size_t start, len;
	int ch;

	if (!need_arg(c, "reference name") ||
	    !read_astring(c, &cmd->u.list.reference, "reference name") ||
	    !need_arg(c, "mailbox pattern"))
		return false;
	ch = peek(c);
	if (ch == '"' || ch == '{')
		return read_string(c, &cmd->u.list.pattern, "mailbox pattern");
	if (!count_arg(c))
		return false;
	len = read_while(c, is_list_char, &start);
	if (len == 0)
		return fail(c, "Invalid mailbox pattern");
	return set_string(c, c->buf + start, len, &cmd->u.list.pattern);
}

static const struct {
	const char *name;
	unsigned bit;
} status_items[] = {
	{ "MESSAGES", IMAP_STATUS_MESSAGES },
	{ "RECENT", IMAP_STATUS_RECENT },
	{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
	{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
	{ "UNSEEN", IMAP_STATUS_UNSEEN },
};

static bool parse_status(struct pctx *c, struct imap_command *cmd)
{
	size_t start, len, i;

	if (!need_arg(c, "mailbox name") ||
	    !read_mailbox(c, &cmd->u.status.mailbox) ||
	    !need_arg(c, "status items") || !count_arg(c) ||
	    !expect_char(c, '(', "Expected a list of status items"))
		return false;
	for (;;) {
		if (!count_arg(c))
			return false;
		len = read_while(c, is_atom_char, &start);
		for (i = 0; i < N_ELEMENTS(status_items); i++) {
			if (word_eq(c->buf + start, len, status_items[i].name))
				break;
		}
		if (i == N_ELEMENTS(status_items))
			return fail(c, len == 0 && peek(c) == ')' ?
				       "Empty status item list" :
				       "Unknown status item");
		cmd->u.status.items |= status_items[i].bit;
		if (peek(c) != ' ')
			break;
		c->pos++;
	}
	return expect_char(c, ')', "Missing ')' after status items");
}

/* APPEND mailbox [SP flag-list] [SP date-time] SP literal */
static bool parse_append(struct pctx *c, struct imap_command *cmd)
{
	struct imap_string date;

	if (!need_arg(c, "mailbox name") ||
	    !read_mailbox(c, &cmd->u.append.mailbox) ||
	    !need_arg(c, "message literal"))
		return false;
	if (peek(c) == '(') {
		if (!read_flags(c, &cmd->u.append.flags, false) ||
		    !need_arg(c, "message literal"))
			return false;
		cmd->u.append.has_flags = true;
	}
	if (peek(c) == '"') {
		if (!count_arg(c) || !read_quoted(c, &date))
			return false;
		if (!parse_date_time(&date, &cmd->u.append.date))
			return fail(c, "Invalid date-time");
		cmd->u.append.has_date = true;
		if (!need_arg(c, "message literal"))
			return false;
	}
	if (peek(c) != '{')
		return fail(c, "Expected the message as a literal");
	return count_arg(c) &&
	       read_literal(c, &cmd->u.append.message, true);
}

static bool parse_search(struct pctx *c, struct imap_command *cmd)
{
	struct imap_search_key *root;
	size_t save, start, len;

	if (!need_arg(c, "search criteria"))
		return false;
	save = c->pos;
	len = read_while(c, is_atom_char, &start);
	if (word_eq(c->buf + start, len, "CHARSET")) {
		if (!count_arg(c) || !need_arg(c, "charset") ||
		    !read_astring(c, &cmd->u.search.charset, "charset") ||
		    !need_arg(c, "search criteria"))
			return false;
		cmd->u.search.has_charset = true;
	} else {
		c->pos = save;
	}
	root = mem_alloc(c->mem, sizeof(*root));
	if (root == NULL)
		return oom(c);
	root->type = IMAP_SEARCH_AND;
	cmd->u.search.keys = root;
	return read_search_keys(c, root, false);
}

static const struct {
	const char *name;
	unsigned count;
	enum imap_fetch_type types[5];
} fetch_macros[] = {
	{ "ALL", 4, { IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
		      IMAP_FETCH_RFC822_SIZE, IMAP_FETCH_ENVELOPE } },
	{ "FAST", 3, { IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
		       IMAP_FETCH_RFC822_SIZE } },
	{ "FULL", 5, { IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
		       IMAP_FETCH_RFC822_SIZE, IMAP_FETCH_ENVELOPE,
		       IMAP_FETCH_BODY } },
};

static bool parse_fetch(struct pctx *c, struct imap_command *cmd)
{
	struct buf tmp = BUF_INIT;
	struct imap_fetch_att att, *atts;
	size_t save, start, len, i, n;
	bool ok = false;
	int ch;

	if (!need_arg(c, "sequence set") ||
	    !read_seqset(c, &cmd->u.fetch.set) ||
	    !need_arg(c, "fetch attributes"))
		return false;
	save = c->pos;
	len = read_while(c, is_atom_char, &start);
	ch = peek(c);
	for (i = 0; i < N_ELEMENTS(fetch_macros) && (ch == -1 || ch == ' ');
	     i++) {
		if (!word_eq(c->buf + start, len, fetch_macros[i].name))
			continue;
		n = fetch_macros[i].count;
		atts = mem_array(c->mem, n, sizeof(*atts));
		if (atts == NULL || !count_arg(c))
			return atts == NULL ? oom(c) : false;
		for (n = 0; n < fetch_macros[i].count; n++)
			atts[n].type = fetch_macros[i].types[n];
		cmd->u.fetch.atts = atts;
		cmd->u.fetch.count = fetch_macros[i].count;
		return true;
	}
	c->pos = save;
	if (peek(c) != '(') {
		if (!read_fetch_att(c, &att))
			return false;
		atts = mem_alloc(c->mem, sizeof(*atts));
		if (atts == NULL)
			return oom(c);
		*atts = att;
		cmd->u.fetch.atts = atts;
		cmd->u.fetch.count = 1;
		return true;
	}
	if (!count_arg(c))
		return false;
	c->pos++;
	for (;;) {
		if (!read_fetch_att(c, &att))
			goto out;
		if (buf_append(&tmp, &att, sizeof(att)) < 0) {
			oom(c);
			goto out;
		}
		if (peek(c) != ' ')
			break;
		c->pos++;
	}
	if (!expect_char(c, ')', "Missing ')' after fetch attributes"))
		goto out;
	n = tmp.len / sizeof(att);
	atts = mem_array(c->mem, n, sizeof(att));
	if (atts == NULL) {
		oom(c);
		goto out;
	}
	memcpy(atts, tmp.data, tmp.len);
	cmd->u.fetch.atts = atts;
	cmd->u.fetch.count = (unsigned)n;
	ok = true;
out:
	buf_free(&tmp);
	return ok;
}

/* STORE sequence-set SP ["+" / "-"] "FLAGS" [".SILENT"] SP flags */
static bool parse_store(struct pctx *c, struct imap_command *cmd)
{
	const unsigned char *w;
	size_t start, len;

	if (!need_arg(c, "sequence set") ||
	    !read_seqset(c, &cmd->u.store.set) ||
	    !need_arg(c, "store item") || !count_arg(c))
		return false;
	len = read_while(c, is_atom_char, &start);
	w = c->buf + start;
	cmd->u.store.mode = IMAP_STORE_REPLACE;
	if (len > 0 && (w[0] == '+' || w[0] == '-')) {
		cmd->u.store.mode = w[0] == '+' ? IMAP_STORE_ADD :
						  IMAP_STORE_REMOVE;
		w++;
		len--;
	}
	if (word_eq(w, len, "FLAGS.SILENT"))
		cmd->u.store.silent = true;
	else if (!word_eq(w, len, "FLAGS"))
		return fail(c, "Invalid store item: expected [+|-]FLAGS"
			    "[.SILENT]");
	if (!need_arg(c, "flags"))
		return false;
	return read_flags(c, &cmd->u.store.flags, peek(c) != '(');
}

static bool parse_copy(struct pctx *c, struct imap_command *cmd)
{
	return need_arg(c, "sequence set") &&
	       read_seqset(c, &cmd->u.copy.set) &&
	       need_arg(c, "mailbox name") &&
	       read_mailbox(c, &cmd->u.copy.mailbox);
}

static bool parse_expunge(struct pctx *c, struct imap_command *cmd)
{
	if (!cmd->uid)
		return true;
	cmd->u.expunge.has_set = true;
	return need_arg(c, "UID set") && read_seqset(c, &cmd->u.expunge.set);
}

/* ID ("(" *(string SP nstring) ")") / nil  (RFC 2971) */
static bool parse_id(struct pctx *c, struct imap_command *cmd)
{
	struct buf tmp = BUF_INIT;
	struct imap_string pair[2], *f, *v;
	size_t n, i;
	bool ok = false;

	if (!need_arg(c, "ID parameters") || !count_arg(c))
		return false;
	if (read_nil(c)) {
		cmd->u.id.nil = true;
		return true;
	}
	if (!expect_char(c, '(', "Expected NIL or a parameter list"))
		return false;
	while (peek(c) != ')') {
		if (tmp.len > 0 && !expect_char(c, ' ', "Expected a space "
						"between ID parameters"))
			goto out;
		if (!read_string(c, &pair[0], "ID field") ||
		    !need_arg(c, "ID value"))
			goto out;
		if (read_nil(c)) {
			if (!count_arg(c))
				goto out;
			pair[1].data = NULL;
			pair[1].len = 0;
		} else if (!read_string(c, &pair[1], "ID value")) {
			goto out;
		}
		if (buf_append(&tmp, pair, sizeof(pair)) < 0) {
			oom(c);
			goto out;
		}
	}
	c->pos++;
	n = tmp.len / sizeof(pair);
	f = mem_array(c->mem, n, sizeof(*f));
	v = mem_array(c->mem, n, sizeof(*v));
	if (f == NULL || v == NULL) {
		oom(c);
		goto out;
	}
	for (i = 0; i < n; i++) {
		memcpy(&f[i], tmp.data + i * sizeof(pair), sizeof(*f));
		memcpy(&v[i], tmp.data + i * sizeof(pair) + sizeof(*f),
		       sizeof(*v));
	}
	cmd->u.id.fields = f;
	cmd->u.id.values = v;
	cmd->u.id.count = (unsigned)n;
	ok = true;
out:
	buf_free(&tmp);
	return ok;
}

static bool parse_enable(struct pctx *c, struct imap_command *cmd)
{
	struct buf tmp = BUF_INIT;
	struct imap_string s, *caps;
	bool ok = false;

	if (!need_arg(c, "capability"))
		return false;
	do {
		if (tmp.len > 0)
			c->pos++;
		if (!read_atom(c, &s, "capability"))
			goto out;
		if (buf_append(&tmp, &s, sizeof(s)) < 0) {
			oom(c);
			goto out;
		}
	} while (peek(c) == ' ');
	caps = mem_array(c->mem, tmp.len / sizeof(s), sizeof(s));
	if (caps == NULL) {
		oom(c);
		goto out;
	}
	memcpy(caps, tmp.data, tmp.len);
	cmd->u.enable.capabilities = caps;
	cmd->u.enable.count = (unsigned)(tmp.len / sizeof(s));
	ok = true;
out:
	buf_free(&tmp);
	return ok;
}

/* ------------------------------------------------------------------ */
/* The command table */

#define CMD_UID_OK 0x1U		/* may follow "UID" */
#define CMD_UID_ONLY 0x2U	/* only after "UID" */

struct cmd_def {
	const char *name;
	enum imap_cmd_id id;
	unsigned flags;
	/* ABNF after the name, for readers of this table. */
	const char *grammar;
	bool (*parse)(struct pctx *c, struct imap_command *cmd);
};

static const struct cmd_def cmd_defs[] = {
	{ "CAPABILITY", IMAP_CMD_CAPABILITY, 0, "", parse_none },
	{ "NOOP", IMAP_CMD_NOOP, 0, "", parse_none },
	{ "LOGOUT", IMAP_CMD_LOGOUT, 0, "", parse_none },
	{ "STARTTLS", IMAP_CMD_STARTTLS, 0, "", parse_none },
	{ "AUTHENTICATE", IMAP_CMD_AUTHENTICATE, 0,
	  "SP auth-type [SP (base64 / \"=\")]", parse_authenticate },
	{ "LOGIN", IMAP_CMD_LOGIN, 0, "SP userid SP password", parse_login },
	{ "SELECT", IMAP_CMD_SELECT, 0, "SP mailbox", parse_mailbox },
	{ "EXAMINE", IMAP_CMD_EXAMINE, 0, "SP mailbox", parse_mailbox },
	{ "CREATE", IMAP_CMD_CREATE, 0, "SP mailbox", parse_mailbox },
	{ "DELETE", IMAP_CMD_DELETE, 0, "SP mailbox", parse_mailbox },
	{ "RENAME", IMAP_CMD_RENAME, 0, "SP mailbox SP mailbox",
	  parse_rename },
	{ "SUBSCRIBE", IMAP_CMD_SUBSCRIBE, 0, "SP mailbox", parse_mailbox },
	{ "UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE, 0, "SP mailbox",
	  parse_mailbox },
	{ "LIST", IMAP_CMD_LIST, 0, "SP mailbox SP list-mailbox",
	  parse_list },
	{ "LSUB", IMAP_CMD_LSUB, 0, "SP mailbox SP list-mailbox",
	  parse_list },
	{ "STATUS", IMAP_CMD_STATUS, 0,
	  "SP mailbox SP \"(\" status-att *(SP status-att) \")\"",
	  parse_status },
	{ "APPEND", IMAP_CMD_APPEND, 0,
	  "SP mailbox [SP flag-list] [SP date-time] SP literal",
	  parse_append },
	{ "CHECK", IMAP_CMD_CHECK, 0, "", parse_none },
	{ "CLOSE", IMAP_CMD_CLOSE, 0, "", parse_none },
	{ "EXPUNGE", IMAP_CMD_EXPUNGE, CMD_UID_OK,
	  "(UID EXPUNGE: SP sequence-set)", parse_expunge },
	{ "SEARCH", IMAP_CMD_SEARCH, CMD_UID_OK,
	  "[SP \"CHARSET\" SP astring] 1*(SP search-key)", parse_search },
	{ "FETCH", IMAP_CMD_FETCH, CMD_UID_OK,
	  "SP sequence-set SP (\"ALL\" / \"FULL\" / \"FAST\" / fetch-att / "
	  "\"(\" fetch-att *(SP fetch-att) \")\")", parse_fetch },
	{ "STORE", IMAP_CMD_STORE, CMD_UID_OK,
	  "SP sequence-set SP [\"+\" / \"-\"] \"FLAGS\" [\".SILENT\"] SP "
	  "(flag-list / (flag *(SP flag)))", parse_store },
	{ "COPY", IMAP_CMD_COPY, CMD_UID_OK, "SP sequence-set SP mailbox",
	  parse_copy },
	{ "MOVE", IMAP_CMD_MOVE, CMD_UID_OK, "SP sequence-set SP mailbox",
	  parse_copy },
	{ "IDLE", IMAP_CMD_IDLE, 0, "", parse_none },
	{ "UNSELECT", IMAP_CMD_UNSELECT, 0, "", parse_none },
	{ "NAMESPACE", IMAP_CMD_NAMESPACE, 0, "", parse_none },
	{ "ID", IMAP_CMD_ID, 0,
	  "SP (\"(\" [string SP nstring *(SP string SP nstring)] \")\" / "
	  "nil)", parse_id },
	{ "ENABLE", IMAP_CMD_ENABLE, 0, "1*(SP capability)", parse_enable },
};

const char *imap_cmd_name(enum imap_cmd_id id)
{
	size_t i;

	for (i = 0; i < N_ELEMENTS(cmd_defs); i++) {
		if (cmd_defs[i].id == id)
			return cmd_defs[i].name;
	}
	return "?";
}

static const struct cmd_def *cmd_lookup(const unsigned char *name,
					size_t len)
{
	size_t i;

	for (i = 0; i < N_ELEMENTS(cmd_defs); i++) {
		if (word_eq(name, len, cmd_defs[i].name))
			return &cmd_defs[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The scanner */

enum phase {
	PHASE_TAG,
	PHASE_NAME,
	PHASE_UIDNAME,
	PHASE_ARGS,
	PHASE_SKIP,		/* error: skip to the end of the line */
	PHASE_SKIP_LITERAL,	/* error: skip a {n+} literal's data */
	PHASE_FATAL,
};

enum scan_state {
	SCAN_NORMAL,
	SCAN_CR,
	SCAN_QUOTED,
	SCAN_QUOTED_ESC,
	SCAN_LIT_OPEN,		/* after '{' */
	SCAN_LIT_DIGITS,
	SCAN_LIT_PLUS,		/* after '+' */
	SCAN_LIT_CLOSE,		/* after '}' */
	SCAN_LIT_LF,		/* after "}\r" */
	SCAN_LITERAL,		/* copying literal data */
};

/* Skipping states, to find the {n+} literals of a bad command. */
enum skip_state {
	SKIP_NONE,
	SKIP_OPEN,
	SKIP_DIGITS,
	SKIP_PLUS,
	SKIP_SYNC_CLOSE,
	SKIP_NONSYNC_CLOSE,
	SKIP_NONSYNC_CR,
};

struct imap_parser {
	struct imap_parser_limits lim;
	struct buf line;	/* the command so far */
	size_t line_size;	/* counted against max_line_size */
	enum phase phase;
	enum scan_state state;
	size_t tag_len, name_start, args_start;
	const struct cmd_def *def;
	bool uid;
	unsigned depth, argno;

	/* literal being announced or read */
	uint64_t lit_size, lit_left;
	bool lit_overflow, lit_nonsync;

	/* skipping */
	enum skip_state skip;
	uint64_t skip_size, skip_left;
	bool skip_overflow;
	size_t skipped;

	struct imap_command *cmd;
	bool cont_pending;
	uint64_t cont_size;

	/* The tag of the current command, once complete: for errors and
	 * imap_parser_get_pending. */
	struct buf tag;
	bool have_tag;

	char error[ERROR_MAX];
	bool error_fatal;
	bool error_has_tag;
};

void imap_parser_limits_default(struct imap_parser_limits *limits)
{
	limits->max_line_size = IMAP_PARSER_DEFAULT_LINE_SIZE;
	limits->max_literal_size = IMAP_PARSER_DEFAULT_LITERAL_SIZE;
	limits->max_depth = IMAP_PARSER_DEFAULT_DEPTH;
	limits->max_args = IMAP_PARSER_DEFAULT_ARGS;
	limits->max_search_depth = IMAP_PARSER_DEFAULT_SEARCH_DEPTH;
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = calloc(1, sizeof(*p));
	struct imap_parser_limits def;

	if (p == NULL)
		return NULL;
	imap_parser_limits_default(&def);
	if (limits != NULL)
		p->lim = *limits;
	if (p->lim.max_line_size == 0)
		p->lim.max_line_size = def.max_line_size;
	if (p->lim.max_literal_size == 0)
		p->lim.max_literal_size = def.max_literal_size;
	if (p->lim.max_depth == 0)
		p->lim.max_depth = def.max_depth;
	if (p->lim.max_args == 0)
		p->lim.max_args = def.max_args;
	if (p->lim.max_search_depth == 0)
		p->lim.max_search_depth = def.max_search_depth;
	buf_init(&p->line);
	buf_init(&p->tag);
	p->phase = PHASE_TAG;
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	imap_command_free(&p->cmd);
	buf_free(&p->line);
	buf_free(&p->tag);
	free(p);
	*pp = NULL;
}

/* Forgets the current command; the next byte starts a new one. */
static void reset_command(struct imap_parser *p)
{
	/* Don't keep a buffer that grew for a large APPEND. */
	if (p->line.cap > 2 * p->lim.max_line_size)
		buf_free(&p->line);
	buf_reset(&p->line);
	p->line_size = 0;
	p->phase = PHASE_TAG;
	p->state = SCAN_NORMAL;
	p->tag_len = 0;
	p->have_tag = false;
	p->def = NULL;
	p->uid = false;
	p->depth = 0;
	p->argno = 0;
}

/* Keeps a NUL-terminated copy of the tag, which is complete. */
static void save_tag(struct imap_parser *p)
{
	buf_reset(&p->tag);
	p->have_tag = buf_append(&p->tag, p->line.data, p->tag_len) == 0 &&
		      buf_cstr(&p->tag) != NULL;
}

/*
 * Records an error.  ch is the byte that revealed it (already consumed):
 * when that was the LF ending the line there is nothing left to skip.
 */
static enum imap_parse_result scan_error(struct imap_parser *p, int ch,
					 const char *msg, bool fatal)
{
	snprintf(p->error, sizeof(p->error), "%s", msg);
	p->error_fatal = fatal;
	p->error_has_tag = p->have_tag;
	if (fatal) {
		reset_command(p);
		p->phase = PHASE_FATAL;
	} else if (ch == '\n') {
		reset_command(p);
	} else {
		reset_command(p);
		/* Errors found while skipping still name the tag. */
		p->have_tag = p->error_has_tag;
		p->phase = PHASE_SKIP;
		p->skip = SKIP_NONE;
		p->skipped = 0;
	}
	return IMAP_PARSE_ERROR;
}

/*
 * Runs the grammar on the line buffer: the whole command (line_end is the
 * position of its CRLF or LF) or, with partial, the prefix up to a literal
 * just announced.  Returns the command, or NULL with *error_r set (NULL
 * error for a partial command that is valid so far).
 */
static struct imap_command *run_grammar(struct imap_parser *p, bool partial,
					size_t line_end, const char **error_r,
					char *errbuf)
{
	struct imap_command *cmd;
	struct pctx c;
	size_t raw_len;
	char *tag;
	bool ok;

	*error_r = "Out of memory";
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL)
		return NULL;
	cmd->mem = calloc(1, sizeof(*cmd->mem));
	tag = cmd->mem == NULL ? NULL : mem_alloc(cmd->mem, p->tag_len + 1);
	if (tag == NULL) {
		imap_command_free(&cmd);
		return NULL;
	}
	memcpy(tag, p->line.data, p->tag_len);
	cmd->tag = tag;
	cmd->id = p->def->id;
	cmd->name = p->def->name;
	cmd->uid = p->uid;

	memset(&c, 0, sizeof(c));
	c.lim = &p->lim;
	c.buf = p->line.data;
	c.pos = p->args_start;
	c.end = partial ? p->line.len : line_end;
	c.partial = partial;
	c.mem = cmd->mem;
	ok = p->def->parse(&c, cmd);
	if (ok && peek(&c) != -1)
		ok = fail(&c, peek(&c) == ' ' ? "Too many arguments" :
			      "Invalid characters after argument");
	if (partial) {
		imap_command_free(&cmd);
		*error_r = c.incomplete ? NULL : c.error;
		if (*error_r == NULL && !c.incomplete)
			*error_r = "Too many arguments";
	} else if (!ok) {
		imap_command_free(&cmd);
		*error_r = c.error;
	} else if (c.borrowed) {
		/* The APPEND message points into the line: keep it, and
		 * end the message with a NUL over the line's CR or LF. */
		p->line.data[line_end] = '\0';
		cmd->mem->raw = buf_steal(&p->line, &raw_len);
	}
	if (*error_r == c.errbuf) {
		snprintf(errbuf, ERROR_MAX, "%s", c.errbuf);
		*error_r = errbuf;
	}
	return cmd;
}

static enum imap_parse_result scan_eol(struct imap_parser *p, size_t end)
{
	char errbuf[ERROR_MAX];
	const char *error;

	switch (p->phase) {
	case PHASE_TAG:
		if (p->tag_len > 0)
			save_tag(p);
		return scan_error(p, '\n', p->tag_len == 0 ?
				  "Empty command line" :
				  "Missing command name", false);
	case PHASE_NAME:
	case PHASE_UIDNAME: {
		const unsigned char *name = p->line.data + p->name_start;
		size_t len = end - p->name_start;

		if (len == 0)
			return scan_error(p, '\n', "Missing command name",
					  false);
		if (p->phase == PHASE_NAME && word_eq(name, len, "UID"))
			return scan_error(p, '\n', "Missing command after UID",
					  false);
		p->def = cmd_lookup(name, len);
		if (p->def == NULL)
			return scan_error(p, '\n', "Unknown command", false);
		if (p->phase == PHASE_UIDNAME &&
		    (p->def->flags & CMD_UID_OK) == 0)
			return scan_error(p, '\n', "Unknown UID command",
					  false);
		p->args_start = end;
		break;
	}
	default:
		break;
	}
	p->cmd = run_grammar(p, false, end, &error, errbuf);
	if (p->cmd == NULL)
		return scan_error(p, '\n', error, false);
	reset_command(p);
	return IMAP_PARSE_COMPLETE;
}

/* The end of a command name (at SP): look it up. */
static enum imap_parse_result scan_name_end(struct imap_parser *p)
{
	const unsigned char *name = p->line.data + p->name_start;
	size_t len = p->line.len - 1 - p->name_start;

	if (len == 0)
		return scan_error(p, ' ', "Missing command name", false);
	if (p->phase == PHASE_NAME && word_eq(name, len, "UID")) {
		p->uid = true;
		p->phase = PHASE_UIDNAME;
		p->name_start = p->line.len;
		return IMAP_PARSE_NEED_MORE;
	}
	p->def = cmd_lookup(name, len);
	if (p->def == NULL)
		return scan_error(p, ' ', p->uid ? "Unknown UID command" :
				  "Unknown command", false);
	if (p->uid && (p->def->flags & CMD_UID_OK) == 0)
		return scan_error(p, ' ', "Unknown UID command", false);
	p->phase = PHASE_ARGS;
	p->state = SCAN_NORMAL;
	p->args_start = p->line.len - 1;
	p->argno = 1;
	return IMAP_PARSE_NEED_MORE;
}

/* Makes room for exactly more bytes (and a little), for big literals. */
static int line_reserve(struct imap_parser *p, uint64_t more)
{
	struct buf *b = &p->line;
	unsigned char *data;
	size_t need;

	if (more > SIZE_MAX - b->len - 64)
		return -1;
	need = b->len + (size_t)more + 64;
	if (need <= b->cap)
		return 0;
	data = realloc(b->data, need);
	if (data == NULL)
		return -1;
	b->data = data;
	b->cap = need;
	return 0;
}

/* The LF after {n} or {n+}: check the size and the command so far. */
static enum imap_parse_result scan_literal_start(struct imap_parser *p)
{
	bool message = p->def->id == IMAP_CMD_APPEND && p->depth == 0 &&
		       p->argno >= 2;
	uint64_t limit = message ? p->lim.max_literal_size :
				   p->lim.max_line_size - p->line_size;
	char errbuf[ERROR_MAX];
	const char *error;

	if (p->lit_overflow || p->lit_size > limit)
		return scan_error(p, '\n', "Literal too large",
				  p->lit_nonsync);
	if (!message)
		p->line_size += (size_t)p->lit_size;
	if (line_reserve(p, p->lit_size) < 0)
		return scan_error(p, '\n', "Out of memory", true);
	if (!p->lit_nonsync || message) {
		(void)run_grammar(p, true, 0, &error, errbuf);
		if (error != NULL && !p->lit_nonsync)
			return scan_error(p, '\n', error, false);
		if (error != NULL) {
			uint64_t left = p->lit_size;

			scan_error(p, ' ', error, false);
			p->skip_left = left;
			p->phase = left > 0 ? PHASE_SKIP_LITERAL : PHASE_SKIP;
			return IMAP_PARSE_ERROR;
		}
	}
	p->lit_left = p->lit_size;
	p->state = p->lit_size > 0 ? SCAN_LITERAL : SCAN_NORMAL;
	if (p->lit_nonsync)
		return IMAP_PARSE_NEED_MORE;
	p->cont_pending = true;
	p->cont_size = p->lit_size;
	return IMAP_PARSE_NEED_CONTINUATION;
}

static enum imap_parse_result scan_skip(struct imap_parser *p, int ch)
{
	uint64_t max = p->lim.max_literal_size > p->lim.max_line_size ?
		       p->lim.max_literal_size : p->lim.max_line_size;

	if (++p->skipped > p->lim.max_line_size)
		return scan_error(p, ch, "Command line too long", true);
	if (ch == '\n') {
		if (p->skip != SKIP_NONSYNC_CLOSE &&
		    p->skip != SKIP_NONSYNC_CR) {
			/* A {n} ends the line: the client waits for "+". */
			reset_command(p);
			return IMAP_PARSE_NEED_MORE;
		}
		if (p->skip_overflow || p->skip_size > max)
			return scan_error(p, ch, "Literal too large", true);
		p->skip = SKIP_NONE;
		p->skip_left = p->skip_size;
		if (p->skip_left > 0)
			p->phase = PHASE_SKIP_LITERAL;
		return IMAP_PARSE_NEED_MORE;
	}
	if (ch == '{') {
		p->skip = SKIP_OPEN;
		p->skip_size = 0;
		p->skip_overflow = false;
	} else if (is_digit(ch) &&
		   (p->skip == SKIP_OPEN || p->skip == SKIP_DIGITS)) {
		p->skip = SKIP_DIGITS;
		if (p->skip_size > (UINT64_MAX - 9) / 10)
			p->skip_overflow = true;
		else
			p->skip_size = p->skip_size * 10 +
				       (uint64_t)(ch - '0');
	} else if (ch == '+' && p->skip == SKIP_DIGITS) {
		p->skip = SKIP_PLUS;
	} else if (ch == '}' && p->skip == SKIP_DIGITS) {
		p->skip = SKIP_SYNC_CLOSE;
	} else if (ch == '}' && p->skip == SKIP_PLUS) {
		p->skip = SKIP_NONSYNC_CLOSE;
	} else if (ch == '\r' && p->skip == SKIP_NONSYNC_CLOSE) {
		p->skip = SKIP_NONSYNC_CR;
	} else {
		p->skip = SKIP_NONE;
	}
	return IMAP_PARSE_NEED_MORE;
}

/* Lexical checks that apply everywhere outside quoted strings and
 * literals.  NULL when ch is acceptable. */
static const char *bad_byte(int ch)
{
	if (ch == 0)
		return "NUL byte outside a literal";
	if (ch >= 0x80)
		return "8-bit data outside a literal";
	if ((ch < 0x20 && ch != '\r' && ch != '\n') || ch == 0x7f)
		return "Control character outside a quoted string";
	return NULL;
}

static enum imap_parse_result scan_args(struct imap_parser *p, int ch)
{
	const char *bad;

	switch (p->state) {
	case SCAN_NORMAL:
		bad = bad_byte(ch);
		if (bad != NULL)
			return scan_error(p, ch, bad, false);
		switch (ch) {
		case '"':
			p->state = SCAN_QUOTED;
			break;
		case '{':
			p->state = SCAN_LIT_OPEN;
			p->lit_size = 0;
			p->lit_overflow = false;
			p->lit_nonsync = false;
			break;
		case '(':
			if (++p->depth > p->lim.max_depth)
				return scan_error(p, ch, "Too deep nesting",
						  false);
			break;
		case ')':
			if (p->depth == 0)
				return scan_error(p, ch, "Unexpected ')'",
						  false);
			p->depth--;
			break;
		case ' ':
			if (p->depth == 0)
				p->argno++;
			break;
		case '\r':
			p->state = SCAN_CR;
			break;
		case '\n':
			return scan_eol(p, p->line.len - 1);
		default:
			break;
		}
		return IMAP_PARSE_NEED_MORE;
	case SCAN_QUOTED:
	case SCAN_QUOTED_ESC:
		if (ch == 0)
			return scan_error(p, ch, "NUL byte outside a literal",
					  false);
		if (ch >= 0x80)
			return scan_error(p, ch, "8-bit data in a quoted "
					  "string", false);
		if (ch == '\r' || ch == '\n')
			return scan_error(p, ch, "Unterminated quoted string",
					  false);
		if (p->state == SCAN_QUOTED_ESC) {
			if (ch != '"' && ch != '\\')
				return scan_error(p, ch, "Invalid escape in "
						  "quoted string", false);
			p->state = SCAN_QUOTED;
		} else if (ch == '\\') {
			p->state = SCAN_QUOTED_ESC;
		} else if (ch == '"') {
			p->state = SCAN_NORMAL;
		}
		return IMAP_PARSE_NEED_MORE;
	case SCAN_LIT_OPEN:
	case SCAN_LIT_DIGITS:
		if (is_digit(ch)) {
			/* Keep reading digits after an overflow, so that
			 * the {n} / {n+} distinction decides fatality. */
			if (p->lit_size > (UINT64_MAX - 9) / 10)
				p->lit_overflow = true;
			else
				p->lit_size = p->lit_size * 10 +
					      (uint64_t)(ch - '0');
			p->state = SCAN_LIT_DIGITS;
		} else if (p->state == SCAN_LIT_DIGITS && ch == '+') {
			p->lit_nonsync = true;
			p->state = SCAN_LIT_PLUS;
		} else if (p->state == SCAN_LIT_DIGITS && ch == '}') {
			p->state = SCAN_LIT_CLOSE;
		} else {
			return scan_error(p, ch, "Invalid literal size",
					  false);
		}
		return IMAP_PARSE_NEED_MORE;
	case SCAN_LIT_PLUS:
		if (ch != '}')
			return scan_error(p, ch, "Invalid literal size",
					  false);
		p->state = SCAN_LIT_CLOSE;
		return IMAP_PARSE_NEED_MORE;
	case SCAN_LIT_CLOSE:
		if (ch == '\r') {
			p->state = SCAN_LIT_LF;
			return IMAP_PARSE_NEED_MORE;
		}
		if (ch == '\n')
			return scan_literal_start(p);
		return scan_error(p, ch, "Literal size must be followed by "
				  "CRLF", false);
	case SCAN_LIT_LF:
	case SCAN_CR:
		if (ch != '\n')
			return scan_error(p, ch, "CR not followed by LF",
					  false);
		if (p->state == SCAN_LIT_LF)
			return scan_literal_start(p);
		return scan_eol(p, p->line.len - 2);
	case SCAN_LITERAL:
		break;
	}
	return IMAP_PARSE_NEED_MORE;
}

static enum imap_parse_result scan_byte(struct imap_parser *p, int ch)
{
	unsigned char byte = (unsigned char)ch;
	const char *bad;

	if (p->phase == PHASE_SKIP)
		return scan_skip(p, ch);
	if (p->line_size >= p->lim.max_line_size)
		return scan_error(p, ch, "Command line too long", true);
	if (buf_append(&p->line, &byte, 1) < 0)
		return scan_error(p, ch, "Out of memory", true);
	p->line_size++;
	if (p->phase == PHASE_ARGS)
		return scan_args(p, ch);

	/* tag or command name */
	if (p->state == SCAN_CR) {
		if (ch != '\n')
			return scan_error(p, ch, "CR not followed by LF",
					  false);
		return scan_eol(p, p->line.len - 2);
	}
	bad = bad_byte(ch);
	if (bad != NULL)
		return scan_error(p, ch, bad, false);
	if (ch == '\r') {
		p->state = SCAN_CR;
		return IMAP_PARSE_NEED_MORE;
	}
	if (ch == '\n')
		return scan_eol(p, p->line.len - 1);
	if (p->phase == PHASE_TAG) {
		if (ch == ' ') {
			if (p->tag_len == 0)
				return scan_error(p, ch, "Empty tag", false);
			p->phase = PHASE_NAME;
			p->name_start = p->line.len;
			save_tag(p);
			return IMAP_PARSE_NEED_MORE;
		}
		if (!is_tag_char(ch))
			return scan_error(p, ch, "Invalid characters in tag",
					  false);
		p->tag_len++;
		return IMAP_PARSE_NEED_MORE;
	}
	if (ch == ' ')
		return scan_name_end(p);
	if (!is_atom_char(ch))
		return scan_error(p, ch, "Invalid characters in command name",
				  false);
	if (p->line.len - p->name_start > NAME_MAX_LEN)
		return scan_error(p, ch, "Unknown command", false);
	return IMAP_PARSE_NEED_MORE;
}

enum imap_parse_result imap_parser_feed(struct imap_parser *p,
					const void *data, size_t len,
					size_t *consumed_r)
{
	const unsigned char *d = data;
	enum imap_parse_result r;
	size_t i = 0, n;

	*consumed_r = 0;
	if (p->phase == PHASE_FATAL)
		return IMAP_PARSE_ERROR;
	imap_command_free(&p->cmd);
	p->cont_pending = false;
	while (i < len) {
		if (p->phase == PHASE_ARGS && p->state == SCAN_LITERAL) {
			/* Literal data: copy in bulk, unchecked. */
			n = len - i < p->lit_left ? len - i :
						    (size_t)p->lit_left;
			if (buf_append(&p->line, d + i, n) < 0) {
				*consumed_r = i;
				return scan_error(p, 0, "Out of memory", true);
			}
			i += n;
			p->lit_left -= n;
			if (p->lit_left == 0)
				p->state = SCAN_NORMAL;
			continue;
		}
		if (p->phase == PHASE_SKIP_LITERAL) {
			n = len - i < p->skip_left ? len - i :
						     (size_t)p->skip_left;
			i += n;
			p->skip_left -= n;
			if (p->skip_left == 0)
				p->phase = PHASE_SKIP;
			continue;
		}
		r = scan_byte(p, d[i++]);
		if (r != IMAP_PARSE_NEED_MORE) {
			*consumed_r = i;
			return r;
		}
	}
	*consumed_r = len;
	return IMAP_PARSE_NEED_MORE;
}

struct imap_command *imap_parser_take_command(struct imap_parser *p)
{
	struct imap_command *cmd = p->cmd;

	p->cmd = NULL;
	return cmd;
}

uint64_t imap_parser_continuation_size(const struct imap_parser *p)
{
	return p->cont_size;
}

void imap_parser_get_pending(const struct imap_parser *p, const char **tag_r,
			     enum imap_cmd_id *id_r)
{
	*tag_r = NULL;
	*id_r = IMAP_CMD_COUNT;
	if (!p->cont_pending || p->def == NULL || !p->have_tag)
		return;
	*tag_r = (const char *)p->tag.data;
	*id_r = p->def->id;
}

void imap_parser_reject_continuation(struct imap_parser *p)
{
	if (!p->cont_pending)
		return;
	p->cont_pending = false;
	reset_command(p);
}

const char *imap_parser_get_error(const struct imap_parser *p,
				  const char **tag_r, bool *fatal_r)
{
	*tag_r = p->error_has_tag ? (const char *)p->tag.data : NULL;
	*fatal_r = p->error_fatal;
	return p->error;
}

bool imap_parser_in_command(const struct imap_parser *p)
{
	return p->phase != PHASE_TAG || p->line.len > 0;
}

/* ------------------------------------------------------------------ */
/* Canonical rendering */

static void dump_str(struct buf *out, const struct imap_string *s)
{
	size_t i;

	if (s->data == NULL) {
		buf_append_str(out, "NIL");
		return;
	}
	buf_append_str(out, "\"");
	for (i = 0; i < s->len; i++) {
		unsigned char ch = (unsigned char)s->data[i];

		if (ch == '"' || ch == '\\')
			buf_printf(out, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			buf_printf(out, "\\x%02x", ch);
		else
			buf_append(out, &ch, 1);
	}
	buf_append_str(out, "\"");
}

static void dump_seq_number(struct buf *out, uint64_t n)
{
	if (n == IMAP_SEQ_STAR)
		buf_append_str(out, "*");
	else
		buf_printf(out, "%llu", (unsigned long long)n);
}

static void dump_seqset(struct buf *out, const struct imap_seqset *set)
{
	unsigned i;

	for (i = 0; i < set->count; i++) {
		if (i > 0)
			buf_append_str(out, ",");
		dump_seq_number(out, set->ranges[i].lo);
		if (set->ranges[i].hi != set->ranges[i].lo) {
			buf_append_str(out, ":");
			dump_seq_number(out, set->ranges[i].hi);
		}
	}
}

static void dump_flags(struct buf *out, const struct imap_flags *f)
{
	const char *sep = "";
	unsigned i;

	buf_append_str(out, "(");
	for (i = 0; i < N_ELEMENTS(system_flags); i++) {
		if ((f->system & system_flags[i].bit) != 0) {
			buf_printf(out, "%s%s", sep, system_flags[i].name);
			sep = " ";
		}
	}
	for (i = 0; i < f->keyword_count; i++) {
		buf_printf(out, "%s%s", sep, f->keywords[i].data);
		sep = " ";
	}
	buf_append_str(out, ")");
}

static void dump_time(struct buf *out, time_t t, bool date_only)
{
	struct tm tm;
	char s[64];

	if (gmtime_r(&t, &tm) == NULL) {
		buf_append_str(out, "?");
		return;
	}
	strftime(s, sizeof(s), date_only ? "%Y-%m-%d" : "%Y-%m-%dT%H:%M:%SZ",
		 &tm);
	buf_append_str(out, s);
}

static void dump_fetch_att(struct buf *out, const struct imap_fetch_att *a)
{
	static const char *const text[] = {
		"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
		"MIME",
	};
	unsigned i;

	if (a->type != IMAP_FETCH_BODY_SECTION) {
		for (i = 0; i < N_ELEMENTS(fetch_names); i++) {
			if (fetch_names[i].type == a->type)
				buf_append_str(out, fetch_names[i].name);
		}
		return;
	}
	buf_append_str(out, a->peek ? "BODY.PEEK[" : "BODY[");
	for (i = 0; i < a->part_count; i++)
		buf_printf(out, "%s%u", i > 0 ? "." : "", a->parts[i]);
	if (a->text != IMAP_SECTION_ALL)
		buf_printf(out, "%s%s", a->part_count > 0 ? "." : "",
			   text[a->text]);
	if (a->field_count > 0) {
		buf_append_str(out, " (");
		for (i = 0; i < a->field_count; i++) {
			if (i > 0)
				buf_append_str(out, " ");
			dump_str(out, &a->fields[i]);
		}
		buf_append_str(out, ")");
	}
	buf_append_str(out, "]");
	if (a->partial)
		buf_printf(out, "<%u.%u>", a->partial_offset,
			   a->partial_length);
}

static void dump_search_key(struct buf *out, const struct imap_search_key *k)
{
	const struct imap_search_key *child;
	size_t i;

	if (k->type == IMAP_SEARCH_AND) {
		buf_append_str(out, "(");
		for (child = k->children; child != NULL; child = child->next) {
			dump_search_key(out, child);
			if (child->next != NULL)
				buf_append_str(out, " ");
		}
		buf_append_str(out, ")");
		return;
	}
	if (k->type == IMAP_SEARCH_SEQSET) {
		dump_seqset(out, &k->set);
		return;
	}
	for (i = 0; i < N_ELEMENTS(search_defs); i++) {
		if (search_defs[i].type == k->type)
			break;
	}
	if (i == N_ELEMENTS(search_defs))
		return;
	buf_append_str(out, search_defs[i].name);
	switch (search_defs[i].arg) {
	case SA_NONE:
		break;
	case SA_ASTRING:
	case SA_ATOM:
		buf_append_str(out, " ");
		dump_str(out, &k->str);
		break;
	case SA_HEADER:
		buf_append_str(out, " ");
		dump_str(out, &k->field);
		buf_append_str(out, " ");
		dump_str(out, &k->str);
		break;
	case SA_DATE:
		buf_append_str(out, " ");
		dump_time(out, k->date, true);
		break;
	case SA_NUMBER:
		buf_printf(out, " %u", k->number);
		break;
	case SA_SEQSET:
		buf_append_str(out, " ");
		dump_seqset(out, &k->set);
		break;
	case SA_KEY:
	case SA_TWO_KEYS:
		for (child = k->children; child != NULL; child = child->next) {
			buf_append_str(out, " ");
			dump_search_key(out, child);
		}
		break;
	}
}

int imap_command_dump(const struct imap_command *cmd, struct buf *out)
{
	const struct imap_search_key *k;
	unsigned i;

	buf_printf(out, "%s %s%s", cmd->tag, cmd->uid ? "UID " : "",
		   cmd->name);
	switch (cmd->id) {
	case IMAP_CMD_AUTHENTICATE:
		buf_printf(out, " %s", cmd->u.authenticate.mechanism.data);
		if (cmd->u.authenticate.has_initial)
			buf_printf(out, " <%zu bytes>",
				   cmd->u.authenticate.initial.len);
		break;
	case IMAP_CMD_LOGIN:
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.login.user);
		buf_printf(out, " <%zu bytes>", cmd->u.login.password.len);
		break;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
	case IMAP_CMD_CREATE:
	case IMAP_CMD_DELETE:
	case IMAP_CMD_SUBSCRIBE:
	case IMAP_CMD_UNSUBSCRIBE:
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.mailbox.name);
		break;
	case IMAP_CMD_RENAME:
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.rename.from);
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.rename.to);
		break;
	case IMAP_CMD_LIST:
	case IMAP_CMD_LSUB:
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.list.reference);
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.list.pattern);
		break;
	case IMAP_CMD_STATUS: {
		const char *sep = "";

		buf_append_str(out, " ");
		dump_str(out, &cmd->u.status.mailbox);
		buf_append_str(out, " (");
		for (i = 0; i < N_ELEMENTS(status_items); i++) {
			if ((cmd->u.status.items & status_items[i].bit) != 0) {
				buf_printf(out, "%s%s", sep,
					   status_items[i].name);
				sep = " ";
			}
		}
		buf_append_str(out, ")");
		break;
	}
	case IMAP_CMD_APPEND:
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.append.mailbox);
		if (cmd->u.append.has_flags) {
			buf_append_str(out, " ");
			dump_flags(out, &cmd->u.append.flags);
		}
		if (cmd->u.append.has_date) {
			buf_append_str(out, " ");
			dump_time(out, cmd->u.append.date, false);
		}
		buf_printf(out, " {%zu}", cmd->u.append.message.len);
		break;
	case IMAP_CMD_SEARCH:
		if (cmd->u.search.has_charset) {
			buf_append_str(out, " CHARSET ");
			dump_str(out, &cmd->u.search.charset);
		}
		for (k = cmd->u.search.keys->children; k != NULL;
		     k = k->next) {
			buf_append_str(out, " ");
			dump_search_key(out, k);
		}
		break;
	case IMAP_CMD_FETCH:
		buf_append_str(out, " ");
		dump_seqset(out, &cmd->u.fetch.set);
		buf_append_str(out, " (");
		for (i = 0; i < cmd->u.fetch.count; i++) {
			if (i > 0)
				buf_append_str(out, " ");
			dump_fetch_att(out, &cmd->u.fetch.atts[i]);
		}
		buf_append_str(out, ")");
		break;
	case IMAP_CMD_STORE:
		buf_append_str(out, " ");
		dump_seqset(out, &cmd->u.store.set);
		buf_printf(out, " %sFLAGS%s ",
			   cmd->u.store.mode == IMAP_STORE_ADD ? "+" :
			   cmd->u.store.mode == IMAP_STORE_REMOVE ? "-" : "",
			   cmd->u.store.silent ? ".SILENT" : "");
		dump_flags(out, &cmd->u.store.flags);
		break;
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
		buf_append_str(out, " ");
		dump_seqset(out, &cmd->u.copy.set);
		buf_append_str(out, " ");
		dump_str(out, &cmd->u.copy.mailbox);
		break;
	case IMAP_CMD_EXPUNGE:
		if (cmd->u.expunge.has_set) {
			buf_append_str(out, " ");
			dump_seqset(out, &cmd->u.expunge.set);
		}
		break;
	case IMAP_CMD_ID:
		if (cmd->u.id.nil) {
			buf_append_str(out, " NIL");
			break;
		}
		buf_append_str(out, " (");
		for (i = 0; i < cmd->u.id.count; i++) {
			if (i > 0)
				buf_append_str(out, " ");
			dump_str(out, &cmd->u.id.fields[i]);
			buf_append_str(out, " ");
			dump_str(out, &cmd->u.id.values[i]);
		}
		buf_append_str(out, ")");
		break;
	case IMAP_CMD_ENABLE:
		for (i = 0; i < cmd->u.enable.count; i++)
			buf_printf(out, " %s",
				   cmd->u.enable.capabilities[i].data);
		break;
	default:
		break;
	}
	return buf_cstr(out) == NULL ? -1 : 0;
}
