package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// TestUpgradeCreatedModSeq builds a version 2 database with messages, some
// of them flagged after delivery, migrates it to the latest version
// (created_modseq 0 for the old rows, messages_changed instead of the full
// modseq index) and checks Changes for every since against a plain scan,
// before and after new deliveries and flag changes.
func TestUpgradeCreatedModSeq(t *testing.T) {
	ctx := ctxT(t)
	url := pgtest.NewEmptyDatabase(t)
	must(t, postgres.MigrateTo(ctx, url, 2))
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(context.Background())
	var acct, mbox int64
	must(t, conn.QueryRow(ctx, `
		WITH d AS (INSERT INTO domains (name) VALUES ('example.org')),
		     a AS (INSERT INTO accounts (address, domain, password_hash) VALUES ('old@example.org', 'example.org', 'x') RETURNING id)
		SELECT id FROM a`).Scan(&acct))
	must(t, conn.QueryRow(ctx, `INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES ($1, 'INBOX', 7) RETURNING id`, acct).Scan(&mbox))
	deliverV2 := func(i int) {
		t.Helper()
		body := fmt.Sprintf("Subject: old %d\r\n\r\nbody %d\r\n", i, i)
		_, err := conn.Exec(ctx, `SELECT * FROM pr_deliver(NULL, sha256($1::bytea), $2, $2, 12, 262144, NULL, '{}'::json, '', '',
			$1::bytea, ARRAY[$3::bigint], NULL, ARRAY['INBOX'], ARRAY[0::smallint], ARRAY[''], now(), '', NULL)`,
			[]byte(body), int64(len(body)), acct)
		must(t, err)
	}
	for i := 0; i < 20; i++ {
		deliverV2(i)
	}
	// Flag old messages out of UID order, as version 2 code would.
	for _, u := range []int64{15, 3, 9, 3} {
		_, err := conn.Exec(ctx, `SELECT * FROM pr_store_flags($1, $2, ARRAY[$3::bigint], ARRAY[$3::bigint], 1, 2::smallint, '{}', 0)`, acct, mbox, u)
		must(t, err)
	}

	must(t, postgres.Migrate(ctx, url))
	st := pgtest.OpenStore(t, url)

	check := func(stage string) {
		t.Helper()
		var highest int64
		must(t, conn.QueryRow(ctx, `SELECT highestmodseq FROM mailboxes WHERE id = $1`, mbox).Scan(&highest))
		for since := int64(0); since <= highest; since++ {
			rows, err := conn.Query(ctx, `SELECT uid FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid`, mbox, since)
			must(t, err)
			want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			must(t, err)
			c, err := st.Changes(ctx, acct, mbox, uint64(since))
			must(t, err)
			got := make([]int64, len(c.Updated))
			for i, m := range c.Updated {
				got[i] = int64(m.UID)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: Changes(%d) = %v, scan says %v", stage, since, got, want)
			}
		}
	}
	check("after upgrade")
	for i := 0; i < 9; i++ {
		_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: acct}},
			Body: strings.NewReader(fmt.Sprintf("Subject: new %d\r\n\r\nbody\r\n", i))})
		must(t, err)
	}
	check("after new deliveries")
	for _, u := range []uint32{22, 5, 27, 5} {
		_, err := st.StoreFlags(ctx, acct, mbox, mailstore.UIDs(u), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
		must(t, err)
	}
	check("after flag changes")
	var oldRows int
	must(t, conn.QueryRow(ctx, `SELECT count(*) FROM messages WHERE mailbox_id = $1 AND created_modseq = 0`, mbox).Scan(&oldRows))
	if oldRows != 20 {
		t.Errorf("%d rows kept created_modseq 0, want the 20 made before the upgrade", oldRows)
	}
}
