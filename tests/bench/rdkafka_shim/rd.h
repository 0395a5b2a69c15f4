/*
 * rd.h - the few internals of librdkafka's source tree that its example
 * rdkafka_performance.c includes, so that bench_kafka.sh can build the
 * example Debian ships (/usr/share/doc/librdkafka-dev/examples) against the
 * installed library.  Same meaning as librdkafka's own: rd_clock() is a
 * monotonic clock in microseconds.
 */
#ifndef RD_SHIM_H
#define RD_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

typedef int64_t rd_ts_t;

#define RD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define rd_snprintf snprintf

static inline rd_ts_t rd_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (rd_ts_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
