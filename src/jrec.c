/*
 * jrec.c - encoding of the prefix of pluto's journal records.
 */
#include "autoconfig.h"

#include "jrec.h"

#include <string.h>

int jrec_encode_prefix(struct buf *out, enum jrec_type type, const char *name,
		       uint64_t origin_lsn, const struct vclock *clock,
		       const char **error_r)
{
	size_t len = strlen(name);

	if (len > VCLOCK_NAME_MAX || (len > 0 && !vclock_name_valid(name)) ||
	    (type == JREC_REMOTE && len == 0)) {
		*error_r = "invalid node name in journal record";
		return -1;
	}
	if (buf_put_u8(out, (uint8_t)len) < 0 ||
	    buf_append(out, name, len) < 0 ||
	    (type == JREC_REMOTE && buf_put_u64(out, origin_lsn) < 0) ||
	    vclock_encode(clock, out) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

int jrec_decode(const struct journal_record *rec, struct jrec *jrec_r,
		const char **error_r)
{
	struct buf_reader r;
	const unsigned char *name;
	uint8_t name_len;

	memset(jrec_r, 0, sizeof(*jrec_r));
	if (rec->type != JREC_LOCAL && rec->type != JREC_REMOTE) {
		*error_r = "unknown journal record type";
		return -1;
	}
	jrec_r->type = (enum jrec_type)rec->type;
	buf_reader_init(&r, rec->payload, rec->len);
	if (!buf_get_u8(&r, &name_len) || name_len > VCLOCK_NAME_MAX ||
	    !buf_get_bytes(&r, name_len, &name)) {
		*error_r = "truncated journal record";
		return -1;
	}
	memcpy(jrec_r->name, name, name_len);
	jrec_r->name[name_len] = '\0';
	if ((name_len > 0 && !vclock_name_valid(jrec_r->name)) ||
	    (jrec_r->type == JREC_REMOTE && name_len == 0)) {
		*error_r = "invalid node name in journal record";
		return -1;
	}
	if (jrec_r->type == JREC_REMOTE &&
	    (!buf_get_u64(&r, &jrec_r->origin_lsn) ||
	     jrec_r->origin_lsn == 0)) {
		*error_r = "bad origin position in journal record";
		return -1;
	}
	if (vclock_read(&r, &jrec_r->clock, error_r) < 0)
		return -1;
	jrec_r->op = r.p;
	jrec_r->op_len = r.left;
	return 0;
}

void jrec_clear(struct jrec *jrec)
{
	vclock_free(&jrec->clock);
}
