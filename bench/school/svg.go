package school

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var colours = map[string]string{XSBackup: "#d62728", Rsync: "#1f77b4", RsyncHardlink: "#17becf", RsyncSSH: "#ff7f0e", Restic: "#2ca02c", Borg: "#9467bd"}

// SVG draws two line charts, night by night: the server's disk after each
// night (linear) and the bytes on the wire each night (logarithmic, since
// the first night dwarfs the others), one line per system.
func (r *Result) SVG() string {
	const w, h = 1000, 430
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="15">%s</text>`+"\n", w/2,
		html.EscapeString(fmt.Sprintf("Whole-school benchmark (%s): %d laptops × %d nights", r.Options.Size, r.Options.Laptops, r.Options.Nights)))
	var series []*SystemResult
	for _, s := range r.Systems {
		if len(s.Nights) > 0 && s.Failed == "" {
			series = append(series, s)
		}
	}
	r.chart(&b, 70, 50, 390, 300, "Server disk after the night (MB)", false, series, func(n NightStats) float64 { return mb(n.Disk) })
	wireSeries := []*SystemResult{}
	for _, s := range series {
		if s.Name != RsyncHardlink { // same wire as rsync
			wireSeries = append(wireSeries, s)
		}
	}
	r.chart(&b, 570, 50, 390, 300, "Bytes on the wire that night (MB, log scale)", true, wireSeries, func(n NightStats) float64 { return mb(n.Wire) })
	// Legend.
	x := 70
	for _, s := range series {
		fmt.Fprintf(&b, `<line x1="%d" y1="412" x2="%d" y2="412" stroke="%s" stroke-width="3"%s/>`, x, x+24, colours[s.Name], dash(s.Name))
		fmt.Fprintf(&b, `<text x="%d" y="416">%s</text>`+"\n", x+30, html.EscapeString(s.Name))
		x += 40 + 8*len(s.Name) + 30
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func dash(name string) string {
	switch name {
	case RsyncHardlink:
		return ` stroke-dasharray="6 4"`
	case RsyncSSH: // sends what rsync sends: dotted, so rsync shows through
		return ` stroke-dasharray="2 4"`
	}
	return ""
}

// chart draws one panel with its plot area at (x0, y0), size pw×ph.
func (r *Result) chart(b *strings.Builder, x0, y0, pw, ph int, title string, logY bool, series []*SystemResult, val func(NightStats) float64) {
	n := len(r.Nights)
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		for _, ns := range s.Nights {
			v := val(ns)
			hi = math.Max(hi, v)
			if v > 0 {
				lo = math.Min(lo, v)
			}
		}
	}
	if hi <= 0 {
		hi = 1
	}
	var ymin, ymax float64
	var ticks []float64
	if logY {
		if math.IsInf(lo, 1) {
			lo = hi / 10
		}
		ymin, ymax = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if ymax == ymin {
			ymax++
		}
		for e := ymin; e <= ymax; e++ {
			ticks = append(ticks, e)
		}
	} else {
		step := niceStep(hi / 5)
		ymax = math.Ceil(hi/step) * step
		for v := 0.0; v <= ymax+step/2; v += step {
			ticks = append(ticks, v)
		}
	}
	yOf := func(v float64) float64 {
		if logY {
			if v <= 0 {
				return float64(y0 + ph)
			}
			v = math.Log10(v)
		}
		return float64(y0+ph) - (v-ymin)/(ymax-ymin)*float64(ph)
	}
	xOf := func(k int) float64 {
		if n <= 1 {
			return float64(x0 + pw/2)
		}
		return float64(x0) + float64(k)/float64(n-1)*float64(pw)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" font-size="13">%s</text>`+"\n", x0+pw/2, y0-10, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", x0, y0, pw, ph)
	for _, t := range ticks {
		y := yOf(t)
		label := fmtTick(t)
		if logY {
			y = float64(y0+ph) - (t-ymin)/(ymax-ymin)*float64(ph)
			label = fmtTick(math.Pow(10, t))
		}
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, x0, y, x0+pw, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-5, y+4, label)
	}
	every := max(1, n/10)
	for k := 0; k < n; k += every {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`, xOf(k), y0+ph+16, k)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">night</text>`+"\n", x0+pw/2, y0+ph+34)
	fmt.Fprintf(b, `<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">MB</text>`+"\n", x0-50, y0+ph/2)
	for _, s := range series {
		var pts []string
		for k, ns := range s.Nights {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(k), yOf(val(ns))))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2.5"%s points="%s"/>`+"\n", colours[s.Name], dash(s.Name), strings.Join(pts, " "))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, xy[0], xy[1], colours[s.Name])
		}
		b.WriteString("\n")
	}
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	case v >= 1:
		return fmt.Sprintf("%g", v)
	}
	return fmt.Sprintf("%.2g", v)
}
