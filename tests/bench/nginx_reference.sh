# tests/bench/nginx_reference.sh - sourced by HTTP benchmarks: nginx with
# one worker answering a fixed JSON body, the HTTP ceiling an endpoint of
# sluiced is measured against.  At its best: no access log, and
# keepalive_requests raised, since its default (1000) closes every
# keep-alive connection after 1000 requests and makes wrk reconnect, a cost
# sluiced (which keeps connections open) does not pay.
#
#   nginx_ref_start DIR PORT LOCATION BODY   starts it in the foreground
#                                            (background job; $! is its pid)
#                                            with its files under DIR/nginx;
#                                            a request body of any size is
#                                            read and discarded (a collector
#                                            that takes export batches)
#   nginx_proxy_start DIR PORT UPSTREAM...   the same nginx as a round-robin
#                                            proxy over those 127.0.0.1 ports
#                                            (keep-alive to them too), files
#                                            under DIR
nginx_ref_start() {
    _nginx_run "$1/nginx" "$2" "location $3 {
            client_max_body_size 0;
            default_type application/json;
            return 200 '$4';
        }"
}

nginx_proxy_start() {
    local dir=$1 port=$2 ups="" p
    shift 2
    for p in "$@"; do ups+="server 127.0.0.1:$p; "; done
    _nginx_run "$dir" "$port" "location / {
            proxy_pass http://upstreams;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }" "upstream upstreams { $ups keepalive 64; }"
}

# _nginx_run DIR PORT LOCATION [UPSTREAM]
_nginx_run() {
    local dir=$1
    mkdir -p "$dir"
    cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $dir;
    proxy_temp_path $dir;
    fastcgi_temp_path $dir;
    uwsgi_temp_path $dir;
    scgi_temp_path $dir;
    ${4:-}
    server {
        listen 127.0.0.1:$2;
        $3
    }
}
CONF
    nginx -c "$dir/nginx.conf" -p "$dir" &
}
