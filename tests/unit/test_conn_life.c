/*
 * test_conn_life.c - the lifetime guard every connector shares
 * (connectors/connector.c): a handle freed inside its own callbacks is
 * destroyed exactly once, only after the outermost frame of its code left,
 * whether its module or its instance's release freed it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>

#include "connectors/connector.h"

/* The loop lives in main.c, which unit tests do not link; the guard never
 * touches it. */
struct event_base *sl_base;

static int destroyed;

static void destroy(void *obj)
{
    (void)obj;
    destroyed++;
}

static void guard_init(sl_conn_life *life)
{
    *life = (sl_conn_life){ .destroy = destroy, .obj = life };
    destroyed = 0;
}

static void free_outside_callbacks(void **state)
{
    sl_conn_life life;

    (void)state;
    guard_init(&life);
    sl_conn_free(&life);
    assert_int_equal(destroyed, 1);
    sl_conn_free(&life); /* a second free is ignored */
    assert_int_equal(destroyed, 1);
}

static void leave_says_alive(void **state)
{
    sl_conn_life life;

    (void)state;
    guard_init(&life);
    sl_conn_enter(&life);
    assert_int_equal(sl_conn_leave(&life), 1);
    assert_int_equal(life.depth, 0);
    assert_int_equal(destroyed, 0);
    sl_conn_free(&life);
    assert_int_equal(destroyed, 1);
}

static void free_inside_a_callback(void **state)
{
    sl_conn_life life;

    (void)state;
    guard_init(&life);
    sl_conn_enter(&life);
    sl_conn_free(&life); /* the module frees it from its callback */
    assert_int_equal(destroyed, 0);
    assert_int_equal(life.freeing, 1);
    assert_int_equal(sl_conn_leave(&life), 0);
    assert_int_equal(destroyed, 1);
}

static void nested_frames(void **state)
{
    sl_conn_life life;

    (void)state;
    guard_init(&life);
    sl_conn_enter(&life); /* the loop calls into the handle */
    sl_conn_enter(&life); /* which calls a module back */
    sl_conn_free(&life);
    assert_int_equal(sl_conn_leave(&life), 0); /* gone for the caller ... */
    assert_int_equal(destroyed, 0);            /* ... but the outer frame still runs */
    assert_int_equal(sl_conn_leave(&life), 0);
    assert_int_equal(destroyed, 1);
}

static void release_then_free(void **state)
{
    sl_conn_life life;

    (void)state;
    guard_init(&life);
    sl_conn_enter(&life);
    sl_conn_released(&life); /* the instance stopped meanwhile */
    assert_null(life.ctx);
    sl_conn_free(&life); /* and the module frees it too */
    sl_conn_released(&life);
    assert_int_equal(destroyed, 0);
    assert_int_equal(sl_conn_leave(&life), 0);
    assert_int_equal(destroyed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(free_outside_callbacks), cmocka_unit_test(leave_says_alive),
        cmocka_unit_test(free_inside_a_callback), cmocka_unit_test(nested_frames),
        cmocka_unit_test(release_then_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
