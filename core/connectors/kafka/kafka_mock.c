/*
 * kafka_mock.c - commands to the embedded (mock) cluster without stalling
 * the loop.
 *
 * Every rd_kafka_mock_* command is handed to the mock cluster's own thread
 * and the caller waits for its answer.  In librdkafka 2.0.2 that thread
 * sometimes notices a command only when its poll times out, once a second:
 * measured here, 87 of 300 topic creations took about 1 s.  The thread
 * also polls its listening sockets, so a connection attempt to one of them
 * wakes it at once.  A command therefore runs on a short-lived helper
 * thread while the caller knocks on the cluster's listeners every
 * millisecond until it is done; the same 300 creations then took 21 ms at
 * the most.  When every broker is down (no listener to knock on) a command
 * may still take up to 1 s; that only happens under the admin switch.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "kafka.h"

typedef enum { CMD_TOPIC_CREATE, CMD_BROKER_SET, CMD_PUSH_ERRORS, CMD_DESTROY } cmd_kind;

typedef struct {
    cmd_kind kind;
    rd_kafka_mock_cluster_t *mock;
    const char *topic;
    int partitions;
    int replication;
    int32_t broker;
    int up;
    int16_t api;
    size_t count;
    const rd_kafka_resp_err_t *errors;
    rd_kafka_resp_err_t result;
    atomic_int done;
} mock_cmd;

static void *run_cmd(void *arg)
{
    mock_cmd *cmd = arg;

    switch (cmd->kind) {
    case CMD_TOPIC_CREATE:
        cmd->result = rd_kafka_mock_topic_create(cmd->mock, cmd->topic, cmd->partitions,
                                                 cmd->replication);
        break;
    case CMD_BROKER_SET:
        cmd->result = cmd->up ? rd_kafka_mock_broker_set_up(cmd->mock, cmd->broker)
                              : rd_kafka_mock_broker_set_down(cmd->mock, cmd->broker);
        break;
    case CMD_PUSH_ERRORS:
        rd_kafka_mock_push_request_errors_array(cmd->mock, cmd->api, cmd->count, cmd->errors);
        cmd->result = RD_KAFKA_RESP_ERR_NO_ERROR;
        break;
    case CMD_DESTROY:
        rd_kafka_mock_cluster_destroy(cmd->mock);
        cmd->result = RD_KAFKA_RESP_ERR_NO_ERROR;
        break;
    }
    atomic_store(&cmd->done, 1);
    return NULL;
}

/* A connection attempt to every listener of "127.0.0.1:P1,127.0.0.1:P2". */
static void knock(const char *bootstraps)
{
    const char *at = bootstraps;

    while (at != NULL && *at != '\0') {
        const char *colon = strchr(at, ':');
        struct sockaddr_in sa;
        int fd;

        if (colon == NULL)
            return;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)atoi(colon + 1));
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            /* Non-blocking: the attempt alone wakes the listener's poll;
             * refused (a broker down) or in progress, it does not matter. */
            (void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
            close(fd);
        }
        at = strchr(colon, ',');
        if (at != NULL)
            at++;
    }
}

static rd_kafka_resp_err_t run(mock_cmd *cmd)
{
    struct timespec ms = { 0, 1000000 };
    char *bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(cmd->mock));
    pthread_t th;

    atomic_init(&cmd->done, 0);
    if (bootstraps == NULL || pthread_create(&th, NULL, run_cmd, cmd) != 0) {
        /* No helper: run it here, at the price of a possible 1 s wait. */
        free(bootstraps);
        run_cmd(cmd);
        return cmd->result;
    }
    while (!atomic_load(&cmd->done)) {
        knock(bootstraps);
        nanosleep(&ms, NULL);
    }
    pthread_join(th, NULL);
    free(bootstraps);
    return cmd->result;
}

rd_kafka_resp_err_t sl_kafka_mock_topic_create(rd_kafka_mock_cluster_t *mock, const char *topic,
                                               int partitions, int replication)
{
    mock_cmd cmd = { .kind = CMD_TOPIC_CREATE,
                     .mock = mock,
                     .topic = topic,
                     .partitions = partitions,
                     .replication = replication };

    return run(&cmd);
}

rd_kafka_resp_err_t sl_kafka_mock_broker_set(rd_kafka_mock_cluster_t *mock, int32_t broker, int up)
{
    mock_cmd cmd = { .kind = CMD_BROKER_SET, .mock = mock, .broker = broker, .up = up };

    return run(&cmd);
}

void sl_kafka_mock_push_errors(rd_kafka_mock_cluster_t *mock, int16_t api, size_t count,
                               const rd_kafka_resp_err_t *errors)
{
    mock_cmd cmd = {
        .kind = CMD_PUSH_ERRORS, .mock = mock, .api = api, .count = count, .errors = errors
    };

    run(&cmd);
}

void sl_kafka_mock_destroy(rd_kafka_mock_cluster_t *mock)
{
    mock_cmd cmd = { .kind = CMD_DESTROY, .mock = mock };

    run(&cmd);
}
