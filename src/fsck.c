/*
 * fsck.c - read-only loading of a stopped node's users and the
 * comparison of two nodes (fsck.h, pluto-fsck(1)).
 *
 * Loading repeats what user_store_open does at start-up, with the public
 * pieces only (snapshot_read, journal_read_from, jrec_decode, op_decode,
 * mailstate_apply), because the user store itself writes (directories,
 * snapshots, Maildir reconciliation) and fsck must not.  Snapshots are
 * named like user_store names them, by snapshot_name_for_user.
 */
#include "autoconfig.h"

#include "fsck.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "buf.h"
#include "jrec.h"
#include "journal.h"
#include "mailstate.h"
#include "op.h"
#include "snapshot.h"

struct fsck_user {
	char *name;
	struct mailstate *state;	/* NULL: known from the Maildir only */
	uint64_t snapshot_lsn;
	char home[64];			/* storage: the user's worker */
};

struct fsck_node {
	char *name;
	char *crdt_root;
	char *maildir_root;
	char *snapshot_dir;
	const char *only;
	struct fsck_user *users;
	size_t count, cap;
	size_t apply_errors;
};

static const char *set_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *set_error(const char *fmt, ...)
{
	static _Thread_local char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

static char *path_join(const char *a, const char *b)
{
	size_t len = strlen(a) + strlen(b) + 2;
	char *p = malloc(len);

	if (p != NULL)
		snprintf(p, len, "%s/%s", a, b);
	return p;
}

static struct fsck_user *find_user(struct fsck_node *node, const char *name)
{
	for (size_t i = 0; i < node->count; i++) {
		if (strcmp(node->users[i].name, name) == 0)
			return &node->users[i];
	}
	return NULL;
}

/* The user, added (with its snapshot, when with_state) if new. */
static struct fsck_user *get_user(struct fsck_node *node, const char *name,
				  bool with_state, const char **error_r)
{
	struct fsck_user *u = find_user(node, name);
	char fname[SNAPSHOT_NAME_BUFSIZE];
	struct buf data = BUF_INIT;
	const char *why = NULL;
	int ret;

	if (u == NULL) {
		if (node->count == node->cap) {
			size_t cap = node->cap == 0 ? 16 : node->cap * 2;
			void *p = realloc(node->users, cap * sizeof(*u));

			if (p == NULL) {
				*error_r = "out of memory";
				return NULL;
			}
			node->users = p;
			node->cap = cap;
		}
		u = &node->users[node->count];
		memset(u, 0, sizeof(*u));
		u->name = strdup(name);
		if (u->name == NULL) {
			*error_r = "out of memory";
			return NULL;
		}
		node->count++;
	}
	if (!with_state || u->state != NULL)
		return u;
	if (snapshot_name_for_user(name, fname) < 0) {
		*error_r = set_error("%s: user name too long", name);
		return NULL;
	}
	ret = snapshot_read(node->snapshot_dir, fname, &u->snapshot_lsn, &data,
			    &why);
	if (ret < 0) {
		*error_r = set_error("%s: snapshot of %s: %s", node->name,
				     name, why);
		buf_free(&data);
		return NULL;
	}
	if (ret == 0) {
		u->snapshot_lsn = 0;
		u->state = mailstate_new(name);
	} else {
		u->state = mailstate_deserialize(data.data, data.len, &why);
		if (u->state != NULL &&
		    strcmp(mailstate_user(u->state), name) != 0) {
			mailstate_free(&u->state);
			why = "it belongs to another user";
		}
	}
	buf_free(&data);
	if (u->state == NULL) {
		*error_r = set_error("%s: snapshot of %s: %s", node->name,
				     name, why != NULL ? why : "invalid name");
		return NULL;
	}
	return u;
}

static int replay_cb(const struct journal_record *rec, void *ctx,
		     const char **error_r)
{
	struct fsck_node *node = ctx;
	struct fsck_user *u;
	struct jrec jrec;
	struct op *op = NULL;
	const char *why = NULL;

	if (jrec_decode(rec, &jrec, &why) < 0 ||
	    op_decode(jrec.op, jrec.op_len, &op, &why) < 0) {
		if (why == NULL)
			why = "?";
		*error_r = set_error("%s: journal record %" PRIu64 ": %s",
				     node->name, rec->lsn, why);
		if (jrec.clock != NULL)
			jrec_clear(&jrec);
		return -1;
	}
	if (node->only != NULL && strcmp(op->user, node->only) != 0)
		goto out;
	u = get_user(node, op->user, true, error_r);
	if (u == NULL) {
		jrec_clear(&jrec);
		op_free(&op);
		return -1;
	}
	if (jrec.name[0] != '\0')
		snprintf(u->home, sizeof(u->home), "%s", jrec.name);
	if (rec->lsn > u->snapshot_lsn &&
	    mailstate_apply(u->state, op, &why) < 0) {
		fprintf(stderr, "%s: journal record %" PRIu64 " of %s not "
			"applied: %s\n",
			node->name, rec->lsn, op->user, why);
		node->apply_errors++;
	}
out:
	jrec_clear(&jrec);
	op_free(&op);
	return 0;
}

static int load_snapshot_users(struct fsck_node *node, const char **error_r)
{
	DIR *d = opendir(node->snapshot_dir);
	struct dirent *e;
	int ret = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while (ret == 0 && (e = readdir(d)) != NULL) {
		char user[512], base[512];
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len <= 5 || len >= sizeof(base) ||
		    strcmp(e->d_name + len - 5, ".snap") != 0)
			continue;
		memcpy(base, e->d_name, len - 5);
		base[len - 5] = '\0';
		if (snapshot_user_for_name(base, user, sizeof(user)) < 0)
			continue;
		if (get_user(node, user, true, error_r) == NULL)
			ret = -1;
	}
	closedir(d);
	return ret;
}

static int load_maildir_users(struct fsck_node *node, const char **error_r)
{
	DIR *d = opendir(node->maildir_root);
	struct dirent *e;
	int ret = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while (ret == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (get_user(node, e->d_name, false, error_r) == NULL)
			ret = -1;
	}
	closedir(d);
	return ret;
}

int fsck_node_load(const char *name, const char *crdt_root,
		   const char *maildir_root, const char *only_user,
		   struct fsck_node **node_r, const char **error_r)
{
	struct fsck_node *node = calloc(1, sizeof(*node));
	struct journal *j = NULL;
	char *jdir = NULL;
	struct stat st;
	const char *why = NULL;

	*node_r = NULL;
	if (node == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	node->name = strdup(name);
	node->crdt_root = strdup(crdt_root);
	node->maildir_root = strdup(maildir_root);
	node->snapshot_dir = path_join(crdt_root, "snapshots");
	jdir = path_join(crdt_root, "journal");
	node->only = only_user;
	if (node->name == NULL || node->crdt_root == NULL ||
	    node->maildir_root == NULL || node->snapshot_dir == NULL ||
	    jdir == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	/* journal_open would create a missing journal: refuse instead. */
	if (stat(jdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		*error_r = set_error("%s: no journal in %s", name, jdir);
		goto fail;
	}
	if (journal_open(jdir, NULL, &j, &why) < 0) {
		*error_r = set_error("%s: %s (pluto-fsck needs the node "
				     "stopped)",
				     name, why);
		goto fail;
	}
	if (only_user != NULL) {
		if (get_user(node, only_user, true, error_r) == NULL)
			goto fail;
	} else if (load_snapshot_users(node, error_r) < 0) {
		if (errno != 0 && *error_r == NULL)
			*error_r = set_error("%s: cannot list snapshots: %s",
					     name, strerror(errno));
		goto fail;
	}
	*error_r = NULL;
	if (journal_read_from(j, journal_first_lsn(j), replay_cb, node,
			      error_r) < 0)
		goto fail;
	if (only_user == NULL && load_maildir_users(node, error_r) < 0) {
		if (*error_r == NULL)
			*error_r = set_error("%s: cannot list %s: %s", name,
					     maildir_root, strerror(errno));
		goto fail;
	}
	journal_free(&j);
	free(jdir);
	*node_r = node;
	return 0;
fail:
	journal_free(&j);
	free(jdir);
	fsck_node_free(&node);
	return -1;
}

void fsck_node_free(struct fsck_node **nodep)
{
	struct fsck_node *node = *nodep;

	if (node == NULL)
		return;
	for (size_t i = 0; i < node->count; i++) {
		free(node->users[i].name);
		mailstate_free(&node->users[i].state);
	}
	free(node->users);
	free(node->name);
	free(node->crdt_root);
	free(node->maildir_root);
	free(node->snapshot_dir);
	free(node);
	*nodep = NULL;
}

size_t fsck_node_apply_errors(const struct fsck_node *node)
{
	return node->apply_errors;
}

/*
 * Comparison.
 */

struct report {
	FILE *out;
	size_t *diffs;
	const char *user;
	const char *a, *b;	/* node names */
};

static void diff(struct report *r, const char *fmt, ...) PLUTO_PRINTF(2, 3);

static void diff(struct report *r, const char *fmt, ...)
{
	va_list ap;

	fprintf(r->out, "%s: ", r->user);
	va_start(ap, fmt);
	vfprintf(r->out, fmt, ap);
	va_end(ap);
	fputc('\n', r->out);
	(*r->diffs)++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_msg_tag(const void *a, const void *b)
{
	const struct mailstate_msg *x = *(const struct mailstate_msg *const *)a;
	const struct mailstate_msg *y = *(const struct mailstate_msg *const *)b;

	return strcmp(x->tag, y->tag);
}

static int cmp_casestr(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* Flags and keywords of a message, canonically, into out. */
static void flags_text(const struct mailstate_msg *m, char *out, size_t size)
{
	const char *kw[MAILSTATE_KEYWORDS_MAX];
	size_t n = mailstate_msg_keywords(m, kw, MAILSTATE_KEYWORDS_MAX);
	size_t len = 0;

	out[0] = '\0';
	for (unsigned bit = 1; bit <= OP_FLAGS_ALL; bit <<= 1) {
		if ((m->flags & bit) != 0 && len < size)
			len += (size_t)snprintf(out + len, size - len, "%s%s",
						len > 0 ? " " : "",
						op_flag_name(bit));
	}
	if (n > MAILSTATE_KEYWORDS_MAX)
		n = MAILSTATE_KEYWORDS_MAX;
	if (n > 1)
		qsort(kw, n, sizeof(kw[0]), cmp_casestr);
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%s",
					len > 0 ? " " : "", kw[i]);
	if (len == 0)
		snprintf(out, size, "(none)");
}

/* The messages of box sorted by tag (caller frees), or NULL. */
static const struct mailstate_msg **
sorted_msgs(const struct mailstate_mailbox *box, size_t *count_r)
{
	size_t n = mailstate_mailbox_count(box);
	const struct mailstate_msg **v = calloc(n + 1, sizeof(*v));

	*count_r = n;
	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		v[i] = mailstate_mailbox_msg_at(box, i);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_msg_tag);
	return v;
}

static int compare_mailbox(struct report *r, const char *name,
			   const struct mailstate_mailbox *ba,
			   const struct mailstate_mailbox *bb)
{
	const struct mailstate_msg **ma, **mb;
	size_t na, nb, i = 0, k = 0;

	if (mailstate_mailbox_uidvalidity(ba) !=
	    mailstate_mailbox_uidvalidity(bb))
		diff(r, "mailbox %s: UIDVALIDITY %u on %s, %u on %s", name,
		     mailstate_mailbox_uidvalidity(ba), r->a,
		     mailstate_mailbox_uidvalidity(bb), r->b);
	if (mailstate_mailbox_uidnext(ba) != mailstate_mailbox_uidnext(bb))
		diff(r, "mailbox %s: UIDNEXT %" PRIu64 " on %s, %" PRIu64
		     " on %s",
		     name, mailstate_mailbox_uidnext(ba), r->a,
		     mailstate_mailbox_uidnext(bb), r->b);
	ma = sorted_msgs(ba, &na);
	mb = sorted_msgs(bb, &nb);
	if (ma == NULL || mb == NULL) {
		free(ma);
		free(mb);
		return -1;
	}
	while (i < na || k < nb) {
		int c = i == na ? 1 : k == nb ? -1
					      : strcmp(ma[i]->tag, mb[k]->tag);
		char fa[512], fb[512];

		if (c < 0) {
			diff(r, "mailbox %s: message %s (UID %u): only on %s",
			     name, ma[i]->tag, ma[i]->uid, r->a);
			i++;
			continue;
		}
		if (c > 0) {
			diff(r, "mailbox %s: message %s (UID %u): only on %s",
			     name, mb[k]->tag, mb[k]->uid, r->b);
			k++;
			continue;
		}
		if (ma[i]->uid != mb[k]->uid)
			diff(r, "mailbox %s: message %s: UID %u on %s, %u on %s",
			     name, ma[i]->tag, ma[i]->uid, r->a, mb[k]->uid,
			     r->b);
		flags_text(ma[i], fa, sizeof(fa));
		flags_text(mb[k], fb, sizeof(fb));
		if (strcmp(fa, fb) != 0)
			diff(r, "mailbox %s: message %s: flags %s on %s, %s "
			     "on %s",
			     name, ma[i]->tag, fa, r->a, fb, r->b);
		if (ma[i]->size != mb[k]->size)
			diff(r, "mailbox %s: message %s: size %" PRIu64
			     " on %s, %" PRIu64 " on %s",
			     name, ma[i]->tag, ma[i]->size, r->a, mb[k]->size,
			     r->b);
		if (ma[i]->internal_date != mb[k]->internal_date)
			diff(r, "mailbox %s: message %s: internal date %" PRId64
			     " on %s, %" PRId64 " on %s",
			     name, ma[i]->tag, ma[i]->internal_date, r->a,
			     mb[k]->internal_date, r->b);
		i++;
		k++;
	}
	free(ma);
	free(mb);
	return 0;
}

static int compare_state(struct report *r, struct mailstate *sa,
			 struct mailstate *sb)
{
	const char **la = NULL, **lb = NULL;
	size_t na = 0, nb = 0, i = 0, k = 0;
	int ret = 0;

	if (mailstate_mailbox_list(sa, &la, &na) < 0 ||
	    mailstate_mailbox_list(sb, &lb, &nb) < 0) {
		free(la);
		return -1;
	}
	while (ret == 0 && (i < na || k < nb)) {
		int c = i == na ? 1 : k == nb ? -1 : strcmp(la[i], lb[k]);

		if (c < 0) {
			diff(r, "mailbox %s: only on %s", la[i++], r->a);
		} else if (c > 0) {
			diff(r, "mailbox %s: only on %s", lb[k++], r->b);
		} else {
			ret = compare_mailbox(
				r, la[i], mailstate_mailbox_find(sa, la[i]),
				mailstate_mailbox_find(sb, lb[k]));
			i++;
			k++;
		}
	}
	free(la);
	free(lb);
	return ret;
}

/* "folder/cur/name size" lines of a user's Maildir, sorted. */
struct file_set {
	char **items;
	size_t count, cap;
};

static int file_set_add(struct file_set *fs, const char *folder,
			const char *sub, const char *name, long long size)
{
	size_t len;
	char *item;

	if (fs->count == fs->cap) {
		size_t cap = fs->cap == 0 ? 64 : fs->cap * 2;
		void *p = realloc(fs->items, cap * sizeof(*fs->items));

		if (p == NULL)
			return -1;
		fs->items = p;
		fs->cap = cap;
	}
	len = strlen(folder) + strlen(sub) + strlen(name) + 32;
	item = malloc(len);
	if (item == NULL)
		return -1;
	snprintf(item, len, "%s%s%s/%s\t%lld", folder, folder[0] ? "/" : "",
		 sub, name, size);
	fs->items[fs->count++] = item;
	return 0;
}

static void file_set_free(struct file_set *fs)
{
	for (size_t i = 0; i < fs->count; i++)
		free(fs->items[i]);
	free(fs->items);
	memset(fs, 0, sizeof(*fs));
}

static int list_folder(struct file_set *fs, const char *udir,
		       const char *folder)
{
	static const char *const subs[] = { "cur", "new" };

	for (size_t s = 0; s < 2; s++) {
		char path[4096];
		DIR *d;
		struct dirent *e;

		if (snprintf(path, sizeof(path), "%s/%s%s%s", udir, folder,
			     folder[0] ? "/" : "", subs[s]) >= (int)sizeof(path))
			return -1;
		d = opendir(path);
		if (d == NULL) {
			if (errno == ENOENT)
				continue;
			return -1;
		}
		while ((e = readdir(d)) != NULL) {
			char fpath[8192];
			struct stat st;

			if (e->d_name[0] == '.')
				continue;
			snprintf(fpath, sizeof(fpath), "%s/%s", path,
				 e->d_name);
			if (stat(fpath, &st) < 0)
				st.st_size = -1;
			if (file_set_add(fs, folder, subs[s], e->d_name,
					 (long long)st.st_size) < 0) {
				closedir(d);
				return -1;
			}
		}
		closedir(d);
	}
	return 0;
}

static int list_maildir(const struct fsck_node *node, const char *user,
			struct file_set *fs, const char **error_r)
{
	char udir[4096];
	DIR *d;
	struct dirent *e;

	memset(fs, 0, sizeof(*fs));
	if (strchr(user, '/') != NULL || user[0] == '.' ||
	    snprintf(udir, sizeof(udir), "%s/%s", node->maildir_root, user) >=
		    (int)sizeof(udir)) {
		*error_r = set_error("%s: user name unusable as a directory",
				     user);
		return -1;
	}
	d = opendir(udir);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = set_error("%s: cannot read %s: %s", node->name,
				     udir, strerror(errno));
		return -1;
	}
	if (list_folder(fs, udir, "") < 0)
		goto fail;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0)
			continue;
		if (list_folder(fs, udir, e->d_name) < 0)
			goto fail;
	}
	closedir(d);
	if (fs->count > 1)
		qsort(fs->items, fs->count, sizeof(*fs->items), cmp_str);
	return 0;
fail:
	*error_r = set_error("%s: cannot read the Maildir of %s: %s",
			     node->name, user, strerror(errno));
	closedir(d);
	file_set_free(fs);
	return -1;
}

static void split_item(const char *item, char *name, size_t size,
		       const char **size_r)
{
	const char *tab = strrchr(item, '\t');
	size_t len = tab != NULL ? (size_t)(tab - item) : strlen(item);

	if (len >= size)
		len = size - 1;
	memcpy(name, item, len);
	name[len] = '\0';
	*size_r = tab != NULL ? tab + 1 : "?";
}

static void compare_files(struct report *r, struct file_set *fa,
			  struct file_set *fb)
{
	size_t i = 0, k = 0;

	while (i < fa->count || k < fb->count) {
		char na[4096], nb[4096];
		const char *sa = "", *sb = "";
		int c;

		if (i < fa->count)
			split_item(fa->items[i], na, sizeof(na), &sa);
		if (k < fb->count)
			split_item(fb->items[k], nb, sizeof(nb), &sb);
		c = i == fa->count ? 1 : k == fb->count ? -1 : strcmp(na, nb);
		if (c < 0) {
			diff(r, "maildir %s: only on %s", na, r->a);
			i++;
		} else if (c > 0) {
			diff(r, "maildir %s: only on %s", nb, r->b);
			k++;
		} else {
			if (strcmp(sa, sb) != 0)
				diff(r, "maildir %s: %s bytes on %s, %s bytes "
				     "on %s",
				     na, sa, r->a, sb, r->b);
			i++;
			k++;
		}
	}
}

int fsck_compare_user(struct fsck_node *a, struct fsck_node *b,
		      const char *user, FILE *out, size_t *diffs,
		      const char **error_r)
{
	struct report r = { out, diffs, user, a->name, b->name };
	struct fsck_user *ua = find_user(a, user), *ub = find_user(b, user);
	struct file_set fa, fb;
	int ret = 0;

	if (ua == NULL || ua->state == NULL) {
		if (ub != NULL && ub->state != NULL)
			diff(&r, "mail state only on %s", b->name);
	} else if (ub == NULL || ub->state == NULL) {
		diff(&r, "mail state only on %s", a->name);
	} else if (compare_state(&r, ua->state, ub->state) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	if (list_maildir(a, user, &fa, error_r) < 0)
		return -1;
	if (list_maildir(b, user, &fb, error_r) < 0) {
		file_set_free(&fa);
		return -1;
	}
	compare_files(&r, &fa, &fb);
	file_set_free(&fa);
	file_set_free(&fb);
	return ret;
}

/* A user only storage knows belongs to another worker when storage
 * learnt a different home for it. */
static bool other_workers_user(struct fsck_node *storage,
			       const struct fsck_node *worker,
			       const char *user)
{
	const struct fsck_user *u = find_user(storage, user);

	return u != NULL && u->home[0] != '\0' &&
	       strcmp(u->home, worker->name) != 0;
}

int fsck_compare_all(struct fsck_node *a, struct fsck_node *b, FILE *out,
		     size_t *diffs, const char **error_r)
{
	const char **names = calloc(a->count + b->count + 1, sizeof(*names));
	size_t n = 0;
	int ret = 0;

	if (names == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < a->count; i++)
		names[n++] = a->users[i].name;
	for (size_t i = 0; i < b->count; i++) {
		if (find_user(a, b->users[i].name) == NULL)
			names[n++] = b->users[i].name;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		bool in_a = find_user(a, names[i]) != NULL;
		bool in_b = find_user(b, names[i]) != NULL;

		if (!in_a && strcmp(b->name, "storage") == 0 &&
		    other_workers_user(b, a, names[i]))
			continue;
		if (!in_b && strcmp(a->name, "storage") == 0 &&
		    other_workers_user(a, b, names[i]))
			continue;
		ret = fsck_compare_user(a, b, names[i], out, diffs, error_r);
	}
	free(names);
	return ret;
}
