/* userlist.h - PgBouncer-format auth file: lines of `"user" "secret"`, where the
 * secret is a plaintext password, "md5" + 32 hex chars, or a SCRAM-SHA-256 secret
 * `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.  ';' or '#'
 * start comments; "" inside a quoted field is a literal quote. */
#ifndef PGMEDIC_USERLIST_H
#define PGMEDIC_USERLIST_H

#include <stddef.h>

enum secret_kind { SECRET_PLAIN = 0, SECRET_MD5 = 1, SECRET_SCRAM = 2 };

struct user_entry {
	char *name;
	char *secret;
	enum secret_kind kind;
};

struct userlist {
	struct user_entry *users;
	size_t n;
};

/* 0 on success; -1 with a message naming file and line in err. */
int userlist_load(struct userlist *ul, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));
int userlist_parse(struct userlist *ul, const char *text, size_t len, char *err, size_t errlen)
	__attribute__((warn_unused_result));
const struct user_entry *userlist_find(const struct userlist *ul, const char *name);
void userlist_free(struct userlist *ul);
enum secret_kind secret_kind_of(const char *secret);

#endif
