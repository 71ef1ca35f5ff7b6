// Package metrics defines Gatehouse's Prometheus metrics on a registry of
// its own (no global default registry), and implements auth.Observer.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector.
type Metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	logins      *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	reuse       prometheus.Counter
	revocations *prometheus.CounterVec
	mailSent    prometheus.Counter
	mailFailed  prometheus.Counter
	mailGaveUp  prometheus.Counter
	mailPending prometheus.Gauge
	audits      *prometheus.CounterVec
	auditFailed prometheus.Counter
}

// HashStats reports the password hasher's queue (password.Hasher.Stats).
type HashStats func() (running, waiting int)

// New registers the collectors.
func New(hash HashStats) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_logins_total", Help: "Login attempts by result.",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_refreshes_total", Help: "Refresh attempts by result.",
		}, []string{"result"}),
		reuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_refresh_reuse_detections_total", Help: "Refresh-token reuse detections (sessions revoked as stolen).",
		}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_revocations_total", Help: "Revocations by reason (sessions, or user-wide cutoffs).",
		}, []string{"reason"}),
		mailSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_mail_sent_total", Help: "Mail messages delivered to the sender (SMTP server or mail folder).",
		}),
		mailFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_mail_send_failures_total", Help: "Failed mail delivery attempts (each is retried until the give-up bound).",
		}),
		mailGaveUp: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_mail_given_up_total", Help: "Mail messages dropped after too many failed attempts or too long in the queue.",
		}),
		mailPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_mail_pending", Help: "Mail messages in the outbox, as last counted by this instance.",
		}),
		audits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_audit_events_total", Help: "Audit events stored, by type.",
		}, []string{"type"}),
		auditFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_write_failures_total", Help: "Audit events that could not be stored (each is still logged).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.logins, m.refreshes, m.reuse, m.revocations,
		m.mailSent, m.mailFailed, m.mailGaveUp, m.mailPending, m.audits, m.auditFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if hash != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gatehouse_password_hashes_running", Help: "Password hashes being computed.",
			}, func() float64 { r, _ := hash(); return float64(r) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gatehouse_password_hash_queue", Help: "Password hashes waiting for a slot.",
			}, func() float64 { _, w := hash(); return float64(w) }),
		)
	}
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Route returns the request metrics of one route, resolved once so the
// hot path skips the label lookups.
func (m *Metrics) Route(route string) *RouteMetrics {
	return &RouteMetrics{m: m, route: route, duration: m.duration.WithLabelValues(route), byStatus: map[int]prometheus.Counter{}}
}

// RouteMetrics counts the requests of one route.
type RouteMetrics struct {
	m        *Metrics
	route    string
	duration prometheus.Observer
	mu       sync.RWMutex
	byStatus map[int]prometheus.Counter
}

// Request records one HTTP request of the route.
func (r *RouteMetrics) Request(status int, elapsed time.Duration) {
	r.mu.RLock()
	c, ok := r.byStatus[status]
	r.mu.RUnlock()
	if !ok {
		c = r.m.requests.WithLabelValues(r.route, strconv.Itoa(status))
		r.mu.Lock()
		r.byStatus[status] = c
		r.mu.Unlock()
	}
	c.Inc()
	r.duration.Observe(elapsed.Seconds())
}

// Login implements auth.Observer.
func (m *Metrics) Login(result string) { m.logins.WithLabelValues(result).Inc() }

// Refresh implements auth.Observer.
func (m *Metrics) Refresh(result string) {
	m.refreshes.WithLabelValues(result).Inc()
	if result == "reused" {
		m.reuse.Inc()
	}
}

// Revoked implements auth.Observer.
func (m *Metrics) Revoked(reason string, n int) {
	m.revocations.WithLabelValues(reason).Add(float64(n))
}

// MailSent implements mail.Observer.
func (m *Metrics) MailSent() { m.mailSent.Inc() }

// MailFailed implements mail.Observer: one failed delivery attempt.
func (m *Metrics) MailFailed() { m.mailFailed.Inc() }

// MailGaveUp implements mail.Observer: a message dropped undelivered.
func (m *Metrics) MailGaveUp() { m.mailGaveUp.Inc() }

// MailPending implements mail.Observer: the outbox size, refreshed
// periodically by the mail worker rather than counted on every scrape, so
// scrapes never query the database.
func (m *Metrics) MailPending(n int) { m.mailPending.Set(float64(n)) }

// AuditRecorded implements audit.Observer: one event stored.
func (m *Metrics) AuditRecorded(eventType string) { m.audits.WithLabelValues(eventType).Inc() }

// AuditFailed implements audit.Observer: one event that could not be stored.
func (m *Metrics) AuditFailed() { m.auditFailed.Inc() }
