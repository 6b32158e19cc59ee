/* fuzz_sql.c - the SQL scanners that read query text straight from clients:
 * session-state detection, admin verbs and DROP DATABASE recognition. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sql/ddl.h"
#include "sql/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exact-size copy: any read past the end is an ASan report. */
	char *q = malloc(size ? size : 1);
	if (!q)
		return 0;
	memcpy(q, data, size);
	unsigned bits = sql_session_state(q, size);
	if (bits >> 7)
		abort(); /* only the seven documented bits exist */
	if (bits != sql_session_state_scan(q, size))
		abort(); /* the quick look never changes the answer */
	(void)sess_state_name(bits);
	if (sql_session_release(q, size) & ~0x7fu)
		abort();
	if (size < 4096 && (sql_session_confirm(q, size, bits) & ~bits))
		abort(); /* libpg_query's opinion only ever removes bits */
	char words[4][64];
	bool trailing;
	size_t n = sql_words(q, size, words, 4, &trailing);
	for (size_t i = 0; i < n; i++)
		if (strlen(words[i]) >= 64)
			abort();
	struct sql_set ps;
	int set = sql_parse_set(q, size, &ps);
	if (set == 1 && ps.kind == SQL_SET && (ps.value < q || ps.value + ps.value_len > q + size || ps.value_len == 0))
		abort();
	if (sql_plainly_stateless(q, size) && (bits || set != 0))
		abort(); /* the quick look's promise to check_session_state */
	char name[64];
	if (sql_drop_database_target(q, size, name, sizeof(name)) == 1 && (name[0] == 0 || strlen(name) >= 64))
		abort();
	free(q);
	return 0;
}
