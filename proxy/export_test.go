package proxy

// Internals the external tests (package proxy_test) check against.
const (
	BranchPrefix    = branchPrefix
	StatelessPrefix = statelessPrefix
)
