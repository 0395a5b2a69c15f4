/*
 * backoff.c - the retry schedule.
 */
#include "backoff.h"

double gen_backoff_delay(const gen_backoff *b, int failed)
{
    double d = b->base;

    if (failed < 1 || failed >= b->attempts)
        return -1;
    for (int i = 1; i < failed && d < b->cap; i++)
        d *= 2;
    return d < b->cap ? d : b->cap;
}
