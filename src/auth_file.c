/*
 * auth_file.c - the AuthFile adapter: users listed in a text file.
 *
 * Each line is "name<separator>password"; the user id is the line number,
 * the first line being 1, as in the prototype, so lines must never be
 * reordered or removed once users have mail.  The password field is the
 * rest of the line (it may hold the separator) and is a crypt(3) hash
 * ("$y$...", "$6$...") or, discouraged, a plaintext password.  A final
 * line without a newline is fine, and so is CRLF.
 *
 * The whole file is read and validated once, at start-up: any malformed
 * line stops the start-up with "FILE:LINE: reason" (never showing the
 * line, which holds a secret).  The entries then stay read-only and sorted
 * by name, so auth_check() needs no lock and finds a user in O(log n).
 *
 * An unknown user is verified against a dummy hash made like the most
 * common kind of hash in the file, so that it costs as much as a wrong
 * password for a real user.
 */
#include "autoconfig.h"

#include "auth.h"
#include "buf.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds the memory a users file may take: far more than any real one. */
#define AUTH_FILE_MAX_SIZE ((size_t)256 * 1024 * 1024)
/* How many distinct hash methods auth_file_pick_like() tells apart. */
#define AUTH_FILE_METHODS_MAX 16

struct auth_file_entry {
	char *name;		/* not NUL-terminated in comparisons */
	size_t name_len;
	char *stored;		/* hash or plaintext, NUL-terminated */
	uint32_t id;		/* line number */
};

struct auth_file {
	struct auth auth;
	struct auth_file_entry *entries;	/* sorted by name, then id */
	size_t n_entries;
	char *dummy;	/* what an unknown user is verified against */
};

static void auth_file_free_entries(struct auth_file_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].name);
		if (entries[i].stored != NULL) {
			buf_wipe(entries[i].stored, strlen(entries[i].stored));
			free(entries[i].stored);
		}
	}
	free(entries);
}

static void auth_file_deinit(struct auth *auth)
{
	struct auth_file *af = (struct auth_file *)auth;

	auth_file_free_entries(af->entries, af->n_entries);
	free(af->dummy);
	free(af);
}

static int auth_file_name_cmp(const char *a, size_t a_len, const char *b,
			      size_t b_len)
{
	int c = memcmp(a, b, a_len < b_len ? a_len : b_len);

	if (c != 0)
		return c;
	return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

static int auth_file_entry_cmp(const void *pa, const void *pb)
{
	const struct auth_file_entry *a = pa, *b = pb;
	int c = auth_file_name_cmp(a->name, a->name_len, b->name, b->name_len);

	if (c != 0)
		return c;
	return a->id < b->id ? -1 : a->id > b->id ? 1 : 0;
}

static const struct auth_file_entry *
auth_file_lookup(const struct auth_file *af, const char *name, size_t len)
{
	size_t lo = 0, hi = af->n_entries;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct auth_file_entry *e = &af->entries[mid];
		int c = auth_file_name_cmp(name, len, e->name, e->name_len);

		if (c == 0)
			return e;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static enum auth_result
auth_file_check(struct auth *auth, const char *user, size_t user_len,
		const void *pass, size_t pass_len, struct auth_user *user_r)
{
	struct auth_file *af = (struct auth_file *)auth;
	const struct auth_file_entry *e = NULL;
	int rc;

	if (auth_name_valid(user, user_len))
		e = auth_file_lookup(af, user, user_len);
	/* Same work whether or not the user exists. */
	rc = auth_verify(e != NULL ? e->stored : af->dummy, pass, pass_len);
	if (e == NULL)
		return AUTH_FAILED;
	if (rc < 0) {
		/* The hash passed the start-up check, so this is the
		 * system's fault (memory), not the client's. */
		log_error("AuthFile: crypt(3) failed on the hash of user id "
			  "%u", (unsigned)e->id);
		return AUTH_TEMPFAIL;
	}
	if (rc == 0)
		return AUTH_FAILED;
	user_r->id = e->id;
	memcpy(user_r->name, e->name, e->name_len);
	user_r->name[e->name_len] = '\0';
	return AUTH_OK;
}

static const struct auth_vfuncs auth_file_vfuncs = {
	.name = "AuthFile",
	.check = auth_file_check,
	.probe = NULL,
	.deinit = auth_file_deinit,
};

/* Reads all of fd into a malloc'd, NUL-terminated buffer.  Returns 0, or
 * -1 with errno (EFBIG when larger than AUTH_FILE_MAX_SIZE). */
static int auth_file_slurp(int fd, char **data_r, size_t *len_r)
{
	size_t len = 0, cap = 4096;
	char *data = malloc(cap), *bigger;
	ssize_t got;

	if (data == NULL)
		return -1;
	for (;;) {
		if (cap - len < 2) {
			if (cap >= AUTH_FILE_MAX_SIZE) {
				errno = EFBIG;
				goto fail;
			}
			bigger = malloc(cap * 2);
			if (bigger == NULL)
				goto fail;
			/* Not realloc: the old block holds secrets and
			 * must be wiped before it is freed. */
			memcpy(bigger, data, len);
			buf_wipe(data, len);
			free(data);
			data = bigger;
			cap *= 2;
		}
		got = read(fd, data + len, cap - len - 1);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
fail:
	buf_wipe(data, len);
	free(data);
	return -1;
}

static bool auth_file_has_control(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* Checks one line (without its line ending).  Returns NULL or why it is
 * malformed. */
static const char *auth_file_line_problem(const char *line, size_t len,
					  char sep, size_t *name_len_r)
{
	const char *p = memchr(line, sep, len);
	size_t name_len, pass_len;

	if (memchr(line, '\0', len) != NULL)
		return "NUL byte in line";
	if (p == NULL)
		return "missing separator";
	name_len = (size_t)(p - line);
	pass_len = len - name_len - 1;
	if (name_len == 0)
		return "empty user name";
	if (name_len > AUTH_NAME_MAX)
		return "user name longer than 255 bytes";
	if (auth_file_has_control(line, name_len))
		return "control character in user name";
	if (memchr(line, '/', name_len) != NULL)
		return "'/' in user name";
	if (line[0] == '.')
		return "user name starts with '.'";
	if (pass_len == 0)
		return "empty password";
	if (pass_len > AUTH_PASSWORD_MAX)
		return "password longer than 1024 bytes";
	if (auth_file_has_control(p + 1, pass_len))
		return "control character in password";
	*name_len_r = name_len;
	return NULL;
}

/* The stored hash whose method (the text up to its second '$') is the
 * most common in the file, first such line; NULL when no line holds a
 * hash.  Entries are still in line order here. */
static const char *auth_file_pick_like(const struct auth_file_entry *e,
				       size_t n)
{
	struct {
		size_t first;
		size_t prefix_len;
		size_t count;
	} methods[AUTH_FILE_METHODS_MAX];
	size_t n_methods = 0, best = 0;

	for (size_t i = 0; i < n; i++) {
		const char *s = e[i].stored;
		const char *end;
		size_t plen, m;

		if (!auth_is_hash(s))
			continue;
		end = strchr(s + 1, '$');
		plen = end != NULL ? (size_t)(end - s) : strlen(s);
		for (m = 0; m < n_methods; m++) {
			const char *o = e[methods[m].first].stored;

			if (methods[m].prefix_len == plen &&
			    memcmp(o, s, plen) == 0)
				break;
		}
		if (m == n_methods) {
			if (n_methods == AUTH_FILE_METHODS_MAX)
				continue;
			methods[m].first = i;
			methods[m].prefix_len = plen;
			methods[m].count = 0;
			n_methods++;
		}
		methods[m].count++;
	}
	if (n_methods == 0)
		return NULL;
	for (size_t m = 1; m < n_methods; m++) {
		if (methods[m].count > methods[best].count)
			best = m;
	}
	return e[methods[best].first].stored;
}

/* Parses data into af->entries.  Returns 0, or -1 and *error_r. */
static int auth_file_parse(struct auth_file *af, const char *path,
			   char sep, const char *data, size_t len,
			   const char **error_r)
{
	size_t pos = 0, cap = 0, name_len = 0;
	uint32_t line_no = 0;

	while (pos < len) {
		const char *line = data + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		const char *problem;
		struct auth_file_entry *e;

		pos += line_len + (nl != NULL ? 1 : 0);
		if (line_no == UINT32_MAX) {
			*error_r = auth_error("%s: more than %u lines", path,
					      (unsigned)UINT32_MAX);
			return -1;
		}
		line_no++;
		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;
		problem = auth_file_line_problem(line, line_len, sep,
						 &name_len);
		if (problem != NULL) {
			*error_r = auth_error("%s:%u: %s", path,
					      (unsigned)line_no, problem);
			return -1;
		}
		if (af->n_entries == cap) {
			size_t new_cap = cap == 0 ? 64 : cap * 2;
			struct auth_file_entry *bigger;

			if (new_cap > SIZE_MAX / sizeof(*bigger))
				goto nomem;
			bigger = realloc(af->entries,
					 new_cap * sizeof(*bigger));
			if (bigger == NULL)
				goto nomem;
			af->entries = bigger;
			cap = new_cap;
		}
		e = &af->entries[af->n_entries];
		e->id = line_no;
		e->name_len = name_len;
		e->name = strndup(line, name_len);
		e->stored = strndup(line + name_len + 1,
				    line_len - name_len - 1);
		af->n_entries++;
		if (e->name == NULL || e->stored == NULL)
			goto nomem;
		if (!auth_stored_usable(e->stored)) {
			*error_r = auth_error(
				"%s:%u: password hash not supported by this "
				"system's crypt(3)", path, (unsigned)line_no);
			return -1;
		}
	}
	return 0;
nomem:
	*error_r = auth_error("%s: out of memory", path);
	return -1;
}

/* Sorts the entries by name and refuses duplicates, naming the earliest
 * line that repeats a name.  Returns 0, or -1 and *error_r. */
static int auth_file_sort(struct auth_file *af, const char *path,
			  const char **error_r)
{
	uint32_t dup_line = 0, first_line = 0;

	if (af->n_entries == 0)
		return 0;
	qsort(af->entries, af->n_entries, sizeof(af->entries[0]),
	      auth_file_entry_cmp);
	/* Equal names are adjacent, in line order: the run's first entry
	 * is the original, the second its earliest repeat. */
	for (size_t i = 1; i < af->n_entries; i++) {
		const struct auth_file_entry *a = &af->entries[i - 1];
		const struct auth_file_entry *b = &af->entries[i];

		if (auth_file_name_cmp(a->name, a->name_len, b->name,
				       b->name_len) != 0)
			continue;
		if (i >= 2 && auth_file_name_cmp(af->entries[i - 2].name,
						 af->entries[i - 2].name_len,
						 a->name, a->name_len) == 0)
			continue;
		if (dup_line == 0 || b->id < dup_line) {
			dup_line = b->id;
			first_line = a->id;
		}
	}
	if (dup_line != 0) {
		*error_r = auth_error("%s:%u: duplicate user name (first on "
				      "line %u)", path, (unsigned)dup_line,
				      (unsigned)first_line);
		return -1;
	}
	return 0;
}

int auth_file_new(const char *path, char separator, struct auth **auth_r,
		  const char **error_r)
{
	struct auth_file *af;
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	const char *like;
	int fd, ret = -1;

	*auth_r = NULL;
	if (separator == '\0' || separator == '\n' || separator == '\r') {
		*error_r = auth_error("%s: unusable separator", path);
		return -1;
	}
	af = calloc(1, sizeof(*af));
	if (af == NULL) {
		*error_r = auth_error("%s: out of memory", path);
		return -1;
	}
	af->auth.v = &auth_file_vfuncs;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*error_r = auth_error("%s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = auth_error("%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = auth_error("%s: not a regular file", path);
		goto out;
	}
	if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0)
		log_warnx("%s: users file is accessible to every local user; "
			  "make it mode 0600 or 0640", path);
	if (auth_file_slurp(fd, &data, &len) < 0) {
		*error_r = auth_error("%s: %s", path, strerror(errno));
		goto out;
	}
	if (auth_file_parse(af, path, separator, data, len, error_r) < 0)
		goto out;

	like = auth_file_pick_like(af->entries, af->n_entries);
	if (like != NULL) {
		const char *why = NULL;
		char why_copy[256];

		af->dummy = auth_dummy_hash(like, &why);
		if (af->dummy == NULL) {
			/* why lives in the buffer auth_error() writes. */
			snprintf(why_copy, sizeof(why_copy), "%s", why);
			*error_r = auth_error("%s: %s", path, why_copy);
		}
	} else {
		/* Plaintext only: a plaintext dummy costs the same. */
		af->dummy = strdup("pluto-dummy-password");
		if (af->dummy == NULL)
			*error_r = auth_error("%s: out of memory", path);
	}
	if (af->dummy == NULL)
		goto out;

	if (auth_file_sort(af, path, error_r) < 0)
		goto out;
	if (af->n_entries == 0)
		log_warnx("%s: no users: every login will fail", path);
	*auth_r = &af->auth;
	ret = 0;
out:
	if (data != NULL) {
		buf_wipe(data, len);
		free(data);
	}
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		auth_file_deinit(&af->auth);
	return ret;
}
