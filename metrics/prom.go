package metrics

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is one component's snapshot for the exporter: its metric prefix
// and its Stats method.
type Source struct {
	Name  string
	Stats func() any
}

// Collector exports every Source's snapshot to Prometheus, named by the
// convention (sipedge_<component>_<field>), with HELP text from the
// fields' documentation (help_gen.go). It is an unchecked collector: the
// set of metrics follows the snapshots (a map key appears when first
// counted), never a label with unbounded values (stages, hooks, reasons).
type Collector struct {
	sources []Source
	log     *slog.Logger
	mu      sync.Mutex
	descs   map[string]*prometheus.Desc
}

// Prefix is the namespace of every metric.
const Prefix = "sipedge_"

// NewCollector returns a collector over sources.
func NewCollector(log *slog.Logger, sources ...Source) *Collector {
	if log == nil {
		log = slog.Default()
	}
	return &Collector{sources: sources, log: log, descs: map[string]*prometheus.Desc{}}
}

// Describe sends nothing: an unchecked collector (prometheus.Collector).
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, src := range c.sources {
		snap := src.Stats()
		err := Walk(src.Name, snap, func(s Sample) {
			d := c.desc(s)
			if s.Hist != nil {
				buckets := make(map[float64]uint64, len(DelayBuckets))
				var cum uint64
				for i, ub := range DelayBuckets {
					cum += s.Hist.Counts[i]
					buckets[ub] = cum
				}
				if m, err := prometheus.NewConstHistogram(d, s.Hist.Count(), s.Hist.Sum.Seconds(), buckets); err == nil {
					ch <- m
				}
				return
			}
			if s.Dist != nil {
				buckets := make(map[float64]uint64, len(s.Dist.Bounds))
				var cum uint64
				for i, ub := range s.Dist.Bounds {
					if i < len(s.Dist.Counts) {
						cum += s.Dist.Counts[i]
					}
					buckets[ub] = cum
				}
				if m, err := prometheus.NewConstHistogram(d, s.Dist.Count(), s.Dist.Sum, buckets); err == nil {
					ch <- m
				}
				return
			}
			typ := prometheus.GaugeValue
			if s.Counter {
				typ = prometheus.CounterValue
			}
			var m prometheus.Metric
			var err error
			if s.Label != "" {
				m, err = prometheus.NewConstMetric(d, typ, s.Value, s.LabelV)
			} else {
				m, err = prometheus.NewConstMetric(d, typ, s.Value)
			}
			if err == nil {
				ch <- m
			}
		})
		if err != nil {
			c.log.Warn("metrics: a component's snapshot does not follow the convention", "component", src.Name, "err", err)
		}
	}
}

func (c *Collector) desc(s Sample) *prometheus.Desc {
	key := s.Name + "\x00" + s.Label
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.descs[key]; ok {
		return d
	}
	var labels []string
	if s.Label != "" {
		labels = []string{s.Label}
	}
	d := prometheus.NewDesc(Prefix+s.Name, Help(s.Name), labels, nil)
	c.descs[key] = d
	return d
}

// Help is the HELP text of a metric (without the prefix): the documentation
// of its field, or a description made from its name.
func Help(name string) string {
	if h, ok := help[name]; ok {
		return h
	}
	return "sipedge " + name
}
