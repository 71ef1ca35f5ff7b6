package auth

import (
	"context"
	"fmt"
	"time"
)

// retentionBatch is how many ended sessions one statement deletes: small
// enough that the SQLite writer or a PostgreSQL row lock is held briefly.
const (
	retentionBatch      = 500
	retentionMaxBatches = 200
)

// DeleteEndedSessions deletes, in batches, the sessions that ended (were
// revoked, reached their absolute expiry, or went unused past the idle
// lifetime) more than retention ago, so that rows holding IP addresses and
// user agents do not pile up forever. It returns how many it deleted; one
// call deletes at most retentionBatch*retentionMaxBatches, the next call
// carries on.
func (s *Service) DeleteEndedSessions(ctx context.Context, retention time.Duration) (int, error) {
	now := s.now()
	endedBefore := now.Add(-retention)
	idleBefore := endedBefore.Add(-s.cfg.IdleTTL)
	total := 0
	for range retentionMaxBatches {
		n, err := s.Store.DeleteEndedSessions(ctx, endedBefore, idleBefore, retentionBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete ended sessions: %w", err)
		}
		if n < retentionBatch {
			break
		}
	}
	return total, nil
}

// PruneSecrets deletes one-time secrets that have expired: used or not,
// they can no longer do anything.
func (s *Service) PruneSecrets(ctx context.Context) error {
	if err := s.Secrets.PruneSecrets(ctx, s.now()); err != nil {
		return fmt.Errorf("prune one-time secrets: %w", err)
	}
	return nil
}
