#!/bin/bash
# Outbound delivery, side by side in one run (issue 11): messages submitted with AUTH and relayed to a
# local smtp-sink (Postfix's test sink) as the smarthost, Postrider against Postfix 3.7 with the same
# sink as relayhost. Both acknowledge a message only after committing it (Postrider: to PostgreSQL;
# Postfix: its queue file, fsync'd). The figure is end to end: from the first connect until the sink
# has received every message.
# Run from the project's root:  scripts/bench/outbound-compare.sh
# Env: N (3000 messages) S (10 sessions) SIZE (10240 octets), PG_URL, OUT (see ../shared/bench/lib.sh).
# Postfix is loaded without AUTH (permit_mynetworks from 127.0.0.0/8): its SASL would go through
# Dovecot's auth socket once per session, which is not what is measured here.
. "$(dirname "$0")/../../../shared/bench/lib.sh"
N=${N:-3000}; S=${S:-10}; SIZE=${SIZE:-10240}
SINK=14998 P_SUB=14587 PF_PORT=10026
bash "$HERE/peers.sh" setup >/dev/null || exit 1
now() { date +%s.%N; }

sink_start() {
  sink_stop
  /usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$SINK" 256 >"$OUT/sink.out" 2>&1 &
  echo $! >"$OUT/sink.pid"
  wait_port $SINK 5 || { echo "smtp-sink did not start: $(cat "$OUT/sink.out")" >&2; exit 1; }
}
sink_stop() { [ -s "$OUT/sink.pid" ] && kill "$(cat "$OUT/sink.pid")" 2>/dev/null; rm -f "$OUT/sink.pid"; sleep 0.2; }
sink_count() { tr '\r' '\n' <"$OUT/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
wait_sink() { # t0 -> prints "count seconds"
  local c t
  while :; do
    c=$(sink_count); c=${c:-0}; t=$(now)
    [ "$c" -ge "$N" ] && break
    [ "$(echo "$t - $1 > 900" | bc)" = 1 ] && break
    sleep 0.05
  done
  echo "$c $(echo "$t - $1" | bc -l)"
}
load() { # addr [user] -> bench output
  local auth=(); [ -n "${2:-}" ] && auth=(-user "$2" -pass pass)
  "$BIN" bench smtp -addr "$1" -sessions "$S" -messages "$N" -size "$SIZE" -from user1@example.test \
    -to someone@remote.test ${DATA:+-data} "${auth[@]}" 2>&1
}

# own_port PORT PID: wait until PID listens on PORT. A server left running on
# the benchmark's ports would otherwise be measured in our place (wait_port
# only sees that something answers).
own_port() {
  local i
  for i in $(seq 100); do
    ss -Hltnp "( sport = :$1 )" | grep -q "pid=$2," && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "port $1 is not our server's (pid $2): $(ss -Hltnp "( sport = :$1 )" | grep -o 'users:.*'); $(tail -2 "$OUT/serve.log")" >&2
  return 1
}

build
url=$(fresh_db postrider_bench); seed "$url"

# Postrider: submission with AUTH, every message relayed through the sink.
sink_start
mkdir -p "$OUT/data"
setsid env $(srv_env "$url") POSTRIDER_SUBMISSION_ADDR=127.0.0.1:$P_SUB POSTRIDER_RELAY_HOST=127.0.0.1:$SINK \
  "$BIN" serve >"$OUT/serve.log" 2>&1 &
echo $! >"$OUT/serve.pid"
wait_port $P_HTTP 20 || { echo "postrider did not start: $(tail -3 "$OUT/serve.log")" >&2; exit 1; }
own_port $P_SUB "$(cat "$OUT/serve.pid")" || { serve_stop; sink_stop; exit 1; }
t0=$(now); pr_load=$(load 127.0.0.1:$P_SUB user1@example.test); read -r pr_c pr_t <<<"$(wait_sink "$t0")"
serve_stop; sink_stop
left=$(psql -qAt "$url" -c "SELECT count(*) FROM queue_items" 2>/dev/null)

# Postfix: the same load, relayhost = the sink.
P=$PEERS_DIR/postfix-out
mkdir -p "$P"/{etc,spool,data,log}
sed -e "s#@PEERS@/postfix#$P#g" -e 's#10025#'$PF_PORT'#' "$HERE/conf/master.cf" >"$P/etc/master.cf"
sed -e "s#@PEERS@/postfix#$P#g" \
    -e '/^virtual_mailbox_domains/d' -e '/^virtual_transport/d' -e '/^default_transport/d' -e '/^relay_transport/d' \
    -e 's/^syslog_name = .*/syslog_name = postfix-out/' "$HERE/conf/main.cf" >"$P/etc/main.cf"
cat >>"$P/etc/main.cf" <<CF
relayhost = [127.0.0.1]:$SINK
smtp_tls_security_level = none
CF
chown postfix:postfix "$P/data"; chmod 700 "$P/data"
/usr/sbin/postfix -c "$P/etc" stop >/dev/null 2>&1
rm -rf "$P/spool"/{active,incoming,deferred,maildrop,defer,bounce,corrupt,hold,trace}
sink_start
/usr/sbin/postfix -c "$P/etc" start >/dev/null 2>&1
wait_port $PF_PORT 10 || { echo "postfix failed: see $P/log/postfix.log" >&2; exit 1; }
t0=$(now); pf_load=$(load 127.0.0.1:$PF_PORT); read -r pf_c pf_t <<<"$(wait_sink "$t0")"
/usr/sbin/postfix -c "$P/etc" stop >/dev/null 2>&1; sink_stop

echo "postrider submission: $pr_load"
echo "postfix submission:   $pf_load"
printf 'postrider: %s of %s at the sink in %.2f s = %.0f msg/s (%s items left in the queue)\n' "$pr_c" "$N" "$pr_t" "$(echo "$pr_c / $pr_t" | bc -l)" "$left"
printf 'postfix:   %s of %s at the sink in %.2f s = %.0f msg/s\n' "$pf_c" "$N" "$pf_t" "$(echo "$pf_c / $pf_t" | bc -l)"
printf 'postrider/postfix: %.2fx  (%s messages of %s octets, %s sessions)\n' "$(echo "($pr_c / $pr_t) / ($pf_c / $pf_t)" | bc -l)" "$N" "$SIZE" "$S"
