/* test_intern.c - interned strings (core/intern.h): equal values share one copy,
 * references count, the last drop frees, and a slot can be set to itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/intern.h"

static void test_equal_values_share_a_copy(void **state)
{
	(void)state;
	char a[] = "Europe/Berlin", b[] = "Europe/Berlin";
	const char *x = intern(a), *y = intern(b), *z = intern("UTC");
	assert_ptr_equal(x, y);
	assert_ptr_not_equal(x, a);
	assert_ptr_not_equal(x, z);
	assert_string_equal(x, "Europe/Berlin");
	assert_int_equal(intern_count(), 2);
	a[0] = 'X'; /* the copy is intern's own */
	assert_string_equal(x, "Europe/Berlin");
	intern_drop(x);
	assert_int_equal(intern_count(), 2); /* y still holds it */
	intern_drop(y);
	assert_int_equal(intern_count(), 1);
	intern_drop(z);
	assert_int_equal(intern_count(), 0);
	assert_null(intern(NULL));
	intern_drop(NULL);
}

static void test_set_slot(void **state)
{
	(void)state;
	const char *slot = NULL;
	intern_set(&slot, "ISO, MDY");
	assert_string_equal(slot, "ISO, MDY");
	intern_set(&slot, slot); /* to itself: still there, one reference */
	assert_string_equal(slot, "ISO, MDY");
	assert_int_equal(intern_count(), 1);
	const char *other = NULL;
	intern_set(&other, slot);
	assert_ptr_equal(other, slot);
	intern_set(&slot, NULL);
	assert_null(slot);
	assert_string_equal(other, "ISO, MDY");
	intern_set(&other, "SQL, DMY");
	assert_string_equal(other, "SQL, DMY");
	assert_int_equal(intern_count(), 1);
	intern_set(&other, NULL);
	assert_int_equal(intern_count(), 0);
}

static void test_many_values(void **state)
{
	(void)state;
	enum { N = 5000 };
	const char **v = calloc(N, sizeof(*v));
	assert_non_null(v);
	char buf[32];
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "app-%d", i);
		v[i] = intern(buf);
		assert_non_null(v[i]);
	}
	assert_int_equal(intern_count(), N);
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "app-%d", i);
		const char *again = intern(buf);
		assert_ptr_equal(again, v[i]);
		intern_drop(again);
	}
	for (int i = N - 1; i >= 0; i -= 2)
		intern_drop(v[i]);
	assert_int_equal(intern_count(), N / 2);
	for (int i = 0; i < N; i += 2) {
		snprintf(buf, sizeof(buf), "app-%d", i);
		assert_string_equal(v[i], buf);
		intern_drop(v[i]);
	}
	assert_int_equal(intern_count(), 0);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_values_share_a_copy),
		cmocka_unit_test(test_set_slot),
		cmocka_unit_test(test_many_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
