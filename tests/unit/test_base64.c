/*
 * test_base64.c - RFC 4648 section 10 vectors both ways, binary data, and
 * a table of inputs the strict decoder must refuse.
 */
#include "autoconfig.h"

#include "base64.h"
#include "cu_run.h"

#include <stdint.h>
#include <string.h>

struct vector {
	const char *plain;
	const char *encoded;
};

static const struct vector rfc4648_vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void test_rfc4648_vectors(void)
{
	for (size_t i = 0; i < sizeof(rfc4648_vectors) /
				   sizeof(rfc4648_vectors[0]); i++) {
		const struct vector *v = &rfc4648_vectors[i];
		struct buf b = BUF_INIT;
		const char *error = NULL;
		size_t n;

		CU_ASSERT_EQUAL(base64_encode(v->plain, strlen(v->plain), &b),
				0);
		CU_ASSERT_EQUAL(b.len, strlen(v->encoded));
		CU_ASSERT_TRUE(b.len == 0 ||
			       memcmp(b.data, v->encoded, b.len) == 0);
		CU_ASSERT_TRUE(base64_encoded_len(strlen(v->plain), &n));
		CU_ASSERT_EQUAL(n, strlen(v->encoded));
		buf_reset(&b);
		CU_ASSERT_EQUAL(base64_decode(v->encoded, strlen(v->encoded),
					      &b, &error), 0);
		CU_ASSERT_EQUAL(b.len, strlen(v->plain));
		CU_ASSERT_TRUE(b.len == 0 ||
			       memcmp(b.data, v->plain, b.len) == 0);
		buf_free(&b);
	}
}

static void test_sasl_plain(void)
{
	/* "\0alice\0secret", the AUTHENTICATE PLAIN shape. */
	static const char plain[] = "\0alice\0secret";
	struct buf b = BUF_INIT;
	const char *error = NULL;

	CU_ASSERT_EQUAL(base64_encode(plain, sizeof(plain) - 1, &b), 0);
	CU_ASSERT_STRING_EQUAL(buf_cstr(&b), "AGFsaWNlAHNlY3JldA==");
	buf_reset(&b);
	CU_ASSERT_EQUAL(base64_decode("AGFsaWNlAHNlY3JldA==", 20, &b, &error),
			0);
	CU_ASSERT_EQUAL(b.len, sizeof(plain) - 1);
	CU_ASSERT_EQUAL(memcmp(b.data, plain, b.len), 0);
	buf_free(&b);
}

static void test_all_bytes_round_trip(void)
{
	unsigned char in[256 * 3];
	struct buf enc = BUF_INIT, dec = BUF_INIT;
	const char *error = NULL;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + i / 256);
	/* Every length from 0 to 768 exercises each padding case. */
	for (size_t len = 0; len <= sizeof(in); len++) {
		buf_reset(&enc);
		buf_reset(&dec);
		CU_ASSERT_EQUAL_FATAL(base64_encode(in, len, &enc), 0);
		CU_ASSERT_EQUAL(enc.len % 4, 0);
		CU_ASSERT_EQUAL_FATAL(base64_decode(enc.data, enc.len, &dec,
						    &error), 0);
		CU_ASSERT_EQUAL_FATAL(dec.len, len);
		CU_ASSERT_TRUE(len == 0 || memcmp(dec.data, in, len) == 0);
	}
	buf_free(&enc);
	buf_free(&dec);
}

static void test_appends_and_rolls_back(void)
{
	struct buf b = BUF_INIT;
	const char *error = NULL;

	buf_append_str(&b, "pre:");
	CU_ASSERT_EQUAL(base64_decode("Zm9v", 4, &b, &error), 0);
	CU_ASSERT_STRING_EQUAL(buf_cstr(&b), "pre:foo");
	/* The first quantum is fine, the second is not: nothing stays. */
	CU_ASSERT_EQUAL(base64_decode("Zm9vZ!==", 8, &b, &error), -1);
	CU_ASSERT_STRING_EQUAL(buf_cstr(&b), "pre:foo");
	buf_free(&b);
}

struct bad_case {
	const char *input;
	const char *error;
};

static const struct bad_case bad_cases[] = {
	{ "Z", "base64 length is not a multiple of 4" },
	{ "Zg", "base64 length is not a multiple of 4" },
	{ "Zg=", "base64 length is not a multiple of 4" },
	{ "Zm9vY", "base64 length is not a multiple of 4" },
	{ "Zg==Zg==", "base64 padding in the wrong place" },
	{ "Z===", "base64 padding in the wrong place" },
	{ "====", "base64 padding in the wrong place" },
	{ "=Zg=", "base64 padding in the wrong place" },
	{ "Zg=g", "base64 padding in the wrong place" },
	{ "Zh==", "base64 has non-zero padding bits" },
	{ "Zm9=", "base64 has non-zero padding bits" },
	{ "QR==", "base64 has non-zero padding bits" },
	{ "Zm 9", "invalid character in base64" },
	{ "Zm9v\r\n", "base64 length is not a multiple of 4" },
	{ "Zm9\n", "invalid character in base64" },
	{ "Zm-_", "invalid character in base64" },
	{ "Zm,v", "invalid character in base64" },
	{ "Zm9\x80", "invalid character in base64" },
	{ "Zm9\xff", "invalid character in base64" },
	{ "Zm9.", "invalid character in base64" },
};

static void test_bad_inputs(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]);
	     i++) {
		struct buf b = BUF_INIT;
		const char *error = NULL;
		int ret;

		ret = base64_decode(bad_cases[i].input,
				    strlen(bad_cases[i].input), &b, &error);
		CU_ASSERT_EQUAL(ret, -1);
		CU_ASSERT_EQUAL(b.len, 0);
		if (error == NULL || strcmp(error, bad_cases[i].error) != 0) {
			fprintf(stderr, "case %zu '%s': got %s\n", i,
				bad_cases[i].input, error ? error : "(none)");
			CU_FAIL("wrong error");
		}
		buf_free(&b);
	}
	/* An embedded NUL is just another invalid character. */
	{
		struct buf b = BUF_INIT;
		const char *error = NULL;

		CU_ASSERT_EQUAL(base64_decode("Zm\0v", 4, &b, &error), -1);
		buf_free(&b);
	}
}

static void test_length_overflow(void)
{
	size_t n;

	CU_ASSERT_FALSE(base64_encoded_len(SIZE_MAX, &n));
	CU_ASSERT_TRUE(base64_encoded_len(SIZE_MAX / 4 * 3, &n));
	CU_ASSERT_EQUAL(base64_decoded_max(8), 6);
}

static CU_TestInfo tests[] = {
	{ "RFC 4648 vectors", test_rfc4648_vectors },
	{ "SASL PLAIN response", test_sasl_plain },
	{ "every length round-trips", test_all_bytes_round_trip },
	{ "appends, rolls back on error", test_appends_and_rolls_back },
	{ "strict decoding refuses bad input", test_bad_inputs },
	{ "length overflow", test_length_overflow },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("base64", tests);
}
