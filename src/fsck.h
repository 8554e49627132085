/*
 * fsck.h - the convergence checker behind pluto-fsck(1): loads the mail
 * state of stopped nodes read-only and prints every difference between
 * two of them.
 *
 * A node is loaded from its CRDTLayerRoot and MaildirRoot the way the
 * user store would load it, without its writes: per user, the snapshot
 * (CRDTLayerRoot/snapshots), then every journal record after it
 * (CRDTLayerRoot/journal) applied with mailstate_apply.  The journal is
 * opened with journal_open, which takes the journal's lock (so loading
 * fails while the node runs: stop it first) and, like a start of the
 * node would, truncates a torn last record left by a crash.  Nothing
 * else is written.
 *
 * What is compared, per user: the live mailboxes; per mailbox
 * UIDVALIDITY, UIDNEXT and the messages, matched by tag, with UID,
 * flags, keywords, size and internal date; and the Maildir: the names
 * and sizes of the files under cur/ and new/ of INBOX and of every
 * folder.  Tombstones and other invisible state are not compared.
 *
 * Not thread-safe: one thread uses a node at a time.
 */
#ifndef PLUTO_FSCK_H
#define PLUTO_FSCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct fsck_node;

/* Loads the node called name (a label for the output) from its roots.
 * only_user, when not NULL, limits the load to that user.  Returns 0 and
 * *node_r, or -1 with *error_r (a thread-local string valid until the
 * next failing fsck call). */
int fsck_node_load(const char *name, const char *crdt_root,
		   const char *maildir_root, const char *only_user,
		   struct fsck_node **node_r, const char **error_r);
void fsck_node_free(struct fsck_node **node);

/* Number of journal records that could not be applied while loading
 * (each was printed to stderr); a clean node has 0. */
size_t fsck_node_apply_errors(const struct fsck_node *node);

/* Prints every difference for user between a and b to out, one line
 * each, and adds their number to *diffs.  Returns 0, or -1 with *error_r
 * (a Maildir that cannot be read, out of memory). */
int fsck_compare_user(struct fsck_node *a, struct fsck_node *b,
		      const char *user, FILE *out, size_t *diffs,
		      const char **error_r);

/* fsck_compare_user for every user either node knows, except users known
 * only to storage that belong to another worker (when one of the nodes is
 * "storage" and the other a worker, storage holds other workers' users
 * too).  Users are visited in strcmp order. */
int fsck_compare_all(struct fsck_node *a, struct fsck_node *b, FILE *out,
		     size_t *diffs, const char **error_r);

#endif
