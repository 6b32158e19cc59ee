/* test_shard.c - the world stop of proxy/shard.h with real event loops on real
 * threads: a stop parks every other loop until it is resumed, stops nest on the
 * owner's thread, two loops stopping the world at once take turns (never both
 * inside, never deadlocked), and a loop that has ended is not waited for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/proxy.h"
#include "proxy/shard.h"

#define N 3

static struct proxy px[N];
static struct event_base *bases[N];
static pthread_t threads[N];
static struct event *tick_ev[N];
static atomic_long ticks[N];

/* Test 3: stops made from loop callbacks. */
#define STOPS_PER_LOOP 400
static long inside;       /* loops inside a stop now (never more than one) */
static long stops_done;   /* incremented only inside a stop: no atomics needed */
static int max_inside;
static int my_stops[N];

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	atomic_fetch_add(&ticks[(intptr_t)arg], 1);
}

static void stopper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	intptr_t i = (intptr_t)arg;
	for (int k = 0; k < 4 && my_stops[i] < STOPS_PER_LOOP; k++) {
		world_stop(&px[i]);
		if (++inside > max_inside)
			max_inside = (int)inside;
		stops_done++;
		inside--;
		world_resume(&px[i]);
		my_stops[i]++;
	}
	if (my_stops[i] >= STOPS_PER_LOOP) {
		event_del(tick_ev[i]);
		shard_retire(&px[i]); /* done: the other loop's stops must not wait for this one */
		event_base_loopbreak(bases[i]);
	}
}

static void *loop_main(void *arg)
{
	intptr_t i = (intptr_t)arg;
	event_base_dispatch(bases[i]);
	return NULL;
}

static void start_loops(event_callback_fn cb)
{
	for (intptr_t i = 1; i < N; i++) {
		tick_ev[i] = event_new(bases[i], -1, EV_PERSIST, cb, (void *)i);
		struct timeval tv = {0, 1000};
		event_add(tick_ev[i], &tv);
		assert_int_equal(pthread_create(&threads[i], NULL, loop_main, (void *)i), 0);
	}
}

static void join_loops(void)
{
	for (int i = 1; i < N; i++) {
		pthread_join(threads[i], NULL);
		event_free(tick_ev[i]);
	}
}

static int setup(void **state)
{
	(void)state;
	char err[128];
	if (shards_init(N) < 0)
		return -1;
	for (int i = 0; i < N; i++) {
		bases[i] = event_base_new();
		memset(&px[i], 0, sizeof(px[i]));
		px[i].base = bases[i];
		px[i].wake_fd = -1;
		list_init(&px[i].pools);
		if (!bases[i] || shard_attach(&px[i], i, err, sizeof(err)) < 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < N; i++) {
		shard_detach(&px[i]);
		event_base_free(bases[i]);
	}
	shards_free();
	return 0;
}

static void test_a_stop_parks_every_other_loop(void **state)
{
	(void)state;
	start_loops(tick_cb);
	sleep_ms(30);
	for (int i = 1; i < N; i++)
		assert_true(atomic_load(&ticks[i]) > 0);
	for (int round = 0; round < 3; round++) {
		world_stop(&px[0]);
		long before[N];
		for (int i = 1; i < N; i++)
			before[i] = atomic_load(&ticks[i]);
		sleep_ms(40); /* 40 timer periods */
		for (int i = 1; i < N; i++)
			assert_int_equal(atomic_load(&ticks[i]), before[i]);
		/* stops nest on the owner's thread */
		world_stop(&px[0]);
		world_resume(&px[0]);
		sleep_ms(10);
		for (int i = 1; i < N; i++)
			assert_int_equal(atomic_load(&ticks[i]), before[i]);
		world_resume(&px[0]);
		sleep_ms(40);
		for (int i = 1; i < N; i++)
			assert_true(atomic_load(&ticks[i]) > before[i]);
	}
	world_stop(&px[0]);
	shards_break_all();
	world_resume(&px[0]);
	join_loops();
}

static void test_loops_that_stop_the_world_at_once_take_turns(void **state)
{
	(void)state;
	/* Shard 0 (this thread) runs no loop from here on. */
	shard_retire(&px[0]);
	start_loops(stopper_cb);
	join_loops();
	assert_int_equal(max_inside, 1);
	assert_int_equal(stops_done, (long)STOPS_PER_LOOP * (N - 1));
	/* Every loop has ended: a stop returns at once. */
	world_stop(&px[0]);
	world_resume(&px[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_stop_parks_every_other_loop),
		cmocka_unit_test(test_loops_that_stop_the_world_at_once_take_turns),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
