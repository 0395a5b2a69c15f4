/*
 * trace_ctx.c - the current context slot; see trace.h.  Apart from spans
 * and export, so that what only reads or switches the slot (the log, the
 * timers) links without them.
 */
#include <string.h>
#include "trace/trace.h"

sl_trace_ctx sl_trace_cur;

void sl_trace_enter(const sl_trace_ctx *next, sl_trace_ctx *saved)
{
    *saved = sl_trace_cur;
    if (next != NULL)
        sl_trace_cur = *next;
    else
        memset(&sl_trace_cur, 0, sizeof(sl_trace_cur));
}

void sl_trace_restore(const sl_trace_ctx *saved)
{
    sl_trace_cur = *saved;
}
