package containers

import (
	"fmt"
	"html"
	"html/template"
	"strings"
)

// Chart draws values as a small line chart, an inline SVG the server puts
// into the page (the CSP allows no script, so no client-side charting).
// Only presentation attributes are used: style attributes would be
// blocked by the CSP. The label carries the latest value as text too.
func Chart(title string, values []float64, format func(float64) string) template.HTML {
	const w, h, pad = 240.0, 64.0, 14.0
	var b strings.Builder
	last := "no data"
	if len(values) > 0 {
		last = format(values[len(values)-1])
	}
	label := html.EscapeString(title + ": " + last)
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="%s">`, w, h, w, h, label)
	fmt.Fprintf(&b, `<title>%s</title><rect x="0" y="0" width="%g" height="%g" fill="#f7f8fa" stroke="#d0d4da"/>`, label, w, h)
	peak := 0.0
	for _, v := range values {
		peak = max(peak, v)
	}
	if len(values) > 1 {
		scale := 1.0
		if peak > 0 {
			scale = (h - pad - 4) / peak
		}
		step := w / float64(len(values)-1)
		var pts strings.Builder
		for i, v := range values {
			fmt.Fprintf(&pts, "%.1f,%.1f ", float64(i)*step, h-2-v*scale)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>`, strings.TrimSpace(pts.String()))
	}
	fmt.Fprintf(&b, `<text x="4" y="11" font-size="10" fill="#333">%s</text>`, label)
	if len(values) > 1 {
		fmt.Fprintf(&b, `<text x="%g" y="11" font-size="9" fill="#777" text-anchor="end">max %s</text>`, w-4, html.EscapeString(format(peak)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built only from escaped text and numbers above
}

// Charts are the standard set for a series: CPU, memory, network, disk.
func Charts(s Series) []template.HTML {
	pick := func(f func(Sample) float64) []float64 {
		out := make([]float64, len(s.Samples))
		for i, x := range s.Samples {
			out[i] = f(x)
		}
		return out
	}
	return []template.HTML{
		Chart("CPU", pick(func(x Sample) float64 { return x.CPUPercent }), func(v float64) string { return fmt.Sprintf("%.1f%%", v) }),
		Chart("Memory", pick(func(x Sample) float64 { return float64(x.MemBytes) }), Bytes),
		Chart("Net rx+tx", pick(func(x Sample) float64 { return x.NetRxBps + x.NetTxBps }), func(v float64) string { return Bytes(v) + "/s" }),
		Chart("Disk r+w", pick(func(x Sample) float64 { return x.BlkReadBps + x.BlkWriteBps }), func(v float64) string { return Bytes(v) + "/s" }),
	}
}

// Bytes formats a byte count with a binary unit.
func Bytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
