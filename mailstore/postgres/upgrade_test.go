package postgres_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

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
	// Version 2 had no functions of today's shape (they are applied for the
	// latest schema only), so rows are written here as version 2's
	// pr_deliver and pr_store_flags wrote them: UID and modseq from the
	// mailbox row, counters kept exact.
	deliverV2 := func(i int) {
		t.Helper()
		body := fmt.Sprintf("Subject: old %d\r\n\r\nbody %d\r\n", i, i)
		_, err := conn.Exec(ctx, `
			WITH c AS (INSERT INTO contents (sha256, size, header_size, chunk_size, refcount, parsed)
			           VALUES (sha256($1::bytea), $2, 12, 262144, 1, '{}'::json) RETURNING id),
			     ch AS (INSERT INTO chunks (content_id, seq, data) SELECT id, 0, $1::bytea FROM c),
			     q AS (UPDATE accounts SET quota_used = quota_used + $2 WHERE id = $4),
			     mb AS (UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
			                msg_count = msg_count + 1, msg_unseen = msg_unseen + 1, msg_size = msg_size + $2
			             WHERE id = $3 RETURNING uidnext - 1 AS uid, highestmodseq)
			INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, crlf_size, content_id)
			SELECT $3, mb.uid, mb.highestmodseq, now(), $2, $2, c.id FROM mb, c`,
			[]byte(body), int64(len(body)), mbox, acct)
		must(t, err)
	}
	for i := 0; i < 20; i++ {
		deliverV2(i)
	}
	// Flag old messages out of UID order, as version 2 code would
	// (\Answered: no counter changes).
	for _, u := range []int64{15, 3, 9, 3} {
		_, err := conn.Exec(ctx, `
			WITH mb AS (UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq)
			UPDATE messages SET flags = flags | 2, modseq = mb.highestmodseq FROM mb
			 WHERE mailbox_id = $1 AND uid = $2`, mbox, u)
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

// TestUpgradeDKIMSignFrom: keys stored before version 8, which signed
// from their creation, sign from their creation after the upgrade
// (sign_from NULL reads as created_at), active and retired alike.
func TestUpgradeDKIMSignFrom(t *testing.T) {
	ctx := ctxT(t)
	url := pgtest.NewEmptyDatabase(t)
	must(t, postgres.MigrateTo(ctx, url, 7))
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(context.Background())
	_, priv, err := ed25519.GenerateKey(nil)
	must(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	must(t, err)
	created := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	retired := created.Add(30 * 24 * time.Hour)
	_, err = conn.Exec(ctx, `
		WITH d AS (INSERT INTO domains (name) VALUES ('example.org'))
		INSERT INTO dkim_keys (domain, selector, algorithm, private_key, created_at, retired_at)
		VALUES ('example.org', 'v7old', 'ed25519', $1, $2, $3), ('example.org', 'v7new', 'ed25519', $1, $4, NULL)`,
		der, created, retired, retired)
	must(t, err)

	must(t, postgres.Migrate(ctx, url))
	st := pgtest.OpenStore(t, url)
	ks, err := st.ListDKIMKeys(ctx, "example.org")
	must(t, err)
	if len(ks) != 2 || ks[0].Selector != "v7new" || ks[1].Selector != "v7old" {
		t.Fatalf("keys after the upgrade: %+v", ks)
	}
	if !ks[0].SignFrom.Equal(retired) || !ks[0].RetiredAt.IsZero() {
		t.Errorf("active key of version 7: signs from %v, retired %v; want from its creation %v", ks[0].SignFrom, ks[0].RetiredAt, retired)
	}
	if !ks[1].SignFrom.Equal(created) || !ks[1].RetiredAt.Equal(retired) {
		t.Errorf("retired key of version 7: signs from %v, retired %v; want %v, %v", ks[1].SignFrom, ks[1].RetiredAt, created, retired)
	}
}
