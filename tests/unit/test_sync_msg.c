/*
 * test_sync_msg.c - replication frames: exact bytes, round trips of every
 * type, batching, and a parser that refuses truncated, corrupted, forged
 * and garbage input without crashing, whether the bytes come all at once
 * or one at a time (run it under ASan too).
 */
#include "autoconfig.h"

#include "sync_msg.h"
#include "crc32c.h"
#include "cu_run.h"

#include <stdlib.h>
#include <string.h>

static const char *err;

/* A clock from "a=1,b=2".  Test input only. */
static struct vclock *vc(const char *spec)
{
	struct vclock *c = vclock_new();
	char *copy = strdup(spec), *save = NULL;

	CU_ASSERT_FATAL(c != NULL && copy != NULL);
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		CU_ASSERT_FATAL(eq != NULL);
		*eq = '\0';
		CU_ASSERT_FATAL(vclock_set(c, tok, strtoull(eq + 1, NULL, 10),
					   &err) == 0);
	}
	free(copy);
	return c;
}

/* Re-encodes a parsed frame with the public encoders. */
static void encode_frame(const struct sync_msg_frame *f, struct buf *out)
{
	struct sync_msg_batch b;

	switch (f->type) {
	case SYNC_MSG_HELLO:
		CU_ASSERT_FATAL(sync_msg_encode_hello(out, f->sender, f->lsn,
						      f->clock, &err) == 0);
		break;
	case SYNC_MSG_ACK:
		CU_ASSERT_FATAL(sync_msg_encode_ack(out, f->lsn, &err) == 0);
		break;
	case SYNC_MSG_OPS:
		CU_ASSERT_FATAL(sync_msg_batch_begin(&b, out, f->sender,
						     SYNC_MSG_PAYLOAD_MAX,
						     &err) == 0);
		for (size_t i = 0; i < f->entry_count; i++) {
			const struct sync_msg_entry *e = &f->entries[i];

			CU_ASSERT_FATAL(sync_msg_batch_add(&b, e->lsn,
							   e->clock,
							   e->payload,
							   e->payload_len,
							   &err) == 1);
		}
		CU_ASSERT_FATAL(sync_msg_batch_finish(&b, &err) == 0);
		break;
	}
}

/* Parses exactly one frame filling data, and checks that it re-encodes
 * to the same bytes. */
static void parse_one(const struct buf *in, struct sync_msg_frame *f)
{
	struct buf again = BUF_INIT;
	size_t used = 0;

	err = NULL;
	CU_ASSERT_EQUAL_FATAL(sync_msg_parse(in->data, in->len, f, &used,
					     &err), 1);
	CU_ASSERT_EQUAL(used, in->len);
	encode_frame(f, &again);
	CU_ASSERT_EQUAL_FATAL(again.len, in->len);
	CU_ASSERT(memcmp(again.data, in->data, in->len) == 0);
	buf_free(&again);
}

/* A frame around an arbitrary payload, with a correct checksum, so that
 * the payload decoder itself is what gets tested. */
static void forge(struct buf *out, uint8_t type, const void *payload,
		  size_t len)
{
	buf_reset(out);
	CU_ASSERT_FATAL(buf_put_u32(out, SYNC_MSG_MAGIC) == 0);
	CU_ASSERT_FATAL(buf_put_u8(out, SYNC_MSG_VERSION) == 0);
	CU_ASSERT_FATAL(buf_put_u8(out, type) == 0);
	CU_ASSERT_FATAL(buf_put_u16(out, 0) == 0);
	CU_ASSERT_FATAL(buf_put_u32(out, (uint32_t)len) == 0);
	CU_ASSERT_FATAL(buf_append(out, payload, len) == 0);
	CU_ASSERT_FATAL(buf_put_u32(out, crc32c(out->data, out->len)) == 0);
}

static void test_hello(void)
{
	static const unsigned char want[] = {
		'P', 'S', 'Y', '1', 1, SYNC_MSG_HELLO, 0, 0, 0, 0, 0, 34,
		7, 'w', 'o', 'r', 'k', 'e', 'r', '1',
		0, 0, 0, 0, 0, 0, 0x01, 0x2c,
		0, 1, 7, 'w', 'o', 'r', 'k', 'e', 'r', '1',
		0, 0, 0, 0, 0, 0, 0, 9,
	};
	struct vclock *c = vc("worker1=9");
	struct buf b = BUF_INIT;
	struct sync_msg_frame f;
	size_t flen;

	CU_ASSERT_EQUAL(sync_msg_encode_hello(&b, "worker1", 300, c, &err),
			0);
	CU_ASSERT_EQUAL_FATAL(b.len, sizeof(want) + 4);
	CU_ASSERT(memcmp(b.data, want, sizeof(want)) == 0);
	CU_ASSERT_EQUAL(crc32c(b.data, sizeof(want)),
			(uint32_t)b.data[sizeof(want)] << 24 |
			(uint32_t)b.data[sizeof(want) + 1] << 16 |
			(uint32_t)b.data[sizeof(want) + 2] << 8 |
			b.data[sizeof(want) + 3]);
	CU_ASSERT_EQUAL(sync_msg_peek(b.data, 12, &flen, &err), 1);
	CU_ASSERT_EQUAL(flen, b.len);

	parse_one(&b, &f);
	CU_ASSERT_EQUAL(f.type, SYNC_MSG_HELLO);
	CU_ASSERT_STRING_EQUAL(f.sender, "worker1");
	CU_ASSERT_EQUAL(f.lsn, 300);
	CU_ASSERT_EQUAL(vclock_compare(f.clock, c), VCLOCK_EQUAL);
	CU_ASSERT_EQUAL(f.entry_count, 0);
	sync_msg_frame_clear(&f);
	CU_ASSERT_PTR_NULL(f.clock);

	/* Received nothing yet, empty clock. */
	vclock_free(&c);
	c = vclock_new();
	buf_reset(&b);
	CU_ASSERT_EQUAL(sync_msg_encode_hello(&b, "storage", 0, c, &err), 0);
	parse_one(&b, &f);
	CU_ASSERT_EQUAL(f.lsn, 0);
	CU_ASSERT_EQUAL(vclock_count(f.clock), 0);
	sync_msg_frame_clear(&f);

	/* Invalid names are refused and leave the buffer alone. */
	buf_reset(&b);
	CU_ASSERT_EQUAL(sync_msg_encode_hello(&b, "", 0, c, &err), -1);
	CU_ASSERT_EQUAL(sync_msg_encode_hello(&b, "a/b", 0, c, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "invalid sender name");
	CU_ASSERT_EQUAL(b.len, 0);
	vclock_free(&c);
	buf_free(&b);
}

static void test_ack(void)
{
	static const unsigned char want[] = {
		'P', 'S', 'Y', '1', 1, SYNC_MSG_ACK, 0, 0, 0, 0, 0, 8,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	struct buf b = BUF_INIT;
	struct sync_msg_frame f;

	CU_ASSERT_EQUAL(sync_msg_encode_ack(&b, 0x0102030405060708ull, &err),
			0);
	CU_ASSERT_EQUAL_FATAL(b.len, sizeof(want) + 4);
	CU_ASSERT(memcmp(b.data, want, sizeof(want)) == 0);
	parse_one(&b, &f);
	CU_ASSERT_EQUAL(f.type, SYNC_MSG_ACK);
	CU_ASSERT_EQUAL(f.lsn, 0x0102030405060708ull);
	CU_ASSERT_STRING_EQUAL(f.sender, "");
	sync_msg_frame_clear(&f);

	buf_reset(&b);
	CU_ASSERT_EQUAL(sync_msg_encode_ack(&b, UINT64_MAX, &err), 0);
	parse_one(&b, &f);
	CU_ASSERT_EQUAL(f.lsn, UINT64_MAX);
	sync_msg_frame_clear(&f);

	buf_reset(&b);
	CU_ASSERT_EQUAL(sync_msg_encode_ack(&b, 0, &err), -1);
	CU_ASSERT_EQUAL(b.len, 0);
	buf_free(&b);
}

static void test_ops(void)
{
	static const unsigned char binary[] = { 0, 1, 2, 0xff, 0, '\r', '\n' };
	struct vclock *c1 = vc("w=1"), *c2 = vc("s=4,w=2"), *c3 = vc("w=3");
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	struct sync_msg_frame f;
	size_t prefix;

	/* Frames are appended after what the buffer already holds. */
	CU_ASSERT_EQUAL(buf_append_str(&b, "xyz"), 0);
	prefix = b.len;
	CU_ASSERT_EQUAL(sync_msg_batch_begin(&batch, &b, "w", 0, &err), 0);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 5, c1, "A", 1, &err), 1);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 6, c2, binary,
					   sizeof(binary), &err), 1);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 90, c3, "third", 5, &err),
			1);
	CU_ASSERT_EQUAL(batch.count, 3);
	CU_ASSERT_EQUAL(batch.last_lsn, 90);
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&batch, &err), 0);
	CU_ASSERT(memcmp(b.data, "xyz", 3) == 0);

	{
		struct buf frame = BUF_INIT;

		CU_ASSERT_FATAL(buf_append(&frame, b.data + prefix,
					   b.len - prefix) == 0);
		parse_one(&frame, &f);
		CU_ASSERT_EQUAL(f.type, SYNC_MSG_OPS);
		CU_ASSERT_STRING_EQUAL(f.sender, "w");
		CU_ASSERT_PTR_NULL(f.clock);
		CU_ASSERT_EQUAL_FATAL(f.entry_count, 3);
		CU_ASSERT_EQUAL(f.entries[0].lsn, 5);
		CU_ASSERT_EQUAL(f.entries[1].lsn, 6);
		CU_ASSERT_EQUAL(f.entries[2].lsn, 90);
		CU_ASSERT_EQUAL(vclock_compare(f.entries[1].clock, c2),
				VCLOCK_EQUAL);
		CU_ASSERT_EQUAL(f.entries[1].payload_len, sizeof(binary));
		CU_ASSERT(memcmp(f.entries[1].payload, binary,
				 sizeof(binary)) == 0);
		/* Payloads are borrowed from the input, not copied. */
		CU_ASSERT(f.entries[2].payload > frame.data &&
			  f.entries[2].payload < frame.data + frame.len);
		sync_msg_frame_clear(&f);
		CU_ASSERT_PTR_NULL(f.entries);
		CU_ASSERT_EQUAL(f.entry_count, 0);
		buf_free(&frame);
	}
	vclock_free(&c1);
	vclock_free(&c2);
	vclock_free(&c3);
	buf_free(&b);
}

static void test_batch_errors(void)
{
	struct vclock *c = vc("w=1"), *other = vc("s=1");
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	size_t len;

	CU_ASSERT_EQUAL(sync_msg_batch_begin(&batch, &b, "bad name", 0, &err),
			-1);
	CU_ASSERT_EQUAL(b.len, 0);

	CU_ASSERT_EQUAL(sync_msg_batch_begin(&batch, &b, "w", 0, &err), 0);
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&batch, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "empty batch");
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 0, c, "x", 1, &err), -1);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 10, c, "x", 1, &err), 1);
	len = b.len;
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 10, c, "x", 1, &err), -1);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 9, c, "x", 1, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "LSNs of a batch must ascend from 1");
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 11, c, "", 0, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "empty operation");
	/* Refused on its length alone: the payload is never read. */
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 11, c, "x",
					   SYNC_MSG_OP_MAX + 1, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "operation too large to replicate");
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 11, other, "x", 1, &err),
			-1);
	CU_ASSERT_STRING_EQUAL(err,
			       "operation clock lacks the sender's entry");
	/* The failures changed nothing. */
	CU_ASSERT_EQUAL(b.len, len);
	CU_ASSERT_EQUAL(batch.count, 1);
	CU_ASSERT_EQUAL(batch.last_lsn, 10);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 11, c, "y", 1, &err), 1);
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&batch, &err), 0);

	/* Abort takes the unfinished frame back out. */
	len = b.len;
	CU_ASSERT_EQUAL(sync_msg_batch_begin(&batch, &b, "w", 0, &err), 0);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 12, c, "z", 1, &err), 1);
	sync_msg_batch_abort(&batch);
	CU_ASSERT_EQUAL(b.len, len);

	vclock_free(&c);
	vclock_free(&other);
	buf_free(&b);
}

/* Parses every frame of a stream; returns how many, checks all entries'
 * LSNs follow on from *next_lsn. */
static size_t parse_stream(const struct buf *b, uint64_t *next_lsn)
{
	size_t off = 0, frames = 0;

	while (off < b->len) {
		struct sync_msg_frame f;
		size_t used;

		CU_ASSERT_EQUAL_FATAL(sync_msg_parse(b->data + off,
						     b->len - off, &f, &used,
						     &err), 1);
		CU_ASSERT_EQUAL(f.type, SYNC_MSG_OPS);
		for (size_t i = 0; i < f.entry_count; i++)
			CU_ASSERT_EQUAL(f.entries[i].lsn, (*next_lsn)++);
		sync_msg_frame_clear(&f);
		off += used;
		frames++;
	}
	return frames;
}

/* A backlog split by the budget: every frame stays within it, except one
 * that holds a single larger operation. */
static void test_batch_budget(void)
{
	struct vclock *c = vclock_new();
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	unsigned char *big = calloc(1, 300000);
	size_t frames = 0, start = 0;
	uint64_t next = 1;

	CU_ASSERT_FATAL(big != NULL);
	memset(big, 'm', 300000);
	CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, &b, "w", 4096, &err) ==
			0);
	for (uint64_t lsn = 1; lsn <= 1000; lsn++) {
		size_t len = lsn == 500 ? 300000 : 100;
		int ret;

		CU_ASSERT_FATAL(vclock_increment(c, "w", NULL, &err) == 0);
		ret = sync_msg_batch_add(&batch, lsn, c, big, len, &err);
		if (ret == 0) {
			CU_ASSERT_FATAL(sync_msg_batch_finish(&batch, &err) ==
					0);
			/* Within budget unless it holds the big one. */
			CU_ASSERT(b.len - start <= 4096 + SYNC_MSG_OVERHEAD ||
				  batch.count == 1);
			frames++;
			start = b.len;
			CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, &b, "w",
							     4096, &err) == 0);
			ret = sync_msg_batch_add(&batch, lsn, c, big, len,
						 &err);
		}
		CU_ASSERT_EQUAL_FATAL(ret, 1);
	}
	CU_ASSERT_FATAL(sync_msg_batch_finish(&batch, &err) == 0);
	frames++;
	/* 1000 entries of about 118 bytes, 34 to a 4 KiB frame. */
	CU_ASSERT(frames >= 30 && frames <= 40);
	CU_ASSERT_EQUAL(parse_stream(&b, &next), frames);
	CU_ASSERT_EQUAL(next, 1001);
	free(big);
	vclock_free(&c);
	buf_free(&b);
}

/* The entry limit closes a frame even when the budget would not. */
static void test_batch_count_limit(void)
{
	struct vclock *c = vc("w=1");
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	uint64_t lsn, next = 1;

	CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, &b, "w",
					     SYNC_MSG_PAYLOAD_MAX, &err) == 0);
	for (lsn = 1; lsn <= SYNC_MSG_BATCH_MAX; lsn++)
		CU_ASSERT_EQUAL_FATAL(sync_msg_batch_add(&batch, lsn, c, "o", 1,
							 &err), 1);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, lsn, c, "o", 1, &err), 0);
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&batch, &err), 0);
	CU_ASSERT_EQUAL(parse_stream(&b, &next), 1);
	CU_ASSERT_EQUAL(next, SYNC_MSG_BATCH_MAX + 1);
	vclock_free(&c);
	buf_free(&b);
}

/* 10,000 small operations, each with its own clock, in one frame. */
static void test_batch_10000(void)
{
	struct vclock *c = vclock_new();
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	struct sync_msg_frame f;
	char payload[32];

	CU_ASSERT_FATAL(vclock_set(c, "storage", 3, &err) == 0);
	CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, &b, "worker-1",
					     SYNC_MSG_PAYLOAD_MAX, &err) == 0);
	for (unsigned i = 1; i <= 10000; i++) {
		int n = snprintf(payload, sizeof(payload), "op %u", i);

		CU_ASSERT_FATAL(vclock_increment(c, "worker-1", NULL, &err) ==
				0);
		if (i % 1000 == 0)
			CU_ASSERT_FATAL(vclock_increment(c, "storage", NULL,
							 &err) == 0);
		CU_ASSERT_EQUAL_FATAL(sync_msg_batch_add(&batch, 2 * i, c,
							 payload, (size_t)n,
							 &err), 1);
	}
	CU_ASSERT_FATAL(sync_msg_batch_finish(&batch, &err) == 0);

	parse_one(&b, &f);
	CU_ASSERT_EQUAL_FATAL(f.entry_count, 10000);
	for (unsigned i = 1; i <= 10000; i++) {
		const struct sync_msg_entry *e = &f.entries[i - 1];
		int n = snprintf(payload, sizeof(payload), "op %u", i);

		CU_ASSERT_EQUAL(e->lsn, 2 * i);
		CU_ASSERT_EQUAL(vclock_get(e->clock, "worker-1"), i);
		CU_ASSERT_EQUAL(vclock_get(e->clock, "storage"), 3 + i / 1000);
		CU_ASSERT_EQUAL(e->payload_len, (size_t)n);
		CU_ASSERT(memcmp(e->payload, payload, (size_t)n) == 0);
	}
	sync_msg_frame_clear(&f);
	vclock_free(&c);
	buf_free(&b);
}

/* One frame of each type, back to back. */
static void make_stream(struct buf *b, size_t *ends, size_t *n_r)
{
	struct vclock *c = vc("storage=2,w=7");
	struct sync_msg_batch batch;
	size_t n = 0;

	CU_ASSERT_FATAL(sync_msg_encode_hello(b, "w", 41, c, &err) == 0);
	ends[n++] = b->len;
	CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, b, "w", 0, &err) == 0);
	CU_ASSERT_FATAL(sync_msg_batch_add(&batch, 8, c, "first op", 8,
					   &err) == 1);
	CU_ASSERT_FATAL(vclock_increment(c, "w", NULL, &err) == 0);
	CU_ASSERT_FATAL(sync_msg_batch_add(&batch, 9, c, "2nd\0op", 6,
					   &err) == 1);
	CU_ASSERT_FATAL(sync_msg_batch_finish(&batch, &err) == 0);
	ends[n++] = b->len;
	CU_ASSERT_FATAL(sync_msg_encode_ack(b, 17, &err) == 0);
	ends[n++] = b->len;
	*n_r = n;
	vclock_free(&c);
}

/* Every proper prefix of a frame needs more; none is ever "complete". */
static void test_truncation(void)
{
	struct buf b = BUF_INIT;
	size_t ends[3], n, start = 0;

	make_stream(&b, ends, &n);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < ends[i] - start; k++) {
			struct sync_msg_frame f;
			size_t used = 99;

			CU_ASSERT_EQUAL(sync_msg_parse(b.data + start, k, &f,
						       &used, &err), 0);
			CU_ASSERT_EQUAL(used, 0);
			CU_ASSERT_EQUAL(f.entry_count, 0);
			sync_msg_frame_clear(&f);
		}
		start = ends[i];
	}
	buf_free(&b);
}

/* The payload cut short at every byte, with the length and checksum made
 * to match: the payload decoder must notice on its own. */
static void test_payload_truncation(void)
{
	struct buf b = BUF_INIT, forged = BUF_INIT;
	size_t ends[3], n, start = 0;
	unsigned rejected = 0;

	make_stream(&b, ends, &n);
	for (size_t i = 0; i < n; i++) {
		const unsigned char *payload = b.data + start +
					       SYNC_MSG_HEADER_SIZE;
		size_t plen = ends[i] - start - SYNC_MSG_OVERHEAD;

		for (size_t k = 0; k < plen; k++) {
			struct sync_msg_frame f;
			size_t used;

			forge(&forged, b.data[start + 5], payload, k);
			CU_ASSERT_EQUAL(sync_msg_parse(forged.data, forged.len,
						       &f, &used, &err), -1);
			sync_msg_frame_clear(&f);
			rejected++;
		}
		/* And one byte too many. */
		{
			struct sync_msg_frame f;
			unsigned char *longer = malloc(plen + 1);
			size_t used;

			memcpy(longer, payload, plen);
			longer[plen] = 0;
			forge(&forged, b.data[start + 5], longer, plen + 1);
			CU_ASSERT_EQUAL(sync_msg_parse(forged.data, forged.len,
						       &f, &used, &err), -1);
			sync_msg_frame_clear(&f);
			free(longer);
		}
		start = ends[i];
	}
	CU_ASSERT(rejected > 60);
	buf_free(&forged);
	buf_free(&b);
}

/* Each single bit flipped: never accepted.  Only a flip in the length
 * field can leave the parser waiting for more; all else is refused. */
static void test_bit_flips(void)
{
	struct buf b = BUF_INIT;
	size_t ends[3], n, start = 0;

	make_stream(&b, ends, &n);
	for (size_t i = 0; i < n; i++) {
		size_t flen = ends[i] - start;
		unsigned char *copy = malloc(flen);

		for (size_t bit = 0; bit < flen * 8; bit++) {
			struct sync_msg_frame f;
			size_t used, byte = bit / 8;
			int ret;

			memcpy(copy, b.data + start, flen);
			copy[byte] ^= (unsigned char)(1u << (bit % 8));
			ret = sync_msg_parse(copy, flen, &f, &used, &err);
			if (byte >= 8 && byte < 12) {
				CU_ASSERT(ret == -1 || ret == 0);
			} else {
				CU_ASSERT_EQUAL(ret, -1);
			}
			sync_msg_frame_clear(&f);
		}
		free(copy);
		start = ends[i];
	}
	buf_free(&b);
}

static void test_header_rejects(void)
{
	static const struct {
		const char *what;
		unsigned char data[12];
		size_t len;	/* bytes that suffice to reject */
		const char *error;
	} cases[] = {
		{ "first byte", { 'X' }, 1, "bad frame magic" },
		{ "lower case", { 'p', 'S', 'Y', '1' }, 1, "bad frame magic" },
		{ "last magic byte", { 'P', 'S', 'Y', '2' }, 4,
		  "bad frame magic" },
		{ "TLS record", { 0x16, 0x03, 0x03 }, 1, "bad frame magic" },
		{ "version 0", { 'P', 'S', 'Y', '1', 0 }, 5,
		  "unsupported sync protocol version" },
		{ "version 2", { 'P', 'S', 'Y', '1', 2 }, 5,
		  "unsupported sync protocol version" },
		{ "type 0", { 'P', 'S', 'Y', '1', 1, 0 }, 6,
		  "unknown frame type" },
		{ "type 4", { 'P', 'S', 'Y', '1', 1, 4 }, 6,
		  "unknown frame type" },
		{ "type 255", { 'P', 'S', 'Y', '1', 1, 255 }, 6,
		  "unknown frame type" },
		{ "reserved hi", { 'P', 'S', 'Y', '1', 1, 2, 1 }, 7,
		  "reserved frame bits set" },
		{ "reserved lo", { 'P', 'S', 'Y', '1', 1, 2, 0, 0x80 }, 8,
		  "reserved frame bits set" },
		{ "4 GiB payload", { 'P', 'S', 'Y', '1', 1, 2, 0, 0,
				     0xff, 0xff, 0xff, 0xff }, 12,
		  "frame too large" },
		{ "just over the limit", { 'P', 'S', 'Y', '1', 1, 2, 0, 0,
					   0x05, 0x10, 0x00, 0x01 }, 12,
		  "frame too large" },
		{ "ACK of 9 bytes", { 'P', 'S', 'Y', '1', 1, 3, 0, 0,
				      0, 0, 0, 9 }, 12, "bad ACK length" },
		{ "ACK of 0 bytes", { 'P', 'S', 'Y', '1', 1, 3, 0, 0,
				      0, 0, 0, 0 }, 12, "bad ACK length" },
		{ "empty HELLO", { 'P', 'S', 'Y', '1', 1, 1, 0, 0,
				   0, 0, 0, 0 }, 12,
		  "frame too short for its type" },
		{ "tiny OPS", { 'P', 'S', 'Y', '1', 1, 2, 0, 0,
				0, 0, 0, 30 }, 12,
		  "frame too short for its type" },
	};
	size_t flen;

	CU_ASSERT_EQUAL(SYNC_MSG_PAYLOAD_MAX, 0x05100000);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sync_msg_frame f;
		size_t used;

		err = NULL;
		CU_ASSERT_EQUAL(sync_msg_parse(cases[i].data, cases[i].len, &f,
					       &used, &err), -1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(err);
		if (strcmp(err, cases[i].error) != 0)
			fprintf(stderr, "%s: got \"%s\"\n", cases[i].what, err);
		CU_ASSERT_STRING_EQUAL(err, cases[i].error);
		CU_ASSERT_EQUAL(sync_msg_peek(cases[i].data, cases[i].len,
					      &flen, &err), -1);
		sync_msg_frame_clear(&f);
	}
	/* The largest allowed length is only "need more". */
	{
		static const unsigned char max[12] = {
			'P', 'S', 'Y', '1', 1, 2, 0, 0, 0x05, 0x10, 0, 0,
		};
		struct sync_msg_frame f;
		size_t used;

		CU_ASSERT_EQUAL(sync_msg_peek(max, 12, &flen, &err), 1);
		CU_ASSERT_EQUAL(flen, SYNC_MSG_FRAME_MAX);
		CU_ASSERT_EQUAL(sync_msg_parse(max, 12, &f, &used, &err), 0);
	}
}

/* Payloads with a correct checksum that the decoder must still refuse. */
static void test_payload_rejects(void)
{
	static const struct {
		const char *what;
		uint8_t type;
		unsigned char payload[48];
		size_t len;
		const char *error;
	} cases[] = {
		{ "HELLO: space in name", SYNC_MSG_HELLO,
		  { 3, 'a', ' ', 'b', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 14,
		  "invalid sender name" },
		{ "HELLO: NUL in name", SYNC_MSG_HELLO,
		  { 2, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 13,
		  "invalid sender name" },
		{ "HELLO: empty name", SYNC_MSG_HELLO,
		  { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 12,
		  "invalid sender name" },
		{ "HELLO: name of 64", SYNC_MSG_HELLO,
		  { 64, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 12,
		  "invalid sender name" },
		{ "HELLO: zero in clock", SYNC_MSG_HELLO,
		  { 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		    1, 'a', 0, 0, 0, 0, 0, 0, 0, 0 }, 22,
		  "zero counter in vector clock" },
		{ "HELLO: trailing byte", SYNC_MSG_HELLO,
		  { 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 13,
		  "trailing bytes in frame payload" },
		{ "OPS: no entries", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 31,
		  "bad OPS entry count" },
		{ "OPS: count over the limit", SYNC_MSG_OPS,
		  { 1, 'w', 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 31,
		  "bad OPS entry count" },
		{ "OPS: count over the bytes", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 2,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 1, 'x' }, 31,
		  "OPS entry count exceeds frame" },
		{ "OPS: LSN 0", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 1, 'x' }, 31,
		  "OPS LSNs not strictly ascending from 1" },
		{ "OPS: clock without sender", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 's', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 1, 'x' }, 31,
		  "operation clock lacks the sender's entry" },
		{ "OPS: empty operation", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 0, 'x' }, 31,
		  "empty operation" },
		{ "OPS: trailing byte", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 1, 'x', 'y' }, 32,
		  "trailing bytes in frame payload" },
		{ "OPS: empty operation, exact", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 'v', 0, 0, 0, 0, 0, 0, 0,
		    1, 1, 'w', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 }, 40,
		  "empty operation" },
		{ "OPS: operation past the end", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0, 0, 0, 2, 'x' }, 31,
		  "truncated or oversized operation" },
		{ "OPS: operation length 4 GiB", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 0xff, 0xff, 0xff, 0xff, 'x' }, 31,
		  "truncated or oversized operation" },
		{ "OPS: empty clock", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 11,
		    'e', 'l', 'e', 'v', 'e', 'n', 'b', 'y', 't', 'e', 's' }, 31,
		  "operation clock lacks the sender's entry" },
		{ "OPS: unsorted clock", SYNC_MSG_OPS,
		  { 1, 'w', 0, 0, 0, 1,
		    0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 'w', 0, 0, 0, 0, 0, 0, 0,
		    1, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 'x' }, 41,
		  "vector clock names not sorted and unique" },
		{ "ACK: LSN 0", SYNC_MSG_ACK, { 0, 0, 0, 0, 0, 0, 0, 0 }, 8,
		  "ACK of LSN 0" },
	};
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sync_msg_frame f;
		size_t used;

		forge(&b, cases[i].type, cases[i].payload, cases[i].len);
		err = NULL;
		CU_ASSERT_EQUAL(sync_msg_parse(b.data, b.len, &f, &used, &err),
				-1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(err);
		if (strcmp(err, cases[i].error) != 0)
			fprintf(stderr, "%s: got \"%s\"\n", cases[i].what, err);
		CU_ASSERT_STRING_EQUAL(err, cases[i].error);
		CU_ASSERT_EQUAL(f.entry_count, 0);
		CU_ASSERT_PTR_NULL(f.entries);
		sync_msg_frame_clear(&f);
	}
	buf_free(&b);
}

/* LSNs that repeat or descend, with valid clocks (built by hand since
 * the builder refuses them). */
static void test_lsn_order(void)
{
	static const uint64_t orders[][2] = { { 7, 7 }, { 7, 6 }, { 8, 1 } };
	struct vclock *c = vc("w=1");
	struct buf payload = BUF_INIT, b = BUF_INIT;

	for (size_t i = 0; i < 3; i++) {
		struct sync_msg_frame f;
		size_t used;

		buf_reset(&payload);
		CU_ASSERT_FATAL(buf_put_u8(&payload, 1) == 0 &&
				buf_append(&payload, "w", 1) == 0 &&
				buf_put_u32(&payload, 2) == 0);
		for (size_t k = 0; k < 2; k++)
			CU_ASSERT_FATAL(buf_put_u64(&payload,
						    orders[i][k]) == 0 &&
					vclock_encode(c, &payload) == 0 &&
					buf_put_blob(&payload, "op", 2) == 0);
		forge(&b, SYNC_MSG_OPS, payload.data, payload.len);
		CU_ASSERT_EQUAL(sync_msg_parse(b.data, b.len, &f, &used, &err),
				-1);
		CU_ASSERT_STRING_EQUAL(
			err, "OPS LSNs not strictly ascending from 1");
		sync_msg_frame_clear(&f);
	}
	vclock_free(&c);
	buf_free(&payload);
	buf_free(&b);
}

/* Random garbage, and random garbage behind a valid header and checksum:
 * refused or waiting, never a crash; and whatever is accepted (an ACK's
 * payload is any non-zero number) is in canonical form, re-encoding to
 * exactly the bytes consumed. */
static void test_garbage(void)
{
	unsigned char data[256];
	uint32_t seed = 42;
	unsigned accepted = 0;

	for (unsigned trial = 0; trial < 20000; trial++) {
		struct sync_msg_frame f;
		size_t len, used;
		int ret;

		seed = seed * 1664525u + 1013904223u;
		len = (seed >> 16) % sizeof(data);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1664525u + 1013904223u;
			data[i] = (unsigned char)(seed >> 24);
		}
		if (trial % 2 == 1 && len >= 12) {
			uint8_t type = (uint8_t)(1 + trial / 2 % 3);

			/* The one length an ACK can have. */
			if (type == SYNC_MSG_ACK)
				len = SYNC_MSG_OVERHEAD + 8;

			memcpy(data, "PSY1", 4);
			data[4] = 1;
			data[5] = type;
			data[6] = data[7] = 0;
			data[8] = data[9] = 0;
			data[10] = 0;
			data[11] = (unsigned char)(len >= SYNC_MSG_OVERHEAD ?
						   len - SYNC_MSG_OVERHEAD : 0);
			if (len >= SYNC_MSG_OVERHEAD) {
				uint32_t crc = crc32c(data, len - 4);

				data[len - 4] = (unsigned char)(crc >> 24);
				data[len - 3] = (unsigned char)(crc >> 16);
				data[len - 2] = (unsigned char)(crc >> 8);
				data[len - 1] = (unsigned char)crc;
			}
		}
		ret = sync_msg_parse(data, len, &f, &used, &err);
		if (ret == 1) {
			struct buf again = BUF_INIT;

			accepted++;
			encode_frame(&f, &again);
			CU_ASSERT(again.len == used &&
				  memcmp(again.data, data, used) == 0);
			buf_free(&again);
		}
		sync_msg_frame_clear(&f);
	}
	/* Only forged ACKs can pass: about one in six trials. */
	CU_ASSERT(accepted > 1000 && accepted < 5000);
}

/* Fed one byte at a time, as a slow link would, the parser finds the same
 * frames at the same boundaries. */
static void test_byte_by_byte(void)
{
	struct buf stream = BUF_INIT, acc = BUF_INIT, again = BUF_INIT;
	size_t ends[3], n, frames = 0, offset = 0;

	make_stream(&stream, ends, &n);
	for (size_t i = 0; i < stream.len; i++) {
		struct sync_msg_frame f;
		size_t used;
		int ret;

		CU_ASSERT_FATAL(buf_append(&acc, stream.data + i, 1) == 0);
		ret = sync_msg_parse(acc.data, acc.len, &f, &used, &err);
		CU_ASSERT_FATAL(ret >= 0);
		if (ret == 0)
			continue;
		CU_ASSERT_FATAL(frames < n);
		CU_ASSERT_EQUAL(offset + used, ends[frames]);
		buf_reset(&again);
		encode_frame(&f, &again);
		CU_ASSERT(again.len == used &&
			  memcmp(again.data, acc.data, used) == 0);
		sync_msg_frame_clear(&f);
		/* The next frame starts at the front of the buffer again. */
		memmove(acc.data, acc.data + used, acc.len - used);
		acc.len -= used;
		offset += used;
		frames++;
	}
	CU_ASSERT_EQUAL(frames, n);
	CU_ASSERT_EQUAL(acc.len, 0);
	buf_free(&stream);
	buf_free(&acc);
	buf_free(&again);
}

/* A large operation (as an APPEND of a big message) round-trips. */
static void test_large_op(void)
{
	const size_t len = (size_t)8 * 1024 * 1024;
	unsigned char *op = malloc(len);
	struct vclock *c = vc("storage=1");
	struct buf b = BUF_INIT;
	struct sync_msg_batch batch;
	struct sync_msg_frame f;
	size_t used;

	CU_ASSERT_FATAL(op != NULL);
	for (size_t i = 0; i < len; i++)
		op[i] = (unsigned char)(i * 31 + (i >> 12));
	CU_ASSERT_FATAL(sync_msg_batch_begin(&batch, &b, "storage", 1024,
					     &err) == 0);
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 1, c, op, len, &err), 1);
	/* Past the budget now: the next one goes to another frame. */
	CU_ASSERT_EQUAL(sync_msg_batch_add(&batch, 2, c, "x", 1, &err), 0);
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&batch, &err), 0);
	CU_ASSERT_EQUAL_FATAL(sync_msg_parse(b.data, b.len, &f, &used, &err),
			      1);
	CU_ASSERT_EQUAL_FATAL(f.entry_count, 1);
	CU_ASSERT_EQUAL(f.entries[0].payload_len, len);
	CU_ASSERT(memcmp(f.entries[0].payload, op, len) == 0);
	sync_msg_frame_clear(&f);
	free(op);
	vclock_free(&c);
	buf_free(&b);
}

static void test_type_names(void)
{
	CU_ASSERT_STRING_EQUAL(sync_msg_type_name(SYNC_MSG_HELLO), "hello");
	CU_ASSERT_STRING_EQUAL(sync_msg_type_name(SYNC_MSG_OPS), "ops");
	CU_ASSERT_STRING_EQUAL(sync_msg_type_name(SYNC_MSG_ACK), "ack");
	CU_ASSERT_STRING_EQUAL(sync_msg_type_name((enum sync_msg_type)9),
			       "unknown");
}

static CU_TestInfo tests[] = {
	{ "HELLO bytes and round trip", test_hello },
	{ "ACK bytes and round trip", test_ack },
	{ "OPS round trip", test_ops },
	{ "batch builder errors", test_batch_errors },
	{ "batch budget splits a backlog", test_batch_budget },
	{ "batch entry limit", test_batch_count_limit },
	{ "10,000 operations in one frame", test_batch_10000 },
	{ "8 MiB operation", test_large_op },
	{ "truncation at every offset", test_truncation },
	{ "payload truncation at every offset", test_payload_truncation },
	{ "every single-bit flip", test_bit_flips },
	{ "header rejects", test_header_rejects },
	{ "payload rejects", test_payload_rejects },
	{ "LSN order", test_lsn_order },
	{ "random garbage", test_garbage },
	{ "byte by byte", test_byte_by_byte },
	{ "type names", test_type_names },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("sync_msg", tests);
}
