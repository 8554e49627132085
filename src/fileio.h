/*
 * fileio.h - small file I/O loops the storage modules share.
 */
#ifndef PLUTO_FILEIO_H
#define PLUTO_FILEIO_H

#include <sys/uio.h>

/* Writes all of iov at fd's current position, retrying after EINTR and
 * short writes (iov is advanced in place).  Returns 0, or -1 with errno
 * (EIO when the file takes no more bytes). */
int fileio_write_all(int fd, struct iovec *iov, int iovcnt);

#endif
