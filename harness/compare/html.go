package compare

import (
	"bufio"
	"fmt"
	"html/template"
	"io"
)

// htmlPage is a self-contained page: inline CSS, no scripts, no external
// assets.
var htmlPage = template.Must(template.New("compare").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fastpath compare: {{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worse td { background: #fdd; }
tr.worse td.verdict { color: #a00; font-weight: bold; }
tr.better td { background: #dfd; }
tr.better td.verdict { color: #060; font-weight: bold; }
.warnings { background: #fff4d6; border: 1px solid #e0c060; padding: 0.5em 1em; }
.notes { color: #555; font-size: 0.9em; }
.final { font-weight: bold; }
.final.regressed { color: #a00; }
</style>
</head>
<body>
<h1>fastpath compare: {{.Title}}</h1>
<table>
<tr><th></th><th>old</th><th>new</th></tr>
{{- range .Info}}
<tr><th>{{.Label}}</th><td>{{or .Old "–"}}</td><td>{{or .New "–"}}</td></tr>
{{- end}}
</table>
{{- if .Warnings}}
<div class="warnings"><strong>Warnings:</strong>
<ul>
{{- range .Warnings}}
<li>{{.}}</li>
{{- end}}
</ul>
</div>
{{- end}}
{{- $ci := .CILabel}}
{{- range .Scenarios}}
<h2>{{.Name}}</h2>
<p>Repetitions compared (old/new): {{.Reps}}.</p>
<table>
<tr><th>figure</th><th>datapath</th><th>old</th><th>new</th><th>change</th><th>{{$ci}}</th><th>p</th><th>verdict</th></tr>
{{- range .Rows}}
<tr{{if eq .Verdict "worse"}} class="worse"{{else if eq .Verdict "better"}} class="better"{{end}}><td>{{.Figure}}</td><td><code>{{.Datapath}}</code></td><td class="num">{{.Old}}</td><td class="num">{{.New}}</td><td class="num">{{.Change}}</td><td class="num">{{.CI}}</td><td class="num">{{.P}}</td><td class="verdict">{{.Verdict}}</td></tr>
{{- end}}
</table>
{{- end}}
{{- if or .OnlyOld .OnlyNew}}
<h2>Not compared</h2>
<ul>
{{- range .OnlyOld}}
<li>only in old: <code>{{.}}</code></li>
{{- end}}
{{- range .OnlyNew}}
<li>only in new: <code>{{.}}</code></li>
{{- end}}
</ul>
{{- end}}
<hr>
<ul class="notes">
{{- range .Notes}}
<li>{{.}}</li>
{{- end}}
</ul>
<p class="final{{if .Regressed}} regressed{{end}}">{{.Final}}</p>
</body>
</html>
`))

// WriteHTML writes c as a self-contained HTML page with the content of
// WriteMarkdown; rows whose verdict is worse are red, better green.
func (c *Comparison) WriteHTML(w io.Writer) error {
	b := bufio.NewWriter(w)
	data := struct {
		view
		Regressed bool
	}{c.view(), len(c.Regressions) > 0}
	if err := htmlPage.Execute(b, data); err != nil {
		return fmt.Errorf("write comparison html: %w", err)
	}
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write comparison html: %w", err)
	}
	return nil
}
