/*
 * fileio.h - small file I/O loops the storage modules share.
 */
#ifndef PLUTO_FILEIO_H
#define PLUTO_FILEIO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "log.h"

/* Writes all of iov at fd's current position, retrying after EINTR and
 * short writes (iov is advanced in place).  Returns 0, or -1 with errno
 * (EIO when the file takes no more bytes). */
int fileio_write_all(int fd, struct iovec *iov, int iovcnt);

/* Formats an error message into buf (the caller's thread-local buffer);
 * with_errno appends ": " and strerror(errno).  errno is left as it was.
 * Returns buf. */
const char *fileio_error(char *buf, size_t size, bool with_errno,
			 const char *fmt, va_list ap) PLUTO_PRINTF(4, 0);

#endif
