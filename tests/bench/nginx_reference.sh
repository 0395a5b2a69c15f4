# tests/bench/nginx_reference.sh - sourced by HTTP benchmarks: nginx with
# one worker answering a fixed JSON body, the HTTP ceiling an endpoint of
# sluiced is measured against.  At its best: no access log, and
# keepalive_requests raised, since its default (1000) closes every
# keep-alive connection after 1000 requests and makes wrk reconnect, a cost
# sluiced (which keeps connections open) does not pay.
#
#   nginx_ref_start DIR PORT LOCATION BODY   starts it in the foreground
#                                            (background job; $! is its pid)
#                                            with its files under DIR/nginx
nginx_ref_start() {
    local dir=$1/nginx port=$2 location=$3 body=$4
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
    server {
        listen 127.0.0.1:$port;
        location $location {
            default_type application/json;
            return 200 '$body';
        }
    }
}
CONF
    nginx -c "$dir/nginx.conf" -p "$dir" &
}
