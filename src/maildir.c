/*
 * maildir.c - Maildir++ files for one user, durable and replica-identical.
 *
 * Every path is relative to a directory descriptor of the user's root,
 * opened once without following a symlink, and is built only from names
 * that passed mailbox_name_to_dir(), maildir_tag_validate() or names this
 * file makes itself; the *at() calls then keep every operation inside the
 * root.  Changes follow the usual Maildir discipline, with fsync added
 * where a crash could otherwise lose an acknowledged change: write in tmp/,
 * fsync the file, link into cur/, fsync cur/.  Folders are created and
 * deleted through staging directories in the root's tmp/ so each appears
 * or disappears with one rename.  Nothing here takes locks: the caller
 * serialises work on one user.
 */
#include "autoconfig.h"

#include "maildir.h"

#include "buf.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Files in tmp/ older than this, not ours, are abandoned (Maildir spec). */
#define MAILDIR_TMP_STALE_SECS (36 * 60 * 60)
/* Folders hold cur/new/tmp and files: anything deeper is not ours. */
#define MAILDIR_RMTREE_DEPTH 4
#define MAILDIR_STAGING_PREFIX "pluto-"
/* Room for "pluto-<pid>-<seq>-<tag>" and for "<dir>/cur". */
#define MAILDIR_NAME_BUFSIZE 256

struct maildir {
	int root_fd;		/* the user's root, O_DIRECTORY */
	char sep;
};

struct maildir_delivery {
	int fd;			/* the tmp file */
	int tmp_fd;		/* the mailbox's tmp/ */
	int cur_fd;		/* the mailbox's cur/ */
	bool failed;
	char tmp_name[MAILDIR_NAME_BUFSIZE];
	char final_name[MAILDIR_FILENAME_BUFSIZE];
};

static const char maildir_flag_letters[] = "DFRST";

static _Thread_local char maildir_error_buf[256];
static atomic_uint maildir_seq;

/* Formats "<what>: strerror(errno)" into the thread's error buffer,
 * keeping errno. */
static const char *maildir_syserr(const char *fmt, ...) PLUTO_PRINTF(1, 2);
static const char *maildir_syserr(const char *fmt, ...)
{
	int saved = errno;
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(maildir_error_buf, sizeof(maildir_error_buf), fmt, ap);
	va_end(ap);
	len = strlen(maildir_error_buf);
	snprintf(maildir_error_buf + len, sizeof(maildir_error_buf) - len,
		 ": %s", strerror(saved));
	errno = saved;
	return maildir_error_buf;
}

static void close_keep_errno(int fd)
{
	int saved = errno;

	if (fd >= 0)
		close(fd);
	errno = saved;
}

/* Set by maildir_set_lazy() for the calling thread only. */
static _Thread_local bool lazy;

void maildir_set_lazy(bool on)
{
	lazy = on;
}

bool maildir_is_lazy(void)
{
	return lazy;
}

/* A message file's data, before its name appears. */
static int sync_file(int fd)
{
	return lazy ? 0 : fsync(fd);
}

/* Some file systems cannot sync a directory and say EINVAL: nothing more
 * can be done there, so that is not an error. */
static int fsync_dir(int fd)
{
	if (lazy)
		return 0;
	if (fsync(fd) < 0 && errno != EINVAL)
		return -1;
	return 0;
}

int maildir_user_validate(const void *user, size_t len, const char **error_r)
{
	const unsigned char *p = user;

	if (len == 0) {
		*error_r = "User name is empty";
		return -1;
	}
	if (len > MAILDIR_USER_MAX) {
		*error_r = "User name is too long";
		return -1;
	}
	if (p[0] == '.') {
		*error_r = "User name starts with '.'";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0') {
			*error_r = "User name contains NUL";
			return -1;
		}
		if (p[i] == '/') {
			*error_r = "User name contains '/'";
			return -1;
		}
		if (p[i] <= 0x20 || p[i] >= 0x7f) {
			*error_r = "User name contains a space, control or "
				   "8-bit character";
			return -1;
		}
	}
	return 0;
}

static bool maildir_tag_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int maildir_tag_validate(const char *tag, const char **error_r)
{
	size_t len = strnlen(tag, MAILDIR_TAG_MAX + 1);

	if (len == 0) {
		*error_r = "Message tag is empty";
		return -1;
	}
	if (len > MAILDIR_TAG_MAX) {
		*error_r = "Message tag is too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!maildir_tag_char(tag[i])) {
			*error_r = "Message tag contains an invalid character";
			return -1;
		}
	}
	return 0;
}

int maildir_file_name(const char *tag, unsigned int flags,
		      char name_r[MAILDIR_FILENAME_BUFSIZE],
		      const char **error_r)
{
	size_t len;

	if (maildir_tag_validate(tag, error_r) < 0)
		return -1;
	if ((flags & ~MAILDIR_FLAGS_ALL) != 0) {
		*error_r = "Unknown message flags";
		return -1;
	}
	len = strlen(tag);
	memcpy(name_r, tag, len);
	memcpy(name_r + len, ":2,", 3);
	len += 3;
	for (unsigned int i = 0; i < 5; i++) {
		if ((flags & (1U << i)) != 0)
			name_r[len++] = maildir_flag_letters[i];
	}
	name_r[len] = '\0';
	return 0;
}

int maildir_file_name_parse(const char *name,
			    char tag_r[MAILDIR_TAG_MAX + 1],
			    unsigned int *flags_r)
{
	const char *info = strstr(name, ":2,");
	unsigned int flags = 0, next = 0;
	size_t tag_len;

	if (info == NULL)
		return -1;
	tag_len = (size_t)(info - name);
	if (tag_len == 0 || tag_len > MAILDIR_TAG_MAX)
		return -1;
	for (size_t i = 0; i < tag_len; i++) {
		if (!maildir_tag_char(name[i]))
			return -1;
	}
	/* Letters must be known and strictly ascending: one name per
	 * flag set. */
	for (const char *p = info + 3; *p != '\0'; p++) {
		const char *l = strchr(maildir_flag_letters, *p);
		unsigned int bit;

		if (l == NULL)
			return -1;
		bit = (unsigned int)(l - maildir_flag_letters);
		if (bit < next)
			return -1;
		next = bit + 1;
		flags |= 1U << bit;
	}
	memcpy(tag_r, name, tag_len);
	tag_r[tag_len] = '\0';
	*flags_r = flags;
	return 0;
}

/* Opens dir/sub below the root (dir "" is the root itself), following
 * no symlink at either step. */
static int maildir_open_subdir(struct maildir *md, const char *dir,
			       const char *sub)
{
	int mfd, fd;

	if (dir[0] == '\0')
		return openat(md->root_fd, sub,
			      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	mfd = openat(md->root_fd, dir,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (mfd < 0)
		return -1;
	fd = openat(mfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close_keep_errno(mfd);
	return fd;
}

/* Validates the mailbox and opens its cur/ (or another subdirectory). */
static int maildir_mailbox_subdir(struct maildir *md, const char *mailbox,
				  const char *sub, const char **error_r)
{
	char dir[MAILBOX_DIR_BUFSIZE];
	int fd;

	if (mailbox_name_to_dir(mailbox, md->sep, dir, error_r) < 0)
		return -1;
	fd = maildir_open_subdir(md, dir, sub);
	if (fd < 0) {
		*error_r = errno == ENOENT ? "Mailbox doesn't exist" :
			   maildir_syserr("open(%s)", sub);
		return -1;
	}
	return fd;
}

/* A fresh name for tmp/: unique within this process by the counter, and
 * between processes by the pid.  suffix is a tag or a word. */
static void maildir_staging_name(char name_r[MAILDIR_NAME_BUFSIZE],
				 const char *suffix)
{
	unsigned int seq = atomic_fetch_add(&maildir_seq, 1U);

	snprintf(name_r, MAILDIR_NAME_BUFSIZE, MAILDIR_STAGING_PREFIX
		 "%ld-%u-%s", (long)getpid(), seq, suffix);
}

/* Creates dir and its cur/ new/ tmp/ (mode 0700), tolerating parts that
 * exist, and fsyncs dir when it created something and sync is true (a
 * caller that fsyncs dir itself afterwards passes false).  Returns the
 * number of entries created, or -1. */
static int maildir_make_dirs(int parent_fd, const char *dir, bool sync,
			     const char **error_r)
{
	static const char *const subs[] = { "cur", "new", "tmp" };
	int created = 0, fd;

	if (mkdirat(parent_fd, dir, 0700) == 0)
		created++;
	else if (errno != EEXIST) {
		*error_r = maildir_syserr("mkdir");
		return -1;
	}
	fd = openat(parent_fd, dir,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*error_r = maildir_syserr("open");
		return -1;
	}
	for (size_t i = 0; i < 3; i++) {
		if (mkdirat(fd, subs[i], 0700) == 0) {
			created++;
		} else if (errno != EEXIST) {
			*error_r = maildir_syserr("mkdir(%s)", subs[i]);
			close_keep_errno(fd);
			return -1;
		}
	}
	if (sync && created > 0 && fsync_dir(fd) < 0) {
		*error_r = maildir_syserr("fsync");
		close_keep_errno(fd);
		return -1;
	}
	close(fd);
	return created;
}

int maildir_open(const char *maildir_root, const void *user, size_t user_len,
		 char sep, struct maildir **md_r, const char **error_r)
{
	char name[MAILDIR_USER_MAX + 1];
	struct maildir *md;
	int base_fd, root_fd, created;

	if (maildir_user_validate(user, user_len, error_r) < 0)
		return -1;
	if (!mailbox_name_sep_is_valid(sep)) {
		*error_r = "Invalid hierarchy separator";
		return -1;
	}
	memcpy(name, user, user_len);
	name[user_len] = '\0';
	base_fd = open(maildir_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base_fd < 0) {
		*error_r = maildir_syserr("open(MaildirRoot)");
		return -1;
	}
	created = maildir_make_dirs(base_fd, name, true, error_r);
	if (created > 0 && fsync_dir(base_fd) < 0) {
		*error_r = maildir_syserr("fsync(MaildirRoot)");
		created = -1;
	}
	if (created < 0) {
		close_keep_errno(base_fd);
		return -1;
	}
	root_fd = openat(base_fd, name,
			 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close_keep_errno(base_fd);
	if (root_fd < 0) {
		*error_r = maildir_syserr("open(user root)");
		return -1;
	}
	md = calloc(1, sizeof(*md));
	if (md == NULL) {
		*error_r = "Out of memory";
		close(root_fd);
		return -1;
	}
	md->root_fd = root_fd;
	md->sep = sep;
	*md_r = md;
	return 0;
}

void maildir_free(struct maildir **mdp)
{
	struct maildir *md = *mdp;

	if (md == NULL)
		return;
	close(md->root_fd);
	free(md);
	*mdp = NULL;
}

/* Removes name (a file, or a directory tree at most depth deep) below
 * dir_fd without following symlinks.  Returns 0 or -1 with errno. */
static int maildir_rmtree(int dir_fd, const char *name, unsigned int depth)
{
	struct dirent *de;
	DIR *dir;
	int fd, ret = 0;

	if (unlinkat(dir_fd, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if (depth == 0) {
		errno = ELOOP;
		return -1;
	}
	fd = openat(dir_fd, name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (dir == NULL) {
		close_keep_errno(fd);
		return -1;
	}
	errno = 0;
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (maildir_rmtree(dirfd(dir), de->d_name, depth - 1) < 0) {
			ret = -1;
			break;
		}
	}
	if (ret == 0 && errno != 0)
		ret = -1;
	{
		int saved = errno;

		closedir(dir);
		errno = saved;
	}
	if (ret < 0)
		return -1;
	return unlinkat(dir_fd, name, AT_REMOVEDIR);
}

int maildir_delivery_begin(struct maildir *md, const char *mailbox,
			   const char *tag, unsigned int flags,
			   struct maildir_delivery **d_r,
			   const char **error_r)
{
	struct maildir_delivery *d;

	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		*error_r = "Out of memory";
		return -1;
	}
	d->fd = d->tmp_fd = d->cur_fd = -1;
	if (maildir_file_name(tag, flags, d->final_name, error_r) < 0)
		goto fail;
	d->tmp_fd = maildir_mailbox_subdir(md, mailbox, "tmp", error_r);
	if (d->tmp_fd < 0)
		goto fail;
	d->cur_fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (d->cur_fd < 0)
		goto fail;
	maildir_staging_name(d->tmp_name, tag);
	d->fd = openat(d->tmp_fd, d->tmp_name,
		       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (d->fd < 0) {
		*error_r = maildir_syserr("create(tmp)");
		goto fail;
	}
	*d_r = d;
	return 0;
fail:
	close_keep_errno(d->tmp_fd);
	close_keep_errno(d->cur_fd);
	free(d);
	return -1;
}

int maildir_delivery_write(struct maildir_delivery *d, const void *data,
			   size_t len, const char **error_r)
{
	const unsigned char *p = data;

	if (d->failed) {
		*error_r = "Delivery already failed";
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(d->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			*error_r = maildir_syserr("write(tmp)");
			d->failed = true;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void maildir_delivery_destroy(struct maildir_delivery **dp,
				     bool remove_tmp)
{
	struct maildir_delivery *d = *dp;
	int saved = errno;

	if (d->fd >= 0)
		close(d->fd);
	if (remove_tmp && unlinkat(d->tmp_fd, d->tmp_name, 0) < 0 &&
	    errno != ENOENT)
		log_warn("maildir: cannot remove tmp file %s", d->tmp_name);
	close(d->tmp_fd);
	close(d->cur_fd);
	free(d);
	*dp = NULL;
	errno = saved;
}

void maildir_delivery_abort(struct maildir_delivery **dp)
{
	if (*dp != NULL)
		maildir_delivery_destroy(dp, true);
}

int maildir_delivery_finish(struct maildir_delivery **dp,
			    const char **error_r)
{
	struct maildir_delivery *d = *dp;
	int fd = d->fd;

	if (d->failed) {
		*error_r = "Delivery already failed";
		maildir_delivery_destroy(dp, true);
		return -1;
	}
	d->fd = -1;
	if (sync_file(fd) < 0) {
		*error_r = maildir_syserr("fsync(tmp)");
		close_keep_errno(fd);
		maildir_delivery_destroy(dp, true);
		return -1;
	}
	/* close() can report a deferred write error (NFS). */
	if (close(fd) < 0) {
		*error_r = maildir_syserr("close(tmp)");
		maildir_delivery_destroy(dp, true);
		return -1;
	}
	if (linkat(d->tmp_fd, d->tmp_name, d->cur_fd, d->final_name, 0) < 0) {
		if (errno == EEXIST) {
			maildir_delivery_destroy(dp, true);
			return 0;
		}
		*error_r = maildir_syserr("link(cur)");
		maildir_delivery_destroy(dp, true);
		return -1;
	}
	if (fsync_dir(d->cur_fd) < 0) {
		/* Not durable: take it back out of cur/ so nothing is
		 * visible that could vanish in a crash. */
		*error_r = maildir_syserr("fsync(cur)");
		if (unlinkat(d->cur_fd, d->final_name, 0) < 0)
			log_warn("maildir: cannot withdraw %s", d->final_name);
		maildir_delivery_destroy(dp, true);
		return -1;
	}
	maildir_delivery_destroy(dp, true);
	return 1;
}

#ifdef O_TMPFILE
/* maildir_deliver for file systems with O_TMPFILE: the data goes into an
 * unnamed file of cur/, which is fsynced and then linked in under its
 * final name.  As with tmp/, nobody can see the file before it is whole
 * and durable; unlike tmp/, no name is created and removed again, so the
 * file's fsync does not also write out tmp/'s directory block (ext4
 * without a journal does), and a crash leaves nothing to clean up.
 * Returns like maildir_delivery_finish, or -2 when the file system has no
 * O_TMPFILE (the caller then goes through tmp/). */
static int maildir_deliver_unnamed(struct maildir *md, const char *mailbox,
				   const char *tag, unsigned int flags,
				   const void *data, size_t len,
				   const char **error_r)
{
	char name[MAILDIR_FILENAME_BUFSIZE], proc[64];
	const unsigned char *p = data;
	int cur_fd, fd, ret = -1;

	if (maildir_file_name(tag, flags, name, error_r) < 0)
		return -1;
	cur_fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (cur_fd < 0)
		return -1;
	fd = openat(cur_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EOPNOTSUPP || errno == EISDIR ||
		    errno == EINVAL) {
			close(cur_fd);
			return -2;
		}
		*error_r = maildir_syserr("create(unnamed)");
		close_keep_errno(cur_fd);
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			*error_r = maildir_syserr("write(tmp)");
			goto out;
		}
		p += n;
		len -= (size_t)n;
	}
	if (sync_file(fd) < 0) {
		*error_r = maildir_syserr("fsync(tmp)");
		goto out;
	}
	/* linkat(AT_EMPTY_PATH) needs a capability; the /proc link does
	 * not.  Without /proc, tmp/ it is. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, cur_fd, name, AT_SYMLINK_FOLLOW) < 0) {
		if (errno == EEXIST) {
			ret = 0;
			goto out;
		}
		if (errno == ENOENT) {
			ret = -2;
			goto out;
		}
		*error_r = maildir_syserr("link(cur)");
		goto out;
	}
	if (fsync_dir(cur_fd) < 0) {
		*error_r = maildir_syserr("fsync(cur)");
		if (unlinkat(cur_fd, name, 0) < 0)
			log_warn("maildir: cannot withdraw %s", name);
		goto out;
	}
	ret = 1;
out:
	close_keep_errno(fd);
	close_keep_errno(cur_fd);
	return ret;
}
#endif

int maildir_deliver(struct maildir *md, const char *mailbox, const char *tag,
		    unsigned int flags, const void *data, size_t len,
		    const char **error_r)
{
	struct maildir_delivery *d;

#ifdef O_TMPFILE
	int ret = maildir_deliver_unnamed(md, mailbox, tag, flags, data, len,
					  error_r);

	if (ret != -2)
		return ret;
#endif

	if (maildir_delivery_begin(md, mailbox, tag, flags, &d, error_r) < 0)
		return -1;
	if (maildir_delivery_write(d, data, len, error_r) < 0) {
		maildir_delivery_abort(&d);
		return -1;
	}
	return maildir_delivery_finish(&d, error_r);
}

int maildir_message_open(struct maildir *md, const char *mailbox,
			 const char *tag, unsigned int flags, int *fd_r,
			 uint64_t *size_r, const char **error_r)
{
	char name[MAILDIR_FILENAME_BUFSIZE];
	struct stat st;
	int cur_fd, fd;

	if (maildir_file_name(tag, flags, name, error_r) < 0)
		return -1;
	cur_fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (cur_fd < 0)
		return -1;
	fd = openat(cur_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	close_keep_errno(cur_fd);
	if (fd < 0) {
		*error_r = errno == ENOENT ? "Message file not found" :
			   maildir_syserr("open(message)");
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = maildir_syserr("fstat(message)");
		close_keep_errno(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0) {
		errno = EINVAL;
		*error_r = "Message file is not a regular file";
		close_keep_errno(fd);
		return -1;
	}
	*fd_r = fd;
	*size_r = (uint64_t)st.st_size;
	return 0;
}

int maildir_message_set_flags(struct maildir *md, const char *mailbox,
			      const char *tag, unsigned int old_flags,
			      unsigned int new_flags, const char **error_r)
{
	char old_name[MAILDIR_FILENAME_BUFSIZE];
	char new_name[MAILDIR_FILENAME_BUFSIZE];
	struct stat st;
	int cur_fd;

	if (maildir_file_name(tag, old_flags, old_name, error_r) < 0 ||
	    maildir_file_name(tag, new_flags, new_name, error_r) < 0)
		return -1;
	cur_fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (cur_fd < 0)
		return -1;
	if (old_flags == new_flags) {
		close(cur_fd);
		return 0;
	}
	if (renameat(cur_fd, old_name, cur_fd, new_name) < 0) {
		if (errno == ENOENT &&
		    fstatat(cur_fd, new_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			/* Already renamed: a replay. */
			close(cur_fd);
			return 0;
		}
		*error_r = errno == ENOENT ? "Message file not found" :
			   maildir_syserr("rename(message)");
		close_keep_errno(cur_fd);
		return -1;
	}
	if (fsync_dir(cur_fd) < 0) {
		*error_r = maildir_syserr("fsync(cur)");
		/* Best effort back to the durable state. */
		if (renameat(cur_fd, new_name, cur_fd, old_name) < 0)
			log_warn("maildir: cannot undo rename of %s", old_name);
		close_keep_errno(cur_fd);
		return -1;
	}
	close(cur_fd);
	return 0;
}

int maildir_message_expunge(struct maildir *md, const char *mailbox,
			    const char *tag, unsigned int flags,
			    const char **error_r)
{
	char name[MAILDIR_FILENAME_BUFSIZE];
	int cur_fd;

	if (maildir_file_name(tag, flags, name, error_r) < 0)
		return -1;
	cur_fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (cur_fd < 0)
		return -1;
	if (unlinkat(cur_fd, name, 0) < 0) {
		if (errno == ENOENT) {
			close(cur_fd);
			return 0;
		}
		*error_r = maildir_syserr("unlink(message)");
		close_keep_errno(cur_fd);
		return -1;
	}
	if (fsync_dir(cur_fd) < 0) {
		*error_r = maildir_syserr("fsync(cur)");
		close_keep_errno(cur_fd);
		return -1;
	}
	close(cur_fd);
	return 1;
}

int maildir_message_list(struct maildir *md, const char *mailbox,
			 maildir_message_cb *cb, void *ctx,
			 const char **error_r)
{
	char tag[MAILDIR_TAG_MAX + 1];
	struct dirent *de;
	unsigned int flags;
	struct stat st;
	DIR *dir;
	int fd, ret = 0;

	fd = maildir_mailbox_subdir(md, mailbox, "cur", error_r);
	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (dir == NULL) {
		*error_r = maildir_syserr("opendir(cur)");
		close_keep_errno(fd);
		return -1;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			if (errno != 0) {
				*error_r = maildir_syserr("readdir(cur)");
				ret = -1;
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (maildir_file_name_parse(de->d_name, tag, &flags) < 0 ||
		    fstatat(dirfd(dir), de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode)) {
			log_warnx("maildir: skipping foreign entry in cur/");
			continue;
		}
		if (cb(tag, flags, (uint64_t)st.st_size, ctx) < 0) {
			*error_r = "Listing stopped by the caller";
			ret = -1;
			break;
		}
	}
	closedir(dir);
	return ret;
}

bool maildir_mailbox_exists(struct maildir *md, const char *mailbox)
{
	char dir[MAILBOX_DIR_BUFSIZE];
	const char *error;
	struct stat st;

	if (mailbox_name_to_dir(mailbox, md->sep, dir, &error) < 0)
		return false;
	if (dir[0] == '\0')
		return true;
	return fstatat(md->root_fd, dir, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode);
}

int maildir_mailbox_create(struct maildir *md, const char *mailbox,
			   const char **error_r)
{
	char dir[MAILBOX_DIR_BUFSIZE], staging[MAILDIR_NAME_BUFSIZE];
	struct stat st;
	int tmp_fd, sfd, ffd;

	if (mailbox_name_to_dir(mailbox, md->sep, dir, error_r) < 0)
		return -1;
	if (dir[0] == '\0') {
		*error_r = "INBOX always exists";
		return -1;
	}
	if (fstatat(md->root_fd, dir, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		*error_r = "Mailbox already exists";
		return -1;
	}
	tmp_fd = maildir_open_subdir(md, "", "tmp");
	if (tmp_fd < 0) {
		*error_r = maildir_syserr("open(tmp)");
		return -1;
	}
	maildir_staging_name(staging, "mbox");
	/* The staging folder is fsynced once, below, after maildirfolder
	 * is in it too: that covers cur/, new/ and tmp/ as well. */
	if (maildir_make_dirs(tmp_fd, staging, false, error_r) < 0)
		goto fail;
	sfd = openat(tmp_fd, staging,
		     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0) {
		*error_r = maildir_syserr("open(staging)");
		goto fail;
	}
	ffd = openat(sfd, "maildirfolder",
		     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     0600);
	if (ffd < 0 || close(ffd) < 0 || fsync_dir(sfd) < 0) {
		*error_r = maildir_syserr("create(maildirfolder)");
		close_keep_errno(sfd);
		goto fail;
	}
	close(sfd);
	if (renameat(tmp_fd, staging, md->root_fd, dir) < 0) {
		*error_r = errno == EEXIST || errno == ENOTEMPTY ?
			"Mailbox already exists" :
			maildir_syserr("rename(folder)");
		goto fail;
	}
	if (fsync_dir(md->root_fd) < 0) {
		*error_r = maildir_syserr("fsync(root)");
		/* Not durable: withdraw it again. */
		if (renameat(md->root_fd, dir, tmp_fd, staging) < 0)
			log_warn("maildir: cannot withdraw new folder");
		goto fail;
	}
	close(tmp_fd);
	return 0;
fail:
	if (maildir_rmtree(tmp_fd, staging, MAILDIR_RMTREE_DEPTH) < 0)
		log_warn("maildir: cannot remove staging folder %s", staging);
	close_keep_errno(tmp_fd);
	return -1;
}

int maildir_mailbox_delete(struct maildir *md, const char *mailbox,
			   const char **error_r)
{
	char dir[MAILBOX_DIR_BUFSIZE], staging[MAILDIR_NAME_BUFSIZE];
	int tmp_fd;

	if (mailbox_name_to_dir(mailbox, md->sep, dir, error_r) < 0)
		return -1;
	if (dir[0] == '\0') {
		*error_r = "INBOX cannot be deleted";
		return -1;
	}
	tmp_fd = maildir_open_subdir(md, "", "tmp");
	if (tmp_fd < 0) {
		*error_r = maildir_syserr("open(tmp)");
		return -1;
	}
	maildir_staging_name(staging, "del");
	if (renameat(md->root_fd, dir, tmp_fd, staging) < 0) {
		*error_r = errno == ENOENT ? "Mailbox doesn't exist" :
			   maildir_syserr("rename(folder)");
		close_keep_errno(tmp_fd);
		return -1;
	}
	if (fsync_dir(md->root_fd) < 0) {
		*error_r = maildir_syserr("fsync(root)");
		if (renameat(tmp_fd, staging, md->root_fd, dir) < 0)
			log_warn("maildir: cannot restore deleted folder");
		close_keep_errno(tmp_fd);
		return -1;
	}
	/* The mailbox is gone; what is left is garbage in tmp/ that the
	 * next start-up removes if this fails. */
	if (maildir_rmtree(tmp_fd, staging, MAILDIR_RMTREE_DEPTH) < 0)
		log_warn("maildir: cannot remove deleted folder %s", staging);
	close(tmp_fd);
	return 0;
}

/* Calls fn for each root entry that is a valid mailbox folder (a
 * directory whose name maps back to a name); stops at fn's first
 * negative return.  Returns 0, -1 with *error_r set by fn or here. */
typedef int maildir_folder_fn(struct maildir *md, const char *dir,
			      const char *name, void *ctx,
			      const char **error_r);
static int maildir_walk_folders(struct maildir *md, maildir_folder_fn *fn,
				void *ctx, const char **error_r)
{
	char name[MAILBOX_NAME_BUFSIZE];
	const char *map_error;
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int fd, ret = 0;

	fd = openat(md->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = maildir_syserr("open(root)");
		return -1;
	}
	dir = fdopendir(fd);
	if (dir == NULL) {
		*error_r = maildir_syserr("opendir(root)");
		close_keep_errno(fd);
		return -1;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			if (errno != 0) {
				*error_r = maildir_syserr("readdir(root)");
				ret = -1;
			}
			break;
		}
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(md->root_fd, de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (mailbox_name_from_dir(de->d_name, md->sep, name,
					  &map_error) < 0) {
			log_debug("maildir: skipping folder that is no "
				  "mailbox name (%s)", map_error);
			continue;
		}
		if (fn(md, de->d_name, name, ctx, error_r) < 0) {
			ret = -1;
			break;
		}
	}
	closedir(dir);
	return ret;
}

struct maildir_list_ctx {
	maildir_mailbox_cb *cb;
	void *ctx;
};

static int maildir_list_one(struct maildir *md, const char *dir,
			    const char *name, void *ctx, const char **error_r)
{
	struct maildir_list_ctx *lc = ctx;
	struct stat st;
	char cur[MAILBOX_DIR_BUFSIZE + 4];

	snprintf(cur, sizeof(cur), "%s/cur", dir);
	if (fstatat(md->root_fd, cur, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		log_debug("maildir: skipping folder without cur/");
		return 0;
	}
	if (lc->cb(name, lc->ctx) < 0) {
		*error_r = "Listing stopped by the caller";
		return -1;
	}
	return 0;
}

int maildir_mailbox_list(struct maildir *md, maildir_mailbox_cb *cb,
			 void *ctx, const char **error_r)
{
	struct maildir_list_ctx lc = { cb, ctx };

	if (cb(MAILBOX_NAME_INBOX, ctx) < 0) {
		*error_r = "Listing stopped by the caller";
		return -1;
	}
	return maildir_walk_folders(md, maildir_list_one, &lc, error_r);
}

struct maildir_rename_ctx {
	const char *old_dir;
	size_t old_len;
	struct buf dirs;	/* NUL-separated folders to move */
};

static int maildir_rename_collect(struct maildir *md, const char *dir,
				  const char *name, void *ctx,
				  const char **error_r)
{
	struct maildir_rename_ctx *rc = ctx;

	(void)md;
	(void)name;
	if (strncmp(dir, rc->old_dir, rc->old_len) != 0 ||
	    (dir[rc->old_len] != '\0' && dir[rc->old_len] != '.'))
		return 0;
	if (buf_append(&rc->dirs, dir, strlen(dir) + 1) < 0) {
		*error_r = "Out of memory";
		return -1;
	}
	return 0;
}

/* The folder that dir (old_dir or one of its children) moves to. */
static int maildir_rename_target(struct maildir *md, const char *dir,
				 size_t old_len, const char *new_dir,
				 char target_r[MAILBOX_DIR_BUFSIZE],
				 const char **error_r)
{
	char name[MAILBOX_NAME_BUFSIZE];
	size_t new_len = strlen(new_dir), rest = strlen(dir + old_len);

	if (new_len + rest >= MAILBOX_DIR_BUFSIZE) {
		*error_r = "Mailbox name is too long for a child mailbox";
		return -1;
	}
	memcpy(target_r, new_dir, new_len);
	memcpy(target_r + new_len, dir + old_len, rest + 1);
	if (mailbox_name_from_dir(target_r, md->sep, name, error_r) < 0)
		return -1;
	return 0;
}

int maildir_mailbox_rename(struct maildir *md, const char *old_name,
			   const char *new_name, const char **error_r)
{
	char old_dir[MAILBOX_DIR_BUFSIZE], new_dir[MAILBOX_DIR_BUFSIZE];
	char target[MAILBOX_DIR_BUFSIZE];
	struct maildir_rename_ctx rc;
	const char *dir;
	struct stat st;
	size_t pos, done_end = 0;
	bool old_exists = false;
	int ret = -1;

	if (mailbox_name_to_dir(old_name, md->sep, old_dir, error_r) < 0 ||
	    mailbox_name_to_dir(new_name, md->sep, new_dir, error_r) < 0)
		return -1;
	if (old_dir[0] == '\0') {
		*error_r = "Renaming INBOX is not supported";
		return -1;
	}
	if (new_dir[0] == '\0' || strcmp(old_dir, new_dir) == 0) {
		*error_r = "Mailbox already exists";
		return -1;
	}
	rc.old_dir = old_dir;
	rc.old_len = strlen(old_dir);
	if (strncmp(new_dir, old_dir, rc.old_len) == 0 &&
	    new_dir[rc.old_len] == '.') {
		*error_r = "Cannot rename a mailbox into its own hierarchy";
		return -1;
	}
	buf_init(&rc.dirs);
	if (maildir_walk_folders(md, maildir_rename_collect, &rc,
				 error_r) < 0)
		goto out;
	/* Check every move before making any. */
	for (pos = 0; pos < rc.dirs.len; pos += strlen(dir) + 1) {
		dir = (const char *)rc.dirs.data + pos;
		if (strcmp(dir, old_dir) == 0)
			old_exists = true;
		if (maildir_rename_target(md, dir, rc.old_len, new_dir,
					  target, error_r) < 0)
			goto out;
		if (fstatat(md->root_fd, target, &st,
			    AT_SYMLINK_NOFOLLOW) == 0) {
			*error_r = "Mailbox already exists";
			goto out;
		}
	}
	/* old_dir gone but new_dir there: a replay of a rename that a
	 * crash interrupted; move whatever children are left. */
	if (!old_exists &&
	    fstatat(md->root_fd, new_dir, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		*error_r = "Mailbox doesn't exist";
		goto out;
	}
	for (pos = 0; pos < rc.dirs.len; pos += strlen(dir) + 1) {
		dir = (const char *)rc.dirs.data + pos;
		if (maildir_rename_target(md, dir, rc.old_len, new_dir,
					  target, error_r) < 0)
			goto undo;
		if (renameat(md->root_fd, dir, md->root_fd, target) < 0) {
			*error_r = maildir_syserr("rename(folder)");
			goto undo;
		}
		done_end = pos + strlen(dir) + 1;
	}
	if (fsync_dir(md->root_fd) < 0) {
		*error_r = maildir_syserr("fsync(root)");
		goto undo;
	}
	ret = 0;
	goto out;
undo:
	for (pos = 0; pos < done_end; pos += strlen(dir) + 1) {
		const char *ignored;

		dir = (const char *)rc.dirs.data + pos;
		if (maildir_rename_target(md, dir, rc.old_len, new_dir,
					  target, &ignored) == 0 &&
		    renameat(md->root_fd, target, md->root_fd, dir) < 0)
			log_warn("maildir: cannot undo folder rename");
	}
	(void)fsync_dir(md->root_fd);
out:
	buf_free(&rc.dirs);
	return ret;
}

/* Empties one tmp/ of pluto's leftovers and stale foreign files. */
static int maildir_clean_one_tmp(int tmp_fd, unsigned int *removed,
				 const char **error_r)
{
	time_t now = time(NULL);
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int fd, ret = 0;

	fd = dup(tmp_fd);
	if (fd < 0) {
		*error_r = maildir_syserr("dup");
		return -1;
	}
	dir = fdopendir(fd);
	if (dir == NULL) {
		*error_r = maildir_syserr("opendir(tmp)");
		close_keep_errno(fd);
		return -1;
	}
	for (;;) {
		bool ours;

		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			if (errno != 0) {
				*error_r = maildir_syserr("readdir(tmp)");
				ret = -1;
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(tmp_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		ours = strncmp(de->d_name, MAILDIR_STAGING_PREFIX,
			       strlen(MAILDIR_STAGING_PREFIX)) == 0;
		if (!ours && (S_ISDIR(st.st_mode) ||
			      now - st.st_mtime < MAILDIR_TMP_STALE_SECS))
			continue;
		if (maildir_rmtree(tmp_fd, de->d_name,
				   MAILDIR_RMTREE_DEPTH) < 0) {
			*error_r = maildir_syserr("remove(tmp entry)");
			ret = -1;
			break;
		}
		(*removed)++;
	}
	closedir(dir);
	return ret;
}

static int maildir_clean_folder(struct maildir *md, const char *dir,
				const char *name, void *ctx,
				const char **error_r)
{
	int tmp_fd, ret;

	(void)name;
	tmp_fd = maildir_open_subdir(md, dir, "tmp");
	if (tmp_fd < 0)
		return 0;	/* no tmp/: nothing to clean */
	ret = maildir_clean_one_tmp(tmp_fd, ctx, error_r);
	close(tmp_fd);
	return ret;
}

int maildir_cleanup_tmp(struct maildir *md, unsigned int *removed_r,
			const char **error_r)
{
	unsigned int removed = 0;
	int ret;

	ret = maildir_clean_folder(md, "", MAILBOX_NAME_INBOX, &removed,
				   error_r);
	if (ret == 0)
		ret = maildir_walk_folders(md, maildir_clean_folder, &removed,
					   error_r);
	if (removed_r != NULL)
		*removed_r = removed;
	return ret;
}
