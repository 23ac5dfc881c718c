package postgres

// SearchFold exposes searchFold to the external tests.
var SearchFold = searchFold

// AppendFold and TextPieceSize expose the large-text internals to the
// external tests.
var AppendFold = appendFold

const TextPieceSize = textPieceSize

// MigrateTo exposes migrateTo to the upgrade tests.
var MigrateTo = migrateTo
