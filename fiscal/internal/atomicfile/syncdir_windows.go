package atomicfile

// SyncDir is a no-op on Windows: directories cannot be opened for sync there, and
// NTFS journals the rename itself.
func SyncDir(string) error { return nil }
