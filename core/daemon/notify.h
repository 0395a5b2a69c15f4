/*
 * notify.h - the systemd notify protocol, spoken without libsystemd.
 */
#ifndef SL_NOTIFY_H
#define SL_NOTIFY_H

/* Sends `state` ("READY=1", "RELOADING=1", "STOPPING=1") to $NOTIFY_SOCKET
 * when it is set; does nothing otherwise.  Never fails the caller. */
void sl_notify(const char *state);

#endif
