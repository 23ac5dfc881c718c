package postgres

// SearchFold exposes searchFold to the external tests.
var SearchFold = searchFold
