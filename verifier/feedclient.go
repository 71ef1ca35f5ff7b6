package verifier

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxPageBytes bounds one JSON page of the feed; maxEventBytes one SSE line.
const (
	maxPageBytes  = 8 << 20
	maxEventBytes = 64 << 10
)

// errNoStream: the server (or a proxy) answered the stream request with
// something other than an event stream; polling takes over for a while.
var errNoStream = errors.New("no event stream")

// feedClient follows the revocation feed: an SSE stream resumed from the
// cursor after every disconnect, and JSON polling while the stream cannot
// be had.
type feedClient struct {
	v *Verifier
}

type page struct {
	Revocations []item `json:"revocations"`
	Cursor      string `json:"cursor"`
}

// catchUp reads JSON pages from the cursor until one comes back empty.
func (f *feedClient) catchUp(ctx context.Context) error {
	for range 10000 {
		n, err := f.poll(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
	return errors.New("feed: too many pages")
}

// poll reads one page after the cursor and applies it.
func (f *feedClient) poll(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := f.request(ctx, "application/json")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("feed: %s answered %d", f.v.cfg.FeedURL, resp.StatusCode)
	}
	var p page
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxPageBytes))
	if err := dec.Decode(&p); err != nil {
		return 0, fmt.Errorf("feed: page: %w", err)
	}
	if p.Cursor == "" {
		return 0, errors.New("feed: page without a cursor")
	}
	f.v.state.apply(p.Revocations, p.Cursor)
	return len(p.Revocations), nil
}

func (f *feedClient) request(ctx context.Context, accept string) (*http.Response, error) {
	u, err := url.Parse(f.v.cfg.FeedURL)
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	cursor := f.v.state.currentCursor()
	if cursor != "" {
		q := u.Query()
		q.Set("after", cursor)
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+f.v.cfg.FeedCredential)
	req.Header.Set("Accept", accept)
	if accept == "text/event-stream" && cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	resp, err := f.v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	return resp, nil
}

// run follows the feed until ctx ends: the stream while it works; after it
// breaks, a poll (which catches up and proves the server alive) and a new
// stream after a short backoff; while no stream can be had, polls every
// PollInterval.
func (f *feedClient) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := f.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond // it had worked for a while
		}
		f.v.logger.Debug("revocation stream ended", "error", err)
		wait := backoff
		if errors.Is(err, errNoStream) {
			wait = f.v.cfg.PollInterval
		}
		// Poll until it is time to try the stream again, so revocations
		// keep arriving through the database side of the server.
		deadline := time.Now().Add(max(wait, time.Millisecond))
		for {
			if perr := f.catchUp(ctx); perr != nil && ctx.Err() == nil {
				f.v.logger.Warn("revocation feed poll failed", "error", perr)
			}
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			if !sleep(ctx, min(left, f.v.cfg.PollInterval)) {
				return
			}
		}
		backoff = min(2*backoff, f.v.cfg.PollInterval)
	}
}

// stream reads one SSE connection until it ends.
func (f *feedClient) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := f.request(ctx, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("feed stream: %s answered %d", f.v.cfg.FeedURL, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return errNoStream
	}
	f.v.state.touch()
	// A stream that goes silent (a dead peer behind a proxy) is given up
	// once nothing, not even a heartbeat, came for streamIdle.
	idle := time.AfterFunc(defaultStreamIdle, cancel)
	defer idle.Stop()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), maxEventBytes)
	var id string
	var data strings.Builder
	for sc.Scan() {
		idle.Reset(defaultStreamIdle)
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() > 0 {
				var it item
				if err := json.Unmarshal([]byte(data.String()), &it); err != nil {
					return fmt.Errorf("feed stream: event: %w", err)
				}
				f.v.state.apply([]item{it}, id)
			} else {
				f.v.state.touch()
			}
			data.Reset()
		case strings.HasPrefix(line, ":"):
			f.v.state.touch() // heartbeat
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "data":
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("feed stream: %w", err)
	}
	return errors.New("feed stream: closed by the server")
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
