package controller

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the controller's Prometheus collectors.
type Metrics struct {
	IndicatorsAccepted *prometheus.CounterVec
	IndicatorsRejected *prometheus.CounterVec
	Runs               *prometheus.CounterVec
	StepRetries        *prometheus.CounterVec
	StepDuration       *prometheus.HistogramVec
	TimeToContain      prometheus.Histogram
	BreakerTrips       prometheus.Counter
	ReconcileRepairs   *prometheus.CounterVec
	// IntakeBacklog counts journaled indicators not decided yet.
	IntakeBacklog prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		IndicatorsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_indicators_accepted_total",
			Help: "Alerts accepted, by outcome (matched, duplicate, unmatched)."}, []string{"outcome"}),
		IndicatorsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_indicators_rejected_total",
			Help: "Intake requests rejected, by reason."}, []string{"reason"}),
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_runs_total",
			Help: "Runs finished, by outcome."}, []string{"outcome"}),
		StepRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_step_retries_total",
			Help: "Step attempts retried after a transient error, by action."}, []string{"action"}),
		StepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "warden_step_duration_seconds",
			Help: "Step duration including retries and verification.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}, []string{"action", "state"}),
		TimeToContain: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_time_to_contain_seconds",
			Help: "From the first indicator of an incident to isolation verified.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		BreakerTrips: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_circuit_breaker_trips_total",
			Help: "Times the fleet circuit breaker tripped."}),
		ReconcileRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_reconcile_repairs_total",
			Help: "Drift from the desired posture repaired by the reconcile loop."}, []string{"gateway"}),
		IntakeBacklog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_intake_backlog",
			Help: "Indicators answered from the intake journal (queued) and not decided yet."}),
	}
	if reg != nil {
		reg.MustRegister(m.IndicatorsAccepted, m.IndicatorsRejected, m.Runs, m.StepRetries, m.StepDuration, m.TimeToContain, m.BreakerTrips, m.ReconcileRepairs, m.IntakeBacklog)
	}
	return m
}
