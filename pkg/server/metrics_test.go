package server_test

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/xs-backup/xs-backup/pkg/server"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from this run")

const (
	goldenPath     = "testdata/metrics.golden"
	alertsPath     = "../../dist/prometheus/alerts.yml"
	alertsTestPath = "../../dist/prometheus/alerts_test.yml"
)

// TestMetricsGolden scrapes a real daemon's /metrics over HTTP, after one
// laptop backed up and one only registered, and pins every xs_ metric's
// name, type and label names (testdata/metrics.golden; go test -update
// rewrites it). Then it checks that every metric the example alert rules
// (dist/prometheus/alerts.yml) use is one the daemon serves.
func TestMetricsGolden(t *testing.T) {
	d := startDaemon(t, func(c *server.Config) {
		c.Metrics = "127.0.0.1:0"
		c.Quota.Soft = 1 // every laptop with a backup is over it
		c.Reserve = 64 << 20
	})
	newLaptop(t, d, "SHC0001", 1).run(t)
	newLaptop(t, d, "SHC0002", 2) // registered, never backed up

	resp, err := http.Get("http://" + d.MetricsAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}

	t.Run("golden", func(t *testing.T) {
		got := describeFamilies(fams)
		if *update {
			if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(goldenPath)
		if err != nil {
			t.Fatalf("%v (go test -run TestMetricsGolden -update ./pkg/server/ writes it)", err)
		}
		if got != string(want) {
			t.Errorf("the xs_ metrics changed (if on purpose: go test -run TestMetricsGolden -update ./pkg/server/, and update README.md and dist/prometheus/alerts.yml)\ngot:\n%s\nwant:\n%s", got, want)
		}
		for _, std := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
			if fams[std] == nil {
				t.Errorf("the standard collectors' %s is missing", std)
			}
		}
	})

	t.Run("values", func(t *testing.T) {
		value := func(name string, labels ...string) float64 {
			t.Helper()
			f := fams[name]
			if f == nil {
				t.Fatalf("%s missing", name)
			}
			for _, m := range f.GetMetric() {
				if hasLabels(m, labels...) {
					switch {
					case m.Gauge != nil:
						return m.GetGauge().GetValue()
					case m.Counter != nil:
						return m.GetCounter().GetValue()
					}
				}
			}
			t.Fatalf("%s%v missing", name, labels)
			return 0
		}
		checks := []struct {
			name   string
			labels []string
			want   float64
		}{
			{"xs_laptops", nil, 2},
			{"xs_laptops_never_backed_up", nil, 1},
			{"xs_laptops_not_backed_up", []string{"days", "1"}, 0},
			{"xs_laptops_over_soft_quota", nil, 1},
			{"xs_laptops_pending_approval", nil, 0},
			{"xs_commits_total", nil, 1},
			{"xs_store_reserve_bytes", nil, 64 << 20},
			{"xs_errors_total", []string{"kind", "busy"}, 0},
		}
		for _, c := range checks {
			if got := value(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if age := value("xs_laptop_last_backup_age_seconds", "serial", "SHC0001"); age < 0 || age > 600 {
			t.Errorf("SHC0001's backup age = %v s, just after its backup", age)
		}
		if n := len(fams["xs_laptop_last_backup_age_seconds"].GetMetric()); n != 1 {
			t.Errorf("%d laptops with a backup age, want only SHC0001", n)
		}
		if v := value("xs_store_size_bytes", "part", "packs"); v <= 0 {
			t.Errorf("pack bytes = %v after a backup", v)
		}
		if v := value("xs_store_free_bytes"); v <= 0 {
			t.Errorf("free bytes = %v", v)
		}
		if v := value("xs_build_info", "goversion", runtime.Version()); v != 1 {
			t.Errorf("xs_build_info = %v", v)
		}
	})

	t.Run("alerts", func(t *testing.T) {
		checkAlertRules(t, fams)
	})
}

// describeFamilies lists the xs_ metric families, one a line: name, type
// and the label names their samples carry.
func describeFamilies(fams map[string]*dto.MetricFamily) string {
	var lines []string
	for name, f := range fams {
		if !strings.HasPrefix(name, "xs_") {
			continue
		}
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		line := name + " " + strings.ToLower(f.GetType().String())
		if len(labels) > 0 {
			line += " {" + strings.Join(labels, ",") + "}"
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

func hasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		ok := false
		for _, l := range m.GetLabel() {
			ok = ok || l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}
		if !ok {
			return false
		}
	}
	return true
}

// checkAlertRules parses the example alert rules and checks each: a name,
// an expression whose every metric the daemon serves (or Prometheus's own
// up), a severity and a summary; the series their unit tests
// (alerts_test.yml) feed them must be served too. promtool checks and
// tests them if installed.
func checkAlertRules(t *testing.T, fams map[string]*dto.MetricFamily) {
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	served := func(name string) bool {
		if name == "up" || fams[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
				return true
			}
		}
		return false
	}
	var alerts []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			names := promQLMetricNames(r.Expr)
			if r.Alert == "" || len(names) == 0 {
				t.Errorf("group %s: a rule without an alert name or a metric: %+v", g.Name, r)
			}
			for _, n := range names {
				if !served(n) {
					t.Errorf("alert %s uses %s, which /metrics does not serve", r.Alert, n)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s needs a severity label and a summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"XSBackupLaptopNotBackedUp", "XSBackupDiskNearReserve", "XSBackupDown"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s is missing from %s", want, alertsPath)
		}
	}
	// The rules' unit tests feed them series named like the daemon's.
	b, err = os.ReadFile(alertsTestPath)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatalf("%s: %v", alertsTestPath, err)
	}
	for _, tc := range tests.Tests {
		for _, in := range tc.InputSeries {
			if name, _, _ := strings.Cut(in.Series, "{"); !served(name) {
				t.Errorf("%s feeds %s, which /metrics does not serve", alertsTestPath, name)
			}
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", alertsPath).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
		cmd := exec.Command(promtool, "test", "rules", filepath.Base(alertsTestPath))
		cmd.Dir = filepath.Dir(alertsTestPath)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool test rules: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool is not installed: the rules were checked by name only")
	}
}

// promQLMetricNames returns the metric names a PromQL expression selects:
// its identifiers outside label matchers, ranges and strings that are not
// functions, aggregations, keywords or the label lists of by, without, on,
// ignoring and group_left/right. Enough for alert rules; not a parser.
func promQLMetricNames(expr string) []string {
	keywords := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true, "atan2": true}
	labelLists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipTo := func(i int, close byte) int {
		for i < len(expr) && expr[i] != close {
			if expr[i] == '"' || expr[i] == '\'' {
				q := expr[i]
				for i++; i < len(expr) && expr[i] != q; i++ {
					if expr[i] == '\\' {
						i++
					}
				}
			}
			i++
		}
		return i
	}
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{':
			i = skipTo(i+1, '}') + 1
		case c == '[':
			i = skipTo(i+1, ']') + 1
		case c == '"' || c == '\'':
			i = skipTo(i+1, c) + 1
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') { // 1.1, 7e3, 0x1f
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			switch {
			case labelLists[word] && k < len(expr) && expr[k] == '(':
				j = skipTo(k+1, ')') + 1
			case keywords[strings.ToLower(word)]:
			case k < len(expr) && expr[k] == '(': // a function or an aggregation
			case strings.HasPrefix(expr[k:], "by") || strings.HasPrefix(expr[k:], "without"): // sum by (x) (...)
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

func TestPromQLMetricNames(t *testing.T) {
	got := promQLMetricNames(`xs_a{days="7"} > ignoring(days) (count without(serial) (xs_b > 7 * 24 * 3600) or xs_c * 0) and on(instance) rate(xs_d_total[5m]) > 1.1e3 * up{job="x{y}"}`)
	want := []string{"xs_a", "xs_b", "xs_c", "xs_d_total", "up"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
