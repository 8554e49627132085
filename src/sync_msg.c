/*
 * sync_msg.c - building and parsing replication frames.
 *
 * The parser is written for a hostile peer.  It checks the header as soon
 * as its first bytes arrive, so that garbage or a wrong protocol closes
 * the link without waiting for (or buffering) a length the garbage made
 * up; it verifies the checksum over the whole frame before it interprets a
 * single payload byte; and it allocates for a count only after checking
 * that the bytes left could hold that many of the smallest entry.  Entry
 * payloads are not copied: a 64 MiB message body is read once off the
 * socket and handed on in place.
 *
 * The builder writes an OPS frame directly into the sender's output
 * buffer and patches count, length and checksum at the end, so a backlog
 * of thousands of small operations becomes one large write.
 */
#include "autoconfig.h"

#include "sync_msg.h"

#include "crc32c.h"
#include "op.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Every operation the mail store can produce must fit one frame. */
static_assert(SYNC_MSG_OP_MAX >= OP_BODY_MAX + (size_t)1024 * 1024,
	      "SYNC_MSG_OP_MAX too small for the largest APPEND");
/* The largest entry header: LSN, a full clock, payload length. */
#define ENTRY_HEADER_MAX \
	(8 + 2 + VCLOCK_ENTRIES_MAX * (1 + VCLOCK_NAME_MAX + 8) + 4)
static_assert(SYNC_MSG_PAYLOAD_MAX - SYNC_MSG_OP_MAX >=
	      1 + VCLOCK_NAME_MAX + 4 + ENTRY_HEADER_MAX,
	      "SYNC_MSG_PAYLOAD_MAX leaves no room for one largest entry");
static_assert(SYNC_MSG_PAYLOAD_MAX <= UINT32_MAX,
	      "payload length must fit its u32 field");

/* The smallest payloads: a one-byte name and an empty clock (HELLO); a
 * one-byte name, a count and one entry whose clock has a one-byte name and
 * whose payload is one byte (OPS); one LSN (ACK). */
#define ENTRY_MIN_SIZE (8 + 2 + VCLOCK_ENTRY_MIN_SIZE + 4 + 1)
#define HELLO_MIN_SIZE (1 + 1 + 8 + 2)
#define OPS_MIN_SIZE (1 + 1 + 4 + ENTRY_MIN_SIZE)
#define ACK_SIZE 8

static const unsigned char magic_bytes[4] = { 'P', 'S', 'Y', '1' };
static_assert(SYNC_MSG_MAGIC == 0x50535931u, "magic must read \"PSY1\"");

const char *sync_msg_type_name(enum sync_msg_type type)
{
	switch (type) {
	case SYNC_MSG_HELLO:
		return "hello";
	case SYNC_MSG_OPS:
		return "ops";
	case SYNC_MSG_ACK:
		return "ack";
	}
	return "unknown";
}

/* Writes a header whose payload length is patched by end_frame(). */
static int begin_frame(struct buf *out, enum sync_msg_type type)
{
	if (buf_put_u32(out, SYNC_MSG_MAGIC) < 0 ||
	    buf_put_u8(out, SYNC_MSG_VERSION) < 0 ||
	    buf_put_u8(out, (uint8_t)type) < 0 ||
	    buf_put_u16(out, 0) < 0 ||
	    buf_put_u32(out, 0) < 0)
		return -1;
	return 0;
}

/* Patches the length of the frame at start and appends its checksum. */
static int end_frame(struct buf *out, size_t start)
{
	size_t payload_len = out->len - start - SYNC_MSG_HEADER_SIZE;

	if (payload_len > SYNC_MSG_PAYLOAD_MAX)
		return -1;
	buf_write_be32(out->data + start + 8, (uint32_t)payload_len);
	return buf_put_u32(out, crc32c(out->data + start, out->len - start));
}

static int put_name(struct buf *out, const char *name)
{
	size_t len = strlen(name);

	if (buf_put_u8(out, (uint8_t)len) < 0 ||
	    buf_append(out, name, len) < 0)
		return -1;
	return 0;
}

int sync_msg_encode_hello(struct buf *out, const char *sender,
			  uint64_t received_lsn, const struct vclock *clock,
			  const char **error_r)
{
	size_t start = out->len;

	if (!vclock_name_valid(sender)) {
		*error_r = "invalid sender name";
		return -1;
	}
	if (begin_frame(out, SYNC_MSG_HELLO) < 0 ||
	    put_name(out, sender) < 0 ||
	    buf_put_u64(out, received_lsn) < 0 ||
	    vclock_encode(clock, out) < 0 ||
	    end_frame(out, start) < 0) {
		out->len = start;
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

int sync_msg_encode_ack(struct buf *out, uint64_t lsn, const char **error_r)
{
	size_t start = out->len;

	if (lsn == 0) {
		*error_r = "ACK of LSN 0";
		return -1;
	}
	if (begin_frame(out, SYNC_MSG_ACK) < 0 ||
	    buf_put_u64(out, lsn) < 0 ||
	    end_frame(out, start) < 0) {
		out->len = start;
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

int sync_msg_batch_begin(struct sync_msg_batch *b, struct buf *out,
			 const char *sender, size_t budget,
			 const char **error_r)
{
	size_t start = out->len;

	memset(b, 0, sizeof(*b));
	if (!vclock_name_valid(sender)) {
		*error_r = "invalid sender name";
		return -1;
	}
	if (begin_frame(out, SYNC_MSG_OPS) < 0 ||
	    put_name(out, sender) < 0 ||
	    buf_put_u32(out, 0) < 0) {
		out->len = start;
		*error_r = "out of memory";
		return -1;
	}
	b->out = out;
	b->start = start;
	if (budget == 0)
		budget = SYNC_MSG_BATCH_BUDGET_DEFAULT;
	b->budget = budget > SYNC_MSG_PAYLOAD_MAX ?
		SYNC_MSG_PAYLOAD_MAX : budget;
	memcpy(b->sender, sender, strlen(sender) + 1);
	return 0;
}

int sync_msg_batch_add(struct sync_msg_batch *b, uint64_t lsn,
		       const struct vclock *clock, const void *payload,
		       size_t payload_len, const char **error_r)
{
	struct buf *out = b->out;
	size_t entry_start = out->len, payload_size;

	if (lsn == 0 || lsn <= b->last_lsn) {
		*error_r = "LSNs of a batch must ascend from 1";
		return -1;
	}
	if (payload_len == 0 || payload_len > SYNC_MSG_OP_MAX) {
		*error_r = payload_len == 0 ? "empty operation" :
			"operation too large to replicate";
		return -1;
	}
	if (vclock_get(clock, b->sender) == 0) {
		*error_r = "operation clock lacks the sender's entry";
		return -1;
	}
	if (b->count >= SYNC_MSG_BATCH_MAX)
		return 0;
	/* The small part first, to learn the entry's size before the
	 * payload is copied. */
	if (buf_put_u64(out, lsn) < 0 || vclock_encode(clock, out) < 0 ||
	    buf_put_u32(out, (uint32_t)payload_len) < 0) {
		out->len = entry_start;
		*error_r = "out of memory";
		return -1;
	}
	/* Cannot overflow: the frame so far is bounded by the checks
	 * below, and payload_len by SYNC_MSG_OP_MAX. */
	payload_size = out->len - b->start - SYNC_MSG_HEADER_SIZE + payload_len;
	if (payload_size > SYNC_MSG_PAYLOAD_MAX ||
	    (b->count > 0 && payload_size > b->budget)) {
		out->len = entry_start;
		/* Unreachable for the first entry (static_assert above), but
		 * a clear error beats an endless retry if it ever is. */
		if (b->count == 0) {
			*error_r = "operation too large for a frame";
			return -1;
		}
		return 0;
	}
	if (buf_append(out, payload, payload_len) < 0) {
		out->len = entry_start;
		*error_r = "out of memory";
		return -1;
	}
	b->count++;
	b->last_lsn = lsn;
	return 1;
}

int sync_msg_batch_finish(struct sync_msg_batch *b, const char **error_r)
{
	size_t count_pos;

	if (b->count == 0) {
		*error_r = "empty batch";
		return -1;
	}
	count_pos = b->start + SYNC_MSG_HEADER_SIZE + 1 + strlen(b->sender);
	buf_write_be32(b->out->data + count_pos, b->count);
	if (end_frame(b->out, b->start) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

void sync_msg_batch_abort(struct sync_msg_batch *b)
{
	if (b->out != NULL)
		b->out->len = b->start;
	b->count = 0;
	b->last_lsn = 0;
}

int sync_msg_peek(const void *data, size_t len, size_t *frame_len_r,
		  const char **error_r)
{
	const unsigned char *p = data;
	uint32_t payload_len;
	size_t min;

	/* Judge whatever prefix is there, byte by byte. */
	for (size_t i = 0; i < 4 && i < len; i++) {
		if (p[i] != magic_bytes[i]) {
			*error_r = "bad frame magic";
			return -1;
		}
	}
	if (len > 4 && p[4] != SYNC_MSG_VERSION) {
		*error_r = "unsupported sync protocol version";
		return -1;
	}
	if (len > 5 && (p[5] < SYNC_MSG_HELLO || p[5] > SYNC_MSG_ACK)) {
		*error_r = "unknown frame type";
		return -1;
	}
	if ((len > 6 && p[6] != 0) || (len > 7 && p[7] != 0)) {
		*error_r = "reserved frame bits set";
		return -1;
	}
	if (len < SYNC_MSG_HEADER_SIZE)
		return 0;
	payload_len = buf_read_be32(p + 8);
	if (payload_len > SYNC_MSG_PAYLOAD_MAX) {
		*error_r = "frame too large";
		return -1;
	}
	switch ((enum sync_msg_type)p[5]) {
	case SYNC_MSG_HELLO:
		min = HELLO_MIN_SIZE;
		break;
	case SYNC_MSG_OPS:
		min = OPS_MIN_SIZE;
		break;
	case SYNC_MSG_ACK:
	default:
		if (payload_len != ACK_SIZE) {
			*error_r = "bad ACK length";
			return -1;
		}
		min = ACK_SIZE;
		break;
	}
	if (payload_len < min) {
		*error_r = "frame too short for its type";
		return -1;
	}
	*frame_len_r = SYNC_MSG_OVERHEAD + (size_t)payload_len;
	return 1;
}

/* A u8 length and a node name into name (VCLOCK_NAME_MAX + 1 bytes). */
static bool get_name(struct buf_reader *r, char *name)
{
	const unsigned char *p;
	uint8_t len;

	if (!buf_get_u8(r, &len) || len > VCLOCK_NAME_MAX ||
	    !buf_get_bytes(r, len, &p))
		return false;
	memcpy(name, p, len);
	name[len] = '\0';
	/* A NUL inside would make the name look shorter than it is. */
	return strlen(name) == len && vclock_name_valid(name);
}

static int parse_ops(struct buf_reader *r, struct sync_msg_frame *f,
		     const char **error_r)
{
	uint32_t count;

	if (!buf_get_u32(r, &count)) {
		*error_r = "truncated OPS frame";
		return -1;
	}
	if (count == 0 || count > SYNC_MSG_BATCH_MAX) {
		*error_r = "bad OPS entry count";
		return -1;
	}
	if (count > r->left / ENTRY_MIN_SIZE) {
		*error_r = "OPS entry count exceeds frame";
		return -1;
	}
	f->entries = calloc(count, sizeof(*f->entries));
	if (f->entries == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	/* calloc left every clock NULL, so clearing the frame after a
	 * failure part-way frees exactly what was allocated. */
	f->entry_count = count;
	for (uint32_t i = 0; i < count; i++) {
		struct sync_msg_entry *e = &f->entries[i];

		if (!buf_get_u64(r, &e->lsn)) {
			*error_r = "truncated OPS entry";
			return -1;
		}
		if (e->lsn == 0 ||
		    (i > 0 && e->lsn <= f->entries[i - 1].lsn)) {
			*error_r = "OPS LSNs not strictly ascending from 1";
			return -1;
		}
		if (vclock_read(r, &e->clock, error_r) < 0)
			return -1;
		if (vclock_get(e->clock, f->sender) == 0) {
			*error_r = "operation clock lacks the sender's entry";
			return -1;
		}
		if (!buf_get_blob(r, SYNC_MSG_OP_MAX, &e->payload,
				  &e->payload_len)) {
			*error_r = "truncated or oversized operation";
			return -1;
		}
		if (e->payload_len == 0) {
			*error_r = "empty operation";
			return -1;
		}
	}
	return 0;
}

static int parse_payload(struct buf_reader *r, struct sync_msg_frame *f,
			 const char **error_r)
{
	switch (f->type) {
	case SYNC_MSG_HELLO:
		if (!get_name(r, f->sender)) {
			*error_r = "invalid sender name";
			return -1;
		}
		if (!buf_get_u64(r, &f->lsn)) {
			*error_r = "truncated HELLO frame";
			return -1;
		}
		return vclock_read(r, &f->clock, error_r);
	case SYNC_MSG_OPS:
		if (!get_name(r, f->sender)) {
			*error_r = "invalid sender name";
			return -1;
		}
		return parse_ops(r, f, error_r);
	case SYNC_MSG_ACK:
		if (!buf_get_u64(r, &f->lsn)) {
			*error_r = "truncated ACK frame";
			return -1;
		}
		if (f->lsn == 0) {
			*error_r = "ACK of LSN 0";
			return -1;
		}
		return 0;
	}
	*error_r = "unknown frame type";
	return -1;
}

int sync_msg_parse(const void *data, size_t len,
		   struct sync_msg_frame *frame_r, size_t *consumed_r,
		   const char **error_r)
{
	const unsigned char *p = data;
	struct buf_reader r;
	size_t frame_len, body_len;
	int ret;

	memset(frame_r, 0, sizeof(*frame_r));
	*consumed_r = 0;
	ret = sync_msg_peek(data, len, &frame_len, error_r);
	if (ret <= 0)
		return ret;
	if (len < frame_len)
		return 0;
	body_len = frame_len - SYNC_MSG_TRAILER_SIZE;
	if (crc32c(p, body_len) != buf_read_be32(p + body_len)) {
		*error_r = "frame checksum mismatch";
		return -1;
	}
	frame_r->type = (enum sync_msg_type)p[5];
	buf_reader_init(&r, p + SYNC_MSG_HEADER_SIZE,
			body_len - SYNC_MSG_HEADER_SIZE);
	if (parse_payload(&r, frame_r, error_r) < 0) {
		sync_msg_frame_clear(frame_r);
		return -1;
	}
	if (r.left != 0) {
		sync_msg_frame_clear(frame_r);
		*error_r = "trailing bytes in frame payload";
		return -1;
	}
	*consumed_r = frame_len;
	return 1;
}

void sync_msg_frame_clear(struct sync_msg_frame *frame)
{
	vclock_free(&frame->clock);
	for (size_t i = 0; i < frame->entry_count; i++)
		vclock_free(&frame->entries[i].clock);
	free(frame->entries);
	memset(frame, 0, sizeof(*frame));
}
