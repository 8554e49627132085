/*
 * test_buf.c - buffers grow, integers round-trip big-endian, and the reader
 * refuses to run past its end.
 */
#include "autoconfig.h"

#include "buf.h"
#include "cu_run.h"

#include <stdlib.h>
#include <string.h>

static void test_append_and_printf(void)
{
	struct buf b = BUF_INIT;

	CU_ASSERT_EQUAL(buf_append_str(&b, "abc"), 0);
	CU_ASSERT_EQUAL(buf_printf(&b, "-%d-", 42), 0);
	CU_ASSERT_STRING_EQUAL(buf_cstr(&b), "abc-42-");
	CU_ASSERT_EQUAL(b.len, 7);
	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL(buf_append(&b, "\0x", 2), 0);
	CU_ASSERT_EQUAL(b.len, 2007);
	CU_ASSERT_EQUAL(b.data[7], '\0');
	buf_free(&b);
	CU_ASSERT_PTR_NULL(b.data);
}

static void test_integers_round_trip(void)
{
	struct buf b = BUF_INIT;
	struct buf_reader r;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	buf_put_u8(&b, 0xab);
	buf_put_u16(&b, 0x1234);
	buf_put_u32(&b, 0xdeadbeef);
	buf_put_u64(&b, 0x0102030405060708ULL);
	CU_ASSERT_EQUAL(b.len, 15);
	CU_ASSERT_EQUAL(b.data[1], 0x12);
	buf_reader_init(&r, b.data, b.len);
	CU_ASSERT_TRUE(buf_get_u8(&r, &u8) && u8 == 0xab);
	CU_ASSERT_TRUE(buf_get_u16(&r, &u16) && u16 == 0x1234);
	CU_ASSERT_TRUE(buf_get_u32(&r, &u32) && u32 == 0xdeadbeef);
	CU_ASSERT_TRUE(buf_get_u64(&r, &u64) && u64 == 0x0102030405060708ULL);
	CU_ASSERT_FALSE(buf_get_u8(&r, &u8));
	buf_free(&b);
}

static void test_blob_bounds(void)
{
	struct buf b = BUF_INIT;
	struct buf_reader r;
	const unsigned char *p;
	size_t len;

	buf_put_blob(&b, "hello", 5);
	buf_reader_init(&r, b.data, b.len);
	CU_ASSERT_FALSE(buf_get_blob(&r, 4, &p, &len));
	CU_ASSERT_EQUAL(r.left, 9);
	CU_ASSERT_TRUE(buf_get_blob(&r, 5, &p, &len));
	CU_ASSERT_EQUAL(len, 5);
	CU_ASSERT_EQUAL(memcmp(p, "hello", 5), 0);
	/* A length claiming more than is there. */
	buf_reader_init(&r, b.data, b.len - 1);
	CU_ASSERT_FALSE(buf_get_blob(&r, 100, &p, &len));
	CU_ASSERT_EQUAL(r.left, 8);
	buf_free(&b);
}

static void test_steal(void)
{
	struct buf b = BUF_INIT;
	unsigned char *data;
	size_t len;

	buf_append_str(&b, "xyz");
	data = buf_steal(&b, &len);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	free(data);
}

static CU_TestInfo tests[] = {
	{ "append and printf", test_append_and_printf },
	{ "integers round trip", test_integers_round_trip },
	{ "blob bounds", test_blob_bounds },
	{ "steal", test_steal },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("buf", tests);
}
