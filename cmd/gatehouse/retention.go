package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/auth"
)

// housekeepingInterval is how often ended sessions and expired one-time
// secrets are deleted: a quarter of the session retention, between one
// second (tests) and ten minutes.
func housekeepingInterval(retention time.Duration) time.Duration {
	if retention <= 0 {
		return 10 * time.Minute
	}
	return min(max(retention/4, time.Second), 10*time.Minute)
}

// housekeeping deletes sessions past their retention period (unless
// retention is zero), audit events past theirs (unless auditRetention is
// zero) and expired one-time secrets until ctx ends. Every instance runs
// it; the deletes are small and idempotent, so instances running at once
// only share the work.
func housekeeping(ctx context.Context, svc *auth.Service, retention, auditRetention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(housekeepingInterval(retention))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if retention > 0 {
			n, err := svc.DeleteEndedSessions(ctx, retention)
			if err != nil && ctx.Err() == nil {
				logger.Warn("delete ended sessions", "deleted", n, "err", err)
			} else if n > 0 {
				logger.Info("deleted ended sessions", "count", n, "retention", retention.String())
			}
		}
		if auditRetention > 0 {
			n, err := svc.PruneAudit(ctx, auditRetention)
			if err != nil && ctx.Err() == nil {
				logger.Warn("prune audit events", "deleted", n, "err", err)
			} else if n > 0 {
				logger.Info("pruned audit events", "count", n, "retention", auditRetention.String())
			}
		}
		if err := svc.PruneSecrets(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("prune one-time secrets", "err", err)
		}
	}
}
