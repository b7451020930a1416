#!/usr/bin/env bash
# Instructions per event of `outbox relay --until-empty` beside `outbox send` for the same events,
# counted by valgrind's callgrind: unlike CPU time, they do not move with this VM's noise. EVENTS
# lines of the 1 KiB body outbox_bench sends, to nginx answering canned SendMessageBatch replies
# (as outbox_bench's does), on 127.0.0.1; nginx is stopped by its PID at the end.
#
# Usage: bench/relay_instructions.sh [OUTBOX_PROGRAM] [EVENTS]
#        (defaults: build/dev/tools/outbox/outbox, 20000; needs nginx, valgrind, python3)
#        RELAY_COUNT=syscalls counts system calls and context switches instead (perf stat):
#        the relay's extra cost that callgrind does not see, the store's file I/O and the
#        hand-offs between its threads.
set -euo pipefail

program=$(realpath "${1:-build/dev/tools/outbox/outbox}")
events=${2:-20000}
work=$(mktemp -d /tmp/outbox-relay-instructions.XXXXXX)
nginx_pid=""
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The body of bench_support.cpp's body_of_1kib(), its replies, a free port, the input file.
read -r port < <(python3 - "$work" "$events" <<'EOF'
import hashlib, socket, sys
work, events = sys.argv[1], int(sys.argv[2])
body = '{"event":"order.created","payload":"'
while len(body) < 1022:
    body += chr(ord('a') + len(body) % 26)
body += '"}'
md5 = hashlib.md5(body.encode()).hexdigest()
batch = '{"Successful":[' + ','.join(
    '{"Id":"%d","MessageId":"5fea7756-0ea4-451a-a703-a558b933e27%d","MD5OfMessageBody":"%s"}'
    % (i, i, md5) for i in range(10)) + '],"Failed":[]}'
single = '{"MessageId":"m-1","MD5OfMessageBody":"%s"}' % md5
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
with open(work + "/nginx.conf", "w") as f:
    f.write(f"""daemon off; master_process off; worker_processes 1;
error_log {work}/error.log warn; pid {work}/nginx.pid;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 60s;
  client_max_body_size 4m; client_body_buffer_size 4m; client_body_temp_path {work};
  proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:{port}; location / {{ default_type application/x-amz-json-1.0;
    if ($http_x_amz_target = "AmazonSQS.SendMessage") {{ return 200 '{single}'; }}
    return 200 '{batch}'; }} }} }}
""")
with open(work + "/events.jsonl", "w") as f:
    f.write((body + "\n") * events)
print(port)
EOF
)

nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" &
nginx_pid=$!
for _ in $(seq 500); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.01
done

export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
queue="http://127.0.0.1:$port/000000000000/bench"

count=${RELAY_COUNT:-instructions}
case $count in instructions | syscalls) ;; *) echo "RELAY_COUNT: instructions or syscalls" >&2; exit 2 ;; esac

# What one run of the program costs (its own process only): instructions under callgrind, or
# "SYSCALLS CONTEXT_SWITCHES" under perf stat.
instructions() {
    if [ "$count" = syscalls ]; then
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -o "$work/perf.csv" \
            "$program" "$@" >"$work/run.out" 2>"$work/valgrind.err" || {
            cat "$work/run.out" "$work/valgrind.err" "$work/perf.csv" >&2
            exit 1
        }
        awk -F, '$3 == "raw_syscalls:sys_enter" { s = $1 } $3 == "context-switches" { c = $1 }
                 END { print s, c }' "$work/perf.csv"
        return
    fi
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$program" "$@" \
        >"$work/run.out" 2>"$work/valgrind.err" || {
        cat "$work/run.out" "$work/valgrind.err" >&2
        exit 1
    }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/valgrind.err"
}

send=$(instructions send --to "$queue" "$work/events.jsonl")
"$program" enqueue --store "$work/store.db" --to "$queue" "$work/events.jsonl" \
    >"$work/enqueue.out" 2>&1 || {
    cat "$work/enqueue.out" >&2
    exit 1
}
relay=$(instructions relay --store "$work/store.db" --until-empty)
cat "$work/run.out" "$work/valgrind.err" | grep -q "delivered $events," || {
    echo "the relay did not deliver every event:" >&2
    cat "$work/run.out" "$work/valgrind.err" >&2
    exit 1
}
# shellcheck disable=SC2086 # a figure a word
python3 - "$events" $send $relay <<'EOF'
import sys
events, figures = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
names = ["instructions"] if len(figures) == 2 else ["system calls", "context switches"]
n = len(names)
for label, values in (("outbox send FILE", figures[:n]), ("outbox relay --until-empty", figures[n:])):
    print(label.ljust(28) + ", ".join(f"{v:>13,} {name} ({v / events:,.{0 if v >= 100 * events else 2}f} per event)"
                                      for v, name in zip(values, names)))
print(f"relay / send: {figures[n] / figures[0]:.2f}x ({names[0]})")
EOF
