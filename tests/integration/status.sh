#!/usr/bin/env bash
# The status page (GET / of the metrics module) as a person sees it: loaded
# in headless Chromium (Debian's chromium) against a sluiced running the
# metrics module, the generator (embedded broker) and the echo test module.
# The page must list every instance with its readiness, draw the rates as
# charts, redraw in place, follow a readiness change, and fetch nothing
# from outside.  A screenshot is kept in $SL_BUILD/tests/artifacts/.
. "$(dirname "$0")/../lib.sh"

t_scratch
browser=$(command -v chromium || true)
artifacts=$SL_BUILD/tests/artifacts
mkdir -p "$artifacts" "$work/mods"
cp "$SL_BUILD/_modules/metrics.so" "$SL_BUILD/_modules/generator.so" \
    "$SL_BUILD/tests/modules/echo/.libs/echo.so" "$work/mods/"
port=$(t_free_port)
base=http://127.0.0.1:$port

write_conf() { # write_conf ECHO_READY
    cat > "$work/sluice.conf" <<EOF
[core]
listen = 127.0.0.1:$port
modules_dir = mods
[kafka]
brokers = embedded
embedded_topics = page_views:4
[module metrics]
sample_interval = 0.5s
history = 1m
[module generator]
eps = 200
partitions = 4
[module echo]
ready = $1
EOF
}
write_conf true
"$SLUICED" -c "$work/sluice.conf" 2>>"$work/sluiced.log" &
daemon=$!
pids+=("$daemon")
t_wait_http "$base/healthz" 20

# chrome_dom URL: the DOM after the page's scripts ran for 6 s of virtual
# time (network waits do not count), saved to $work/dom.html; a screenshot
# of the same load goes to $work/shot.png.
chrome() {
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/chrome" --window-size=1280,1400 --virtual-time-budget=6000 "$@" \
        2>>"$work/chrome.log"
}
chrome_dom() {
    chrome --dump-dom "$1" > "$work/dom.html"
    chrome --screenshot="$work/shot.png" "$1" >/dev/null
}
# dom PYTHON-EXPR: evaluated with `d`, the dumped DOM as a string, and re.
dom() { python3 -c 'import re,sys; d=open(sys.argv[1]).read(); print(eval(sys.argv[2]))' "$work/dom.html" "$1"; }

t_case "GET / is one self-contained HTML page"
code=$(curl -s -o "$work/page.html" -w '%{http_code} %{content_type}' "$base/")
t_check "$code" = "200 text/html; charset=utf-8" "GET / answered $code"
t_check "$(grep -c -i -E '<script[^>]+src=|<link|@import|url\(|<img' "$work/page.html")" = 0 \
    "no external script, stylesheet, import or image"
t_check "$(grep -o -E 'https?://[^"'\'' )]*' "$work/page.html" | grep -v -c '^http://www.w3.org/2000/svg$')" = 0 \
    "no URL but the SVG namespace name"
t_end

t_case "status.json: every instance, its readiness, and rates over the samples"
# Enough samples for a rate: the generator sends 200 events/s.
rate() { curl -s "$base/status.json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
v = [s for s in j["series"] if s["name"] == "sluice_generator_delivered_total"][0]["values"]
print(int(v[-1] or 0) if len(v) >= 6 else 0)'; }
t_wait_until 30 '[ "$(rate)" -ge 100 ]'
t_check "$(rate)" -ge 100 "sluice_generator_delivered_total rate near 200/s (6 samples or more): $(rate)"
got=$(curl -s "$base/status.json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(j["ready"], ",".join(sorted("%s:%s" % (m["module"], m["ready"]) for m in j["modules"])),
      len(j["t"]) >= 4, all(len(s["values"]) == len(j["t"]) for s in j["series"]))')
t_check "$got" = "True echo:True,generator:True,metrics:True True True" "ready, instances, samples: $got"
t_end

t_case "Chromium renders the module list and the charts, and redraws in place"
if [ -z "$browser" ]; then
    t_skip "chromium is not installed (tests/harness/install-deps.sh installs it)"
else
    chrome_dom "$base/"
    t_check "$(dom 'len(re.findall(r"<tr class=\"module\"", d))')" = 3 "three module rows"
    t_check "$(dom '" ".join(sorted(re.findall(r"data-module=\"(\w+)\" data-instance=\"\" data-ready=\"true\"", d)))')" = \
        "echo generator metrics" "echo, generator, metrics listed as ready"
    # The generator's delivered rate: a path with a point per sample.
    pts=$(dom 'len(re.search(r"data-series=\"sluice_generator_delivered_total\".*?<path class=\"line\" d=\"([^\"]*)\"", d, re.S).group(1).split())')
    t_check "${pts:-0}" -ge 4 "generator delivered-rate chart drawn with $pts points"
    t_check "$(dom 're.search(r"<section class=\"group\" data-group=\"generator\"", d) is not None')" = True \
        "a chart group for the generator"
    t_check "$(dom 'len(re.findall(r"<path class=\"line\"", d))')" -ge 10 "charts of the core and the generator"
    renders=$(dom 're.search(r"<body data-renders=\"(\d+)\"", d).group(1)')
    t_check "${renders:-0}" -ge 2 "redrawn in place $renders times without a reload"
    t_check "$(dom 're.search(r"id=\"overall\" class=\"badge ok\">ready<", d) is not None')" = True "overall: ready"
    cp "$work/shot.png" "$artifacts/status.png"
    t_check "$(stat -c %s "$artifacts/status.png" 2>/dev/null || echo 0)" -gt 20000 \
        "screenshot kept: $artifacts/status.png"
fi
t_end

t_case "a module turning not ready shows on the page and in the readiness gauges"
write_conf false
kill -HUP "$daemon"
t_wait_until 20 '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/readyz")" = 503 ]'
metrics=$(curl -s "$base/metrics")
t_check "$(echo "$metrics" | awk '$1 == "sluice_ready" { print $2 }')" = 0 "sluice_ready 0"
t_check "$(echo "$metrics" | awk '$1 == "sluice_modules_not_ready" { print $2 }')" = 1 "sluice_modules_not_ready 1"
echo "$metrics" | promtool check metrics > "$work/promtool.out" 2>&1
rc=$?
cat "$work/promtool.out"
t_check "$rc" -eq 0 "promtool check metrics"
if [ -z "$browser" ]; then
    t_skip "chromium is not installed (tests/harness/install-deps.sh installs it)"
else
    chrome_dom "$base/"
    t_check "$(dom 're.search(r"data-module=\"echo\" data-instance=\"\" data-ready=\"false\"", d) is not None')" = True \
        "echo shown not ready"
    t_check "$(dom 're.search(r"configured not ready", d) is not None')" = True "with its reason"
    t_check "$(dom 're.search(r"id=\"overall\" class=\"badge bad\">not ready<", d) is not None')" = True "overall: not ready"
    cp "$work/shot.png" "$artifacts/status-not-ready.png"
fi
t_end

t_case "SIGTERM: exit 0"
kill -TERM "$daemon"
wait "$daemon"
t_check $? -eq 0 "sluiced exited 0"
t_end

t_exit
