package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/postrider/postrider/mailstore"
)

const queueUsage = "usage: postrider queue list | queue show ID | queue retry ID... | queue flush | queue remove ID..."

// queueStore is what the queue commands use.
type queueStore interface {
	mailstore.Queue
	GetAccountByID(ctx context.Context, id int64) (mailstore.Account, error)
}

// listReplyLen bounds a remote reply on a `queue list` line; `queue show`
// prints it whole.
const listReplyLen = 80

func cmdQueue(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr(queueUsage)
	}
	sub, rest := args[0], args[1:]
	var ids []int64
	switch sub {
	case "list", "flush":
		if len(rest) != 0 {
			return usageErr(queueUsage)
		}
	case "show", "retry", "remove":
		if len(rest) == 0 || sub == "show" && len(rest) != 1 {
			return usageErr(queueUsage)
		}
		for _, a := range rest {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil || id <= 0 {
				return usageErr("queue %s: %q is not a queue ID (see `postrider queue list`)", sub, a)
			}
			ids = append(ids, id)
		}
	default:
		return usageErr("unknown queue command %q (list, show, retry, flush, remove)", sub)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, closeStore, err := openOpsStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	now := time.Now()
	switch sub {
	case "list":
		return queueList(ctx, st, now, stdout)
	case "show":
		return queueShow(ctx, st, ids[0], now, stdout)
	case "flush":
		n, err := st.RetryQueue(ctx, nil)
		if err != nil {
			return fmt.Errorf("queue flush: %w", err)
		}
		fmt.Fprintf(stdout, "%d %s due now\n", n, plural(n, "item", "items"))
		return nil
	case "retry":
		return queueRetry(ctx, st, ids, stdout)
	case "remove":
		var missing []string
		for _, id := range ids {
			err := st.RemoveQueueItem(ctx, id)
			if errors.Is(err, mailstore.ErrNoSuchQueueItem) {
				missing = append(missing, strconv.FormatInt(id, 10))
				continue
			}
			if err != nil {
				return fmt.Errorf("queue remove %d: %w", id, err)
			}
			fmt.Fprintf(stdout, "queue item %d removed (no bounce is sent)\n", id)
		}
		if len(missing) > 0 {
			return fmt.Errorf("queue remove: no queue item %s (delivered, bounced or removed)", strings.Join(missing, ", "))
		}
	}
	return nil
}

func queueRetry(ctx context.Context, st queueStore, ids []int64, stdout io.Writer) error {
	var found []int64
	var missing []string
	for _, id := range ids {
		_, err := st.GetQueueItem(ctx, id)
		if errors.Is(err, mailstore.ErrNoSuchQueueItem) {
			missing = append(missing, strconv.FormatInt(id, 10))
			continue
		}
		if err != nil {
			return fmt.Errorf("queue retry %d: %w", id, err)
		}
		found = append(found, id)
	}
	if len(found) > 0 {
		n, err := st.RetryQueue(ctx, found)
		if err != nil {
			return fmt.Errorf("queue retry: %w", err)
		}
		fmt.Fprintf(stdout, "%d %s due now\n", n, plural(n, "item", "items"))
	}
	if len(missing) > 0 {
		return fmt.Errorf("queue retry: no queue item %s (delivered, bounced or removed)", strings.Join(missing, ", "))
	}
	return nil
}

func queueList(ctx context.Context, st queueStore, now time.Time, stdout io.Writer) error {
	items, err := st.ListQueue(ctx, 0)
	if err != nil {
		return fmt.Errorf("queue list: %w", err)
	}
	if len(items) == 0 {
		fmt.Fprintln(stdout, "queue is empty")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSIZE\tFROM\tNEXT ATTEMPT\tRECIPIENTS")
	for _, it := range items {
		rcpts := make([]string, len(it.Recipients))
		for i, r := range it.Recipients {
			rcpts[i] = clean(r.Address, 0) + " (" + rcptSummary(r) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", it.ID, age(now.Sub(it.CreatedAt)), humanSize(it.Size),
			reversePath(it.MailFrom), nextAttempt(it, now), strings.Join(rcpts, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d %s\n", len(items), plural(len(items), "item", "items"))
	return nil
}

// rcptSummary is a recipient's state for `queue list`: state, attempts and
// the last reply, cut short.
func rcptSummary(r mailstore.QueueRecipient) string {
	s := string(r.State)
	if r.Attempts > 0 {
		s += fmt.Sprintf(", %d %s", r.Attempts, plural(r.Attempts, "attempt", "attempts"))
	}
	if r.LastReply != "" {
		s += ": " + clean(r.LastReply, listReplyLen)
	}
	return s
}

func queueShow(ctx context.Context, st queueStore, id int64, now time.Time, stdout io.Writer) error {
	it, err := st.GetQueueItem(ctx, id)
	if errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		return fmt.Errorf("queue show: no queue item %d (delivered, bounced or removed)", id)
	}
	if err != nil {
		return fmt.Errorf("queue show %d: %w", id, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 1, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, a...)) }
	line("Queue item", "%d", it.ID)
	from := reversePath(it.MailFrom)
	switch {
	case it.SenderAccount != 0:
		acc, err := st.GetAccountByID(ctx, it.SenderAccount)
		if err != nil {
			from += fmt.Sprintf(", submitted by account %d (gone)", it.SenderAccount)
		} else {
			from += ", submitted by " + acc.Address
		}
	case it.MailFrom == "":
		from += " (a delivery status notification)"
	default:
		from += " (forwarded)"
	}
	line("From", "%s", from)
	line("Size", "%s (%d bytes)", humanSize(it.Size), it.Size)
	line("Queued", "%s (%s ago)", stamp(it.CreatedAt), age(now.Sub(it.CreatedAt)))
	line("Next attempt", "%s", nextAttempt(it, now))
	if it.LeaseHolder != "" {
		line("Lease", "%s until %s", clean(it.LeaseHolder, 0), stamp(it.LeaseUntil))
	}
	if it.WarnedAt.IsZero() {
		line("Delay warning", "not sent")
	} else {
		line("Delay warning", "sent %s", stamp(it.WarnedAt))
	}
	if len(it.Params) > 0 {
		keys := make([]string, 0, len(it.Params))
		for k := range it.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			keys[i] = clean(k, 0) + "=" + clean(it.Params[k], 0)
		}
		line("Parameters", "%s", strings.Join(keys, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range it.Recipients {
		fmt.Fprintf(stdout, "\nRecipient %s\n", clean(r.Address, 0))
		tw := tabwriter.NewWriter(stdout, 0, 4, 1, ' ', 0)
		line := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s:\t%s\n", k, fmt.Sprintf(format, a...)) }
		line("State", "%s", r.State)
		if r.Attempts == 0 {
			line("Attempts", "none yet")
		} else {
			line("Attempts", "%d, the last %s (%s ago)", r.Attempts, stamp(r.LastAttempt), age(now.Sub(r.LastAttempt)))
		}
		if r.LastReply != "" {
			reply := clean(r.LastReply, 0)
			if r.LastCode != "" && !strings.Contains(reply, r.LastCode) {
				reply = clean(r.LastCode, 0) + " " + reply
			}
			line("Last reply", "%s", reply)
		}
		if r.RemoteMTA != "" {
			line("Remote server", "%s", clean(r.RemoteMTA, 0))
		}
		if r.Notify != "" || r.ORCPT != "" {
			var dsn []string
			if r.Notify != "" {
				dsn = append(dsn, "NOTIFY="+clean(r.Notify, 0))
			}
			if r.ORCPT != "" {
				dsn = append(dsn, "ORCPT="+clean(r.ORCPT, 0))
			}
			line("DSN", "%s", strings.Join(dsn, " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// nextAttempt says when an item is tried next: now when it is due, or by
// which node while one holds its lease.
func nextAttempt(it mailstore.QueueItem, now time.Time) string {
	if it.LeaseHolder != "" && it.LeaseUntil.After(now) {
		return "being delivered by " + clean(it.LeaseHolder, 40)
	}
	if !it.NextAttempt.After(now) {
		return "now"
	}
	return "in " + age(it.NextAttempt.Sub(now))
}

func reversePath(s string) string { return "<" + clean(s, 0) + ">" }

// age writes a duration the way an operator reads a queue: "45s", "12m",
// "5h3m", "2d4h".
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// clean makes text that came from the network (a remote server's reply, an
// address) safe for a terminal: control and format characters (escape
// sequences, bidirectional overrides) and invalid UTF-8 become "?", and with max > 0 it is cut to max characters.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
