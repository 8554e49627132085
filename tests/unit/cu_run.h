/*
 * cu_run.h - the one main() shape every CUnit test binary uses.
 *
 *   static CU_TestInfo tests[] = {
 *           { "parses a tag", test_tag },
 *           CU_TEST_INFO_NULL,
 *   };
 *   int main(void) { return cu_run("imap_parser", tests); }
 *
 * cu_run() registers the suite, runs it in CUnit's basic mode (which prints
 * the run summary) and returns 0 when every assertion passed, 1 otherwise:
 * automake reads 77 as "skipped" and 99 as "hard error", so nothing else.
 */
#ifndef PLUTO_CU_RUN_H
#define PLUTO_CU_RUN_H

#include <CUnit/CUnit.h>

int cu_run(const char *suite_name, CU_TestInfo *tests);

/* A fresh private directory under $TMPDIR (or /tmp); the caller removes it
 * with cu_rmtree().  Returns a malloc'd path, or NULL with a CUnit failure
 * recorded. */
char *cu_tempdir(const char *prefix);
void cu_rmtree(const char *path);

#endif
