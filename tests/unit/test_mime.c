/*
 * test_mime.c - unit tests for the message parser behind FETCH and SEARCH.
 *
 * The sample messages live in tests/unit/data/mime (found through
 * $top_srcdir, "." by default) and are converted to CRLF first, as a
 * caller serving Maildir files does.  Their expected ENVELOPE, BODY and
 * BODYSTRUCTURE strings were checked against Dovecot 2.3
 * (tests/integration/test_mime_dovecot.sh repeats that check); where we
 * differ on purpose the comment says why.  Then: tables of sections,
 * partials, addresses, dates, encoded-words, SEARCH tests and IMAP
 * strings; generated pathological messages; and seeded random mutations
 * of every sample that must neither crash nor break the answers' shape.
 *
 * `test_mime --dump FILE...` prints one "(ENVELOPE .. BODY ..
 * BODYSTRUCTURE ..)" line per file for the Dovecot cross-check.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "mime.h"

#define DATA_DIR "/tests/unit/data/mime/"

static unsigned char *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b = BUF_INIT;
	unsigned char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n) < 0) {
			fclose(f);
			buf_free(&b);
			return NULL;
		}
	}
	fclose(f);
	if (buf_cstr(&b) == NULL) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b, len_r);
}

/* A sample message, CRLF-converted, in *out. */
static bool load_sample(const char *name, struct buf *out)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	unsigned char *raw;
	size_t len;
	bool ok;

	snprintf(path, sizeof(path), "%s%s%s", top != NULL ? top : ".",
		 DATA_DIR, name);
	raw = read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
	buf_reset(out);
	ok = mime_to_crlf(raw, len, out) >= 0;
	free(raw);
	CU_ASSERT_FATAL(ok);
	return ok;
}

static struct mime_message *parse_buf(const struct buf *b)
{
	const char *error = NULL;
	struct mime_message *m = mime_parse(b->data, b->len, &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	return m;
}

static struct mime_message *parse_str(const char *s)
{
	const char *error = NULL;
	struct mime_message *m = mime_parse(s, strlen(s), &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	return m;
}

static void assert_bytes(const void *got, size_t got_len, const char *want,
			 const char *what)
{
	size_t want_len = strlen(want);

	if (got_len != want_len || memcmp(got, want, want_len) != 0) {
		printf("\n%s:\n  got  [%.*s] (%zu)\n  want [%s] (%zu)\n", what,
		       (int)got_len, (const char *)got, got_len, want,
		       want_len);
		CU_FAIL("bytes differ");
	} else {
		CU_PASS("bytes equal");
	}
}

/*
 * ENVELOPE, BODYSTRUCTURE and BODY of the samples
 */

static const struct {
	const char *file;
	const char *envelope, *bodystructure, *body;
} structure_cases[] = {
	{ "alt_in_mixed.eml",
	  "(\"3 Mar 2023 08:15 -0500\" \"photos\" ((\"Carol\" NIL \"carol\" "
	  "\"example.com\")) ((\"Carol\" NIL \"carol\" \"example.com\")) (("
	  "\"Carol\" NIL \"carol\" \"example.com\")) ((\"Dave\" NIL \"dave\""
	  " \"example.com\")) NIL NIL NIL NIL)",
	  "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
	  " 27 1 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii"
	  "\") NIL NIL \"7bit\" 19 0 NIL NIL (\"en\" \"de\") NIL) \"alternat"
	  "ive\" (\"boundary\" \"alt\") NIL NIL NIL)(\"image\" \"png\" NIL N"
	  "IL NIL \"base64\" 12 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\""
	  "filename\" \"dot.png\")) NIL \"http://example.com/dot.png\") \"mi"
	  "xed\" (\"boundary\" \"mix\") NIL NIL NIL)",
	  "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\""
	  " 27 1)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bi"
	  "t\" 19 0) \"alternative\")(\"image\" \"png\" NIL NIL NIL \"base64"
	  "\" 12) \"mixed\")" },
	{ "digest.eml",
	  "(NIL \"digest\" ((NIL NIL \"list\" \"example.com\")) ((NIL NIL \""
	  "list\" \"example.com\")) ((NIL NIL \"list\" \"example.com\")) NIL"
	  " NIL NIL NIL NIL)",
	  "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 42 (NIL \"first\" ("
	  "(NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")"
	  ") ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL) (\"text"
	  "\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL "
	  "NIL NIL NIL) 3 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
	  "\"us-ascii\") NIL NIL \"7bit\" 18 0 NIL NIL NIL NIL) \"digest\" ("
	  "\"boundary\" \"d\") NIL NIL NIL)",
	  "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 42 (NIL \"first\" ("
	  "(NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")"
	  ") ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL) (\"text"
	  "\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) 3)("
	  "\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18"
	  " 0) \"digest\")" },
	{ "encoded.eml",
	  "(\"Thu, 29 Feb 2024 23:59:59 +1400\" \"=?iso-8859-1?q?caf=E9?= =?"
	  "utf-8?q?_cr=C3=A8me?=  and more\" ((\"=?utf-8?B?SsO8cmdlbg==?=\" "
	  "NIL \"juergen\" \"example.de\")) ((\"=?utf-8?B?SsO8cmdlbg==?=\" N"
	  "IL \"juergen\" \"example.de\")) ((\"=?utf-8?B?SsO8cmdlbg==?=\" NI"
	  "L \"juergen\" \"example.de\")) ((\"=?ISO-8859-1?Q?Andr=E9?= Pirar"
	  "d\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted"
	  "-printable\" 43 2 NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"quoted"
	  "-printable\" 43 2)" },
	{ "garbage_boundary.eml",
	  "(NIL \"boundary look-alikes\" ((NIL NIL \"y\" \"example.com\")) ("
	  "(NIL NIL \"y\" \"example.com\")) ((NIL NIL \"y\" \"example.com\")"
	  ") NIL NIL NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "34 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii"
	  "\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\""
	  " \"bnd\") NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "34 1)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bi"
	  "t\" 0 0) \"mixed\")" },
	{ "groups.eml",
	  "(\"Fri, 21 Nov 1997 09:55:06 -0600\" \"groups and friends\" ((\"J"
	  "oe Q. Public\" NIL \"john.q.public\" \"example.com\")) ((\"The Ma"
	  "iler\" NIL \"mailer\" \"example.com\")) ((NIL \"@route1.test,@rou"
	  "te2.test\" \"user\" \"final.test\")) ((\"Mary Smith\" NIL \"mary"
	  "\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")(\"Who?\" NIL \"o"
	  "ne\" \"y.test\")) ((NIL NIL \"boss\" \"nil.test\")(\"Giant; \\\"B"
	  "ig\\\" Box\" NIL \"sysservices\" \"example.net\")) ((NIL NIL \"A "
	  "Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a.test\")(NIL NIL \"joe\" "
	  "\"where.test\")(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL N"
	  "IL)(NIL NIL \"Undisclosed recipients\" NIL)(NIL NIL NIL NIL)) \"<"
	  "prev@example.com>\" \"<5678.21-Nov-1997@example.com>\")",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6"
	  " 1 NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6"
	  " 1)" },
	{ "mixed.eml",
	  "(\"Tue, 2 Jan 2024 10:00:00 +0100\" \"report attached\" ((\"Alice"
	  "\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"ex"
	  "ample.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Bob"
	  "\" NIL \"bob\" \"example.net\")) NIL NIL NIL \"<mixed-1@example.o"
	  "rg>\")",
	  "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-pri"
	  "ntable\" 51 1 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" "
	  "\"report.pdf\") \"<part2@example.org>\" \"Quarterly report\" \"ba"
	  "se64\" 64 NIL (\"attachment\" (\"filename\" \"report.pdf\")) NIL "
	  "NIL) \"mixed\" (\"boundary\" \"=_outer 1\") NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-pri"
	  "ntable\" 51 1)(\"application\" \"pdf\" (\"name\" \"report.pdf\") "
	  "\"<part2@example.org>\" \"Quarterly report\" \"base64\" 64) \"mix"
	  "ed\")" },
	{ "no_blank.eml",
	  "(NIL \"no body separator\" ((NIL NIL \"nobody\" \"example.com\"))"
	  " ((NIL NIL \"nobody\" \"example.com\")) ((NIL NIL \"nobody\" \"ex"
	  "ample.com\")) NIL NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0"
	  " 0 NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0"
	  " 0)" },
	{ "nodate.eml",
	  "(NIL \"\" ((NIL NIL \"solo\" \"example.com\")) ((NIL NIL \"solo\""
	  " \"example.com\")) ((NIL NIL \"solo\" \"example.com\")) ((NIL NIL"
	  " \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NI"
	  "L)",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4"
	  "6 1 NIL NIL NIL NIL)",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4"
	  "6 1)" },
	{ "rfc822.eml",
	  "(\"Wed, 10 Jul 2024 12:00:00 +0000\" \"Fwd: lunch\" ((\"Erin\" NI"
	  "L \"erin\" \"example.com\")) ((\"Erin\" NIL \"erin\" \"example.co"
	  "m\")) ((\"Erin\" NIL \"erin\" \"example.com\")) ((\"Frank\" NIL "
	  "\"frank\" \"example.com\")) NIL NIL NIL \"<fwd@example.com>\")",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "10 0 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\""
	  " 400 (\"Tue, 9 Jul 2024 09:30:00 -0700\" \"lunch\" ((\"Grace\" NI"
	  "L \"grace\" \"example.com\")) ((\"Grace\" NIL \"grace\" \"example"
	  ".com\")) ((\"Grace\" NIL \"grace\" \"example.com\")) ((\"Erin\" N"
	  "IL \"erin\" \"example.com\")) NIL NIL \"<plan@example.com>\" \"<l"
	  "unch@example.com>\") ((\"text\" \"plain\" (\"charset\" \"utf-8\")"
	  " NIL NIL \"7bit\" 24 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"char"
	  "set\" \"utf-8\") NIL NIL \"7bit\" 12 0 NIL NIL NIL NIL) \"alterna"
	  "tive\" (\"boundary\" \"b2\") NIL NIL NIL) 18 NIL (\"inline\" NIL)"
	  " NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "10 0)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 400 (\"Tue, 9 J"
	  "ul 2024 09:30:00 -0700\" \"lunch\" ((\"Grace\" NIL \"grace\" \"ex"
	  "ample.com\")) ((\"Grace\" NIL \"grace\" \"example.com\")) ((\"Gra"
	  "ce\" NIL \"grace\" \"example.com\")) ((\"Erin\" NIL \"erin\" \"ex"
	  "ample.com\")) NIL NIL \"<plan@example.com>\" \"<lunch@example.com"
	  ">\") ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit"
	  "\" 24 0)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit"
	  "\" 12 0) \"alternative\") 18) \"mixed\")" },
	{ "simple.eml",
	  "(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon meeting\" ("
	  "(\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) ((\"Fre"
	  "d Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) ((\"Fred Foob"
	  "ar\" NIL \"foobar\" \"Blurdybloop.example\")) ((NIL NIL \"mooch\""
	  " \"owatagu.siam.example\")) ((\"Doe, Jane\" NIL \"jane\" \"exampl"
	  "e.com\")(NIL NIL \"bob\" \"example.net\")) NIL NIL \"<B27397-0100"
	  "000@Blurdybloop.example>\")",
	  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 5"
	  "5 1 NIL NIL NIL NIL)",
	  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 5"
	  "5 1)" },
	{ "unterminated.eml",
	  "(NIL \"unterminated\" ((NIL NIL \"x\" \"example.com\")) ((NIL NIL"
	  " \"x\" \"example.com\")) ((NIL NIL \"x\" \"example.com\")) NIL NI"
	  "L NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "5 0 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\""
	  ") NIL NIL \"7bit\" 40 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" "
	  "\"zz\") NIL NIL NIL)",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "5 0)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit"
	  "\" 40 1) \"mixed\")" },
};

static void test_structures(void)
{
	struct buf msg = BUF_INIT, out = BUF_INIT;

	for (size_t i = 0; i < sizeof(structure_cases) /
		     sizeof(structure_cases[0]); i++) {
		struct mime_message *m;

		if (!load_sample(structure_cases[i].file, &msg))
			break;
		m = parse_buf(&msg);
		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
		assert_bytes(out.data, out.len, structure_cases[i].envelope,
			     structure_cases[i].file);
		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
		assert_bytes(out.data, out.len,
			     structure_cases[i].bodystructure,
			     structure_cases[i].file);
		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_bodystructure(m, &out, false), 0);
		assert_bytes(out.data, out.len, structure_cases[i].body,
			     structure_cases[i].file);
		CU_ASSERT_EQUAL(mime_size(m), msg.len);
		CU_ASSERT_PTR_EQUAL(mime_data(m), msg.data);
		mime_free(&m);
		CU_ASSERT_PTR_NULL(m);
	}
	buf_free(&msg);
	buf_free(&out);
}

/*
 * BODY[section]
 */

/* Parses "1.2.HEADER.FIELDS" style specs (fields given separately). */
static void parse_spec(const char *spec, uint32_t *parts, unsigned *count_r,
		       enum imap_section_text *text_r)
{
	static const struct {
		const char *name;
		enum imap_section_text text;
	} texts[] = {
		{ "HEADER.FIELDS.NOT", IMAP_SECTION_HEADER_FIELDS_NOT },
		{ "HEADER.FIELDS", IMAP_SECTION_HEADER_FIELDS },
		{ "HEADER", IMAP_SECTION_HEADER },
		{ "TEXT", IMAP_SECTION_TEXT },
		{ "MIME", IMAP_SECTION_MIME },
	};
	const char *p = spec;

	*count_r = 0;
	*text_r = IMAP_SECTION_ALL;
	while (*p >= '0' && *p <= '9') {
		char *end;

		parts[(*count_r)++] = (uint32_t)strtoul(p, &end, 10);
		p = *end == '.' ? end + 1 : end;
	}
	for (size_t i = 0; *p != '\0' && i < 5; i++) {
		if (strcmp(p, texts[i].name) == 0)
			*text_r = texts[i].text;
	}
}

#define NONE NULL	/* the section does not exist */

static const struct {
	const char *file, *spec, *fields;	/* fields: space-separated */
	const char *want;
} section_cases[] = {
	{ "simple.eml", "1", NULL,
	  "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n" },
	{ "simple.eml", "TEXT", NULL,
	  "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n" },
	{ "simple.eml", "2", NULL, NONE },
	{ "simple.eml", "1.1", NULL, NONE },
	{ "simple.eml", "0", NULL, NONE },
	{ "simple.eml", "1.HEADER", NULL, NONE },
	{ "simple.eml", "MIME", NULL, NONE },
	/* part 1 of a single-part message: its MIME header is the message
	 * header (Dovecot agrees) */
	{ "no_blank.eml", "1.MIME", NULL,
	  "From: nobody@example.com\r\nSubject: no body separator\r\n"
	  "X-Note: the header runs to the end" },
	{ "simple.eml", "HEADER.FIELDS", "SUBJECT cc",
	  "Subject: afternoon meeting\r\n"
	  "Cc: \"Doe, Jane\" <jane@example.com>, bob@example.net\r\n\r\n" },
	{ "simple.eml", "HEADER.FIELDS", "X-Absent", "\r\n" },
	{ "simple.eml", "HEADER.FIELDS.NOT",
	  "return-path date from subject to cc message-id mime-version",
	  "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" },
	{ "mixed.eml", "1", NULL,
	  "Hi Bob,=20\r\nthe report is attached. Caf=C3=A9 at 5?" },
	{ "mixed.eml", "1.MIME", NULL,
	  "Content-Type: text/plain; charset=utf-8\r\n"
	  "Content-Transfer-Encoding: quoted-printable\r\n\r\n" },
	{ "mixed.eml", "2", NULL,
	  "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K" },
	{ "mixed.eml", "3", NULL, NONE },
	{ "mixed.eml", "1.1", NULL, NONE },
	{ "mixed.eml", "1.HEADER", NULL, NONE },
	{ "mixed.eml", "HEADER.FIELDS", "subject from",
	  "From: Alice <alice@example.org>\r\n"
	  "Subject: report attached\r\n\r\n" },
	{ "mixed.eml", "HEADER.FIELDS.NOT",
	  "subject from to date message-id mime-version",
	  "Content-Type: multipart/mixed; boundary=\"=_outer 1\"\r\n\r\n" },
	{ "alt_in_mixed.eml", "1.2", NULL, "<p>HTML version</p>" },
	{ "alt_in_mixed.eml", "1.1", NULL, "Plain version\r\nof the text." },
	{ "alt_in_mixed.eml", "1.MIME", NULL,
	  "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" },
	{ "alt_in_mixed.eml", "2", NULL, "iVBORw0KGgo=" },
	{ "alt_in_mixed.eml", "1.3", NULL, NONE },
	{ "rfc822.eml", "1", NULL, "See below." },
	{ "rfc822.eml", "2.MIME", NULL,
	  "Content-Type: message/rfc822\r\n"
	  "Content-Disposition: inline\r\n\r\n" },
	{ "rfc822.eml", "2.HEADER.FIELDS", "Subject In-Reply-To",
	  "Subject: lunch\r\nIn-Reply-To: <plan@example.com>\r\n\r\n" },
	{ "rfc822.eml", "2.1", NULL, "Noon at the usual place?" },
	{ "rfc822.eml", "2.2", NULL, "<b>Noon</b>?" },
	{ "rfc822.eml", "2.2.MIME", NULL,
	  "Content-Type: text/html; charset=utf-8\r\n\r\n" },
	{ "rfc822.eml", "2.3", NULL, NONE },
	{ "rfc822.eml", "2.1.HEADER", NULL, NONE },
	{ "rfc822.eml", "2.TEXT", NULL,
	  "--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	  "Noon at the usual place?\r\n"
	  "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
	  "<b>Noon</b>?\r\n--b2--\r\n" },
	{ "digest.eml", "1.HEADER", NULL,
	  "From: a@example.com\r\nSubject: first\r\n\r\n" },
	{ "digest.eml", "1.MIME", NULL, "\r\n" },
	{ "digest.eml", "1.TEXT", NULL, "one" },
	{ "digest.eml", "1.1", NULL, "one" },
	{ "digest.eml", "1", NULL,
	  "From: a@example.com\r\nSubject: first\r\n\r\none" },
	{ "digest.eml", "2", NULL, "explicit text part" },
	{ "no_blank.eml", "TEXT", NULL, "" },
	{ "no_blank.eml", "HEADER.FIELDS", "x-note",
	  "X-Note: the header runs to the end\r\n\r\n" },
	{ "unterminated.eml", "2", NULL,
	  "second, and no close delimiter follows\r\n" },
	{ "garbage_boundary.eml", "1", NULL,
	  "one\r\n--bnd-x not a boundary either" },
	{ "garbage_boundary.eml", "2.MIME", NULL, "two" },
	{ "garbage_boundary.eml", "2", NULL, "" },
};

static void test_sections(void)
{
	struct buf msg = BUF_INIT, scratch = BUF_INIT;

	for (size_t i = 0; i < sizeof(section_cases) /
		     sizeof(section_cases[0]); i++) {
		struct imap_string fields[16];
		unsigned nfields = 0, nparts;
		uint32_t parts[16];
		enum imap_section_text text;
		const unsigned char *data;
		char *copy = NULL, *save, *tok;
		struct mime_message *m;
		size_t len;
		int ret;

		if (!load_sample(section_cases[i].file, &msg))
			break;
		m = parse_buf(&msg);
		parse_spec(section_cases[i].spec, parts, &nparts, &text);
		if (section_cases[i].fields != NULL) {
			copy = strdup(section_cases[i].fields);
			CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
			for (tok = strtok_r(copy, " ", &save); tok != NULL;
			     tok = strtok_r(NULL, " ", &save)) {
				fields[nfields].data = tok;
				fields[nfields++].len = strlen(tok);
			}
		}
		ret = mime_section(m, parts, nparts, text, fields, nfields,
				   &scratch, &data, &len);
		if (section_cases[i].want == NONE) {
			if (ret != 0)
				printf("\n%s %s exists\n",
				       section_cases[i].file,
				       section_cases[i].spec);
			CU_ASSERT_EQUAL(ret, 0);
			CU_ASSERT_EQUAL(len, 0);
			CU_ASSERT_PTR_NOT_NULL(data);
		} else {
			CU_ASSERT_EQUAL(ret, 1);
			assert_bytes(data, len, section_cases[i].want,
				     section_cases[i].spec);
		}
		free(copy);
		mime_free(&m);
	}
	buf_free(&msg);
	buf_free(&scratch);
}

/* [] is the whole message, [HEADER] + [TEXT] too, RFC822.SIZE its
 * length; the message/rfc822 part [2] is 400 bytes as BODYSTRUCTURE says. */
static void test_section_whole(void)
{
	struct buf msg = BUF_INIT, scratch = BUF_INIT;
	const unsigned char *d1, *d2;
	size_t l1, l2;
	uint32_t two = 2;
	struct mime_message *m;

	load_sample("rfc822.eml", &msg);
	m = parse_buf(&msg);
	CU_ASSERT_EQUAL(mime_section(m, NULL, 0, IMAP_SECTION_ALL, NULL, 0,
				     &scratch, &d1, &l1), 1);
	CU_ASSERT_PTR_EQUAL(d1, msg.data);
	CU_ASSERT_EQUAL(l1, msg.len);
	CU_ASSERT_EQUAL(mime_section(m, NULL, 0, IMAP_SECTION_HEADER, NULL,
				     0, &scratch, &d1, &l1), 1);
	CU_ASSERT_EQUAL(mime_section(m, NULL, 0, IMAP_SECTION_TEXT, NULL, 0,
				     &scratch, &d2, &l2), 1);
	CU_ASSERT_PTR_EQUAL(d1, msg.data);
	CU_ASSERT_PTR_EQUAL(d1 + l1, d2);
	CU_ASSERT_EQUAL(l1 + l2, msg.len);
	CU_ASSERT(l1 > 4 && memcmp(d1 + l1 - 4, "\r\n\r\n", 4) == 0);
	CU_ASSERT_EQUAL(mime_section(m, &two, 1, IMAP_SECTION_ALL, NULL, 0,
				     &scratch, &d1, &l1), 1);
	CU_ASSERT_EQUAL(l1, 400);
	CU_ASSERT(memcmp(d1, "From: Grace", 11) == 0);
	CU_ASSERT_EQUAL(mime_part_count(m), 6);
	mime_free(&m);
	mime_free(&m);		/* NULL-safe */
	buf_free(&msg);
	buf_free(&scratch);
}

static void test_partial(void)
{
	static const struct {
		uint32_t offset, length;
		const char *want;
	} cases[] = {
		{ 0, 10, "0123456789" }, { 0, 100, "0123456789" },
		{ 2, 3, "234" }, { 9, 5, "9" }, { 10, 5, "" },
		{ 11, 1, "" }, { 0, 0, "" }, { 4294967295U, 1, "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const unsigned char *d = (const unsigned char *)"0123456789";
		size_t len = 10;

		mime_partial(&d, &len, cases[i].offset, cases[i].length);
		assert_bytes(d, len, cases[i].want, "partial");
	}
}

/*
 * Addresses: the To member of the envelope of "To: <value>"
 */

static const struct {
	const char *value, *want;
} address_cases[] = {
	{ "a@b.c", "((NIL NIL \"a\" \"b.c\"))" },
	{ "\"Last, First\" <f@x.y>", "((\"Last, First\" NIL \"f\" \"x.y\"))" },
	{ "John Q. Public <jqp@x.y>",
	  "((\"John Q. Public\" NIL \"jqp\" \"x.y\"))" },
	{ "Group: a@b.c, d@e.f;",
	  "((NIL NIL \"Group\" NIL)(NIL NIL \"a\" \"b.c\")"
	  "(NIL NIL \"d\" \"e.f\")(NIL NIL NIL NIL))" },
	{ "empty:;", "((NIL NIL \"empty\" NIL)(NIL NIL NIL NIL))" },
	{ "a@b, Open: c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"Open\" NIL)"
	  "(NIL NIL \"c\" \"d\")(NIL NIL NIL NIL))" },
	{ "noat", "((NIL NIL \"noat\" \"MISSING_DOMAIN\"))" },
	{ "@host.only", "((NIL NIL \"MISSING_MAILBOX\" \"host.only\"))" },
	{ "", "NIL" },
	{ " , ,, ", "NIL" },
	{ "<>", "NIL" },
	{ "x@y (Comment Name)", "((\"Comment Name\" NIL \"x\" \"y\"))" },
	{ "x@y (a) (b)", "((\"b\" NIL \"x\" \"y\"))" },
	{ "<@r1,@r2:u@h>", "((NIL \"@r1,@r2\" \"u\" \"h\"))" },
	{ "\"quoted local\"@x.y",
	  "((NIL NIL \"\\\"quoted local\\\"\" \"x.y\"))" },
	{ "Unterminated <a@b", "((\"Unterminated\" NIL \"a\" \"b\"))" },
	{ "a@b@c", "((NIL NIL \"a@b\" \"c\"))" },
	{ "=?utf-8?q?J=C3=BCrgen?= <j@x>",
	  "((\"=?utf-8?q?J=C3=BCrgen?=\" NIL \"j\" \"x\"))" },
	{ "Ren\xc3\xa9 <r@x>", "(({5}\r\nRen\xc3\xa9 NIL \"r\" \"x\"))" },
	{ "a (x) @ (y) b . c", "((NIL NIL \"a\" \"b.c\"))" },
	{ "u@[192.0.2.1]", "((NIL NIL \"u\" \"[192.0.2.1]\"))" },
	{ "\"a\\\"b\" <q@x>", "((\"a\\\"b\" NIL \"q\" \"x\"))" },
};

static void test_addresses(void)
{
	struct buf msg = BUF_INIT, out = BUF_INIT, want = BUF_INIT;

	for (size_t i = 0; i < sizeof(address_cases) /
		     sizeof(address_cases[0]); i++) {
		const char *error;
		struct mime_message *m;

		buf_reset(&msg);
		buf_reset(&out);
		buf_reset(&want);
		buf_printf(&msg, "To: %s\r\n\r\n", address_cases[i].value);
		m = mime_parse(msg.data, msg.len, &error);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
		buf_printf(&want, "(NIL NIL NIL NIL NIL %s NIL NIL NIL NIL)",
			   address_cases[i].want);
		assert_bytes(out.data, out.len, buf_cstr(&want),
			     address_cases[i].value);
		mime_free(&m);
	}
	buf_free(&msg);
	buf_free(&out);
	buf_free(&want);
}

/* sender and reply-to fall back to from when absent or empty. */
static void test_envelope_defaults(void)
{
	struct mime_message *m;
	struct buf out = BUF_INIT;

	m = parse_str("From: a@b\r\nSender:\r\nReply-To: ,\r\n"
		      "Subject: s\r\n\r\n");
	CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
	assert_bytes(out.data, out.len,
		     "(NIL \"s\" ((NIL NIL \"a\" \"b\")) "
		     "((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
		     "NIL NIL NIL NIL NIL)", "defaults");
	mime_free(&m);
	buf_reset(&out);
	m = parse_str("");
	CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
	assert_bytes(out.data, out.len,
		     "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)", "empty");
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
	assert_bytes(out.data, out.len, "(\"text\" \"plain\" (\"charset\" "
		     "\"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
		     "empty");
	mime_free(&m);
	/* Folded Subject: the line end goes, the white space stays. */
	buf_reset(&out);
	m = parse_str("Subject: a\r\n\tb\r\n  \r\nX: y\r\n\r\n");
	CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
	assert_bytes(out.data, out.len, "(NIL \"a\tb\" NIL NIL NIL NIL NIL "
		     "NIL NIL NIL)", "folded");
	mime_free(&m);
	buf_free(&out);
}

/*
 * Content-Type details: parameters, defaults, LF-only input
 */

static const struct {
	const char *msg, *want;
} ctype_cases[] = {
	{ "Content-Type: text/plain; charset=\"utf-8\"; format=flowed\r\n\r\nx",
	  "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") "
	  "NIL NIL \"7bit\" 1 0)" },
	{ "Content-Type: text/html\r\n\r\nx",
	  "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 "
	  "0)" },
	{ "Content-Type: text/plain; format=flowed\r\n\r\nx",
	  "(\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" "
	  "\"us-ascii\") NIL NIL \"7bit\" 1 0)" },
	{ "Content-Type: (comment) Image / GIF ; (c) NAME = \"a \\\"b\\\"\""
	  "\r\n\r\nx",
	  "(\"Image\" \"GIF\" (\"NAME\" \"a \\\"b\\\"\") NIL NIL \"7bit\" 1)" },
	{ "Content-Type: application/x; a=1;; junk; b=2\r\n\r\nx",
	  "(\"application\" \"x\" (\"a\" \"1\" \"b\" \"2\") NIL NIL "
	  "\"7bit\" 1)" },
	{ "Content-Type: /plain\r\n\r\nx",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "1 0)" },
	{ "Content-Type: multipart/mixed\r\n\r\nx",
	  "(\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 1)" },
	{ "Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "0 0) \"mixed\")" },
	{ "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
	  "a\r\n--b--",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "1 0) \"mixed\")" },
	{ "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n"
	  "--b--\r\n",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "0 0)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
	  "\"7bit\" 0 0) \"mixed\")" },
	{ "Content-Type: message/rfc822\r\n\r\n",
	  "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 (NIL NIL NIL NIL NIL "
	  "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") "
	  "NIL NIL \"7bit\" 0 0) 0)" },
	{ "Content-Transfer-Encoding: (c) BASE64 (d)\r\nContent-ID: <i>\r\n"
	  "Content-Description: d\r\n\r\nx",
	  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") \"<i>\" \"d\" "
	  "\"BASE64\" 1 0)" },
	/* LF-only: sizes count what was given */
	{ "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nline\n--b--\n",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "4 0) \"mixed\")" },
	/* boundary with trailing white space, a longer look-alike ignored */
	{ "Content-Type: multipart/mixed; boundary=b\r\n\r\n--bb\r\n--b \t"
	  "\r\n\r\nx\r\n--b--",
	  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
	  "1 0) \"mixed\")" },
};

static void test_ctypes(void)
{
	struct buf out = BUF_INIT;

	for (size_t i = 0; i < sizeof(ctype_cases) /
		     sizeof(ctype_cases[0]); i++) {
		struct mime_message *m = parse_str(ctype_cases[i].msg);

		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_bodystructure(m, &out, false), 0);
		assert_bytes(out.data, out.len, ctype_cases[i].want,
			     ctype_cases[i].msg);
		mime_free(&m);
	}
	buf_free(&out);
}

/*
 * Pathological messages: limits hold, nothing crashes
 */

static void test_huge_header(void)
{
	struct buf msg = BUF_INIT, out = BUF_INIT;
	struct mime_message *m;
	size_t big = 4U << 20;

	buf_append_str(&msg, "Subject: ");
	CU_ASSERT_EQUAL_FATAL(buf_reserve(&msg, big), 0);
	memset(msg.data + msg.len, 'x', big);
	msg.len += big;
	buf_append_str(&msg, "\r\nFrom: a@b\r\n\r\nbody");
	m = parse_buf(&msg);
	CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
	CU_ASSERT(out.len > big);
	CU_ASSERT(memcmp(out.data, "(NIL {4194304}\r\nxxx", 19) == 0);
	CU_ASSERT_EQUAL(mime_header_contains(m, "subject", "xxxxy", 5), 0);
	CU_ASSERT_EQUAL(mime_header_contains(m, "SUBJECT", "XXXX", 4), 1);
	CU_ASSERT_EQUAL(mime_body_contains(m, "BODY", 4), 1);
	mime_free(&m);
	/* one endless line and no line end at all */
	buf_reset(&msg);
	CU_ASSERT_EQUAL_FATAL(buf_reserve(&msg, big), 0);
	memset(msg.data, '-', big);
	msg.len = big;
	m = parse_buf(&msg);
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
	CU_ASSERT_EQUAL(mime_part_count(m), 1);
	mime_free(&m);
	buf_free(&msg);
	buf_free(&out);
}

/* 30 nested multiparts: 20 levels below the top are parsed, the one at
 * the limit is an opaque leaf. */
static void test_deep_nesting(void)
{
	struct buf msg = BUF_INIT, out = BUF_INIT;
	struct mime_message *m;
	unsigned i;

	for (i = 0; i < 30; i++)
		buf_printf(&msg, "Content-Type: multipart/mixed; boundary=b%u"
			   "\r\n\r\n--b%u\r\n", i, i);
	buf_append_str(&msg, "\r\ninner\r\n");
	m = parse_buf(&msg);
	CU_ASSERT_EQUAL(mime_part_count(m), MIME_MAX_DEPTH + 1);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf_cstr(&out),
				      "(\"application\" \"octet-stream\" NIL"));
	mime_free(&m);
	/* the same with message/rfc822 */
	buf_reset(&msg);
	for (i = 0; i < 30; i++)
		buf_append_str(&msg, "Content-Type: message/rfc822\r\n\r\n");
	m = parse_buf(&msg);
	CU_ASSERT_EQUAL(mime_part_count(m), MIME_MAX_DEPTH + 1);
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, false), 0);
	mime_free(&m);
	buf_free(&msg);
	buf_free(&out);
}

static void test_many_parts(void)
{
	struct buf msg = BUF_INIT, out = BUF_INIT, scratch = BUF_INIT;
	struct mime_message *m;
	uint32_t last = MIME_MAX_PARTS - 1, over = MIME_MAX_PARTS;
	const unsigned char *d;
	size_t len;

	buf_append_str(&msg, "Content-Type: multipart/mixed; boundary=x"
		       "\r\n\r\n");
	for (unsigned i = 0; i < 3 * MIME_MAX_PARTS; i++)
		buf_printf(&msg, "--x\r\n\r\n%u\r\n", i);
	m = parse_buf(&msg);
	CU_ASSERT_EQUAL(mime_part_count(m), MIME_MAX_PARTS);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
	CU_ASSERT_EQUAL(mime_section(m, &last, 1, IMAP_SECTION_ALL, NULL, 0,
				     &scratch, &d, &len), 1);
	assert_bytes(d, len, "9998", "last part");
	CU_ASSERT_EQUAL(mime_section(m, &over, 1, IMAP_SECTION_ALL, NULL, 0,
				     &scratch, &d, &len), 0);
	mime_free(&m);
	buf_free(&msg);
	buf_free(&out);
	buf_free(&scratch);
}

/* NUL and 8-bit octets anywhere; strings with them become literals. */
static void test_binary(void)
{
	static const unsigned char msg[] =
		"Subject: a\0b\xff\r\nFrom: \"\x80\" <\0@\xfe>\r\n"
		"Content-Type: text/plain; name=\"\0\"\r\n\r\n\0\xff\r\n";
	struct buf out = BUF_INIT;
	const char *error;
	struct mime_message *m = mime_parse(msg, sizeof(msg) - 1, &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(mime_envelope(m, &out), 0);
	CU_ASSERT(out.len > 20 && memcmp(out.data, "(NIL {4}\r\na\0b\xff",
					 14) == 0);
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, &out, true), 0);
	CU_ASSERT(out.len > 0);
	CU_ASSERT_EQUAL(mime_body_contains(m, "\0\xff", 2), 1);
	mime_free(&m);
	buf_free(&out);
}

static void test_to_crlf(void)
{
	static const struct {
		const char *in, *want;
		int ret;
	} cases[] = {
		{ "", "", 0 }, { "a\r\nb\r\n", "a\r\nb\r\n", 0 },
		{ "a\nb\n", "a\r\nb\r\n", 1 }, { "a\rb", "a\r\nb", 1 },
		{ "\r\r\n\n", "\r\n\r\n\r\n", 1 }, { "x", "x", 0 },
	};
	struct buf out = BUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_to_crlf(cases[i].in, strlen(cases[i].in),
					     &out), cases[i].ret);
		assert_bytes(out.data, out.len, cases[i].want, cases[i].in);
	}
	buf_free(&out);
}

static void test_write_string(void)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{ "", "\"\"" }, { "abc", "\"abc\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "a\r\nb", "{4}\r\na\r\nb" },
		{ "\xc3\xa9", "{2}\r\n\xc3\xa9" },
		{ "tab\there", "\"tab\there\"" },
	};
	struct buf out = BUF_INIT, big = BUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_write_string(&out, cases[i].in,
						  strlen(cases[i].in)), 0);
		assert_bytes(out.data, out.len, cases[i].want, cases[i].in);
	}
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_write_nstring(&out, NULL, 0), 0);
	assert_bytes(out.data, out.len, "NIL", "nstring");
	buf_reset(&out);
	CU_ASSERT_EQUAL(mime_write_nstring(&out, "NIL", 3), 0);
	assert_bytes(out.data, out.len, "\"NIL\"", "nstring");
	/* quoted up to 1023 bytes, a literal from 1024 */
	for (int i = 0; i < 1023; i++)
		buf_append(&big, "a", 1);
	buf_reset(&out);
	mime_write_string(&out, big.data, big.len);
	CU_ASSERT_EQUAL(out.len, 1025);
	CU_ASSERT_EQUAL(out.data[0], '"');
	buf_append(&big, "a", 1);
	buf_reset(&out);
	mime_write_string(&out, big.data, big.len);
	CU_ASSERT(out.len == 1024 + 8 &&
		  memcmp(out.data, "{1024}\r\n", 8) == 0);
	buf_free(&out);
	buf_free(&big);
}

/*
 * SEARCH helpers
 */

static const struct {
	const char *value, *want;
} decode_cases[] = {
	{ "=?utf-8?B?SsO8cmdlbg==?=", "J\xc3\xbcrgen" },
	{ "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
	{ "=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=", "ab" },
	{ "=?iso-8859-1?q?a?=\r\n =?iso-8859-1?q?b?=", "ab" },
	{ "=?iso-8859-1?q?a?=  x  =?iso-8859-1?q?b?=", "a  x  b" },
	{ "(=?utf-8?q?a?=) x", "(a) x" },
	{ "plain =?bogus", "plain =?bogus" },
	{ "=?utf-8?x?abc?=", "=?utf-8?x?abc?=" },
	{ "=??q?a?=", "=??q?a?=" },
	{ "=?utf-8?q?a b?=", "=?utf-8?q?a b?=" },
	{ "  a\r\n b  ", "a b" },
	{ "=?utf-8*en?q?hi?=", "hi" },
	{ "=?unknown?q?=FF?=", "\xff" },
	{ "=?utf-8?q?a_b=3?=", "a b=3" },
	{ "=?utf-8?b?!!!?=", "" },
	{ "a=b=?c", "a=b=?c" },
};

static void test_header_decode(void)
{
	struct buf out = BUF_INIT;

	for (size_t i = 0; i < sizeof(decode_cases) /
		     sizeof(decode_cases[0]); i++) {
		const char *v = decode_cases[i].value;

		buf_reset(&out);
		CU_ASSERT_EQUAL(mime_header_decode((const unsigned char *)v,
						   strlen(v), &out), 0);
		assert_bytes(out.data, out.len, decode_cases[i].want, v);
	}
	buf_free(&out);
}

enum search_kind { S_HEADER, S_BODY, S_TEXT };

static const struct {
	const char *file;
	enum search_kind kind;
	const char *field, *needle;
	int want;
} search_cases[] = {
	{ "encoded.eml", S_HEADER, "subject", "caf\xc3\xa9 cr\xc3\xa8me", 1 },
	{ "encoded.eml", S_HEADER, "Subject", "CAF\xc3\xa9", 1 },
	{ "encoded.eml", S_HEADER, "subject", "me and more", 0 },
	{ "encoded.eml", S_HEADER, "subject", "me  and more", 1 },
	{ "encoded.eml", S_HEADER, "from", "J\xc3\xbcrgen", 1 },
	{ "encoded.eml", S_HEADER, "from", "juergen@example.de", 1 },
	{ "encoded.eml", S_HEADER, "to", "Andr\xc3\xa9 pirard", 1 },
	{ "encoded.eml", S_HEADER, "cc", "", 0 },
	{ "encoded.eml", S_HEADER, "x-raw", "NA\xefVE", 1 },
	{ "encoded.eml", S_BODY, NULL, "cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e",
	  1 },
	{ "encoded.eml", S_BODY, NULL, "soft break.", 1 },
	{ "encoded.eml", S_BODY, NULL, "Caf=E9", 0 },
	{ "encoded.eml", S_BODY, NULL, "", 1 },
	{ "mixed.eml", S_BODY, NULL, "caf\xc3\xa9 at 5", 1 },
	{ "mixed.eml", S_BODY, NULL, "Hi Bob, \r\n", 1 },
	{ "mixed.eml", S_BODY, NULL, "JVBERi0", 0 },
	{ "mixed.eml", S_BODY, NULL, "preamble", 0 },
	{ "mixed.eml", S_BODY, NULL, "report attached", 0 },
	{ "mixed.eml", S_TEXT, NULL, "report attached", 1 },
	{ "mixed.eml", S_TEXT, NULL, "message-id: <mixed-1", 1 },
	{ "mixed.eml", S_HEADER, "X-Nope", "", 0 },
	{ "mixed.eml", S_HEADER, "subject", "", 1 },
	{ "rfc822.eml", S_BODY, NULL, "noon at the usual", 1 },
	{ "rfc822.eml", S_BODY, NULL, "<B>NOON</B>", 1 },
	{ "rfc822.eml", S_BODY, NULL, "Subject: lunch", 1 },
	{ "rfc822.eml", S_BODY, NULL, "Subject: Fwd", 0 },
	{ "rfc822.eml", S_HEADER, "subject", "FWD: LUNCH", 1 },
	{ "simple.eml", S_TEXT, NULL, "HELLO JOE", 1 },
	{ "simple.eml", S_BODY, NULL, "afternoon", 0 },
	{ "simple.eml", S_TEXT, NULL, "afternoon", 1 },
	{ "simple.eml", S_TEXT, NULL, "aaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },
	{ "groups.eml", S_HEADER, "bcc", "ed jones", 1 },
	{ "no_blank.eml", S_BODY, NULL, "end", 0 },
	{ "no_blank.eml", S_TEXT, NULL, "end", 1 },
	{ "alt_in_mixed.eml", S_BODY, NULL, "of the text", 1 },
	{ "alt_in_mixed.eml", S_BODY, NULL, "iVBOR", 0 },
};

static void test_search(void)
{
	struct buf msg = BUF_INIT;

	for (size_t i = 0; i < sizeof(search_cases) /
		     sizeof(search_cases[0]); i++) {
		const char *n = search_cases[i].needle;
		struct mime_message *m;
		int got = -2;

		if (!load_sample(search_cases[i].file, &msg))
			break;
		m = parse_buf(&msg);
		switch (search_cases[i].kind) {
		case S_HEADER:
			got = mime_header_contains(m, search_cases[i].field,
						   n, strlen(n));
			break;
		case S_BODY:
			got = mime_body_contains(m, n, strlen(n));
			break;
		case S_TEXT:
			got = mime_text_contains(m, n, strlen(n));
			break;
		}
		if (got != search_cases[i].want)
			printf("\nsearch %s [%s]: got %d\n",
			       search_cases[i].file, n, got);
		CU_ASSERT_EQUAL(got, search_cases[i].want);
		mime_free(&m);
	}
	buf_free(&msg);
}

static void test_header_get(void)
{
	struct buf msg = BUF_INIT;
	struct mime_message *m;
	const unsigned char *v;
	size_t len;

	load_sample("encoded.eml", &msg);
	m = parse_buf(&msg);
	CU_ASSERT(mime_header_get(m, "SUBJECT", 0, &v, &len));
	assert_bytes(v, len, " =?iso-8859-1?q?caf=E9?= =?utf-8?q?_cr=C3=A8me?="
		     "\r\n  and more", "raw subject");
	CU_ASSERT(!mime_header_get(m, "subject", 1, &v, &len));
	CU_ASSERT(!mime_header_get(m, "subjec", 0, &v, &len));
	mime_free(&m);
	m = parse_str("A: 1\r\nB : 2\r\na: 3\r\nno colon\r\n\r\nA: body");
	CU_ASSERT(mime_header_get(m, "a", 1, &v, &len));
	assert_bytes(v, len, " 3", "second a");
	CU_ASSERT(mime_header_get(m, "b", 0, &v, &len));
	assert_bytes(v, len, " 2", "b with space before colon");
	CU_ASSERT(!mime_header_get(m, "a", 2, &v, &len));
	mime_free(&m);
	buf_free(&msg);
}

/*
 * Dates
 */

static const struct {
	const char *s;
	bool ok;
	long long when;
	int tz;
	long long day;
} date_cases[] = {
	{ "Mon, 7 Feb 1994 21:52:25 -0800 (PST)", true, 760686745, -480,
	  760579200 },
	{ "3 Mar 2023 08:15 -0500", true, 1677849300, -300, 1677801600 },
	/* the day as written, not the UTC day (Feb 29th 09:59:59 UTC) */
	{ "Thu, 29 Feb 2024 23:59:59 +1400", true, 1709200799, 840,
	  1709164800 },
	{ "1 Jan 70 00:00:00 GMT", true, 0, 0, 0 },
	{ "1 Jan 49 00:00 EST", true, 2493090000LL, -300, 2493072000LL },
	{ "1 Jan 2000 12:00", true, 946728000, 0, 946684800 },
	{ "(c) Sat , 01 (x) Jan 2000 12 : 00 : 60 +0000", true, 946728060, 0,
	  946684800 },
	{ "2-jan-2000 00:00 z", true, 946771200, 0, 946771200 },
	{ "1 January 2000 00:00 +0130", true, 946679400, 90, 946684800 },
	{ "29 Feb 2023 10:00 +0000", false, 0, 0, 0 },
	{ "29 Feb 2000 00:00 +0000", true, 951782400, 0, 951782400 },
	{ "29 Feb 1900 00:00 +0000", false, 0, 0, 0 },
	{ "32 Jan 2020 00:00 +0000", false, 0, 0, 0 },
	{ "1 Foo 2020 00:00 +0000", false, 0, 0, 0 },
	{ "1 Jan 2020 24:00 +0000", false, 0, 0, 0 },
	{ "1 Jan 2020 10:00 +9999", false, 0, 0, 0 },
	{ "1 Jan 20200 10:00", false, 0, 0, 0 },
	{ "1 Jan 2020", false, 0, 0, 0 },
	{ "2020-01-01T00:00:00Z", false, 0, 0, 0 },
	{ "", false, 0, 0, 0 },
	{ "garbage", false, 0, 0, 0 },
};

static void test_dates(void)
{
	struct buf msg = BUF_INIT;
	struct mime_message *m;
	time_t when, day;
	int tz;

	for (size_t i = 0; i < sizeof(date_cases) / sizeof(date_cases[0]);
	     i++) {
		const char *s = date_cases[i].s;
		bool ok = mime_parse_date((const unsigned char *)s, strlen(s),
					  &when, &tz, &day);

		if (ok != date_cases[i].ok ||
		    (ok && ((long long)when != date_cases[i].when ||
			    tz != date_cases[i].tz ||
			    (long long)day != date_cases[i].day)))
			printf("\ndate [%s]: %d %lld %d %lld\n", s, ok,
			       (long long)when, tz, (long long)day);
		CU_ASSERT_EQUAL(ok, date_cases[i].ok);
		if (ok && date_cases[i].ok) {
			CU_ASSERT_EQUAL((long long)when, date_cases[i].when);
			CU_ASSERT_EQUAL(tz, date_cases[i].tz);
			CU_ASSERT_EQUAL((long long)day, date_cases[i].day);
		}
	}
	load_sample("groups.eml", &msg);
	m = parse_buf(&msg);
	CU_ASSERT(mime_sent_date(m, &when, NULL, NULL));
	CU_ASSERT_EQUAL((long long)when, 880127706);
	CU_ASSERT(mime_sent_date(m, NULL, NULL, NULL));
	mime_free(&m);
	load_sample("nodate.eml", &msg);
	m = parse_buf(&msg);
	CU_ASSERT(!mime_sent_date(m, &when, &tz, &day));
	mime_free(&m);
	buf_free(&msg);
}

/*
 * Random mutations of every sample: no crash (ASan/UBSan builds catch
 * memory errors), answers stay well-formed, sections stay in bounds.
 */

static uint32_t rng_state = 0x9e3779b9U;

static uint32_t rng(void)
{
	/* xorshift32: deterministic, so a failure can be replayed */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void mutate(struct buf *b)
{
	static const char *const snippets[] = {
		"\r\n--", "--", "\r\n\r\n", "\n", "\r", "\"", "(", ")", "=?",
		"?=", "<", ">", ":", ";", ",", "@", "\\",
		"Content-Type: multipart/mixed; boundary=b\r\n",
		"Content-Type: message/rfc822\r\n", "\r\n--b\r\n",
		"\r\n--b--\r\n", "=\r\n", "\0",
	};
	size_t pos = b->len == 0 ? 0 : rng() % b->len;
	const char *s;
	size_t n;

	switch (rng() % 6) {
	case 0:		/* flip a byte */
		if (b->len > 0)
			b->data[pos] = (unsigned char)rng();
		break;
	case 1:		/* insert a snippet */
		s = snippets[rng() % (sizeof(snippets) / sizeof(snippets[0]))];
		n = *s == '\0' ? 1 : strlen(s);
		if (buf_reserve(b, n) == 0) {
			memmove(b->data + pos + n, b->data + pos, b->len - pos);
			memcpy(b->data + pos, s, n);
			b->len += n;
		}
		break;
	case 2:		/* delete a range */
		n = rng() % 64;
		if (n > b->len - pos)
			n = b->len - pos;
		memmove(b->data + pos, b->data + pos + n, b->len - pos - n);
		b->len -= n;
		break;
	case 3:		/* truncate */
		b->len = pos;
		break;
	case 4:		/* duplicate a range */
		n = rng() % 128;
		if (n > b->len - pos)
			n = b->len - pos;
		if (n > 0 && buf_reserve(b, n) == 0) {
			memmove(b->data + pos + n, b->data + pos, b->len - pos);
			b->len += n;
		}
		break;
	default:	/* LF-only line ends */
		if (b->len > 0 && b->data[pos] == '\r')
			b->data[pos] = ' ';
		break;
	}
}

/* Parentheses balance outside quoted strings and literals. */
static bool well_formed(const struct buf *b)
{
	long depth = 0;

	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = b->data[i];

		if (c == '"') {
			for (i++; i < b->len && b->data[i] != '"'; i++) {
				if (b->data[i] == '\\')
					i++;
			}
		} else if (c == '{') {
			char *end;
			unsigned long long n = strtoull((const char *)b->data +
							i + 1, &end, 10);

			if (*end != '}' || end[1] != '\r' || end[2] != '\n')
				return false;
			i = (size_t)(end + 2 - (char *)b->data) + (size_t)n;
		} else if (c == '(') {
			depth++;
		} else if (c == ')' && --depth < 0) {
			return false;
		}
	}
	return depth == 0;
}

static void fuzz_one(const struct buf *msg, struct buf *out,
		     struct buf *scratch)
{
	static const char *const needles[] = { "a", "--", "caf\xc3\xa9", "" };
	struct imap_string fields[2] = { { "subject", 7 }, { "FROM", 4 } };
	const char *error;
	struct mime_message *m = mime_parse(msg->data, msg->len, &error);
	const unsigned char *d;
	uint32_t parts[4];
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT(mime_part_count(m) >= 1 &&
		  mime_part_count(m) <= MIME_MAX_PARTS);
	buf_reset(out);
	CU_ASSERT_EQUAL(mime_envelope(m, out), 0);
	CU_ASSERT(well_formed(out));
	buf_reset(out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, out, true), 0);
	CU_ASSERT(well_formed(out));
	buf_reset(out);
	CU_ASSERT_EQUAL(mime_bodystructure(m, out, false), 0);
	CU_ASSERT(well_formed(out));
	for (int k = 0; k < 4; k++) {
		unsigned n = rng() % 4;
		enum imap_section_text text =
			(enum imap_section_text)(rng() % 6);
		int ret;

		for (unsigned j = 0; j < n; j++)
			parts[j] = rng() % 4;
		ret = mime_section(m, parts, n, text, fields, 2, scratch, &d,
				   &len);
		CU_ASSERT(ret == 0 || ret == 1);
		if (ret == 1 && !(text == IMAP_SECTION_HEADER_FIELDS ||
				  text == IMAP_SECTION_HEADER_FIELDS_NOT))
			CU_ASSERT(d >= msg->data &&
				  len <= msg->len &&
				  (size_t)(d - msg->data) <= msg->len - len);
	}
	for (int k = 0; k < 4; k++) {
		const char *n = needles[k];

		CU_ASSERT(mime_body_contains(m, n, strlen(n)) >= 0);
		CU_ASSERT(mime_text_contains(m, n, strlen(n)) >= 0);
		CU_ASSERT(mime_header_contains(m, "from", n, strlen(n)) >= 0);
	}
	(void)mime_sent_date(m, NULL, NULL, NULL);
	mime_free(&m);
}

static void test_fuzz(void)
{
	static const char *const files[] = {
		"simple.eml", "mixed.eml", "alt_in_mixed.eml", "rfc822.eml",
		"no_blank.eml", "unterminated.eml", "garbage_boundary.eml",
		"encoded.eml", "groups.eml", "nodate.eml", "digest.eml",
	};
	struct buf orig = BUF_INIT, msg = BUF_INIT, out = BUF_INIT;
	struct buf scratch = BUF_INIT;
	const char *iters = getenv("MIME_FUZZ_ITERATIONS");
	unsigned rounds = iters != NULL ? (unsigned)atoi(iters) : 400;

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		if (!load_sample(files[f], &orig))
			break;
		for (unsigned r = 0; r < rounds; r++) {
			unsigned muts = 1 + rng() % 8;

			buf_reset(&msg);
			buf_append(&msg, orig.data, orig.len);
			for (unsigned k = 0; k < muts; k++)
				mutate(&msg);
			fuzz_one(&msg, &out, &scratch);
		}
	}
	buf_free(&orig);
	buf_free(&msg);
	buf_free(&out);
	buf_free(&scratch);
}

/* --dump FILE...: answers for tests/integration/test_mime_dovecot.sh. */
static int dump(int argc, char **argv)
{
	struct buf msg = BUF_INIT, out = BUF_INIT;
	int status = 0;

	for (int i = 2; i < argc; i++) {
		unsigned char *raw;
		size_t len;
		const char *error;
		struct mime_message *m;

		raw = read_file(argv[i], &len);
		if (raw == NULL) {
			perror(argv[i]);
			status = 1;
			continue;
		}
		buf_reset(&msg);
		buf_reset(&out);
		if (mime_to_crlf(raw, len, &msg) < 0 ||
		    (m = mime_parse(msg.data, msg.len, &error)) == NULL) {
			free(raw);
			status = 1;
			continue;
		}
		if (buf_append_str(&out, "(ENVELOPE ") < 0 ||
		    mime_envelope(m, &out) < 0 ||
		    buf_append_str(&out, " BODY ") < 0 ||
		    mime_bodystructure(m, &out, false) < 0 ||
		    buf_append_str(&out, " BODYSTRUCTURE ") < 0 ||
		    mime_bodystructure(m, &out, true) < 0 ||
		    buf_append_str(&out, ")\n") < 0)
			status = 1;
		else
			fwrite(out.data, 1, out.len, stdout);
		mime_free(&m);
		free(raw);
	}
	buf_free(&msg);
	buf_free(&out);
	return status;
}

static CU_TestInfo tests[] = {
	{ "ENVELOPE, BODY, BODYSTRUCTURE of samples", test_structures },
	{ "BODY[section] table", test_sections },
	{ "whole message, header + text", test_section_whole },
	{ "partial slicing", test_partial },
	{ "address lists", test_addresses },
	{ "envelope defaults and folding", test_envelope_defaults },
	{ "Content-Type and boundaries", test_ctypes },
	{ "huge header and endless line", test_huge_header },
	{ "nesting depth limit", test_deep_nesting },
	{ "part count limit", test_many_parts },
	{ "NUL and 8-bit octets", test_binary },
	{ "CRLF conversion", test_to_crlf },
	{ "IMAP strings", test_write_string },
	{ "RFC 2047 decoding", test_header_decode },
	{ "SEARCH header/body/text", test_search },
	{ "raw header lookup", test_header_get },
	{ "Date parsing", test_dates },
	{ "random mutations", test_fuzz },
	CU_TEST_INFO_NULL,
};

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--dump") == 0)
		return dump(argc, argv);
	return cu_run("mime", tests);
}
