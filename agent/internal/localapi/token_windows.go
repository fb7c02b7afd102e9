package localapi

// checkPrivate is a no-op on Windows: the agent restricts its data directory
// to SYSTEM and Administrators at every start (agent/datadir_windows.go), and
// file mode bits do not express Windows permissions.
func checkPrivate(string) error { return nil }
