#!/usr/bin/env bash
# sluiced speaks the systemd notify protocol that the shipped unit's
# Type=notify relies on (the unit itself: tests/packaging/systemd_unit.sh).
# The daemons under test are the shipped broker and generator roles
# (conf/broker.conf, conf/generator.conf) as two processes, each with its
# own NOTIFY_SOCKET: a unix datagram socket this test reads, as systemd
# would.  The generator finds the broker through the bootstrap file
# (brokers = file:PATH) and its events are read back with kcat.
. "$(dirname "$0")/../lib.sh"

t_scratch

# ---------------------------------------------------------- the daemons
# notify_listen NAME: a datagram socket at $work/NAME.sock; every message
# lands as one line (newlines as spaces) in $work/NAME.msgs, with the
# receiver's CLOCK_MONOTONIC in microseconds first.
notify_listen() {
    python3 - "$work/$1.sock" "$work/$1.msgs" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as out:
    out.write("listening\n")
    out.flush()
    while True:
        data = s.recv(4096).decode()
        out.write("%d %s\n" % (time.monotonic_ns() // 1000, data.replace("\n", " ")))
        out.flush()
EOF
    pids+=($!)
    t_wait_until 10 "grep -q listening '$work/$1.msgs'"
}
msgs() { grep -v '^listening$' "$work/$1.msgs" | cut -d' ' -f2- | sed 's/ MONOTONIC_USEC=[0-9]*//' | tr '\n' ',' | sed 's/,$//'; }
count_of() { msgs "$1" | tr ',' '\n' | grep -c "^$2$"; }

role_conf() { # role_conf ROLE PORT: the shipped file, on our port and paths
    sed -e "s|^listen = .*|listen = 127.0.0.1:$2|" \
        -e "s|^modules_dir = .*|modules_dir = $SL_BUILD/_modules|" \
        -e "s|/tmp/sluice-bootstrap|$work/bootstrap|" \
        "$SL_TOP/conf/$1.conf" > "$work/$1.conf"
}
start_role() { # start_role ROLE PORT
    NOTIFY_SOCKET=$work/$1.sock "$SLUICED" -c "$work/$1.conf" 2>>"$work/$1.log" &
    pids+=($!)
    eval "pid_$1=$!"
}

bport=$(t_free_port)
gport=$(t_free_port)
gbase=http://127.0.0.1:$gport
role_conf broker "$bport"
role_conf generator "$gport"
notify_listen broker
notify_listen generator

t_case "the broker role starts, writes its bootstrap file and notifies READY=1"
start_role broker "$bport"
t_wait_until 30 "[ \"\$(count_of broker READY=1)\" -ge 1 ]"
t_check "$(msgs broker)" = "READY=1" "broker said exactly READY=1: $(msgs broker)"
t_check -s "$work/bootstrap" "bootstrap file written: $(cat "$work/bootstrap" 2>/dev/null)"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bport/readyz")" = 200 "broker /readyz 200"
t_end

t_case "the generator role finds the broker through brokers = file:, notifies READY=1, delivers"
start_role generator "$gport"
t_wait_until 30 "[ \"\$(count_of generator READY=1)\" -ge 1 ]"
t_check "$(msgs generator)" = "READY=1" "generator said exactly READY=1: $(msgs generator)"
t_wait_http "$gbase/healthz" 10
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=200"
delivered() { curl -s "$gbase/generator/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivered"]["total"])'; }
t_wait_until 60 '[ "$(delivered)" -ge 200 ]'
got=$(kcat -C -b "$(cat "$work/bootstrap")" -t page_views -e -q -o beginning 2>/dev/null | wc -l)
t_check "$got" -ge 200 "kcat read $got events from the broker role's page_views"
parts=$(kcat -L -b "$(cat "$work/bootstrap")" -t page_views 2>/dev/null | grep -c 'partition ')
t_check "$parts" = 64 "page_views has the 64 partitions broker.conf gives it"
t_end

t_case "SIGHUP: RELOADING=1 with a current MONOTONIC_USEC, then READY=1, under traffic"
kill -HUP "$pid_generator"
t_wait_until 30 "[ \"\$(count_of generator READY=1)\" -ge 2 ]"
t_check "$(msgs generator)" = "READY=1,RELOADING=1,READY=1" "sequence: $(msgs generator)"
line=$(grep 'RELOADING=1' "$work/generator.msgs")
recv=${line%% *}
sent=$(echo "$line" | sed -n 's/.*MONOTONIC_USEC=\([0-9]*\).*/\1/p')
t_check -n "$sent" "RELOADING=1 carries MONOTONIC_USEC ($sent)"
# Both clocks are CLOCK_MONOTONIC: the stamp precedes receipt, closely.
t_check "$(( ${recv:-0} - ${sent:-0} ))" -ge 0 "MONOTONIC_USEC not in the future"
t_check "$(( ${recv:-0} - ${sent:-0} ))" -lt 5000000 "MONOTONIC_USEC within 5 s of receipt"
t_check "$(curl -s -o /dev/null -w '%{http_code}' "$gbase/readyz")" = 200 "generator ready after the reload"
t_end

t_case "a refused reload still ends in READY=1 (the old config keeps running)"
cp "$work/generator.conf" "$work/generator.good"
echo "no_such_key = 1" >> "$work/generator.conf"
kill -HUP "$pid_generator"
t_wait_until 30 "[ \"\$(count_of generator READY=1)\" -ge 3 ]"
t_check "$(msgs generator)" = "READY=1,RELOADING=1,READY=1,RELOADING=1,READY=1" "sequence: $(msgs generator)"
fails=$(curl -s "$gbase/metrics" | awk '$1 == "sluice_reload_failures_total" { print $2 }')
t_check "$fails" = 1 "sluice_reload_failures_total = $fails"
cp "$work/generator.good" "$work/generator.conf"
t_end

t_case "SIGTERM: STOPPING=1, exit 0, bootstrap file removed"
curl -s -o /dev/null -X POST "$gbase/generator/config/speed?eps=0"
kill -TERM "$pid_generator"
wait "$pid_generator"
grc=$?
kill -TERM "$pid_broker"
wait "$pid_broker"
brc=$?
t_check "$grc" -eq 0 "generator exited 0"
t_check "$brc" -eq 0 "broker exited 0"
t_check "$(msgs generator | tr ',' '\n' | tail -1)" = "STOPPING=1" "generator's last word: STOPPING=1"
t_check "$(msgs broker)" = "READY=1,STOPPING=1" "broker: $(msgs broker)"
t_check ! -e "$work/bootstrap" "bootstrap file removed"
errors=$(grep -h 'ERROR' "$work/generator.log" "$work/broker.log" | grep -v no_such_key)
t_check -z "$errors" "no ERROR in either log but the refused key's: ${errors:0:300}"
t_end

t_exit
