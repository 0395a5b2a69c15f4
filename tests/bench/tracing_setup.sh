# tests/bench/tracing_setup.sh - what bench_tracing.sh and
# callgrind_tracing.sh share, sourced by both after tests/lib.sh and
# tests/harness/services.sh, with `top`, `build` and `work` set and a
# `pids` array their cleanup kills: starts PostgreSQL, Redis and the
# collector, sources segments_setup.sh (sluiced's port, its modules,
# post_lua), sets `base`, and defines
#   write_conf on|off  the configuration: segments_conf, and with "on"
#                      [tracing] at sample_ratio 1 with the line
#                      TRACING_EXTRA
#   seed_users N       users 1..N, each in three of the segments S0..S9
#   ready              1 when sluiced answers /readyz
#   metric NAME        a metric's value (0 when absent)
sl_svc_start postgres >/dev/null
sl_svc_start redis >/dev/null
psqlc() { psql -X -At -q "$SL_PG_DSN" -c "$1"; }

# The collector is nginx answering 200 to every batch, its body read and
# discarded (tests/bench/nginx_reference.sh): what a collector costs is
# not sluiced's, and on a machine of two cores a slower one takes its CPU
# from sluiced.  tests/harness/otlp_receiver.py, the tests' collector,
# spent a tenth of a core at 70,000 requests a second and closed its
# connection after every batch, which made sluiced connect again for each.
. "$top/tests/bench/nginx_reference.sh"
command -v nginx >/dev/null || { echo "nginx missing: bash tests/harness/install-deps.sh" >&2; exit 1; }
oport=$(t_free_port)
nginx_ref_start "$work" "$oport" /v1/traces '{}'
pids+=($!)
. "$top/tests/bench/segments_setup.sh"
base=http://127.0.0.1:$sport

write_conf() {
    segments_conf > "$work/sluice.conf"
    if [ "$1" = on ]; then
        printf '%s\n' '[tracing]' "endpoint = http://127.0.0.1:$oport/v1/traces" \
            'sample_ratio = 1' 'max_queue = 65536' ${TRACING_EXTRA:+"$TRACING_EXTRA"} >> "$work/sluice.conf"
    fi
}

seed_users() {
    psqlc "INSERT INTO users (id) SELECT generate_series(1, $1);
           SELECT setval('users_id_seq', $1);
           INSERT INTO segments (slug) SELECT 'S' || g FROM generate_series(0, 9) g;
           INSERT INTO user_segments (user_id, slug)
             SELECT u, 'S' || ((u + k * 3) % 10) FROM generate_series(1, $1) u, generate_series(0, 2) k" > /dev/null
}

ready() { [ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 200 ]; }
metric() { curl -s "$base/metrics" | awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'; }
