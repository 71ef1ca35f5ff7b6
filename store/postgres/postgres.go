// Package postgres implements gatehouse.Store on PostgreSQL with pgx/v5.
//
// Queries run through a pgxpool with pgx's default statement cache
// (QueryExecModeCacheStatement): each statement is prepared once per
// connection and then executed with binary parameters, so the hot path
// (RotateSession) is a single round trip and no value is ever interpolated
// into SQL text. Open does not migrate; call Migrate (or `gatehouse migrate`)
// first.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse"
)

// defaultConnectTimeout bounds a TCP/TLS connect when the URL sets no
// connect_timeout. Without it a blackholed server makes every request hang
// until its own deadline, instead of failing fast with ErrUnavailable.
const defaultConnectTimeout = 5 * time.Second

// Options tune the connection pool.
type Options struct {
	// MaxConns caps the pool. 0 means pool_max_conns from the URL if set,
	// else defaultMaxConns.
	MaxConns int32
}

// defaultMaxConns sizes the pool when neither Options nor the URL do.
// pgxpool's own default, max(4, NumCPU), was the refresh bottleneck (issue
// 6, BENCHMARKS.md): a rotation spends most of its time waiting for the
// server's WAL flush, not on a CPU, and PostgreSQL flushes the commits of
// all backends waiting at once together (group commit), so more
// connections in flight mean more rotations per flush. With 16 clients on
// 2 vCPUs, 16 connections instead of 4 took refresh-postgres from ~1,000-
// 1,400/s to ~2,100-2,400/s (p50 10-13 ms → 4 ms). Several instances at 16
// each stay well inside PostgreSQL's default max_connections of 100.
func defaultMaxConns() int32 { return int32(max(16, 4*runtime.GOMAXPROCS(0))) }

// Store is a gatehouse.Store backed by PostgreSQL. It is safe for concurrent
// use, and several processes may share one database.
type Store struct {
	pool *pgxpool.Pool
}

var _ gatehouse.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or key=value DSN,
// as pgx accepts) and pings it. It does not migrate. Errors caused by an
// unreachable server wrap gatehouse.ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := config(url, opts)
	if err != nil {
		return nil, err
	}
	s, err := newStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, wrap("connect", err)
	}
	return s, nil
}

// config parses url and applies opts and the package's defaults.
func config(url string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's ParseConfigError redacts any password in the URL.
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	// The simple protocol interpolates parameters client-side and prepares
	// nothing; we rely on server-side binding and the statement cache.
	if cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return nil, errors.New("postgres: default_query_exec_mode=simple_protocol is not supported")
	}
	switch {
	case opts.MaxConns < 0:
		return nil, fmt.Errorf("postgres: MaxConns %d is negative", opts.MaxConns)
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(url, "pool_max_conns"):
		cfg.MaxConns = defaultMaxConns()
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, nil
}

// newStore builds the pool without contacting the server (pgxpool connects
// lazily), so tests can exercise the query path against a dead address.
func newStore(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap("connect", err)
	}
	return &Store{pool: pool}, nil
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping", s.pool.Ping(ctx))
}

// Close closes every connection. It waits for acquired connections to be
// released and is safe to call more than once.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// wrap adds context to err and maps it onto the gatehouse sentinel errors:
// no rows becomes ErrNotFound and a server that cannot be reached becomes
// ErrUnavailable (keeping the driver error in the chain for logs).
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w", op, gatehouse.ErrNotFound)
	case unavailable(err):
		return fmt.Errorf("postgres: %s: %w: %w", op, gatehouse.ErrUnavailable, err)
	default:
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
}

// unavailable reports whether err means the database could not be reached
// or could not serve us right now, as opposed to rejecting the request: the
// HTTP layer answers those with 503 and the caller may retry.
func unavailable(err error) bool {
	// The caller gave up (client disconnected): not the server's fault, and
	// nobody is left to read a 503 anyway.
	if errors.Is(err, context.Canceled) {
		return false
	}
	// A deadline passing while we wait for a connection or an answer means
	// the database is too slow or gone.
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	// pgconn marks errors that happened before anything reached the server
	// (dial failures, a connection already closed) as safe to retry.
	if pgconn.SafeToRetry(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	// The server closed the connection mid-conversation.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pgErr.Code, "53"): // insufficient resources, too many connections
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting up
			return true
		}
	}
	return false
}
