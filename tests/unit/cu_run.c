/*
 * cu_run.c - shared CUnit runner and small test utilities.
 */
#include "autoconfig.h"

#include "cu_run.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cu_run(const char *suite_name, CU_TestInfo *tests)
{
	CU_SuiteInfo suites[] = {
		{ suite_name, NULL, NULL, NULL, NULL, tests },
		CU_SUITE_INFO_NULL,
	};
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if (CU_register_suites(suites) != CUE_SUCCESS) {
		fprintf(stderr, "cannot register suite %s: %s\n", suite_name,
			CU_get_error_msg());
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS) {
		CU_cleanup_registry();
		return 1;
	}
	failures = CU_get_number_of_failures() +
		   CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures == 0 ? 0 : 1;
}

char *cu_tempdir(const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	size_t len;

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	len = strlen(tmp) + strlen(prefix) + 16;
	path = malloc(len);
	if (path == NULL)
		return NULL;
	snprintf(path, len, "%s/%s.XXXXXX", tmp, prefix);
	if (mkdtemp(path) == NULL) {
		CU_FAIL("mkdtemp failed");
		free(path);
		return NULL;
	}
	return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void cu_rmtree(const char *path)
{
	if (path != NULL)
		nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
