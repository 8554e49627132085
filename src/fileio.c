/*
 * fileio.c - the writev loop of the journal and the snapshots.
 */
#include "autoconfig.h"

#include "fileio.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int fileio_write_all(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);
		size_t left;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		left = (size_t)n;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (unsigned char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

const char *fileio_error(char *buf, size_t size, bool with_errno,
			 const char *fmt, va_list ap)
{
	int saved = errno;
	size_t n;

	vsnprintf(buf, size, fmt, ap);
	if (with_errno) {
		n = strlen(buf);
		/* strerror is safe enough here: glibc and the BSDs return
		 * static strings for known codes. */
		snprintf(buf + n, size - n, ": %s", strerror(saved));
	}
	errno = saved;
	return buf;
}
