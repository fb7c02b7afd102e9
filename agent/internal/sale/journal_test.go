package sale

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/fiscaltest"
	"kassa-agent/queue"
)

func TestJournalContract(t *testing.T) {
	dir := t.TempDir()
	var s *queue.Store
	fiscaltest.JournalContract(t, func(t *testing.T, reopen bool) fiscal.Journal {
		if s != nil {
			require.NoError(t, s.Close())
		}
		if !reopen {
			dir = t.TempDir()
		}
		var err error
		s, err = queue.Open(filepath.Join(dir, "kassa.db"), queue.Options{})
		require.NoError(t, err)
		st := s
		t.Cleanup(func() { _ = st.Close() })
		return NewJournal(s)
	})
}
