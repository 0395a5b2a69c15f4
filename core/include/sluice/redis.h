/*
 * sluice/redis.h - the Redis connector, for modules.
 *
 * A handle is one connection to the server named by [redis] url, driven on
 * the daemon's loop.  It belongs to the instance that created it and is
 * released with it; the module may also free it earlier.  The connection
 * is re-established with exponential backoff whenever it is lost; while it
 * is down the handle is not ready (/readyz) and commands fail at once with
 * an error instead of waiting.
 *
 * Commands are argument vectors, never format strings: a value is sent as
 * one argument exactly as given, whatever bytes it holds.  Replies come in
 * the order the commands were issued.  Publish/subscribe and MONITOR are
 * not supported (their replies do not pair with commands).
 *
 *     const char *argv[] = { "SET", key, value };
 *     sl_redis_command(r, 3, argv, NULL, on_set, state);
 */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H

#include <stddef.h>
#include <sluice/sluice.h>

typedef struct sl_redis sl_redis;

/* A reply, read-only, valid only during the callback it is handed to. */
typedef struct sl_redis_reply sl_redis_reply;

typedef enum {
    SL_REDIS_STRING = 1, /* bulk string */
    SL_REDIS_ARRAY = 2,
    SL_REDIS_INTEGER = 3,
    SL_REDIS_NIL = 4,
    SL_REDIS_STATUS = 5, /* "+OK" and the like */
    SL_REDIS_ERROR = 6   /* "-ERR ..." from the server */
} sl_redis_type;

/*
 * Called exactly once per accepted command, on the loop, never from inside
 * sl_redis_command() itself.  On success `err` is NULL and `reply` is the
 * server's answer.  When the server answered with an error reply, `reply`
 * is that reply (SL_REDIS_ERROR) and `err` its text.  When there was no
 * answer (not connected, connection lost, timeout) `reply` is NULL and
 * `err` says why.  Neither pointer may be kept after the callback returns.
 */
typedef void (*sl_redis_fn)(sl_redis *r, const sl_redis_reply *reply, const char *err, void *arg);

/* A connection configured by [redis] for this instance; connecting starts
 * at once.  Returns NULL after logging why (bad url, out of memory). */
SL_API sl_redis *sl_redis_new(sl_ctx *ctx);

/* Closes the connection and frees the handle.  Callbacks of commands still
 * waiting are not called.  Safe inside one of the handle's own callbacks
 * (the memory is then released once the callback returns). */
SL_API void sl_redis_free(sl_redis *r);

/*
 * Sends one command of `argc` arguments.  `argvlen` gives each argument's
 * length (binary-safe) or is NULL for NUL-terminated strings.  The
 * arguments are copied before this returns.  Returns 0 when `fn` will be
 * called, or -1 (argc < 1, out of memory, handle being freed) when it will
 * not.  `fn` may be NULL to ignore the outcome.
 */
SL_API int sl_redis_command(sl_redis *r, int argc, const char *const *argv, const size_t *argvlen,
                            sl_redis_fn fn, void *arg);

/* 1 when connected and ready to take commands. */
SL_API int sl_redis_connected(const sl_redis *r);

/* Reading a reply. */
SL_API sl_redis_type sl_redis_reply_type(const sl_redis_reply *reply);
/* The bytes of a string, status or error reply (NUL-terminated too), with
 * their length in *len when len is not NULL; NULL for other types. */
SL_API const char *sl_redis_reply_str(const sl_redis_reply *reply, size_t *len);
SL_API long long sl_redis_reply_integer(const sl_redis_reply *reply);
/* Elements of an array reply; 0 and NULL for other types. */
SL_API size_t sl_redis_reply_len(const sl_redis_reply *reply);
SL_API const sl_redis_reply *sl_redis_reply_at(const sl_redis_reply *reply, size_t i);

#endif
