package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Group commit for RotateSession (issue 6, BENCHMARKS.md).
//
// Every rotation is a write, writes go through the one writer connection,
// and with synchronous=FULL every commit waits for an fsync of the WAL
// (~0.2 ms on the benchmark machine). One transaction per rotation
// therefore capped refresh at about 1/(fsync + statement time) — ~1,500/s
// under load, below the 3,000/s target — however many CPUs were idle.
//
// Instead, rotations queue for a single goroutine that takes whatever has
// queued while the previous transaction was committing (up to
// maxRotateBatch) and runs them in one IMMEDIATE transaction with one
// commit: one fsync for the lot. Nothing waits for a batch to fill, so a
// lone refresh costs what it did before. Semantics are unchanged: each
// rotation is still the same compare-and-swap UPDATE, executed one after
// the other inside the transaction, so of two rotations of one generation
// in a batch exactly one matches; and every caller is answered only after
// the commit, so a caller that found nothing to rotate and goes on to read
// the session through the read pool sees the committed state, and no
// caller is ever told "rotated" for a rotation that was rolled back.
const (
	maxRotateBatch = 64
	// rotateBatchTimeout bounds one batch transaction (its callers wait
	// for it, whatever their own contexts say, so that they report what
	// actually happened). Generous: busy_timeout plus the work itself.
	rotateBatchTimeout = busyTimeoutMS*time.Millisecond + 10*time.Second
)

type rotateReq struct {
	ctx             context.Context
	id              string
	gen             int64
	now, idleCutoff int64 // micros
	sess            gatehouse.Session
	user            gatehouse.User
	err             error
	done            chan struct{}
}

// startRotator starts the goroutine that runs the rotation batches; Close
// stops it.
func (s *Store) startRotator() {
	s.rotations = make(chan *rotateReq)
	s.quit = make(chan struct{})
	s.rotatorDone = make(chan struct{})
	go s.rotateLoop()
}

func (s *Store) stopRotator() {
	if s.quit == nil {
		return // never started (Open failed early)
	}
	s.stopOnce.Do(func() { close(s.quit) })
	<-s.rotatorDone
}

func (s *Store) rotateLoop() {
	defer close(s.rotatorDone)
	batch := make([]*rotateReq, 0, maxRotateBatch)
	for {
		select {
		case <-s.quit:
			return
		case r := <-s.rotations:
			batch = append(batch[:0], r)
		}
		// Everyone who queued while the last batch committed.
	drain:
		for len(batch) < maxRotateBatch {
			select {
			case r := <-s.rotations:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.rotateBatch(batch)
		clear(batch) // drop references to finished requests
	}
}

// rotateBatch runs batch in one transaction and answers every request.
func (s *Store) rotateBatch(batch []*rotateReq) {
	failAll := func(err error) {
		for _, r := range batch {
			r.sess, r.user, r.err = gatehouse.Session{}, gatehouse.User{}, err
			close(r.done)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), rotateBatchTimeout)
	defer cancel()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		failAll(wrap("rotate session", err))
		return
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	rotate := tx.StmtContext(ctx, s.rotate)
	userByID := tx.StmtContext(ctx, s.userByIDW)
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = wrap("rotate session", err) // caller gone: rotate nothing
			continue
		}
		sess, err := scanSession(rotate.QueryRowContext(ctx, r.now, r.id, r.gen, r.idleCutoff))
		if errors.Is(err, sql.ErrNoRows) {
			r.err = wrap("rotate session", err) // ErrNotFound: not this generation, or not live
			continue
		}
		if err != nil {
			// Anything else may have aborted the transaction: fail the
			// whole batch rather than commit part of it.
			failAll(wrap("rotate session", err))
			return
		}
		// Same transaction: the user is read as of the rotation, so a user
		// disabled a moment later is seen as disabled by the next refresh,
		// never as enabled with a stale role.
		u, err := scanUser(userByID.QueryRowContext(ctx, sess.UserID))
		if err != nil {
			failAll(wrap("rotate session: user", err))
			return
		}
		r.sess, r.user = sess, u
	}
	if err := tx.Commit(); err != nil {
		failAll(wrap("rotate session: commit", err))
		return
	}
	for _, r := range batch {
		close(r.done)
	}
}

// enqueueRotation hands r to the rotator and waits for its answer. Once
// queued, the caller waits for the batch's outcome even if ctx ends, so
// that it never reports failure for a rotation that was committed.
func (s *Store) enqueueRotation(ctx context.Context, r *rotateReq) error {
	select {
	case s.rotations <- r:
	case <-ctx.Done():
		return wrap("rotate session", ctx.Err())
	case <-s.quit:
		return errors.New("sqlite: rotate session: store closed")
	}
	<-r.done
	return r.err
}
