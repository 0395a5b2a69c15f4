# tests/bench/rdkafka_reference.sh - sourced by Kafka benchmarks: librdkafka's
# own rdkafka_performance, the reference a Kafka producer is measured
# against.
#
#   ref_build DIR                         builds it into DIR, prints its path
#   ref_rate PERF BOOTSTRAP TOPIC SIZE N [ARG...]
#                                         produces N messages of SIZE bytes
#                                         (-D copies each payload, -X
#                                         linger.ms=5, then ARGs such as -H
#                                         name=value headers), prints msgs/s;
#                                         fails unless every one was delivered

ref_build() {
    local here dir=$1
    local example=/usr/share/doc/librdkafka-dev/examples/rdkafka_performance.c
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    [ -f "$example" ] || { echo "$example missing: apt-get install -y librdkafka-dev" >&2; return 1; }
    # The example includes a few headers of librdkafka's source tree
    # ("../src/rd.h", "rdtime.h"); rdkafka_shim/ stands in for them.
    mkdir -p "$dir/examples" "$dir/src"
    cp "$example" "$dir/examples/"
    cp "$here/rdkafka_shim/rd.h" "$here/rdkafka_shim/rdtime.h" "$dir/src/"
    gcc -O2 -w -I"$dir/src" -I/usr/include/librdkafka "$dir/examples/rdkafka_performance.c" \
        -o "$dir/rdkafka_performance" -lrdkafka -lm || return 1
    echo "$dir/rdkafka_performance"
}

ref_rate() {
    local perf=$1 bootstrap=$2 topic=$3 size=$4 n=$5
    shift 5
    "$perf" -P -t "$topic" -b "$bootstrap" -s "$size" -c "$n" -D -X linger.ms=5 "$@" 2>&1 |
        awk -v n="$n" '/messages produced/ && / delivered/ { line = $0 }
            END { if (match(line, /[0-9]+ delivered/) && substr(line, RSTART, RLENGTH - 10) + 0 == n &&
                      match(line, /: [0-9]+ msgs\/s/)) print substr(line, RSTART + 2, RLENGTH - 8) + 0;
                  else { print "rdkafka_performance did not deliver everything: " line > "/dev/stderr"; exit 1 } }'
}
