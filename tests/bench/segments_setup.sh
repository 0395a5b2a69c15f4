# tests/bench/segments_setup.sh - what the benchmarks of the segments API
# share (bench_segments.sh, and bench_tracing.sh and callgrind_tracing.sh
# through tracing_setup.sh), sourced after tests/lib.sh and
# tests/harness/services.sh with `build` and `work` set: picks sluiced's
# port (`sport`), copies the segments and metrics modules, and defines
#   segments_conf    the configuration on stdout: [postgres] pool_size
#                    POOL (16), the metrics and segments modules with the
#                    lines METRICS_EXTRA and SEGMENTS_EXTRA
#   post_lua FILE N  a wrk script posting membership changes of users
#                    1..N, each adding one of the segments S0..S9 and
#                    deleting another
sport=$(t_free_port)
mkdir -p "$work/mods"
cp "$build/_modules/segments.so" "$build/_modules/metrics.so" "$work/mods/"

segments_conf() {
    cat <<CONF
[core]
listen = 127.0.0.1:$sport
modules_dir = mods
log_level = warn
[postgres]
dsn = $SL_PG_DSN
pool_size = ${POOL:-16}
max_queue = 4096
[redis]
url = $SL_REDIS_URL
[module metrics]
${METRICS_EXTRA:-}
[module segments]
${SEGMENTS_EXTRA:-}
CONF
}

post_lua() {
    cat > "$1" <<LUA
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local a = math.random(0, 9)
  local d = (a + math.random(1, 9)) % 10
  return wrk.format("POST", "/segment/user", headers, string.format(
    '{"user_id":%d,"add_segments":["S%d"],"delete_segments":["S%d"]}', math.random(1, $2), a, d))
end
LUA
}
