package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/auth"
)

// retentionInterval is how often ended sessions are deleted: a quarter of
// the retention period, between one second (tests) and ten minutes.
func retentionInterval(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Second), 10*time.Minute)
}

// deleteEndedSessions deletes sessions past their retention period until
// ctx ends. Every instance runs it; the batches are small and idempotent,
// so instances running at once only share the work.
func deleteEndedSessions(ctx context.Context, svc *auth.Service, retention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(retentionInterval(retention))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := svc.DeleteEndedSessions(ctx, retention)
		if err != nil && ctx.Err() == nil {
			logger.Warn("delete ended sessions", "deleted", n, "err", err)
			continue
		}
		if n > 0 {
			logger.Info("deleted ended sessions", "count", n, "retention", retention.String())
		}
	}
}
