package localapi

// checkPrivate is a no-op on Windows: the data directory under %ProgramData% is
// ACL'd to Administrators and SYSTEM by the installer, and file mode bits do not
// express Windows permissions.
func checkPrivate(string) error { return nil }
