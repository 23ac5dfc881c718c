#!/bin/bash
# Contention between IMAP sessions and SMTP deliveries into the same accounts (issue 12). Three figures,
# each the rate of acknowledged SMTP deliveries (`postrider bench smtp`, BDAT, 10 sessions):
#   alone   deliveries into one account with nothing else running (user99: an account as empty as
#           user1 is when the clients start, so the mailbox sizes match), measured before and after
#           the loaded phases (user97) and averaged, as the machine's speed drifts;
#   one     the same while 10 imaptest clients work on user1 with logout=0 (sessions stay open);
#   other   control: deliveries into user98 while the 10 clients work on user2, so the two loads
#           share the machine (CPU, WAL) but no row: what "one" loses beyond this is lock contention;
#   two     two `postrider serve` nodes over the same database, 50 imaptest clients (25 on each node)
#           over user1..user$USERS2, deliveries into the same users, half the sessions through each node.
# Inbound SPF/DKIM/DMARC checks are off (POSTRIDER_INBOUND_AUTH=false): their DNS look-ups are not what
# is measured. Deliveries run in batches of $BATCH messages for $SECS seconds (the loop stops with imaptest), so a
# slow rate still gives a figure over the same period. Kept: one/alone and two/alone. Also printed, from
# each node's /metrics over the run: the server-side delivery time (store + commit) and the IMAP
# STORE/EXPUNGE/SELECT latencies, median and p99 (the upper bound of the histogram bucket).
# Run from the project's root:  scripts/bench/contention.sh
# Env: SECS (20), BATCH (200), SIZE (10240), USERS2 (4), IMAPTEST, PG_URL, OUT (/tmp/pb-contention).
OUT=${OUT:-/tmp/pb-contention}
. "$(dirname "$0")/../../../shared/bench/lib.sh"
IMAPTEST=${IMAPTEST:-/work/tools/imaptest/src/imaptest}
SECS=${SECS:-20}; BATCH=${BATCH:-200}; SIZE=${SIZE:-10240}; USERS2=${USERS2:-4}
MBOX=$PEERS_DIR/data/bench.mbox
[ -x "$IMAPTEST" ] || { echo "no imaptest at $IMAPTEST (set IMAPTEST; see ../shared/bench/README.md)" >&2; exit 1; }
[ -r "$MBOX" ] || { echo "no $MBOX (run ../shared/bench/peers.sh setup)" >&2; exit 1; }
# Ports of our own (the other benchmark scripts use 14xxx): node A 161xx, node B 162xx.
A_SMTP=16125 A_IMAP=16143 A_POP3=16110 A_HTTP=16180
B_SMTP=16225 B_IMAP=16243 B_POP3=16210 B_HTTP=16280
now() { date +%s.%N; }
secs_of() { # a Go duration such as 1m2.5s, 950ms -> seconds
  awk '{ t = 0; s = $0
         if (match(s, /^[0-9.]+h/)) { t += 3600 * substr(s, 1, RLENGTH - 1); s = substr(s, RLENGTH + 1) }
         if (match(s, /^[0-9.]+m[^s]/)) { t += 60 * substr(s, 1, RLENGTH - 2); s = substr(s, RLENGTH) }
         if (s ~ /ms$/) t += s / 1000; else if (s ~ /µs$/) t += s / 1e6; else if (s ~ /s$/) t += s + 0
         printf "%.6f\n", t }'
}

node_env() { # url node(A|B) -> environment of that node
  local s i p h
  if [ "$2" = A ]; then s=$A_SMTP i=$A_IMAP p=$A_POP3 h=$A_HTTP; else s=$B_SMTP i=$B_IMAP p=$B_POP3 h=$B_HTTP; fi
  echo "POSTRIDER_DATABASE_URL=$1 POSTRIDER_DATA_DIR=$OUT/data-$2 POSTRIDER_HOSTNAME=mx.example.test \
POSTRIDER_LOG_LEVEL=warn POSTRIDER_SMTP_ADDR=127.0.0.1:$s POSTRIDER_SUBMISSION_ADDR= POSTRIDER_SUBMISSIONS_ADDR= \
POSTRIDER_IMAP_ADDR=127.0.0.1:$i POSTRIDER_IMAPS_ADDR= POSTRIDER_POP3_ADDR=127.0.0.1:$p POSTRIDER_POP3S_ADDR= \
POSTRIDER_HTTP_ADDR=127.0.0.1:$h POSTRIDER_MAX_CONNS_PER_IP=0 POSTRIDER_INBOUND_AUTH=false"
}

# own_port PORT PID: wait until PID listens on PORT. A server left running on these ports would
# otherwise be measured in our place (wait_port only sees that something answers).
own_port() {
  local i
  for i in $(seq 100); do
    ss -Hltnp "( sport = :$1 )" | grep -q "pid=$2," && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "port $1 is not our server's (pid $2): $(ss -Hltnp "( sport = :$1 )" | grep -o 'users:.*')" >&2
  return 1
}

node_start() { # url node
  local pid
  mkdir -p "$OUT/data-$2"
  setsid env $(node_env "$1" "$2") "$BIN" serve >"$OUT/serve-$2.log" 2>&1 &
  pid=$!; echo $pid >"$OUT/serve-$2.pid"
  local smtp=$A_SMTP imap=$A_IMAP
  [ "$2" = B ] && smtp=$B_SMTP imap=$B_IMAP
  own_port "$smtp" $pid && own_port "$imap" $pid || { nodes_stop; tail -3 "$OUT/serve-$2.log" >&2; exit 1; }
}
nodes_stop() {
  local n p
  for n in A B; do
    p=$(cat "$OUT/serve-$n.pid" 2>/dev/null) || continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null; rm -f "$OUT/serve-$n.pid"
  done
}
trap nodes_stop EXIT

# deliver PORT TO SESSIONS FILE [PID]: batches of $BATCH messages for $SECS seconds, or while PID (an
# imaptest) runs; writes "sent seconds" (sums over the batches) to FILE.
deliver() {
  local port=$1 to=$2 sess=$3 f=$4 watch=${5:-} t0 sent=0 secs=0 line n d
  t0=$(now)
  while :; do
    if [ -n "$watch" ]; then kill -0 "$watch" 2>/dev/null || break
    else [ "$(echo "$(now) - $t0 >= $SECS" | bc)" = 1 ] && break; fi
    line=$("$BIN" bench smtp -addr 127.0.0.1:$port -sessions "$sess" -messages "$BATCH" -size "$SIZE" \
      -from bench@remote.test -to "$to" 2>&1) || { echo "bench smtp: $line" >&2; break; }
    n=$(sed -E 's/^([0-9]+) messages.*/\1/' <<<"$line")
    d=$(sed -E 's/.* in ([0-9hmsµ.]+) over .*/\1/' <<<"$line" | secs_of)
    sent=$((sent + n)); secs=$(echo "$secs + $d" | bc -l)
  done
  echo "$sent $secs" >"$f"
}

# imaptest_run PORT USERFMT USERS CLIENTS LABEL: stress mode with logout=0, in the background; its pid in $!.
imaptest_run() {
  timeout $((SECS + 60)) "$IMAPTEST" host=127.0.0.1 port="$1" user="$2" pass=pass users="$3" clients="$4" \
    logout=0 mbox="$MBOX" secs="$SECS" seed=123 >"$OUT/imaptest-$5.txt" 2>&1 &
}
imaptest_rates() { # label -> per-second rates of the totals line
  awk -v secs="$SECS" '
    /^Totals:/ {t=1; next}
    t==1 && /^[A-Z]/ {n=split($0, names, " "); t=2; next}
    t==2 && /^ *[0-9]+ *[0-9]/ && !/%/ {split($0, v, " "); s=""; for (i=1; i<=n; i++) s=s sprintf(" %s=%.0f", names[i], v[i]/secs); print s; exit}
  ' "$OUT/imaptest-$1.txt"
}

metrics() { curl -s "http://127.0.0.1:$1/metrics"; } # port -> exposition text
# latency BEFORE AFTER METRIC SELECTOR -> "n=.. p50<=..ms p99<=..ms" over the histogram's delta
latency() {
  awk -v m="$3" -v sel="$4" '
    FNR == 1 { f++ }
    index($0, m "_bucket{") == 1 && index($0, sel) {
      le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
      if (f == 1) b[le] = $NF; else { a[le] = $NF; if (!(le in seen)) { seen[le] = 1; order[++k] = le } }
    }
    END {
      n = a["+Inf"] - b["+Inf"]
      if (n <= 0) { print "n=0"; exit }
      p50 = p99 = ""
      for (i = 1; i <= k; i++) {
        c = a[order[i]] - b[order[i]]
        if (p50 == "" && c >= 0.5 * n) p50 = order[i]
        if (p99 == "" && c >= 0.99 * n) p99 = order[i]
      }
      printf "n=%d p50<=%s p99<=%s", n, (p50 == "+Inf" ? p50 : p50 * 1000 "ms"), (p99 == "+Inf" ? p99 : p99 * 1000 "ms")
    }' "$1" "$2"
}
server_latencies() { # before after -> one line
  local s="delivery $(latency "$1" "$2" postrider_smtp_delivery_duration_seconds '')" c
  for c in STORE EXPUNGE SELECT; do
    s="$s; $c $(latency "$1" "$2" postrider_command_duration_seconds "command=\"$c\",proto=\"imap\"")"
  done
  echo "$s"
}
rate() { awk '{ if ($2 > 0) printf "%.0f", $1 / $2; else print 0 }' "$1"; }

build
rm -f "$OUT"/alone "$OUT"/alone-after "$OUT"/one "$OUT"/other "$OUT"/alone2-* "$OUT"/alone2b-* "$OUT"/two-* # earlier runs
url=$(fresh_db postrider_contention); seed "$url"
echo "$(date -u '+%F %T UTC')  $(uptime)  (shared machine)"

# 1. Deliveries alone, then with 10 clients on the same user; node A only.
node_start "$url" A
metrics $A_HTTP >"$OUT/m-alone-0"
deliver $A_SMTP user99@example.test 10 "$OUT/alone"
metrics $A_HTTP >"$OUT/m-alone-1"
imaptest_run $A_IMAP user1@example.test 1 10 one; ipid=$!
sleep 2 # the clients log in and select
metrics $A_HTTP >"$OUT/m-one-0"
deliver $A_SMTP user1@example.test 10 "$OUT/one" $ipid
metrics $A_HTTP >"$OUT/m-one-1"
wait $ipid
imaptest_run $A_IMAP user2@example.test 1 10 other; ipid=$!
sleep 2
deliver $A_SMTP user98@example.test 10 "$OUT/other" $ipid
wait $ipid
deliver $A_SMTP user97@example.test 10 "$OUT/alone-after"
nodes_stop

# 2. Two nodes over the same database, 50 clients over USERS2 users, deliveries into those users
#    through both nodes (10 sessions in all); alone: into user51.. (as empty).
url=$(fresh_db postrider_contention2); seed "$url" # user1 is empty again
node_start "$url" A; node_start "$url" B
metrics $A_HTTP >"$OUT/m-twoA-0"; metrics $B_HTTP >"$OUT/m-twoB-0"
per=$(( (10 + USERS2 - 1) / USERS2 )) # SMTP sessions per user
jobs=()
for u in $(seq "$USERS2"); do
  port=$A_SMTP; [ $((u % 2)) = 0 ] && port=$B_SMTP
  deliver $port "user$((50 + u))@example.test" $per "$OUT/alone2-$u" & jobs+=($!)
done
wait "${jobs[@]}" # (not a bare wait: the servers are children too)
metrics $A_HTTP >"$OUT/m-twoA-1"; metrics $B_HTTP >"$OUT/m-twoB-1"
imaptest_run $A_IMAP 'user%d@example.test' "$USERS2" 25 twoA; pa=$!
imaptest_run $B_IMAP 'user%d@example.test' "$USERS2" 25 twoB; pb=$!
sleep 2
metrics $A_HTTP >"$OUT/m-twoA-2"; metrics $B_HTTP >"$OUT/m-twoB-2"
jobs=()
for u in $(seq "$USERS2"); do
  port=$A_SMTP; [ $((u % 2)) = 0 ] && port=$B_SMTP
  deliver $port "user$u@example.test" $per "$OUT/two-$u" $pa & jobs+=($!)
done
wait $pa $pb "${jobs[@]}"
metrics $A_HTTP >"$OUT/m-twoA-3"; metrics $B_HTTP >"$OUT/m-twoB-3"
jobs=()
for u in $(seq "$USERS2"); do
  port=$A_SMTP; [ $((u % 2)) = 0 ] && port=$B_SMTP
  deliver $port "user$((60 + u))@example.test" $per "$OUT/alone2b-$u" & jobs+=($!)
done
wait "${jobs[@]}"
nodes_stop

sum_rate() { local t=0 f; for f in "$@"; do t=$((t + $(rate "$f"))); done; echo $t; }
r0a=$(rate "$OUT/alone"); r0b=$(rate "$OUT/alone-after"); r0=$(( (r0a + r0b) / 2 ))
r1=$(rate "$OUT/one"); rc=$(rate "$OUT/other")
r2x=$(sum_rate "$OUT"/alone2-*); r2y=$(sum_rate "$OUT"/alone2b-*); r2a=$(( (r2x + r2y) / 2 )); r2=$(sum_rate "$OUT"/two-*)
pct() { if [ "$2" -gt 0 ]; then echo "$(( 100 * $1 / $2 ))%"; else echo "-"; fi; }
echo "one node, user1:       alone $r0 msg/s ($r0a before, $r0b after)   with 10 imaptest clients (logout=0) $r1 msg/s = $(pct "$r1" "$r0") kept"
echo "   server side alone:  $(server_latencies "$OUT/m-alone-0" "$OUT/m-alone-1")"
echo "   server side busy:   $(server_latencies "$OUT/m-one-0" "$OUT/m-one-1")"
echo "   imaptest /s:       $(imaptest_rates one)"
echo "   control: clients on user2, deliveries into user98 $rc msg/s = $(pct "$rc" "$r0") kept;  imaptest /s:$(imaptest_rates other)"
echo "two nodes, $USERS2 users: alone $r2a msg/s ($r2x before, $r2y after)   with 50 imaptest clients (25 per node) $r2 msg/s = $(pct "$r2" "$r2a") kept"
echo "   node A busy:        $(server_latencies "$OUT/m-twoA-2" "$OUT/m-twoA-3")"
echo "   node B busy:        $(server_latencies "$OUT/m-twoB-2" "$OUT/m-twoB-3")"
echo "   imaptest /s A:     $(imaptest_rates twoA)"
echo "   imaptest /s B:     $(imaptest_rates twoB)"
