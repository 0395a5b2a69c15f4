/*
 * fake_daemon.h - a daemon without main() for unit tests of the core's
 * state machines: the real core on one loop, one generation read from a
 * config text, and one instance of a module that does nothing, whose
 * context a test uses to create connector handles as a module would.  No
 * server is needed: a port that refuses connections and one that accepts
 * them but never answers stand in for servers that are down or hung.
 */
#ifndef SL_FAKE_DAEMON_H
#define SL_FAKE_DAEMON_H

#include <sluice/sluice.h>

/* Starts the loop and a generation of [core] without listeners plus
 * `sections`, a printf format whose one %d is `port`, and returns the
 * instance's context, or NULL after printing why. */
sl_ctx *fake_daemon_start(const char *sections, int port);
/* Stops the instance (releasing what it still holds), frees the
 * generation and the loop.  Returns 0: a cmocka group teardown. */
int fake_daemon_stop(void **state);

/* A loopback port nothing listens on (connections are refused), held
 * until fake_daemon_stop(). */
int fake_refused_port(void);
/* A loopback port that completes the TCP handshake and then never reads
 * or answers, held until fake_daemon_stop(). */
int fake_silent_port(void);

/* Runs the loop until done(arg) is non-zero.  Returns 0, or -1 when
 * `limit` seconds passed first (a bound so that a broken state machine
 * fails the test instead of hanging it; never an assertion about speed). */
int fake_run_until(int (*done)(const void *arg), const void *arg, double limit);
/* done() for fake_run_until(): the int `arg` points to is non-zero. */
int fake_flag(const void *arg);

#endif
