#!/usr/bin/env bash
# scale_clickhouse.sh on the other layout: one shard of two replicas.  The
# second server's death leaves every insert to the first replica, and the
# restarted one catches up through replication.
SL_CHC_LAYOUT=replicas exec bash "$(dirname "$0")/scale_clickhouse.sh"
