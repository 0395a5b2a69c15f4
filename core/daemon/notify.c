/*
 * notify.c - sd_notify(3) in a few lines: one datagram to the unix socket
 * named by $NOTIFY_SOCKET ("@name" for the abstract namespace).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "notify.h"

void sl_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char msg[128];
    size_t plen;
    socklen_t salen;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return;
    plen = strlen(path);
    if (plen >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, plen);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    /* systemd wants a timestamp with RELOADING=1 (Type=notify-reload). */
    if (strcmp(state, "RELOADING=1") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(msg, sizeof(msg), "%s\nMONOTONIC_USEC=%lld", state,
                 (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    } else {
        snprintf(msg, sizeof(msg), "%s", state);
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
        sl_log_core(SL_LOG_DEBUG, "core", "cannot notify %s", path);
    close(fd);
}
