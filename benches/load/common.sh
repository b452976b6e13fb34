# Shared by load.sh and ab.sh (sourced): the origin nginx and the rules both measure with.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_origin_conf DIR PORT [LOCATION_EXTRA]: DIR/origin.conf, one nginx worker serving DIR/www
# on PORT (DIR/logs and DIR/temp must exist).
write_origin_conf() {
  local w=$1 port=$2 extra=${3:-}
  cat > "$w/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $w/origin.pid;
error_log $w/logs/origin.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  types { text/html html; }
  default_type text/html;
  charset utf-8;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $w/temp; proxy_temp_path $w/temp; fastcgi_temp_path $w/temp;
  uwsgi_temp_path $w/temp; scgi_temp_path $w/temp;
  server {
    listen 127.0.0.1:$port backlog=4096;
    root $w/www;
    location / { index index.html; $extra }
  }
}
EOF
}

# write_rules DIR ORIGIN_PORT: DIR/rules/site.toml, the site number and one source pool for
# direct traffic (wrk sends no cookie, no referrer: every request is a new direct visitor).
write_rules() {
  mkdir -p "$1/rules"
  cat > "$1/rules/site.toml" <<EOF
hosts    = ["127.0.0.1", "localhost"]
upstream = "http://127.0.0.1:$2"
country  = "US"
numbers  = ["+1 555-010-0000"]
exclude  = ["[data-telswap-ignore]", "[data-calltrk-noswap]"]

[[pool]]
name         = "direct"
mode         = "source"
when.channel = ["direct"]
numbers      = ["+1 555-010-2001"]
EOF
}
