/*
 * test_imap_parser.c - the IMAP command parser against a table of valid and
 * invalid inputs, each fed whole, one byte at a time and three bytes at a
 * time (the results must not depend on the split), plus focused tests of
 * the typed values, the limits, continuations and pipelining.
 *
 * A run is summarised as a transcript: one entry per result, "OK <dump>|"
 * for a command, "+<n>|" for a continuation request, "BAD <tag> <msg>|" or
 * "FATAL <tag> <msg>|" for an error (tag "*" when none was read), and
 * "MORE|" when the input ended inside a command.
 */
#include "autoconfig.h"

#include "buf.h"
#include "cu_run.h"
#include "imap_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pcase {
	const char *in;
	size_t len;
	const char *want;
};

#define C(in, want) { in, sizeof(in) - 1, want }

static const struct pcase cases[] = {
	/* framing, tags and command names */
	C("A1 NOOP\r\n", "OK A1 NOOP|"),
	C("a1 noop\r\n", "OK a1 NOOP|"),
	C("A1 NOOP\n", "OK A1 NOOP|"),
	C("A1 CAPABILITY\r\n", "OK A1 CAPABILITY|"),
	C("A1 LOGOUT\r\n", "OK A1 LOGOUT|"),
	C("A1 STARTTLS\r\n", "OK A1 STARTTLS|"),
	C("A1 CHECK\r\n", "OK A1 CHECK|"),
	C("A1 close\r\n", "OK A1 CLOSE|"),
	C("A1 EXPUNGE\r\n", "OK A1 EXPUNGE|"),
	C("A1 IDLE\r\n", "OK A1 IDLE|"),
	C("A1 UNSELECT\r\n", "OK A1 UNSELECT|"),
	C("A1 NAMESPACE\r\n", "OK A1 NAMESPACE|"),
	C("A1 NOOP", "MORE|"),
	C("A1 NOOP\r", "MORE|"),
	C("A1 NOOP\rX\r\n", "BAD A1 CR not followed by LF|"),
	C("A1 NOOP\r\rA2 NOOP\r\n", "BAD A1 CR not followed by LF|"),
	C("A1\rNOOP\r\n", "BAD * CR not followed by LF|"),
	C("A1 NOOP extra\r\n", "BAD A1 Too many arguments|"),
	C("A1 NOOP \r\n", "BAD A1 Too many arguments|"),
	C("\r\n", "BAD * Empty command line|"),
	C("\n", "BAD * Empty command line|"),
	C(" NOOP\r\n", "BAD * Empty tag|"),
	C("A1\r\n", "BAD A1 Missing command name|"),
	C("A1 \r\n", "BAD A1 Missing command name|"),
	C("A1  NOOP\r\n", "BAD A1 Missing command name|"),
	C("A+1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A*1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A(1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A\"1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A%1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A{1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("A\\1 NOOP\r\n", "BAD * Invalid characters in tag|"),
	C("{5}\r\nA2 NOOP\r\n", "BAD * Invalid characters in tag|"
				"OK A2 NOOP|"),
	C("A]1 NOOP\r\n", "OK A]1 NOOP|"),
	C("A\0001 NOOP\r\n", "BAD * NUL byte outside a literal|"),
	C("A\3511 NOOP\r\n", "BAD * 8-bit data outside a literal|"),
	C("A\t1 NOOP\r\n", "BAD * Control character outside a quoted "
			   "string|"),
	C("A1 FOO\r\n", "BAD A1 Unknown command|"),
	C("A1 FOO bar {5}\r\nA2 NOOP\r\n", "BAD A1 Unknown command|"
					   "OK A2 NOOP|"),
	C("A1 FOO {5+}\r\nhello\r\nA2 NOOP\r\n", "BAD A1 Unknown command|"
						 "OK A2 NOOP|"),
	C("A1 FOO {3+}\r\n{5}\r\nA2 NOOP\r\n", "BAD A1 Unknown command|"
					       "OK A2 NOOP|"),
	C("A1 NO\200OP\r\n", "BAD A1 8-bit data outside a literal|"),
	C("A1 NOOP(\r\n", "BAD A1 Invalid characters in command name|"),
	C("A1 AVERYVERYVERYVERYLONGCOMMANDNAMEXX\r\n",
	  "BAD A1 Unknown command|"),
	C("A1 UID\r\n", "BAD A1 Missing command after UID|"),
	C("A1 UID NOOP\r\n", "BAD A1 Unknown UID command|"),
	C("A1 UID FOO 1\r\n", "BAD A1 Unknown UID command|"),
	C("A1 UID LOGIN a b\r\n", "BAD A1 Unknown UID command|"),
	C("A1 UID UID FETCH 1 FLAGS\r\n", "BAD A1 Unknown UID command|"),
	C("A1 UID EXPUNGE 1:5\r\n", "OK A1 UID EXPUNGE 1:5|"),
	C("A1 EXPUNGE 1\r\n", "BAD A1 Too many arguments|"),
	C("A1 UID EXPUNGE\r\n", "BAD A1 Missing UID set|"),
	C("A1 uid fetch 1:* flags\r\n", "OK A1 UID FETCH 1:* (FLAGS)|"),
	C("A1 NOOP\r\nA2 NOOP\r\n", "OK A1 NOOP|OK A2 NOOP|"),
	C("A1 NOOP\r\n\r\nA2 NOOP\r\n", "OK A1 NOOP|BAD * Empty command line|"
					"OK A2 NOOP|"),
	C("A1 NOOP\r\nA2 FOO\r\nA3 NOOP\r\n", "OK A1 NOOP|"
	  "BAD A2 Unknown command|OK A3 NOOP|"),

	/* LOGIN: astrings, quoted strings, literals */
	C("A1 LOGIN joe secret\r\n", "OK A1 LOGIN \"joe\" <6 bytes>|"),
	C("A1 LOGIN \"joe\" \"se cret\"\r\n", "OK A1 LOGIN \"joe\" <7 bytes>|"),
	C("A1 LOGIN \"jo\\\"e\" x\r\n", "OK A1 LOGIN \"jo\\\"e\" <1 bytes>|"),
	C("A1 LOGIN \"jo\\\\e\" x\r\n", "OK A1 LOGIN \"jo\\\\e\" <1 bytes>|"),
	C("A1 LOGIN \"jo\\e\" x\r\n",
	  "BAD A1 Invalid escape in quoted string|"),
	C("A1 LOGIN \"joe x\r\n", "BAD A1 Unterminated quoted string|"),
	C("A1 LOGIN \"joe x\n", "BAD A1 Unterminated quoted string|"),
	C("A1 LOGIN \"joe x\r\nA2 NOOP\r\n",
	  "BAD A1 Unterminated quoted string|OK A2 NOOP|"),
	C("A1 LOGIN \"joe\\\r\nA2 NOOP\r\n",
	  "BAD A1 Unterminated quoted string|OK A2 NOOP|"),
	C("A1 LOGIN {3}\r\njoe {6}\r\nsecret\r\n",
	  "+3|+6|OK A1 LOGIN \"joe\" <6 bytes>|"),
	C("A1 LOGIN {3+}\r\njoe {6+}\r\nsecret\r\n",
	  "OK A1 LOGIN \"joe\" <6 bytes>|"),
	C("A1 LOGIN {3}\njoe x\n", "+3|OK A1 LOGIN \"joe\" <1 bytes>|"),
	C("A1 LOGIN joe\r\n", "BAD A1 Missing password|"),
	C("A1 LOGIN\r\n", "BAD A1 Missing user name|"),
	C("A1 LOGIN joe secret extra\r\n", "BAD A1 Too many arguments|"),
	C("A1 LOGIN \"jo\001e\" x\r\n", "OK A1 LOGIN \"jo\\x01e\" <1 bytes>|"),
	C("A1 LOGIN jo\001e x\r\n",
	  "BAD A1 Control character outside a quoted string|"),
	C("A1 LOGIN jo\177e x\r\n",
	  "BAD A1 Control character outside a quoted string|"),
	C("A1 LOGIN \"j\000oe\" x\r\n", "BAD A1 NUL byte outside a literal|"),
	C("A1 LOGIN j\000oe x\r\n", "BAD A1 NUL byte outside a literal|"),
	C("A1 LOGIN \"j\303\251\" x\r\n",
	  "BAD A1 8-bit data in a quoted string|"),
	C("A1 LOGIN j\303\251 x\r\n", "BAD A1 8-bit data outside a literal|"),
	C("A1 LOGIN {4}\r\nj\000\377\r x\r\n",
	  "+4|OK A1 LOGIN \"j\\x00\\xff\\x0d\" <1 bytes>|"),
	C("A1 LOGIN joe \"\"\r\n", "OK A1 LOGIN \"joe\" <0 bytes>|"),
	C("A1 LOGIN joe {0}\r\n\r\n", "+0|OK A1 LOGIN \"joe\" <0 bytes>|"),
	C("A1 LOGIN a] b\r\n", "OK A1 LOGIN \"a]\" <1 bytes>|"),
	C("A1 LOGIN a% b\r\n", "BAD A1 Expected a space before password|"),
	C("A1 LOGIN joe {5}\r\nsec\r\n", "+5|MORE|"),
	C("A1 LOGIN joe {5}x\r\n",
	  "BAD A1 Literal size must be followed by CRLF|"),
	C("A1 LOGIN joe {5+} \r\n",
	  "BAD A1 Literal size must be followed by CRLF|"),
	C("A1 LOGIN joe {}\r\n", "BAD A1 Invalid literal size|"),
	C("A1 LOGIN joe {-1}\r\nA2 NOOP\r\n", "BAD A1 Invalid literal size|"
					      "OK A2 NOOP|"),
	C("A1 LOGIN joe {5a}\r\n", "BAD A1 Invalid literal size|"),
	C("A1 LOGIN joe {+}\r\n", "BAD A1 Invalid literal size|"),
	C("A1 LOGIN joe {5++}\r\n", "BAD A1 Invalid literal size|"),
	C("A1 LOGIN joe {5}\rx\r\n", "BAD A1 CR not followed by LF|"),
	C("A1 LOGIN joe {18446744073709551616}\r\nA2 NOOP\r\n",
	  "BAD A1 Literal too large|OK A2 NOOP|"),
	C("A1 LOGIN joe {18446744073709551615}\r\nA2 NOOP\r\n",
	  "BAD A1 Literal too large|OK A2 NOOP|"),
	C("A1 LOGIN joe {18446744073709551616+}\r\nA2 NOOP\r\n",
	  "FATAL A1 Literal too large|"),
	C("A1 LOGIN joe {99999999999}\r\nA2 NOOP\r\n",
	  "BAD A1 Literal too large|OK A2 NOOP|"),
	C("A1 LOGIN joe {65536}\r\nA2 NOOP\r\n",
	  "BAD A1 Literal too large|OK A2 NOOP|"),
	C("A1 LOGIN joe {65536+}\r\n", "FATAL A1 Literal too large|"),
	C("A1 LOGIN {3}\r\nabc\r\n", "+3|BAD A1 Missing password|"),
	C("A1 LOGIN a b c {5}\r\nA2 NOOP\r\n", "BAD A1 Too many arguments|"
					       "OK A2 NOOP|"),
	C("A1 LOGIN a b c {5+}\r\nhello\r\nA2 NOOP\r\n",
	  "BAD A1 Too many arguments|OK A2 NOOP|"),
	C("A1 LOGIN a\"b\" c\r\n", "BAD A1 Expected a space before password|"),
	C("A1 LOGIN a b\"c\"\r\n",
	  "BAD A1 Invalid characters after argument|"),

	/* mailboxes */
	C("A1 SELECT INBOX\r\n", "OK A1 SELECT \"INBOX\"|"),
	C("A1 SELECT inbox\r\n", "OK A1 SELECT \"INBOX\"|"),
	C("A1 SELECT \"InBoX\"\r\n", "OK A1 SELECT \"INBOX\"|"),
	C("A1 SELECT inbox.sub\r\n", "OK A1 SELECT \"inbox.sub\"|"),
	C("A1 EXAMINE \"a b\"\r\n", "OK A1 EXAMINE \"a b\"|"),
	C("A1 CREATE {3}\r\nfoo\r\n", "+3|OK A1 CREATE \"foo\"|"),
	C("A1 DELETE foo\r\n", "OK A1 DELETE \"foo\"|"),
	C("A1 SUBSCRIBE foo\r\n", "OK A1 SUBSCRIBE \"foo\"|"),
	C("A1 UNSUBSCRIBE foo\r\n", "OK A1 UNSUBSCRIBE \"foo\"|"),
	C("A1 SELECT\r\n", "BAD A1 Missing mailbox name|"),
	C("A1 SELECT a b\r\n", "BAD A1 Too many arguments|"),
	C("A1 SELECT (a)\r\n", "BAD A1 Invalid mailbox name|"),
	C("A1 SELECT a)\r\n", "BAD A1 Unexpected ')'|"),
	C("A1 SELECT \"\"\r\n", "OK A1 SELECT \"\"|"),
	C("A1 SELECT &AOk-\r\n", "OK A1 SELECT \"&AOk-\"|"),
	C("A1 SELECT caf\303\251\r\n", "BAD A1 8-bit data outside a literal|"),
	C("A1 SELECT a\000b\r\n", "BAD A1 NUL byte outside a literal|"),
	C("A1 RENAME a b\r\n", "OK A1 RENAME \"a\" \"b\"|"),
	C("A1 RENAME a\r\n", "BAD A1 Missing new mailbox name|"),
	C("A1 LIST \"\" *\r\n", "OK A1 LIST \"\" \"*\"|"),
	C("A1 LIST \"\" %\r\n", "OK A1 LIST \"\" \"%\"|"),
	C("A1 LIST ~/ foo*%]\r\n", "OK A1 LIST \"~/\" \"foo*%]\"|"),
	C("A1 LSUB \"\" \"*\"\r\n", "OK A1 LSUB \"\" \"*\"|"),
	C("A1 LIST \"\"\r\n", "BAD A1 Missing mailbox pattern|"),
	C("A1 LIST * *\r\n", "BAD A1 Invalid reference name|"),
	C("A1 STATUS INBOX (MESSAGES UNSEEN uidnext)\r\n",
	  "OK A1 STATUS \"INBOX\" (MESSAGES UIDNEXT UNSEEN)|"),
	C("A1 STATUS x (UIDVALIDITY RECENT)\r\n",
	  "OK A1 STATUS \"x\" (RECENT UIDVALIDITY)|"),
	C("A1 STATUS INBOX ()\r\n", "BAD A1 Empty status item list|"),
	C("A1 STATUS INBOX (FOO)\r\n", "BAD A1 Unknown status item|"),
	C("A1 STATUS INBOX MESSAGES\r\n",
	  "BAD A1 Expected a list of status items|"),
	C("A1 STATUS INBOX (MESSAGES\r\n",
	  "BAD A1 Missing ')' after status items|"),

	/* APPEND */
	C("A1 APPEND INBOX {5}\r\nhello\r\n", "+5|OK A1 APPEND \"INBOX\" {5}|"),
	C("A1 APPEND INBOX (\\Seen) {5+}\r\nhello\r\n",
	  "OK A1 APPEND \"INBOX\" (\\Seen) {5}|"),
	C("A1 APPEND INBOX (\\Seen \\Draft $Junk) \" 1-Feb-2020 10:00:00 "
	  "+0100\" {3}\r\nabc\r\n",
	  "+3|OK A1 APPEND \"INBOX\" (\\Seen \\Draft $Junk) "
	  "2020-02-01T09:00:00Z {3}|"),
	C("A1 APPEND INBOX \"01-Feb-2020 10:00:00 -0130\" {0}\r\n\r\n",
	  "+0|OK A1 APPEND \"INBOX\" 2020-02-01T11:30:00Z {0}|"),
	C("A1 APPEND INBOX () {1}\r\nx\r\n",
	  "+1|OK A1 APPEND \"INBOX\" () {1}|"),
	C("A1 APPEND INBOX (\\Recent) {5}\r\nA2 NOOP\r\n",
	  "BAD A1 The \\Recent flag cannot be set|OK A2 NOOP|"),
	C("A1 APPEND INBOX (\\Bogus) {5}\r\n", "BAD A1 Invalid system flag|"),
	C("A1 APPEND INBOX (\\Bogus) {5+}\r\nhello\r\nA2 NOOP\r\n",
	  "BAD A1 Invalid system flag|OK A2 NOOP|"),
	C("A1 APPEND INBOX \"31-Feb-2020 10:00:00 +0000\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"01-Foo-2020 10:00:00 +0000\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"01-Jan-2020 24:00:00 +0000\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"01-Jan-2020 10:00:00 +0060\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"01-Jan-2020 10:00:00\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"29-Feb-2021 00:00:00 +0000\" {1}\r\n",
	  "BAD A1 Invalid date-time|"),
	C("A1 APPEND INBOX \"29-feb-2024 23:59:59 +0000\" {1}\r\nx\r\n",
	  "+1|OK A1 APPEND \"INBOX\" 2024-02-29T23:59:59Z {1}|"),
	C("A1 APPEND INBOX hello\r\n",
	  "BAD A1 Expected the message as a literal|"),
	C("A1 APPEND INBOX\r\n", "BAD A1 Missing message literal|"),
	C("A1 APPEND INBOX (\\Seen)\r\n", "BAD A1 Missing message literal|"),
	C("A1 APPEND INBOX {5}\r\nhello extra\r\n",
	  "+5|BAD A1 Too many arguments|"),
	C("A1 APPEND INBOX {5}\r\nhe\000lo\r\n",
	  "+5|OK A1 APPEND \"INBOX\" {5}|"),
	C("A1 APPEND {5}\r\nINBOX {3}\r\nabc\r\n",
	  "+5|+3|OK A1 APPEND \"INBOX\" {3}|"),
	C("A1 APPEND INBOX {99999999999}\r\nA2 NOOP\r\n",
	  "BAD A1 Literal too large|OK A2 NOOP|"),
	C("A1 APPEND INBOX {99999999999+}\r\n", "FATAL A1 Literal too large|"),
	C("A1 APPEND INBOX (\\Seen {1}\r\n", "BAD A1 Invalid flag|"),
	C("A1 APPEND INBOX {2}\r\n\r\n\r\n", "+2|OK A1 APPEND \"INBOX\" {2}|"),

	/* SEARCH */
	C("A1 SEARCH ALL\r\n", "OK A1 SEARCH ALL|"),
	C("A1 SEARCH unseen from \"bob\"\r\n",
	  "OK A1 SEARCH UNSEEN FROM \"bob\"|"),
	C("A1 SEARCH OR FROM a TO b\r\n",
	  "OK A1 SEARCH OR FROM \"a\" TO \"b\"|"),
	C("A1 SEARCH NOT (SEEN DELETED)\r\n",
	  "OK A1 SEARCH NOT (SEEN DELETED)|"),
	C("A1 SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncaf\303\251\r\n",
	  "+5|OK A1 SEARCH CHARSET \"UTF-8\" SUBJECT \"caf\\xc3\\xa9\"|"),
	C("A1 SEARCH 1:3,5 UID 10:*\r\n", "OK A1 SEARCH 1:3,5 UID 10:*|"),
	C("A1 SEARCH SINCE 1-Feb-2020 BEFORE \"15-Mar-2021\"\r\n",
	  "OK A1 SEARCH SINCE 2020-02-01 BEFORE 2021-03-15|"),
	C("A1 SEARCH HEADER Message-ID \"<x@y>\"\r\n",
	  "OK A1 SEARCH HEADER \"Message-ID\" \"<x@y>\"|"),
	C("A1 SEARCH LARGER 1000 SMALLER 5000\r\n",
	  "OK A1 SEARCH LARGER 1000 SMALLER 5000|"),
	C("A1 SEARCH KEYWORD $Junk UNKEYWORD foo\r\n",
	  "OK A1 SEARCH KEYWORD \"$Junk\" UNKEYWORD \"foo\"|"),
	C("A1 SEARCH NEW OLD RECENT ANSWERED DELETED DRAFT FLAGGED UNANSWERED "
	  "UNDELETED UNDRAFT UNFLAGGED\r\n",
	  "OK A1 SEARCH NEW OLD RECENT ANSWERED DELETED DRAFT FLAGGED "
	  "UNANSWERED UNDELETED UNDRAFT UNFLAGGED|"),
	C("A1 SEARCH SENTON 5-May-2010 SENTSINCE 1-Jan-2000 SENTBEFORE "
	  "1-Jan-2030 ON 29-Feb-2000\r\n",
	  "OK A1 SEARCH SENTON 2010-05-05 SENTSINCE 2000-01-01 SENTBEFORE "
	  "2030-01-01 ON 2000-02-29|"),
	C("A1 SEARCH BCC a CC b BODY c TEXT d\r\n",
	  "OK A1 SEARCH BCC \"a\" CC \"b\" BODY \"c\" TEXT \"d\"|"),
	C("A1 SEARCH NOT NOT NOT SEEN\r\n", "OK A1 SEARCH NOT NOT NOT SEEN|"),
	C("A1 SEARCH ((((SEEN))))\r\n", "OK A1 SEARCH ((((SEEN))))|"),
	C("A1 SEARCH OR (SEEN FLAGGED) OR 1 2:4\r\n",
	  "OK A1 SEARCH OR (SEEN FLAGGED) OR 1 2:4|"),
	C("A1 SEARCH TEXT {3}\r\nfoo\r\n", "+3|OK A1 SEARCH TEXT \"foo\"|"),
	C("A1 UID SEARCH UID 1:*\r\n", "OK A1 UID SEARCH UID 1:*|"),
	C("A1 SEARCH FOO\r\n", "BAD A1 Unknown search key|"),
	C("A1 SEARCH\r\n", "BAD A1 Missing search criteria|"),
	C("A1 SEARCH FROM\r\n", "BAD A1 Missing argument for FROM|"),
	C("A1 SEARCH UID\r\n", "BAD A1 Missing argument for UID|"),
	C("A1 SEARCH OR SEEN\r\n", "BAD A1 Missing second key of OR|"),
	C("A1 SEARCH SINCE 32-Jan-2020\r\n", "BAD A1 Invalid date|"),
	C("A1 SEARCH SINCE 1-Jan-20\r\n", "BAD A1 Invalid date|"),
	C("A1 SEARCH SINCE \"1-Jan-2020\r\n",
	  "BAD A1 Unterminated quoted string|"),
	C("A1 SEARCH LARGER x\r\n", "BAD A1 Invalid size: expected a number|"),
	C("A1 SEARCH LARGER 4294967296\r\n",
	  "BAD A1 Invalid size: number too large|"),
	C("A1 SEARCH (SEEN\r\n", "BAD A1 Missing ')' in search keys|"),
	C("A1 SEARCH ()\r\n", "BAD A1 Missing search key|"),
	C("A1 SEARCH 0\r\n",
	  "BAD A1 Invalid sequence set: 0 is not a valid number|"),
	C("A1 SEARCH ALL \r\n", "BAD A1 Missing search key|"),
	C("A1 UID SEARCH CHARSET\r\n", "BAD A1 Missing charset|"),
	C("A1 SEARCH ((((((((((((((((SEEN))))))))))))))))\r\n",
	  "OK A1 SEARCH ((((((((((((((((SEEN))))))))))))))))|"),
	C("A1 SEARCH (((((((((((((((((SEEN)))))))))))))))))\r\nA2 NOOP\r\n",
	  "BAD A1 Too deep nesting|OK A2 NOOP|"),

	/* FETCH */
	C("A1 FETCH 1 ALL\r\n",
	  "OK A1 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)|"),
	C("A1 FETCH 1:* FAST\r\n",
	  "OK A1 FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)|"),
	C("A1 FETCH 1 full\r\n",
	  "OK A1 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)|"),
	C("A1 FETCH 1 (ALL)\r\n", "BAD A1 Unknown FETCH attribute|"),
	C("A1 FETCH 1 ALL FLAGS\r\n", "BAD A1 Too many arguments|"),
	C("A1 FETCH 2,1 (FLAGS UID)\r\n", "OK A1 FETCH 1:2 (FLAGS UID)|"),
	C("A1 FETCH 1 BODY[]\r\n", "OK A1 FETCH 1 (BODY[])|"),
	C("A1 FETCH 1 BODY.PEEK[HEADER.FIELDS (From To)]<0.100>\r\n",
	  "OK A1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (\"From\" \"To\")]<0.100>)|"),
	C("A1 FETCH 1 (BODY[1.2.MIME] BODY[3.TEXT] BODY[2] "
	  "body[header.fields.not (X {1}\r\nY)])\r\n",
	  "+1|OK A1 FETCH 1 (BODY[1.2.MIME] BODY[3.TEXT] BODY[2] "
	  "BODY[HEADER.FIELDS.NOT (\"X\" \"Y\")])|"),
	C("A1 FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE "
	  "BODYSTRUCTURE ENVELOPE INTERNALDATE BODY)\r\n",
	  "OK A1 FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE "
	  "BODYSTRUCTURE ENVELOPE INTERNALDATE BODY)|"),
	C("A1 FETCH 1 BODY[1.2.3.HEADER]<10.20>\r\n",
	  "OK A1 FETCH 1 (BODY[1.2.3.HEADER]<10.20>)|"),
	C("A1 FETCH 1 BODY[MIME]\r\n", "BAD A1 Invalid section in BODY[]|"),
	C("A1 FETCH 1 BODY[1.]\r\n", "BAD A1 Invalid section in BODY[]|"),
	C("A1 FETCH 1 BODY[0]\r\n",
	  "BAD A1 Invalid section part: must be a non-zero number|"),
	C("A1 FETCH 1 BODY[HEADER]<0>\r\n", "BAD A1 Invalid partial range|"),
	C("A1 FETCH 1 BODY[HEADER]<0.0>\r\n",
	  "BAD A1 Invalid partial length: must be a non-zero number|"),
	C("A1 FETCH 1 BODY.PEEK\r\n", "BAD A1 Unknown FETCH attribute|"),
	C("A1 FETCH 1 FOO\r\n", "BAD A1 Unknown FETCH attribute|"),
	C("A1 FETCH 1 ()\r\n", "BAD A1 Unknown FETCH attribute|"),
	C("A1 FETCH 1 (FLAGS\r\n",
	  "BAD A1 Missing ')' after fetch attributes|"),
	C("A1 FETCH 1 FLAGS[]\r\n", "BAD A1 Invalid FETCH attribute|"),
	C("A1 FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
	  "BAD A1 Invalid header field name|"),
	C("A1 FETCH 1 BODY[HEADER.FIELDS (\"\")]\r\n",
	  "BAD A1 Invalid header field name|"),
	C("A1 FETCH 1 BODY[TEXT\r\n", "BAD A1 Missing ']' after section|"),
	C("A1 FETCH\r\n", "BAD A1 Missing sequence set|"),
	C("A1 FETCH 1\r\n", "BAD A1 Missing fetch attributes|"),
	C("A1 FETCH * FLAGS\r\n", "OK A1 FETCH * (FLAGS)|"),
	C("A1 FETCH 0 FLAGS\r\n",
	  "BAD A1 Invalid sequence set: 0 is not a valid number|"),
	C("A1 FETCH 1:0 FLAGS\r\n",
	  "BAD A1 Invalid sequence set: 0 is not a valid number|"),
	C("A1 FETCH 01 FLAGS\r\n",
	  "BAD A1 Invalid sequence set: 0 is not a valid number|"),
	C("A1 FETCH 5:3,1,2,* FLAGS\r\n", "OK A1 FETCH 1:5,* (FLAGS)|"),
	C("A1 FETCH 7,*:3,9 FLAGS\r\n", "OK A1 FETCH 3:* (FLAGS)|"),
	C("A1 FETCH 1,,2 FLAGS\r\n",
	  "BAD A1 Invalid sequence set: expected a number|"),
	C("A1 FETCH 1: FLAGS\r\n",
	  "BAD A1 Invalid sequence set: expected a number|"),
	C("A1 FETCH 4294967295 FLAGS\r\n", "OK A1 FETCH 4294967295 (FLAGS)|"),
	C("A1 FETCH 4294967296 FLAGS\r\n",
	  "BAD A1 Invalid sequence set: number too large|"),
	C("A1 FETCH 1a FLAGS\r\n", "BAD A1 Invalid sequence set|"),
	C("A1 FETCH 3:1 (UID FLAGS)\r\n", "OK A1 FETCH 1:3 (UID FLAGS)|"),

	/* STORE, COPY, MOVE */
	C("A1 STORE 1 +FLAGS (\\Seen)\r\n", "OK A1 STORE 1 +FLAGS (\\Seen)|"),
	C("A1 STORE 1:3 -FLAGS.SILENT \\Deleted \\seen\r\n",
	  "OK A1 STORE 1:3 -FLAGS.SILENT (\\Seen \\Deleted)|"),
	C("A1 STORE 1 FLAGS ()\r\n", "OK A1 STORE 1 FLAGS ()|"),
	C("A1 STORE 1 flags.silent (foo $bar \\ANSWERED \\Flagged)\r\n",
	  "OK A1 STORE 1 FLAGS.SILENT (\\Answered \\Flagged foo $bar)|"),
	C("A1 STORE 1 +FLAGS (\\Recent)\r\n",
	  "BAD A1 The \\Recent flag cannot be set|"),
	C("A1 STORE 1 +FLAGS (\\Foo)\r\n", "BAD A1 Invalid system flag|"),
	C("A1 STORE 1 +FLAGZ (\\Seen)\r\n",
	  "BAD A1 Invalid store item: expected [+|-]FLAGS[.SILENT]|"),
	C("A1 STORE 1 +FLAGS\r\n", "BAD A1 Missing flags|"),
	C("A1 STORE 1 +FLAGS (\\Seen\r\n",
	  "BAD A1 Missing ')' after flag list|"),
	C("A1 STORE 1 +FLAGS (\\)\r\n", "BAD A1 Invalid flag|"),
	C("A1 STORE 1 +FLAGS ((\\Seen))\r\n", "BAD A1 Invalid flag|"),
	C("A1 UID STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n",
	  "OK A1 UID STORE 1:* +FLAGS.SILENT (\\Deleted)|"),
	C("A1 COPY 1:3 Trash\r\n", "OK A1 COPY 1:3 \"Trash\"|"),
	C("A1 UID MOVE 5 inbox\r\n", "OK A1 UID MOVE 5 \"INBOX\"|"),
	C("A1 MOVE 1\r\n", "BAD A1 Missing mailbox name|"),
	C("A1 COPY Trash\r\n",
	  "BAD A1 Invalid sequence set: expected a number|"),

	/* AUTHENTICATE, ID, ENABLE */
	C("A1 AUTHENTICATE PLAIN\r\n", "OK A1 AUTHENTICATE PLAIN|"),
	C("A1 AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n",
	  "OK A1 AUTHENTICATE PLAIN <16 bytes>|"),
	C("A1 AUTHENTICATE PLAIN =\r\n", "OK A1 AUTHENTICATE PLAIN <1 bytes>|"),
	C("A1 AUTHENTICATE PLAIN abc\r\n",
	  "BAD A1 Invalid base64 in initial response|"),
	C("A1 AUTHENTICATE PLAIN ab=c\r\n",
	  "BAD A1 Invalid base64 in initial response|"),
	C("A1 AUTHENTICATE\r\n", "BAD A1 Missing authentication mechanism|"),
	C("A1 ID NIL\r\n", "OK A1 ID NIL|"),
	C("A1 ID (\"name\" \"mutt\" \"version\" NIL)\r\n",
	  "OK A1 ID (\"name\" \"mutt\" \"version\" NIL)|"),
	C("A1 ID ()\r\n", "OK A1 ID ()|"),
	C("A1 ID (name mutt)\r\n",
	  "BAD A1 Invalid ID field: expected a quoted string or literal|"),
	C("A1 ID (\"name\")\r\n", "BAD A1 Expected a space before ID value|"),
	C("A1 ID\r\n", "BAD A1 Missing ID parameters|"),
	C("A1 ENABLE CONDSTORE UTF8=ACCEPT\r\n",
	  "OK A1 ENABLE CONDSTORE UTF8=ACCEPT|"),
	C("A1 ENABLE\r\n", "BAD A1 Missing capability|"),

	/* pipelining with literals and errors */
	C("A1 LOGIN {1+}\r\na b\r\nA2 SELECT INBOX\r\n",
	  "OK A1 LOGIN \"a\" <1 bytes>|OK A2 SELECT \"INBOX\"|"),
	C("A1 SELECT \"x\r\nA2 LOGIN {1}\r\na b\r\nA3 NOOP",
	  "BAD A1 Unterminated quoted string|+1|"
	  "OK A2 LOGIN \"a\" <1 bytes>|MORE|"),
};

/* Feeds in, chunk bytes at a time (0: all at once); writes the transcript. */
static void run(const char *in, size_t len, size_t chunk,
		const struct imap_parser_limits *limits, struct buf *out)
{
	struct imap_parser *p = imap_parser_new(limits);
	struct imap_command *cmd;
	enum imap_parse_result r;
	size_t off = 0, n, done, used;
	const char *msg, *tag;
	bool fatal = false;

	buf_reset(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	while (off < len && !fatal) {
		n = chunk == 0 || len - off < chunk ? len - off : chunk;
		for (done = 0; done < n && !fatal; done += used) {
			r = imap_parser_feed(p, in + off + done, n - done,
					     &used);
			CU_ASSERT(used <= n - done);
			switch (r) {
			case IMAP_PARSE_COMPLETE:
				cmd = imap_parser_take_command(p);
				CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
				buf_append_str(out, "OK ");
				imap_command_dump(cmd, out);
				buf_append_str(out, "|");
				imap_command_free(&cmd);
				CU_ASSERT_PTR_NULL(cmd);
				break;
			case IMAP_PARSE_NEED_CONTINUATION:
				buf_printf(out, "+%llu|", (unsigned long long)
					   imap_parser_continuation_size(p));
				break;
			case IMAP_PARSE_ERROR:
				msg = imap_parser_get_error(p, &tag, &fatal);
				buf_printf(out, "%s %s %s|",
					   fatal ? "FATAL" : "BAD",
					   tag == NULL ? "*" : tag, msg);
				break;
			case IMAP_PARSE_NEED_MORE:
				CU_ASSERT_EQUAL(used, n - done);
				break;
			}
		}
		off += n;
	}
	if (fatal) {
		/* A fatal error sticks. */
		CU_ASSERT_EQUAL(imap_parser_feed(p, "A9 NOOP\r\n", 9, &used),
				IMAP_PARSE_ERROR);
		CU_ASSERT_EQUAL(used, 0);
	} else if (imap_parser_in_command(p)) {
		buf_append_str(out, "MORE|");
	}
	buf_cstr(out);
	imap_parser_free(&p);
	CU_ASSERT_PTR_NULL(p);
}

static void show(const char *in, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 200; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch >= 0x20 && ch < 0x7f)
			putchar(ch);
		else
			printf("\\x%02x", ch);
	}
	if (len > 200)
		printf("... (%zu bytes)", len);
}

static void check_case(const char *in, size_t len, const char *want,
		       const struct imap_parser_limits *limits)
{
	static const size_t chunks[] = { 0, 1, 3 };
	struct buf out = BUF_INIT;
	size_t i;

	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		run(in, len, chunks[i], limits, &out);
		CU_ASSERT_STRING_EQUAL((char *)out.data, want);
		if (strcmp((char *)out.data, want) != 0) {
			printf("\n  input: ");
			show(in, len);
			printf("\n  chunk: %zu\n  got:   %s\n  want:  %s\n",
			       chunks[i], (char *)out.data, want);
		}
	}
	buf_free(&out);
}

#define CHECK(in, want, limits) check_case(in, sizeof(in) - 1, want, limits)

static void test_table(void)
{
	size_t i, n = sizeof(cases) / sizeof(cases[0]);

	CU_ASSERT(n >= 150);
	for (i = 0; i < n; i++)
		check_case(cases[i].in, cases[i].len, cases[i].want, NULL);
}

/*
 * Random damage to every table input (flipped, inserted, deleted bytes
 * drawn from the characters that matter to the grammar) must still give
 * the same transcript whole, byte by byte and 7 bytes at a time.
 */
static void test_mutations(void)
{
	static const char alphabet[] = "{}()[]<>\"\\ \r\n+*:,.0123456789"
				       "AZaz\0\200\377";
	struct buf mut = BUF_INIT, a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
	uint32_t seed = 12345;
	size_t i, k, pos, n = sizeof(cases) / sizeof(cases[0]);
	int round;

	for (i = 0; i < n; i++) {
		for (round = 0; round < 20; round++) {
			buf_reset(&mut);
			buf_append(&mut, cases[i].in, cases[i].len);
			for (k = 0; k < 3 && mut.len > 0; k++) {
				seed = seed * 1103515245U + 12345U;
				pos = (seed >> 8) % mut.len;
				seed = seed * 1103515245U + 12345U;
				unsigned char ch = (unsigned char)alphabet[
					(seed >> 8) % (sizeof(alphabet) - 1)];
				switch ((seed >> 20) % 3) {
				case 0:
					mut.data[pos] = ch;
					break;
				case 1:
					buf_append(&mut, "", 1);
					memmove(mut.data + pos + 1,
						mut.data + pos,
						mut.len - pos - 1);
					mut.data[pos] = ch;
					break;
				default:
					memmove(mut.data + pos,
						mut.data + pos + 1,
						mut.len - pos - 1);
					mut.len--;
					break;
				}
			}
			run((char *)mut.data, mut.len, 0, NULL, &a);
			run((char *)mut.data, mut.len, 1, NULL, &b);
			run((char *)mut.data, mut.len, 7, NULL, &c);
			CU_ASSERT_STRING_EQUAL((char *)a.data, (char *)b.data);
			CU_ASSERT_STRING_EQUAL((char *)a.data, (char *)c.data);
			if (strcmp((char *)a.data, (char *)b.data) != 0 ||
			    strcmp((char *)a.data, (char *)c.data) != 0) {
				printf("\n  input: ");
				show((char *)mut.data, mut.len);
				printf("\n  whole: %s\n  bytes: %s\n"
				       "  by 7:  %s\n", (char *)a.data,
				       (char *)b.data, (char *)c.data);
			}
		}
	}
	buf_free(&mut);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
}

/* Parses one complete command, which must be valid. */
static struct imap_command *parse_one(const char *in)
{
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_command *cmd = NULL;
	size_t len = strlen(in), off = 0, used;
	enum imap_parse_result r;

	do {
		r = imap_parser_feed(p, in + off, len - off, &used);
		off += used;
	} while (r == IMAP_PARSE_NEED_CONTINUATION);
	CU_ASSERT_EQUAL(r, IMAP_PARSE_COMPLETE);
	if (r == IMAP_PARSE_COMPLETE)
		cmd = imap_parser_take_command(p);
	CU_ASSERT_EQUAL(off, len);
	imap_parser_free(&p);
	return cmd;
}

static void test_seqset(void)
{
	struct imap_command *cmd;
	const struct imap_seqset *set;

	cmd = parse_one("A1 FETCH 10:12,3,5:*,20 FLAGS\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	set = &cmd->u.fetch.set;
	CU_ASSERT_EQUAL(set->count, 2);
	CU_ASSERT_EQUAL(set->ranges[0].lo, 3);
	CU_ASSERT_EQUAL(set->ranges[0].hi, 3);
	CU_ASSERT_EQUAL(set->ranges[1].lo, 5);
	CU_ASSERT_EQUAL(set->ranges[1].hi, IMAP_SEQ_STAR);
	CU_ASSERT_TRUE(imap_seqset_contains(set, 3, 100));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 4, 100));
	CU_ASSERT_TRUE(imap_seqset_contains(set, 100, 100));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 101, 100));
	/* "5:*" with 4 messages is 4:5, so it holds message 4. */
	CU_ASSERT_TRUE(imap_seqset_contains(set, 4, 4));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 1, 0));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 0, 10));
	imap_command_free(&cmd);

	cmd = parse_one("A1 UID FETCH 1,3,5,7,4294967295 UID\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	set = &cmd->u.fetch.set;
	CU_ASSERT_EQUAL(set->count, 5);
	CU_ASSERT_TRUE(imap_seqset_contains(set, 7, UINT32_MAX));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 6, UINT32_MAX));
	CU_ASSERT_TRUE(imap_seqset_contains(set, UINT32_MAX, UINT32_MAX));
	CU_ASSERT_TRUE(cmd->uid);
	imap_command_free(&cmd);

	cmd = parse_one("A1 FETCH * FLAGS\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	set = &cmd->u.fetch.set;
	CU_ASSERT_EQUAL(set->count, 1);
	CU_ASSERT_EQUAL(set->ranges[0].lo, IMAP_SEQ_STAR);
	CU_ASSERT_TRUE(imap_seqset_contains(set, 9, 9));
	CU_ASSERT_FALSE(imap_seqset_contains(set, 8, 9));
	imap_command_free(&cmd);

	/* Adjacent and overlapping ranges merge. */
	cmd = parse_one("A1 STORE 1:2,3,4:6,5 FLAGS ()\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->u.store.set.count, 1);
	CU_ASSERT_EQUAL(cmd->u.store.set.ranges[0].hi, 6);
	imap_command_free(&cmd);
}

static void test_date_time(void)
{
	static const struct {
		const char *date;
		long long t;
	} dates[] = {
		{ "01-Jan-1970 00:00:00 +0000", 0 },
		{ " 1-Jan-1970 01:00:00 +0100", 0 },
		{ "31-Dec-1969 23:00:00 -0100", 0 },
		{ "01-Jan-2000 00:00:00 +0000", 946684800 },
		{ "29-Feb-2000 12:34:56 +0000", 951827696 },
		{ "01-Mar-2100 00:00:00 +0000", 4107542400LL },
		{ "17-Jul-1996 02:44:25 -0700", 837596665 },
	};
	struct imap_command *cmd;
	char line[128];
	size_t i;

	for (i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		snprintf(line, sizeof(line), "A1 APPEND x \"%s\" {1+}\r\nz\r\n",
			 dates[i].date);
		cmd = parse_one(line);
		CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
		CU_ASSERT_TRUE(cmd->u.append.has_date);
		CU_ASSERT_EQUAL((long long)cmd->u.append.date, dates[i].t);
		if ((long long)cmd->u.append.date != dates[i].t)
			printf("\n  %s: got %lld\n", dates[i].date,
			       (long long)cmd->u.append.date);
		imap_command_free(&cmd);
	}
}

static void test_fetch_atts(void)
{
	struct imap_command *cmd;
	const struct imap_fetch_att *a;

	cmd = parse_one("A1 UID FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS.NOT "
			"(Subject \"X-A\")]<5.10> FLAGS BODY[])\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->id, IMAP_CMD_FETCH);
	CU_ASSERT_EQUAL_FATAL(cmd->u.fetch.count, 3);
	a = &cmd->u.fetch.atts[0];
	CU_ASSERT_EQUAL(a->type, IMAP_FETCH_BODY_SECTION);
	CU_ASSERT_TRUE(a->peek);
	CU_ASSERT_EQUAL_FATAL(a->part_count, 2);
	CU_ASSERT_EQUAL(a->parts[0], 1);
	CU_ASSERT_EQUAL(a->parts[1], 2);
	CU_ASSERT_EQUAL(a->text, IMAP_SECTION_HEADER_FIELDS_NOT);
	CU_ASSERT_EQUAL_FATAL(a->field_count, 2);
	CU_ASSERT_STRING_EQUAL(a->fields[0].data, "Subject");
	CU_ASSERT_STRING_EQUAL(a->fields[1].data, "X-A");
	CU_ASSERT_TRUE(a->partial);
	CU_ASSERT_EQUAL(a->partial_offset, 5);
	CU_ASSERT_EQUAL(a->partial_length, 10);
	CU_ASSERT_EQUAL(cmd->u.fetch.atts[1].type, IMAP_FETCH_FLAGS);
	a = &cmd->u.fetch.atts[2];
	CU_ASSERT_EQUAL(a->type, IMAP_FETCH_BODY_SECTION);
	CU_ASSERT_FALSE(a->peek);
	CU_ASSERT_EQUAL(a->part_count, 0);
	CU_ASSERT_EQUAL(a->text, IMAP_SECTION_ALL);
	CU_ASSERT_FALSE(a->partial);
	imap_command_free(&cmd);

	cmd = parse_one("A1 FETCH 1 FULL\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL_FATAL(cmd->u.fetch.count, 5);
	CU_ASSERT_EQUAL(cmd->u.fetch.atts[4].type, IMAP_FETCH_BODY);
	imap_command_free(&cmd);
}

static void test_search_keys(void)
{
	struct imap_command *cmd;
	const struct imap_search_key *k, *c;

	cmd = parse_one("A1 SEARCH CHARSET utf-8 OR (FROM {3+}\r\nbob "
			"SINCE 2-Jan-1970) NOT LARGER 10 HEADER X-Y \"\"\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_TRUE(cmd->u.search.has_charset);
	CU_ASSERT_STRING_EQUAL(cmd->u.search.charset.data, "utf-8");
	k = cmd->u.search.keys;
	CU_ASSERT_EQUAL(k->type, IMAP_SEARCH_AND);
	k = k->children;
	CU_ASSERT_EQUAL_FATAL(k->type, IMAP_SEARCH_OR);
	c = k->children;
	CU_ASSERT_EQUAL_FATAL(c->type, IMAP_SEARCH_AND);
	CU_ASSERT_EQUAL(c->children->type, IMAP_SEARCH_FROM);
	CU_ASSERT_EQUAL(c->children->str.len, 3);
	CU_ASSERT_STRING_EQUAL(c->children->str.data, "bob");
	CU_ASSERT_EQUAL(c->children->next->type, IMAP_SEARCH_SINCE);
	CU_ASSERT_EQUAL((long long)c->children->next->date, 86400);
	CU_ASSERT_PTR_NULL(c->children->next->next);
	c = c->next;
	CU_ASSERT_EQUAL_FATAL(c->type, IMAP_SEARCH_NOT);
	CU_ASSERT_EQUAL(c->children->type, IMAP_SEARCH_LARGER);
	CU_ASSERT_EQUAL(c->children->number, 10);
	CU_ASSERT_PTR_NULL(c->next);
	k = k->next;
	CU_ASSERT_EQUAL_FATAL(k->type, IMAP_SEARCH_HEADER);
	CU_ASSERT_STRING_EQUAL(k->field.data, "X-Y");
	CU_ASSERT_EQUAL(k->str.len, 0);
	CU_ASSERT_PTR_NULL(k->next);
	imap_command_free(&cmd);
}

static void test_strings_and_flags(void)
{
	static const char login[] =
		"A1 LOGIN {5}\r\na\0b\"c \"p\\\\w\\\"\"\r\n";
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_command *cmd;
	size_t used, off = 0;

	CU_ASSERT_EQUAL(imap_parser_feed(p, login, sizeof(login) - 1, &used),
			IMAP_PARSE_NEED_CONTINUATION);
	off += used;
	CU_ASSERT_EQUAL(imap_parser_feed(p, login + off,
					 sizeof(login) - 1 - off, &used),
			IMAP_PARSE_COMPLETE);
	CU_ASSERT_EQUAL(off + used, sizeof(login) - 1);
	cmd = imap_parser_take_command(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->u.login.user.len, 5);
	CU_ASSERT_EQUAL(memcmp(cmd->u.login.user.data, "a\0b\"c", 6), 0);
	CU_ASSERT_FALSE(imap_string_is_text(&cmd->u.login.user));
	CU_ASSERT_STRING_EQUAL(cmd->u.login.password.data, "p\\w\"");
	CU_ASSERT_TRUE(imap_string_is_text(&cmd->u.login.password));
	imap_command_free(&cmd);
	imap_parser_free(&p);

	cmd = parse_one("A1 STORE 1 +FLAGS (\\Seen kw \\Deleted kw)\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->u.store.mode, IMAP_STORE_ADD);
	CU_ASSERT_FALSE(cmd->u.store.silent);
	CU_ASSERT_EQUAL(cmd->u.store.flags.system,
			IMAP_FLAG_SEEN | IMAP_FLAG_DELETED);
	CU_ASSERT_EQUAL_FATAL(cmd->u.store.flags.keyword_count, 2);
	CU_ASSERT_STRING_EQUAL(cmd->u.store.flags.keywords[1].data, "kw");
	imap_command_free(&cmd);

	cmd = parse_one("A1 ID (\"os\" {5+}\r\nLinux \"x\" NIL)\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL_FATAL(cmd->u.id.count, 2);
	CU_ASSERT_STRING_EQUAL(cmd->u.id.values[0].data, "Linux");
	CU_ASSERT_PTR_NULL(cmd->u.id.values[1].data);
	imap_command_free(&cmd);
}

/* A message larger than the line limit goes through APPEND, in pieces, and
 * is handed over intact (NULs included), NUL-terminated. */
static void test_append_big(void)
{
	const size_t size = 200000;
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_command *cmd;
	char head[64];
	char *msg = malloc(size);
	size_t i, used, off;

	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	for (i = 0; i < size; i++)
		msg[i] = (char)(i * 7);
	snprintf(head, sizeof(head), "A1 APPEND INBOX {%zu}\r\n", size);
	CU_ASSERT_EQUAL(imap_parser_feed(p, head, strlen(head), &used),
			IMAP_PARSE_NEED_CONTINUATION);
	CU_ASSERT_EQUAL(used, strlen(head));
	CU_ASSERT_EQUAL(imap_parser_continuation_size(p), size);
	for (off = 0; off < size; off += used) {
		CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, msg + off,
					size - off < 4096 ? size - off : 4096,
					&used), IMAP_PARSE_NEED_MORE);
	}
	CU_ASSERT_EQUAL(imap_parser_feed(p, "\r\nA2 NOOP\r\n", 11, &used),
			IMAP_PARSE_COMPLETE);
	CU_ASSERT_EQUAL(used, 2);
	cmd = imap_parser_take_command(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->u.append.message.len, size);
	CU_ASSERT_EQUAL(memcmp(cmd->u.append.message.data, msg, size), 0);
	CU_ASSERT_EQUAL(cmd->u.append.message.data[size], '\0');
	CU_ASSERT_STRING_EQUAL(cmd->u.append.mailbox.data, "INBOX");
	CU_ASSERT_FALSE(cmd->u.append.has_flags);
	/* The next command parses while the APPEND is still alive. */
	CU_ASSERT_EQUAL(imap_parser_feed(p, "A2 NOOP\r\n", 9, &used),
			IMAP_PARSE_COMPLETE);
	imap_command_free(&cmd);
	cmd = imap_parser_take_command(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_EQUAL(cmd->id, IMAP_CMD_NOOP);
	imap_command_free(&cmd);
	imap_parser_free(&p);
	free(msg);
}

static void test_limits(void)
{
	struct imap_parser_limits lim;
	struct buf in = BUF_INIT;
	size_t i;

	/* A nesting bomb is refused early and does not stop the next
	 * command. */
	buf_append_str(&in, "A1 SEARCH ");
	for (i = 0; i < 10000; i++)
		buf_append_str(&in, "(");
	buf_append_str(&in, "\r\nA2 NOOP\r\n");
	check_case((char *)in.data, in.len,
		   "BAD A1 Too deep nesting|OK A2 NOOP|", NULL);

	/* So is a bomb made of NOT, which nests without parentheses. */
	buf_reset(&in);
	buf_append_str(&in, "A1 SEARCH");
	for (i = 0; i < 5000; i++)
		buf_append_str(&in, " NOT");
	buf_append_str(&in, " SEEN\r\nA2 NOOP\r\n");
	check_case((char *)in.data, in.len,
		   "BAD A1 Search keys nested too deeply|OK A2 NOOP|", NULL);

	/* A line beyond max_line_size is fatal. */
	buf_reset(&in);
	buf_append_str(&in, "A1 SELECT ");
	for (i = 0; i < 70000; i++)
		buf_append_str(&in, "a");
	buf_append_str(&in, "\r\n");
	check_case((char *)in.data, in.len,
		   "FATAL A1 Command line too long|", NULL);

	/* So is skipping such a line after an error. */
	buf_reset(&in);
	buf_append_str(&in, "A1 FOO ");
	for (i = 0; i < 70000; i++)
		buf_append_str(&in, "a");
	check_case((char *)in.data, in.len,
		   "BAD A1 Unknown command|FATAL A1 Command line too long|",
		   NULL);

	memset(&lim, 0, sizeof(lim));
	lim.max_line_size = 40;
	lim.max_literal_size = 10;
	lim.max_depth = 2;
	lim.max_args = 5;
	lim.max_search_depth = 3;
	CHECK("A1 LOGIN {10}\r\n0123456789 x\r\n",
		   "+10|OK A1 LOGIN \"0123456789\" <1 bytes>|", &lim);
	CHECK("A1 LOGIN {30}\r\nA2 NOOP\r\n",
		   "BAD A1 Literal too large|OK A2 NOOP|", &lim);
	CHECK("A1 APPEND x {10}\r\n0123456789\r\n",
		   "+10|OK A1 APPEND \"x\" {10}|", &lim);
	CHECK("A1 APPEND x {11}\r\nA2 NOOP\r\n",
		   "BAD A1 Literal too large|OK A2 NOOP|", &lim);
	CHECK("A1 APPEND x {11+}\r\n", "FATAL A1 Literal too large|",
		   &lim);
	CHECK("A1 SEARCH ((SEEN))\r\n", "OK A1 SEARCH ((SEEN))|", &lim);
	CHECK("A1 SEARCH (((SEEN)))\r\n", "BAD A1 Too deep nesting|",
		   &lim);
	CHECK("A1 SEARCH NOT NOT SEEN\r\n",
		   "OK A1 SEARCH NOT NOT SEEN|", &lim);
	CHECK("A1 SEARCH NOT NOT NOT SEEN\r\n",
		   "BAD A1 Search keys nested too deeply|", &lim);
	CHECK("A1 FETCH 1 (UID FLAGS ENVELOPE)\r\n",
		   "OK A1 FETCH 1 (UID FLAGS ENVELOPE)|", &lim);
	CHECK("A1 FETCH 1 (UID FLAGS ENVELOPE BODY)\r\n",
		   "BAD A1 Too many arguments|", &lim);
	CHECK("A1 SELECT 0123456789012345678901234567890123456789\r\n",
		   "FATAL A1 Command line too long|", &lim);
	/* An oversized {n+} while skipping a bad command is fatal too. */
	CHECK("A1 FOO {41+}\r\n", "BAD A1 Unknown command|"
		   "FATAL A1 Literal too large|", &lim);
	buf_free(&in);
}

/* Two commands in one feed: the first completes having consumed exactly
 * its own bytes. */
static void test_pipelining(void)
{
	static const char in[] = "A1 NOOP\r\nA2 LOGIN {1+}\r\nx y\r\nA3";
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_command *cmd;
	size_t used, off = 0;

	CU_ASSERT_EQUAL(imap_parser_feed(p, in, sizeof(in) - 1, &used),
			IMAP_PARSE_COMPLETE);
	CU_ASSERT_EQUAL(used, 9);
	off += used;
	CU_ASSERT_FALSE(imap_parser_in_command(p));
	/* Not taken: freed by the next feed. */
	CU_ASSERT_EQUAL(imap_parser_feed(p, in + off, sizeof(in) - 1 - off,
					 &used), IMAP_PARSE_COMPLETE);
	CU_ASSERT_EQUAL(used, 20);
	off += used;
	cmd = imap_parser_take_command(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cmd);
	CU_ASSERT_STRING_EQUAL(cmd->tag, "A2");
	CU_ASSERT_EQUAL(cmd->id, IMAP_CMD_LOGIN);
	CU_ASSERT_PTR_NULL(imap_parser_take_command(p));
	imap_command_free(&cmd);
	CU_ASSERT_EQUAL(imap_parser_feed(p, in + off, sizeof(in) - 1 - off,
					 &used), IMAP_PARSE_NEED_MORE);
	CU_ASSERT_EQUAL(used, 2);
	CU_ASSERT_TRUE(imap_parser_in_command(p));
	imap_parser_free(&p);
}

/* Refusing a literal instead of sending "+": the client will not send it,
 * so the next bytes are a new command. */
static void test_reject_continuation(void)
{
	static const char in[] = "A7 APPEND Foo {3}\r\n";
	struct imap_parser *p = imap_parser_new(NULL);
	enum imap_cmd_id id;
	const char *tag;
	size_t used;

	CU_ASSERT_EQUAL(imap_parser_feed(p, in, sizeof(in) - 1, &used),
			IMAP_PARSE_NEED_CONTINUATION);
	imap_parser_get_pending(p, &tag, &id);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tag);
	CU_ASSERT_STRING_EQUAL(tag, "A7");
	CU_ASSERT_EQUAL(id, IMAP_CMD_APPEND);
	imap_parser_reject_continuation(p);
	CU_ASSERT_FALSE(imap_parser_in_command(p));
	CU_ASSERT_EQUAL(imap_parser_feed(p, "A8 NOOP\r\n", 9, &used),
			IMAP_PARSE_COMPLETE);
	imap_parser_get_pending(p, &tag, &id);
	CU_ASSERT_PTR_NULL(tag);
	imap_parser_free(&p);
}

static void test_names(void)
{
	CU_ASSERT_STRING_EQUAL(imap_cmd_name(IMAP_CMD_FETCH), "FETCH");
	CU_ASSERT_STRING_EQUAL(imap_cmd_name(IMAP_CMD_ENABLE), "ENABLE");
	CU_ASSERT_STRING_EQUAL(imap_cmd_name(IMAP_CMD_COUNT), "?");
}

static CU_TestInfo tests[] = {
	{ "table of inputs, whole and byte by byte", test_table },
	{ "mutated inputs, split three ways", test_mutations },
	{ "sequence sets", test_seqset },
	{ "date-time to UTC", test_date_time },
	{ "FETCH attributes", test_fetch_atts },
	{ "SEARCH keys", test_search_keys },
	{ "strings, literals and flags", test_strings_and_flags },
	{ "APPEND larger than a line", test_append_big },
	{ "limits", test_limits },
	{ "pipelining", test_pipelining },
	{ "refusing a continuation", test_reject_continuation },
	{ "command names", test_names },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("imap_parser", tests);
}
