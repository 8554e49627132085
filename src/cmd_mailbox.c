/*
 * cmd_mailbox.c - commands on mailboxes and subscriptions: CREATE,
 * DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS.
 *
 * Names are compared and listed in their canonical wire form (modified
 * UTF-7, INBOX upper-case), which is also the state's key, so LIST
 * patterns match byte for byte as RFC 3501 6.3.8 describes, with '*'
 * matching anything and '%' anything but the hierarchy separator.
 * Matching is a dynamic program over pattern and name (O(|p| * |n|), no
 * backtracking), so no pattern can make it exponential; runs of wildcards
 * are folded first, which bounds |p| for any pattern that can match.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "op.h"
#include "user_store.h"

void cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_string arg = cmd->u.mailbox.name;
	char name[MAILBOX_NAME_BUFSIZE];
	const char *error;

	/* RFC 3501 6.3.3: a trailing separator says the client means to
	 * create inferiors; the name is created without it. */
	if (arg.len > 1 && arg.data[arg.len - 1] == s->sep)
		arg.len--;
	if (imap_cmd_mailbox_arg(s, &arg, name) < 0)
		return;
	if (mailstate_mailbox_find(user_state(s->user), name) != NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[ALREADYEXISTS] "
				    "Mailbox already exists");
		return;
	}
	if (user_create_locked(s->user, name, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "CREATE completed");
}

void cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	char name[MAILBOX_NAME_BUFSIZE];
	const char *error;

	if (imap_cmd_mailbox_arg(s, &cmd->u.mailbox.name, name) < 0)
		return;
	if (mailbox_name_is_inbox(name)) {
		imap_session_result(s, IMAP_RESULT_NO, "INBOX cannot be "
				    "deleted");
		return;
	}
	if (mailstate_mailbox_find(user_state(s->user), name) == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[NONEXISTENT] "
				    "Mailbox does not exist");
		return;
	}
	/* Inferiors stay (RFC 3501 6.3.4); LIST then shows the name as
	 * \Noselect while they exist. */
	if (user_delete_locked(s->user, name, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "DELETE completed");
}

/* Whether name is an inferior of parent (parent<sep>...). */
static bool is_inferior(const char *name, const char *parent, char sep)
{
	size_t n = strlen(parent);

	return strncmp(name, parent, n) == 0 && name[n] == sep;
}

void cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	char from[MAILBOX_NAME_BUFSIZE], to[MAILBOX_NAME_BUFSIZE];
	struct mailstate *state = user_state(s->user);
	const char *error;

	if (imap_cmd_mailbox_arg(s, &cmd->u.rename.from, from) < 0 ||
	    imap_cmd_mailbox_arg(s, &cmd->u.rename.to, to) < 0)
		return;
	if (mailbox_name_is_inbox(from)) {
		imap_session_result(s, IMAP_RESULT_NO, "[CANNOT] Renaming "
				    "INBOX is not supported");
		return;
	}
	if (mailstate_mailbox_find(state, from) == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[NONEXISTENT] "
				    "Mailbox does not exist");
		return;
	}
	if (mailstate_mailbox_find(state, to) != NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[ALREADYEXISTS] "
				    "Target mailbox already exists");
		return;
	}
	if (is_inferior(to, from, s->sep) || mailbox_name_is_inbox(to)) {
		imap_session_result(s, IMAP_RESULT_NO, "[CANNOT] Cannot "
				    "rename a mailbox into itself or INBOX");
		return;
	}
	/* The store renames the inferiors along (RFC 3501 6.3.5), after
	 * checking every new name. */
	if (user_rename_locked(s->user, from, to, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "RENAME completed");
}

void cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	char name[MAILBOX_NAME_BUFSIZE];
	bool subscribe = cmd->id == IMAP_CMD_SUBSCRIBE;
	const char *error;

	if (imap_cmd_mailbox_arg(s, &cmd->u.mailbox.name, name) < 0)
		return;
	if (user_subscribe_locked(s->user, name, subscribe, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "%s completed", cmd->name);
}

/* ------------------------------------------------------------------ */
/* LIST and LSUB */

/* A pattern with runs of wildcards folded ("%*" and "**" are "*", "%%"
 * is "%"), which matches exactly the same names. */
struct list_pattern {
	char *p;
	size_t len;
	size_t literals;	/* non-wildcard bytes */
};

static int pattern_make(const char *ref, size_t ref_len, const char *pat,
			size_t pat_len, char sep, struct list_pattern *out)
{
	size_t total;
	char *raw;

	if (ref_len > SIZE_MAX - pat_len - 1)
		return -1;
	total = ref_len + pat_len;
	raw = malloc(total + 1);
	out->p = malloc(total + 1);
	if (raw == NULL || out->p == NULL) {
		free(raw);
		free(out->p);
		return -1;
	}
	memcpy(raw, ref, ref_len);
	memcpy(raw + ref_len, pat, pat_len);
	raw[total] = '\0';
	/* INBOX is case-insensitive: so is a pattern's leading "inbox"
	 * level. */
	if (total >= 5 && strncasecmp(raw, "INBOX", 5) == 0 &&
	    (total == 5 || raw[5] == sep))
		memcpy(raw, "INBOX", 5);
	out->len = 0;
	out->literals = 0;
	for (size_t i = 0; i < total; i++) {
		char c = raw[i];
		char *last = out->len > 0 ? &out->p[out->len - 1] : NULL;

		if ((c == '*' || c == '%') && last != NULL &&
		    (*last == '*' || *last == '%')) {
			if (c == '*')
				*last = '*';
			continue;
		}
		if (c != '*' && c != '%')
			out->literals++;
		out->p[out->len++] = c;
	}
	out->p[out->len] = '\0';
	free(raw);
	return 0;
}

static bool pattern_match(const struct list_pattern *pat, const char *name,
			  char sep)
{
	bool a[MAILBOX_NAME_BUFSIZE + 1], b[MAILBOX_NAME_BUFSIZE + 1];
	bool *cur = a, *next = b, *t;
	size_t n = strlen(name);

	if (n > MAILBOX_NAME_MAX || pat->literals > n)
		return false;
	cur[0] = true;
	for (size_t j = 1; j <= n; j++)
		cur[j] = false;
	for (size_t i = 0; i < pat->len; i++) {
		char c = pat->p[i];

		if (c == '*') {
			next[0] = cur[0];
			for (size_t j = 1; j <= n; j++)
				next[j] = cur[j] || next[j - 1];
		} else if (c == '%') {
			next[0] = cur[0];
			for (size_t j = 1; j <= n; j++)
				next[j] = cur[j] ||
					  (next[j - 1] && name[j - 1] != sep);
		} else {
			next[0] = false;
			for (size_t j = 1; j <= n; j++)
				next[j] = cur[j - 1] && name[j - 1] == c;
		}
		t = cur;
		cur = next;
		next = t;
	}
	return cur[n];
}

struct list_entry {
	char *name;
	bool exists;	/* a mailbox (LIST) or subscribed (LSUB) */
};

struct list_set {
	struct list_entry *e;
	size_t count, cap;
};

static int set_add(struct list_set *set, const char *name, size_t len,
		   bool exists)
{
	struct list_entry *e;

	if (set->count == set->cap) {
		size_t cap = set->cap == 0 ? 32 : set->cap;
		void *p;

		if (cap > SIZE_MAX / 2 / sizeof(*set->e))
			return -1;
		cap *= 2;
		p = realloc(set->e, cap * sizeof(*set->e));
		if (p == NULL)
			return -1;
		set->e = p;
		set->cap = cap;
	}
	e = &set->e[set->count];
	e->name = strndup(name, len);
	if (e->name == NULL)
		return -1;
	e->exists = exists;
	set->count++;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct list_entry *)a)->name,
		      ((const struct list_entry *)b)->name);
}

static void set_free(struct list_set *set)
{
	for (size_t i = 0; i < set->count; i++)
		free(set->e[i].name);
	free(set->e);
}

/* Builds the sorted set of names and all their hierarchy parents (the
 * parents marked as not existing unless they are names themselves). */
static int set_build(struct list_set *set, const char *const *names,
		     size_t count, char sep)
{
	size_t i, j;

	for (i = 0; i < count; i++) {
		const char *n = names[i];

		if (set_add(set, n, strlen(n), true) < 0)
			return -1;
		for (const char *p = strchr(n, sep); p != NULL;
		     p = strchr(p + 1, sep)) {
			if (set_add(set, n, (size_t)(p - n), false) < 0)
				return -1;
		}
	}
	if (set->count == 0)
		return 0;
	qsort(set->e, set->count, sizeof(*set->e), entry_cmp);
	for (i = 0, j = 1; j < set->count; j++) {
		if (strcmp(set->e[i].name, set->e[j].name) == 0) {
			set->e[i].exists = set->e[i].exists ||
					   set->e[j].exists;
			free(set->e[j].name);
			continue;
		}
		set->e[++i] = set->e[j];
	}
	set->count = i + 1;
	return 0;
}

/* The index of the first entry not below key. */
static size_t set_lower_bound(const struct list_set *set, const char *key)
{
	size_t lo = 0, hi = set->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(set->e[mid].name, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether any entry is an inferior of e; with matched_only, only one the
 * pattern matches counts. */
static bool has_inferior(const struct list_set *set, const char *name,
			 char sep, const struct list_pattern *pat,
			 bool matched_only)
{
	char key[MAILBOX_NAME_BUFSIZE + 1];
	size_t i;

	snprintf(key, sizeof(key), "%s%c", name, sep);
	for (i = set_lower_bound(set, key); i < set->count; i++) {
		if (!is_inferior(set->e[i].name, name, sep))
			break;
		if (!matched_only)
			return true;
		if (set->e[i].exists && pattern_match(pat, set->e[i].name, sep))
			return true;
	}
	return false;
}

static void list_reply(struct imap_session *s, bool lsub,
		       const struct list_set *set,
		       const struct list_pattern *pat)
{
	const char *word = lsub ? "LSUB" : "LIST";

	for (size_t i = 0; i < set->count; i++) {
		const struct list_entry *e = &set->e[i];
		bool children;

		if (!pattern_match(pat, e->name, s->sep))
			continue;
		if (lsub) {
			/* RFC 3501 6.3.9: an unsubscribed parent shows
			 * (as \Noselect) only when '%' hid its subscribed
			 * inferiors. */
			if (!e->exists &&
			    has_inferior(set, e->name, s->sep, pat, true))
				continue;
			imap_session_printf(s, "* LSUB (%s) ",
					    e->exists ? "" : "\\Noselect");
		} else {
			children = has_inferior(set, e->name, s->sep, pat,
						false);
			imap_session_printf(s, "* %s (%s%s) ", word,
					    e->exists ? "" : "\\Noselect ",
					    children ? "\\HasChildren"
						     : "\\HasNoChildren");
		}
		imap_session_append_string(s, &s->sep, 1);
		imap_session_append(s, " ", 1);
		imap_session_append_string(s, e->name, strlen(e->name));
		imap_session_append(s, "\r\n", 2);
	}
}

void cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_string *ref = &cmd->u.list.reference;
	const struct imap_string *pat = &cmd->u.list.pattern;
	bool lsub = cmd->id == IMAP_CMD_LSUB;
	struct list_pattern lp = { NULL, 0, 0 };
	struct list_set set = { NULL, 0, 0 };
	const char **owned = NULL;
	const char *const *names;
	size_t count;

	if (!imap_string_is_text(ref) || !imap_string_is_text(pat)) {
		imap_session_result(s, IMAP_RESULT_BAD, "Invalid reference or "
				    "pattern");
		return;
	}
	if (pat->len == 0) {
		/* RFC 3501 6.3.8: the hierarchy delimiter and root. */
		if (!lsub) {
			imap_session_printf(s, "* LIST (\\Noselect) ");
			imap_session_append_string(s, &s->sep, 1);
			imap_session_printf(s, " \"\"\r\n");
		}
		imap_session_result(s, IMAP_RESULT_OK, "%s completed",
				    cmd->name);
		return;
	}
	if (pattern_make(ref->data, ref->len, pat->data, pat->len, s->sep,
			 &lp) < 0)
		goto oom;
	if (lsub) {
		names = user_subscriptions_locked(s->user, &count);
	} else {
		if (mailstate_mailbox_list(user_state(s->user), &owned,
					   &count) < 0)
			goto oom;
		names = owned;
	}
	if (set_build(&set, names, count, s->sep) < 0)
		goto oom;
	list_reply(s, lsub, &set, &lp);
	imap_session_result(s, IMAP_RESULT_OK, "%s completed", cmd->name);
	goto out;
oom:
	imap_session_result(s, IMAP_RESULT_NO, "Out of memory");
out:
	set_free(&set);
	free(owned);
	free(lp.p);
}

void cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	char name[MAILBOX_NAME_BUFSIZE];
	struct mailstate_mailbox *box;
	unsigned items = cmd->u.status.items;
	const char *sp = "";
	size_t count, unseen = 0;

	if (imap_cmd_mailbox_arg(s, &cmd->u.status.mailbox, name) < 0)
		return;
	box = mailstate_mailbox_find(user_state(s->user), name);
	if (box == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[NONEXISTENT] "
				    "Mailbox does not exist");
		return;
	}
	count = mailstate_mailbox_count(box);
	imap_session_printf(s, "* STATUS ");
	imap_session_append_string(s, name, strlen(name));
	imap_session_printf(s, " (");
	if ((items & IMAP_STATUS_MESSAGES) != 0) {
		imap_session_printf(s, "MESSAGES %zu", count);
		sp = " ";
	}
	if ((items & IMAP_STATUS_RECENT) != 0) {
		imap_session_printf(s, "%sRECENT 0", sp);
		sp = " ";
	}
	if ((items & IMAP_STATUS_UIDNEXT) != 0) {
		imap_session_printf(s, "%sUIDNEXT %llu", sp,
				    (unsigned long long)
					    mailstate_mailbox_uidnext(box));
		sp = " ";
	}
	if ((items & IMAP_STATUS_UIDVALIDITY) != 0) {
		imap_session_printf(s, "%sUIDVALIDITY %lu", sp,
				    (unsigned long)
					    mailstate_mailbox_uidvalidity(box));
		sp = " ";
	}
	if ((items & IMAP_STATUS_UNSEEN) != 0) {
		for (size_t i = 0; i < count; i++) {
			const struct mailstate_msg *m;

			m = mailstate_mailbox_msg_at(box, i);
			if (m != NULL && (m->flags & OP_FLAG_SEEN) == 0)
				unseen++;
		}
		imap_session_printf(s, "%sUNSEEN %zu", sp, unseen);
	}
	imap_session_printf(s, ")\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "STATUS completed");
}
