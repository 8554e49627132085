/*
 * snapshot.c - atomic per-user snapshot files with a CRC-32C trailer.
 *
 * The write path is the classic tmp + fsync + rename + fsync(dir): the
 * rename is atomic, the first fsync makes sure the new name never points
 * at data that is not on disk yet, and the directory fsync makes the rename
 * itself durable before the caller trims the journal it allows to drop.
 * Reads verify the exact file size against the length field before
 * allocating, so a corrupt length cannot make us allocate or read more than
 * the file holds.  No locks: callers serialise writes of one name.
 */
#include "autoconfig.h"

#include "snapshot.h"

#include "crc32c.h"
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SNAPSHOT_MAGIC 0x50534E31U	/* "PSN1" */
#define SNAPSHOT_HEADER_SIZE 20
#define SNAPSHOT_TRAILER_SIZE 4
#define SNAPSHOT_SUFFIX ".snap"
#define SNAPSHOT_TMP_PREFIX ".tmp-"
/* DIR-relative names: prefix + NAME + "-XXXXXX" or NAME + suffix. */
#define SNAPSHOT_FILE_MAX (SNAPSHOT_NAME_MAX + 16)

static _Thread_local char snapshot_errbuf[512];

static const char *snapshot_err(bool with_errno, const char *fmt, ...)
	PLUTO_PRINTF(2, 3);

static const char *snapshot_err(bool with_errno, const char *fmt, ...)
{
	const char *msg;
	va_list ap;

	va_start(ap, fmt);
	msg = fileio_error(snapshot_errbuf, sizeof(snapshot_errbuf), with_errno, fmt, ap);
	va_end(ap);
	return msg;
}

bool snapshot_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > SNAPSHOT_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("._@+=,-", c) != NULL)
			continue;
		return false;
	}
	return true;
}

int snapshot_name_for_user(const char *user, char out[SNAPSHOT_NAME_BUFSIZE])
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)user; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') ||
			     (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') ||
			     strchr("._@+,-", *p) != NULL;

		/* Room for an escape and the NUL, whatever comes. */
		if (n + 4 > SNAPSHOT_NAME_BUFSIZE)
			return -1;
		if (plain && !(n == 0 && *p == '.')) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '=';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return n > 0 ? 0 : -1;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int snapshot_user_for_name(const char *name, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = name; *p != '\0'; p++) {
		int c = (unsigned char)*p;

		if (*p == '=') {
			int hi = hex_value(p[1]);
			int lo = hi < 0 ? -1 : hex_value(p[2]);

			if (lo < 0)
				return -1;
			c = hi * 16 + lo;
			p += 2;
		}
		if (c == 0 || n + 1 >= size)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return n > 0 ? 0 : -1;
}

static int open_dir(const char *dir, const char **error_r)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		*error_r = snapshot_err(true, "open snapshot directory %s",
					dir);
	return fd;
}

static int sync_fd(int fd)
{
	int r;

	do {
		r = fsync(fd);
	} while (r < 0 && errno == EINTR);
	return r;
}

/* Writes data through several writev calls when it is larger than one
 * call takes (SSIZE_MAX, or less on some systems). */
static int write_snapshot(int fd, const unsigned char *hdr, const void *data,
			  size_t len, const unsigned char *tr)
{
	const size_t step = (size_t)1 << 30;
	struct iovec iov[1];
	const unsigned char *p = data;

	iov[0].iov_base = (void *)hdr;
	iov[0].iov_len = SNAPSHOT_HEADER_SIZE;
	if (fileio_write_all(fd, iov, 1) < 0)
		return -1;
	while (len > 0) {
		iov[0].iov_base = (void *)p;
		iov[0].iov_len = len > step ? step : len;
		if (fileio_write_all(fd, iov, 1) < 0)
			return -1;
		p += iov[0].iov_len;
		len -= iov[0].iov_len;
	}
	iov[0].iov_base = (void *)tr;
	iov[0].iov_len = SNAPSHOT_TRAILER_SIZE;
	return fileio_write_all(fd, iov, 1);
}

int snapshot_write(const char *dir, const char *name, uint64_t lsn,
		   const void *data, size_t len, const char **error_r)
{
	unsigned char hdr[SNAPSHOT_HEADER_SIZE], tr[SNAPSHOT_TRAILER_SIZE];
	char final[SNAPSHOT_FILE_MAX], *tmp_path = NULL, *tmp_name;
	size_t tmp_len;
	int dfd, fd = -1;

	if (!snapshot_name_valid(name)) {
		*error_r = snapshot_err(false, "invalid snapshot name");
		return -1;
	}
	if (len > SNAPSHOT_DATA_MAX) {
		*error_r = snapshot_err(false, "snapshot %s too large", name);
		return -1;
	}
	dfd = open_dir(dir, error_r);
	if (dfd < 0)
		return -1;
	snprintf(final, sizeof(final), "%s%s", name, SNAPSHOT_SUFFIX);
	/* mkstemp wants a path; the bounds are small and fixed. */
	tmp_len = strlen(dir) + 1 + SNAPSHOT_FILE_MAX;
	tmp_path = malloc(tmp_len);
	if (tmp_path == NULL) {
		*error_r = snapshot_err(true, "snapshot %s", name);
		goto fail;
	}
	snprintf(tmp_path, tmp_len, "%s/%s%s-XXXXXX", dir,
		 SNAPSHOT_TMP_PREFIX, name);
	tmp_name = tmp_path + strlen(dir) + 1;
	fd = mkstemp(tmp_path);
	if (fd < 0) {
		*error_r = snapshot_err(true, "create snapshot %s in %s",
					name, dir);
		goto fail;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);

	buf_write_be32(hdr, SNAPSHOT_MAGIC);
	buf_write_be64(hdr + 4, lsn);
	buf_write_be64(hdr + 12, (uint64_t)len);
	buf_write_be32(tr, crc32c_update(crc32c(hdr, sizeof(hdr)), data, len));
	if (write_snapshot(fd, hdr, data, len, tr) < 0 || sync_fd(fd) < 0) {
		*error_r = snapshot_err(true, "write snapshot %s in %s", name,
					dir);
		goto fail_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		*error_r = snapshot_err(true, "close snapshot %s in %s", name,
					dir);
		goto fail_unlink;
	}
	fd = -1;
	if (renameat(dfd, tmp_name, dfd, final) < 0) {
		*error_r = snapshot_err(true, "rename snapshot %s in %s",
					name, dir);
		goto fail_unlink;
	}
	if (sync_fd(dfd) < 0) {
		/* The new snapshot is in place but maybe not durably so;
		 * the caller must not trim on the strength of it. */
		*error_r = snapshot_err(true, "sync snapshot directory %s",
					dir);
		goto fail;
	}
	free(tmp_path);
	close(dfd);
	return 0;
fail_unlink:
	(void)unlinkat(dfd, tmp_name, 0);
fail:
	if (fd >= 0)
		close(fd);
	free(tmp_path);
	close(dfd);
	return -1;
}

static ssize_t read_full(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int snapshot_read(const char *dir, const char *name, uint64_t *lsn_r,
		  struct buf *data_r, const char **error_r)
{
	unsigned char hdr[SNAPSHOT_HEADER_SIZE], tr[SNAPSHOT_TRAILER_SIZE];
	char final[SNAPSHOT_FILE_MAX];
	const char *bad = NULL;
	uint64_t len, lsn;
	struct stat st;
	ssize_t n;
	int dfd, fd;

	buf_reset(data_r);
	if (!snapshot_name_valid(name)) {
		*error_r = snapshot_err(false, "invalid snapshot name");
		return -1;
	}
	dfd = open_dir(dir, error_r);
	if (dfd < 0)
		return -1;
	snprintf(final, sizeof(final), "%s%s", name, SNAPSHOT_SUFFIX);
	/* O_NONBLOCK so that a FIFO under this name cannot hang us. */
	fd = openat(dfd, final, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	close(dfd);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		*error_r = snapshot_err(true, "open snapshot %s in %s", name,
					dir);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = snapshot_err(true, "stat snapshot %s in %s", name,
					dir);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		bad = "not a regular file";
		goto corrupt;
	}
	n = read_full(fd, hdr, sizeof(hdr));
	if (n < 0)
		goto io_error;
	if ((size_t)n != sizeof(hdr)) {
		bad = "truncated header";
		goto corrupt;
	}
	lsn = buf_read_be64(hdr + 4);
	len = buf_read_be64(hdr + 12);
	if (buf_read_be32(hdr) != SNAPSHOT_MAGIC)
		bad = "bad magic";
	else if (len > SNAPSHOT_DATA_MAX)
		bad = "length out of range";
	else if ((uint64_t)st.st_size !=
		 SNAPSHOT_HEADER_SIZE + len + SNAPSHOT_TRAILER_SIZE)
		bad = "file size does not match its length";
	if (bad != NULL)
		goto corrupt;
	if (buf_reserve(data_r, (size_t)len) < 0) {
		*error_r = snapshot_err(true, "snapshot %s", name);
		close(fd);
		return -1;
	}
	n = read_full(fd, data_r->data, (size_t)len);
	if (n < 0)
		goto io_error;
	if ((uint64_t)n != len) {
		bad = "truncated data";
		goto corrupt;
	}
	n = read_full(fd, tr, sizeof(tr));
	if (n < 0)
		goto io_error;
	if ((size_t)n != sizeof(tr)) {
		bad = "truncated checksum";
		goto corrupt;
	}
	if (buf_read_be32(tr) !=
	    crc32c_update(crc32c(hdr, sizeof(hdr)), data_r->data,
			  (size_t)len)) {
		bad = "checksum mismatch";
		goto corrupt;
	}
	close(fd);
	data_r->len = (size_t)len;
	*lsn_r = lsn;
	return 1;
corrupt:
	*error_r = snapshot_err(false, "snapshot %s in %s is corrupt: %s",
				name, dir, bad);
	close(fd);
	buf_reset(data_r);
	return -1;
io_error:
	*error_r = snapshot_err(true, "read snapshot %s in %s", name, dir);
	close(fd);
	buf_reset(data_r);
	return -1;
}

int snapshot_remove(const char *dir, const char *name, const char **error_r)
{
	char final[SNAPSHOT_FILE_MAX];
	int dfd;

	if (!snapshot_name_valid(name)) {
		*error_r = snapshot_err(false, "invalid snapshot name");
		return -1;
	}
	dfd = open_dir(dir, error_r);
	if (dfd < 0)
		return -1;
	snprintf(final, sizeof(final), "%s%s", name, SNAPSHOT_SUFFIX);
	if (unlinkat(dfd, final, 0) < 0 && errno != ENOENT) {
		*error_r = snapshot_err(true, "remove snapshot %s in %s",
					name, dir);
		close(dfd);
		return -1;
	}
	if (sync_fd(dfd) < 0) {
		*error_r = snapshot_err(true, "sync snapshot directory %s",
					dir);
		close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
}

int snapshot_clean_tmp(const char *dir, const char **error_r)
{
	struct dirent *de;
	int dfd, fd, removed = 0;
	DIR *d;

	dfd = open_dir(dir, error_r);
	if (dfd < 0)
		return -1;
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		*error_r = snapshot_err(true, "list snapshot directory %s",
					dir);
		if (fd >= 0)
			close(fd);
		close(dfd);
		return -1;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, SNAPSHOT_TMP_PREFIX,
			    strlen(SNAPSHOT_TMP_PREFIX)) != 0) {
			errno = 0;
			continue;
		}
		if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT) {
			*error_r = snapshot_err(true, "remove %s/%s", dir,
						de->d_name);
			closedir(d);
			close(dfd);
			return -1;
		}
		removed++;
		errno = 0;
	}
	if (errno != 0) {
		*error_r = snapshot_err(true, "list snapshot directory %s",
					dir);
		removed = -1;
	}
	closedir(d);
	close(dfd);
	return removed;
}
