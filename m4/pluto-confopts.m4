dnl Configure options and library probes of pluto, one AC_DEFUN each.

dnl PLUTO_CHECK_COMPILE_FLAG(FLAG, ACTION-IF-OK)
dnl Compiles an empty program with FLAG (and -Werror, so that a compiler
dnl that merely warns about an unknown flag says no) and runs ACTION-IF-OK.
AC_DEFUN([PLUTO_CHECK_COMPILE_FLAG], [
  AC_MSG_CHECKING([whether $CC accepts $1])
  pluto_save_CFLAGS=$CFLAGS
  CFLAGS="$CFLAGS -Werror $1"
  AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
    [AC_MSG_RESULT([yes])
     CFLAGS=$pluto_save_CFLAGS
     $2],
    [AC_MSG_RESULT([no])
     CFLAGS=$pluto_save_CFLAGS])
])

dnl PLUTO_CHECK_PTHREAD: POSIX threads through -pthread (GCC and Clang on
dnl GNU/Linux and the BSDs).
AC_DEFUN([PLUTO_CHECK_PTHREAD], [
  AC_MSG_CHECKING([for pthread_create with -pthread])
  pluto_save_CFLAGS=$CFLAGS
  pluto_save_LIBS=$LIBS
  CFLAGS="$CFLAGS -pthread"
  LIBS="$LIBS -pthread"
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>
static void *f(void *a) { return a; }]],
      [[pthread_t t; pthread_create(&t, 0, f, 0); pthread_join(t, 0);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([POSIX threads not found (Debian package: libc6-dev)])])
  CFLAGS=$pluto_save_CFLAGS
  LIBS=$pluto_save_LIBS
  PTHREAD_CFLAGS=-pthread
  PTHREAD_LIBS=-pthread
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])

dnl PLUTO_CHECK_INIPARSER: iniparser ships no .pc file on Debian and puts
dnl its header in iniparser/; other systems use the top level.  Probe both.
AC_DEFUN([PLUTO_CHECK_INIPARSER], [
  AC_CHECK_HEADERS([iniparser/iniparser.h iniparser.h], [break])
  AS_IF([test "x$ac_cv_header_iniparser_iniparser_h" != "xyes" &&
         test "x$ac_cv_header_iniparser_h" != "xyes"],
    [AC_MSG_ERROR([iniparser.h not found (Debian package: libiniparser-dev)])])
  AC_CHECK_LIB([iniparser], [iniparser_load], [INIPARSER_LIBS=-liniparser],
    [AC_MSG_ERROR([libiniparser not found (Debian package: libiniparser-dev)])])
  AC_SUBST([INIPARSER_LIBS])
])

dnl PLUTO_CHECK_CRYPT: crypt(3) for hashed passwords ($6$, $y$).
AC_DEFUN([PLUTO_CHECK_CRYPT], [
  AC_CHECK_HEADERS([crypt.h])
  pluto_save_LIBS=$LIBS
  AC_SEARCH_LIBS([crypt_r], [crypt], [],
    [AC_MSG_ERROR([crypt_r not found (Debian package: libcrypt-dev)])])
  AS_IF([test "x$ac_cv_search_crypt_r" != "xnone required"],
        [CRYPT_LIBS=$ac_cv_search_crypt_r])
  LIBS=$pluto_save_LIBS
  AC_SUBST([CRYPT_LIBS])
])

dnl PLUTO_WITH_POSTGRESQL: --with-postgresql[=yes|no|auto], libpq for the
dnl AuthPostgres adapter.  Auto-detected by default.
AC_DEFUN([PLUTO_WITH_POSTGRESQL], [
  AC_ARG_WITH([postgresql],
    [AS_HELP_STRING([--with-postgresql],
      [build the PostgreSQL authentication adapter (default: auto)])],
    [], [with_postgresql=auto])
  AS_IF([test "x$with_postgresql" != "xno"], [
    PKG_CHECK_MODULES([LIBPQ], [libpq], [with_postgresql=yes], [
      AS_IF([test "x$with_postgresql" = "xyes"],
        [AC_MSG_ERROR([libpq not found (Debian package: libpq-dev)])])
      with_postgresql=no])
  ])
  AS_IF([test "x$with_postgresql" = "xyes"],
    [AC_DEFINE([HAVE_POSTGRESQL], [1], [Define to build AuthPostgres.])])
  AM_CONDITIONAL([HAVE_POSTGRESQL], [test "x$with_postgresql" = "xyes"])
])

dnl PLUTO_ENABLE_SANITIZERS: --enable-sanitizers builds everything with
dnl AddressSanitizer and UndefinedBehaviorSanitizer, aborting on the first
dnl UB report so that tests fail on it.
AC_DEFUN([PLUTO_ENABLE_SANITIZERS], [
  AC_ARG_ENABLE([sanitizers],
    [AS_HELP_STRING([--enable-sanitizers],
      [build with AddressSanitizer and UndefinedBehaviorSanitizer])],
    [], [enable_sanitizers=no])
  SAN_CFLAGS=
  AS_IF([test "x$enable_sanitizers" = "xyes"], [
    SAN_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
    pluto_save_CFLAGS=$CFLAGS
    pluto_save_LDFLAGS=$LDFLAGS
    CFLAGS="$CFLAGS $SAN_CFLAGS"
    LDFLAGS="$LDFLAGS $SAN_CFLAGS"
    AC_MSG_CHECKING([whether sanitizers link])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])], [AC_MSG_RESULT([yes])],
      [AC_MSG_RESULT([no])
       AC_MSG_ERROR([the compiler cannot link with -fsanitize=address,undefined (Debian package: gcc)])])
    CFLAGS=$pluto_save_CFLAGS
    LDFLAGS=$pluto_save_LDFLAGS
  ])
  AC_SUBST([SAN_CFLAGS])
])

dnl PLUTO_WARNING_FLAGS: the warnings the code is kept clean of.
AC_DEFUN([PLUTO_WARNING_FLAGS], [
  WARN_CFLAGS=
  for pluto_flag in -Wall -Wextra -Wshadow -Wformat=2 -Wconversion \
      -Wsign-conversion -Wstrict-prototypes -Wmissing-prototypes \
      -Wpointer-arith -Wundef -Wvla -Wno-unused-parameter; do
    PLUTO_CHECK_COMPILE_FLAG([$pluto_flag],
      [WARN_CFLAGS="$WARN_CFLAGS $pluto_flag"])
  done
  AC_SUBST([WARN_CFLAGS])
])

dnl PLUTO_ENABLE_WERROR: --enable-werror turns every warning into an error.
AC_DEFUN([PLUTO_ENABLE_WERROR], [
  AC_ARG_ENABLE([werror],
    [AS_HELP_STRING([--enable-werror], [treat compiler warnings as errors])],
    [], [enable_werror=no])
  AS_IF([test "x$enable_werror" = "xyes"],
        [WARN_CFLAGS="$WARN_CFLAGS -Werror"])
])
