package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRouteRequestsAndEvents(t *testing.T) {
	m := New(func() (int, int) { return 2, 5 })
	r := m.Route("/auth/me")
	r.Request(200, time.Millisecond)
	r.Request(200, time.Millisecond)
	r.Request(401, time.Millisecond)
	m.Refresh("reused")
	m.Login("ok")
	m.Revoked("logout", 3)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`gatehouse_http_requests_total{route="/auth/me",status="200"} 2`,
		`gatehouse_http_requests_total{route="/auth/me",status="401"} 1`,
		`gatehouse_http_request_duration_seconds_count{route="/auth/me"} 3`,
		`gatehouse_refresh_reuse_detections_total 1`,
		`gatehouse_refreshes_total{result="reused"} 1`,
		`gatehouse_logins_total{result="ok"} 1`,
		`gatehouse_revocations_total{reason="logout"} 3`,
		`gatehouse_password_hashes_running 2`,
		`gatehouse_password_hash_queue 5`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
