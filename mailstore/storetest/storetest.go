// Package storetest is the conformance suite of the mail store contract
// (package mailstore). It takes any mailstore.Store implementation and checks
// every behaviour the contract documents: domains, accounts, aliases and
// recipient resolution, mailboxes, delivery, append, copy, move, flags,
// expunge with tombstones, changes since a mod-sequence (and the hints
// that say when there may be some), streamed bodies, parsed details and
// cached contents, SELECT in one step, quotas, search, \Recent claims, account isolation, notifications across
// handles, login-failure records, leases, the outbound queue, DKIM keys
// and cluster secrets, concurrency and memory bounds.
//
// A backend's test calls Run with a Factory:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Factory{New: ..., NewPair: ...})
//	}
//
// Every subtest gets a fresh, empty, migrated store from the factory and runs
// in parallel with the others, except BigMessage, which measures the Go heap
// and therefore runs first and alone.
package storetest

import (
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// Factory makes stores for the suite.
type Factory struct {
	// New returns a fresh, empty, migrated store; the factory closes it
	// when the test ends (t.Cleanup).
	New func(t *testing.T) mailstore.Store
	// NewPair returns two handles ("two nodes") on one fresh database, for
	// cross-handle checks (notifications, login failures, leases). Nil skips
	// the cross-handle checks.
	NewPair func(t *testing.T) (a, b mailstore.Store)
}

type suiteTest struct {
	name string
	fn   func(t *testing.T, f Factory)
}

// groups lists the parallel subtests by area.
var groups = []struct {
	name  string
	tests []suiteTest
}{
	{"Domains", []suiteTest{
		{"CreateListDelete", testDomains},
	}},
	{"Accounts", []suiteTest{
		{"CreateGetList", testAccounts},
		{"DeleteRecreate", testAccountDeleteRecreate},
	}},
	{"Aliases", []suiteTest{
		{"Resolve", testAliases},
		{"AccountDelete", testAliasesOnAccountDelete},
		{"Forward", testAliasesForward},
	}},
	{"Mailboxes", []suiteTest{
		{"CreateAndList", testMailboxCreate},
		{"InvalidNames", testMailboxInvalidNames},
		{"Rename", testMailboxRename},
		{"RenameINBOX", testMailboxRenameInbox},
		{"Delete", testMailboxDelete},
		{"Subscriptions", testMailboxSubscriptions},
		{"UIDValidity", testMailboxUIDValidity},
	}},
	{"Messages", []suiteTest{
		{"DeliverManyRecipients", testDeliverMany},
		{"DeliverToMailbox", testDeliverToMailbox},
		{"Append", testAppend},
		{"MultiAppend", testMultiAppend},
		{"MultiAppendAllOrNothing", testMultiAppendAllOrNothing},
		{"ListMessages", testListMessages},
		{"OpenMessage", testOpenMessage},
		{"ReadMessages", testReadMessages},
		{"FetchDetails", testFetchDetails},
		{"Copy", testCopy},
		{"Move", testMove},
		{"StoreFlags", testStoreFlags},
		{"Expunge", testExpunge},
		{"Changes", testChanges},
		{"ChangesEverySince", testChangesEverySince},
		{"PruneTombstones", testPruneTombstones},
		{"UIDsNeverReused", testUIDsNeverReused},
		{"CRLFSize", testCRLFSize},
		{"TruncatedBody", testTruncatedBody},
		{"Contents", testMessageContents},
		{"ContentsRecreated", testContentsRecreated},
		{"SelectMailbox", testSelectMailbox},
		{"SaveDates", testSaveDates},
		{"ObjectIDs", testObjectIDs},
		{"Preview", testPreview},
	}},
	{"Quota", []suiteTest{
		{"Usage", testQuotaUsage},
		{"Limit", testQuotaLimit},
		{"MessageLimit", testMessageQuota},
		{"DeletedSize", testDeletedSize},
	}},
	{"Search", []suiteTest{
		{"Criteria", testSearch},
		{"Metacharacters", testSearchMetacharacters},
		{"Addresses", testSearchAddresses},
	}},
	{"Recent", []suiteTest{
		{"Claim", testRecentClaim},
		{"ReadsDoNotClaim", testRecentReadsDoNotClaim},
		{"ConcurrentClaims", testRecentConcurrent},
		{"Isolation", testRecentIsolation},
	}},
	{"Isolation", []suiteTest{
		{"OtherAccountsMailbox", testIsolation},
	}},
	{"Notifications", []suiteTest{
		{"SameHandle", testNotifySameHandle},
		{"CrossHandle", testNotifyCrossHandle},
		{"HintsSameHandle", testHintsSameHandle},
		{"HintsCrossHandle", testHintsCrossHandle},
	}},
	{"Cluster", []suiteTest{
		{"AuthFailures", testAuthFailures},
		{"AuthReservations", testAuthReservations},
		{"AuthReservationsRace", testAuthReservationsRace},
		{"AuthConfirm", testAuthConfirm},
		{"AuthConfirmRace", testAuthConfirmRace},
		{"Leases", testLeases},
	}},
	{"Concurrency", []suiteTest{
		{"DeliverAndFlags", testConcurrentDeliverFlags},
		{"MultiRecipient", testConcurrentMultiRecipient},
		{"CopyMoveExpunge", testConcurrentCopyMoveExpunge},
		{"SharedContent", testConcurrentSharedContent},
		{"NoopExpungeVsStoreDeleted", testNoopExpungeVsStoreDeleted},
		{"NoopStoresKeepCounters", testNoopStoresKeepCounters},
	}},
	{"Queue", []suiteTest{
		{"Deliver", testQueueDeliver},
		{"Atomic", testQueueAtomic},
		{"BodyStream", testQueueBodyStream},
		{"QueueOnlyContent", testQueueOnlyContent},
		{"ClaimExclusive", testQueueClaimExclusive},
		{"LeaseExpiry", testQueueLeaseExpiry},
		{"Finish", testQueueFinish},
		{"FinishMany", testQueueFinishMany},
		{"Admin", testQueueAdmin},
	}},
	{"DKIM", []suiteTest{
		{"Keys", testDKIMKeys},
		{"SignFrom", testDKIMSignFrom},
		{"ClusterSecret", testClusterSecret},
	}},
	{"Metadata", []suiteTest{
		{"SetGet", testMetadataSetGet},
		{"Limits", testMetadataLimits},
		{"Mailboxes", testMetadataMailboxes},
		{"Isolation", testMetadataIsolation},
		{"CrossHandle", testMetadataCrossHandle},
	}},
	{"BadInput", []suiteTest{
		{"StateUnchanged", testBadInput},
	}},
}

// Run runs the whole suite against the stores f makes.
func Run(t *testing.T, f Factory) {
	if f.New == nil {
		t.Fatal("storetest: Factory.New is nil")
	}
	// The heap measurement must not see the other subtests' allocations,
	// so it runs before the parallel group starts.
	t.Run("BigMessage", func(t *testing.T) { testBigMessage(t, f) })
	t.Run("Parallel", func(t *testing.T) {
		for _, g := range groups {
			t.Run(g.name, func(t *testing.T) {
				t.Parallel()
				for _, tc := range g.tests {
					t.Run(tc.name, func(t *testing.T) {
						t.Parallel()
						tc.fn(t, f)
					})
				}
			})
		}
	})
}
